"""Golden test vectors: integer tensors from the golden model as packed stream words.

Uses :mod:`hwquant.layout` (the one bit-order definition) for every stream of a
:class:`hwquant.hw.network.NetworkTop`: the input, the per-layer probes and the output.
Every function comes twice: ``*_words`` gives lists of Python ints, ``*_packed`` the same
words as a ``(beats, nbytes)`` uint8 array of little-endian bytes
(:func:`hwquant.layout.pack_lanes_array`), computed with whole-array NumPy operations; the
bulk simulator takes those directly.
"""

import numpy as np

from . import ir
from .layout import batch_to_beats, pack_fields_array, pack_lanes_array, packed_to_ints

__all__ = ["input_words", "layer_words", "output_words", "expected_words", "input_packed",
           "layer_packed", "output_packed", "expected_packed"]


def input_packed(net: ir.Network, x) -> np.ndarray:
    """Packed input beats for a batch ``x`` of integer images, image after image."""
    return pack_lanes_array(batch_to_beats(np.asarray(x)), net.input_format.bits)


def layer_packed(net: ir.Network, name: str, values, lanes: int | None = None) -> np.ndarray:
    """Packed beats of ``lanes`` channels (default: all) of layer ``name``'s output for a
    batch (its golden values)."""
    return pack_lanes_array(batch_to_beats(np.asarray(values), lanes),
                            net.layer(name).out_format.bits)


def output_packed(net: ir.Network, logits) -> np.ndarray:
    """Packed ``{cls, logits}`` beats: class index (argmax, ties low) in the LSBs."""
    out = net.output
    cls_bits = max(1, (out.out_channels - 1).bit_length())
    logits = np.asarray(logits)
    logits = logits.reshape(len(logits), -1)
    cls = np.argmax(logits, axis=1) if logits.shape[1] else np.zeros(len(logits), np.int64)
    lanes = [logits[:, i] for i in range(logits.shape[1])]
    return pack_fields_array([cls] + lanes, [cls_bits] + [out.out_format.bits] * len(lanes))


def expected_packed(net: ir.Network, golden_outputs: dict, probe_layers=()) -> dict:
    """:func:`expected_words` as packed arrays."""
    exp = {"o_stream": output_packed(net, golden_outputs[net.output.name])}
    lanes = probe_layers if isinstance(probe_layers, dict) else {}
    for name in probe_layers:
        exp[f"probe_{name}"] = layer_packed(net, name, golden_outputs[name], lanes.get(name))
    return exp


def input_words(net: ir.Network, x) -> list:
    """Packed input beats for a batch ``x`` of integer images, image after image."""
    return packed_to_ints(input_packed(net, x))


def layer_words(net: ir.Network, name: str, values, lanes: int | None = None) -> list:
    """Packed beats of ``lanes`` channels (default: all) of layer ``name``'s output for a
    batch (its golden values)."""
    return packed_to_ints(layer_packed(net, name, values, lanes))


def output_words(net: ir.Network, logits) -> list:
    """Packed ``{cls, logits}`` beats: class index (argmax, ties low) in the LSBs."""
    return packed_to_ints(output_packed(net, logits))


def expected_words(net: ir.Network, golden_outputs: dict, probe_layers=()) -> dict:
    """``{"o_stream": [...], "probe_<layer>": [...]}`` from :func:`hwquant.golden.run`;
    ``probe_layers`` names the probed layers, or maps each to its stream's lane count."""
    return {k: packed_to_ints(v)
            for k, v in expected_packed(net, golden_outputs, probe_layers).items()}
