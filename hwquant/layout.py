"""The one definition of bit order: tensors <-> stream beats <-> packed integers.

Used by the hardware generator (weight order), the golden-vector writer and both simulator
drivers. Conventions:

* Streams are *folded*: a stream has a lane count ``L`` and carries ``L`` consecutive
  channels per beat. A feature map ``(C, H, W)`` (``L`` divides ``C``) streams pixel by
  pixel in raster order (row by row, left to right), each pixel as ``C / L`` beats of
  increasing channel chunks: lane ``j`` of chunk ``k`` is channel ``k*L + j``. With
  ``L = C`` a beat is a whole pixel.
* A vector ``(N,)`` is a ``1 x 1`` map of ``N`` channels: ``N / L`` beats.
* A sliding window of a ``(C, H, W)`` map with kernel ``(KH, KW)`` is the vector of
  ``KH*KW*C`` lanes in which lane ``(kh*KW + kw)*C + c`` holds channel ``c`` at kernel
  offset ``(kh, kw)`` (window-lane order); it streams folded like a vector, ``SIMD`` lanes
  per beat. Pooling reads windows in *channel order* instead: per chunk of ``L`` channels,
  the ``KH*KW`` kernel offsets in raster order, one beat each.
* Lanes pack into an integer with lane 0 in the least significant bits; each lane is
  ``bits`` wide, two's complement when signed (Amaranth ``data.ArrayLayout`` order).
"""

import numpy as np

__all__ = [
    "pack_lanes",
    "unpack_lanes",
    "tensor_to_beats",
    "beats_to_tensor",
    "conv_weight_matrix",
    "flatten_weight_matrix",
]


def pack_lanes(values, bits: int) -> int:
    """Pack integers (lane 0 first) into one int, lane 0 in the LSBs, two's complement."""
    mask = (1 << bits) - 1
    word = 0
    for i, v in enumerate(np.asarray(values, dtype=np.int64).ravel().tolist()):
        word |= (v & mask) << (i * bits)
    return word


def unpack_lanes(word: int, bits: int, lanes: int, signed: bool) -> np.ndarray:
    """Inverse of :func:`pack_lanes`."""
    mask = (1 << bits) - 1
    out = []
    for i in range(lanes):
        v = (word >> (i * bits)) & mask
        if signed and v >> (bits - 1):
            v -= 1 << bits
        out.append(v)
    return np.array(out, dtype=np.int64)


def _check_lanes(channels: int, lanes) -> int:
    lanes = channels if lanes is None else int(lanes)
    if lanes < 1 or channels % lanes:
        raise ValueError(f"Stream lanes must divide the {channels} channels, not {lanes}")
    return lanes


def tensor_to_beats(x, lanes: int | None = None) -> np.ndarray:
    """One tensor (no batch axis) to its beats of ``lanes`` channels (default: all of them,
    one beat per pixel or a single beat for a vector): ``(beats, lanes)``."""
    x = np.asarray(x)
    if x.ndim == 3:
        c = x.shape[0]
        return x.transpose(1, 2, 0).reshape(-1, _check_lanes(c, lanes))
    if x.ndim == 1:
        return x.reshape(-1, _check_lanes(x.shape[0], lanes))
    raise ValueError(f"Tensors must be (C, H, W) or (N,), not shape {x.shape}")


def beats_to_tensor(beats, shape) -> np.ndarray:
    """Inverse of :func:`tensor_to_beats` (any lane count)."""
    beats = np.asarray(beats)
    if len(shape) == 3:
        c, h, w = shape
        return beats.reshape(h, w, c).transpose(2, 0, 1)
    return beats.reshape(shape)


def conv_weight_matrix(weight) -> np.ndarray:
    """Conv weights ``(OC, IC, KH, KW)`` as ``(OC, KH*KW*IC)`` in window-lane order."""
    w = np.asarray(weight)
    return w.transpose(0, 2, 3, 1).reshape(w.shape[0], -1)


def flatten_weight_matrix(weight, in_shape) -> np.ndarray:
    """Linear weights over a torch-flattened ``(C, H, W)`` map, reordered so that column
    ``(h*W + w)*C + c`` matches the window lane order of a ``(H, W)`` window."""
    c, h, w = in_shape
    wm = np.asarray(weight).reshape(-1, c, h, w)
    return wm.transpose(0, 2, 3, 1).reshape(wm.shape[0], -1)
