"""Post-training fixed-point quantization (the ``fixed`` kind) of a float graph into the IR.

Weights: signed ``wbits`` integers with one power-of-two scale per layer,
``W = sat(RHU(w * 2**f_w))``, ``f_w = floor(log2((2**(wbits-1) - 1) / max|w|))``.
Activations: ``abits`` integers with one power-of-two scale per tensor, chosen by calibration
(``docs/arithmetic.md``, section Quantization): ``f = floor(log2(hi / a_max))``, unsigned after a
ReLU, signed otherwise. Bias at accumulator scale. The last layer leaves raw ``ACC + B`` logits.
"""

from __future__ import annotations

import math

import numpy as np

from .. import ir
from ..errors import HwquantError
from .grid import frac_for_range, quantize_to_grid

__all__ = ["quantize_fixed", "QuantizationError", "activation_format", "input_format",
           "weight_layer", "build_network", "calibrated_range", "channel_fixed_weights",
           "BIAS_LIMIT_BITS", "check_bits"]

#: Fraction bits never exceed this (keeps shifts and test vectors sane for dead layers).
MAX_FRAC = 24


class QuantizationError(HwquantError, ValueError):
    """The model or the options cannot be quantized as asked."""


def calibrated_range(values, percentile=None) -> float:
    """The magnitude an activation format must cover for calibration ``values``: their
    largest magnitude, or with ``percentile`` (in (0, 100]) that percentile of the magnitudes
    (outliers above it saturate; ``quantize`` reports how many)."""
    mag = np.abs(np.asarray(values, dtype=np.float64)).ravel()
    if not mag.size:
        return 0.0
    if percentile is None or percentile >= 100:
        return float(mag.max())
    return float(np.percentile(mag, percentile))


def activation_format(a_max: float, bits: int, signed: bool, *, max_frac: int = MAX_FRAC):
    """Power-of-two activation format covering ``[-a_max, a_max]`` (or ``[0, a_max]``)."""
    hi = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1
    return ir.ActFormat(bits=bits, signed=signed, frac=frac_for_range(a_max, hi, max_frac))


def input_format(x_cal, bits: int, percentile=None) -> ir.ActFormat:
    """Format of the network input: signed when the calibration data has negative values."""
    x = np.asarray(x_cal, dtype=np.float64)
    return activation_format(calibrated_range(x, percentile), bits, bool((x < 0).any()))


def check_bits(name, value, lo=2, hi=16):
    """Raise :class:`QuantizationError` unless ``value`` is an integer in ``lo..hi``."""
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise QuantizationError(f"{name} must be an integer in {lo}..{hi}, not {value!r}")


def _quantize_weights(node, wbits):
    w = np.asarray(node.weight, dtype=np.float64)
    w_max = float(np.abs(w).max()) if w.size else 0.0
    if w_max == 0.0:
        raise QuantizationError(f"Layer '{node.name}': all weights are zero; nothing to quantize")
    whi = (1 << (wbits - 1)) - 1
    f_w = frac_for_range(w_max, whi, MAX_FRAC)
    return quantize_to_grid(w, f_w, -whi - 1, whi), f_w


#: Requantization multipliers (a real channel scale folded into the epilogue) get this many
#: bits of magnitude: signed 16-bit ``M`` (``docs/arithmetic.md``).
MULT_BITS = 15


def _scale_multipliers(scale, name):
    """``(M, k)`` with ``M = RHU(scale * 2**k)`` < 2**MULT_BITS for per-channel real scales."""
    scale = np.asarray(scale, dtype=np.float64)
    if not np.all(scale > 0):
        raise QuantizationError(f"Layer '{name}': weight scales must be positive")
    k = frac_for_range(float(scale.max()), (1 << MULT_BITS) - 1, 40)
    mult = np.floor(scale * math.ldexp(1.0, k) + 0.5).astype(np.int64)
    if np.any(mult == 0):
        c = int(np.argmin(mult))
        raise QuantizationError(
            f"Layer '{name}': channel {c}'s weight scale is {scale[c] / scale.max():.3g} of the "
            f"largest; its {MULT_BITS + 1}-bit requantization multiplier would be 0 (the channel "
            f"silenced); use one scale per layer or retrain the model")
    return mult, k


#: Largest bias magnitude at accumulator scale: ``ACC + B`` must stay within the IR's
#: ``MAX_BITS``-bit accumulator whatever the products add (one bit of headroom for them).
BIAS_LIMIT_BITS = ir.MAX_BITS - 2


def _bias_at_accumulator_scale(name, bias, acc_frac) -> np.ndarray:
    """``RHU(bias * 2**acc_frac)`` exactly (never clipped); refused, naming the layer and the
    channel, when it cannot be stored."""
    scaled = np.asarray(bias, dtype=np.float64) * math.ldexp(1.0, acc_frac)
    limit = float(1 << BIAS_LIMIT_BITS)
    if np.any(~np.isfinite(scaled)) or np.any(np.abs(scaled) >= limit):
        c = int(np.argmax(np.where(np.isfinite(scaled), np.abs(scaled), np.inf)))
        raise QuantizationError(
            f"Layer '{name}': bias {float(np.asarray(bias)[c]):.6g} of channel {c} needs "
            f"{abs(scaled[c]):.3g} at the accumulator scale 2^-{acc_frac}, beyond the "
            f"{ir.MAX_BITS}-bit accumulator (at most 2^{BIAS_LIMIT_BITS}); the layer's weights are "
            f"tiny next to its bias: rescale the layer (its BatchNorm) or use fewer weight or "
            f"activation bits")
    return np.floor(scaled + 0.5).astype(np.int64)


def weight_layer(node, in_fmt, out_fmt, *, weight, weight_bits, weight_frac, last,
                 encoding="fixed", kind_data=None, channel_scale=None):
    """IR conv/linear layer for a float ``node`` whose weights are already integers.

    ``channel_scale`` (per output channel, real, e.g. ternary α) multiplies the integer
    weights; it is folded into the requantization multiplier, and the bias is divided by it.
    The logits layer (no requantization) accepts only one scale for all channels.
    """
    acc_frac = in_fmt.frac + weight_frac
    bias = np.zeros(weight.shape[0]) if node.bias is None else np.asarray(node.bias)
    scale = (np.ones(weight.shape[0]) if channel_scale is None
             else np.broadcast_to(np.asarray(channel_scale, dtype=np.float64),
                                  (weight.shape[0],)))
    if last and np.ptp(scale) > 0:
        raise QuantizationError(f"Layer '{node.name}': the logits layer needs one weight scale "
                                f"for all channels (argmax compares them)")
    b_int = _bias_at_accumulator_scale(node.name, bias / scale, acc_frac)
    common = {"name": node.name, "inputs": tuple(node.inputs), "in_format": in_fmt,
              "weight": weight, "weight_bits": weight_bits, "weight_frac": weight_frac,
              "bias": b_int, "encoding": encoding, "kind_data": kind_data}
    if last:
        lo, hi = ir.matrix_range(weight.reshape(weight.shape[0], -1), b_int, in_fmt)
        bits = ir.signed_bits_for(int(lo.min()), int(hi.max()))
        if bits > ir.MAX_BITS:
            raise QuantizationError(f"Layer '{node.name}': logits need {bits} bits, more than "
                                    f"{ir.MAX_BITS}; use fewer weight or activation bits")
        out_fmt, epilogue = ir.ActFormat(bits, True, acc_frac), ir.Logits()
    else:
        mult, k = ((np.ones(weight.shape[0], dtype=np.int64), 0) if channel_scale is None
                   else _scale_multipliers(scale, node.name))
        shift = acc_frac + k - out_fmt.frac
        if abs(shift) > ir.REQUANT_MAX_SHIFT:
            raise QuantizationError(
                f"Layer '{node.name}': its requantization shift would be {shift} (at most "
                f"+-{ir.REQUANT_MAX_SHIFT}): the output range is far from the accumulator's; "
                f"check the layer for dead or exploding activations")
        epilogue = ir.Requant(mult, shift, 0 if node.relu else out_fmt.lo, out_fmt.hi)
    if node.op == "conv2d":
        return ir.Conv2d(in_shape=node.in_shape, stride=node.stride, padding=node.padding,
                         epilogue=epilogue, out_format=out_fmt, **common)
    return ir.Linear(epilogue=epilogue, out_format=out_fmt, **common)


def _avg_requant(window: int, relu: bool, fmt: ir.ActFormat) -> ir.Requant:
    if window & (window - 1) == 0:
        mult, shift = 1, window.bit_length() - 1
    else:  # 1/window as M / 2**shift with 16 significant bits
        shift = 15 + math.ceil(math.log2(window))
        mult = (2 * (1 << shift) + window) // (2 * window)  # RHU(2**shift / window)
    return ir.Requant([mult], shift, 0 if relu else fmt.lo, fmt.hi)


def build_network(graph, x_cal, *, abits, weight_quantizer, name="network", metadata=None,
                  calib_percentile=None):
    """Walk ``graph`` and build the IR with calibrated activation formats.

    ``weight_quantizer(node) -> (int_weights, weight_bits, weight_frac, encoding)`` supplies the
    method-specific weights (fixed point here; other kinds reuse this walk). It may instead
    return a dict of :func:`weight_layer` keyword arguments (``weight``, ``weight_bits``,
    ``weight_frac``, ``encoding``, ``kind_data``, ``channel_scale``). ``calib_percentile``
    calibrates every activation range at that percentile of the magnitudes instead of the
    maximum (:func:`calibrated_range`).
    """
    check_bits("Activation width", abits)
    acts = graph.run(np.asarray(x_cal, dtype=np.float64))
    fmts = {ir.INPUT: input_format(x_cal, abits, calib_percentile)}
    layers = []
    last = graph.nodes[-1].name
    for node in graph.nodes:
        in_fmt = fmts[node.inputs[0]]
        out = acts[node.name]
        signed = not node.relu and bool((out < 0).any())
        out_fmt = activation_format(calibrated_range(out, calib_percentile), abits, signed)
        if node.op in ("conv2d", "linear"):
            lowered = weight_quantizer(node)
            if not isinstance(lowered, dict):
                lowered = dict(zip(("weight", "weight_bits", "weight_frac", "encoding"),
                                   lowered, strict=True))
            layer = weight_layer(node, in_fmt, out_fmt, last=node.name == last, **lowered)
        elif node.op == "maxpool2d":
            layer = ir.MaxPool2d(node.name, tuple(node.inputs), node.in_shape, node.kernel,
                                 node.stride, node.padding, in_fmt)
        elif node.op == "avgpool2d":
            win = node.kernel[0] * node.kernel[1]
            layer = ir.AvgPool2d(node.name, tuple(node.inputs), node.in_shape, node.kernel,
                                 node.stride, node.padding, in_fmt, out_format=in_fmt,
                                 requant=_avg_requant(win, node.relu, in_fmt))
        elif node.op == "flatten":
            layer = ir.Flatten(node.name, tuple(node.inputs), node.in_shape, in_fmt)
        elif node.op == "add":
            layer = ir.Add(node.name, tuple(node.inputs), node.in_shape,
                           tuple(fmts[s] for s in node.inputs), out_fmt, relu=node.relu)
        else:
            raise QuantizationError(f"Layer '{node.name}': no quantizer for op {node.op!r}")
        layers.append(layer)
        fmts[node.name] = layer.out_format
    if not any(isinstance(layer, (ir.Conv2d, ir.Linear)) for layer in layers):
        raise QuantizationError("The model has no weight layers (conv2d or linear) to quantize")
    if not isinstance(layers[-1], (ir.Conv2d, ir.Linear)):
        raise QuantizationError(f"Layer '{last}': the model must end in a conv2d or linear "
                                f"layer producing the logits")
    return ir.Network(name=name, input_shape=graph.input_shape, input_format=fmts[ir.INPUT],
                      layers=tuple(layers), metadata=dict(metadata or {}))


def channel_fixed_weights(node, wbits):
    """Per-output-channel fixed point: channel ``c`` gets its own power-of-two scale
    ``2**-f_c`` (from its largest magnitude); the IR keeps one weight fraction ``F = min f_c``
    and the factors ``2**(F - f_c)`` go into the requantization multiplier (``weight_layer``'s
    ``channel_scale``). A channel that is all zero takes the layer's scale."""
    w = np.asarray(node.weight, dtype=np.float64)
    whi = (1 << (wbits - 1)) - 1
    rows = np.abs(w.reshape(len(w), -1)).max(axis=1)
    if not rows.max() > 0:
        raise QuantizationError(f"Layer '{node.name}': all weights are zero; nothing to quantize")
    layer_frac = frac_for_range(float(rows.max()), whi, MAX_FRAC)
    fracs = np.array([frac_for_range(float(r), whi, MAX_FRAC) if r > 0 else layer_frac
                      for r in rows])
    base = int(fracs.min())
    shape = (-1,) + (1,) * (w.ndim - 1)
    ints = np.clip(np.floor(w * np.exp2(fracs).reshape(shape) + 0.5), -whi - 1, whi)
    return {"weight": ints.astype(np.int64), "weight_bits": wbits, "weight_frac": base,
            "encoding": "fixed", "channel_scale": np.exp2(base - fracs)}


def quantize_fixed(graph, x_cal, *, wbits: int, abits: int, name="network", metadata=None,
                   granularity="layer", calib_percentile=None, layer_bits=None):
    """Post-training fixed-point quantization of a float graph; returns an IR network.

    ``granularity="channel"`` gives every output channel of the hidden layers its own
    power-of-two scale (:func:`channel_fixed_weights`; the logits layer keeps one, its
    channels are compared by the arg-max). ``layer_bits`` (``{layer: bits}``) gives the
    layers it names their own weight width (mixed precision), the others have ``wbits``."""
    check_bits("Weight width", wbits)
    widths = dict(layer_bits or {})
    for layer, bits in widths.items():
        check_bits(f"Weight width of layer '{layer}'", bits)
    last = graph.nodes[-1].name

    from .template import lower_templates, template_channels, templated_layers

    templated = templated_layers(graph)

    def fixed_weights(node):
        bits = widths.get(node.name, wbits)
        if granularity == "channel" and node.name != last:
            low = channel_fixed_weights(node, bits)
        else:
            w, f_w = _quantize_weights(node, bits)
            low = {"weight": w, "weight_bits": bits, "weight_frac": f_w, "encoding": "fixed"}
        if node.name in templated:  # HLAC template kernels: the template encoding
            low = lower_templates(node, low, template_channels(node))
        return low

    meta = {"method": "fixed", "wbits": wbits, "abits": abits, **(metadata or {})}
    if templated:
        meta["templates"] = templated
    return build_network(graph, x_cal, abits=abits, weight_quantizer=fixed_weights, name=name,
                         metadata=meta, calib_percentile=calib_percentile)
