"""Golden inner product of the ``fixed`` arithmetic kind: a plain signed integer dot product.

``run(layer, x)`` maps a batch of integer windows to accumulators; the window extraction and
the epilogue live in :mod:`hwquant.golden.network`.
"""

from ..layout import conv_weight_matrix
from .exact import matmul

__all__ = ["dot"]


def dot(layer, cols):
    """``ACC[n, oc] = sum_i W[oc, i] * cols[n, i]`` exactly, in int64.

    ``cols`` is ``(N, fan_in)`` in the layer's natural (torch) weight order.
    """
    return dot_windows(layer, cols)


def dot_windows(layer, cols, x_abs_max=None, window_order=False):
    """:func:`dot` for the golden model's fast path: ``cols`` may be integer-valued floats
    with a proven bound ``x_abs_max`` on their magnitude (:func:`hwquant.golden.exact.matmul`),
    and with ``window_order`` in window-lane order (:func:`hwquant.layout.conv_weight_matrix`;
    conv layers)."""
    w = conv_weight_matrix(layer.weight) if window_order else layer.weight_matrix()
    # Exact: float BLAS only where the bound proves it, int64 otherwise (see golden.exact).
    return matmul(cols, w, x_abs_max=x_abs_max)


#: The fast path's entry (golden.network looks for it on the kind's dot).
dot.windows = dot_windows
