# amaranth: UnusedElaboratable=no
"""The ``binary`` kind's hardware (:mod:`hwquant.hw.binary`) against its golden inner product
(:mod:`hwquant.golden.binary`) and the plain integer product, in the Amaranth simulator: the
per-lane dot engine (XNOR-popcount for bipolar inputs, add/subtract for multi-bit ones, constant
and ROM weights), the MVU for every fold with thresholds, requant and logits epilogues under
random stalls, whole networks through the network top; and (``synth`` marker) in Yosys: no
multiplier, no DSP block."""

import os
import sys

import numpy as np
import pytest

from hwquant import golden, ir
from hwquant.golden import binary as gbin
from hwquant.golden.exact import int64_only
from hwquant.hw.binary import BinaryEngine, DotEngine
from hwquant.hw.mvu import MatrixVectorUnit
from hwquant.hw.network import NetworkTop
from hwquant.layout import pack_lanes, unpack_lanes
from hwquant.plan import plan_network
from hwquant.vectors import expected_words, input_words

sys.path.insert(0, os.path.dirname(__file__))
from enginesim import simulate_engine
from netbuilders import binary_chain, binary_linear, binary_mlp
from streamsim import simulate_stream

B = ir.BIPOLAR
FORMATS = [B, ir.ActFormat(4, False, 0), ir.ActFormat(3, True, 0)]


def signs(rng, shape):
    return rng.choice([-1, 1], shape)


def _layer(w, fmt):
    w = np.asarray(w)
    return ir.Linear("fc", ("input",), fmt, w, 1, 0, np.zeros(len(w)), None,
                     ir.ActFormat(16, True, 0), encoding="binary")


def _codes(fmt, rng, n, lanes):
    x = rng.integers(fmt.lo, fmt.hi + 1, (n, lanes))
    x[0], x[-1] = fmt.lo, fmt.hi
    return x


# -- golden ---------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS, ids=["bipolar", "u4", "s3"])
def test_golden_forms_equal_the_integer_product(fmt):
    """The XNOR-popcount (bipolar) and add/subtract (multi-bit) forms equal ``W @ value(x)``."""
    rng = np.random.default_rng(1)
    w = signs(rng, (7, 37))
    layer = _layer(w, fmt)
    v = fmt.value(_codes(fmt, rng, 50, 37))
    with int64_only():
        ref_path = gbin.dot(layer, v)
    np.testing.assert_array_equal(ref_path, v @ w.T)
    np.testing.assert_array_equal(gbin.dot(layer, v), v @ w.T)


def test_xnor_popcount_counts_agreements():
    wb = np.array([[1, 0, 1, 1]])
    xb = np.array([[1, 1, 0, 1], [0, 1, 0, 0]])
    np.testing.assert_array_equal(gbin.xnor_popcount(wb, xb), [[2], [0]])


@pytest.mark.parametrize("weights, message", [
    ([[1, 0, -1]], "binary weights must be -1 or \\+1, not 0"),
    ([[1, 2, -1]], "binary weights must be -1 or \\+1, not 2"),
])
def test_ir_refuses_other_weights(weights, message):
    with pytest.raises(ValueError, match=f"^Layer 'fc': {message}$"):
        _layer(weights, B)


def test_ir_refuses_wider_weight_codes():
    with pytest.raises(ValueError, match="binary weights take weight_bits=1"):
        ir.Linear("fc", ("input",), B, [[1, -1]], 2, 0, [0], None, ir.ActFormat(8, True, 0),
                  encoding="binary")


# -- the per-lane dot engine ------------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS, ids=["bipolar", "u4", "s3"])
@pytest.mark.parametrize("constant", [True, False], ids=["constant", "port"])
def test_dot_engine_equals_golden(fmt, constant):
    rng = np.random.default_rng(2)
    simd = 13
    rows = signs(rng, (3, simd))
    xs = _codes(fmt, rng, 40, simd)
    if constant:
        got = np.concatenate([simulate_engine(DotEngine(simd=simd, x_format=fmt,
                                                        weights=r.tolist()), xs)
                              for r in rows])
    else:
        got = simulate_engine(DotEngine(simd=simd, x_format=fmt), xs,
                              [DotEngine.encode_weights(r) for r in rows])
    want = np.concatenate([fmt.value(xs) @ r for r in rows])
    np.testing.assert_array_equal(got, want)


def test_engine_rom_word_is_pe_fields_of_weight_bits():
    w = np.array([[1, -1, -1, 1], [-1, -1, 1, 1]])
    layer = _layer(w, B)
    # PE 0 row 0 bits 1001 (lane 0 LSB), PE 1 row 1 bits 1100.
    assert BinaryEngine.encode(layer, w, 0, 0, pe=2, simd=4) == 0b1100_1001
    assert BinaryEngine.word_bits(layer, pe=2, simd=4) == 8
    assert BinaryEngine.encode(layer, w, 1, 1, pe=1, simd=2) == 0b11


def test_dot_engine_rejects_bad_arguments():
    with pytest.raises(ValueError, match="weight_bits=1"):
        DotEngine(simd=2, x_format=B, weight_bits=2)
    with pytest.raises(ValueError, match="-1 or \\+1, not 0"):
        DotEngine(simd=2, x_format=B, weights=[1, 0])
    with pytest.raises(ValueError, match="needs 3 weights"):
        DotEngine(simd=3, x_format=B, weights=[1, 1])


# -- the MVU ------------------------------------------------------------------------------------

FOLDS = {"unrolled": lambda oc, f: (oc, f), "serial": lambda oc, f: (1, 1),
         "both": lambda oc, f: (2, 3), "simd": lambda oc, f: (1, f), "pe": lambda oc, f: (oc, 1)}


def check_mvu(layer, n, *, seed, stalls):
    rng = np.random.default_rng(seed + 1)
    fmt = layer.in_format
    x = _codes(fmt, rng, n, layer.fan_in)
    expected = golden.run_layer(layer, [x])
    pe, simd = layer.fold.pe, layer.fold.simd
    words = [pack_lanes(beat, fmt.bits) for beat in x.reshape(-1, simd)]
    n_out = n * layer.out_channels // pe
    out, _ = simulate_stream(MatrixVectorUnit(layer, layer.weight_matrix()), words, n_out,
                             seed=seed, valid_gap=stalls, ready_stall=stalls)
    assert None not in out, "extra output beat"
    out_fmt = layer.out_format
    got = np.array([unpack_lanes(w, out_fmt.bits, pe, out_fmt.signed) for w in out])
    np.testing.assert_array_equal(got.reshape(n, -1), expected)


@pytest.mark.parametrize("epilogue", ["thresholds", "multi", "requant", "logits"])
@pytest.mark.parametrize("fmt", FORMATS, ids=["bipolar", "u4", "s3"])
@pytest.mark.parametrize("fold_kind", FOLDS)
def test_mvu_equals_golden(fold_kind, fmt, epilogue):
    """Every fold, bipolar and multi-bit inputs, one threshold (bipolar output, mixed
    directions), three thresholds (2-bit output), requantized and logits outputs; random valid
    gaps and ready stalls."""
    seed = len(fold_kind) + 3 * len(epilogue) + fmt.bits
    layer = binary_linear(np.random.default_rng(seed), 4, 6, fmt, epilogue,
                          fold=FOLDS[fold_kind](4, 6))
    check_mvu(layer, 5, seed=seed, stalls=0.4 if seed % 2 else 0.2)


@pytest.mark.parametrize("fold_kind", ["serial", "both", "simd"])
@pytest.mark.parametrize("fan_in", [6, 7, 13])
def test_mvu_with_lut6_popcounts_equals_golden(fold_kind, fan_in):
    """The LUT6 structure (``popcount_for("xilinx")``): (6:3) counters, and with ROM weights
    the XNORs inside (3:2) counters, any lane count modulo 3."""
    from hwquant.hw.binary import popcount_for

    layer = binary_linear(np.random.default_rng(fan_in), 4, fan_in, B, "thresholds",
                          fold=FOLDS[fold_kind](4, fan_in) if fold_kind != "both" else (2, 1))
    with popcount_for("xilinx"):
        check_mvu(layer, 4, seed=fan_in, stalls=0.3)


def test_mvu_bipolar_accumulators_hold_the_popcount():
    """The bipolar MVU accumulates popcounts (0..F): ``log2(F) + 1`` signed bits, not the
    range of ``2P - F``; the combine range is ``[-F, F]``."""
    w = signs(np.random.default_rng(0), (4, 100))
    layer = _layer(w, B)
    np.testing.assert_array_equal(BinaryEngine.part_ranges(layer, w)[:, 0], [[0, 100]] * 4)
    np.testing.assert_array_equal(BinaryEngine.combine_ranges(layer, w), [[-100, 100]] * 4)


# -- networks -------------------------------------------------------------------------------

def check_network(net, *, n, seed, stalls):
    fmt = net.input_format
    rng = np.random.default_rng(seed + 7)
    x = rng.integers(fmt.lo, fmt.hi, (n, *net.input_shape), endpoint=True)
    expected = expected_words(net, golden.run(net, x))["o_stream"]
    out, cycles = simulate_stream(NetworkTop(plan_network(net)), input_words(net, x),
                                  len(expected), seed=seed, valid_gap=stalls,
                                  ready_stall=stalls)
    assert out == expected
    return cycles


@pytest.mark.parametrize("seed", range(2))
def test_binary_conv_network(seed):
    """Multi-bit input -> binary conv (thresholds to bipolar) -> max pool -> binary conv on
    bipolar maps (padding = -1) -> flatten -> binary linear logits; auto-folded."""
    check_network(binary_chain(seed), n=3, seed=seed, stalls=0.3)


def test_binary_mlp_on_vectors():
    """Vector input, bipolar hidden layers with 2-bit and 1-bit thresholds, logits."""
    check_network(binary_mlp(4), n=4, seed=4, stalls=0.3)


# -- compile + cocotb/Verilator ------------------------------------------------------------

@pytest.mark.sim
@pytest.mark.parametrize("builder, fold", [
    (lambda: binary_chain(3, fold="auto"), "auto"),
    pytest.param(lambda: binary_mlp(5, fold="min", sizes=(11, 14, 9, 5)),
                 "fc1=7:11,fc2=9:1,fc3=1:9,fc4=3:5", marks=pytest.mark.slow),
], ids=["conv_auto", "mlp_odd_override"])
def test_compile_and_verilator_sim_bit_exact(builder, fold, tmp_path):
    """Binary networks through compile -> Verilog -> cocotb + Verilator: every output word
    and every layer probe against the golden model under random stalls; cycles as predicted.
    The conv net has a multi-bit first layer, bipolar hidden maps and max pooling; the MLP
    (vector input, linear only) odd widths, a 2-bit thresholds layer and fully unrolled,
    PE-only and SIMD-only folds."""
    from hwquant.compile import compile_network
    from hwquant.simulate import simulate_build

    net = builder()
    out = tmp_path / "build"
    compile_network(net, out, fold=fold)
    res = simulate_build(out, vectors=6, seed=3, stall=0.3)
    assert res["passed"] and res["mismatches"] == 0, res
    for name, st in res["streams"].items():
        assert st["received"] == st["expected"] > 0 and st["mismatches"] == 0, name
    assert abs(res["cycle_error"]) <= 0.05, res


@pytest.mark.parametrize("seed", range(3))
def test_flipping_negative_directions_keeps_every_layer_output(seed):
    """Negative threshold directions folded into the weights (FINN's weight flip): the same
    integers on every layer, only positive directions left; the flipped network's hardware is
    bit-exact too."""
    net = binary_chain(seed)
    flipped = gbin.flip_negative_directions(net)
    assert all(np.all(layer.epilogue.direction == 1) for layer in flipped.weight_layers
               if isinstance(layer.epilogue, ir.Thresholds))
    fmt = net.input_format
    x = np.random.default_rng(seed).integers(fmt.lo, fmt.hi + 1, (20, *net.input_shape))
    a, b = golden.run(net, x), golden.run(flipped, x)
    for layer in net.layers:
        if not isinstance(layer.epilogue if hasattr(layer, "epilogue") else None, ir.Logits):
            np.testing.assert_array_equal(a[layer.name], b[layer.name])
    np.testing.assert_array_equal(a[net.output.name], b[net.output.name])
    check_network(flipped, n=2, seed=seed, stalls=0.2)


@pytest.mark.synth
@pytest.mark.parametrize("fmt", [B, ir.ActFormat(4, False, 0)], ids=["bipolar", "u4"])
def test_mvu_has_no_multiplier_and_no_dsp(fmt, tmp_path):
    """DSP inference on (``-dsp`` on ice40): no ``$mul`` before technology mapping, no DSP
    block after, for the XNOR-popcount and the add/subtract engines."""
    from amaranth.back import verilog

    from hwquant.estimate.synth import synthesize

    layer = binary_linear(np.random.default_rng(8), 8, 16, fmt, "thresholds", fold=(4, 4))
    path = tmp_path / "mvu.v"
    path.write_text(verilog.convert(MatrixVectorUnit(layer, layer.weight_matrix()), name="top"))
    res = synthesize(path, "top", "ice40", workdir=tmp_path / "ice40", splitnets=True,
                     nodsp=False)
    assert res.multipliers == 0 and res.dsp == 0 and res.lut > 0


def test_popcount_for_is_local_to_its_context_and_thread():
    """``popcount_for`` sets the LUT size for engines constructed inside it, in this thread
    only, and restores the default after."""
    import threading

    from hwquant.hw.binary import popcount_for

    w = signs(np.random.default_rng(1), (2, 12))
    layer = _layer(w, B)

    def make():
        return BinaryEngine(layer, w, pe=2, simd=12)

    seen = []
    with popcount_for("xilinx"):
        inside = make()
        other = threading.Thread(target=lambda: seen.append(make().lut_inputs))
        other.start()
        other.join()
    assert (inside.lut_inputs, seen, make().lut_inputs) == (6, [4], 4)
