"""Golden inner product of the ``bdcnn`` arithmetic kind (Binarized-DCNN, Kamiya et al.):
weights that are signed sums of ``K`` coefficients, inputs split into ``Q`` bit planes.

With ``q = X - lo`` (``lo`` the input format's minimum, the static range's offset), bit planes
``z_b = (q >> b) & 1`` (``b = 0 .. Q-1``), the canonical basis bits ``M+[n, a]``
(:func:`hwquant.bdcnn.basis_bits`) and the integer coefficients ``C[n, a]``::

    ACC[n] = sum_a C[n, a] * sum_b 2**b * (2 * popcount(M+[n, a] & z_b) - popcount(z_b))
             + lo * R[n],            R[n] = sum_i W[n, i] = sum_a C[n, a] * (2 * |M+[n, a]| - D)

which equals ``W @ X`` exactly (``sum_a C_a M_a^T q = W^T q`` and ``X = q + lo``). Padding
inserts code 0 (value 0), i.e. ``q = -lo`` in every padded lane: the same offset at every
position, so no border classes (``docs/arithmetic.md``, Binarized-DCNN).
"""

import numpy as np

from ..bdcnn import basis_bits
from ..layout import conv_weight_matrix
from .exact import fast_enabled, matmul

__all__ = ["dot", "planes", "coefficients_of", "quantize_map", "sample_codes", "sample_acc",
           "reciprocal_shift"]


def coefficients_of(layer) -> np.ndarray:
    """``C`` of ``layer`` as int64 ``(OC, K)``."""
    return np.array(layer.kind_data.coefficients, dtype=np.int64).reshape(
        layer.out_channels, layer.kind_data.basis)


def planes(cols, fmt, qbits) -> np.ndarray:
    """Bit planes ``(Q, n, D)`` of ``q = X - fmt.lo`` for the values ``cols`` ``(n, D)``."""
    q = np.asarray(cols).astype(np.int64) - fmt.lo
    return np.stack([(q >> b) & 1 for b in range(qbits)])


def dot(layer, cols):
    """``ACC[n, oc]`` of ``layer`` for ``cols`` (``(n, fan_in)`` values in torch order), in the
    AND-popcount form of the module docstring (int64)."""
    return dot_windows(layer, cols)


def dot_windows(layer, cols, x_abs_max=None, window_order=False):
    """:func:`dot` for the golden model's fast path (the exact product ``W @ X``, equal by the
    identity above); the reference path computes the AND-popcount form."""
    w = conv_weight_matrix(layer.weight) if window_order else layer.weight_matrix()
    if fast_enabled():
        return matmul(cols, w, x_abs_max=x_abs_max)
    c = coefficients_of(layer)
    m = basis_bits(w, c)  # (OC, K, D)
    z = planes(cols, layer.in_format, layer.kind_data.qbits)  # (Q, n, D)
    shared = z.sum(axis=2)  # popcount(z_b), (Q, n): one per plane, for every neuron and basis
    acc = np.zeros((z.shape[1], len(w)), dtype=np.int64)
    for a in range(c.shape[1]):
        inner = np.zeros_like(acc)
        for b in range(z.shape[0]):
            pc = z[b] @ m[:, a, :].T  # popcount(M+_a AND z_b)
            inner += (2 * pc - shared[b][:, None]) << b
        acc += c[:, a] * inner
    offset = (c * (2 * m.sum(axis=2) - w.shape[1])).sum(axis=1)  # R = sum_i W
    return acc + layer.in_format.lo * offset


#: The fast path's entry (golden.network looks for it on the kind's dot).
dot.windows = dot_windows


def reciprocal_shift(in_bits: int) -> int:
    """``S`` of the per-sample quantizer's reciprocal for an ``in_bits``-bit input:
    ``2 * in_bits + 1``, enough for the multiply-shift to equal the exact division."""
    return 2 * in_bits + 1


def quantize_map(v, in_bits: int, qbits: int):
    """The quantization sub-layer with the per-sample range on integer maps ``v`` ``(N, ...)``
    (one sample per row, values of an ``in_bits``-bit format): per sample ``m = min``,
    ``R = max - min`` over the whole map, ``L = 2**qbits - 1``, ``rho = ceil(L * 2**S / R)``
    once per sample (``S`` :func:`reciprocal_shift`) and ``q = ((X - m) * rho + 2**(S-1)) >>
    S`` per element, which is ``RHU((X - m) * L / R)`` exactly; ``R = 0``: ``rho = q = 0``.
    Returns ``(q int64 like v, m (N,), R (N,), rho (N,))``."""
    v = np.asarray(v, dtype=np.int64)
    n = len(v)
    flat = v.reshape(n, -1)
    m = flat.min(axis=1)
    r = flat.max(axis=1) - m
    top = (1 << qbits) - 1
    s = reciprocal_shift(in_bits)
    rho = np.where(r > 0, ((top << s) + r - 1) // np.maximum(r, 1), 0)  # ceil(L 2^S / R)
    shape = (n,) + (1,) * (v.ndim - 1)
    q = ((v - m.reshape(shape)) * rho.reshape(shape) + (1 << (s - 1))) >> s
    return q, m, r, rho


def sample_codes(layer, x):
    """:func:`quantize_map` of a per-sample-range ``layer``'s integer input map ``x``:
    ``(q, m, R)``."""
    q, m, r, _ = quantize_map(layer.in_format.value(x), layer.in_format.bits,
                              layer.kind_data.qbits)
    return q, m, r


def sample_acc(layer, x, windows):
    """``ACC`` (int64 ``(N * pixels, OC)``) of a per-sample-range layer for its integer input
    map ``x``: ``P = W @ q`` over the windows of the codes (a padded tap is ``q = 0``),
    then ``ACC = m * Rin + RHU(R * P / L)`` with ``Rin = sum of W over the window's in-bounds
    taps`` (a constant per output position and channel; ``sum_i W`` without padding).
    ``windows(a)`` gives the ``(N * pixels, D)`` windows of a map ``a`` in the layer's weight
    order with zero padding. This is ``RHU(W . z)`` of ``z = m + q * R / L``, the value the
    codes stand for, and 0 at a padded tap (exact zero padding). ``None`` for the static
    range (the AND-popcount form of :func:`dot`)."""
    if layer.kind_data.range != "sample":
        return None
    q, m, r = sample_codes(layer, x)
    w = layer.weight_matrix()
    n = len(q)
    cols = windows(q)
    top = (1 << layer.kind_data.qbits) - 1
    p = matmul(cols, w, x_abs_max=top)  # exact (float only where proven, int64 otherwise)
    inside = windows(np.ones((1,) + q.shape[1:], dtype=np.int64)) @ w.T  # (pixels, OC)
    per = len(cols) // n
    mr = np.repeat(m, per)[:, None]
    rr = np.repeat(r, per)[:, None]
    return mr * np.tile(inside, (n, 1)) + (2 * rr * p + top) // (2 * top)


#: The whole-map entry (golden.network looks for it on the kind's dot).
dot.map_acc = sample_acc
