# amaranth: UnusedElaboratable=no
"""The small streaming components of the folded dataflow (FIFO, width converter, fork,
residual add, pooling reducers, argmax) in the Amaranth Python simulator: data against the
golden model or NumPy, with and without random stalls, and their timing models cycle for
cycle (:mod:`hwquant.schedule.streams`)."""

import os
import sys

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.sim import Simulator

from hwquant import golden, ir
from hwquant.hw.add import AddJoin
from hwquant.hw.fifo import REGISTER_DEPTH, StreamFifo
from hwquant.hw.fork import Fork
from hwquant.hw.output import ArgMax
from hwquant.hw.pool import AvgReduce, MaxReduce
from hwquant.hw.width import StreamWidth
from hwquant.layout import pack_lanes, tensor_to_beats, unpack_lanes
from hwquant.schedule.streams import (
    AddJoinTiming,
    ArgMaxTiming,
    ForkTiming,
    ReduceTiming,
    StreamFifoTiming,
    StreamWidthTiming,
)

sys.path.insert(0, os.path.dirname(__file__))
from streamsim import simulate_stream, simulate_streams
from timingsim import check_timing

STALLS = [(0.0, 0.0), (0.4, 0.4)]
STALL_IDS = ["no_stalls", "stalls"]
# Timing: free-running, random stalls, and a slow consumer that keeps buffers full.
TIMING_STALLS = [(0.0, 0.0), (0.4, 0.4), (0.1, 0.8)]
TIMING_IDS = ["no_stalls", "stalls", "backpressure"]


def run(dut, in_beats, in_bits, n_out, out_bits, out_lanes, out_signed, *, seed, stalls):
    """Simulate a one-input, one-output ``dut`` on integer beats; return the output beats as
    an ``(n_out, out_lanes)`` array, checking that exactly ``n_out`` beats came out."""
    words = [pack_lanes(beat, in_bits) for beat in in_beats]
    out, _ = simulate_stream(dut, words, n_out, seed=seed, valid_gap=stalls[0],
                             ready_stall=stalls[1])
    assert None not in out, f"{out.count(None)} extra beat(s) after the expected {n_out}"
    return np.array([unpack_lanes(w, out_bits, out_lanes, out_signed) for w in out])


def random_beats(rng, fmt, n, lanes):
    x = rng.integers(fmt.lo, fmt.hi, (n, lanes), endpoint=True)
    x.flat[0], x.flat[-1] = fmt.lo, fmt.hi
    return x


FMT = ir.ActFormat(3, True, 0)


# -- StreamFifo --------------------------------------------------------------------------------

FIFO_DEPTHS = [1, 2, 3, 4, 5, 16, 33]


@pytest.mark.parametrize("stalls", TIMING_STALLS, ids=TIMING_IDS)
@pytest.mark.parametrize("depth", FIFO_DEPTHS)
def test_stream_fifo_data(depth, stalls):
    beats = random_beats(np.random.default_rng(depth), FMT, 60, 4)
    got = run(StreamFifo(FMT, 4, depth), beats, 3, len(beats), 3, 4, True, seed=depth,
              stalls=stalls)
    np.testing.assert_array_equal(got, beats)


@pytest.mark.parametrize("registered", [False, True], ids=["pass_ready", "reg_ready"])
@pytest.mark.parametrize("stalls", TIMING_STALLS, ids=TIMING_IDS)
@pytest.mark.parametrize("depth", FIFO_DEPTHS)
def test_stream_fifo_timing(depth, stalls, registered):
    fired = check_timing(StreamFifo(FMT, 2, depth, registered_ready=registered),
                         StreamFifoTiming(depth, registered_ready=registered), in_beats=[150],
                         cycles=160, seed=depth, valid_gap=stalls[0], ready_stall=stalls[1])
    assert fired["o_stream"] > 0


@pytest.mark.parametrize("depth", [1, 2, 5])
def test_stream_fifo_registered_ready_data(depth):
    beats = random_beats(np.random.default_rng(depth + 7), FMT, 60, 4)
    got = run(StreamFifo(FMT, 4, depth, registered_ready=True), beats, 3, len(beats), 3, 4,
              True, seed=depth, stalls=TIMING_STALLS[-1])
    np.testing.assert_array_equal(got, beats)


@pytest.mark.parametrize("registered", [False, True], ids=["pass_ready", "reg_ready"])
@pytest.mark.parametrize("depth", FIFO_DEPTHS)
def test_stream_fifo_holds_exactly_depth_beats(depth, registered):
    """With the consumer never ready, the FIFO takes ``depth`` beats, then none."""
    fired = check_timing(StreamFifo(FMT, 1, depth, registered_ready=registered),
                         StreamFifoTiming(depth, registered_ready=registered), in_beats=[99],
                         cycles=depth + 6, ready_stall=1.0)
    assert fired == {"i_stream": depth, "o_stream": 0}


@pytest.mark.parametrize("registered", [False, True], ids=["pass_ready", "reg_ready"])
@pytest.mark.parametrize("depth", FIFO_DEPTHS)
def test_stream_fifo_full_throughput(depth, registered):
    """Ready consumer, producer always valid: one beat per cycle after one cycle of latency;
    with a registered ready that needs two slots, a one-beat FIFO passes every other cycle."""
    fired = check_timing(StreamFifo(FMT, 1, depth, registered_ready=registered),
                         StreamFifoTiming(depth, registered_ready=registered), in_beats=[40],
                         cycles=41)
    if registered and depth == 1:
        assert fired == {"i_stream": 21, "o_stream": 20}
    else:
        assert fired == {"i_stream": 40, "o_stream": 40}


def test_stream_fifo_registered_ready_ignores_consumer():
    """``registered_ready``: the input's ready is a function of the FIFO's state only."""

    dut = StreamFifo(FMT, 1, 2, registered_ready=True)
    seen = []

    async def bench(ctx):
        ctx.set(dut.i_stream.valid, 1)
        for _ in range(4):
            await ctx.tick()
        for ready in (0, 1, 0, 1):  # full: the consumer's ready does not open the input
            ctx.set(dut.o_stream.ready, ready)
            seen.append(ctx.get(dut.i_stream.ready))
        ctx.set(dut.o_stream.ready, 1)
        await ctx.tick()
        seen.append(ctx.get(dut.i_stream.ready))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert seen == [0, 0, 0, 0, 1]


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5, 6])
def test_stream_fifo_verilog_has_no_empty_range(depth):
    text = verilog.convert(StreamFifo(FMT, 4, depth), name="fifo")
    assert "[-1:0]" not in text
    assert ("reg [11:0] storage" in text) == (depth > REGISTER_DEPTH)


@pytest.mark.parametrize("depth", [0, -1, 2.0, True])
def test_stream_fifo_rejects_bad_depth(depth):
    with pytest.raises(ValueError, match=r"^FIFO depth must be a positive integer, not "):
        StreamFifo(FMT, 4, depth)


# -- StreamWidth -------------------------------------------------------------------------------

WIDTHS = [(1, 4), (4, 1), (2, 3), (3, 2), (4, 6), (6, 4), (3, 3), (2, 8), (1, 1)]


@pytest.mark.parametrize("stalls", STALLS, ids=STALL_IDS)
@pytest.mark.parametrize("lanes", WIDTHS, ids=[f"{a}to{b}" for a, b in WIDTHS])
def test_stream_width_data(lanes, stalls):
    a, b = lanes
    fmt = ir.ActFormat(5, False, 0)
    n = np.lcm(a, b) * 5
    elements = random_beats(np.random.default_rng(a * 10 + b), fmt, n, 1).ravel()
    got = run(StreamWidth(fmt, a, b), elements.reshape(-1, a), 5, n // b, 5, b, False,
              seed=a + b, stalls=stalls)
    np.testing.assert_array_equal(got.ravel(), elements)


@pytest.mark.parametrize("stalls", TIMING_STALLS, ids=TIMING_IDS)
@pytest.mark.parametrize("lanes", WIDTHS, ids=[f"{a}to{b}" for a, b in WIDTHS])
def test_stream_width_timing(lanes, stalls):
    a, b = lanes
    check_timing(StreamWidth(FMT, a, b), StreamWidthTiming(a, b), in_beats=[150], cycles=160,
                 seed=a * 7 + b, valid_gap=stalls[0], ready_stall=stalls[1])


@pytest.mark.parametrize("lanes", WIDTHS, ids=[f"{a}to{b}" for a, b in WIDTHS])
def test_stream_width_full_rate_on_slower_side(lanes):
    a, b = lanes
    fired = check_timing(StreamWidth(FMT, a, b), StreamWidthTiming(a, b), in_beats=[10_000],
                         cycles=121)
    # After one cycle of latency the slower side moves a beat every cycle.
    beats_in, beats_out = fired["i_stream"], fired["o_stream"]
    assert (beats_in if a <= b else beats_out) >= 120 - np.lcm(a, b) // min(a, b)
    assert beats_in * a - beats_out * b >= 0


def test_stream_width_rejects_bad_lanes():
    with pytest.raises(ValueError, match=r"^Output lanes of a width converter must be a "
                                         r"positive integer, not 0$"):
        StreamWidth(FMT, 2, 0)


# -- Fork --------------------------------------------------------------------------------------

@pytest.mark.parametrize("stalls", STALLS, ids=STALL_IDS)
@pytest.mark.parametrize("n", [1, 2, 3])
def test_fork_data(n, stalls):
    beats = random_beats(np.random.default_rng(n), FMT, 40, 3)
    words = [pack_lanes(b, 3) for b in beats]
    names = [f"o_stream{k}" for k in range(n)]
    got = simulate_streams(Fork(FMT, 3, n), {"i_stream": words}, dict.fromkeys(names, 40),
                           seed=n, valid_gap=stalls[0], ready_stall=stalls[1])
    for name in names:
        assert got[name] == words, name


@pytest.mark.parametrize("stalls", TIMING_STALLS, ids=TIMING_IDS)
@pytest.mark.parametrize("n", [1, 2, 3])
def test_fork_timing(n, stalls):
    names = [f"o_stream{k}" for k in range(n)]
    fired = check_timing(Fork(FMT, 2, n), ForkTiming(n), outputs=names, in_beats=[150],
                         cycles=160, seed=n, valid_gap=stalls[0], ready_stall=stalls[1])
    # Every output has taken every accepted beat but the one in flight, at most.
    assert all(fired["i_stream"] - 1 <= fired[name] <= fired["i_stream"] for name in names)
    if stalls == (0.0, 0.0):
        assert fired["i_stream"] == 150


def test_fork_rejects_no_outputs():
    with pytest.raises(ValueError, match=r"^Fork outputs must be a positive integer, not 0$"):
        Fork(FMT, 2, 0)


# -- AddJoin -----------------------------------------------------------------------------------

# (format a, format b, output format, relu)
ADD_CASES = [
    (ir.ActFormat(4, True, 2), ir.ActFormat(4, True, 2), ir.ActFormat(4, True, 1), False),
    (ir.ActFormat(5, False, 3), ir.ActFormat(4, True, 1), ir.ActFormat(5, True, 2), False),
    (ir.ActFormat(4, True, 0), ir.ActFormat(6, False, 4), ir.ActFormat(4, False, 2), True),
    (ir.ActFormat(3, True, 1), ir.ActFormat(3, True, 2), ir.ActFormat(6, True, 4), False),
    (ir.ActFormat(4, False, 2), ir.ActFormat(4, False, 0), ir.ActFormat(3, False, 0), True),
    (ir.ActFormat(4, True, -1), ir.ActFormat(4, True, 1), ir.ActFormat(5, True, 0), True),
]


def add_layer(case, channels=4):
    fa, fb, fo, relu = ADD_CASES[case]
    return ir.Add("res", ("x", "y"), (channels, 2, 2), (fa, fb), fo, relu=relu)


@pytest.mark.parametrize("stalls", STALLS, ids=STALL_IDS)
@pytest.mark.parametrize("lanes", [1, 2, 4])
@pytest.mark.parametrize("case", range(len(ADD_CASES)))
def test_add_join_data(case, lanes, stalls):
    layer = add_layer(case)
    fa, fb = layer.in_formats
    fo = layer.out_format
    rng = np.random.default_rng(case * 10 + lanes)
    n = 48 // lanes
    a, b = random_beats(rng, fa, n, lanes), random_beats(rng, fb, n, lanes)
    b.flat[0], b.flat[1] = fb.lo, fb.hi
    expected = golden.add_requantize(a, fa.frac, b, fb.frac, fo.frac, layer.lo, fo.hi)
    got = simulate_streams(AddJoin(layer, lanes),
                           {"a_stream": [pack_lanes(v, fa.bits) for v in a],
                            "b_stream": [pack_lanes(v, fb.bits) for v in b]},
                           {"o_stream": n}, seed=case + lanes, valid_gap=stalls[0],
                           ready_stall=stalls[1])["o_stream"]
    assert None not in got
    got = np.array([unpack_lanes(w, fo.bits, lanes, fo.signed) for w in got])
    np.testing.assert_array_equal(got, expected)


def test_add_join_exhaustive_small_formats():
    """Every operand pair of two 3-bit formats, through one lane without stalls."""
    layer = ir.Add("res", ("x", "y"), (1,), (ir.ActFormat(3, True, 1), ir.ActFormat(3, False, 0)),
                   ir.ActFormat(3, True, 0), relu=False)
    fa, fb = layer.in_formats
    a, b = np.meshgrid(np.arange(fa.lo, fa.hi + 1), np.arange(fb.lo, fb.hi + 1))
    a, b = a.reshape(-1, 1), b.reshape(-1, 1)
    expected = golden.add_requantize(a, 1, b, 0, 0, layer.lo, layer.out_format.hi)
    got = simulate_streams(AddJoin(layer, 1),
                           {"a_stream": [pack_lanes(v, 3) for v in a],
                            "b_stream": [pack_lanes(v, 3) for v in b]},
                           {"o_stream": len(a)})["o_stream"]
    np.testing.assert_array_equal(np.array([unpack_lanes(w, 3, 1, True) for w in got]),
                                  expected)


@pytest.mark.parametrize("stalls", TIMING_STALLS, ids=TIMING_IDS)
def test_add_join_timing(stalls):
    fired = check_timing(AddJoin(add_layer(1), 2), AddJoinTiming(),
                         inputs=["a_stream", "b_stream"], in_beats=[150, 150], cycles=200,
                         seed=3, valid_gap=stalls[0], ready_stall=stalls[1])
    assert fired["a_stream"] == fired["b_stream"] > 0


def test_add_join_rejects_bad_lanes():
    with pytest.raises(ValueError, match=r"^Layer 'res': lanes must divide the 4 channels, "
                                         r"not 3$"):
        AddJoin(add_layer(0), 3)


# -- MaxReduce, AvgReduce ----------------------------------------------------------------------

# (C, H, W), kernel, stride, padding, lanes, signed
POOL_CASES = [
    ((4, 4, 4), (2, 2), (2, 2), (0, 0), 2, True),
    ((3, 5, 5), (3, 3), (2, 2), (1, 1), 3, False),
    ((4, 3, 4), (1, 3), (1, 1), (0, 1), 1, True),
    ((2, 4, 4), (1, 1), (2, 2), (0, 0), 2, False),  # window of one beat
    ((6, 3, 3), (3, 3), (1, 1), (0, 0), 2, True),  # global pooling, 9 beats per window
]


def channel_order_windows(x, kernel, stride, padding, lanes, pad_value):
    """Windows of ``x`` (N, C, H, W) as the folded sliding window streams them for pooling:
    per output pixel, per chunk of ``lanes`` channels, one beat per kernel offset."""
    cols = golden.im2col(x, kernel, stride, padding, pad_value)  # (N, OH, OW, C, KH, KW)
    n, oh, ow, c = cols.shape[:4]
    cols = cols.reshape(n, oh, ow, c // lanes, lanes, kernel[0] * kernel[1])
    return cols.transpose(0, 1, 2, 3, 5, 4).reshape(-1, lanes)


def folded(y, lanes):
    return np.concatenate([tensor_to_beats(img, lanes) for img in y])


def avg_requant(window, relu, fmt):
    if window & (window - 1) == 0:
        return ir.Requant([1], window.bit_length() - 1, 0 if relu else fmt.lo, fmt.hi)
    shift = 15 + (window - 1).bit_length()
    return ir.Requant([(2 ** (shift + 1) + window) // (2 * window)], shift,
                      0 if relu else fmt.lo, fmt.hi)


def pool_input(case, fmt):
    x = np.random.default_rng(case).integers(fmt.lo, fmt.hi, (2, *POOL_CASES[case][0]),
                                             endpoint=True)
    x.flat[0], x.flat[-1] = fmt.lo, fmt.hi
    return x


@pytest.mark.parametrize("stalls", STALLS, ids=STALL_IDS)
@pytest.mark.parametrize("case", range(len(POOL_CASES)))
def test_max_reduce_data(case, stalls):
    shape, kernel, stride, padding, lanes, is_signed = POOL_CASES[case]
    fmt = ir.ActFormat(4, is_signed, 0)
    layer = ir.MaxPool2d("mp", ("input",), shape, kernel, stride, padding, fmt)
    x = pool_input(case, fmt)
    windows = channel_order_windows(x, kernel, stride, padding, lanes, fmt.lo)
    expected = folded(golden.run_layer(layer, [x]), lanes)
    got = run(MaxReduce(lanes, kernel[0] * kernel[1], fmt), windows, 4, len(expected), 4,
              lanes, is_signed, seed=case, stalls=stalls)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("stalls", STALLS, ids=STALL_IDS)
@pytest.mark.parametrize("case", range(len(POOL_CASES)))
def test_avg_reduce_data(case, stalls):
    shape, kernel, stride, padding, lanes, is_signed = POOL_CASES[case]
    fmt = ir.ActFormat(4, is_signed, 1)
    window = kernel[0] * kernel[1]
    layer = ir.AvgPool2d("ap", ("input",), shape, kernel, stride, padding, fmt, out_format=fmt,
                         requant=avg_requant(window, case % 2 == 0, fmt))
    x = pool_input(case, fmt)
    windows = channel_order_windows(x, kernel, stride, padding, lanes, 0)
    expected = folded(golden.run_layer(layer, [x]), lanes)
    got = run(AvgReduce(lanes, window, fmt, fmt, layer.requant), windows, 4, len(expected), 4,
              lanes, is_signed, seed=case, stalls=stalls)
    np.testing.assert_array_equal(got, expected)


def test_avg_reduce_into_another_format():
    """Unsigned 4-bit windows of 3 averaged into a wider signed format, against the golden
    epilogue directly."""
    in_fmt, out_fmt = ir.ActFormat(4, False, 0), ir.ActFormat(7, True, 3)
    rq = ir.Requant([2731], 13, -64, 63)  # about 8/3: the mean of 3, three fraction bits more
    beats = random_beats(np.random.default_rng(5), in_fmt, 36, 2)
    sums = beats.reshape(-1, 3, 2).sum(axis=1)
    expected = golden.avg_requantize(sums, 2731, 13, -64, 63)
    got = run(AvgReduce(2, 3, in_fmt, out_fmt, rq), beats, 4, len(sums), 7, 2, True, seed=5,
              stalls=STALLS[1])
    np.testing.assert_array_equal(got, expected)


def test_avg_reduce_rejects_bounds_outside_format():
    with pytest.raises(ValueError, match=r"^Average pooling bounds \[-64, 63\] must lie within "
                                         r"the output format's \[-8, 7\]$"):
        AvgReduce(2, 3, FMT, ir.ActFormat(4, True, 0), ir.Requant([1], 0, -64, 63))


@pytest.mark.parametrize("stalls", TIMING_STALLS, ids=TIMING_IDS)
@pytest.mark.parametrize("window", [1, 2, 4, 9])
def test_reduce_timing(window, stalls):
    fmt = ir.ActFormat(4, True, 1)
    for dut in (MaxReduce(2, window, fmt),
                AvgReduce(2, window, fmt, fmt, avg_requant(window, False, fmt))):
        fired = check_timing(dut, ReduceTiming(window), in_beats=[150], cycles=160,
                             seed=window, valid_gap=stalls[0], ready_stall=stalls[1])
        assert fired["o_stream"] > 0


# -- ArgMax ------------------------------------------------------------------------------------

ARGMAX_CASES = [(10, 1), (10, 2), (10, 5), (10, 10), (4, 4), (1, 1), (6, 3)]


@pytest.mark.parametrize("stalls", STALLS, ids=STALL_IDS)
@pytest.mark.parametrize("classes,lanes", ARGMAX_CASES)
def test_argmax_data(classes, lanes, stalls):
    fmt = ir.ActFormat(5, True, 3)
    rng = np.random.default_rng(classes * 10 + lanes)
    logits = rng.integers(-3, 3, (12, classes), endpoint=True)  # narrow range: many ties
    logits[0], logits[1] = fmt.lo, fmt.hi  # all tied: class 0
    logits[2, -1] = fmt.hi  # the last class wins
    logits[3, :] = fmt.lo
    logits[3, lanes - 1:] = 3  # a tie across beats goes to the earlier beat
    out, _ = simulate_stream(ArgMax(fmt, classes, lanes),
                             [pack_lanes(b, 5) for b in logits.reshape(-1, lanes)],
                             len(logits), seed=classes + lanes, valid_gap=stalls[0],
                             ready_stall=stalls[1])
    assert None not in out
    cls_bits = max(1, (classes - 1).bit_length())
    cls = np.array([w & ((1 << cls_bits) - 1) for w in out])
    back = np.array([unpack_lanes(w >> cls_bits, 5, classes, True) for w in out])
    np.testing.assert_array_equal(back, logits)
    np.testing.assert_array_equal(cls, np.argmax(logits, axis=1))


@pytest.mark.parametrize("stalls", TIMING_STALLS, ids=TIMING_IDS)
@pytest.mark.parametrize("classes,lanes", [(10, 2), (4, 4), (6, 1)])
def test_argmax_timing(classes, lanes, stalls):
    check_timing(ArgMax(FMT, classes, lanes), ArgMaxTiming(classes // lanes), in_beats=[150],
                 cycles=160, seed=classes, valid_gap=stalls[0], ready_stall=stalls[1])


# -- Verilog of the degenerate sizes -----------------------------------------------------------

DEGENERATE = {
    "width_1to1": lambda: StreamWidth(FMT, 1, 1),
    "width_1to2": lambda: StreamWidth(FMT, 1, 2),
    "width_2to1": lambda: StreamWidth(FMT, 2, 1),
    "fork_1": lambda: Fork(FMT, 1, 1),
    "max_window_1": lambda: MaxReduce(1, 1, FMT),
    "max_window_2": lambda: MaxReduce(1, 2, FMT),
    "avg_window_2": lambda: AvgReduce(1, 2, FMT, FMT, avg_requant(2, False, FMT)),
    "argmax_1_class": lambda: ArgMax(FMT, 1, 1),
    "argmax_2_beats": lambda: ArgMax(FMT, 2, 1),
    "add_1_lane": lambda: AddJoin(add_layer(0, channels=1), 1),
}


@pytest.mark.parametrize("name", DEGENERATE)
def test_degenerate_sizes_have_no_empty_range(name):
    assert "[-1:0]" not in verilog.convert(DEGENERATE[name](), name="top")


def test_argmax_rejects_lanes_not_dividing_classes():
    with pytest.raises(ValueError, match=r"^Argmax lanes must divide the 10 classes, not 3$"):
        ArgMax(FMT, 10, 3)


def test_argmax_defaults_to_one_beat():
    assert ArgMax(FMT, 7).lanes == 7
