"""The pipelined constant-matrix engine (:class:`hwquant.hw.cmvm.ConstantMatrix` with
``stages``): one vector a cycle, every output ``latency`` cycles after its input, bit-exact
against the graph's integer model (exhaustively over the inputs of a tiny matrix, on random
vectors at a small size), for several stage counts; and the plan's stages and registers."""

import itertools

import numpy as np
import pytest
from amaranth.hdl import signed, unsigned
from amaranth.sim import Simulator

from hwquant.cmvm import build_adder_graph, pipeline_plan
from hwquant.hw.cmvm import ConstantMatrix


def _stream(graph, x_shape, y_bits, xs, stages):
    """``y`` of every vector of ``xs`` (one a cycle), read ``latency`` cycles later."""
    dut = ConstantMatrix(graph, x_shape, y_bits, stages=stages)
    assert dut.latency == stages
    got = []

    async def bench(ctx):
        for cycle in range(len(xs) + dut.latency):
            for i, v in enumerate(xs[min(cycle, len(xs) - 1)]):
                ctx.set(dut.x[i], int(v))
            if cycle >= dut.latency:
                got.append([ctx.get(dut.y[j]) for j in range(graph.n_outputs)])
            if dut.latency:
                await ctx.tick()
            else:  # combinational: no clock domain
                await ctx.delay(1e-6)

    sim = Simulator(dut)
    if dut.latency:
        sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return np.array(got, dtype=np.int64)


@pytest.mark.parametrize("signed_x", [False, True])
def test_tiny_matrix_exhaustive_for_every_stage_count(signed_x):
    rng = np.random.default_rng(4)
    w = rng.integers(-7, 8, size=(4, 3))
    w[1] = w[0]
    w[2] = [-3, -5, 0]  # a row of subtracted terms only: a negation
    w[3] = [0, 0, 0]
    lo, hi = (-4, 3) if signed_x else (0, 7)
    graph = build_adder_graph(w, [(lo, hi)] * 3)
    xs = np.array(list(itertools.product(range(lo, hi + 1), repeat=3)))
    want = graph.evaluate(xs)
    assert np.array_equal(want, xs @ w.T)
    shape = signed(3) if signed_x else unsigned(3)
    for stages in range(graph.depth + 2):
        assert np.array_equal(_stream(graph, shape, 10, xs, stages), want), stages


@pytest.mark.parametrize("stages", [1, 2, 3])
def test_random_matrix_bit_exact(stages):
    rng = np.random.default_rng(12)
    w = rng.integers(-128, 128, size=(8, 24))
    w[0] = -np.abs(w[0])
    graph = build_adder_graph(w, [(0, 255)] * 24)
    assert graph.depth > 3
    xs = rng.integers(0, 256, size=(40, 24))
    xs[0], xs[1] = 0, 255
    assert np.array_equal(_stream(graph, unsigned(8), 24, xs, stages), graph.evaluate(xs))


def test_plan_stages_are_balanced_and_registers_counted():
    rng = np.random.default_rng(5)
    w = rng.integers(-8, 8, size=(8, 32))
    graph = build_adder_graph(w, [(0, 255)] * 32)
    depths = graph.signal_depths()
    assert pipeline_plan(graph, 0).register_bits == 0
    assert set(pipeline_plan(graph, 0).signal_stage) == {0}
    previous = 0
    for stages in (1, 2, graph.depth - 1):
        plan = pipeline_plan(graph, stages)
        per_stage = {}
        for s, t in enumerate(plan.signal_stage):
            assert plan.signal_last[s] >= t
            if depths[s]:
                per_stage.setdefault(t, []).append(depths[s])
        assert max(plan.signal_stage) == stages
        # At most ceil(depth / (stages + 1)) adders in a stage.
        span = -(-graph.depth // (stages + 1))
        assert all(max(d) - min(d) < span for d in per_stage.values())
        assert plan.register_bits > previous
        previous = plan.register_bits
    # Every input is registered at every cut before its last use; the outputs at all of them.
    plan = pipeline_plan(graph, 1)
    assert plan.register_bits >= sum(8 for s in range(32) if plan.signal_last[s] == 1)


def test_negative_stages_are_value_errors():
    graph = build_adder_graph(np.array([[1, 2]]), [(0, 3), (0, 3)])
    with pytest.raises(ValueError, match="stages"):
        ConstantMatrix(graph, unsigned(2), 8, stages=-1)
    with pytest.raises(ValueError, match="stages"):
        pipeline_plan(graph, -1)


def test_cost_face_adds_the_pipeline_registers_only():
    from hwquant.estimate.cmvm import graph_resources

    rng = np.random.default_rng(6)
    graph = build_adder_graph(rng.integers(-8, 8, size=(6, 16)), [(0, 255)] * 16)
    for family in ("xilinx", "ice40"):
        flat = graph_resources(graph, family)
        assert flat.ff == 0
        piped = graph_resources(graph, family, stages=2)
        assert piped.lut == flat.lut
        assert piped.ff == pipeline_plan(graph, 2).register_bits > 0
