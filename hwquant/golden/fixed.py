"""Golden inner product of the ``fixed`` arithmetic kind: a plain signed integer dot product.

``run(layer, x)`` maps a batch of integer windows to accumulators; the window extraction and
the epilogue live in :mod:`hwquant.golden.network`.
"""

from .exact import matmul

__all__ = ["dot"]


def dot(layer, cols):
    """``ACC[n, oc] = sum_i W[oc, i] * cols[n, i]`` exactly, in int64.

    ``cols`` is ``(N, fan_in)`` in the layer's natural (torch) weight order.
    """
    # Exact: float BLAS only where the bound proves it, int64 otherwise (see golden.exact).
    return matmul(cols, layer.weight_matrix())
