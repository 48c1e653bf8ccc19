"""The constant-matrix engine: the adder graph equals ``W @ x`` (its own integer semantics and
its Amaranth hardware), exhaustively on small shapes and on random vectors at large ones; and
it is smaller than one adder tree of signed digits per row."""

import itertools

import numpy as np
import pytest
from amaranth.hdl import signed, unsigned
from amaranth.sim import Simulator

from hwquant.cmvm import build_adder_graph, depth_bound, signed_digit_terms
from hwquant.hw.cmvm import ConstantMatrix


def _sim(graph, x_shape, y_bits, xs):
    dut = ConstantMatrix(graph, x_shape, y_bits)
    got = []

    async def bench(ctx):
        for x in xs:
            for i, v in enumerate(x):
                ctx.set(dut.x[i], int(v))
            got.append([ctx.get(dut.y[j]) for j in range(graph.n_outputs)])

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    return np.array(got, dtype=np.int64)


def test_signed_digits_are_the_weights():
    w = np.array([[7, -3, 0, 8], [-128, 127, 5, -1]])
    rows = signed_digit_terms(w)
    for j, terms in enumerate(rows):
        back = np.zeros(w.shape[1], dtype=np.int64)
        for (i, s), v in terms.items():
            back[i] += v << s
        assert back.tolist() == w[j].tolist()
    assert len(rows[0]) == 2 + 2 + 1  # 7 = 8 - 1, 3 = 2 + 1, 8
    # Binary where it is as short as the canonical digits (one sign), canonical otherwise.
    assert rows[0][(1, 0)] == rows[0][(1, 1)] == -1
    assert signed_digit_terms(w, prefer_binary=False)[0][(1, 2)] == -1  # -3 = -4 + 1
    assert signed_digit_terms(np.array([[6, 7]]))[0] == {(0, 1): 1, (0, 2): 1, (1, 0): -1,
                                                        (1, 3): 1}


@pytest.mark.parametrize("signed_x", [False, True])
def test_exhaustive_small_matrix_graph_and_hardware(signed_x):
    rng = np.random.default_rng(3)
    w = rng.integers(-7, 8, size=(3, 3))
    w[1] = w[0]  # a repeated row: everything shared
    w[2, 1] = 0
    lo, hi = (-4, 3) if signed_x else (0, 7)
    graph = build_adder_graph(w, [(lo, hi)] * 3)
    xs = np.array(list(itertools.product(range(lo, hi + 1), repeat=3)))
    assert np.array_equal(graph.evaluate(xs), xs @ w.T)
    shape = signed(3) if signed_x else unsigned(3)
    assert np.array_equal(_sim(graph, shape, 10, xs), xs @ w.T)


@pytest.mark.parametrize("kind", ["int4", "pow2", "int8"])
def test_random_matrices_against_matmul(kind):
    rng = np.random.default_rng(11)
    shape = (12, 40)
    if kind == "int4":
        w = rng.integers(-8, 8, size=shape)
    elif kind == "int8":
        w = rng.integers(-128, 128, size=shape)
    else:
        e = rng.integers(0, 4, size=shape)
        w = np.where(rng.random(shape) < 0.25, 0, rng.choice([-1, 1], size=shape) << e)
    graph = build_adder_graph(w, [(0, 255)] * shape[1])
    xs = rng.integers(0, 256, size=(64, shape[1]))
    xs[0], xs[1] = 0, 255  # the corners of the range
    want = xs @ w.T
    assert np.array_equal(graph.evaluate(xs), want)
    assert np.array_equal(_sim(graph, unsigned(8), 24, xs[:24]), want[:24])
    for j, (lo, hi) in enumerate(graph.output_ranges):
        assert lo == np.minimum(w[j], 0).sum() * 255 and hi == np.maximum(w[j], 0).sum() * 255


def test_sharing_beats_plain_signed_digit_trees():
    rng = np.random.default_rng(0)
    w = rng.integers(-8, 8, size=(16, 64))
    plain = build_adder_graph(w, [(0, 255)] * 64, cse=False)
    shared = build_adder_graph(w, [(0, 255)] * 64)
    assert shared.adders < 0.6 * plain.adders
    assert shared.adder_bits < 0.7 * plain.adder_bits
    assert shared.depth <= plain.depth + 3


def test_zero_rows_columns_and_single_terms():
    w = np.array([[0, 0, 0], [0, 4, 0], [0, -1, 0], [3, 0, 0]])
    graph = build_adder_graph(w, [(-5, 9), (0, 3), (-2, 2)])
    xs = np.array(list(itertools.product(range(-5, 10), range(4), range(-2, 3))))
    assert np.array_equal(graph.evaluate(xs), xs @ w.T)
    assert graph.outputs[0] == (-1, 0, False)
    assert np.array_equal(_sim(graph, signed(5), 8, xs[::7]), xs[::7] @ w.T)


def test_bad_shapes_are_value_errors():
    with pytest.raises(ValueError, match="2-D"):
        build_adder_graph(np.ones(3, dtype=int), [(0, 1)] * 3)
    with pytest.raises(ValueError, match="input ranges"):
        build_adder_graph(np.ones((2, 3), dtype=int), [(0, 1)] * 2)
    graph = build_adder_graph(np.full((1, 2), 100), [(0, 255)] * 2)
    with pytest.raises(ValueError, match="bits"):
        ConstantMatrix(graph, unsigned(8), 8)


def test_column_blocks_beyond_the_pair_budget_stay_exact(monkeypatch):
    from hwquant import cmvm

    rng = np.random.default_rng(8)
    w = rng.integers(-8, 8, size=(6, 30))
    whole = build_adder_graph(w, [(0, 15)] * 30)
    monkeypatch.setattr(cmvm, "PAIR_BUDGET", 500)  # several column blocks
    blocked = build_adder_graph(w, [(0, 15)] * 30)
    xs = rng.integers(0, 16, size=(100, 30))
    assert np.array_equal(blocked.evaluate(xs), xs @ w.T)
    assert blocked.adders >= whole.adders


@pytest.mark.parametrize("seed", range(6))
def test_lazy_greedy_is_exact_exhaustively_at_small_sizes(seed):
    rng = np.random.default_rng(100 + seed)
    w = rng.integers(-15, 16, size=(4, 4))
    w[rng.random(w.shape) < 0.2] = 0
    w[3] = w[0] * 2  # a repeated (shifted) row: shared pairs across rows
    lo, hi = (-2, 1) if seed % 2 else (0, 3)
    xs = np.array(list(itertools.product(range(lo, hi + 1), repeat=4)))
    for slack in (0, 1, 3):
        for penalty in (0, 1, None):
            graph = build_adder_graph(w, [(lo, hi)] * 4, depth_slack=slack,
                                      subtraction_penalty=penalty)
            assert np.array_equal(graph.evaluate(xs), xs @ w.T)


@pytest.mark.parametrize("slack", [0, 1, 2])
def test_depth_stays_within_the_signed_digit_bound(slack):
    rng = np.random.default_rng(21)
    for w in (rng.integers(-8, 8, size=(16, 64)), rng.integers(-128, 128, size=(6, 20)),
              np.tile(rng.integers(-8, 8, size=(1, 24)), (8, 1))):
        bound = depth_bound(signed_digit_terms(w, prefer_binary=False)) + slack
        graph = build_adder_graph(w, [(0, 255)] * w.shape[1], depth_slack=slack)
        assert graph.depth <= bound
        xs = rng.integers(0, 256, size=(50, w.shape[1]))
        assert np.array_equal(graph.evaluate(xs), xs @ w.T)
    # The bound is what plain signed-digit trees need: 7 = 8 - 1 and 64 inputs.
    assert depth_bound(signed_digit_terms(np.full((1, 64), 7))) == 7


def test_sharing_ranks_pairs_by_adder_bits_saved():
    # x0 + x1 occurs in three rows but is a 2-bit adder; x2 + x3 in two rows, 17 bits: the
    # wide pair saves more and is shared first (a raw occurrence count would take x0 + x1).
    w = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]])
    ranges = [(0, 1), (0, 1), (0, 65535), (0, 65535)]
    graph = build_adder_graph(w, ranges)
    first = graph.nodes[0]
    assert first.shared and {first.a, first.b} == {2, 3}
    assert sum(n.shared for n in graph.nodes) == 2
    xs = np.array(list(itertools.product([0, 1], [0, 1], [0, 9, 65535], [0, 65535])))
    assert np.array_equal(graph.evaluate(xs), xs @ w.T)


def test_xilinx_face_counts_sign_extension_as_overlap():
    from hwquant.estimate.cmvm import node_logic_bits

    # a (8-bit unsigned) + b (4-bit): unsigned b leaves a's upper 4 bits to the carry chain;
    # a signed b sign-extends over them, a LUT each (above a's top its sign is a wire).
    for (lo, hi), want in (((0, 15), 4), ((-8, 7), 8)):
        graph = build_adder_graph(np.array([[1, 1]]), [(0, 255), (lo, hi)])
        (node,) = graph.nodes
        assert graph.evaluate(np.array([[255, hi], [0, lo]])).ravel().tolist() == [255 + hi, lo]
        assert node_logic_bits(graph, node, "xilinx") == want


def test_sums_only_sharing_makes_no_shared_difference():
    # x0 - x1 in every row: shared as a difference with no subtraction penalty, never with
    # penalty None (every shared signal a sum, unsigned over unsigned inputs); both exact.
    rng = np.random.default_rng(4)
    w = rng.integers(-8, 8, size=(6, 8))
    w[:, 0], w[:, 1] = 5, -5
    xs = rng.integers(0, 256, size=(100, 8))
    sums = build_adder_graph(w, [(0, 255)] * 8, subtraction_penalty=None)
    mixed = build_adder_graph(w, [(0, 255)] * 8, subtraction_penalty=0)
    for graph in (sums, mixed):
        assert np.array_equal(graph.evaluate(xs), xs @ w.T)
    assert all(not (n.neg_a or n.neg_b) and n.lo >= 0 for n in sums.nodes if n.shared)
    assert any(n.neg_a or n.neg_b for n in mixed.nodes if n.shared)


def test_default_keeps_the_penalty_with_fewer_logic_bits():
    # "best" (the default) builds a graph per penalty of SUBTRACTION_PENALTIES and keeps the
    # one with the fewest logic bits: on these matrices both rules win at least once.
    from hwquant.cmvm import SUBTRACTION_PENALTIES

    rng = np.random.default_rng(11)
    chosen = set()
    for seed in range(12):
        w = np.random.default_rng(seed).integers(-128, 128, size=(6, 12))
        ranges = [(0, 255)] * 12
        best = build_adder_graph(w, ranges)
        each = [build_adder_graph(w, ranges, subtraction_penalty=p) for p in SUBTRACTION_PENALTIES]
        bits = [g.adder_bits for g in each]
        assert best.adder_bits == min(bits)
        assert best == each[bits.index(min(bits))]
        chosen.add(bits.index(min(bits)))
        xs = rng.integers(0, 256, size=(50, 12))
        assert np.array_equal(best.evaluate(xs), xs @ w.T)
    assert chosen == {0, 1}
