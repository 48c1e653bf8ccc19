# amaranth: UnusedElaboratable=no
"""The ``pow2`` dot engine (:mod:`hwquant.hw.pow2`) and the MVU built from it, against the
golden shift inner product (:mod:`hwquant.golden.pow2`) and the plain integer product, in the
Amaranth simulator; and (``synth`` marker) in Yosys: no multiplier, no DSP block, and no
logic for a zero weight."""

import os
import sys

import numpy as np
import pytest
from amaranth.back import verilog

from hwquant import golden, ir
from hwquant.fold import apply_folding
from hwquant.golden import pow2 as gpow2
from hwquant.hw.mvu import MatrixVectorUnit
from hwquant.hw.network import NetworkTop
from hwquant.hw.pow2 import DotEngine
from hwquant.hw.registered import Registered
from hwquant.layout import pack_lanes, unpack_lanes
from hwquant.vectors import expected_words, input_words

sys.path.insert(0, os.path.dirname(__file__))
from enginesim import all_inputs, simulate_engine
from families import rotated
from netbuilders import pow2_linear, random_pow2_weights
from streamsim import simulate_stream

FORMATS = [ir.ActFormat(3, True, 0), ir.ActFormat(3, False, 0)]
SCALES = [(1, 1), (3, 5)]


# -- the dot engine ----------------------------------------------------------------------------

@pytest.mark.parametrize("scales", SCALES, ids=lambda s: f"PN{s[0]}{s[1]}")
@pytest.mark.parametrize("fmt", FORMATS, ids=["signed", "unsigned"])
@pytest.mark.parametrize("bits", [2, 3, 4, 5])
def test_constant_engine_equals_golden(bits, fmt, scales):
    """Unrolled engines (constant weights, every exponent and both signs among them) on every
    input of three 3-bit lanes."""
    rng = np.random.default_rng(bits * 10 + fmt.signed)
    weights = random_pow2_weights(rng, (4, 3), bits, scales)
    emax = (1 << (bits - 2)) - 1
    weights[0] = [scales[0] << emax, -(scales[1] << emax), 0]
    xs = all_inputs(fmt, 3)
    layer = pow2_linear(weights, bits, fmt, scales=scales)
    expected = gpow2.dot(layer, xs)
    np.testing.assert_array_equal(expected, xs @ weights.T)  # the golden model itself
    for p, row in enumerate(weights):
        dut = DotEngine(simd=3, x_format=fmt, weight_bits=bits, weights=row, sign_scales=scales)
        got = simulate_engine(dut, xs)
        np.testing.assert_array_equal(got, expected[:, p])
        lo, hi = DotEngine.value_range(row, simd=3, x_format=fmt, weight_bits=bits,
                                       sign_scales=scales)
        assert (lo, hi) == (got.min(), got.max())  # exact: every input was tried


@pytest.mark.parametrize("scales", SCALES, ids=lambda s: f"PN{s[0]}{s[1]}")
@pytest.mark.parametrize("fmt", FORMATS, ids=["signed", "unsigned"])
@pytest.mark.parametrize("bits", [2, 3, 4, 5])
def test_port_engine_equals_golden(bits, fmt, scales):
    """Folded engines: random code words on the ``w`` port, including zero codes whose sign
    and exponent bits are not zero (the zero flag wins), and the extreme codes."""
    rng = np.random.default_rng(100 + bits * 10 + fmt.signed)
    simd = 3
    codes = rng.integers(0, 1 << bits, (24, simd))
    emax = (1 << (bits - 2)) - 1
    codes[0] = emax  # all +P * 2**emax
    codes[1] = (1 << (bits - 2)) | emax  # all -N * 2**emax
    codes[2] = (1 << bits) - 1  # zero flag with sign and exponent set
    xs = np.concatenate([rng.integers(fmt.lo, fmt.hi + 1, (20, simd)),
                         [[fmt.lo] * simd, [fmt.hi] * simd]])
    dut = DotEngine(simd=simd, x_format=fmt, weight_bits=bits, sign_scales=scales)
    got = simulate_engine(dut, xs, codes).reshape(len(codes), len(xs))
    weights = gpow2.decode(codes, bits, scales)
    layer = pow2_linear(weights, bits, fmt, scales=scales)
    np.testing.assert_array_equal(got.T, gpow2.dot(layer, xs))
    np.testing.assert_array_equal(got, weights @ xs.T)
    # The worst case over any code is exact: reached by the extreme codes and inputs.
    lo, hi = DotEngine.value_range(None, simd=simd, x_format=fmt, weight_bits=bits,
                                   sign_scales=scales)
    assert (lo, hi) == (got.min(), got.max())


def test_port_engine_worst_case_is_exact():
    fmt = ir.ActFormat(4, False, 0)
    lo, hi = DotEngine.value_range(None, simd=5, x_format=fmt, weight_bits=4,
                                   sign_scales=(3, 5))
    assert (lo, hi) == (-5 * 8 * 15 * 5, 3 * 8 * 15 * 5)
    sfmt = ir.ActFormat(4, True, 0)
    assert DotEngine.value_range(None, simd=2, x_format=sfmt, weight_bits=2) == (-16, 16)


def test_encode_weights_packs_codes_lane_0_first():
    weights = [0, 1, -2, 8, -8]
    word = DotEngine.encode_weights(weights, 4)
    assert DotEngine.word_bits(5, 4) == 20 and word < 1 << 20
    codes = unpack_lanes(word, 4, 5, False)
    np.testing.assert_array_equal(codes, [0b1000, 0b0000, 0b0101, 0b0011, 0b0111])
    np.testing.assert_array_equal(gpow2.decode(codes, 4), weights)
    word = DotEngine.encode_weights([3, -10, 0], 3, sign_scales=(3, 5))
    assert word == pack_lanes([0b000, 0b011, 0b100], 3)
    assert DotEngine.word_bits(3, 3, sign_scales=(3, 5)) == 9


def test_options_come_from_the_layer():
    layer = pow2_linear([[3, -5]], 2, FORMATS[0], scales=(3, 5))
    assert DotEngine.options(layer) == {"sign_scales": (3, 5)}


def test_engine_rejects_bad_arguments():
    fmt = FORMATS[0]
    with pytest.raises(ValueError, match=r"^Pow2 weights need 2\.\.8 code bits, not 9$"):
        DotEngine(simd=2, x_format=fmt, weight_bits=9)
    with pytest.raises(ValueError, match=r"^Sign scales must be two positive integers, "
                                         r"not \(1, 0\)$"):
        DotEngine(simd=2, x_format=fmt, weight_bits=3, sign_scales=(1, 0))
    with pytest.raises(ValueError, match=r"^Dot engine needs 2 weights, not 3$"):
        DotEngine(simd=2, x_format=fmt, weight_bits=3, weights=[1, 2, 0])
    with pytest.raises(ValueError, match=r"^Weight 3 is not 0, \+1\*2\^e or -1\*2\^e with e "
                                         r"in 0\.\.1 \(3-bit pow2 code\)$"):
        DotEngine(simd=2, x_format=fmt, weight_bits=3, weights=[1, 3])
    with pytest.raises(ValueError, match=r"^Weight -4 is not 0, \+1\*2\^e or -1\*2\^e with e "
                                         r"in 0\.\.1 \(3-bit pow2 code\)$"):
        DotEngine(simd=2, x_format=fmt, weight_bits=3, weights=[-4, 0])
    with pytest.raises(ValueError, match=r"^Weight 3 is not 0, \+2\*2\^e or -5\*2\^e"):
        DotEngine(simd=1, x_format=fmt, weight_bits=2, weights=[3], sign_scales=(2, 5))


# -- the MVU -----------------------------------------------------------------------------------

FOLDS = {
    "unrolled": lambda oc, f: (oc, f),
    "pe_only": lambda oc, f: (oc // 2, 1),
    "simd_only": lambda oc, f: (1, f // 3),
    "both": lambda oc, f: (2, f // 2),
    "serial": lambda oc, f: (1, 1),
}
CONFIGS = [  # (bits, input format, sign scales)
    (2, ir.ActFormat(4, False, 2), (1, 1)),
    (3, ir.ActFormat(3, True, 1), (1, 1)),
    (4, ir.ActFormat(5, False, 0), (1, 1)),
    (5, ir.ActFormat(4, True, 2), (1, 1)),
    (2, ir.ActFormat(4, True, 0), (3, 5)),
    (4, ir.ActFormat(3, False, 0), (7, 2)),
]


def random_pow2_linear(seed, fold_kind, *, logits=False):
    bits, in_fmt, scales = CONFIGS[seed % len(CONFIGS)]
    rng = np.random.default_rng(seed)
    oc, fan_in = 4, 6
    w = random_pow2_weights(rng, (oc, fan_in), bits, scales)
    if logits:
        return pow2_linear(w, bits, in_fmt, scales=scales,
                           fold=ir.Fold(*FOLDS[fold_kind](oc, fan_in)))
    out_fmt = ir.ActFormat(5, bool(seed % 2), 1)
    requant = ir.Requant(rng.integers(1, 5, oc), bits + 1, out_fmt.lo, out_fmt.hi)
    return pow2_linear(w, bits, in_fmt, scales=scales, fold=ir.Fold(*FOLDS[fold_kind](oc, fan_in)),
                       requant=requant, out_fmt=out_fmt)


def check_mvu(layer, n, *, seed, stalls):
    rng = np.random.default_rng(seed + 1)
    fmt = layer.in_format
    x = rng.integers(fmt.lo, fmt.hi + 1, (n, layer.fan_in))
    x[0], x[-1] = fmt.lo, fmt.hi
    expected = golden.run_layer(layer, [x])
    pe, simd = layer.fold.pe, layer.fold.simd
    # Folded streams: SIMD inputs per beat in, PE outputs per beat out.
    words = [pack_lanes(beat, fmt.bits) for beat in x.reshape(-1, simd)]
    n_out = n * layer.out_channels // pe
    out, _ = simulate_stream(MatrixVectorUnit(layer, layer.weight_matrix()), words, n_out,
                             seed=seed, valid_gap=stalls, ready_stall=stalls)
    assert None not in out, "extra output beat"
    out_fmt = layer.out_format
    got = np.array([unpack_lanes(w, out_fmt.bits, pe, out_fmt.signed) for w in out])
    np.testing.assert_array_equal(got.reshape(n, -1), expected)


@pytest.mark.parametrize("seed", range(len(CONFIGS)))
@pytest.mark.parametrize("fold_kind", FOLDS)
def test_mvu_equals_golden(fold_kind, seed):
    """Every fold, every code width and sign-scale set, requantized outputs, with random valid
    gaps and ready stalls on odd seeds."""
    layer = random_pow2_linear(seed, fold_kind)
    check_mvu(layer, 4, seed=seed, stalls=0.4 if seed % 2 else 0.0)


@pytest.mark.parametrize("fold_kind", ["unrolled", "both"])
def test_mvu_logits_equal_golden(fold_kind):
    layer = random_pow2_linear(4, fold_kind, logits=True)
    check_mvu(layer, 4, seed=4, stalls=0.4)


@pytest.mark.parametrize("mode", ["max", "min"])
def test_network_of_pow2_layers(mode):
    """linear (INQ, 4-bit codes) -> linear (ternary TTQ logits) through the network top."""
    rng = np.random.default_rng(9)
    in_fmt, mid = ir.ActFormat(4, False, 0), ir.ActFormat(4, False, 0)
    w1 = random_pow2_weights(rng, (6, 8), 4)
    fc1 = ir.Linear("fc1", ("input",), in_fmt, w1, 4, 0, rng.integers(-20, 20, 6),
                    ir.Requant(np.ones(6), 4, 0, mid.hi), mid, encoding="pow2")
    w2 = random_pow2_weights(rng, (3, 6), 2, (3, 5))
    lo, hi = ir.matrix_range(w2, np.zeros(3, dtype=np.int64), mid)
    fc2 = ir.Linear("fc2", ("fc1",), mid, w2, 2, 0, np.zeros(3), None,
                    ir.ActFormat(ir.signed_bits_for(int(lo.min()), int(hi.max())), True, 0),
                    encoding="pow2", kind_data=ir.Pow2Data((3, 5)))
    net = apply_folding(ir.Network("p2", (8,), in_fmt, (fc1, fc2)), mode)
    x = rng.integers(in_fmt.lo, in_fmt.hi + 1, (4, 8))
    expected = expected_words(net, golden.run(net, x))["o_stream"]
    out, _ = simulate_stream(NetworkTop(net), input_words(net, x), len(expected), seed=1,
                             valid_gap=0.3, ready_stall=0.3)
    assert out == expected


# -- Yosys: no multiplier, no DSP, zero weights free ----------------------------------------

def synth(component, family, tmp_path, name, **kwargs):
    from hwquant.estimate.synth import synthesize

    path = tmp_path / f"{name}.v"
    path.write_text(verilog.convert(component, name="top"))
    return synthesize(path, "top", family, workdir=tmp_path / f"{name}_{family}",
                      splitnets=True, **kwargs)


def bench_layer(fold_kind):
    """A 4-bit INQ layer (8 x 16, signed 6-bit inputs), unrolled or folded PE=4, SIMD=4."""
    rng = np.random.default_rng(5)
    w = random_pow2_weights(rng, (8, 16), 4)
    fold = (8, 16) if fold_kind == "unrolled" else (4, 4)
    return pow2_linear(w, 4, ir.ActFormat(6, True, 0), fold=ir.Fold(*fold))


@pytest.mark.synth
@pytest.mark.parametrize("fold_kind, family", rotated(["unrolled", "folded"], ["ice40", "xilinx"]))
def test_mvu_has_no_multiplier_and_no_dsp(fold_kind, family, tmp_path):
    """DSP inference left on (``nodsp=False``; ``-dsp`` on ice40): no ``$mul`` cell before
    technology mapping and no DSP block after."""
    layer = bench_layer(fold_kind)
    res = synth(MatrixVectorUnit(layer, layer.weight_matrix()), family, tmp_path, "mvu",
                nodsp=False)
    assert res.multipliers == 0
    assert res.dsp == 0
    assert res.lut > 0


@pytest.mark.synth
def test_zero_weights_build_no_logic(tmp_path):
    """Unrolled: one adder (or subtractor) per nonzero weight but one, none for a zero weight;
    a single nonzero weight is wiring; LUTs grow with the nonzero weights."""
    fmt = ir.ActFormat(8, False, 0)
    rng = np.random.default_rng(3)
    dense = random_pow2_weights(rng, (16,), 4, zeros=0.0)
    sparse = dense * (np.arange(16) % 4 == 0)  # 4 nonzero
    single = np.abs(dense) * (np.arange(16) == 5)
    luts = {}
    for name, w in (("dense", dense), ("sparse", sparse), ("single", single)):
        res = synth(Registered(DotEngine(simd=16, x_format=fmt, weight_bits=4, weights=w)), "ice40", tmp_path, name)
        adders = res.pre_techmap_cells.get("$add", 0) + res.pre_techmap_cells.get("$sub", 0)
        assert adders == max(np.count_nonzero(w) - 1, 0), name
        luts[name] = res.lut
    assert luts["single"] == 0  # x << e: wiring
    assert luts["sparse"] * 3 < luts["dense"]
