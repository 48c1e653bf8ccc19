"""Value-grouped dot products (the ``memo`` MVU engine's arithmetic, shared by its hardware
:mod:`hwquant.hw.memo` and its cost face :mod:`hwquant.estimate.memo`; no Amaranth here).

A kernel whose weights take few distinct values needs one product per distinct value, not one
per tap: by distributivity, for the row ``w`` of channel ``c`` with the distinct values
``{b} ∪ {g_1 .. g_k}``,

    sum_i w_i x_i = b * S + sum_j (g_j - b) * G_j,   S = sum_i x_i,   G_j = sum_{i: w_i = g_j} x_i

(for two values ``a, b``: ``b * sum x + (a - b) * sum_A x``). The *base* ``b`` is 0 when the
row has a zero weight (then ``S`` is not needed), else its most frequent value (ties: the
smallest); ``S`` is one sum shared by every channel of the layer. The group sums ``G_j`` are
adds of the taps (AND-gated lanes when the weights come from a ROM), accumulated over the
folds; the multiplications by the constants ``g_j - b`` and ``b`` happen once per output, after
accumulation. This is the template engine's ``s * (2P - S)`` with any two values, and any
number of groups.

A kernel of two symmetric values ``+-A`` (a template kernel stored as fixed point) is
``A * sum_i s_i x_i`` with signs ``s_i = +-1``: folded, the signed sum is read straight from
the beat's lane pairs (:mod:`hwquant.lane_pairs`: ``x_a + x_b`` and ``x_a - x_b`` built once
for every PE, one select per pair, half the adders of a lane tree, no ``S``), and the one
multiply by ``A`` happens once per output, after accumulation: ``ACC = A * (T + K)``, ``T``
the accumulated pair sums and ``K`` the channel's leftover complements
(:func:`negations`).

The engine decides per PE (the channels ``p, p + PE, ...``): folded, in the lane-pair form
(:attr:`hwquant.ir.Fold.lane_pairs`, the compiler's choice per family), a PE is **paired**
when every channel of it is ``+-A`` and it needs fewer multiplies (one by ``A``, none for
``A = 2^k``; at least one counted) than ``SIMD``; otherwise it is **grouped** when the
products it would need, ``K_p + [some channel of it has b != 0]`` with ``K_p`` the most groups
of any of its channels, are fewer than the ``SIMD`` multipliers of a plain dot lane; any other
PE computes the plain dot ``sum w x`` (a ``fixed`` lane of the layer's integer weight width).
Unrolled, a ``+-A`` kernel is grouped (its group's lanes are fixed adds, cheaper than pairs).
The layer's integer semantics are those of its kind (``ACC = sum W * value(X)``): memo is an
implementation choice, so it serves any layer with non-bipolar inputs that has a grouped PE.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from . import ir
from .errors import HwquantError
from .lane_pairs import leftovers, vector_ranges

__all__ = ["MemoError", "ChannelGroups", "MemoLayout", "channel_groups", "memo_layout",
           "memo_refusal", "check_memo", "sum_range", "part_ranges", "negations",
           "combine_terms", "combine_multiplies", "common_factor", "is_shift"]


class MemoError(HwquantError, ValueError):
    """The memo engine cannot serve a layer."""


@dataclass(frozen=True)
class ChannelGroups:
    """One channel's decomposition: ``base`` ``b`` and the other distinct weights ``values``
    (ascending); ``coefficients`` are ``g_j - b``."""

    base: int
    values: tuple

    @property
    def coefficients(self) -> tuple:
        return tuple(v - self.base for v in self.values)

    @property
    def magnitude(self) -> int:
        """``A`` when the channel's weights are the two values ``+-A``, else 0."""
        if len(self.values) == 1 and self.base != 0 and self.values[0] == -self.base:
            return abs(self.base)
        return 0

    def index_row(self, row) -> np.ndarray:
        """Per tap the group index: 0 for the base, ``j + 1`` for ``values[j]``."""
        row = np.asarray(row, dtype=np.int64)
        idx = np.zeros(row.shape, dtype=np.int64)
        for j, v in enumerate(self.values):
            idx[row == v] = j + 1
        return idx


def channel_groups(row) -> ChannelGroups:
    """The decomposition of one weight row (see the module docstring)."""
    vals, counts = np.unique(np.asarray(row, dtype=np.int64), return_counts=True)
    base = 0 if (vals == 0).any() else int(vals[int(np.argmax(counts))])
    return ChannelGroups(base, tuple(int(v) for v in vals if v != base))


@dataclass(frozen=True)
class MemoLayout:
    """How the memo engine lays out a layer at its fold.

    ``groups`` per channel; per PE ``grouped`` (served by value: grouped or paired, not a
    plain dot), ``paired`` (a lane-pair PE, a subset of ``grouped``) and ``index_bits`` (ROM
    bits per lane of a grouped PE: the group index; 1 for a paired PE: its pair field);
    ``parts`` the partial sums per PE (``max K_p`` over the grouped PEs, at least 1);
    ``shared`` whether ``S`` is built (some grouped, not paired, channel has ``b != 0``);
    ``plain_bits`` the signed width of a plain PE's weight lanes (the layer's integer
    weights); ``simd`` the fold's lanes per beat."""

    groups: tuple
    grouped: tuple
    paired: tuple
    index_bits: tuple
    parts: int
    shared: bool
    plain_bits: int
    simd: int

    def pe_groups(self, p) -> int:
        """``K_p``: the most groups of PE ``p``'s channels."""
        pe = len(self.grouped)
        return max(len(g.values) for g in self.groups[p::pe])

    def pe_products(self, p) -> int:
        """Products a grouped PE forms in its combine at most: ``K_p`` plus one for
        ``b * S``."""
        pe = len(self.grouped)
        return self.pe_groups(p) + int(any(g.base for g in self.groups[p::pe]))


def memo_layout(layer, fold: ir.Fold | None = None) -> MemoLayout:
    """The :class:`MemoLayout` of ``layer`` at ``fold`` (default: its own). Group membership
    does not depend on the lane order, so the layer's natural weight matrix serves. Cached
    per layer object (layers are immutable) and fold."""
    return _layout(layer, fold or layer.fold)


@functools.lru_cache(maxsize=256)
def _layout(layer, fold) -> MemoLayout:
    w = layer.weight_matrix()
    groups = tuple(channel_groups(row) for row in w)
    pe, simd = fold.pe, fold.simd
    unrolled = fold.pe == layer.out_channels and fold.simd == layer.fan_in
    grouped, paired, bits = [], [], []
    for p in range(pe):
        chans = groups[p::pe]
        amps = tuple(g.magnitude for g in chans)
        if (not unrolled and fold.lane_pairs and all(amps)
                and max(_multiplies([(0, amps)]), 1) < simd):
            grouped.append(True)
            paired.append(True)
            bits.append(1)
            continue
        paired.append(False)
        need = _multiplies(_terms(chans))
        sums = max(len(g.values) for g in chans) + int(any(g.base for g in chans))
        # Folded: fewer multiplies and fewer gated SIMD-lane sums (parts and S) than the plain
        # lane's SIMD multipliers. Unrolled, where the plain rows are an adder graph without
        # multipliers: at most one multiply (a template's factor).
        ok = need <= 1 if unrolled else max(need, sums) < simd
        grouped.append(ok)
        bits.append(max(len(g.values) for g in chans).bit_length() if ok else 0)
    parts = max([max(len(g.values) for g in groups[p::pe])
                 for p in range(pe) if grouped[p]] + [1])
    shared = any(g.base for p in range(pe) if grouped[p] and not paired[p]
                 for g in groups[p::pe])
    plain_bits = ir.signed_bits_for(int(min(w.min(), 0)), int(max(w.max(), 0)))
    return MemoLayout(groups, tuple(grouped), tuple(paired), tuple(bits), parts, shared,
                      max(plain_bits, 2), simd)


def memo_refusal(layer, fold: ir.Fold | None = None) -> str | None:
    """Why the memo engine cannot serve ``layer`` at ``fold``, or None."""
    fold = fold or layer.fold
    if layer.in_format.bipolar:
        return "its input is bipolar (the memo engine sums input values, not codes)"
    lay = memo_layout(layer, fold)
    if not any(lay.grouped):
        unrolled = fold.pe == layer.out_channels and fold.simd == layer.fan_in
        if unrolled:
            most = min(_multiplies(_terms(lay.groups[p::fold.pe])) for p in range(fold.pe))
            return (f"no PE needs at most 1 multiply when grouped by weight value (fewest: "
                    f"{most}; unrolled, the plain rows are an adder graph)")
        most = min(lay.pe_products(p) for p in range(fold.pe))
        return (f"no PE needs fewer sums and multiplies than its SIMD={fold.simd} multipliers "
                f"when grouped by weight value (fewest: {most}; grouping pays with few "
                f"distinct weights per kernel)")
    return None


def check_memo(layer, fold: ir.Fold | None = None) -> None:
    """Raise :class:`MemoError` naming the layer when the memo engine cannot serve it."""
    why = memo_refusal(layer, fold)
    if why is not None:
        raise MemoError(f"Layer '{layer.name}': the memo engine cannot serve it: {why}")


def sum_range(n, fmt) -> tuple:
    """``(lo, hi)`` of a sum of ``n`` inputs of format ``fmt`` (0 included)."""
    return n * min(fmt.lo, 0), n * max(fmt.hi, 0)


def part_ranges(layer, weights) -> np.ndarray:
    """Worst-case ``(lo, hi)`` of each partial sum over a whole vector, ``(OC, parts, 2)``:
    a group sum ``G_j`` of a grouped PE's channel, the accumulated pair sums ``T`` of a paired
    PE's channel in part 0, the dot of a plain PE's channel in part 0, ``(0, 0)`` for the
    parts a channel does not use. ``weights`` ``(OC, F)`` in window-lane order."""
    lay = memo_layout(layer)
    fmt, pe = layer.in_format, layer.fold.pe
    w = np.asarray(weights, dtype=np.int64)
    out = np.zeros((layer.out_channels, lay.parts, 2), dtype=np.int64)
    for c in range(layer.out_channels):
        if lay.paired[c % pe]:
            out[c, 0] = vector_ranges(np.sign(w[c])[None], fmt, lay.simd)[0]
        elif lay.grouped[c % pe]:
            for j, v in enumerate(lay.groups[c].values):
                out[c, j] = sum_range(int((w[c] == v).sum()), fmt)
        else:
            lo, hi = ir.matrix_range(w[c][None], np.zeros(1, dtype=np.int64), fmt)
            out[c, 0] = (int(lo[0]), int(hi[0]))
    return out


def negations(layer, weights) -> np.ndarray:
    """Per channel ``K``, the constant a paired PE's combine adds to its accumulated pair sums
    before the multiply by ``A``: the beats whose last pair's complement had no carry-in
    (:func:`hwquant.lane_pairs.leftovers`; 0 with ``SIMD`` odd and for a channel not on a
    paired PE), int64 ``(OC,)``. ``weights`` ``(OC, F)`` in window-lane order."""
    lay = memo_layout(layer)
    pe, w = len(lay.grouped), np.asarray(weights, dtype=np.int64)
    out = np.zeros(layer.out_channels, dtype=np.int64)
    for p in range(pe):
        if lay.paired[p]:
            out[p::pe] = leftovers(np.sign(w[p::pe]), lay.simd).sum(axis=1)
    return out


def combine_terms(lay: MemoLayout, p: int) -> list:
    """The products of grouped PE ``p``'s combine: ``(source, coefficients per fold)`` with
    ``source`` the part index ``j`` (coefficient ``g_j - b``) or ``-1`` for ``S`` (``b``);
    columns that are 0 on every fold are left out. A paired PE's one product: ``(0, A per
    fold)``."""
    chans = lay.groups[p::len(lay.grouped)]
    if lay.paired[p]:
        return [(0, tuple(g.magnitude for g in chans))]
    return _terms(chans)


def combine_bits(lay: MemoLayout, p: int, part_bits, shared_bits: int, *,
                 factor: bool = True) -> int:
    """Width of the combine expression of PE ``p`` as :meth:`hwquant.hw.memo.MemoEngine.
    combine` writes it, by Amaranth's rules for signed operands (``a + b``: one bit wider
    than the wider; ``a * c``: the widths added, ``c`` as :func:`hwquant.hw.arith.
    const_signed`; ``a << k``: ``k`` wider; ``-a``: one wider), from the widths of its
    accumulators (``part_bits[j]`` and ``shared_bits`` of ``S``). The MVU's combine register
    holds it sign-extended; Yosys merges the copies of its sign bit, so the epilogue's
    arithmetic sees at most this many bits even where the ``ACC`` range would need more.
    ``factor=False``: the width of the sum before the multiply by the common factor."""
    if not lay.grouped[p]:
        return int(part_bits[0])
    terms = combine_terms(lay, p)
    if lay.paired[p]:  # A * (T + K), K (one per beat at most) only with SIMD even
        amps = terms[0][1]
        w = int(part_bits[0]) + (1 - lay.simd % 2)
        if len(set(amps)) == 1:
            return _times_bits(w, amps[0]) if factor else w
        return w + max(ir.signed_bits_for(0, max(amps)), 2)
    widths = [shared_bits if j < 0 else part_bits[j] for j, _ in terms]
    if all(len(set(c)) == 1 for _, c in terms):
        d, inner = common_factor([c[0] for _, c in terms])
        inner_sum = _tree_bits([_times_bits(w, c) for w, c in zip(widths, inner, strict=True)])
        return _times_bits(inner_sum, d) if factor else inner_sum
    out = []
    for w, (_, coefs) in zip(widths, terms, strict=True):
        if len(set(coefs)) == 1:
            out.append(_times_bits(w, coefs[0]))
        else:
            out.append(w + max(ir.signed_bits_for(min(min(coefs), 0), max(max(coefs), 0)), 2))
    return _tree_bits(out)


def _times_bits(width, c) -> int:
    """Width of ``value * c`` as ``MemoEngine`` builds it (a shift and a negation for ``+-2^k``)."""
    c = int(c)
    if is_shift(c):
        return width + abs(c).bit_length() - 1 + (1 if c < 0 else 0)
    return width + max(2, c.bit_length() + 1)


def _tree_bits(widths) -> int:
    """Width of :func:`hwquant.hw.arith.adder_tree` over signed terms of ``widths``."""
    widths = list(widths)
    if not widths:
        return 2
    while len(widths) > 1:
        nxt = [max(a, b) + 1 for a, b in zip(widths[0::2], widths[1::2])]
        if len(widths) % 2:
            nxt.append(widths[-1])
        widths = nxt
    return widths[0]


def _terms(chans) -> list:
    out = []
    for j in range(max(len(g.values) for g in chans)):
        coefs = tuple(g.coefficients[j] if j < len(g.values) else 0 for g in chans)
        if any(coefs):
            out.append((j, coefs))
    bases = tuple(g.base for g in chans)
    if any(bases):
        out.append((-1, bases))
    return out


def _multiplies(terms) -> int:
    """Multiplies a grouped PE's combine builds: with constant coefficients (one channel per
    PE, or equal ones) one by their common factor and one per remaining coefficient that is
    not ``+-2^k``; with coefficient tables one per term that is not a constant shift."""
    if all(len(set(c)) == 1 for _, c in terms):
        d, inner = common_factor([c[0] for _, c in terms])
        return int(not is_shift(d)) + sum(not is_shift(c) for c in inner)
    return sum(not (len(set(c)) == 1 and is_shift(c[0])) for _, c in terms)


def combine_multiplies(lay: MemoLayout, p: int) -> int:
    """Multiplies grouped PE ``p``'s combine builds (see :func:`_multiplies`)."""
    return _multiplies(combine_terms(lay, p))


def common_factor(coefs) -> tuple:
    """``(d, coefs / d)``: the greatest common divisor ``d > 0`` of constant coefficients (one
    per term), taken out so the terms are summed with small coefficients and multiplied by
    ``d`` once (a template kernel ``+-A``: ``A * (2 * G - S)``)."""
    d = math.gcd(*[int(c) for c in coefs]) or 1
    return d, tuple(int(c) // d for c in coefs)


def is_shift(c) -> bool:
    """Whether a multiply by the constant ``c`` is wiring (and a negation): ``+-2^k``."""
    c = abs(int(c))
    return c > 0 and c & (c - 1) == 0
