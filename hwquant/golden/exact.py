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

__all__ = ["FLOAT32_EXACT", "FLOAT64_EXACT", "abs_max", "exact_float", "fast_enabled", "int64_only",
           "matmul", "product_bound", "row_bound", "single_threaded_blas"]

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
    return row_bound(w) * abs_max(x)


def abs_max(x) -> int:
    """``max |x|`` of an integer(-valued) array as a Python int (0 when empty)."""
    return max(abs(int(x.min())), abs(int(x.max()))) if x.size else 0


def row_bound(w) -> int:
    """``max_o sum_i |w[o, i]|`` of an integer matrix, as a Python int."""
    w = np.asarray(w)
    if w.size == 0 or w.ndim != 2:
        return 0
    return int(np.abs(w.astype(np.int64)).sum(axis=1, dtype=np.uint64).max())


def _float_for(bound: int, x_abs_max: int):
    for limit, dtype in ((FLOAT32_EXACT, np.float32), (FLOAT64_EXACT, np.float64)):
        if bound < limit and x_abs_max < limit:
            return dtype
    return None


def exact_float(w, x_abs_max: int):
    """The float type in which ``x @ w.T`` is exact for every ``x`` with ``|x| <= x_abs_max``
    (``numpy.float32``, ``numpy.float64``), or ``None`` (int64 needed, or inside
    :func:`int64_only`). The bound is :func:`product_bound`'s; ``x`` itself must fit too."""
    if not _fast[-1]:
        return None
    return _float_for(row_bound(w) * int(x_abs_max), int(x_abs_max))


def matmul(x, w, *, x_abs_max=None) -> np.ndarray:
    """``x @ w.T`` exactly, as int64: ``x`` is ``(N, K)``, ``w`` is ``(M, K)``, both integer.

    Computed in float32 or float64 when :func:`product_bound` proves it exact, else in int64.
    ``x`` may also be a float array whose values are integers it holds exactly (windows a
    caller built in the type :func:`exact_float` chose); ``x_abs_max`` is then a proven bound
    on ``|x|`` that spares the pass over ``x`` (default: computed from ``x``).
    """
    w = np.asarray(w, dtype=np.int64)
    x = np.asarray(x)
    if x.dtype.kind not in "fiu":
        raise TypeError(f"Operands must be integer (or integer-valued float), not {x.dtype}")
    if _fast[-1]:
        if x_abs_max is None:
            bound, x_abs_max = product_bound(x, w), abs_max(x)
        else:
            bound = row_bound(w) * int(x_abs_max)
        dtype = _float_for(bound, int(x_abs_max))
        if dtype is not None:
            xf = x if x.dtype == dtype else x.astype(dtype)
            return (xf @ w.T.astype(dtype)).astype(np.int64)
    return x.astype(np.int64, copy=False) @ w.T
