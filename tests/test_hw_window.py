# amaranth: UnusedElaboratable=no
"""The folded sliding-window generator in the Amaranth simulator: every output beat against
windows cut from the golden ``im2col``, with and without stalls, and its timing model against
the hardware cycle for cycle."""

import itertools
import os
import random
import sys

import numpy as np
import pytest

from hwquant import golden, ir
from hwquant.hw.window import SlidingWindow
from hwquant.layout import pack_lanes, tensor_to_beats, unpack_lanes
from hwquant.schedule.window import (
    SlidingWindowTiming,
    window_beats,
    window_geometry,
    window_in_lanes,
)

sys.path.insert(0, os.path.dirname(__file__))
from streamsim import simulate_stream
from timingsim import check_timing

STALLS = [(0.0, 0.0), (0.4, 0.4)]
STALL_IDS = ["no_stalls", "stalls"]


def golden_beats(x, kernel, stride, padding, simd, order, pad_value):
    """Golden window beats of maps ``x`` (N, C, H, W), ``simd`` lanes each, map after map."""
    cols = golden.im2col(x, kernel, stride, padding, pad_value)  # (N, OH, OW, C, KH, KW)
    n, oh, ow, c, kh, kw = cols.shape
    if order == "kernel":  # window-lane order: lane (kh*KW + kw)*C + c
        return cols.transpose(0, 1, 2, 4, 5, 3).reshape(-1, simd)
    chunks = cols.reshape(n, oh, ow, c // simd, simd, kh * kw)
    return chunks.transpose(0, 1, 2, 3, 5, 4).reshape(-1, simd)


def random_maps(rng, fmt, shape, n):
    x = rng.integers(fmt.lo, fmt.hi, (n, *shape), endpoint=True)
    x.flat[0], x.flat[-1] = fmt.lo, fmt.hi
    return x


def run_window(shape, kernel, stride, padding, simd, order, pad, maps, *, seed, stalls,
               bits=None, signed=None):
    rng = np.random.default_rng(seed)
    fmt = ir.ActFormat(bits or int(rng.integers(2, 7)),
                       bool(seed % 2) if signed is None else signed, 0)
    pad = fmt.lo if pad == "lo" else pad
    x = random_maps(rng, fmt, shape, maps)
    dut = SlidingWindow(shape, kernel, stride, padding, fmt, simd=simd, order=order,
                        pad_value=pad)
    expected = golden_beats(x, kernel, stride, padding, simd, order, pad)
    assert len(expected) == maps * dut.beats_per_map
    lanes = dut.in_lanes
    words = [pack_lanes(b, fmt.bits) for img in x for b in tensor_to_beats(img, lanes)]
    out, cycles = simulate_stream(dut, words, len(expected), seed=seed, valid_gap=stalls[0],
                                  ready_stall=stalls[1])
    assert None not in out, f"{out.count(None)} extra beat(s) after the expected ones"
    got = np.array([unpack_lanes(wd, fmt.bits, simd, fmt.signed) for wd in out])
    np.testing.assert_array_equal(got, expected)
    return dut, cycles


# (C, H, W), kernel, stride, padding, simd, order, pad value ("lo": fmt.lo), maps
CASES = [
    ((4, 5, 6), (3, 3), (1, 1), (1, 1), 2, "kernel", 0, 2),
    ((3, 5, 4), (3, 3), (1, 1), (1, 1), 1, "kernel", 0, 2),
    ((8, 4, 4), (2, 2), (2, 2), (0, 0), 4, "channel", "lo", 3),  # max pool
    ((4, 5, 5), (3, 3), (2, 2), (1, 1), 4, "channel", 0, 2),  # avg pool, padded
    ((16, 3, 3), (1, 1), (2, 2), (0, 0), 4, "kernel", 0, 2),  # strided 1x1 projection
    ((8, 4, 5), (1, 1), (1, 1), (0, 0), 8, "kernel", 0, 2),
    ((2, 6, 7), (5, 5), (1, 1), (2, 2), 1, "kernel", 0, 2),
    ((4, 5, 6), (2, 3), (2, 1), (0, 2), 2, "kernel", "lo", 2),  # non-square, pad > K/2
    ((1, 7, 7), (3, 2), (2, 2), (2, 0), 1, "channel", 0, 2),
    ((4, 5, 5), (1, 1), (2, 2), (2, 1), 2, "kernel", 0, 2),  # windows of padding alone
    ((2, 3, 3), (3, 3), (1, 1), (0, 0), 2, "kernel", 0, 3),  # one window per map
    ((2, 1, 6), (1, 2), (1, 2), (0, 0), 1, "channel", "lo", 2),  # a single row
    ((2, 6, 1), (2, 1), (1, 1), (1, 0), 2, "kernel", 3, 2),  # a single column, odd pad value
    ((4, 1, 1), (1, 1), (1, 1), (0, 0), 4, "kernel", 0, 3),  # a 1x1 map
    # register mode: simd a multiple of C
    ((1, 6, 6), (3, 3), (1, 1), (1, 1), 3, "kernel", 0, 2),
    ((3, 5, 4), (3, 3), (2, 2), (1, 1), 9, "kernel", 0, 2),
    ((1, 5, 5), (2, 2), (1, 1), (0, 0), 4, "kernel", 0, 2),  # one beat per window
    ((1, 5, 5), (2, 1), (2, 2), (2, 1), 2, "kernel", 0, 2),  # windows of padding alone
    ((1, 5, 1), (3, 1), (1, 1), (1, 0), 3, "kernel", 5, 2),  # one column: no line memory
    ((2, 1, 4), (1, 3), (1, 1), (0, 1), 6, "kernel", "lo", 2),  # one row
]


@pytest.mark.parametrize("stalls", STALLS, ids=STALL_IDS)
@pytest.mark.parametrize("case", range(len(CASES)))
def test_sliding_window(case, stalls):
    shape, kernel, stride, padding, simd, order, pad, maps = CASES[case]
    dut, _ = run_window(shape, kernel, stride, padding, simd, order, pad, maps, seed=case,
                        stalls=stalls)
    assert dut.out_size == golden.im2col(np.zeros((1, *shape)), kernel, stride,
                                         padding).shape[1:3]


@pytest.mark.parametrize("seed", range(8))
def test_sliding_window_random(seed):
    rng = random.Random(300 + seed)
    c = rng.choice([1, 2, 3, 4, 8])
    h, w = rng.randint(1, 6), rng.randint(1, 6)
    kernel = (rng.randint(1, min(h, 3)), rng.randint(1, min(w, 3)))
    stride = (rng.randint(1, 3), rng.randint(1, 3))
    padding = (rng.randint(0, 2), rng.randint(0, 2))
    order = rng.choice(["kernel", "channel"])
    lanes = kernel[0] * kernel[1] * c
    simds = [d for d in range(1, c + 1) if c % d == 0]
    if order == "kernel":
        simds += [d for d in range(c + 1, lanes + 1) if lanes % d == 0 and d % c == 0]
    simd = rng.choice(simds)
    run_window((c, h, w), kernel, stride, padding, simd, order, rng.choice([0, "lo"]), 2,
               seed=seed, stalls=STALLS[seed % 2])


# -- timing model ------------------------------------------------------------------------------

# (C, H, W), kernel, stride, padding, simd, order, maps
TIMING_CASES = [
    ((4, 5, 6), (3, 3), (1, 1), (1, 1), 2, "kernel", 3),
    ((2, 6, 5), (3, 3), (1, 1), (0, 0), 2, "kernel", 3),
    ((8, 4, 4), (2, 2), (2, 2), (0, 0), 4, "channel", 3),
    ((4, 4, 5), (1, 1), (2, 2), (0, 0), 2, "kernel", 3),
    ((2, 5, 5), (1, 1), (1, 1), (0, 0), 2, "kernel", 3),  # writer and reader at equal rates
    ((1, 5, 5), (1, 1), (2, 2), (2, 1), 1, "kernel", 3),  # padding-only windows, skipped rows
    ((1, 7, 7), (3, 2), (3, 3), (2, 0), 1, "channel", 3),
    ((2, 3, 3), (3, 3), (1, 1), (0, 0), 2, "channel", 3),
    ((1, 6, 6), (3, 3), (1, 1), (1, 1), 3, "kernel", 3),  # register mode
    ((1, 5, 5), (1, 1), (2, 2), (2, 2), 1, "kernel", 2),
    ((2, 4, 4), (2, 2), (1, 1), (1, 1), 4, "kernel", 2),  # register mode, padded
    ((1, 5, 5), (2, 1), (2, 2), (2, 1), 2, "kernel", 2),  # register mode, padding alone
]


@pytest.mark.parametrize("stalls", [(0.0, 0.0), (0.3, 0.3), (0.0, 0.6), (0.7, 0.0)],
                         ids=["free", "both", "consumer", "producer"])
@pytest.mark.parametrize("case", range(len(TIMING_CASES)))
def test_timing_model_matches_hardware(case, stalls):
    shape, kernel, stride, padding, simd, order, maps = TIMING_CASES[case]
    fmt = ir.ActFormat(3, False, 0)
    dut = SlidingWindow(shape, kernel, stride, padding, fmt, simd=simd, order=order)
    model = SlidingWindowTiming(shape, kernel, stride, padding, simd=simd, order=order)
    in_beats = maps * shape[0] // dut.in_lanes * shape[1] * shape[2]
    out_beats = maps * dut.beats_per_map
    cycles = 3 * (in_beats + out_beats) + 20
    fired = check_timing(dut, model, in_beats=[in_beats], cycles=cycles, seed=case,
                         valid_gap=stalls[0], ready_stall=stalls[1])
    assert fired == {"i_stream": in_beats, "o_stream": out_beats}


def test_timing_model_random_geometries():
    """The model alone (no simulator) against its own invariants on many geometries: every
    map's beats come out, and the buffer never holds more rows than it has."""
    rng = random.Random(7)
    for _ in range(60):
        c = rng.choice([1, 2, 4])
        h, w = rng.randint(1, 6), rng.randint(1, 6)
        padding = (rng.randint(0, 2), rng.randint(0, 2))
        kernel = (rng.randint(1, min(h + 2 * padding[0], 4)),
                  rng.randint(1, min(w + 2 * padding[1], 4)))
        stride = (rng.randint(1, 3), rng.randint(1, 3))
        order = rng.choice(["kernel", "channel"])
        model = SlidingWindowTiming((c, h, w), kernel, stride, padding, simd=1, order=order)
        g = model.geometry
        n_in, n_out = 2 * c * h * w, 2 * g.beats_per_map
        for cyc in range(10 * (n_in + n_out) + 50):
            iv = (n_in > 0 and rng.random() < 0.7,)
            orr = (rng.random() < 0.7,)
            ov = model.valid()
            ir_ = model.ready(iv, orr)
            model.tick(iv, ir_, ov, orr)
            n_in -= iv[0] and ir_[0]
            n_out -= ov[0] and orr[0]
            assert g.least <= model.held <= g.rows
            if n_out == 0 and n_in == 0:
                break
        assert n_in == 0 and n_out == 0, (c, h, w, kernel, stride, padding)


# -- throughput --------------------------------------------------------------------------------

@pytest.mark.parametrize("shape, kernel, stride, padding, simd, order", [
    ((4, 6, 6), (3, 3), (1, 1), (1, 1), 2, "kernel"),
    ((4, 6, 6), (3, 3), (1, 1), (0, 0), 4, "kernel"),
    ((8, 6, 6), (2, 2), (2, 2), (0, 0), 4, "channel"),
    ((4, 5, 5), (1, 1), (1, 1), (0, 0), 2, "kernel"),
])
def test_throughput_one_beat_per_cycle(shape, kernel, stride, padding, simd, order):
    """Never stalled, maps back to back: one output beat per cycle (input beats per map never
    exceed output beats here), so ``maps`` maps take their beats plus the first map's fill."""
    maps = 3
    dut, cycles = run_window(shape, kernel, stride, padding, simd, order, 0, maps, seed=0,
                             stalls=(0.0, 0.0), bits=4, signed=False)
    beats = dut.beats_per_map
    g = dut.geometry
    fill = (g.need[0] * g.row_words) + 2  # rows before the first beat, and the handshakes
    assert cycles <= maps * beats + fill, (cycles, maps * beats, fill)
    # The model, run for many maps, shows the steady state exactly.
    model = SlidingWindowTiming(shape, kernel, stride, padding, simd=simd, order=order)
    ends, out = [], 0
    for cyc in range(20 * beats):
        ov = model.valid()
        r = model.ready((True,), (True,))
        model.tick((True,), r, ov, (True,))
        out += ov[0]
        if ov[0] and out % beats == 0:
            ends.append(cyc)
    assert {b - a for a, b in itertools.pairwise(ends)} == {beats}


# -- geometry helpers and bad input ------------------------------------------------------------

def test_geometry_helpers():
    assert window_in_lanes(8, 2) == 2 and window_in_lanes(3, 9) == 3
    assert window_beats((4, 5, 6), (3, 3), (1, 1), (1, 1), 2) == 5 * 6 * 18
    assert window_beats((1, 6, 6), (3, 3), (1, 1), (1, 1), 3) == 36 * 3
    g = window_geometry((4, 8, 8), (3, 3), (1, 1), (1, 1), simd=2)
    assert g.memory and g.rows == 4 and g.depth == 4 * 8 * 2
    assert window_geometry((4, 8, 8), (3, 3), (1, 1), (0, 0), simd=2).rows == 6
    assert window_geometry((4, 8, 8), (2, 2), (2, 2), (0, 0), simd=4).rows == 4
    assert not window_geometry((1, 8, 8), (3, 3), (1, 1), (1, 1), simd=3).memory


def test_rejects_bad_input():
    fmt = ir.ActFormat(4, False, 0)
    with pytest.raises(ValueError, match=r"^Sliding window geometry must be positive, not "
                                         r"shape \(1, 4, 4\), kernel \(0, 1\), stride \(1, 1\), "
                                         r"padding \(0, 0\)$"):
        SlidingWindow((1, 4, 4), (0, 1), (1, 1), (0, 0), fmt, simd=1)
    with pytest.raises(ValueError, match=r"^Kernel \(5, 1\) does not fit input \(4, 4\) with "
                                         r"padding \(0, 0\)$"):
        SlidingWindow((1, 4, 4), (5, 1), (1, 1), (0, 0), fmt, simd=1)
    with pytest.raises(ValueError, match=r"^Pad value -1 is outside the lane range \[0, 15\]$"):
        SlidingWindow((1, 4, 4), (3, 3), (1, 1), (1, 1), fmt, simd=1, pad_value=-1)
    with pytest.raises(ValueError, match=r"^Sliding window SIMD must divide the 6 channels or "
                                         r"be a multiple of them dividing the 24 window lanes "
                                         r"\(1, 2, 3, 6, 12, 24\), not 4$"):
        SlidingWindow((6, 4, 4), (2, 2), (1, 1), (0, 0), fmt, simd=4)
    with pytest.raises(ValueError, match=r"^Sliding window SIMD must divide the 2 channels "
                                         r"\(1, 2\), not 8$"):
        SlidingWindow((2, 4, 4), (2, 2), (2, 2), (0, 0), fmt, simd=8, order="channel")
    with pytest.raises(ValueError, match=r"^Sliding window order must be 'kernel' or "
                                         r"'channel', not 'rows'$"):
        SlidingWindowTiming((2, 4, 4), (2, 2), (2, 2), (0, 0), simd=2, order="rows")
