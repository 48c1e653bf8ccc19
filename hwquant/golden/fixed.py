"""Golden inner product of the ``fixed`` arithmetic kind: a plain signed integer dot product.

``run(layer, x)`` maps a batch of integer windows to accumulators; the window extraction and
the epilogue live in :mod:`hwquant.golden.network`.
"""

import numpy as np

__all__ = ["dot"]


def dot(layer, cols):
    """``ACC[n, oc] = sum_i W[oc, i] * cols[n, i]`` exactly, in int64.

    ``cols`` is ``(N, fan_in)`` in the layer's natural (torch) weight order.
    """
    w = layer.weight_matrix().astype(np.int64)
    # matmul on int64 is exact (integer matmul does not go through float BLAS).
    return np.asarray(cols, dtype=np.int64) @ w.T
