# amaranth: UnusedElaboratable=no
"""The folded matrix-vector unit (:mod:`hwquant.hw.mvu`) in the Amaranth simulator against the
golden model, with random valid gaps and ready stalls: ``fixed`` and ``pow2`` (TTQ sign scales
included) engines, every epilogue type, folds from fully unrolled to fully serial; its
cycle-exact timing model; a kind with several partial sums, a shared sum and a per-channel
combine through the engine contract; and the resource shape (no register ``F`` or ``OC``
lanes wide)."""

import os
import re
import sys

import numpy as np
import pytest
from amaranth.back import rtlil
from amaranth.hdl import Array, Const, Module, Mux, signed

from hwquant import golden, ir
from hwquant.hw import mvu as mvu_module
from hwquant.hw.engine import Engine, LaneEngine, engine_for
from hwquant.hw.mvu import MatrixVectorUnit
from hwquant.layout import conv_weight_matrix, pack_lanes
from hwquant.schedule.mvu import MatrixVectorUnitTiming

sys.path.insert(0, os.path.dirname(__file__))
from mvusim import FOLDS, divisors, random_x, run_mvu
from timingsim import check_timing

STALLS = [0.0, 0.4]
STALL_IDS = ["no_stalls", "stalls"]


def fixed_linear(rng, fold, *, oc=None, fan_in=None, epilogue="requant", in_signed=None):
    oc = oc or int(rng.choice([4, 6]))
    fan_in = fan_in or int(rng.choice([6, 8, 12]))
    in_signed = bool(rng.integers(2)) if in_signed is None else in_signed
    in_fmt = ir.ActFormat(int(rng.integers(2, 6)), in_signed, 2)
    wbits = int(rng.integers(2, 6))
    w = rng.integers(-(1 << (wbits - 1)), 1 << (wbits - 1), (oc, fan_in))
    w[0, 0] = -(1 << (wbits - 1))
    bias = rng.integers(-30, 30, oc)
    if epilogue == "logits":
        lo, hi = ir.matrix_range(w, bias, in_fmt)
        out_fmt = ir.ActFormat(ir.signed_bits_for(int(lo.min()), int(hi.max())), True, 3)
        ep = ir.Logits()
    else:
        relu = bool(rng.integers(2))
        out_fmt = ir.ActFormat(int(rng.integers(3, 7)), not relu, 1)
        mult = rng.integers(1, 9, oc)
        mult[-1] = -3
        ep = ir.Requant(mult, int(rng.integers(2, 7)), 0 if relu else out_fmt.lo, out_fmt.hi)
    pe, simd = FOLDS[fold](oc, fan_in) if isinstance(fold, str) else fold
    return ir.Linear("fc", ("input",), in_fmt, w, wbits, 1, bias, ep, out_fmt,
                     fold=ir.Fold(pe, simd))


def check(layer, n, *, seed, stalls, weights=None):
    rng = np.random.default_rng(seed + 1000)
    x = random_x(rng, layer.in_format, n, layer.fan_in)
    got, cycles = run_mvu(layer, x, weights=weights, seed=seed, stalls=stalls)
    np.testing.assert_array_equal(got, golden.run_layer(layer, [x]))
    return cycles


# -- fixed ------------------------------------------------------------------------------------

@pytest.mark.parametrize("stalls", STALLS, ids=STALL_IDS)
@pytest.mark.parametrize("fold", FOLDS)
def test_fixed_equals_golden(fold, stalls):
    seed = list(FOLDS).index(fold)
    for in_signed in (False, True):
        layer = fixed_linear(np.random.default_rng(seed), fold, in_signed=in_signed)
        check(layer, 4, seed=seed, stalls=stalls)


@pytest.mark.parametrize("seed", range(8))
def test_fixed_random_shapes(seed):
    """Any shape (prime sizes, a single channel or input), 1-bit formats, all-zero weights,
    negative multipliers and left shifts, clamps inside the format, any fold."""
    rng = np.random.default_rng(300 + seed)
    oc, fan_in = int(rng.integers(1, 9)), int(rng.integers(1, 13))
    in_fmt = ir.ActFormat(int(rng.integers(1, 9)), bool(rng.integers(2)), 0)
    wbits = int(rng.integers(1, 9))
    w = rng.integers(-(1 << (wbits - 1)), 1 << (wbits - 1), (oc, fan_in))
    if seed == 5:
        w[:] = 0
    bias = rng.integers(-100, 100, oc)
    if seed % 3 == 0:
        lo, hi = ir.matrix_range(w, bias, in_fmt)
        out_fmt = ir.ActFormat(ir.signed_bits_for(int(lo.min()), int(hi.max())), True, 0)
        ep = ir.Logits()
    else:
        out_fmt = ir.ActFormat(int(rng.integers(1, 9)), bool(rng.integers(2)), 0)
        ep = ir.Requant(rng.integers(-20, 20, oc), int(rng.integers(-3, 10)),
                        int(rng.integers(out_fmt.lo, out_fmt.hi, endpoint=True)), out_fmt.hi)
    fold = ir.Fold(int(rng.choice(divisors(oc))), int(rng.choice(divisors(fan_in))))
    layer = ir.Linear("fc", ("input",), in_fmt, w, wbits, 0, bias, ep, out_fmt, fold=fold)
    check(layer, int(rng.integers(1, 5)), seed=seed, stalls=STALLS[seed % 2])


@pytest.mark.parametrize("fold", [(4, 18), (2, 3), (1, 9)])
def test_conv_in_window_lane_order(fold):
    """A conv layer's MVU on window lanes with ``layout.conv_weight_matrix`` weights."""
    rng = np.random.default_rng(sum(fold))
    in_fmt, out_fmt = ir.ActFormat(4, True, 0), ir.ActFormat(5, False, 0)
    w = rng.integers(-4, 4, (4, 2, 3, 3))
    layer = ir.Conv2d("conv", ("input",), in_fmt, w, 3, 0, rng.integers(-9, 9, 4),
                      ir.Requant([1, 2, 3, 1], 3, 0, out_fmt.hi), out_fmt,
                      fold=ir.Fold(*fold), in_shape=(2, 3, 3))
    x = rng.integers(in_fmt.lo, in_fmt.hi + 1, (3, 2, 3, 3))  # 3 images, one window each
    windows = x.transpose(0, 2, 3, 1).reshape(3, -1)
    got, _ = run_mvu(layer, windows, weights=conv_weight_matrix(w), seed=1, stalls=0.4)
    np.testing.assert_array_equal(got, golden.run_layer(layer, [x]).reshape(3, 4))


# -- pow2 -------------------------------------------------------------------------------------

def pow2_weights(rng, shape, bits, scales):
    emax = (1 << (bits - 2)) - 1
    e = rng.integers(0, emax + 1, shape)
    w = np.where(rng.integers(0, 2, shape) == 1, -(scales[1] << e), scales[0] << e)
    w[rng.random(shape) < 0.25] = 0
    return w


POW2 = [  # code bits, input format, sign scales, epilogue
    (4, ir.ActFormat(4, False, 0), (1, 1), "requant"),
    (3, ir.ActFormat(3, True, 0), (1, 1), "logits"),
    (2, ir.ActFormat(4, True, 0), (3, 5), "requant"),  # TTQ
    (2, ir.ActFormat(3, False, 0), (3, 5), "logits"),  # TTQ
]


@pytest.mark.parametrize("fold", ["unrolled", "nf1", "sf1", "both"])
@pytest.mark.parametrize("case", range(len(POW2)))
def test_pow2_equals_golden(case, fold):
    bits, in_fmt, scales, kind = POW2[case]
    rng = np.random.default_rng(case)
    oc, fan_in = 4, 6
    w = pow2_weights(rng, (oc, fan_in), bits, scales)
    bias = rng.integers(-9, 9, oc)
    if kind == "logits":
        lo, hi = ir.matrix_range(w, bias, in_fmt)
        out_fmt, ep = ir.ActFormat(ir.signed_bits_for(int(lo.min()), int(hi.max())), True,
                                   0), ir.Logits()
    else:
        out_fmt = ir.ActFormat(5, True, 1)
        ep = ir.Requant(rng.integers(1, 5, oc), bits + 1, out_fmt.lo, out_fmt.hi)
    layer = ir.Linear("fc", ("input",), in_fmt, w, bits, 0, bias, ep, out_fmt,
                      encoding="pow2", kind_data=ir.Pow2Data(scales),
                      fold=ir.Fold(*FOLDS[fold](oc, fan_in)))
    check(layer, 4, seed=case, stalls=STALLS[case % 2])


# -- thresholds and scaled logits -----------------------------------------------------------

@pytest.mark.parametrize("fold", ["unrolled", "sf1", "both", "serial"])
def test_thresholds(fold):
    """Several thresholds per channel, both directions mixed within a PE, a constant channel
    (thresholds beyond the accumulator), signed and unsigned outputs."""
    rng = np.random.default_rng(7)
    for out_fmt in (ir.ActFormat(2, False, 0), ir.ActFormat(2, True, 0)):
        layer = fixed_linear(rng, fold, oc=6, fan_in=8)
        lo, hi = ir.accumulator_range(layer)
        t = out_fmt.hi - out_fmt.lo
        thr = np.sort(rng.integers(lo.min(), hi.max() + 1, (6, t)), axis=1)
        thr[2] = [-(1 << 40)] * t  # constant channel: every threshold passed
        thr[3] = [1 << 40] * t  # constant channel: none passed
        direction = np.array([1, -1, 1, -1, -1, 1])
        layer = ir.Linear("fc", ("input",), layer.in_format, layer.weight, layer.weight_bits,
                          1, layer.bias, ir.Thresholds(thr, direction), out_fmt,
                          fold=layer.fold)
        check(layer, 4, seed=3, stalls=0.4)


@pytest.mark.parametrize("fold", ["unrolled", "sf1", "both"])
def test_logits_with_scale(fold):
    rng = np.random.default_rng(11)
    layer = fixed_linear(rng, fold, oc=4, fan_in=6, epilogue="logits")
    scale = np.array([1, 3, 7, 2])
    lo, hi = ir.matrix_range(layer.weight * scale[:, None], layer.bias * scale, layer.in_format)
    out_fmt = ir.ActFormat(ir.signed_bits_for(int(lo.min()), int(hi.max())), True, 0)
    layer = ir.Linear("fc", ("input",), layer.in_format, layer.weight, layer.weight_bits, 1,
                      layer.bias, ir.Logits(scale), out_fmt, fold=layer.fold)
    check(layer, 4, seed=2, stalls=0.4)


def test_rejects_bad_weights_and_narrow_logits():
    layer = fixed_linear(np.random.default_rng(0), "serial", oc=4, fan_in=6, epilogue="logits")
    with pytest.raises(ValueError, match=r"^Layer 'fc': weight matrix must be \(4, 6\), not "
                                         r"\(3, 3\)$"):
        MatrixVectorUnit(layer, np.zeros((3, 3)))
    bits = layer.out_format.bits
    narrow = ir.Linear("fc", ("input",), layer.in_format, layer.weight, layer.weight_bits, 0,
                       layer.bias, ir.Logits(), ir.ActFormat(bits - 1, True, 0))
    with pytest.raises(ValueError, match=rf"^Layer 'fc': logits need {bits} bits, but the "
                                         rf"output format has {bits - 1}$"):
        MatrixVectorUnit(narrow, narrow.weight)


# -- timing ---------------------------------------------------------------------------------

@pytest.mark.parametrize("stalls", [(0.0, 0.0), (0.5, 0.0), (0.0, 0.5), (0.4, 0.4)],
                         ids=["none", "input_gaps", "output_stalls", "both"])
@pytest.mark.parametrize("fold", FOLDS)
def test_timing_model_is_cycle_exact(fold, stalls):
    rng = np.random.default_rng(5)
    layer = fixed_linear(rng, fold, oc=4, fan_in=6)
    dut = MatrixVectorUnit(layer, layer.weight_matrix())
    vectors = 5
    fired = check_timing(dut, MatrixVectorUnitTiming(dut.nf, dut.sf),
                         in_beats=[vectors * dut.sf],
                         cycles=vectors * dut.fold_steps * 3 + 40, seed=list(FOLDS).index(fold),
                         valid_gap=stalls[0], ready_stall=stalls[1])
    assert fired == {"i_stream": vectors * dut.sf, "o_stream": vectors * dut.nf}


@pytest.mark.parametrize("fold", FOLDS)
def test_back_to_back_vectors(fold):
    """Without stalls, N vectors take ``N * NF * SF`` cycles plus the constant latency."""
    rng = np.random.default_rng(21)
    layer = fixed_linear(rng, fold, oc=4, fan_in=6)
    x = random_x(rng, layer.in_format, 6, 6)
    totals = {}
    for n in (1, 6):
        _, totals[n] = run_mvu(layer, x[:n])
    steps = (4 // layer.fold.pe) * (6 // layer.fold.simd)
    assert totals[6] - totals[1] == 5 * steps


def test_timing_model_rejects_bad_folds():
    with pytest.raises(ValueError, match=r"^Folds must be positive integers, not nf=0, sf=2$"):
        MatrixVectorUnitTiming(0, 2)


# -- resource shape -------------------------------------------------------------------------

def register_widths(dut):
    """Widths of every flip-flop cell and every memory word in the design's RTLIL."""
    text = rtlil.convert(dut)
    ffs = [int(w) for w in re.findall(r"cell \$\w*dff\w* \S+\n\s+parameter \\WIDTH (\d+)", text)]
    mems = [int(w) for w in re.findall(r"cell \$mem\w* \S+\n(?:\s+parameter \\\w+ .*\n)*?"
                                       r"\s+parameter \\WIDTH (\d+)", text)]
    return ffs, mems


@pytest.mark.parametrize("fold", [(2, 4), (1, 8), (8, 2), (16, 4)])
def test_registers_scale_with_pe_simd(fold):
    """No flip-flop register is ``F`` or ``OC`` lanes wide; the widest is bounded by the
    ``PE`` accumulators / output lanes or the ``SIMD`` operand lanes; memories hold the
    vector (``SIMD`` lanes a word) and the weights (``PE * SIMD`` a word)."""
    rng = np.random.default_rng(0)
    oc, fan_in = 16, 48
    layer = fixed_linear(rng, fold, oc=oc, fan_in=fan_in)
    pe, simd = fold
    ffs, mems = register_widths(MatrixVectorUnit(layer, layer.weight_matrix()))
    acc = ir.accumulator_bits(layer)
    xb, ob = layer.in_format.bits, layer.out_format.bits
    assert max(ffs) <= max(simd * xb, pe * max(acc + 8, ob), 2 * pe * 16)
    if pe < oc:
        assert max(ffs) < oc * ob
    if simd < fan_in:
        assert max(ffs) < fan_in * xb
    assert set(mems) <= {simd * xb, pe * simd * layer.weight_bits}


# -- the engine contract: several partial sums, a shared sum, a per-channel combine -----------

class SplitSumEngine(Engine):
    """Test kind: partial sums of the positive and the negative products per PE, the shared
    window sum ``Σx``, and ``ACC = pos + neg + k[c] * Σx`` with per-channel constants ``k``
    (a TTQ-like split and a template-like shared term)."""

    K = (2, -1, 0, 3, 1, -2)

    @classmethod
    def parts_per_pe(cls, layer):
        return 2

    @classmethod
    def shared_count(cls, layer):
        return 1

    @classmethod
    def word_bits(cls, layer, *, pe, simd):
        return pe * simd * layer.weight_bits

    @classmethod
    def encode(cls, layer, weights, nf, sf, *, pe, simd):
        rows = np.asarray(weights)[nf * pe:(nf + 1) * pe, sf * simd:(sf + 1) * simd]
        return pack_lanes(rows.ravel(), layer.weight_bits)

    @classmethod
    def part_ranges(cls, layer, weights):
        zero = np.zeros(len(weights), dtype=np.int64)
        pos = ir.matrix_range(np.maximum(weights, 0), zero, layer.in_format)
        neg = ir.matrix_range(np.minimum(weights, 0), zero, layer.in_format)
        return np.stack([np.stack(pos, 1), np.stack(neg, 1)], 1)

    @classmethod
    def shared_ranges(cls, layer):
        return [(layer.fan_in * layer.in_format.lo, layer.fan_in * layer.in_format.hi)]

    @classmethod
    def combine_ranges(cls, layer, weights):
        k = np.array(cls.K[:len(weights)])[:, None]
        lo, hi = ir.matrix_range(weights + k, np.zeros(len(weights), dtype=np.int64),
                                 layer.in_format)
        return np.stack([lo, hi], 1)

    def __init__(self, layer, weights, *, pe, simd):
        lim = max(abs(layer.in_format.lo), layer.in_format.hi) << layer.weight_bits
        super().__init__(layer, weights, pe=pe, simd=simd,
                         part_bits=ir.signed_bits_for(-simd * lim, simd * lim),
                         shared_bits=ir.signed_bits_for(-simd * lim, simd * lim))

    def elaborate(self, platform):
        m = Module()
        simd, wb = self._simd, self._layer.weight_bits
        for p in range(self._pe):
            pos, neg = [], []
            for i in range(simd):
                if self.constant:
                    wv = Const(int(self._weights[p, i]), signed(wb))
                else:
                    wv = self.w.word_select(p * simd + i, wb).as_signed()
                prod = wv * self.x[i]
                pos.append(Mux(wv >= 0, prod, 0))
                neg.append(Mux(wv < 0, prod, 0))
            m.d.comb += [self.parts[2 * p].eq(sum(pos)), self.parts[2 * p + 1].eq(sum(neg))]
        m.d.comb += self.shared[0].eq(sum(self.x[i] for i in range(simd)))
        return m

    def combine(self, m, parts, shared, nf):
        out = []
        for p, (pos, neg) in enumerate(parts):
            k = [self.K[n * self._pe + p] for n in range(self._nf)]
            kv = Array(Const(v, signed(4)) for v in k)[nf] if len(set(k)) > 1 else k[0]
            out.append(pos + neg + shared[0] * kv)
        return out


@pytest.mark.parametrize("fold", ["unrolled", "nf1", "sf1", "both", "serial"])
def test_engine_contract_parts_shared_combine(fold, monkeypatch):
    monkeypatch.setattr(mvu_module, "engine_for", lambda layer: SplitSumEngine)
    rng = np.random.default_rng(17)
    layer = fixed_linear(rng, fold, oc=6, fan_in=4, epilogue="logits", in_signed=True)
    k = np.array(SplitSumEngine.K)[:, None]
    lo, hi = ir.matrix_range(layer.weight + k, layer.bias, layer.in_format)
    out_fmt = ir.ActFormat(ir.signed_bits_for(int(lo.min()), int(hi.max())), True, 0)
    layer = ir.Linear("fc", ("input",), layer.in_format, layer.weight, layer.weight_bits, 1,
                      layer.bias, ir.Logits(), out_fmt, fold=layer.fold)
    x = random_x(rng, layer.in_format, 3, 4)
    got, _ = run_mvu(layer, x, seed=4, stalls=0.4)
    expected = x @ (layer.weight + k).T + layer.bias
    np.testing.assert_array_equal(got, expected)


def test_fixed_and_pow2_use_the_lane_engine():
    layer = fixed_linear(np.random.default_rng(0), "both", oc=4, fan_in=6)
    assert engine_for(layer) is LaneEngine
    word = LaneEngine.encode(layer, layer.weight, 1, 1, pe=2, simd=3)
    bits = layer.weight_bits
    assert word == pack_lanes(layer.weight[2:4, 3:6].ravel(), bits)  # PE 0 in the LSBs
    assert LaneEngine.word_bits(layer, pe=2, simd=3) == 2 * 3 * bits


def test_epilogue_registry_names_the_components():
    from hwquant import epilogues
    from hwquant.hw import epilogue as hw_epilogue

    faces = {ir.Requant: hw_epilogue.Requantizer, ir.Thresholds: hw_epilogue.MultiThreshold,
             ir.Logits: hw_epilogue.LogitScaler}
    for cls, component in faces.items():
        row = epilogues.EPILOGUE_KINDS[cls]
        assert getattr(epilogues.hw_epilogue_module(cls), row.name) is component
