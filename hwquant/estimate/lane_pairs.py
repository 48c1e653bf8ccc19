"""Cost of the lane-pair hardware (:mod:`hwquant.hw.lane_pairs`): the shared pair sums of a
beat and one PE's signed lane sum.

* :func:`shared_resources`: two adders of ``bits + 1`` per lane pair (``x_a + x_b``,
  ``x_a - x_b``) and, with ``SIMD`` odd, the lone lane's negation (one adder);
* :func:`pe_resources`: per term one select of ``u``/``v`` with its complement (one LUT per
  bit on LUT4 families; on xilinx absorbed into the adder's LUT6 when there are at least two
  terms), and the balanced tree of ``ceil(SIMD / 2) - 1`` adders (the carry-ins are free).
"""

from __future__ import annotations

from ..lane_pairs import pair_terms
from .resources import Resources, adder

__all__ = ["shared_resources", "pe_resources"]


def shared_resources(xbits, simd, family) -> Resources:
    """The pair sums of ``simd`` lanes of ``xbits``, built once for every PE."""
    pairs = simd // 2
    return adder(xbits + 1, family) * (2 * pairs + simd % 2)


def pe_resources(xbits, simd, family) -> Resources:
    """One PE's term selects and the adder tree of its ``ceil(SIMD / 2)`` terms."""
    n, bits = len(pair_terms(simd)), xbits + 2
    res = Resources(lut=0 if family == "xilinx" and n > 1 else bits * n)
    while n > 1:
        res += adder(bits, family) * (n // 2)
        n, bits = n - n // 2, bits + 1
    return res
