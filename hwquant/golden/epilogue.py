"""Golden epilogues: what turns a weight layer's ``ACC + B`` into its output integers.

One function per :data:`hwquant.ir.EPILOGUES` type, each ``f(epilogue, acc, out_format,
channel_axis)`` with ``acc`` the int64 ``ACC + B`` (bias already added) holding channels on
``channel_axis``. :func:`apply` picks the function through :mod:`hwquant.epilogues`. The
definitions are normative (``docs/arithmetic.md``, section Epilogues).
"""

import numpy as np

from ..epilogues import golden_epilogue
from .arith import requantize

__all__ = ["apply", "requant", "thresholds", "logits"]


def _per_channel(values, ndim, channel_axis):
    shape = [1] * ndim
    shape[channel_axis] = -1
    return np.asarray(values, dtype=np.int64).reshape(shape)


def requant(epilogue, acc, out_format, channel_axis=1):
    """``sat(rshift_rhu(acc * M[c], shift), lo, hi)`` (:class:`hwquant.ir.Requant`)."""
    acc = np.asarray(acc, dtype=np.int64)
    return requantize(acc, np.zeros(len(epilogue.multiplier), dtype=np.int64),
                      epilogue.multiplier, epilogue.shift, epilogue.lo, epilogue.hi,
                      channel_axis)


def thresholds(epilogue, acc, out_format, channel_axis=1):
    """``out_format.lo + #{t : d[c] * acc >= d[c] * T[c, t]}`` (:class:`hwquant.ir.Thresholds`).

    ``d = +1`` counts ``acc >= T``, ``d = -1`` counts ``acc <= T``.
    """
    acc = np.moveaxis(np.asarray(acc, dtype=np.int64), channel_axis, -1)
    d = epilogue.direction
    passed = (d * acc)[..., None] >= (d[:, None] * epilogue.thresholds)
    count = passed.sum(axis=-1, dtype=np.int64)
    return np.moveaxis(out_format.lo + count, -1, channel_axis)


def logits(epilogue, acc, out_format, channel_axis=1):
    """``acc`` or ``acc * scale[c]`` (:class:`hwquant.ir.Logits`)."""
    acc = np.asarray(acc, dtype=np.int64)
    if epilogue.scale is None:
        return acc
    return acc * _per_channel(epilogue.scale, acc.ndim, channel_axis)


def apply(epilogue, acc, out_format, channel_axis=1):
    """Run the golden face of ``epilogue`` (any :data:`hwquant.ir.EPILOGUES` instance)."""
    return golden_epilogue(epilogue)(epilogue, acc, out_format, channel_axis)
