"""Golden inner product of the ``pow2`` arithmetic kind: power-of-two weights, shifts only.

A ``pow2`` weight of ``b`` code bits (``b`` in 2..8) is zero or ``+P * 2**e`` / ``-N * 2**e``
with ``e`` in ``0 .. 2**(b-2) - 1`` (INQ: Zhou et al., "Incremental Network Quantization", 2017, §2.1; ``b = 2`` is ternary). ``P`` and
``N`` are the ``sign_scales`` of the layer's kind data (:class:`hwquant.ir.Pow2Data`): ``(1, 1)`` for INQ and TWN, two integers for the
asymmetric ternary (TTQ) layers. The code word of one weight, ``b`` bits::

    [ z | s | e ]     z = bit b-1: zero flag, s = bit b-2: sign (1 = negative),
                      e = bits b-3..0: exponent (absent when b = 2)

A zero weight is code ``z = 1, s = 0, e = 0``. The inner product is defined on the codes::

    ACC = P * sum_{s_i = 0, z_i = 0} (X_i << e_i)  -  N * sum_{s_i = 1, z_i = 0} (X_i << e_i)

which equals ``sum_i W_i * X_i`` for the integer weights the IR stores (tests prove it).
"""

import numpy as np

from ..layout import conv_weight_matrix
from .exact import fast_enabled, matmul

__all__ = ["dot", "encode", "decode", "exponent_bits"]


def exponent_bits(bits: int) -> int:
    """Width of the exponent field of a ``bits``-bit code (0 for ternary)."""
    return max(int(bits) - 2, 0)


def _magnitudes(weight, sign_scales):
    w = np.asarray(weight, dtype=np.int64)
    p, n = sign_scales
    return w, np.where(w > 0, w // p, np.where(w < 0, -w // n, 0))


def encode(weight, bits: int, sign_scales=(1, 1)) -> np.ndarray:
    """Code words (``[z | s | e]``, int64) of integer ``pow2`` weights (any shape)."""
    w, mag = _magnitudes(weight, sign_scales)
    e = np.zeros_like(mag)
    nz = mag > 0
    e[nz] = np.log2(mag[nz]).round().astype(np.int64)
    if np.any(nz & (np.left_shift(1, e) != mag)) or np.any(e >= 1 << exponent_bits(bits)):
        raise ValueError(f"Weights are not {bits}-bit pow2 values for sign scales {sign_scales}")
    z = (~nz).astype(np.int64)
    s = (w < 0).astype(np.int64)
    return (z << (bits - 1)) | (s << (bits - 2)) | e


def decode(codes, bits: int, sign_scales=(1, 1)) -> np.ndarray:
    """Integer weights of code words: inverse of :func:`encode`."""
    c = np.asarray(codes, dtype=np.int64)
    z = (c >> (bits - 1)) & 1
    s = (c >> (bits - 2)) & 1
    e = c & ((1 << exponent_bits(bits)) - 1)
    p, n = sign_scales
    return np.where(z == 1, 0, np.where(s == 1, -n, p) << e)


def dot(layer, cols):
    """``ACC[n, oc]`` from the weight codes of ``layer``, with shifts and adds only
    (:func:`dot_windows` with integer ``cols`` in torch order)."""
    return dot_windows(layer, cols)


def dot_windows(layer, cols, x_abs_max=None, window_order=False):
    """``ACC[n, oc]`` from the weight codes of ``layer``, with shifts and adds only.

    ``cols`` is ``(N, fan_in)`` in the layer's natural (torch) weight order. The activations
    that meet weight exponent ``e`` are shifted by ``e`` and summed per sign, exactly as the
    shift engine does, then scaled by ``P`` and ``N``. Both per-sign sums over all exponents
    are one product with the matrix of the shifts ``2**e`` (zero where the weight is zero or
    has the other sign), computed exactly by :func:`hwquant.golden.exact.matmul`. ``cols``
    may be integer-valued floats with a proven bound ``x_abs_max`` on their magnitude, and
    with ``window_order`` in window-lane order (:func:`hwquant.layout.conv_weight_matrix`).
    """
    bits = layer.weight_bits
    scales = layer.kind_data.sign_scales
    w = conv_weight_matrix(layer.weight) if window_order else layer.weight_matrix()
    codes = encode(w, bits, scales)
    x = np.asarray(cols)
    z = (codes >> (bits - 1)) & 1
    s = (codes >> (bits - 2)) & 1
    e = codes & ((1 << exponent_bits(bits)) - 1)
    if not fast_enabled():
        # Reference: one pass per exponent, in int64.
        x = x.astype(np.int64)
        pos = np.zeros((x.shape[0], codes.shape[0]), dtype=np.int64)
        neg = np.zeros_like(pos)
        for k in range(1 << exponent_bits(bits)):
            sel = (z == 0) & (e == k)
            if not sel.any():
                continue
            pos += (x << k) @ (sel & (s == 0)).T.astype(np.int64)
            neg += (x << k) @ (sel & (s == 1)).T.astype(np.int64)
        p, n = scales
        return p * pos - n * neg
    shifts = np.left_shift(np.int64(1), e)
    pos = matmul(x, np.where((z == 0) & (s == 0), shifts, 0), x_abs_max=x_abs_max)
    neg = matmul(x, np.where((z == 0) & (s == 1), shifts, 0), x_abs_max=x_abs_max)
    p, n = scales
    return p * pos - n * neg


#: The fast path's entry (golden.network looks for it on the kind's dot).
dot.windows = dot_windows
