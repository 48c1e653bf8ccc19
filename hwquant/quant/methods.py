"""One entry point for every weight quantization method: quantizer + schedule + lowering.

:func:`quantize_graph` takes a float graph and a data set, quantizes the weights of every
conv/linear layer with the method's quantizer (:mod:`hwquant.quant.weights`) under a schedule
(:mod:`hwquant.quant.schedules`), then calibrates the activations and lowers everything into
the IR (:func:`hwquant.quant.fixed.build_network`).

Defaults per method and width (:mod:`hwquant.quant.options`): ``fixed`` is post-training
above 4 bits and retrained with ``simple`` at 4 bits and below; ``inq`` uses the
``incremental`` schedule with INQ's portions for the width; ``ternary`` uses ``simple`` (TWN
trains with the straight-through estimator; α per output channel). ``binary`` trains its own
network (a BatchNorm on every binary accumulator, :mod:`hwquant.quant.binary`) and lowers it
with its BatchNorm folded into integer thresholds. Retraining is
quantization-aware and re-fits the per-channel scale and bias after each quantization step.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .fixed import QuantizationError, build_network, quantize_fixed
from .options import QuantOptions, check_options, resolve_layer_bits
from .schedules import run_schedule
from .weights import WeightQuantError, make_quantizer

__all__ = ["quantize_graph"]

def _check_graph(graph):
    layers = [n for n in graph.nodes if n.op in ("conv2d", "linear")]
    if not layers:
        raise QuantizationError("The model has no weight layers (conv2d or linear) to quantize")
    for node in layers:
        if not np.any(np.asarray(node.weight)):
            raise QuantizationError(f"Layer '{node.name}': all weights are zero; nothing to "
                                    f"quantize (remove the layer or retrain the model)")
    return [n.name for n in layers]


def _bitmask_quantizers(graph, dataset, opts, log):
    """``--method bitmask``: the mask of every conv layer (searched, or given by
    ``--pattern``) and 8-bit fixed point for the other weight layers; with the search record
    for the network's metadata."""
    from .bitmask import BitmaskWeights, parse_patterns, search_masks

    fixed = parse_patterns(opts.patterns)
    convs = [n.name for n in graph.nodes if n.op == "conv2d"]
    layers = [n.name for n in graph.nodes if n.op in ("conv2d", "linear")]
    unknown = sorted(set(fixed) - set(convs))
    if unknown:
        raise QuantizationError(f"--pattern names {', '.join(unknown)}, not a conv layer of "
                                f"the model (conv layers: {', '.join(convs) or 'none'})")
    try:
        result = search_masks(graph, dataset, active=opts.wbits, span=opts.resolved_span(),
                              rounding=opts.rounding, fixed=fixed,
                              same_pattern=opts.same_pattern, budget=opts.search_budget,
                              seed=opts.retrain.seed, log=log)
    except WeightQuantError as exc:
        raise QuantizationError(f"bitmask quantization failed: {exc}") from None
    quantizers = {n: BitmaskWeights(mask, opts.rounding) for n, mask in result.masks.items()}
    for n in layers:
        if n not in quantizers:
            quantizers[n] = make_quantizer("fixed", 8)
    record = result.to_json()
    record["other_layers"] = {n: "fixed 8-bit" for n in layers if n not in result.masks}
    return quantizers, record


def quantize_graph(graph, dataset, x_cal, opts: QuantOptions, *, name="network",
                   metadata=None, log=None):
    """Quantize ``graph`` as ``opts`` says; returns ``(network, history)``.

    ``history`` is the per-step accuracy (float activations) of the schedule, empty for
    post-training quantization. Raises :class:`QuantizationError` for bad options or models.
    """
    check_options(opts)
    # Unset retraining fields take the schedule's defaults (options.SCHEDULE_RETRAIN).
    opts = dataclasses.replace(
        opts, retrain=opts.retrain.resolved(opts.resolved_schedule() or "simple"))
    names = _check_graph(graph)
    widths = resolve_layer_bits(opts, names)  # per-layer widths (mixed precision)
    meta = {**(metadata or {}), "quantization": opts.to_json()}
    if opts.method == "binary":  # its own network: BatchNorm on the binary accumulators
        from .binary import quantize_binary

        return quantize_binary(graph, dataset, x_cal, opts, name=name, metadata=meta, log=log)
    if opts.method == "bdcnn":  # post-training decomposition, no retraining
        from .bdcnn import quantize_bdcnn

        net = quantize_bdcnn(graph, x_cal, basis=opts.wbits, qbits=opts.abits,
                             coef_bits=opts.resolved_coef_bits(), restarts=opts.restarts,
                             seed=opts.retrain.seed, name=name, metadata=meta,
                             calib_percentile=opts.calib_percentile, log=log,
                             range_mode=opts.range_mode)
        return net, []
    schedule = opts.resolved_schedule()
    if opts.method == "fixed" and schedule is None:
        net = quantize_fixed(graph, x_cal, wbits=opts.wbits, abits=opts.abits, name=name,
                             metadata=meta, granularity=opts.resolved_granularity(),
                             calib_percentile=opts.calib_percentile,
                             layer_bits=widths if opts.layer_bits else None)
        return net, []

    last = names[-1]
    edge = {names[0], last} if opts.resolved_edge_layers() == "fixed8" else set()
    quantizers = {}
    if opts.method == "bitmask":  # post-training, masks searched per conv layer
        quantizers, meta["bitmask"] = _bitmask_quantizers(graph, dataset, opts, log)
    from .template import lower_templates, template_channels, templated_layers

    templated = templated_layers(graph)
    if templated:
        meta["templates"] = templated
    for n in templated:  # the non-template channels of a templated layer: fixed point
        if opts.method != "fixed":
            quantizers[n] = make_quantizer("fixed", 8)
    for n in names:
        if n in quantizers:
            continue
        # The logits layer has no requantizer to absorb per-channel scales: one α there.
        gran = "layer" if n == last else opts.resolved_granularity()
        quantizers[n] = (make_quantizer("fixed", 8) if n in edge else
                         make_quantizer(opts.method, widths[n], variant=opts.ternary,
                                        granularity=gran, tie=opts.tie))
    if schedule is None:  # one shot: quantize all, no retraining
        schedule_cfg = dataclasses.replace(opts.retrain, epochs=0)
        schedule = "simple"
    else:
        schedule_cfg = opts.retrain
    try:
        qgraph, states, history = run_schedule(graph, dataset, quantizers, schedule=schedule,
                                               cfg=schedule_cfg,
                                               portions=opts.resolved_portions(),
                                               partition=opts.partition, log=log,
                                               x_cal=x_cal, abits=opts.abits,
                                               calib_percentile=opts.calib_percentile)
    except WeightQuantError as exc:
        raise QuantizationError(f"{opts.method} quantization failed: {exc}") from None

    graph_nodes = {n.name: n for n in graph.nodes}

    def lowered(node):
        state = states[node.name]
        try:
            low = quantizers[node.name].lower(state.get("quantized", node.weight), state)
        except WeightQuantError as exc:
            raise QuantizationError(f"Layer '{node.name}': {exc}; use more weight bits") from None
        scale = low.channel_scale
        if "gain" in state:  # the re-fitted per-channel scale (folded BatchNorm re-estimated)
            scale = state["gain"] * (1.0 if scale is None else scale)
        args = {"weight": low.weight, "weight_bits": low.weight_bits,
                "weight_frac": low.weight_frac, "encoding": low.encoding,
                "kind_data": low.kind_data, "channel_scale": scale}
        if node.name in templated:  # the exact templates of the float model, not retrained
            args = lower_templates(graph_nodes[node.name], args,
                                   template_channels(graph_nodes[node.name]))
        return args

    net = build_network(qgraph, x_cal, abits=opts.abits, weight_quantizer=lowered, name=name,
                        metadata=meta, calib_percentile=opts.calib_percentile)
    return net, history
