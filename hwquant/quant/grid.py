"""Float -> integer grid rounding used by every quantizer (NumPy; the torch fake-quant path
mirrors it and is tied to it by an exact test)."""

import math

import numpy as np

__all__ = ["quantize_to_grid", "frac_for_range"]


def quantize_to_grid(x, frac: int, lo: int, hi: int) -> np.ndarray:
    """``sat(RHU(x * 2**frac), lo, hi)`` as int64: round half up, then saturate."""
    scaled = np.asarray(x, dtype=np.float64) * math.ldexp(1.0, frac)
    return np.clip(np.floor(scaled + 0.5), lo, hi).astype(np.int64)


def frac_for_range(a_max: float, hi: int, max_frac: int) -> int:
    """Largest ``f <= max_frac`` with ``a_max * 2**f <= hi`` (exact, no float log error)."""
    if not a_max > 0:
        return max_frac
    f = math.floor(math.log2(hi / a_max))
    while math.ldexp(a_max, f + 1) <= hi:
        f += 1
    while math.ldexp(a_max, f) > hi:
        f -= 1
    return min(f, max_frac)
