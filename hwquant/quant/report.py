"""Per-layer quantization report: what the quantizer did to each layer, measured, and the layers
that look wrong named with what usually helps.

For every conv/linear layer of the quantized network, on the calibration images (drawn from the
training split):

* ``zero_weights``: fraction of the layer's nonzero float weights whose integer is 0 (a few
  large weights set a per-layer scale so coarse that the rest vanish);
* ``saturated_outputs``: fraction of the float model's activations that fall outside the
  layer's output format (with ``--calib-percentile``, or when the format's fraction is capped);
* ``snr_db``: signal-to-noise ratio of the golden model's output (dequantized) against the float
  model's activation, ``10 log10(sum f^2 / sum (f - q)^2)``; ``None`` for bipolar outputs
  (a sign, not an approximation of the float value);

and for the network input, ``saturated_inputs``. :func:`unusual` turns rows past the thresholds
below into one line per layer. The float reference is the user's model as loaded (before any
retraining), so the numbers include what retraining changed.
"""

from __future__ import annotations

import math

import numpy as np

from .. import golden, ir
from .grid import quantize_to_grid

__all__ = ["ZERO_WEIGHTS", "SATURATION", "SNR_DB", "layer_report", "input_saturation",
           "unusual"]

#: A layer is named when more than this fraction of its weights round to zero (ternary and
#: binary encodings zero weights on purpose: only past 0.9 there).
ZERO_WEIGHTS = 0.5
#: ... or when more than this fraction of its outputs (or of the inputs) saturate ...
SATURATION = 0.01
#: ... or when its output is this close to noise (dB).
SNR_DB = 10.0

#: Calibration images the report runs through the golden model (enough for stable numbers).
REPORT_IMAGES = 256


def input_saturation(x, fmt: ir.ActFormat) -> float:
    """Fraction of the values of ``x`` (real) outside the input format's range."""
    x = np.asarray(x, dtype=np.float64)
    if not x.size:
        return 0.0
    scaled = x * math.ldexp(1.0, fmt.frac)
    return float(np.mean((scaled > fmt.hi + 0.5) | (scaled < fmt.lo - 0.5)))


def layer_report(graph, net, x_cal) -> dict:
    """``{"saturated_inputs": f, "layers": [row, ...]}`` (see the module docstring)."""
    x = np.asarray(x_cal, dtype=np.float64)[:REPORT_IMAGES]
    fmt = net.input_format
    codes = quantize_to_grid(x, fmt.frac, fmt.lo, fmt.hi)
    out = golden.run(net, codes)
    float_acts = graph.run(x)
    nodes = {node.name: node for node in graph.nodes}
    rows = []
    for layer in net.weight_layers:
        node = nodes.get(layer.name)
        if node is None or layer.name not in out or layer.name not in float_acts:
            continue
        row = {"name": layer.name, "encoding": layer.encoding,
               "weight_bits": layer.weight_bits}
        fw = np.asarray(node.weight)
        nonzero = fw != 0
        if fw.shape == layer.weight.shape and nonzero.any():
            row["zero_weights"] = round(float(np.mean(layer.weight[nonzero] == 0)), 4)
        f = np.asarray(float_acts[layer.name], dtype=np.float64).reshape(len(x), -1)
        ofmt = layer.out_format
        if isinstance(layer.epilogue, ir.Logits) or ofmt.bipolar:
            row["saturated_outputs"] = 0.0
        else:
            scaled = f * math.ldexp(1.0, ofmt.frac)
            row["saturated_outputs"] = round(float(np.mean((scaled > ofmt.hi + 0.5)
                                                           | (scaled < ofmt.lo - 0.5))), 4)
        if ofmt.bipolar:
            row["snr_db"] = None
        else:
            q = np.asarray(out[layer.name], dtype=np.float64).reshape(len(x), -1)
            q = q * math.ldexp(1.0, -ofmt.frac)
            noise = float(np.sum((f - q) ** 2))
            signal = float(np.sum(f ** 2))
            row["snr_db"] = (None if signal == 0 else
                             round(10 * math.log10(signal / noise), 1) if noise > 0 else math.inf)
        rows.append(row)
    return {"saturated_inputs": round(input_saturation(x, fmt), 4), "layers": rows}


def unusual(report) -> list:
    """One line per layer (and for the input) past the thresholds, naming what helps."""
    lines = []
    sat_in = report.get("saturated_inputs", 0.0)
    if sat_in > SATURATION:
        lines.append(f"input: {sat_in:.1%} of the calibration input values saturate the "
                     f"input format; calibrate on the maximum (no --calib-percentile) or use "
                     f"more activation bits")
    for row in report.get("layers", []):
        name = row["name"]
        intentional = row["encoding"] in ("pow2", "binary") and row["weight_bits"] <= 2
        zero = row.get("zero_weights", 0.0)
        if zero > (0.9 if intentional else ZERO_WEIGHTS):
            lines.append(f"layer '{name}': {zero:.0%} of its weights round to zero (a few large "
                         f"weights set its scale); try one scale per channel (--scale channel) "
                         f"or more weight bits")
        sat = row.get("saturated_outputs", 0.0)
        if sat > SATURATION:
            lines.append(f"layer '{name}': {sat:.1%} of its outputs saturate on the calibration "
                         f"images; raise --calib-percentile or use more activation bits")
        snr = row.get("snr_db")
        if snr is not None and snr < SNR_DB:
            lines.append(f"layer '{name}': its output is {snr:.1f} dB from the float model's "
                         f"(signal to noise); more bits, one scale per channel (--scale channel) "
                         f"or percentile calibration (--calib-percentile 99.9) usually help")
    return lines
