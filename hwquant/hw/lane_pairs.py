"""Lane-pair hardware (arithmetic and ROM layout: :mod:`hwquant.lane_pairs`): the shared pair
sums of a beat and, per PE, the signed lane sum read from its ROM field.

* :func:`lane_pairs` ``(m, x, fmt) -> terms``: per pair ``u = x_a + x_b``, ``v = x_a - x_b``;
  per lone lane ``(x, -x)``. Combinational; two adders per pair and one negation for a lone
  lane, built once and read by every PE.
* :func:`pair_sum` ``(m, terms, field, simd, name) -> Value``: ``sum_i s_i x_i`` (less the
  leftover 1 of :func:`hwquant.lane_pairs.leftovers` with ``SIMD`` even) for the signs
  encoded in ``field`` (:func:`hwquant.lane_pairs.pair_field`). Combinational; per term one
  select of ``u``/``v`` with its complement (one LUT per bit), ``ceil(SIMD / 2) - 1``
  adders whose carry-ins take the complements' 1s.
"""

from amaranth.hdl import Mux, Signal, signed

from ..lane_pairs import pair_terms
from .arith import adder_tree

__all__ = ["lane_pairs", "pair_sum"]


def lane_pairs(m, x, fmt) -> list:
    """The shared terms of the lanes ``x`` (``SIMD`` values of activation format ``fmt``),
    per term of :func:`~hwquant.lane_pairs.pair_terms`: ``(u, v)`` for a pair, ``(x, -x)``
    for a lone lane; signals of ``m``, ``bits + 2`` wide."""
    lane = signed(fmt.bits + 1)
    out = []
    for k, t in enumerate(pair_terms(len(x))):
        ext = [Signal(lane, name=f"lane{i}") for i in t]
        m.d.comb += [e.eq(x[i]) for e, i in zip(ext, t, strict=True)]
        if len(t) == 1:
            neg = Signal(signed(lane.width + 1), name="lane_neg")
            m.d.comb += neg.eq(-ext[0])
            out.append((ext[0], neg))
            continue
        u = Signal(signed(lane.width + 1), name=f"u{k}")
        v = Signal(signed(lane.width + 1), name=f"v{k}")
        m.d.comb += [u.eq(ext[0] + ext[1]), v.eq(ext[0] - ext[1])]
        out.append((u, v))
    return out


def pair_sum(m, terms, field, simd, name):
    """One PE's signed lane sum from the shared ``terms`` (:func:`lane_pairs`) and its ROM
    ``field`` of ``SIMD`` bits; the term selects are signals ``{name}_{k}`` of ``m``."""
    picked, carries = [], []
    for k, (t, (u, v)) in enumerate(zip(pair_terms(simd), terms, strict=True)):
        term = Signal(v.shape(), name=f"{name}_{k}")
        if len(t) == 1:
            m.d.comb += term.eq(Mux(field[t[0]], v, u))
        else:
            d, n = field[t[0]], field[t[1]]
            m.d.comb += term.eq(Mux(n, ~Mux(d, v, u), Mux(d, v, u)))
            carries.append(n)
        picked.append(term)
    return adder_tree(picked, carries=carries[:len(picked) - 1])
