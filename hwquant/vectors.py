"""Golden test vectors: integer tensors from the golden model as packed stream words.

Uses :mod:`hwquant.layout` (the one bit-order definition) for every stream of a
:class:`hwquant.hw.network.NetworkTop`: the input, the per-layer probes and the output.
"""

import numpy as np

from . import ir
from .layout import pack_lanes, tensor_to_beats

__all__ = ["input_words", "layer_words", "output_words", "expected_words"]


def input_words(net: ir.Network, x) -> list:
    """Packed input beats for a batch ``x`` of integer images, image after image."""
    bits = net.input_format.bits
    return [pack_lanes(beat, bits) for img in np.asarray(x) for beat in tensor_to_beats(img)]


def layer_words(net: ir.Network, name: str, values, lanes: int | None = None) -> list:
    """Packed beats of ``lanes`` channels (default: all) of layer ``name``'s output for a
    batch (its golden values)."""
    bits = net.layer(name).out_format.bits
    return [pack_lanes(beat, bits) for t in np.asarray(values)
            for beat in tensor_to_beats(t, lanes)]


def output_words(net: ir.Network, logits) -> list:
    """Packed ``{cls, logits}`` beats: class index (argmax, ties low) in the LSBs."""
    out = net.output
    classes = out.out_channels
    cls_bits = max(1, (classes - 1).bit_length())
    logits = np.asarray(logits).reshape(len(logits), -1)
    words = []
    for row in logits:
        cls = int(np.argmax(row))
        words.append(cls | (pack_lanes(row, out.out_format.bits) << cls_bits))
    return words


def expected_words(net: ir.Network, golden_outputs: dict, probe_layers=()) -> dict:
    """``{"o_stream": [...], "probe_<layer>": [...]}`` from :func:`hwquant.golden.run`;
    ``probe_layers`` names the probed layers, or maps each to its stream's lane count."""
    exp = {"o_stream": output_words(net, golden_outputs[net.output.name])}
    lanes = probe_layers if isinstance(probe_layers, dict) else {}
    for name in probe_layers:
        exp[f"probe_{name}"] = layer_words(net, name, golden_outputs[name], lanes.get(name))
    return exp
