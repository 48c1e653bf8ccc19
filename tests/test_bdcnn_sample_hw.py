# amaranth: UnusedElaboratable=no
"""The per-sample quantizer stage (:class:`hwquant.hw.sample_quant.SampleQuantizer`) in the
Amaranth simulator against :func:`hwquant.golden.bdcnn.quantize_map`: every output word (the
codes of every lane, the map's minimum and range) of consecutive maps, random stalls on both
sides; constant maps and the format's extremes included."""

import numpy as np
import pytest
from streamsim import simulate_stream

from hwquant import ir
from hwquant.golden.bdcnn import quantize_map
from hwquant.hw.sample_quant import SampleQuantizer


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
    out, cycles = simulate_stream(dut, words, n * beats, seed=qbits, valid_gap=stalls,
                                  ready_stall=stalls)
    assert None not in out, "extra output beat"
    want = []
    for i in range(n):
        for b in range(beats):
            word = _pack(q[i, b], qbits)
            word |= (int(m[i]) & ((1 << fmt.bits) - 1)) << (lanes * qbits)
            word |= int(r[i]) << (lanes * qbits + fmt.bits)
            want.append(word)
    assert out == want
    if not stalls:  # 2 * beats + Q + S + 3 cycles per map, no overlap
        s = 2 * fmt.bits + 1
        assert cycles <= n * (2 * beats + qbits + s + 3) + 2


def test_rejects_bad_geometry():
    with pytest.raises(ValueError, match="beats must be a positive integer"):
        SampleQuantizer(ir.ActFormat(8, False, 0), 2, 0, 4)
    with pytest.raises(ValueError, match="non-bipolar input to 2..8 bits"):
        SampleQuantizer(ir.BIPOLAR, 2, 4, 4)


#: (lanes, beats, Q) of 8-bit unsigned maps, and the (LUT, FF) tolerance per family. Measured
#: with Yosys 0.70, model vs Yosys LUT / FF: 4 x 256, Q = 4: ice40 320 / 330 LUT, 206 / 207 FF;
#: xilinx 257 / 298 LUT, 206 / 132 FF (the DSP48 and block RAM absorb pipeline registers the
#: model counts as flip-flops); 16 x 64, Q = 6: ice40 1058 / 834 LUT, 478 / 479 FF; xilinx
#: 649 / 842 LUT, 343 / 342 FF. DSP blocks and block RAMs equal in all four.
STAGE_CASES = {"4x256": (4, 256, 4), "16x64": (16, 64, 6)}
STAGE_TOLERANCE = {"ice40": (0.30, 0.05), "xilinx": (0.30, 0.60)}


@pytest.mark.synth
@pytest.mark.parametrize("family", ["ice40", "xilinx"])
@pytest.mark.parametrize("case", [pytest.param("4x256"),
                                  pytest.param("16x64", marks=pytest.mark.slow)])
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
    assert abs(model.ff - res.ff) <= ff_tol * res.ff, (model, res)
