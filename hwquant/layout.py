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
    "pack_lanes_array",
    "pack_fields_array",
    "packed_to_ints",
    "unpack_lanes",
    "batch_to_beats",
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


def pack_fields_array(fields, widths) -> np.ndarray:
    """Vectorised packing of fields laid out from the LSBs up: field 0 in the lowest
    ``widths[0]`` bits, field 1 above it, and so on, each two's complement in its width.

    ``fields`` are integer arrays of one shape ``S`` (broadcast against each other); the
    result is ``S + (nbytes,)`` uint8, byte ``k`` holding bits ``8k .. 8k+7`` of the packed
    word (little-endian), ``nbytes = max(1, ceil(sum(widths) / 8))``. With equal widths this
    is :func:`pack_lanes` of every row (:func:`pack_lanes_array`).
    """
    widths = [int(w) for w in widths]
    if len(widths) != len(fields) or any(w < 0 for w in widths):
        raise ValueError("Fields need one non-negative width each")
    arrays = np.broadcast_arrays(*[np.asarray(f, dtype=np.int64) for f in fields]) \
        if fields else []
    lead = arrays[0].shape if arrays else ()
    total = sum(widths)
    limbs = np.zeros(lead + (max(1, -(-total // 64)),), dtype=np.uint64)
    offset = 0
    for values, width in zip(arrays, widths):
        low = values.astype(np.uint64)  # two's complement, modulo 2**64
        # Bits 64 and up of a wide field are the sign extension of the int64 value.
        sign = np.where(values < 0, np.uint64(0xFFFFFFFFFFFFFFFF), np.uint64(0))
        for chunk in range(0, width, 64):
            v = low if chunk == 0 else sign
            bits = min(64, width - chunk)
            if bits < 64:
                v = v & np.uint64((1 << bits) - 1)
            limb, shift = divmod(offset + chunk, 64)
            limbs[..., limb] |= v << np.uint64(shift)
            if shift and shift + bits > 64:
                limbs[..., limb + 1] |= v >> np.uint64(64 - shift)
        offset += width
    nbytes = max(1, -(-total // 8))
    return limbs.astype("<u8").view(np.uint8)[..., :nbytes]


def pack_lanes_array(values, bits: int) -> np.ndarray:
    """:func:`pack_lanes` of every row of ``values`` (lanes on the last axis), vectorised.

    Returns ``values.shape[:-1] + (nbytes,)`` uint8: the little-endian bytes of each packed
    word (see :func:`pack_fields_array`); :func:`packed_to_ints` turns them into ints.
    """
    values = np.asarray(values, dtype=np.int64)
    bits = int(bits)
    lanes = values.shape[-1]
    if bits in (8, 16, 32, 64) and lanes:
        # Byte-aligned lanes: the little-endian bytes of every lane, in lane order.
        raw = values.astype(f"<u{bits // 8}")
        return np.ascontiguousarray(raw).view(np.uint8).reshape(values.shape[:-1] + (-1,))
    return pack_fields_array([values[..., i] for i in range(lanes)], [bits] * lanes) \
        if lanes else np.zeros(values.shape[:-1] + (1,), dtype=np.uint8)


def packed_to_ints(packed) -> list:
    """Python ints of little-endian packed words (rows of :func:`pack_lanes_array`)."""
    packed = np.asarray(packed, dtype=np.uint8)
    packed = packed.reshape(-1, packed.shape[-1])
    nbytes = packed.shape[1]
    if nbytes <= 8:
        padded = np.zeros((len(packed), 8), dtype=np.uint8)
        padded[:, :nbytes] = packed
        return padded.view("<u8")[:, 0].tolist()
    return [int.from_bytes(row, "little") for row in map(bytes, packed)]


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


def batch_to_beats(x, lanes: int | None = None) -> np.ndarray:
    """:func:`tensor_to_beats` of every tensor of a batch ``(N, C, H, W)`` or ``(N, F)``,
    concatenated in batch order: ``(N * beats, lanes)``."""
    x = np.asarray(x)
    if x.ndim == 4:
        return x.transpose(0, 2, 3, 1).reshape(-1, _check_lanes(x.shape[1], lanes))
    if x.ndim == 2:
        return x.reshape(-1, _check_lanes(x.shape[1], lanes))
    raise ValueError(f"Batches must be (N, C, H, W) or (N, F), not shape {x.shape}")


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
