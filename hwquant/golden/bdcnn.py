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

__all__ = ["dot", "planes", "coefficients_of"]


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
