"""Integer arithmetic primitives: the one definition of rounding, shifting and saturation.

Every rule here is normative (``docs/arithmetic.md``); the hardware is written from the same
document and tied to these functions by exact tests. All functions take and return int64 NumPy
arrays (or Python ints) and never touch floating point.
"""

import numpy as np

__all__ = ["rshift_rhu", "sat", "requantize", "avg_requantize", "add_requantize"]


def rshift_rhu(a, s: int):
    """Arithmetic right shift by ``s`` rounding half up: ``floor(a / 2**s + 1/2)``.

    ``s = 0`` is the identity; ``s < 0`` is an exact left shift by ``-s``.
    """
    a = np.asarray(a, dtype=np.int64)
    if s > 0:
        return (a + (np.int64(1) << np.int64(s - 1))) >> np.int64(s)
    if s < 0:
        return a << np.int64(-s)
    return a


def sat(v, lo: int, hi: int):
    """Clamp to ``[lo, hi]`` (no wrap-around anywhere in hwquant)."""
    return np.clip(np.asarray(v, dtype=np.int64), lo, hi)


def requantize(acc, bias, multiplier, shift: int, lo: int, hi: int, channel_axis: int = 1):
    """``sat(rshift_rhu((acc + bias[c]) * multiplier[c], shift), lo, hi)`` per channel ``c``.

    ``acc`` has channels on ``channel_axis``; ``bias`` and ``multiplier`` are per channel.
    """
    acc = np.asarray(acc, dtype=np.int64)
    shape = [1] * acc.ndim
    shape[channel_axis] = -1
    b = np.asarray(bias, dtype=np.int64).reshape(shape)
    m = np.asarray(multiplier, dtype=np.int64).reshape(shape)
    return sat(rshift_rhu((acc + b) * m, shift), lo, hi)


def avg_requantize(window_sum, multiplier: int, shift: int, lo: int, hi: int):
    """Average pooling epilogue: ``sat(rshift_rhu(sum * multiplier, shift), lo, hi)``."""
    return sat(rshift_rhu(np.asarray(window_sum, dtype=np.int64) * int(multiplier), shift), lo, hi)


def add_requantize(a, fa: int, b, fb: int, f_out: int, lo: int, hi: int):
    """Residual add: align both operands to the finer scale by exact left shifts, add,
    then ``sat(rshift_rhu(sum, f_fine - f_out), lo, hi)``."""
    f = max(fa, fb)
    s = (np.asarray(a, dtype=np.int64) << np.int64(f - fa)) + \
        (np.asarray(b, dtype=np.int64) << np.int64(f - fb))
    return sat(rshift_rhu(s, f - f_out), lo, hi)
