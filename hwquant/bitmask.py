"""Bit masks over sign-magnitude fixed-point weights: the encoding of the ``bitmask`` kind.

A weight is an ``n``-bit sign-magnitude fixed-point number (``n`` the *span*: the sign and
``n - 1`` magnitude bits) with ``frac`` of the magnitude bits after the binary point. A
per-layer mask leaves only some magnitude positions free; the others are always 0. With
``m - 1`` active magnitude positions (``m`` active bits, sign included) a weight costs what an
``m``-bit weight costs in hardware but reaches the values of the ``n``-bit format.

Integer view (what the IR stores): a weight is the integer ``±sum_{k in A} b_k 2**k`` at the
layer's weight scale ``2**-frac``; ``A`` (:attr:`Mask.active`) are integer bit positions,
``0`` the least significant magnitude bit, ``n - 2`` the most significant.

Pattern notation (parsed and printed): ``X`` for the sign, then one character per magnitude
bit from the most significant down, ``X`` active and ``0`` masked, and ``.`` at the binary
point: ``X0.0XX`` is ``n = 5``, ``frac = 3``, magnitudes ``{0, 1, 2, 3} / 8``. Without a
``.`` the point follows the last bit (integer weights). The codes of the bit-masking paper
(Doi) are accepted as input: ``T_K_p1_..._pK_0`` is a ``T``-bit format with the point
after the first magnitude bit (``frac = T - 2``) and the ``K`` magnitude positions ``p_j``
(counted from the most significant magnitude bit, 0-based) masked; the trailing field is
reserved and must be 0. ``5_2_0_1_0`` is ``X0.0XX``.

Pure Python (and NumPy for arrays of weights); no torch, no Amaranth.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Mask", "parse", "full_mask", "candidates", "SPAN_RANGE"]

#: Spans ``n`` (sign included) a mask may have.
SPAN_RANGE = (2, 16)


@dataclass(frozen=True)
class Mask:
    """``span`` bits (sign included), ``frac`` fraction bits, active magnitude positions."""

    span: int
    frac: int
    #: Active integer bit positions of the magnitude, ascending (0 = LSB).
    active: tuple

    def __post_init__(self):
        lo, hi = SPAN_RANGE
        if not lo <= self.span <= hi:
            raise ValueError(f"A bit mask spans {lo}..{hi} bits (sign included), not {self.span}")
        if not 0 <= self.frac <= self.span - 1:
            raise ValueError(f"A {self.span}-bit mask has 0..{self.span - 1} fraction bits, "
                             f"not {self.frac}")
        act = tuple(sorted({int(k) for k in self.active}))
        if not act:
            raise ValueError("A bit mask needs at least one active magnitude bit")
        if act[0] < 0 or act[-1] > self.span - 2:
            raise ValueError(f"Active positions of a {self.span}-bit mask are 0..{self.span - 2}, "
                             f"not {list(act)}")
        object.__setattr__(self, "active", act)

    @property
    def bits(self) -> int:
        """``m``: active bits, sign included (the hardware cost)."""
        return len(self.active) + 1

    @property
    def bitmask(self) -> int:
        """The active magnitude positions as an integer mask."""
        return sum(1 << k for k in self.active)

    @property
    def max_magnitude(self) -> int:
        return self.bitmask

    @property
    def pattern(self) -> str:
        """The pattern notation, e.g. ``X0.0XX``."""
        out = "X"
        for k in range(self.span - 2, -1, -1):
            if k == self.frac - 1:
                out += "."
            out += "X" if k in self.active else "0"
        return out

    def __str__(self) -> str:
        return self.pattern

    def magnitudes(self) -> np.ndarray:
        """Every representable integer magnitude, ascending (``2**(m-1)`` values)."""
        vals = [sum(b << k for b, k in zip(bits, self.active))
                for bits in itertools.product((0, 1), repeat=len(self.active))]
        return np.array(sorted(vals), dtype=np.int64)

    def values(self) -> np.ndarray:
        """Every representable real value, ascending (``2**m - 1`` distinct values)."""
        mags = self.magnitudes() * 2.0 ** -self.frac
        return np.concatenate([-mags[:0:-1], mags])

    def representable(self, weights) -> np.ndarray:
        """Elementwise: is the integer weight ``±(bits inside the mask)``?"""
        mag = np.abs(np.asarray(weights, dtype=np.int64))
        return (mag & ~self.bitmask) == 0

    def project(self, scaled) -> np.ndarray:
        """Nearest representable integer to each real ``scaled`` (the weight times
        ``2**frac``): ``sgn(w) * argmin_v ||w| - v|``, ties to the larger magnitude, saturating
        at the largest magnitude."""
        a = np.asarray(scaled, dtype=np.float64)
        mags = self.magnitudes()
        mag = np.abs(a)
        hi = np.clip(np.searchsorted(mags, mag, side="left"), 0, len(mags) - 1)
        lo = np.clip(hi - 1, 0, len(mags) - 1)
        up, down = mags[hi], mags[lo]
        pick = np.where(np.abs(up - mag) <= np.abs(mag - down), up, down)
        return (np.sign(a) * pick).astype(np.int64)

    def literal(self, scaled) -> np.ndarray:
        """Round then mask: ``sgn(w) * (sat(floor(|w| + 1/2), 0, 2**(n-1) - 1) AND mask)``
        (a masked bit set in the rounded code is lost)."""
        a = np.asarray(scaled, dtype=np.float64)
        q = np.clip(np.floor(np.abs(a) + 0.5), 0, (1 << (self.span - 1)) - 1).astype(np.int64)
        return (np.sign(a).astype(np.int64) * (q & self.bitmask)).astype(np.int64)


def full_mask(span: int, frac: int = 0) -> Mask:
    """Every magnitude bit active: plain ``span``-bit sign-magnitude fixed point."""
    return Mask(span, frac, tuple(range(span - 1)))


def _parse_code(text: str) -> Mask:
    try:
        fields = [int(f) for f in text.split("_")]
    except ValueError:
        raise ValueError(f"Bit-mask code {text!r} must be integers joined by '_' "
                         f"(T_K_p1_..._pK_0, e.g. 5_2_0_1_0)") from None
    if len(fields) < 3:
        raise ValueError(f"Bit-mask code {text!r} needs at least T, K and the final 0 "
                         f"(T_K_p1_..._pK_0, e.g. 3_0_0)")
    t, k, *rest = fields
    if len(rest) != k + 1:
        raise ValueError(f"Bit-mask code {text!r}: K = {k} masked positions need {k} "
                         f"position fields and the final 0, found {len(rest)} fields")
    positions, reserved = rest[:-1], rest[-1]
    if reserved != 0:
        raise ValueError(f"Bit-mask code {text!r}: the last field is reserved and must be 0, "
                         f"not {reserved}")
    if not SPAN_RANGE[0] <= t <= SPAN_RANGE[1]:
        raise ValueError(f"Bit-mask code {text!r}: T must be in {SPAN_RANGE[0]}..{SPAN_RANGE[1]}")
    if len(set(positions)) != k or any(not 0 <= p <= t - 2 for p in positions):
        raise ValueError(f"Bit-mask code {text!r}: masked positions must be distinct, in "
                         f"0..{t - 2}")
    active = [t - 2 - i for i in range(t - 1) if i not in positions]
    if not active:
        raise ValueError(f"Bit-mask code {text!r} masks every magnitude bit")
    return Mask(t, t - 2, tuple(active))


def parse(text: str) -> Mask:
    """A :class:`Mask` from a pattern (``X0.0XX``) or a paper code (``5_2_0_1_0``).

    Raises ``ValueError`` naming what is wrong and what is allowed."""
    if not isinstance(text, str):
        raise TypeError(f"A bit mask is a pattern string like X0.0XX, not {text!r}")
    s = text.strip()
    if "_" in s or s.isdigit():
        return _parse_code(s)
    if not s or s[0] != "X":
        raise ValueError(f"Bit-mask pattern {text!r} must start with X (the sign bit), then "
                         f"X (active) or 0 (masked) per magnitude bit and at most one '.', "
                         f"e.g. X0.0XX")
    body = s[1:]
    bad = sorted(set(body) - set("X0."))
    if bad or body.count(".") > 1:
        raise ValueError(f"Bit-mask pattern {text!r}: after the sign only X, 0 and one '.' "
                         f"are allowed (e.g. X0.0XX)")
    digits = body.replace(".", "")
    if not digits:
        raise ValueError(f"Bit-mask pattern {text!r} has no magnitude bits")
    frac = len(body) - body.index(".") - 1 if "." in body else 0
    n = len(digits) + 1
    active = [n - 2 - i for i, c in enumerate(digits) if c == "X"]
    if not active:
        raise ValueError(f"Bit-mask pattern {text!r} masks every magnitude bit: nothing but 0 "
                         f"is representable")
    return Mask(n, frac, tuple(active))


def candidates(bits: int, span: int, frac: int = 0) -> list:
    """Every mask of ``bits`` active bits (sign included) over a ``span``-bit format:
    ``C(span - 1, bits - 1)`` of them, contiguous top-down first then lexicographic."""
    if not 1 <= bits - 1 <= span - 1:
        raise ValueError(f"{bits} active bits (sign included) need 2..{span} for a {span}-bit "
                         f"span")
    out = [Mask(span, frac, a) for a in itertools.combinations(range(span - 1), bits - 1)]
    assert len(out) == math.comb(span - 1, bits - 1)
    return sorted(out, key=lambda mk: (-max(mk.active), max(mk.active) - min(mk.active),
                                       tuple(-k for k in mk.active)))
