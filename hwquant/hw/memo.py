"""The ``memo`` MVU engine: value-grouped sums, one product per distinct weight value per
output instead of one per tap (:mod:`hwquant.memo` defines the arithmetic and the per-PE
layout). It serves a layer of any kind with non-bipolar inputs (``ACC = sum W * X``, the
layer's integer weights in window-lane order); the golden semantics are the kind's.

Per beat, for PE ``p`` (channels ``p + n*PE``, fold ``n``):

* a **paired** PE (folded; every channel ``+-A``) reads its signed lane sum
  ``sum_i s_i x_i`` from the beat's lane pairs (:mod:`hwquant.hw.lane_pairs`: ``x_a + x_b``,
  ``x_a - x_b`` and a lone lane's ``-x`` built once for every paired PE; per pair one
  select, ``ceil(SIMD / 2) - 1`` adders whose carry-ins take the complements' 1s);
* a **grouped** PE forms ``K_p`` partial sums, part ``j`` the sum of the lanes whose weight is
  the channel's ``j``-th non-base value: unrolled, adds of fixed lanes (no gate); folded, the
  ROM holds a group index per lane (``index_bits`` each; 0 = the base) and part ``j`` sums
  ``idx == j + 1 ? x : 0``;
* any other PE computes the plain dot ``sum w x``: unrolled, one constant-matrix adder graph
  over all plain rows (:mod:`hwquant.hw.cmvm`); folded, a ``fixed`` dot engine of
  ``plain_bits``-bit weight lanes;
* one shared sum ``S`` of the ``SIMD`` lanes when some grouped (not paired) channel has a
  non-zero base.

Combine (combinational, the MVU registers it): ``ACC = A * (T + K)`` for a paired PE (``T``
its accumulated pair sums, ``K`` the leftover complements of :func:`hwquant.memo.negations`;
``A`` and ``K`` constants, or chosen by the fold index when they differ by fold);
``ACC = sum_j (g_j - b) * G_j + b * S`` for a
grouped PE (constant multiplies when ``NF = 1``; otherwise the coefficients are chosen by the
fold index, a small constant table feeding one multiplier per part), ``G_0`` for a plain PE.

ROM word of a beat: the PE fields from PE 0 in the LSBs; a paired PE's field is the ``SIMD``
bits of :func:`hwquant.lane_pairs.pair_field`; a grouped PE's field is ``SIMD`` unsigned
``index_bits`` lanes, a plain PE's ``SIMD`` two's-complement ``plain_bits`` lanes,
lane 0 lowest. Latency 0.

Resources: the lane pairs (two adders per pair) once when some PE is paired; per paired PE
its term selects (one LUT per bit), ``ceil(SIMD / 2) - 1`` adders, the constant ``K`` adder
(``SIMD`` even) and one multiply by ``A`` (none for ``A = 2^k``); per grouped PE ``K_p`` gated adder trees of ``SIMD`` lanes (folded) or of its group
lanes (unrolled) and ``K_p + [b != 0]`` coefficient multiplies in the combine; per plain PE
``SIMD`` multipliers (folded) or its rows' share of an adder graph (unrolled); one
``SIMD``-lane adder tree for ``S``. No multiplier per tap in a grouped PE.
"""

import dataclasses

import numpy as np
from amaranth.hdl import Module, Mux, Signal, signed

from .. import ir
from ..lane_pairs import beat_range, pair_field
from ..layout import pack_lanes
from ..memo import (
    check_memo,
    combine_terms,
    common_factor,
    is_shift,
    memo_layout,
    negations,
    part_ranges,
    sum_range,
)
from .arith import adder_tree, const_signed
from .engine import Engine
from .fixed import DotEngine
from .lane_pairs import lane_pairs, pair_sum

__all__ = ["MemoEngine"]


def _fold(layer, pe, simd) -> ir.Fold:
    """The layer's fold (its memo form) at ``pe`` x ``simd``."""
    return dataclasses.replace(layer.fold, pe=pe, simd=simd)


def _field_bits(lay, simd) -> list:
    return [simd * (b if g else lay.plain_bits) for g, b in zip(lay.grouped, lay.index_bits,
                                                                 strict=True)]


class MemoEngine(Engine):
    """The value-grouped MVU engine; see the module docstring.

    Members: ``x`` (``SIMD`` lanes), ``w`` (folded), ``parts`` (``PE * P``: the group sums of a
    grouped PE, the pair sum of a paired one and the dot of a plain one in its part 0), ``shared`` (``S``, when some grouped
    channel has a non-zero base).
    """

    @classmethod
    def parts_per_pe(cls, layer) -> int:
        return memo_layout(layer).parts

    @classmethod
    def shared_count(cls, layer) -> int:
        return int(memo_layout(layer).shared)

    @classmethod
    def word_bits(cls, layer, *, pe, simd) -> int:
        return sum(_field_bits(memo_layout(layer, _fold(layer, pe, simd)), simd))

    @classmethod
    def encode(cls, layer, weights, nf, sf, *, pe, simd) -> int:
        lay = memo_layout(layer, _fold(layer, pe, simd))
        w = np.asarray(weights, dtype=np.int64)
        word, pos = 0, 0
        lanes = slice(sf * simd, (sf + 1) * simd)
        for p, bits in enumerate(_field_bits(lay, simd)):
            c = nf * pe + p
            if lay.paired[p]:
                field = pair_field(np.sign(w[c, lanes]), simd)
            elif lay.grouped[p]:
                field = pack_lanes(lay.groups[c].index_row(w[c, lanes]), lay.index_bits[p])
            else:
                field = pack_lanes(w[c, lanes], lay.plain_bits)
            word |= field << pos
            pos += bits
        return word

    @classmethod
    def part_ranges(cls, layer, weights) -> np.ndarray:
        return part_ranges(layer, weights)

    @classmethod
    def shared_ranges(cls, layer) -> list:
        if not memo_layout(layer).shared:
            return []
        return [sum_range(layer.fan_in, layer.in_format)]

    def __init__(self, layer, weights, *, pe, simd):
        check_memo(layer, _fold(layer, pe, simd))
        fmt = layer.in_format
        weights = np.asarray(weights, dtype=np.int64)
        self._lay = lay = memo_layout(layer, _fold(layer, pe, simd))
        constant = (layer.out_channels // pe) * (layer.fan_in // simd) == 1
        if constant:
            ranges = [tuple(r) for r in self.part_ranges(layer, weights).reshape(-1, 2)]
        else:
            ranges = [sum_range(simd, fmt)]
            if any(lay.paired):
                ranges.append(beat_range(fmt, simd))
            if not all(lay.grouped):
                ranges.append(DotEngine.value_range(None, simd=simd, x_format=fmt,
                                                    weight_bits=lay.plain_bits))
        part_bits = max(ir.signed_bits_for(min(lo, 0), max(hi, 0)) for lo, hi in ranges)
        super().__init__(layer, weights, pe=pe, simd=simd, part_bits=part_bits,
                         shared_bits=ir.signed_bits_for(*sum_range(simd, fmt)))

    def _part(self, p, j):
        return self.parts[p * self._lay.parts + j]

    def elaborate(self, platform):
        m = Module()
        lay, simd = self._lay, self._simd
        x = [self.x[i] for i in range(simd)]
        if lay.shared:
            m.d.comb += self.shared[0].eq(self.delayed(m, adder_tree(x), "lane_sum"))
        if self.constant:
            self._constant_parts(m, x)
            return m
        pairs = lane_pairs(m, x, self._layer.in_format) if any(lay.paired) else None
        pos = 0
        for p, bits in enumerate(_field_bits(lay, simd)):
            field = self.w[pos:pos + bits]
            pos += bits
            if lay.paired[p]:
                m.d.comb += self._part(p, 0).eq(pair_sum(m, pairs, field, simd, f"term{p}"))
                continue
            if lay.grouped[p]:
                ib = lay.index_bits[p]
                idx = [field[i * ib:(i + 1) * ib] for i in range(simd)]
                for j in range(lay.pe_groups(p)):
                    m.d.comb += self._part(p, j).eq(adder_tree(
                        [Mux(idx[i] == j + 1, x[i], 0) for i in range(simd)]))
                continue
            eng = DotEngine(simd=simd, x_format=self._layer.in_format,
                            weight_bits=lay.plain_bits)
            m.submodules[f"pe{p}"] = eng
            m.d.comb += [eng.x.eq(self.x), eng.w.eq(field), self._part(p, 0).eq(eng.y)]
        return m

    def _constant_parts(self, m, x):
        """Unrolled: each group's lanes added, one adder graph for the plain rows (pipelined
        with :attr:`latency` cuts; the group sums then pass through as many registers)."""
        from ..cmvm import layer_adder_graph

        lay, w = self._lay, self._weights
        plain = [c for c in range(self._layer.out_channels) if not lay.grouped[c]]
        for c in range(self._layer.out_channels):
            if lay.grouped[c]:
                for j, v in enumerate(lay.groups[c].values):
                    total = adder_tree([x[i] for i in np.flatnonzero(w[c] == v)])
                    if self.latency:
                        part = Signal(self._part(c, j).shape(), name=f"group{c}_{j}")
                        m.d.comb += part.eq(total)
                        total = self.delayed(m, part, f"group{c}_{j}")
                    m.d.comb += self._part(c, j).eq(total)
        if plain:
            graph = layer_adder_graph(self._layer, w[plain])
            matrix = self.constant_matrix(m, graph, self.parts.shape().elem_shape.width)
            for k, c in enumerate(plain):
                m.d.comb += self._part(c, 0).eq(matrix.y[k])

    def combine(self, m, parts, shared, nf):
        """``A * (T + K)`` per paired PE; ``sum_j (g_j - b) * G_j + b * S`` per grouped PE,
        the coefficients of the channel at fold ``nf``; ``G_0`` for a plain PE. With one
        channel per PE the coefficients are constants and their common factor is multiplied
        once, after the sum."""
        lay, pe = self._lay, self._pe
        ks = negations(self._layer, self._weights)
        out = []
        for p in range(pe):
            if not lay.grouped[p]:
                out.append(parts[p][0])
                continue
            terms = combine_terms(lay, p)
            if lay.paired[p]:
                k = [int(v) for v in ks[p::pe]]
                acc = parts[p][0]
                if any(k):
                    acc = acc + _tabled_const(m, k, nf, f"negations{p}")
                out.append(_tabled(m, acc, terms[0][1], nf, f"coef{p}_0"))
                continue
            value = [shared[0] if j < 0 else parts[p][j] for j, _ in terms]
            if all(len(set(c)) == 1 for _, c in terms):
                d, inner = common_factor([c[0] for _, c in terms])
                out.append(_times(adder_tree([_times(v, c) for v, c in
                                              zip(value, inner, strict=True)]), d))
                continue
            out.append(adder_tree([_tabled(m, v, c, nf, f"coef{p}_{k}")
                                   for k, (v, (_, c)) in enumerate(zip(value, terms,
                                                                       strict=True))]))
        return out


def _times(value, c):
    """``value * c`` for a constant ``c``: wiring and a negation for ``+-2^k``."""
    if is_shift(c):
        k = abs(int(c)).bit_length() - 1
        shifted = value << k if k else value
        return shifted if c > 0 else -shifted
    return value * const_signed(c)


def _tabled_const(m, values, nf, name):
    """``values[nf]`` (non-negative): the constant itself when every fold has the same, else a
    signal of ``m`` set from the table by the fold index."""
    if len(set(values)) == 1:
        return values[0]
    out = Signal(range(max(values) + 1), name=name)
    with m.Switch(nf):
        for n, v in enumerate(values):
            with m.Case(n):
                m.d.comb += out.eq(v)
    return out


def _tabled(m, value, coefs, nf, name):
    """``value * coefs[nf]``: a constant multiply when every fold has the same coefficient,
    else a multiplier fed by the coefficient table."""
    if len(set(coefs)) == 1:
        return _times(value, coefs[0])
    coef = Signal(signed(max(ir.signed_bits_for(min(min(coefs), 0), max(max(coefs), 0)), 2)),
                  name=name)
    with m.Switch(nf):
        for n, c in enumerate(coefs):
            with m.Case(n):
                m.d.comb += coef.eq(c)
    return value * coef
