"""Exact integer matrix products on fast arithmetic, where a proven bound allows it.

The golden model is defined in int64. NumPy's integer ``matmul`` does not use BLAS and is
several times slower than a floating-point one, yet a floating-point product of integers is
exact as long as every value it forms is an integer the format represents exactly: every
product ``w * x`` and every partial sum, in whatever order BLAS adds them. All of those are
bounded in magnitude by ``B = max_o sum_i |W[o, i]| * max |x|``, so:

* ``B < 2**24``: float32 is exact (24-bit significand);
* ``B < 2**53``: float64 is exact (53-bit significand);
* otherwise the int64 product is used.

The bound is checked for every call on the actual operands, so the result is always the int64
result; :func:`int64_only` turns the fast path off (the tests compare both).

The products of a small network are small: BLAS threads cost more to wake than they save, and
on a busy machine far more. :func:`single_threaded_blas` limits BLAS to one thread (through
``threadpoolctl`` when it is installed; a no-op otherwise).
"""

from contextlib import contextmanager

import numpy as np

__all__ = ["FLOAT32_EXACT", "FLOAT64_EXACT", "fast_enabled", "int64_only", "matmul",
           "product_bound", "single_threaded_blas"]

#: Largest bound for which float32 products and sums are exact.
FLOAT32_EXACT = 1 << 24
#: Largest bound for which float64 products and sums are exact.
FLOAT64_EXACT = 1 << 53

_fast = [True]
_controller = []


@contextmanager
def single_threaded_blas():
    """Limit BLAS to one thread within this context (best effort)."""
    if not _controller:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            _controller.append(None)
        else:
            _controller.append(ThreadpoolController())
    if _controller[0] is None:
        yield
        return
    with _controller[0].limit(limits=1, user_api="blas"):
        yield


@contextmanager
def int64_only():
    """Within this context :func:`matmul` always computes in int64 (the reference path)."""
    _fast.append(False)
    try:
        yield
    finally:
        _fast.pop()


def fast_enabled() -> bool:
    """``False`` inside :func:`int64_only`: golden faces then take their reference paths."""
    return _fast[-1]


def product_bound(x, w) -> int:
    """``max_o sum_i |w[o, i]| * max |x|`` as a Python int (no overflow)."""
    if x.size == 0 or w.size == 0:
        return 0
    row = int(np.abs(w).sum(axis=1, dtype=np.uint64).max()) if w.ndim == 2 else 0
    return row * int(max(abs(int(x.min())), abs(int(x.max()))))


def matmul(x, w) -> np.ndarray:
    """``x @ w.T`` exactly, as int64: ``x`` is ``(N, K)``, ``w`` is ``(M, K)``, both integer.

    Computed in float32 or float64 when :func:`product_bound` proves it exact, else in int64.
    """
    x = np.asarray(x, dtype=np.int64)
    w = np.asarray(w, dtype=np.int64)
    if _fast[-1]:
        bound = product_bound(x, w)
        for limit, dtype in ((FLOAT32_EXACT, np.float32), (FLOAT64_EXACT, np.float64)):
            if bound < limit:
                out = x.astype(dtype) @ w.T.astype(dtype)
                return out.astype(np.int64)
    return x @ w.T
