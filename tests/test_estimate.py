"""The analytical resource model (:mod:`hwquant.estimate.model`, the stage, epilogue and
``fixed`` cost faces, board fit and the build report): every stage of the dataflow plan is
costed, totals add up, the model reacts to weights, folding and FIFO depths the way the
hardware does, costs scale with the parallelism and not the layer size, and (``synth``
marker) it stays within its stated tolerance of Yosys."""

import re
import subprocess
import sys

import numpy as np
import pytest

from hwquant import ir
from hwquant import plan as P
from hwquant.boards import load_board
from hwquant.errors import HwquantError, UnsupportedLayerError
from hwquant.estimate import epilogue, fixed
from hwquant.estimate.common import ram
from hwquant.estimate.fit import DoesNotFitError, check_fit
from hwquant.estimate.model import estimate_network
from hwquant.estimate.report import (
    WRAPPER_TOP,
    estimate_build,
    relative_error,
    wrapper_verilog,
)
from hwquant.estimate.resources import FAMILIES, Resources
from hwquant.fold import apply_folding

#: Model LUT count vs Yosys on the synth-tested network (see the accuracy notes of
#: hwquant/estimate/model.py).
LUT_TOLERANCE = 0.20
#: Flip-flops: the registers are modelled part by part.
FF_TOLERANCE = 0.10

def small_net():
    rng = np.random.default_rng(0)
    fin, fo = ir.ActFormat(8, False, 7), ir.ActFormat(8, False, 4)
    conv = ir.Conv2d(name="conv1", inputs=("input",), in_format=fin,
                     weight=rng.integers(-127, 128, (8, 1, 3, 3)), weight_bits=8, weight_frac=7,
                     bias=rng.integers(-100, 100, 8), epilogue=ir.Requant(np.ones(8), 10, 0, 255),
                     out_format=fo, in_shape=(1, 8, 8), padding=1)
    pool = ir.MaxPool2d("pool1", ("conv1",), (8, 8, 8), 2, 2, 0, fo)
    flat = ir.Flatten("flat", ("pool1",), (8, 4, 4), fo)
    fc = ir.Linear(name="fc", inputs=("flat",), in_format=fo,
                   weight=rng.integers(-127, 128, (10, 128)), weight_bits=8, weight_frac=7,
                   bias=np.zeros(10), epilogue=ir.Logits(), out_format=ir.ActFormat(24, True, 11))
    return ir.Network("t", (1, 8, 8), fin, (conv, pool, flat, fc))


def linear(weights, *, fold=None, xbits=4):
    w = np.asarray(weights)
    fmt = ir.ActFormat(xbits, False, 0)
    fold = fold or ir.Fold(w.shape[0], w.shape[1])
    return ir.Linear("fc", ("input",), fmt, w, 4, 0, np.zeros(len(w)), None,
                     ir.ActFormat(24, True, 0), fold=fold)


@pytest.fixture(scope="module")
def net():
    return apply_folding(small_net(), "auto")


def _stage_rows(est):
    out = {}
    for row in est.components:
        out.setdefault(row["stage"], []).append(row)
    return out


# -- Every stage is costed, totals add up -------------------------------------------------------

@pytest.mark.parametrize("family", FAMILIES)
def test_every_stage_is_costed(net, family):
    plan = P.plan_network(net)
    est = estimate_network(plan, family)
    rows = _stage_rows(est)
    for row in est.components:
        total = row["lut"] + row["ff"] + row["dsp"] + row["bram"] + row["lutram"]
        assert total > 0, row
    hardware = [st for st in plan.stages if not isinstance(st, P.Source)]
    assert set(rows) == {st.name for st in hardware}
    for st in hardware:
        assert all(r["layer"] == st.layer for r in rows[st.name]), st.name
    kinds = {type(st) for st in hardware}
    assert {P.Window, P.Mvu, P.MaxReduce, P.Fifo, P.ArgMax} <= kinds


@pytest.mark.parametrize("family", FAMILIES)
def test_totals_are_sums_of_layers(net, family):
    est = estimate_network(net, family)
    assert list(est.layers) == ["conv1", "pool1", "fc"]  # IR names; flatten has no hardware
    assert est.total == sum(est.layers.values(), Resources())
    for name, res in est.layers.items():
        rows = [r for r in est.components if r["layer"] == name]
        assert res == Resources(**{k: sum(r[k] for r in rows) for k in ("lut", "ff", "dsp",
                                                                          "bram")})
    assert est.lutram == sum(r["lutram"] for r in est.components)
    assert est.total.lut > 0 and est.total.ff > 0


def test_network_and_plan_agree(net):
    assert estimate_network(net, "ecp5") == estimate_network(P.plan_network(net), "ecp5")


def test_flip_flops_follow_the_hardware(net):
    """Registers are exact where the hardware is regular: conv1's window register holds 3x3
    pixels of 8 bits (register mode, SIMD 3 on one channel), fc's operand register SIMD
    lanes of 8 bits, the arg-max output register all logits, the index and valid."""
    rows = {(r["stage"], r["component"]): r for r in estimate_network(net, "ice40").components}
    assert rows[("conv1_window", "window.registers")]["ff"] == 9 * 8
    assert rows[("fc", "mvu.operand_register")]["ff"] == net.layer("fc").fold.simd * 8
    assert rows[("conv1", "mvu.output_register")]["ff"] == net.layer("conv1").fold.pe * 8
    beats = 10  # PE = 1: one logit per beat
    assert rows[("argmax", "argmax.registers")]["ff"] == (10 * 24 + 4 + 1 + 24 + 4
                                                          + (beats - 1) * 24)


def test_fifo_depths_change_the_estimate(net):
    plan = P.plan_network(net)
    assert set(plan.fifos) == {"conv1_fifo", "pool1_fifo"}
    base = estimate_network(plan, "ice40")
    deep = estimate_network(plan, "ice40", fifo_depths={"conv1_fifo": 64})
    assert deep == estimate_network(plan.with_fifo_depths({"conv1_fifo": 64}), "ice40")
    assert deep.layers["conv1"] != base.layers["conv1"]
    assert deep.layers["pool1"] == base.layers["pool1"]
    fifo = {r["component"] for r in deep.components if r["stage"] == "conv1_fifo"}
    assert fifo == {"fifo.storage", "fifo.control", "fifo.bypass"}
    # A deeper register FIFO costs more flip-flops.
    three = estimate_network(plan, "ice40", fifo_depths={"conv1_fifo": 3})
    assert three.layers["conv1"].ff > base.layers["conv1"].ff
    with pytest.raises(P.PlanError, match=r"^No FIFO named flat; FIFOs: "):
        estimate_network(net, "ice40", fifo_depths={"flat": 4})
    with pytest.raises(ValueError, match=r"^FIFO 'conv1_fifo': depth must be a positive "
                                         r"integer, not 0$"):
        estimate_network(net, "ice40", fifo_depths={"conv1_fifo": 0})


def test_unknown_family_raises(net):
    with pytest.raises(ValueError, match=r"^Family must be one of ice40, ecp5, xilinx, gowin, "
                                         r"not 'virtex'$"):
        estimate_network(net, "virtex")


def test_unknown_stage_raises(net):
    """A stage the model has no cost for is an error, never a silent zero."""
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Systolic(P.Stage):
        pass

    plan = P.plan_network(net)
    st = plan.stages[1]
    odd = Systolic(st.name, st.layer, st.inputs, st.fmt, st.lanes, st.beats)
    bad = P.Plan(net, (plan.stages[0], odd, *plan.stages[2:]))
    with pytest.raises(UnsupportedLayerError,
                       match=r"^Layer 'conv1': the cost model does not know stage "
                             r"'conv1_window' \(Systolic\)$"):
        estimate_network(bad, "ice40")
    with pytest.raises(TypeError, match=r"^Estimate needs a Network or a Plan, not str$"):
        estimate_network("net", "ice40")


def test_the_model_imports_no_hardware():
    code = ("import sys, hwquant.estimate, hwquant.estimate.model, hwquant.estimate.stages;"
            "bad = [m for m in sys.modules if m.startswith(('amaranth', 'hwquant.hw'))];"
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# -- Costs follow the parallelism ---------------------------------------------------------------

def _mvu_parts(lay, family="ice40"):
    net = ir.Network("n", (lay.fan_in,), lay.in_format, (lay,))
    return {r["component"].split(".", 1)[1]: Resources(r["lut"], r["ff"], r["dsp"], r["bram"])
            for r in estimate_network(net, family).components if r["stage"] == lay.name}


@pytest.mark.parametrize("family", FAMILIES)
def test_costs_scale_with_pe_simd_not_layer_size(family):
    rng = np.random.default_rng(3)
    small = linear(rng.integers(-7, 8, (8, 32)), fold=ir.Fold(2, 4))
    big = linear(rng.integers(-7, 8, (64, 256)), fold=ir.Fold(2, 4))
    a, b = _mvu_parts(small, family), _mvu_parts(big, family)
    for part in ("operand_register", "dot_engines", "output_register"):
        assert a[part] == b[part], part
    # Only the memories (ROM, input buffer) and a few counter/accumulator bits grow.
    logic = ("operand_register", "dot_engines", "dot_registers", "accumulators",
             "combine_register", "epilogue", "output_register")
    la = sum(a[k].lut + a[k].ff for k in logic if k in a)
    lb = sum(b[k].lut + b[k].ff for k in logic if k in b)
    assert lb <= 1.3 * la, (la, lb)
    wider = _mvu_parts(linear(rng.integers(-7, 8, (8, 32)), fold=ir.Fold(4, 8)), family)
    assert wider["dot_engines"].lut + wider["dot_engines"].dsp > \
        a["dot_engines"].lut + a["dot_engines"].dsp


# -- Epilogues ----------------------------------------------------------------------------------

def _epilogue_layer(ep, oc=8, pe=2, out=None):
    out = out or ir.ActFormat(4, False, 0)
    rng = np.random.default_rng(5)
    w = rng.integers(-7, 8, (oc, 16))
    return ir.Linear("fc", ("input",), ir.ActFormat(4, False, 0), w, 4, 0,
                     rng.integers(-20, 20, oc), ep, out, fold=ir.Fold(pe, 4))


@pytest.mark.parametrize("family", FAMILIES)
def test_epilogue_faces(family):

    rq = _epilogue_layer(ir.Requant(np.ones(8), 4, 0, 15))
    bits = ir.accumulator_bits(rq)
    assert epilogue.resources(rq, family, acc_bits=bits).lut > 0
    # Thresholds: T comparators per PE, more thresholds cost more.
    costs = []
    for count in (1, 3, 15):
        thr = np.sort(np.random.default_rng(count).integers(-200, 200, (8, count)), axis=1)
        lay = _epilogue_layer(ir.Thresholds(thr, np.ones(8)))
        costs.append(epilogue.resources(lay, family, acc_bits=bits).lut)
    assert 0 < costs[0] < costs[1] < costs[2], costs
    # A threshold per channel selected by the fold index costs more than shared ones.
    same = np.tile(np.arange(-3, 12), (8, 1))
    diff = same + np.arange(8)[:, None] * 7
    shared = _epilogue_layer(ir.Thresholds(same, np.ones(8)))
    varied = _epilogue_layer(ir.Thresholds(diff, np.ones(8)))
    assert epilogue.resources(varied, family, acc_bits=bits).lut > \
        epilogue.resources(shared, family, acc_bits=bits).lut
    # Logits: a per-class scale adds shift-adds (constant) or a multiplier (selected).
    wide = ir.ActFormat(24, True, 0)
    plain = _epilogue_layer(ir.Logits(), out=wide)
    const = _epilogue_layer(ir.Logits(np.full(8, 5)), out=wide)
    sel = _epilogue_layer(ir.Logits(np.arange(1, 9)), out=wide)
    p, c, s = (epilogue.resources(x, family, acc_bits=bits, use_dsp=False).lut
               for x in (plain, const, sel))
    assert p < c < s, (p, c, s)


# -- Board capacity ------------------------------------------------------------------------------

def test_check_fit(net):
    board = load_board("icebreaker")
    fit = check_fit(estimate_network(net, board.family), board)
    assert fit.fits and fit.over == [] and 0 < fit.utilization()["lut"] < 1
    assert set(fit.largest) >= {"lut", "ff"}
    # Folded to 8k products per cycle (fully unrolled, the constant-matrix adder graph of 16k
    # weights would take its estimate half a minute).
    big = linear(np.random.default_rng(4).integers(-7, 8, (64, 256)), xbits=8,
                 fold=ir.Fold(64, 128))
    huge = ir.Network("n", (256,), big.in_format, (big,))
    est = estimate_network(huge, "ice40")
    with pytest.raises(DoesNotFitError, match=r"^The network does not fit board 'icebreaker' "
                                              r"\(iCE40UP5K\): LUTs: \d+ needed, 5280 "
                                              r"available; the largest consumer is layer 'fc' "
                                              r"\(fc, mvu.dot_engines: \d+\)"):
        check_fit(est, board)
    assert not check_fit(est, board, raise_error=False).fits
    with pytest.raises(ValueError, match=r"^The estimate is for xilinx, but board "
                                         r"'icebreaker' is ice40$"):
        check_fit(estimate_network(net, "xilinx"), board)


# -- The fixed cost face ------------------------------------------------------------------------

@pytest.mark.parametrize("family", FAMILIES)
def test_zero_weights_cost_fewer_luts(family):
    rng = np.random.default_rng(1)
    w = rng.integers(-7, 8, (4, 16))
    w[w == 0] = 3
    sparse = w.copy()
    sparse[:, ::2] = 0
    dense_cost = fixed.resources(linear(w), family, use_dsp=False)
    sparse_cost = fixed.resources(linear(sparse), family, use_dsp=False)
    assert 0 < sparse_cost.lut < dense_cost.lut
    assert fixed.resources(linear(np.zeros((4, 16), int)), family) == Resources()


def test_zero_weights_cost_fewer_luts_in_the_network():
    """On iCE40, 4-bit constants times 4-bit activations stay in LUTs (no DSP inference)."""
    def network(w):
        fc = linear(w)
        return ir.Network("n", (16,), fc.in_format, (fc,))

    w = np.full((4, 16), 5)
    sparse = w.copy()
    sparse[:, :8] = 0
    dense = estimate_network(network(w), "ice40").layers["fc"]
    thin = estimate_network(network(sparse), "ice40").layers["fc"]
    assert thin.lut < dense.lut and dense.dsp == thin.dsp == 0


@pytest.mark.parametrize("family", FAMILIES)
def test_folding_reduces_multiplier_cost(family):
    w = np.random.default_rng(2).integers(-7, 8, (4, 16))
    costs = [fixed.resources(linear(w, fold=ir.Fold(pe, simd)), family, use_dsp=False).lut
             for pe, simd in ((1, 1), (1, 4), (2, 8), (4, 16))]
    # Fewer multipliers, fewer LUTs; the fully unrolled layer (64 constant multipliers, cheap
    # for 4-bit weights) still costs far more than one variable multiplier.
    assert costs[0] < costs[1] < costs[2] and costs[0] < costs[3], costs
    dsp = [fixed.resources(linear(w, fold=ir.Fold(pe, simd), xbits=8), family).dsp
           for pe, simd in ((1, 1), (1, 4), (2, 8))]
    assert dsp == sorted(dsp) and dsp[0] < dsp[2], dsp


def test_dsp_inference_follows_the_emitted_multiply():
    """Amaranth emits ``unsigned x * negative constant`` as a multiply by the constant
    sign-extended to the product width; Yosys's DSP rules see that width."""
    # iCE40 needs a product of at least 11 bits: 4x4-bit products stay in LUTs.
    assert fixed.const_product(-7, 4, False, "ice40") == (fixed.const_product(
        -7, 4, False, "ice40", use_dsp=False)[0], False)
    assert fixed.const_product(-100, 8, False, "ice40")[1]
    # Gowin takes both operands of at least 4 bits: -1 is an 8-bit constant here, 7 is 3 bits.
    assert fixed.const_product(-1, 4, False, "gowin")[1]
    assert not fixed.const_product(7, 4, False, "gowin")[1]
    # Powers of two are wiring everywhere.
    for family in FAMILIES:
        assert fixed.const_product(4, 8, False, family) == (Resources(), False)


def test_xilinx_dsp_blocks_absorb_registers(net):
    conv = net.layer("conv1")  # auto folding: PE=2, SIMD=3, products in DSP48E1
    assert (conv.fold.pe, conv.fold.simd) == (2, 3)
    got = fixed.absorbed_registers(conv, "xilinx")
    assert got == {"operand": 3 * 8, "dot": [True, True]}
    assert fixed.absorbed_registers(conv, "ice40") == {"operand": 0, "dot": [False, False]}


def test_cycles_match_the_hardware_plan(net):
    for st in P.plan_network(net).stages:
        if isinstance(st, P.Mvu):
            assert fixed.cycles(net.layer(st.layer)) == st.busy


def test_fixed_face_rejects_other_layers(net):
    with pytest.raises(TypeError, match=r"^Dot engines belong to a conv2d or linear layer, "
                                        r"not MaxPool2d$"):
        fixed.resources(net.layer("pool1"), "ice40")


# -- Memories -----------------------------------------------------------------------------------

def test_ram_placement_follows_memory_libmap():
    # iCE40 has no distributed RAM: a line buffer of 10 x 16 bits is one SB_RAM40_4K ...
    res, cells, where = ram(10, 16, "ice40", transparent=True)
    assert (where, res.bram, cells) == ("bram", 1, 0)
    # ... but 3 x 64 bits cost less in flip-flops (192) than in four blocks (256).
    res, cells, where = ram(3, 64, "ice40", transparent=False)
    assert where == "ff" and res.ff == 3 * 64 + 64
    # Distributed RAM elsewhere: RAM32M (32 x 6) on Xilinx, DPR16X4 on ECP5 and Gowin.
    assert ram(3, 64, "xilinx", transparent=False)[1:] == (11, "lutram")
    assert ram(4, 192, "ecp5", transparent=True)[1:] == (48, "lutram")
    assert ram(4, 192, "gowin", transparent=True)[1:] == (48, "lutram")


# -- The build report ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def build(tmp_path_factory):
    from hwquant.compile import compile_network

    out = tmp_path_factory.mktemp("estimate") / "build"
    compile_network(small_net(), out, fold="auto")
    return out


def test_estimate_build(build, net):
    import json

    res = estimate_build(build, family="xilinx")
    assert res["family"] == "xilinx" and res["synth"] is None and res["error"] is None
    assert [row["name"] for row in res["layers"]] == ["conv1", "pool1", "fc"]
    for key in ("lut", "ff", "dsp", "bram", "lutram"):
        assert res["model"][key] == sum(row[key] for row in res["layers"])
    depths = json.loads((build / "compile.json").read_text())["fifo_depths"]
    est = estimate_network(net, "xilinx", fifo_depths=depths)
    assert res["model"] == {**est.total.to_json(), "lutram": est.lutram}
    assert res["components"] == est.components


def test_estimate_build_errors(build, tmp_path):
    with pytest.raises(HwquantError, match=r"is not a hwquant build directory"):
        estimate_build(tmp_path)
    with pytest.raises(ValueError, match=r"^Family must be one of "):
        estimate_build(build, family="stratix")


def test_wrapper_verilog_keeps_the_ports(build):
    text = (build / "network.v").read_text()
    wrapper = wrapper_verilog(text)
    assert wrapper.startswith(f"module {WRAPPER_TOP}(")
    header = re.search(r"^module hwquant_top\((.*?)\);", text, re.MULTILINE).group(1)
    assert re.search(r"^module \w+\((.*?)\);", wrapper).group(1) == header
    assert "  input [7:0] i_stream__payload;\n" in wrapper
    assert "  output [243:0] o_stream__payload;\n" in wrapper
    assert "hwquant_top u_hwquant_top (.i_stream__valid(i_stream__valid)," in wrapper
    with pytest.raises(ValueError, match=r"^Module 'other' is not defined in the Verilog$"):
        wrapper_verilog(text, "other")


def test_relative_error():
    model = {"lut": 110, "ff": 90, "dsp": 0, "bram": 2}
    synth = {"lut": 100, "ff": 100, "dsp": 0, "bram": 0}
    assert relative_error(model, synth) == {"lut": pytest.approx(0.1), "ff": pytest.approx(-0.1),
                                            "dsp": 0.0, "bram": None}


# -- Against Yosys ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def synth_build(tmp_path_factory):
    """The small network with 4-deep FIFOs: about 20 s of Yosys per family."""
    from hwquant.compile import compile_network

    out = tmp_path_factory.mktemp("estimate_synth") / "build"
    compile_network(small_net(), out, fold="auto", fifo_depth=4)
    return out


@pytest.mark.synth
@pytest.mark.parametrize("family", ["ice40", pytest.param("xilinx", marks=pytest.mark.slow)])
def test_model_matches_yosys(synth_build, family):
    res = estimate_build(synth_build, family=family, synth=True)
    synth, model = res["synth"], res["model"]
    assert abs(res["error"]["lut"]) <= LUT_TOLERANCE, (model, synth)
    assert abs(res["error"]["ff"]) <= FF_TOLERANCE, (model, synth)
    assert model["dsp"] == synth["dsp"]
    assert model["bram"] == synth["bram"]
    # Distributed-RAM cells: the tiling of a few small memories differs by a cell or two.
    assert abs(model["lutram"] - synth["lutram"]) <= 3, (model, synth)
