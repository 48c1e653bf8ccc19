# amaranth: UnusedElaboratable=no
"""The MVU with a pipelined constant-matrix engine (:attr:`hwquant.ir.Fold.stages` ``= L``):
bit-exact against the golden model under random stalls and cycle-exact against
:class:`hwquant.schedule.mvu.MatrixVectorUnitTiming` (``engine_stages=L``) in the Amaranth
simulator, and in Verilator through cocotb (every word compared under random stalls, the
stall-free latency and rate equal to the model's); the ``fixed``, ``memo`` and ``template``
engines; the stage choice (:mod:`hwquant.engine_stages`) and its errors; the cost model's
pipeline registers."""

import dataclasses
import os
import sys

import numpy as np
import pytest

from hwquant import golden, ir
from hwquant.engine_stages import (
    AUTO_LEVELS,
    EngineStagesError,
    auto_stages,
    choose_stages,
    engine_graph,
    parse_stage_spec,
)
from hwquant.estimate.mvu import mvu_resources
from hwquant.hw.mvu import BASE_LATENCY, MatrixVectorUnit
from hwquant.layout import pack_lanes, unpack_lanes
from hwquant.schedule.mvu import MatrixVectorUnitTiming

sys.path.insert(0, os.path.dirname(__file__))
from mvusim import random_x, run_mvu
from netbuilders import template_layer
from streamsim import simulate_stream
from test_hw_mvu import fixed_linear
from timingsim import check_timing


def staged(layer, stages, **fold):
    return dataclasses.replace(layer, fold=dataclasses.replace(layer.fold, stages=stages,
                                                               **fold))


@pytest.fixture(scope="module")
def unrolled():
    """A fully unrolled ``fixed`` layer whose adder graph is deep enough for 3 cuts."""
    layer = fixed_linear(np.random.default_rng(3), "unrolled", oc=6, fan_in=12)
    assert engine_graph(layer, layer.weight_matrix()).depth >= 4
    return layer


@pytest.mark.parametrize("stages", [1, 2, 3])
def test_pipelined_mvu_bit_exact_and_cycle_exact_with_stalls(unrolled, stages):
    layer = staged(unrolled, stages)
    dut = MatrixVectorUnit(layer, layer.weight_matrix())
    assert dut.latency == BASE_LATENCY + stages
    model = MatrixVectorUnitTiming(1, 1, engine_stages=stages)
    assert model.latency == dut.latency
    fired = check_timing(dut, model, in_beats=[30], cycles=160, seed=stages,
                         valid_gap=0.4, ready_stall=0.4)
    assert fired == {"i_stream": 30, "o_stream": 30}
    rng = np.random.default_rng(stages)
    x = random_x(rng, layer.in_format, 16, layer.fan_in)
    got, _ = run_mvu(layer, x, seed=stages, stalls=0.4)
    np.testing.assert_array_equal(got, golden.run_layer(layer, [x]))


def test_latency_grows_by_the_stages_and_rate_stays(unrolled):
    """Stall-free: ``N`` vectors take one cycle each after a latency of ``6 + L``."""
    rng = np.random.default_rng(8)
    x = random_x(rng, unrolled.in_format, 8, unrolled.fan_in)
    totals = {s: run_mvu(staged(unrolled, s), x)[1] for s in (0, 2)}
    assert totals[2] - totals[0] == 2


def _memo_layer():
    """Fully unrolled, rows of few distinct values (grouped) beside plain rows."""
    rng = np.random.default_rng(11)
    w = rng.integers(-7, 8, size=(6, 12))
    w[0] = np.where(rng.random(12) < 0.5, 3, 0)
    w[1] = np.where(rng.random(12) < 0.5, -5, 2)
    fmt = ir.ActFormat(4, False, 2)
    lo, hi = ir.matrix_range(w, np.zeros(6, dtype=np.int64), fmt)
    out = ir.ActFormat(ir.signed_bits_for(int(lo.min()), int(hi.max())), True, 0)
    return ir.Linear("fc", ("input",), fmt, w, 4, 0, np.zeros(6, dtype=np.int64), ir.Logits(),
                     out, fold=ir.Fold(6, 12, engine="memo"))


def test_memo_engine_pipelined_with_its_group_sums():
    from hwquant.memo import memo_layout

    layer = _memo_layer()
    lay = memo_layout(layer)
    assert any(lay.grouped) and not all(lay.grouped)
    graph = engine_graph(layer, layer.weight_matrix())
    assert graph is not None and graph.n_outputs == sum(not g for g in lay.grouped)
    stages = max(graph.depth - 1, 1)
    piped = staged(layer, stages)
    dut = MatrixVectorUnit(piped, piped.weight_matrix())
    check_timing(dut, MatrixVectorUnitTiming(1, 1, engine_stages=stages), in_beats=[20],
                 cycles=120, seed=1, valid_gap=0.3, ready_stall=0.3)
    x = random_x(np.random.default_rng(2), layer.in_format, 12, layer.fan_in)
    np.testing.assert_array_equal(run_mvu(piped, x, seed=4, stalls=0.4)[0],
                                  golden.run_layer(layer, [x]))
    # The cost model counts the cuts' registers and the delayed group and lane sums.
    extra = mvu_resources(piped, layer.weight_matrix(), "ice40").ff - \
        mvu_resources(layer, layer.weight_matrix(), "ice40").ff
    assert extra > stages * 2


def test_template_engine_pipelined():
    """The template engine's one graph (window sum and parts) cut once, a conv in window-lane
    order, under stalls."""
    from hwquant.layout import conv_weight_matrix

    rng = np.random.default_rng(10)
    fmt = ir.ActFormat(4, False, 1)
    layer = template_layer(rng, ids=(3, -1, 24, -1), signs=(1, 1, -1, 1), in_fmt=fmt,
                           fold=ir.Fold(4, 18, stages=1))
    w = conv_weight_matrix(layer.weight)
    assert engine_graph(layer, w).depth >= 2
    n = 8
    x = rng.integers(fmt.lo, fmt.hi + 1, (n, 2, 3, 3))
    want = golden.run_layer(layer, [x]).reshape(n, -1)
    lanes = x.transpose(0, 2, 3, 1).reshape(n, -1)  # window-lane order
    dut = MatrixVectorUnit(layer, w)
    assert dut.latency == BASE_LATENCY + 1
    out, _ = simulate_stream(dut, [pack_lanes(v, fmt.bits) for v in lanes], n, seed=3,
                             valid_gap=0.4, ready_stall=0.4)
    got = [unpack_lanes(v, layer.out_format.bits, 4, layer.out_format.signed) for v in out]
    np.testing.assert_array_equal(np.array(got), want)


def test_folded_or_non_graph_engine_refuses_stages(unrolled):
    folded = staged(unrolled, 1, pe=2)
    with pytest.raises(ValueError, match=r"^Layer 'fc': engine stages must be 0, not 1: its "
                                         r"engine \(PE=2 SIMD=12, fixed, engine plain\) is no "
                                         r"adder graph$"):
        MatrixVectorUnit(folded, folded.weight_matrix())
    with pytest.raises(ValueError, match="non-negative integer"):
        ir.Fold(2, 2, stages=-1)
    with pytest.raises(ValueError, match="non-negative integer"):
        MatrixVectorUnitTiming(1, 1, engine_stages=-1)


def test_cost_model_counts_the_pipeline_registers(unrolled):
    from hwquant.cmvm import pipeline_plan

    w = unrolled.weight_matrix()
    graph = engine_graph(unrolled, w)
    base = mvu_resources(unrolled, w, "ice40")
    for stages in (1, 2):
        res = mvu_resources(staged(unrolled, stages), w, "ice40")
        assert res.ff - base.ff == pipeline_plan(graph, stages).register_bits + 2 * stages
        assert res.lut == base.lut


# -- the stage choice ------------------------------------------------------------------------

def _net(layer):
    return ir.Network("n", (layer.fan_in,), layer.in_format, (layer,))


def test_choose_stages_auto_number_and_named(unrolled):
    net = _net(unrolled)
    graph = engine_graph(unrolled, unrolled.weight_matrix())
    auto, rows = choose_stages(net, "auto")
    assert auto.layer("fc").fold.stages == auto_stages(graph) == \
        -(-graph.depth // AUTO_LEVELS) - 1
    assert rows["fc"]["depth"] == graph.depth
    assert choose_stages(net, "fc=2")[0].layer("fc").fold.stages == 2
    # A number for every layer is capped at the graph's depth less one.
    assert choose_stages(net, "99")[0].layer("fc").fold.stages == graph.depth - 1
    folded = _net(dataclasses.replace(unrolled, fold=ir.Fold(2, 12)))
    assert choose_stages(folded, "3")[0].layer("fc").fold.stages == 0


@pytest.mark.parametrize("spec, message", [
    ("fc=x", (r"^Engine stages must be auto, N or LAYER=N \(N a non-negative integer, "
              r"comma-separated\), not 'fc=x'$")),
    ("-1", r"^Engine stages must be auto, N or LAYER=N"),
    ("fc=1,fc=2", r"^Engine stages for layer 'fc' given twice \(1, 2\)$"),
    ("conv9=1", (r"^Engine stages name layer 'conv9', which is not a weight layer; weight "
                 r"layers: fc$")),
    ("fc=99", (r"^Layer 'fc': engine stages must be 0\.\.\d+ \(its adder graph is \d+ adders "
               r"deep\), not 99$")),
])
def test_bad_stage_specs_are_one_line(unrolled, spec, message):
    with pytest.raises(EngineStagesError, match=message):
        choose_stages(_net(unrolled), spec)


def test_named_stages_on_a_folded_layer_is_refused(unrolled):
    net = _net(dataclasses.replace(unrolled, fold=ir.Fold(2, 12)))
    with pytest.raises(EngineStagesError, match=r"^Layer 'fc': engine stages must be 0 \(or "
                                                r"auto\): its engine is no adder graph \(PE=2 "
                                                r"SIMD=12, fixed, engine plain\)"):
        choose_stages(net, "fc=1")


def test_parse_stage_spec_forms():
    assert parse_stage_spec("auto") == ("auto", {})
    assert parse_stage_spec("2, conv1=auto,fc=0") == (2, {"conv1": "auto", "fc": 0})
    assert parse_stage_spec(["conv1=1", "3"]) == (3, {"conv1": 1})
    assert parse_stage_spec({"fc": 1}) == ("auto", {"fc": 1})


# -- Verilator ---------------------------------------------------------------------------------

def _stall_free(model, n_in, n_out):
    """``(latency, median interval)`` of a stall-free run of ``model`` as the stream
    testbench measures them: first output beat taken minus first input beat taken, and the
    cycles between output beats."""
    cycle, first_in, outs, left = 0, None, [], n_in
    while len(outs) < n_out and cycle < 10_000:
        in_valid = (left > 0,)
        valid = model.valid()
        ready = model.ready(in_valid, (True,))
        if in_valid[0] and ready[0]:
            first_in = cycle if first_in is None else first_in
            left -= 1
        if valid[0]:
            outs.append(cycle)
        model.tick(in_valid, ready, valid, (True,))
        cycle += 1
    return outs[0] - first_in, int(np.median(np.diff(outs)))


@pytest.mark.sim
@pytest.mark.parametrize("stages", [1, 2, 3])
def test_pipelined_mvu_in_verilator(unrolled, stages, tmp_path_factory):
    import hwquant.sim
    from amaranth.back import verilog

    layer = staged(unrolled, stages)
    root = tmp_path_factory.mktemp("mvu_pipe")
    path = root / "mvu.v"
    path.write_text(verilog.convert(MatrixVectorUnit(layer, layer.weight_matrix()), name="mvu",
                                    emit_src=False))
    rng = np.random.default_rng(40 + stages)
    x = random_x(rng, layer.in_format, 200, layer.fan_in)
    want = golden.run_layer(layer, [x])
    fin, fout = layer.in_format, layer.out_format
    inputs = [hex(pack_lanes(v, fin.bits)) for v in x]
    outputs = [hex(pack_lanes(v, fout.bits)) for v in want]
    spec = {"seed": stages, "inputs": {"i_stream": inputs}, "outputs": {"o_stream": outputs},
            "stall": {"valid_gap": 0.3, "ready_stall": 0.3}, "timeout_cycles": 20_000,
            "throughput": {"inputs": {"i_stream": inputs[:64]}, "output": "o_stream",
                           "items": 64}}
    res = hwquant.sim.run(path, "mvu", spec=spec, build_root=root / "build")
    assert res["passed"] and not res["timed_out"], res
    assert res["streams"]["o_stream"]["received"] == len(outputs)
    assert res["streams"]["o_stream"]["mismatches"] == 0
    latency, interval = _stall_free(MatrixVectorUnitTiming(1, 1, engine_stages=stages), 64, 64)
    assert latency == BASE_LATENCY + stages
    assert (res["throughput"]["latency"], res["throughput"]["median_interval"]) == \
        (latency, interval)
