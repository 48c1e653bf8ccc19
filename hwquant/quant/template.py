"""Template kernels survive quantization: the ``template`` encoding of a conv layer.

With any weight method, a conv layer of the float graph whose channels include HLAC template
kernels (:func:`hwquant.templates.find_templates`: exactly ``+v`` / ``-v`` on a 3x3 mask,
the same pattern on every input channel; a BatchNorm folded into the kernel only scales
``v`` and may flip the sign) is lowered as the ``template`` kind:

* template channel ``c``: integer weights ``s_c * (2 * mask - 1)`` (``+-1``), and its real
  magnitude ``v_c`` goes into the requantization multiplier as a channel scale
  ``v_c * 2**f_w`` (the bias is divided by it), so the channel computes
  ``v_c * (2 * sum_on x - sum x)`` exactly up to the 16-bit multiplier;
* the other channels of the layer: ``fixed`` integers of the method's lowering when the method
  is ``fixed`` (its width and scales), 8-bit ``fixed`` otherwise (as bitmask and ternary do for
  the layers they leave in fixed point).

The logits layer (no requantization to hold ``v``) and layers reading bipolar inputs keep
their method's encoding. Retraining schedules train the layer with its method's quantized
copy of the templates; the lowering restores the exact templates.
"""

from __future__ import annotations

import numpy as np

from .. import ir
from ..templates import find_templates, masks
from .grid import frac_for_range, quantize_to_grid

__all__ = ["template_channels", "lower_templates", "templated_layers", "FIXED_BITS"]

#: Width of the non-template channels of a templated layer under a method other than fixed.
FIXED_BITS = 8

#: Largest fraction of a templated layer's weights (as in the fixed quantizer).
_MAX_FRAC = 24


def template_channels(node):
    """``(ids, signs, scales)`` of a float conv node (see :func:`find_templates`), or
    ``None`` when it has no template channel (or is not a 3x3 conv)."""
    if node.op != "conv2d":
        return None
    ids, signs, scales = find_templates(np.asarray(node.weight))
    return (ids, signs, scales) if any(t >= 0 for t in ids) else None


def _fixed8(node) -> dict:
    w = np.asarray(node.weight, dtype=np.float64)
    whi = (1 << (FIXED_BITS - 1)) - 1
    f_w = frac_for_range(float(np.abs(w).max()), whi, _MAX_FRAC)
    return {"weight": quantize_to_grid(w, f_w, -whi - 1, whi), "weight_bits": FIXED_BITS,
            "weight_frac": f_w, "encoding": "fixed", "kind_data": None, "channel_scale": None}


def lower_templates(node, lowered: dict, found) -> dict:
    """The :func:`hwquant.quant.fixed.weight_layer` arguments of a templated conv layer from
    the method's ``lowered`` arguments (replaced by 8-bit fixed point unless ``fixed``) and
    the float node's template channels ``found``."""
    if lowered.get("encoding", "fixed") != "fixed":
        lowered = _fixed8(node)
    lowered = dict(lowered)
    ids, signs, scales = found
    weight = np.array(lowered["weight"], dtype=np.int64)
    oc = weight.shape[0]
    base = lowered.get("channel_scale")
    scale = np.ones(oc) if base is None else np.array(np.broadcast_to(
        np.asarray(base, dtype=np.float64), (oc,)))
    table = masks()
    for c, (t, s, v) in enumerate(zip(ids, signs, scales, strict=True)):
        if t >= 0:
            weight[c] = s * (2 * table[t] - 1)
            scale[c] = v * 2.0 ** lowered["weight_frac"]
    lowered.update(weight=weight, encoding="template",
                   kind_data=ir.TemplateData(tuple(ids), tuple(signs)), channel_scale=scale)
    return lowered


def templated_layers(graph) -> dict:
    """The conv layers of a float graph that hold template kernels (not the logits layer):
    per layer name the template count and the ids per channel (``-1``: fixed channel), the
    record ``quantize`` keeps in the network's metadata."""
    last = graph.nodes[-1].name
    out = {}
    for node in graph.nodes:
        found = template_channels(node) if node.name != last else None
        if found:
            ids = found[0]
            out[node.name] = {"templates": sum(t >= 0 for t in ids), "template_ids": list(ids)}
    return out
