"""Constant matrix-vector multiplication as one shared adder graph (pure Python + NumPy).

``y = W @ x`` for a constant integer matrix ``W`` (``n_out x n_in``) and integer inputs with
known ranges, built from additions and subtractions of shifted signals only:

1. **Recoding.** Every weight becomes signed digits with the fewest nonzero digits: its plain
   binary digits when they are no more than the canonical signed digits
   (:func:`hwquant.intmath.csd_digits`; ``3 = 2 + 1``, ``6 = 4 + 2``, all of the weight's
   sign), else the canonical ones (``7 = 8 - 1``). Row ``j`` is the set of terms
   ``+-(x_i << s)``.
2. **Common-subexpression elimination across the whole matrix.** A pair of terms of one sign
   ``+-x_a << s, +-x_b << (s + d)`` (same relative shift ``d``, over all rows and within a
   row) becomes a new signal ``x_a + (x_b << d)``, built once; its non-overlapping
   occurrences are replaced by one shifted term of it (of their sign), and new signals pair
   with inputs and with each other, so shared digits of one weight, input combinations of
   several rows and partial sums all come out of the same rule. A pair of opposite signs
   makes a difference ``x_a - (x_b << d)`` instead, which needs :data:`SUBTRACTION_PENALTY`
   more occurrences than a sum (a shared difference is signed: every adder above it in every
   row that uses it sign-extends it; ``None``: sums only; by default the graph is built with
   each of :data:`SUBTRACTION_PENALTIES` and the one with fewer logic bits kept, as the
   better rule differs between matrices). The pair chosen is the one that
   saves the most adder bits: ``(occurrences - 1) x`` the width of the adder it makes (its
   result bits that need logic, plus half its operands' overlap: what a carry-chain LUT
   pays for); ties to the wider adder. Greedy and lazy: the candidates sit in a heap under
   their last known value, which can only drop (occurrences are only consumed, rows only
   deepen — up to the split of a row's depth between its two trees); the top is re-valued
   on popping (its occurrences that fit the depth bound) and re-queued if it fell, else
   taken. Repeated while a pair is worth sharing.
3. **Depth bound.** An occurrence is replaced only while its row still fits
   :func:`depth_bound` (the depth of the plain signed-digit trees) plus :data:`DEPTH_SLACK`
   adders: each row tracks the Kraft sum ``sum 2**depth`` of its terms, and a tree of those
   terms fits ``D`` levels iff that sum is at most ``2**D``. Sharing deepens terms; the bound
   keeps the engine's timing (and where pipeline registers would go) near the unshared one.
4. **Adder trees.** What is left of each row is summed as two trees, of the added and of the
   subtracted terms, with one subtraction at the root (a row with subtracted terms only costs
   one negation). Each tree greedily adds the pair of terms whose adder is cheapest (fewest
   logic bits: result bits above the pass-through low bits, each a LUT and a carry bit;
   then the narrower sum) among the pairs that keep the tree within the depth bound, so
   narrow terms meet each other before a wide sum, whose upper bits an adder into it would
   carry through again. (Ranked by the operands' overlap instead, the trees lean to chains
   of narrow terms into wide sums: on a 16x64 random 4-bit matrix 2.2 % more logic bits,
   2.7 % more iCE40 LUTs and 1.4 % fewer xilinx LUTs, whose ``CARRY4`` passes a lone
   operand's bits through, but not fewer LUT sites: see ``benchmarks/bench_cmvm.py``.)

Every signal carries its exact coefficient vector over the inputs, so its range (and so the
adder's width) is the exact interval of that linear form over the input box — the same rule
that sizes the accumulators. :meth:`AdderGraph.evaluate` is the integer reference of the graph
(tests compare it with ``W @ x``, exhaustively on small shapes).

Cost: ``O(T^2)`` per row for the first pair count (``T`` terms in the row), ``O(T)`` per
replacement after it and ``O(T^2 log T)`` for a row's trees (every pair of its terms,
queued); beyond :data:`PAIR_BUDGET` pairs the columns are shared in blocks, so the
construction grows linearly with the number of blocks.
"""

from __future__ import annotations

import functools
import heapq
from dataclasses import dataclass

import numpy as np

from .intmath import csd_digits
from .ir import range_bits

__all__ = ["CSE_MAX_WEIGHTS", "DEPTH_SLACK", "PAIR_BUDGET", "SUBTRACTION_PENALTIES",
           "SUBTRACTION_PENALTY", "AdderGraph",
           "AdderNode", "PipelinePlan", "build_adder_graph", "depth_bound", "layer_adder_graph",
           "pipeline_plan", "signed_digit_terms"]

#: Largest relative shift a shared pair may have (keeps the key packing simple).
_MAX_SHIFT = 64

#: Term pairs counted at once (all rows); larger matrices share within column blocks, so the
#: construction stays near linear in the weights (a 32x144 8-bit matrix, 2.5 M pairs, is one).
PAIR_BUDGET = 4_000_000


@dataclass(frozen=True)
class AdderNode:
    """``value = (-1)**neg_a * (a << shift_a) + (-1)**neg_b * (b << shift_b)``.

    ``a``/``b`` are signal indices (inputs first, then nodes in order); ``lo``/``hi`` the exact
    range of the value over the input box; ``depth`` adders on the longest path from an
    input; ``shared`` whether common-subexpression elimination made it (it then feeds several
    terms), as opposed to a row's own adder tree.
    """

    a: int
    shift_a: int
    neg_a: bool
    b: int
    shift_b: int
    neg_b: bool
    lo: int
    hi: int
    depth: int
    shared: bool
    #: Low result bits that are wires (below the shifted operand's shift, the unshifted one
    #: added, not subtracted); the hardware emits them as such.
    free_bits: int = 0

    @property
    def bits(self) -> int:
        """Two's-complement width of the result (unsigned width when ``lo >= 0``)."""
        return range_bits(self.lo, self.hi)

    @property
    def cost_bits(self) -> int:
        """Result bits that need adder logic (one LUT and one carry bit each)."""
        return self.bits - self.free_bits


@dataclass(frozen=True)
class AdderGraph:
    """The adder graph of one constant matrix.

    ``input_ranges[i] = (lo, hi)`` of input ``i``; ``nodes`` in topological order (signal
    ``n_inputs + k`` is node ``k``); ``outputs[j] = (signal, shift, negate)`` with
    ``y_j = (-1)**negate * (signal << shift)``, or ``(-1, 0, False)`` for an all-zero row;
    ``output_ranges[j]`` the exact range of ``y_j``.
    """

    n_inputs: int
    input_ranges: tuple
    nodes: tuple
    outputs: tuple
    output_ranges: tuple

    @property
    def n_outputs(self) -> int:
        return len(self.outputs)

    @property
    def adders(self) -> int:
        """Two-input adders/subtractors, including the negations of negative rows."""
        return len(self.nodes) + sum(1 for s, _, neg in self.outputs if neg and s >= 0)

    @property
    def adder_bits(self) -> int:
        """Adder result bits that need logic (the LUT/carry cost of the graph): each adder's
        width less its pass-through low bits, plus the negations."""
        neg = sum(range_bits(*self.output_ranges[j]) for j, (s, _, n) in enumerate(self.outputs)
                  if n and s >= 0)
        return sum(n.cost_bits for n in self.nodes) + neg

    @property
    def depth(self) -> int:
        """Adders on the longest input-to-output path."""
        depths = self.signal_depths()
        return max([depths[s] + (1 if neg else 0) for s, _, neg in self.outputs if s >= 0]
                   + [0])

    def signal_depths(self) -> list:
        return [0] * self.n_inputs + [n.depth for n in self.nodes]

    def signal_range(self, signal: int) -> tuple:
        if signal < self.n_inputs:
            return self.input_ranges[signal]
        node = self.nodes[signal - self.n_inputs]
        return node.lo, node.hi

    def evaluate(self, x) -> np.ndarray:
        """``y`` for a batch ``x`` of shape ``(N, n_inputs)``: the graph's integer semantics,
        exact (Python integers where int64 could overflow)."""
        x = np.asarray(x)
        big = max([abs(v) for r in self.output_ranges for v in r]
                  + [abs(v) for n in self.nodes for v in (n.lo, n.hi)] + [1])
        dtype = np.int64 if big < 1 << 60 else object
        sig = [x[:, i].astype(dtype) for i in range(self.n_inputs)]
        for n in self.nodes:
            va = sig[n.a] * (1 << n.shift_a)
            vb = sig[n.b] * (1 << n.shift_b)
            sig.append((-va if n.neg_a else va) + (-vb if n.neg_b else vb))
        zero = np.zeros(len(x), dtype=dtype)
        cols = []
        for s, shift, neg in self.outputs:
            v = zero if s < 0 else sig[s] * (1 << shift)
            cols.append(-v if neg else v)
        return np.stack(cols, axis=1) if cols else np.zeros((len(x), 0), dtype=dtype)


#: Whether a weight whose plain binary digits are no more than its canonical signed digits is
#: recoded in binary (``3 = 2 + 1``: terms of one sign, fewer subtractions and signed sums).
PREFER_BINARY = True


def signed_digit_terms(weights, prefer_binary=None) -> list:
    """Per row, the signed-digit terms ``{(input, shift): sign}`` of the row: canonical signed
    digits, or plain binary where it is as short (``prefer_binary``, by default
    :data:`PREFER_BINARY`)."""
    if prefer_binary is None:
        prefer_binary = PREFER_BINARY
    w = np.asarray(weights, dtype=np.int64)
    rows = []
    for row in w:
        terms = {}
        for i, value in enumerate(row.tolist()):
            if value:
                sign = 1 if value > 0 else -1
                digits = csd_digits(abs(value))
                if prefer_binary and abs(value).bit_count() <= len(digits):
                    digits = [(k, 1) for k in range(abs(value).bit_length())
                              if abs(value) >> k & 1]
                for shift, digit in digits:
                    terms[(i, shift)] = sign * digit
        rows.append(terms)
    return rows


class _Builder:
    """Signals with exact coefficient vectors and ranges; nodes appended as they are made."""

    def __init__(self, input_ranges):
        self.n_inputs = len(input_ranges)
        self.lo_in = np.array([r[0] for r in input_ranges], dtype=object)
        self.hi_in = np.array([r[1] for r in input_ranges], dtype=object)
        self.coef = [{i: 1} for i in range(self.n_inputs)]
        self.ranges = [tuple(r) for r in input_ranges]
        self.depth = [0] * self.n_inputs
        self.nodes = []

    def _range_of(self, coef):
        lo = hi = 0
        for i, c in coef.items():
            a, b = c * self.lo_in[i], c * self.hi_in[i]
            lo += min(a, b)
            hi += max(a, b)
        return int(lo), int(hi)

    def width(self, s) -> int:
        return range_bits(*self.ranges[s])

    def pair_range(self, a, b, d, sigma):
        """Exact range of ``a + sigma * (b << d)`` (without making it)."""
        ca, cb = self.coef[a], self.coef[b]
        k = sigma << d
        if a != b and (ca.keys().isdisjoint(cb) if len(ca) < len(cb) else
                       cb.keys().isdisjoint(ca)):
            # Independent inputs: the exact ranges add.
            (la, ha), (lb, hb) = self.ranges[a], self.ranges[b]
            return la + min(k * lb, k * hb), ha + max(k * lb, k * hb)
        coef = dict(ca)
        for i, c in cb.items():
            coef[i] = coef.get(i, 0) + c * k
        return self._range_of({i: c for i, c in coef.items() if c})

    def add(self, a, sa, na, b, sb, nb, shared):
        coef = {}
        for s, sh, neg in ((a, sa, na), (b, sb, nb)):
            k = -(1 << sh) if neg else 1 << sh
            for i, c in self.coef[s].items():
                coef[i] = coef.get(i, 0) + c * k
        coef = {i: c for i, c in coef.items() if c}
        lo, hi = self._range_of(coef)
        depth = max(self.depth[a], self.depth[b]) + 1
        free = 0
        if sa == 0 and not na and sb > 0:
            free = min(sb, self.width(a))
        self.nodes.append(AdderNode(a, sa, na, b, sb, nb, lo, hi, depth, shared, free))
        self.coef.append(coef)
        self.ranges.append((lo, hi))
        self.depth.append(depth)
        return len(self.ranges) - 1


#: Occurrences a shared difference ``x_a - (x_b << d)`` needs beyond those of a shared sum (see
#: ``score``), or ``None``: differences are never shared, every shared signal is a sum. Yosys
#: inverts a subtrahend's bits (all of them beside the LUT4 families' carry chains, those
#: outside the operands' overlap on xilinx), and a shared difference is signed: every adder
#: above it, in every row that uses it, sign-extends it over the other operand (on xilinx a
#: LUT a bit). Measured with Yosys 0.70 on ``benchmarks/bench_cmvm.py`` (xilinx, this
#: construction): 16x64 4-bit 8,221 LUT with 1, 8,270 with 2, 8,482 with sums only; the CNN's
#: first layer 1,945 with 1 (0.904x da4ml), 1,896 with 2; int8 32x144 (one pipeline cut)
#: 63,424 with 2, 61,781 with sums only. Sums only helps the 8-bit matrix as much as it
#: hurts the 4-bit one, so neither is right for every matrix: see :data:`SUBTRACTION_PENALTIES`.
SUBTRACTION_PENALTY = 2

#: What :func:`build_adder_graph` tries by default (``subtraction_penalty="best"``): a graph for
#: each penalty, the one with the fewest logic bits (:attr:`AdderGraph.adder_bits`; ties: the
#: first) kept. The logic bits pick what Yosys measured on both matrices above (16x64 4-bit:
#: 9,300 bits with 2 against 9,335 sums only; 32x144 8-bit: 75,053 against 74,253), at twice
#: the construction time. Penalty 1 is left out: on the 8-bit matrix it has the fewest logic
#: bits of the three (74,176) but the most LUTs (64,341).
SUBTRACTION_PENALTIES = (SUBTRACTION_PENALTY, None)

#: Adders a shared pair may add to the graph's depth beyond that of the plain signed-digit trees
#: (:func:`depth_bound`): sharing makes a term deeper, and the engine's timing is that depth.
DEPTH_SLACK = 1

#: Signals per graph (key packing); far beyond any unrolled layer.
_SIGNALS = 1 << 24


def _key(t1, t2, mixed):
    """The packed key of a pair of terms ``(signal, shift, sign)``: it names the shared
    signal ``lo + sigma * (hi << d)`` (``lo`` the less-shifted term, by signal on a tie), as
    ``((lo * _SIGNALS + hi) * _MAX_SHIFT + d) * 2 + (sigma < 0)``; ``None`` when ``d`` is too
    large to share, or the signs differ and differences are not shared (``mixed`` false)."""
    g1, s1, v1 = t1
    g2, s2, v2 = t2
    if (s1, g1) > (s2, g2):
        g1, s1, g2, s2 = g2, s2, g1, s1
    d = s2 - s1
    if d >= _MAX_SHIFT or (v1 != v2 and not mixed):
        return None
    return ((g1 * _SIGNALS + g2) * _MAX_SHIFT + d) * 2 + (v1 != v2)


def _unpack(key):
    key, negative = divmod(key, 2)
    key, d = divmod(key, _MAX_SHIFT)
    g1, g2 = divmod(key, _SIGNALS)
    return g1, g2, d, -1 if negative else 1


def build_adder_graph(weights, input_ranges, *, cse: bool = True,
                      subtraction_penalty: int | None | str = "best",
                      depth_slack: int = DEPTH_SLACK) -> AdderGraph:
    """The shared adder graph of ``y = weights @ x`` (see the module docstring).

    ``weights`` is an integer matrix ``(n_out, n_in)``; ``input_ranges`` one ``(lo, hi)`` per
    input. ``cse=False`` skips the sharing (plain signed-digit adder trees per row), for
    comparison; ``subtraction_penalty`` the occurrences a shared difference needs beyond a
    sum (:data:`SUBTRACTION_PENALTY`; ``None``: sums only; ``"best"``, the default: the
    graph of :data:`SUBTRACTION_PENALTIES` with the fewest logic bits);
    ``depth_slack`` :data:`DEPTH_SLACK` (the graph is at most :func:`depth_bound` of the
    signed-digit rows plus this many adders deep).
    """
    if subtraction_penalty == "best":
        graphs = [build_adder_graph(weights, input_ranges, cse=cse, subtraction_penalty=p,
                                    depth_slack=depth_slack)
                  for p in (SUBTRACTION_PENALTIES if cse else SUBTRACTION_PENALTIES[:1])]
        return min(graphs, key=lambda g: g.adder_bits)  # min keeps the first of equals
    w = np.asarray(weights, dtype=np.int64)
    if w.ndim != 2:
        raise ValueError(f"Constant matrix must be 2-D (outputs x inputs), not shape {w.shape}")
    if len(input_ranges) != w.shape[1]:
        raise ValueError(f"{len(input_ranges)} input ranges for a matrix of {w.shape[1]} columns")
    b = _Builder(input_ranges)
    rows = [{(i, s): v for (i, s), v in r.items()} for r in signed_digit_terms(w)]
    # The depth of canonical-signed-digit trees (binary digits may need a level more).
    bound = depth_bound(signed_digit_terms(w, prefer_binary=False)) + depth_slack
    kraft = [[sum(1 for v in r.values() if v > 0), sum(1 for v in r.values() if v < 0)]
             for r in rows]
    if cse:
        # Pair counting is quadratic in a row's terms: beyond the budget, share within column
        # blocks (whose results the row trees then add).
        pairs = sum(len(r) * (len(r) - 1) // 2 for r in rows)
        blocks = max(1, -(-pairs // PAIR_BUDGET))
        blocks = min(blocks, w.shape[1])
        block_of = (np.arange(w.shape[1]) * blocks) // w.shape[1]
        parts = [[{} for _ in rows] for _ in range(blocks)]
        for j, r in enumerate(rows):
            for k, v in r.items():
                parts[block_of[k[0]]][j][k] = v
        merged = [{} for _ in rows]
        for part in parts:
            _eliminate_common_pairs(b, part, kraft, bound, subtraction_penalty)
            for m, r in zip(merged, part, strict=True):
                m.update(r)
        rows = merged
    outputs, out_ranges = [], []
    for j, terms in enumerate(rows):
        outputs.append(_sum_tree(b, [(g, s, v) for (g, s), v in terms.items()], bound))
        coef = {}
        for i, c in enumerate(w[j].tolist()):
            if c:
                coef[i] = c
        out_ranges.append(b._range_of(coef))
    return AdderGraph(b.n_inputs, tuple(tuple(r) for r in input_ranges), tuple(b.nodes),
                      tuple(outputs), tuple(out_ranges))


def _pair_keys(t1, t2, mixed):
    """:func:`_key` of arrays of terms ``(n, 3)`` (int64), -1 where it is ``None``."""
    swap = (t1[:, 1] > t2[:, 1]) | ((t1[:, 1] == t2[:, 1]) & (t1[:, 0] > t2[:, 0]))
    lo, hi = np.where(swap[:, None], t2, t1), np.where(swap[:, None], t1, t2)
    d = hi[:, 1] - lo[:, 1]
    negative = lo[:, 2] != hi[:, 2]
    keys = ((lo[:, 0] * _SIGNALS + hi[:, 0]) * _MAX_SHIFT + d) * 2 + negative
    bad = d >= _MAX_SHIFT
    if not mixed:
        bad |= negative
    return np.where(bad, -1, keys)


def _count_pairs(rows, mixed):
    """Occurrences of every pair key over ``rows`` (each row counts each of its pairs) and the
    rows holding it, for the keys that occur at least twice: a pair seen once can never be
    shared (the elimination only ever lowers the count of an existing pair; the pairs it
    creates involve the new signal). Vectorised: the quadratic part is NumPy's."""
    keys, owners = [], []
    for r, terms in enumerate(rows):
        if len(terms) < 2:
            continue
        items = np.array([(g, s, v) for (g, s), v in terms.items()], dtype=np.int64)
        i, j = np.triu_indices(len(items), 1)
        k = _pair_keys(items[i], items[j], mixed)
        k = k[k >= 0]
        keys.append(k)
        owners.append(np.full(len(k), r, dtype=np.int64))
    if not keys:
        return {}, {}
    keys, owners = np.concatenate(keys), np.concatenate(owners)
    unique, inverse, occurrences = np.unique(keys, return_inverse=True, return_counts=True)
    shared = occurrences[inverse] >= 2
    keys, owners = keys[shared], owners[shared]
    if not len(keys):
        return {}, {}
    counts = dict(zip(unique[occurrences >= 2].tolist(),
                      occurrences[occurrences >= 2].tolist(), strict=True))
    order = np.lexsort((owners, keys))
    keys, owners = keys[order], owners[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    holders = {key: set(group) for key, group in
               zip(keys[starts].tolist(), np.split(owners, starts[1:]), strict=True)}
    return counts, holders


def _ceil_log2(n: int) -> int:
    return (n - 1).bit_length() if n > 1 else 0


def _row_depth(pos: int, neg: int) -> int:
    """Depth of a row's sum (see :func:`_sum_tree`) from the Kraft sums ``pos``/``neg`` of its
    added and subtracted terms (``sum 2**depth``): the shallowest tree of terms of those
    depths is ``ceil(log2 sum)`` deep, and a row with subtracted terms needs one more level
    (the root subtraction, or the negation when nothing is added)."""
    if not neg:
        return _ceil_log2(pos) if pos else 0
    return max(_ceil_log2(pos) if pos else 0, _ceil_log2(neg)) + 1


def depth_bound(rows) -> int:
    """Depth of the plain signed-digit trees of ``rows`` (``{(input, shift): sign}`` each): the
    deepest row's :func:`_row_depth` with every term at depth 0."""
    return max([_row_depth(sum(1 for v in r.values() if v > 0),
                           sum(1 for v in r.values() if v < 0)) for r in rows] + [0])


def _eliminate_common_pairs(b: _Builder, rows: list, kraft: list, bound: int,
                            penalty: int | None) -> None:
    """Greedy sharing of term pairs within ``rows`` (edited in place; ``kraft[r]`` the row's
    ``[pos, neg]`` Kraft sums over all its terms, also those outside ``rows``, kept up to
    date), by adder bits saved, never past depth ``bound`` (see the module docstring);
    differences need ``penalty`` more occurrences than sums, and are not shared if it is
    ``None``."""
    mixed = penalty is not None
    # rows[r]: {(signal, shift): sign}; by_signal[r]: {signal: set of shifts} (for matching).
    by_signal = []
    for terms in rows:
        index = {}
        for g, s in terms:
            index.setdefault(g, set()).add(s)
        by_signal.append(index)

    def bump(key, delta, r):
        c = counts.get(key, 0) + delta
        if c > 0:
            counts[key] = c
            if delta > 0:
                holders.setdefault(key, set()).add(r)
        else:
            counts.pop(key, None)
            holders.pop(key, None)
        return c

    counts, holders = _count_pairs(rows, mixed)
    widths = {}

    def width(key):
        # Adder bits of the shared node the pair would make (its exact range less the
        # pass-through low bits, plus half its operands' overlap, what a carry-chain LUT
        # pays for): about what each further occurrence saves.
        w = widths.get(key)
        if w is None:
            g1, g2, d, sigma = _unpack(key)
            lo, hi = b.pair_range(g1, g2, d, sigma)
            w = range_bits(lo, hi) - min(d, b.width(g1))
            r2 = b.ranges[g2] if sigma > 0 else (-b.ranges[g2][1], -b.ranges[g2][0])
            ov = _overlap_cost(b.ranges[g1], 0, r2, d)[0]
            w = widths[key] = w + ov / 2
        return w

    def score(key, occurrences):
        # Adder bits saved: k occurrences cost one shared adder instead of k row adders of
        # about its width. A difference needs `penalty` more occurrences than a sum (Yosys
        # inverts a subtrahend's bits).
        return (occurrences - 1 - (penalty if key & 1 else 0)) * width(key)

    def plan(key):
        # The non-overlapping occurrences of `key` that keep their row within the depth bound:
        # [(row, [(shift, sign_a, sign_b), ...])], applied in this order.
        g1, g2, d, sigma = _unpack(key)
        grown = 1 << (max(b.depth[g1], b.depth[g2]) + 1)
        w1, w2 = 1 << b.depth[g1], 1 << b.depth[g2]
        out = []
        for r in sorted(holders.get(key, ())):
            terms, index = rows[r], by_signal[r]
            pos, neg = kraft[r]
            matches, used = [], set()
            for s in sorted(index.get(g1, ())):
                partner = (g2, s + d)
                pv = terms.get(partner)
                if pv is None or (g1, s) in used or partner in used \
                        or terms[(g1, s)] * pv != sigma:
                    continue
                v = terms[(g1, s)]
                p2, n2 = pos, neg
                for sign, weight in ((v, -w1), (pv, -w2), (v, grown)):
                    if sign > 0:
                        p2 += weight
                    else:
                        n2 += weight
                if _row_depth(p2, n2) > bound:
                    break
                pos, neg = p2, n2
                used.update({(g1, s), partner})
                matches.append((s, v, pv))
            if matches:
                out.append((r, matches))
        return out

    def entry(key, value):
        return (-value, -width(key), key)

    heap = [entry(k, score(k, c)) for k, c in counts.items() if score(k, c) > 0]
    heapq.heapify(heap)
    while heap:
        neg_value, _, key = heapq.heappop(heap)
        # Lazy greedy: the heap holds upper bounds (occurrences only ever drop, and a row only
        # ever grows deeper); the true value is recomputed and the pair re-queued if it fell.
        if key not in counts:
            continue
        # Pair counts first (cheap, an upper bound), then the true occurrences.
        value = score(key, counts[key])
        if value <= 0:
            continue
        if value < -neg_value:
            heapq.heappush(heap, entry(key, value))
            continue
        todo = plan(key)
        value = score(key, sum(len(m) for _, m in todo))
        if value <= 0:
            continue
        if value < -neg_value:
            heapq.heappush(heap, entry(key, value))
            continue
        g1, g2, d, sigma = _unpack(key)
        new = b.add(g1, 0, False, g2, d, sigma < 0, shared=True)
        grown = 1 << b.depth[new]
        touched = set()
        for r, matches in todo:
            terms, index = rows[r], by_signal[r]
            for s, v, pv in matches:
                # Remove both terms and their pairs with the rest of the row.
                for gone in ((g1, s, v), (g2, s + d, pv)):
                    del terms[(gone[0], gone[1])]
                    index[gone[0]].discard(gone[1])
                    kraft[r][0 if gone[2] > 0 else 1] -= 1 << b.depth[gone[0]]
                    for (g, sh), vv in terms.items():
                        k = _key(gone, (g, sh, vv), mixed)
                        if k is not None:
                            bump(k, -1, r)
                bump(key, -1, r)
                term = (new, s, v)
                for (g, sh), vv in terms.items():
                    k = _key(term, (g, sh, vv), mixed)
                    if k is not None and bump(k, 1, r) >= 2:
                        touched.add(k)
                terms[(new, s)] = v
                index.setdefault(new, set()).add(s)
                kraft[r][0 if v > 0 else 1] += grown
        for k in touched:
            c = counts.get(k, 0)
            if score(k, c) > 0:
                heapq.heappush(heap, entry(k, score(k, c)))


def _sum_tree(b: _Builder, terms: list, bound: int) -> tuple:
    """Sum ``terms`` (``(signal, shift, sign)``) within ``bound`` adders of depth;
    ``(signal, shift, negate)`` of the result.

    The added terms and the subtracted ones are summed apart (:func:`_cheap_tree`) and the row
    subtracts once at the root: an adder is cheaper than a subtractor (the subtrahend's bits
    outside the overlap need inverting). Each adder keeps its less-shifted operand unshifted,
    so the bits below the other operand's shift are wires."""
    if not terms:
        return (-1, 0, False)
    both = any(v > 0 for _, _, v in terms) and any(v < 0 for _, _, v in terms)
    # Each tree one level short of the bound when the root subtracts (or negates).
    pos = _cheap_tree(b, [(g, s) for g, s, v in terms if v > 0], bound - (1 if both else 0))
    neg = _cheap_tree(b, [(g, s) for g, s, v in terms if v < 0], bound - 1)
    if neg is None:
        return (pos[0], pos[1], False)
    if pos is None:
        return (neg[0], neg[1], True)
    (gp, sp), (gn, sn) = pos, neg
    if sp <= sn:  # P - (N << d): P's low bits pass through
        return (b.add(gp, 0, False, gn, sn - sp, True, shared=False), sp, False)
    return (b.add(gp, sp - sn, False, gn, 0, True, shared=False), sn, False)


def _overlap_cost(r1, s1, r2, s2) -> tuple:
    """``(LUT bits, result bits)`` of adding ``r1 << s1`` and ``r2 << s2`` (ranges ``r``):
    the bits where both operands have logic, a signed operand's sign extension included (what
    a carry-chain adder needs a LUT for; elsewhere the chain passes the one operand through)."""
    lo = (r1[0] << s1) + (r2[0] << s2)
    hi = (r1[1] << s1) + (r2[1] << s2)
    base = min(s1, s2)
    width = range_bits(lo >> base, hi >> base)
    top1 = width if r1[0] < 0 else s1 - base + range_bits(*r1)
    top2 = width if r2[0] < 0 else s2 - base + range_bits(*r2)
    return max(0, min(top1, top2, width) - (max(s1, s2) - base)), width


def _logic_bits(r1, s1, r2, s2) -> tuple:
    """``(logic bits, result bits)`` of adding ``r1 << s1`` and ``r2 << s2`` (ranges ``r``):
    the result bits above the less-shifted operand's own low bits (wires), the carry-out
    included."""
    lo = (r1[0] << s1) + (r2[0] << s2)
    hi = (r1[1] << s1) + (r2[1] << s2)
    base = min(s1, s2)
    width = range_bits(lo >> base, hi >> base)
    return width - (max(s1, s2) - base), width


def _cheap_tree(b: _Builder, terms: list, depth: int):
    """Sum of ``terms`` (``(signal, shift)``, all added) as ``(signal, shift)``, ``None`` if
    there are none: greedily the pair of terms whose adder has the fewest logic bits (its
    result bits above the pass-through low bits, :func:`_logic_bits`: each a LUT and a carry
    bit; then the narrower sum, then the shallower), among the pairs after which the rest
    still fits a tree ``depth`` adders deep (the Kraft sum ``sum 2**depth`` of the terms stays
    within ``2**depth``; merging two terms never lowers it, so a pair that does not fit never
    will). Narrow terms are so added to each other before they reach a wide sum, whose upper
    bits every adder into it would carry through again."""
    if not terms:
        return None
    live = {}
    for n, (g, s) in enumerate(terms):
        live[n] = (g, s)
    kraft = sum(1 << b.depth[g] for g, _ in terms)
    cap = max(1 << max(depth, 0), 1 << _ceil_log2(kraft))
    serial = len(terms)

    def entry(m, n):
        (g1, s1), (g2, s2) = live[m], live[n]
        cost, width = _logic_bits(b.ranges[g1], s1, b.ranges[g2], s2)
        return (cost, width, max(b.depth[g1], b.depth[g2]), m, n)

    heap = [entry(m, n) for m in live for n in live if m < n]
    heapq.heapify(heap)
    while len(live) > 1:
        _, _, _, m, n = heapq.heappop(heap)
        if m not in live or n not in live:
            continue
        (g1, s1), (g2, s2) = live[m], live[n]
        d1, d2 = b.depth[g1], b.depth[g2]
        grown = kraft - (1 << d1) - (1 << d2) + (1 << (max(d1, d2) + 1))
        if grown > cap:
            continue
        kraft = grown
        del live[m], live[n]
        (gu, su), (go, so) = ((g1, s1), (g2, s2)) if s1 <= s2 else ((g2, s2), (g1, s1))
        node = b.add(gu, 0, False, go, so - su, False, shared=False)
        live[serial] = (node, su)
        for k in list(live):
            if k != serial:
                heapq.heappush(heap, entry(k, serial))
        serial += 1
    return next(iter(live.values()))


@functools.lru_cache(maxsize=64)
def _cached_graph(weights_bytes, shape, lo, hi, cse, penalty, slack):
    w = np.frombuffer(weights_bytes, dtype=np.int64).reshape(shape)
    return build_adder_graph(w, [(lo, hi)] * shape[1], cse=cse, subtraction_penalty=penalty,
                             depth_slack=slack)


#: Largest matrix (weights) whose adder graph shares subexpressions; larger ones (far beyond
#: what a board holds unrolled) get plain signed-digit trees, built in linear time.
CSE_MAX_WEIGHTS = 20_000


def layer_adder_graph(layer, weights) -> AdderGraph:
    """The adder graph of a fully unrolled layer: ``weights`` ``(OC, F)`` in window-lane order,
    every input in the layer's input code range. Cached: the hardware (elaborated for the plain
    and the probed top) and the cost model share one construction."""
    w = np.ascontiguousarray(np.asarray(weights, dtype=np.int64))
    fmt = layer.in_format
    return _cached_graph(w.tobytes(), w.shape, int(fmt.lo), int(fmt.hi),
                         w.size <= CSE_MAX_WEIGHTS, "best", DEPTH_SLACK)


@dataclass(frozen=True)
class PipelinePlan:
    """Where the pipeline registers of an adder graph cut it (``stages`` register cuts).

    An adder at depth ``d`` (of the graph's :attr:`AdderGraph.depth` ``D``) sits in stage
    ``(d - 1) * (stages + 1) // D`` (stage 0 from the inputs, the last one ``stages``: at most
    ``ceil(D / (stages + 1))`` adders deep each); a row's negation is an adder one deeper than
    its signal. A value made in stage ``t`` and used in stage ``u > t`` crosses ``u - t``
    registers, one chain per signal shared by all its users (every live signal registered at
    every cut); every output leaves in stage ``stages``, so all of them come out ``stages``
    cycles after their inputs.

    ``signal_stage[s]`` the stage of signal ``s`` (inputs 0); ``signal_last[s]`` the last
    stage that uses it (its own stage if none later); ``negate_stage[j]`` the stage of output
    ``j``'s negation (``-1`` if it has none); ``register_bits`` the flip-flops, each signal's
    width (:func:`hwquant.ir.range_bits` of its range) per register it crosses, a negated
    output's at its own range.
    """

    stages: int
    signal_stage: tuple
    signal_last: tuple
    negate_stage: tuple
    register_bits: int


def _stage(depth: int, total: int, stages: int) -> int:
    return 0 if depth <= 0 or total <= 0 else (depth - 1) * (stages + 1) // total


def pipeline_plan(graph: AdderGraph, stages: int) -> PipelinePlan:
    """The :class:`PipelinePlan` of ``graph`` with ``stages >= 0`` register cuts (0: the
    combinational graph, no registers)."""
    if stages < 0:
        raise ValueError(f"Pipeline stages must be >= 0, not {stages}")
    total, depths = graph.depth, graph.signal_depths()
    stage = [_stage(d, total, stages) for d in depths]
    last = list(stage)
    for k, node in enumerate(graph.nodes):
        t = stage[graph.n_inputs + k]
        last[node.a] = max(last[node.a], t)
        last[node.b] = max(last[node.b], t)
    negate = []
    bits = 0
    for j, (s, _, neg) in enumerate(graph.outputs):
        if s < 0:
            negate.append(-1)
            continue
        if neg:
            t = _stage(depths[s] + 1, total, stages)
            negate.append(t)
            last[s] = max(last[s], t)
            bits += range_bits(*graph.output_ranges[j]) * (stages - t)
        else:
            negate.append(-1)
            last[s] = stages
    bits += sum(range_bits(*graph.signal_range(s)) * (last[s] - stage[s])
                for s in range(len(stage)))
    return PipelinePlan(stages, tuple(stage), tuple(last), tuple(negate), bits)
