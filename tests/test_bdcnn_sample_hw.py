# amaranth: UnusedElaboratable=no
"""The per-sample quantizer stage (:class:`hwquant.hw.sample_quant.SampleQuantizer`) in the
Amaranth simulator against :func:`hwquant.golden.bdcnn.quantize_map`: every output word (the
codes of every lane, and the map's ``[m, R]`` token) of consecutive maps, random stalls on all
sides; constant maps and the format's extremes included. Then the quantizer feeding the
existing AND-popcount MVU (and sliding window) and the combine
(:class:`~hwquant.hw.sample_quant.SampleLinear`, :class:`~hwquant.hw.sample_quant.SampleConv`)
against the golden layer, every output word."""

import numpy as np
import pytest
from families import rotated
from netbuilders import sample_bdcnn_layer, sample_conv_linear_net
from streamsim import simulate_stream, simulate_streams

from hwquant import golden, ir
from hwquant.golden.bdcnn import quantize_map
from hwquant.hw.sample_quant import SampleConv, SampleLinear, SampleQuantizer


def _pack(values, bits):
    word = 0
    for k, v in enumerate(values):
        word |= (int(v) & ((1 << bits) - 1)) << (k * bits)
    return word


def _maps(rng, fmt, n, beats, lanes):
    x = rng.integers(fmt.lo, fmt.hi + 1, size=(n, beats, lanes))
    x[0] = rng.integers(fmt.lo, fmt.hi + 1)  # constant map: R = 0
    if n > 1:
        x[1, 0, 0], x[1, -1, -1] = fmt.lo, fmt.hi  # the whole range
    if n > 2:  # a narrow range: R = 1
        x[2] = fmt.lo + rng.integers(0, 2, size=(beats, lanes))
    return x


@pytest.mark.parametrize("fmt,qbits,lanes,beats", [
    (ir.ActFormat(8, False, 5), 6, 3, 7),
    (ir.ActFormat(6, True, 2), 4, 2, 5),
    (ir.ActFormat(4, False, 0), 8, 1, 3),
], ids=["u8q6", "s6q4", "u4q8"])
@pytest.mark.parametrize("stalls", [0.0, 0.4], ids=["free", "stalls"])
def test_stage_equals_golden(fmt, qbits, lanes, beats, stalls):
    rng = np.random.default_rng(qbits * 10 + lanes)
    n = 5
    x = _maps(rng, fmt, n, beats, lanes)
    q, m, r, _ = quantize_map(x, fmt.bits, qbits)
    dut = SampleQuantizer(fmt, lanes, beats, qbits)
    words = [_pack(x[i, b], fmt.bits) for i in range(n) for b in range(beats)]
    got = simulate_streams(dut, {"i_stream": words},
                           {"o_stream": n * beats, "r_stream": n}, seed=qbits,
                           valid_gap=stalls, ready_stall=stalls)
    assert None not in got["o_stream"] and None not in got["r_stream"], "extra beat"
    assert got["o_stream"] == [_pack(q[i, b], qbits) for i in range(n) for b in range(beats)]
    assert got["r_stream"] == [_pack([m[i], r[i]], fmt.bits + 1) for i in range(n)]


def test_stage_rate_without_stalls():
    """``2 * beats + Q + S + 4`` cycles per map (no overlap of load and emit)."""
    fmt, qbits, lanes, beats, n = ir.ActFormat(8, False, 0), 6, 2, 9, 4
    x = _maps(np.random.default_rng(1), fmt, n, beats, lanes)
    words = [_pack(x[i, b], fmt.bits) for i in range(n) for b in range(beats)]
    # The tokens always taken: only the code stream is timed.
    from amaranth.hdl import Module
    from amaranth.lib import wiring

    class Top(wiring.Component):
        def __init__(self):
            self.q = SampleQuantizer(fmt, lanes, beats, qbits)
            super().__init__({"i_stream": wiring.In(self.q.i_stream.signature.flip()),
                              "o_stream": wiring.Out(self.q.o_stream.signature)})

        def elaborate(self, platform):
            m = Module()
            m.submodules.q = self.q
            wiring.connect(m, wiring.flipped(self.i_stream), self.q.i_stream)
            wiring.connect(m, self.q.o_stream, wiring.flipped(self.o_stream))
            m.d.comb += self.q.r_stream.ready.eq(1)
            return m

    out, cycles = simulate_stream(Top(), words, n * beats)
    assert None not in out
    s = 2 * fmt.bits + 1
    assert cycles <= n * (2 * beats + qbits + s + 4) + 2


@pytest.mark.parametrize("signed,fold", [(False, (2, 3)), (True, (4, 12)), (False, (1, 4))],
                         ids=["u_folded", "s_unrolled", "u_serial"])
@pytest.mark.parametrize("stalls", [0.0, 0.3], ids=["free", "stalls"])
def test_quantizer_feeds_the_mvu_and_combine(signed, fold, stalls):
    rng = np.random.default_rng(7 + fold[0])
    fmt = ir.ActFormat(6, signed, 2)
    base = sample_bdcnn_layer(rng, fmt, 4, oc=4, ic=12, k=3, conv=False)  # F = 108
    layer = ir.Linear(base.name, base.inputs, fmt, base.weight, base.weight_bits,
                      base.weight_frac, rng.integers(-50, 50, base.out_channels),
                      ir.Logits(), base.out_format, encoding="bdcnn",
                      kind_data=base.kind_data, fold=ir.Fold(*fold))
    n = 4
    x = rng.integers(fmt.lo, fmt.hi + 1, size=(n, layer.fan_in))
    x[0] = fmt.lo + 3  # R = 0
    x[1, 0], x[1, -1] = fmt.lo, fmt.hi
    want = golden.run_layer(layer, [x])
    dut = SampleLinear(layer)
    pe, simd = layer.fold.pe, layer.fold.simd
    words = [_pack(beat, fmt.bits) for v in x for beat in v.reshape(-1, simd)]
    out, _ = simulate_stream(dut, words, n * layer.out_channels // pe, seed=5,
                             valid_gap=stalls, ready_stall=stalls)
    assert None not in out
    bits = dut.acc_format.bits
    got = [[((w >> (k * bits)) & ((1 << bits) - 1)) - ((w >> (k * bits + bits - 1)) & 1)
            * (1 << bits) for k in range(pe)] for w in out]
    np.testing.assert_array_equal(np.array(got).reshape(n, -1), want)


def test_rejects_bad_geometry():
    with pytest.raises(ValueError, match="beats must be a positive integer"):
        SampleQuantizer(ir.ActFormat(8, False, 0), 2, 0, 4)
    with pytest.raises(ValueError, match="non-bipolar input to 2..8 bits"):
        SampleQuantizer(ir.BIPOLAR, 2, 4, 4)


def _unpack_signed(words, bits, lanes):
    return [[((w >> (k * bits)) & ((1 << bits) - 1)) - ((w >> (k * bits + bits - 1)) & 1)
             * (1 << bits) for k in range(lanes)] for w in words]


@pytest.mark.parametrize("signed,fold,padding", [(True, (2, 6), 1), (False, (4, 2), 1),
                                                 (True, (1, 18), 0)],
                         ids=["s_registers_pad", "u_memory_pad", "s_unrolled"])
@pytest.mark.parametrize("stalls", [0.0, 0.3], ids=["free", "stalls"])
def test_quantizer_feeds_the_window_mvu_and_combine(signed, fold, padding, stalls):
    """A padded conv: codes through the existing sliding window (pad code 0) and MVU, Rin
    per output position; every output word equals the golden layer's."""
    rng = np.random.default_rng(11 + fold[1])
    fmt = ir.ActFormat(5, signed, 1)
    base = sample_bdcnn_layer(rng, fmt, 3, oc=4, ic=2, k=3, padding=padding)
    layer = ir.Conv2d(base.name, base.inputs, fmt, base.weight, base.weight_bits,
                      base.weight_frac, rng.integers(-20, 20, base.out_channels), ir.Logits(),
                      base.out_format, in_shape=base.in_shape, padding=base.padding,
                      encoding="bdcnn", kind_data=base.kind_data, fold=ir.Fold(*fold))
    n = 3
    x = rng.integers(fmt.lo, fmt.hi + 1, size=(n, *layer.in_shape))
    x[0] = fmt.hi  # R = 0
    x[1, 0, 0, 0], x[1, -1, -1, -1] = fmt.lo, fmt.hi
    want = golden.run_layer(layer, [x])  # (N, OC, OH, OW)
    dut = SampleConv(layer)
    lanes, pe = dut.in_lanes, layer.fold.pe
    words = [_pack(x[i, c0:c0 + lanes, y, xx], fmt.bits) for i in range(n)
             for y in range(x.shape[2]) for xx in range(x.shape[3])
             for c0 in range(0, x.shape[1], lanes)]
    oh, ow = want.shape[2:]
    out, _ = simulate_stream(dut, words, n * oh * ow * layer.out_channels // pe, seed=9,
                             valid_gap=stalls, ready_stall=stalls)
    assert None not in out
    got = np.array(_unpack_signed(out, dut.acc_format.bits, pe)).reshape(n, oh, ow, -1)
    np.testing.assert_array_equal(got.transpose(0, 3, 1, 2), want)


#: (lanes, beats, Q) of 8-bit unsigned maps, and the (LUT, FF) tolerance per family (None:
#: not checked). Measured with Yosys 0.70, model / Yosys: 4 x 256, Q = 4: ice40 320 / 348
#: LUT, 190 / 192 FF; xilinx 257 / 319 LUT, 190 / 117 FF; 16 x 64, Q = 6: ice40 1058 / 856
#: LUT, 462 / 464 FF; xilinx 649 / 873 LUT, 327 / 327 FF. DSP blocks and block RAMs equal in
#: all four. Known gap: with the map in a xilinx block RAM (4 x 256) 73 of the modelled
#: flip-flops are not there (absorbed into the RAMB18 and DSP48 registers), so xilinx
#: flip-flops are not checked.
STAGE_CASES = {"4x256": (4, 256, 4), "16x64": (16, 64, 6)}
STAGE_TOLERANCE = {"ice40": (0.30, 0.05), "xilinx": (0.30, None)}


@pytest.mark.synth
@pytest.mark.parametrize("case, family", rotated(list(STAGE_CASES), ["ice40", "xilinx"]))
def test_stage_cost_matches_yosys(case, family, tmp_path):
    from amaranth.back import verilog

    from hwquant.estimate.bdcnn import sample_stage
    from hwquant.estimate.synth import synthesize

    lanes, beats, qbits = STAGE_CASES[case]
    fmt = ir.ActFormat(8, False, 0)
    path = tmp_path / "s.v"
    path.write_text(verilog.convert(SampleQuantizer(fmt, lanes, beats, qbits), name="top"))
    res = synthesize(path, "top", family, workdir=tmp_path / family, splitnets=True)
    model = sample_stage(fmt, lanes, beats, qbits, family)
    lut_tol, ff_tol = STAGE_TOLERANCE[family]
    assert (model.dsp, model.bram) == (res.dsp, res.bram), (model, res)
    assert abs(model.lut - res.lut) <= lut_tol * res.lut, (model, res)
    if ff_tol is not None:
        assert abs(model.ff - res.ff) <= ff_tol * res.ff, (model, res)


#: LUT and FF tolerance of the combine stage's model (``estimate.stages._sample_combine``)
#: against Yosys 0.70 on iCE40. Measured on the digits default at K = Q = 6 (model / Yosys):
#: conv1 790 / 651 LUT, 201 / 173 FF; conv2 1843 / 1320 LUT, 425 / 369 FF; fc 159 / 138 LUT,
#: 81 / 82 FF; DSP blocks and block RAMs equal. The model is high on the constant tables of
#: ``Rin`` (Yosys folds the border classes further) and the epilogue.
COMBINE_TOLERANCE = (0.45, 0.20)


@pytest.mark.synth
@pytest.mark.slow
def test_combine_cost_matches_yosys(tmp_path):
    from amaranth.back import verilog

    from hwquant import plan as P
    from hwquant.estimate import estimate_network
    from hwquant.estimate.synth import synthesize
    from hwquant.hw.network import build_stage

    plan = P.plan_network(sample_conv_linear_net((2, 6), (1, 16)))
    est = estimate_network(plan, "ice40")
    for st in plan.stages:
        if not isinstance(st, P.SampleCombine):
            continue
        path = tmp_path / f"{st.name}.v"
        path.write_text(verilog.convert(build_stage(plan, st), name="top"))
        res = synthesize(path, "top", "ice40", workdir=tmp_path / st.name, splitnets=True)
        rows = [r for r in est.components if r["stage"] == st.name]
        lut, ff = sum(r["lut"] for r in rows), sum(r["ff"] for r in rows)
        dsp, bram = sum(r["dsp"] for r in rows), sum(r["bram"] for r in rows)
        assert (dsp, bram) == (res.dsp, res.bram), (st.name, rows, res)
        assert abs(lut - res.lut) <= COMBINE_TOLERANCE[0] * res.lut, (st.name, lut, res)
        assert abs(ff - res.ff) <= COMBINE_TOLERANCE[1] * res.ff, (st.name, ff, res)
