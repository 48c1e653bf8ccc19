"""One entry point for every weight quantization method: quantizer + schedule + lowering.

:func:`quantize_graph` takes a float graph and a data set, quantizes the weights of every
conv/linear layer with the method's quantizer (:mod:`hwquant.quant.weights`) under a schedule
(:mod:`hwquant.quant.schedules`), then calibrates the activations and lowers everything into
the IR (:func:`hwquant.quant.fixed.build_network`).

Defaults per method: ``fixed`` is post-training (no schedule); ``inq`` uses the
``incremental`` schedule with the INQ portions; ``ternary`` uses ``simple`` (TWN trains with
the straight-through estimator).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .fixed import QuantizationError, _check_bits, build_network, quantize_fixed
from .schedules import DEFAULT_PORTIONS, PARTITIONS, SCHEDULES, RetrainConfig, run_schedule
from .weights import METHOD_BITS, WeightQuantError, make_quantizer

__all__ = ["QuantOptions", "quantize_graph", "METHODS", "DEFAULT_SCHEDULE", "check_portions"]

METHODS = ("fixed", "inq", "ternary")
DEFAULT_SCHEDULE = {"fixed": None, "inq": "incremental", "ternary": "simple"}


@dataclass
class QuantOptions:
    """Everything that selects a quantization (CLI flags map one to one)."""

    method: str = "fixed"
    wbits: int = 8
    abits: int = 8
    #: None: the method's default (:data:`DEFAULT_SCHEDULE`); "none": post-training only.
    schedule: str | None = None
    portions: tuple = DEFAULT_PORTIONS
    partition: str = "magnitude"
    ternary: str = "twn"  # twn | ttq
    granularity: str = "layer"  # layer | channel (TWN α)
    tie: str = "paper"
    retrain: RetrainConfig = field(default_factory=RetrainConfig)

    def resolved_schedule(self):
        s = DEFAULT_SCHEDULE[self.method] if self.schedule is None else self.schedule
        return None if s == "none" else s

    def to_json(self) -> dict:
        d = {"method": self.method, "wbits": self.wbits, "abits": self.abits,
             "schedule": self.resolved_schedule() or "none"}
        if d["schedule"] == "incremental":
            d.update(portions=list(self.portions), partition=self.partition)
        if self.method == "ternary":
            d.update(ternary=self.ternary, granularity=self.granularity)
        if self.method == "inq":
            d["tie"] = self.tie
        if d["schedule"] != "none":
            r = self.retrain
            d["retrain"] = {"epochs": r.epochs, "lr": r.lr, "batch_size": r.batch_size,
                            "weight_decay": r.weight_decay, "seed": r.seed, "optimizer": "adam"}
        return d


def check_portions(portions) -> tuple:
    """Accumulated portions must increase strictly and end at 1.0 (INQ σ_1 < … < σ_N = 1)."""
    try:
        p = tuple(float(v) for v in portions)
    except (TypeError, ValueError):
        raise QuantizationError(f"Portions must be numbers, not {portions!r}") from None
    if not p or p[-1] != 1.0 or any(b <= a for a, b in zip(p, p[1:])) or p[0] <= 0:
        raise QuantizationError(f"Portions must increase strictly from above 0 and end at 1.0 "
                                f"(e.g. 0.5,0.75,0.875,1.0), not {','.join(map(str, p))}")
    return p


def check_options(opts: QuantOptions) -> None:
    """Reject bad options before any work is done (clear message, which option)."""
    if opts.method not in METHODS:
        raise QuantizationError(f"Quantization method must be one of {', '.join(METHODS)}, "
                                f"not {opts.method!r}")
    lo, hi = METHOD_BITS[opts.method]
    if opts.method == "ternary" and opts.wbits != 2:
        raise QuantizationError(f"Ternary weights have 2 bits (sign and zero); --bits "
                                f"{opts.wbits} is not allowed (use --method inq for more)")
    _check_bits(f"Weight width for {opts.method}", opts.wbits, lo, hi)
    _check_bits("Activation width", opts.abits)
    schedule = opts.resolved_schedule()
    if schedule is not None and schedule not in SCHEDULES:
        raise QuantizationError(f"Schedule must be one of {', '.join(SCHEDULES)} or none, "
                                f"not {schedule!r}")
    check_portions(opts.portions)
    if opts.partition not in PARTITIONS:
        raise QuantizationError(f"Partition must be one of {', '.join(PARTITIONS)}, not "
                                f"{opts.partition!r}")
    if opts.ternary not in ("twn", "ttq"):
        raise QuantizationError(f"Ternary variant must be twn or ttq, not {opts.ternary!r}")
    if opts.granularity not in ("layer", "channel"):
        raise QuantizationError(f"Ternary scale granularity must be layer or channel, not "
                                f"{opts.granularity!r}")
    if opts.tie not in ("paper", "caffe"):
        raise QuantizationError(f"INQ tie rule must be paper or caffe, not {opts.tie!r}")
    r = opts.retrain
    if not isinstance(r.epochs, int) or r.epochs < 0:
        raise QuantizationError(f"Retraining epochs must be an integer >= 0, not {r.epochs!r}")


def _check_graph(graph):
    layers = [n for n in graph.nodes if n.op in ("conv2d", "linear")]
    if not layers:
        raise QuantizationError("The model has no weight layers (conv2d or linear) to quantize")
    for node in layers:
        if not np.any(np.asarray(node.weight)):
            raise QuantizationError(f"Layer '{node.name}': all weights are zero; nothing to "
                                    f"quantize (remove the layer or retrain the model)")
    return [n.name for n in layers]


def quantize_graph(graph, dataset, x_cal, opts: QuantOptions, *, name="network",
                   metadata=None, log=None):
    """Quantize ``graph`` as ``opts`` says; returns ``(network, history)``.

    ``history`` is the per-step accuracy (float activations) of the schedule, empty for
    post-training quantization. Raises :class:`QuantizationError` for bad options or models.
    """
    check_options(opts)
    names = _check_graph(graph)
    meta = {**(metadata or {}), "quantization": opts.to_json()}
    schedule = opts.resolved_schedule()
    if opts.method == "fixed" and schedule is None:
        net = quantize_fixed(graph, x_cal, wbits=opts.wbits, abits=opts.abits, name=name,
                             metadata=meta)
        return net, []

    last = names[-1]
    quantizers = {}
    for n in names:
        # The logits layer has no requantizer to absorb per-channel scales: one α there.
        gran = "layer" if n == last else opts.granularity
        quantizers[n] = make_quantizer(opts.method, opts.wbits, variant=opts.ternary,
                                       granularity=gran, tie=opts.tie)
    if schedule is None:  # one shot: quantize all, no retraining
        schedule_cfg = RetrainConfig(**{**opts.retrain.__dict__, "epochs": 0})
        schedule = "simple"
    else:
        schedule_cfg = opts.retrain
    try:
        qgraph, states, history = run_schedule(graph, dataset, quantizers, schedule=schedule,
                                               cfg=schedule_cfg, portions=opts.portions,
                                               partition=opts.partition, log=log)
    except WeightQuantError as exc:
        raise QuantizationError(f"{opts.method} quantization failed: {exc}") from None

    def lowered(node):
        try:
            low = quantizers[node.name].lower(node.weight, states[node.name])
        except WeightQuantError as exc:
            raise QuantizationError(f"Layer '{node.name}': {exc}; use more weight bits") from None
        return {"weight": low.weight, "weight_bits": low.weight_bits,
                "weight_frac": low.weight_frac, "encoding": low.encoding,
                "sign_scales": low.sign_scales, "channel_scale": low.channel_scale}

    net = build_network(qgraph, x_cal, abits=opts.abits, weight_quantizer=lowered, name=name,
                        metadata=meta)
    return net, history
