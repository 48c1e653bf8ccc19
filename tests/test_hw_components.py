# amaranth: UnusedElaboratable=no
"""Streaming components in the Amaranth Python simulator against the golden model, with random
valid gaps and ready stalls (Amaranth-style equivalence: same inputs, every output compared).

Shapes are small and beats few: the Python simulator is slow, and breadth matters more here
than size (the cocotb tests cover whole networks on the emitted Verilog).
"""

import os
import sys

import numpy as np
import pytest

from hwquant import golden, ir
from hwquant.hw.fifo import StreamFifo
from hwquant.hw.mvu import MatrixVectorUnit, accumulator_bits
from hwquant.hw.output import ArgMax
from hwquant.hw.pool import AvgReduce, MaxReduce
from hwquant.hw.window import SlidingWindow
from hwquant.layout import conv_weight_matrix, pack_lanes, tensor_to_beats, unpack_lanes

sys.path.insert(0, os.path.dirname(__file__))
from streamsim import simulate_stream

STALLS = [(0.0, 0.0), (0.4, 0.4)]
STALL_IDS = ["no_stalls", "stalls"]


def run(dut, in_beats, in_bits, n_out, out_bits, out_lanes, out_signed, *, seed, stalls):
    """Simulate ``dut`` on integer beats; return the output beats as an int array, checking
    that exactly ``n_out`` beats came out."""
    words = [pack_lanes(beat, in_bits) for beat in in_beats]
    out, cycles = simulate_stream(dut, words, n_out, seed=seed, valid_gap=stalls[0],
                                  ready_stall=stalls[1])
    assert None not in out, f"{out.count(None)} extra beat(s) after the expected {n_out}"
    assert len(out) == n_out
    beats = np.array([unpack_lanes(w, out_bits, out_lanes, out_signed) for w in out])
    return beats.reshape(n_out, out_lanes), cycles


def window_lanes(x, kernel, stride, padding, pad_value=0):
    """Golden windows of ``x`` (N, C, H, W) as ``(N*OH*OW, KH*KW*C)`` in window-lane order."""
    cols = golden.im2col(x, kernel, stride, padding, pad_value)  # (N, OH, OW, C, KH, KW)
    return cols.transpose(0, 1, 2, 4, 5, 3).reshape(-1, kernel[0] * kernel[1] * x.shape[1])


def map_beats(x):
    """Pixel beats of a batch of maps, map after map."""
    return np.concatenate([tensor_to_beats(img) for img in x])


def random_map(rng, fmt, shape, n):
    x = rng.integers(fmt.lo, fmt.hi, (n, *shape), endpoint=True)
    x.flat[0], x.flat[-1] = fmt.lo, fmt.hi
    return x


# -- SlidingWindow -----------------------------------------------------------------------------

# (C, H, W), kernel, stride, padding, signed, pad value ("lo" for max pooling), maps
WINDOW_CASES = [
    ((2, 5, 6), (3, 3), (1, 1), (1, 1), True, 0, 2),
    ((1, 6, 5), (1, 3), (1, 1), (0, 1), False, 0, 2),  # 1xK: no line buffer
    ((3, 4, 4), (2, 3), (2, 1), (0, 2), True, "lo", 2),  # non-square, padding > K/2
    ((1, 7, 7), (3, 2), (3, 3), (2, 0), False, 0, 3),  # stride 3 skips pixels
    ((2, 4, 5), (4, 1), (1, 2), (1, 0), True, 0, 2),  # Kx1
    ((1, 5, 5), (1, 1), (2, 2), (2, 1), True, 0, 2),  # windows made of padding alone
    ((2, 3, 3), (3, 3), (1, 1), (0, 0), False, 0, 3),  # one window per map (flatten)
    ((1, 1, 6), (1, 2), (1, 2), (0, 0), True, "lo", 2),  # a single row
    ((1, 6, 1), (2, 1), (1, 1), (1, 0), False, 7, 2),  # a single column, odd pad value
]


@pytest.mark.parametrize("stalls", STALLS, ids=STALL_IDS)
@pytest.mark.parametrize("case", range(len(WINDOW_CASES)))
def test_sliding_window(case, stalls):
    shape, kernel, stride, padding, is_signed, pad, maps = WINDOW_CASES[case]
    rng = np.random.default_rng(case)
    fmt = ir.ActFormat(int(rng.integers(2, 7)), is_signed, 0)
    pad = fmt.lo if pad == "lo" else pad
    x = random_map(rng, fmt, shape, maps)
    expected = window_lanes(x, kernel, stride, padding, pad)
    dut = SlidingWindow(shape, kernel, stride, padding, fmt, pad_value=pad)
    assert dut.out_size == golden.im2col(x[:1], kernel, stride, padding).shape[1:3]
    got, _ = run(dut, map_beats(x), fmt.bits, len(expected), fmt.bits, expected.shape[1],
                 is_signed, seed=case, stalls=stalls)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("seed", range(10))
def test_sliding_window_random(seed):
    rng = np.random.default_rng(100 + seed)
    c, h, w = (int(v) for v in rng.integers((1, 2, 2), (4, 7, 7)))
    kernel = (int(rng.integers(1, min(h, 3) + 1)), int(rng.integers(1, min(w, 3) + 1)))
    stride = tuple(int(v) for v in rng.integers(1, 4, 2))
    padding = tuple(int(v) for v in rng.integers(0, 3, 2))
    fmt = ir.ActFormat(int(rng.integers(1, 6)), bool(seed % 2), 0)
    pad = int(rng.integers(fmt.lo, fmt.hi, endpoint=True))
    x = random_map(rng, fmt, (c, h, w), 2)
    expected = window_lanes(x, kernel, stride, padding, pad)
    dut = SlidingWindow((c, h, w), kernel, stride, padding, fmt, pad_value=pad)
    got, _ = run(dut, map_beats(x), fmt.bits, len(expected), fmt.bits, expected.shape[1],
                 fmt.signed, seed=seed, stalls=STALLS[seed % 2])
    np.testing.assert_array_equal(got, expected)


def test_sliding_window_throughput():
    """One padded position per cycle when never stalled."""
    fmt = ir.ActFormat(4, False, 0)
    shape, maps = (1, 5, 4), 3
    x = random_map(np.random.default_rng(0), fmt, shape, maps)
    dut = SlidingWindow(shape, (3, 3), (1, 1), (1, 1), fmt)
    _, cycles = run(dut, map_beats(x), 4, maps * 20, 4, 9, False, seed=0, stalls=(0, 0))
    assert maps * dut.cycles_per_map <= cycles <= maps * dut.cycles_per_map + 2


def test_sliding_window_rejects_bad_geometry():
    fmt = ir.ActFormat(4, False, 0)
    with pytest.raises(ValueError, match=r"^Sliding window geometry must be positive, not "
                                         r"shape \(1, 4, 4\), kernel \(0, 1\), stride \(1, 1\), "
                                         r"padding \(0, 0\)$"):
        SlidingWindow((1, 4, 4), (0, 1), (1, 1), (0, 0), fmt)
    with pytest.raises(ValueError, match=r"^Kernel \(5, 1\) does not fit input \(4, 4\) with "
                                         r"padding \(0, 0\)$"):
        SlidingWindow((1, 4, 4), (5, 1), (1, 1), (0, 0), fmt)
    with pytest.raises(ValueError, match=r"^Pad value -1 is outside the lane range \[0, 15\]$"):
        SlidingWindow((1, 4, 4), (3, 3), (1, 1), (1, 1), fmt, pad_value=-1)


# -- MatrixVectorUnit --------------------------------------------------------------------------

def proper_divisor(rng, n):
    ds = [d for d in range(2, n) if n % d == 0]
    return int(rng.choice(ds)) if ds else n


FOLDS = {
    "unrolled": lambda rng, oc, f: (oc, f),
    "pe_only": lambda rng, oc, f: (proper_divisor(rng, oc), 1),
    "simd_only": lambda rng, oc, f: (1, proper_divisor(rng, f)),
    "both": lambda rng, oc, f: (proper_divisor(rng, oc), proper_divisor(rng, f)),
    "serial": lambda rng, oc, f: (1, 1),
    "full_pe": lambda rng, oc, f: (oc, proper_divisor(rng, f)),
    "full_simd": lambda rng, oc, f: (proper_divisor(rng, oc), f),
}


def random_linear(rng, fold_kind, *, logits=False):
    oc, fan_in = int(rng.choice([4, 6])), int(rng.choice([6, 8, 12]))
    in_fmt = ir.ActFormat(int(rng.integers(2, 7)), bool(rng.integers(2)), 2)
    wbits = int(rng.integers(2, 6))
    w = rng.integers(-(1 << (wbits - 1)), 1 << (wbits - 1), (oc, fan_in))
    w[0, 0] = -(1 << (wbits - 1))
    bias = rng.integers(-40, 40, oc)
    if logits:
        lo, hi = ir.matrix_range(w, bias, in_fmt)
        out_fmt = ir.ActFormat(ir.signed_bits_for(int(lo.min()), int(hi.max())), True, 3)
        requant = None
    else:
        relu = bool(rng.integers(2))
        out_fmt = ir.ActFormat(int(rng.integers(3, 7)), not relu or bool(rng.integers(2)), 1)
        mult = rng.integers(1, 9, oc)
        mult[-1] = int(rng.choice([-3, 1]))
        requant = ir.Requant(mult, int(rng.integers(2, 7)), 0 if relu else out_fmt.lo,
                             out_fmt.hi)
    pe, simd = FOLDS[fold_kind](rng, oc, fan_in)
    return ir.Linear("fc", ("input",), in_fmt, w, wbits, 1, bias, requant, out_fmt,
                     fold=ir.Fold(pe, simd))


def check_mvu(layer, x, *, seed, stalls, weights=None, expected=None):
    wm = layer.weight_matrix() if weights is None else weights
    expected = golden.run_layer(layer, [x]) if expected is None else expected
    out_fmt = layer.out_format
    got, cycles = run(MatrixVectorUnit(layer, wm), x, layer.in_format.bits, len(x),
                      out_fmt.bits, layer.out_channels, out_fmt.signed, seed=seed,
                      stalls=stalls)
    np.testing.assert_array_equal(got, expected)
    return cycles


@pytest.mark.parametrize("stalls", STALLS, ids=STALL_IDS)
@pytest.mark.parametrize("fold_kind", FOLDS)
def test_mvu(fold_kind, stalls):
    seed = list(FOLDS).index(fold_kind)
    rng = np.random.default_rng(seed)
    layer = random_linear(rng, fold_kind)
    x = random_map(rng, layer.in_format, (layer.fan_in,), 4)
    check_mvu(layer, x, seed=seed, stalls=stalls)


@pytest.mark.parametrize("seed", range(12))
def test_mvu_random(seed):
    """Any shape (prime sizes, a single channel or input), 1-bit formats, all-zero weights,
    negative multipliers and left shifts, clamps inside the format, any fold."""
    rng = np.random.default_rng(200 + seed)
    oc, fan_in = int(rng.integers(1, 9)), int(rng.integers(1, 13))
    in_fmt = ir.ActFormat(int(rng.integers(1, 9)), bool(rng.integers(2)), 0)
    wbits = int(rng.integers(1, 9))
    w = rng.integers(-(1 << (wbits - 1)), 1 << (wbits - 1), (oc, fan_in))
    if seed % 6 == 5:
        w[:] = 0
    bias = rng.integers(-100, 100, oc)
    if seed % 3 == 0:
        lo, hi = ir.matrix_range(w, bias, in_fmt)
        out_fmt = ir.ActFormat(ir.signed_bits_for(int(lo.min()), int(hi.max())), True, 0)
        requant = None
    else:
        out_fmt = ir.ActFormat(int(rng.integers(1, 9)), bool(rng.integers(2)), 0)
        requant = ir.Requant(rng.integers(-20, 20, oc), int(rng.integers(-3, 10)),
                             int(rng.integers(out_fmt.lo, out_fmt.hi, endpoint=True)),
                             out_fmt.hi)
    pe = int(rng.choice([d for d in range(1, oc + 1) if oc % d == 0]))
    simd = int(rng.choice([d for d in range(1, fan_in + 1) if fan_in % d == 0]))
    layer = ir.Linear("fc", ("input",), in_fmt, w, wbits, 0, bias, requant, out_fmt,
                      fold=ir.Fold(pe, simd))
    x = random_map(rng, in_fmt, (fan_in,), int(rng.integers(1, 5)))
    check_mvu(layer, x, seed=seed, stalls=STALLS[seed % 2])


@pytest.mark.parametrize("fold_kind", ["unrolled", "both", "serial"])
def test_mvu_logits(fold_kind):
    """requant None: the raw ACC + B leaves the unit, as wide as the accumulator needs."""
    seed = 10 + list(FOLDS).index(fold_kind)
    rng = np.random.default_rng(seed)
    layer = random_linear(rng, fold_kind, logits=True)
    x = random_map(rng, layer.in_format, (layer.fan_in,), 4)
    check_mvu(layer, x, seed=seed, stalls=STALLS[1])


@pytest.mark.parametrize("fold", [(4, 18), (2, 3), (1, 9)])
def test_mvu_conv_in_window_lane_order(fold):
    """A conv layer's MVU fed the sliding-window lanes with layout.conv_weight_matrix weights
    computes the golden convolution."""
    rng = np.random.default_rng(sum(fold))
    in_fmt = ir.ActFormat(4, True, 0)
    out_fmt = ir.ActFormat(5, False, 0)
    w = rng.integers(-4, 4, (4, 2, 3, 3))
    layer = ir.Conv2d("conv", ("input",), in_fmt, w, 3, 0, rng.integers(-9, 9, 4),
                      ir.Requant([1, 2, 3, 1], 3, 0, out_fmt.hi), out_fmt,
                      fold=ir.Fold(*fold), in_shape=(2, 3, 4), padding=1, stride=(2, 1))
    x = random_map(rng, in_fmt, layer.in_shape, 1)
    windows = window_lanes(x, layer.kernel, layer.stride, layer.padding)
    expected = map_beats(golden.run_layer(layer, [x]))
    check_mvu(layer, windows, seed=1, stalls=STALLS[1], weights=conv_weight_matrix(w),
              expected=expected)


@pytest.mark.parametrize("fold_kind", ["unrolled", "pe_only", "both", "serial"])
def test_mvu_cycles(fold_kind):
    """Without stalls, N vectors take N * NF * SF cycles plus a small constant latency."""
    rng = np.random.default_rng(20 + list(FOLDS).index(fold_kind))
    layer = random_linear(rng, fold_kind)
    f = layer.fold
    steps = (layer.out_channels // f.pe) * (layer.fan_in // f.simd)
    x = random_map(rng, layer.in_format, (layer.fan_in,), 6)
    latencies = set()
    for n in (1, 6):
        dut = MatrixVectorUnit(layer, layer.weight_matrix())
        assert dut.fold_steps == steps
        _, cycles = run(dut, x[:n], layer.in_format.bits, n, layer.out_format.bits,
                        layer.out_channels, layer.out_format.signed, seed=0, stalls=(0, 0))
        latencies.add(cycles - n * steps)
    assert len(latencies) == 1, f"throughput is not one vector per {steps} cycles: {latencies}"
    assert 0 < latencies.pop() <= 6


def test_mvu_rejects_bad_weights():
    layer = random_linear(np.random.default_rng(0), "serial", logits=True)
    with pytest.raises(ValueError, match=rf"^Layer 'fc': weight matrix must be "
                                         rf"\({layer.out_channels}, {layer.fan_in}\), not "
                                         rf"\(3, 3\)$"):
        MatrixVectorUnit(layer, np.zeros((3, 3)))
    bits = accumulator_bits(layer)
    narrow = ir.Linear("fc", ("input",), layer.in_format, layer.weight, layer.weight_bits, 0,
                       layer.bias, None, ir.ActFormat(bits - 1, True, 0))
    with pytest.raises(ValueError, match=rf"^Layer 'fc': logits need {bits} bits, but the "
                                         rf"output format has {bits - 1}$"):
        MatrixVectorUnit(narrow, narrow.weight)


# -- pooling reducers --------------------------------------------------------------------------

# (C, H, W), kernel, stride, padding, signed
POOL_CASES = [
    ((2, 4, 4), (2, 2), (2, 2), (0, 0), False),
    ((3, 5, 4), (3, 3), (2, 1), (1, 1), True),
    ((1, 4, 6), (1, 3), (1, 2), (0, 1), True),
    ((2, 3, 5), (3, 2), (1, 1), (1, 0), False),
]


def pool_inputs(case, fmt):
    shape = POOL_CASES[case][0]
    rng = np.random.default_rng(case)
    # A narrow value range so that ties are frequent.
    x = rng.integers(fmt.lo, min(fmt.lo + 3, fmt.hi), (2, *shape), endpoint=True)
    x[0, :, 0, 0], x[1, :, -1, -1] = fmt.hi, fmt.hi
    return x


@pytest.mark.parametrize("stalls", STALLS, ids=STALL_IDS)
@pytest.mark.parametrize("case", range(len(POOL_CASES)))
def test_max_reduce(case, stalls):
    shape, kernel, stride, padding, is_signed = POOL_CASES[case]
    fmt = ir.ActFormat(5, is_signed, 0)
    layer = ir.MaxPool2d("mp", ("input",), shape, kernel, stride, padding, fmt)
    x = pool_inputs(case, fmt)
    windows = window_lanes(x, kernel, stride, padding, fmt.lo)
    expected = map_beats(golden.run_layer(layer, [x]))
    got, _ = run(MaxReduce(shape[0], kernel[0] * kernel[1], fmt), windows, fmt.bits,
                 len(windows), fmt.bits, shape[0], is_signed, seed=case, stalls=stalls)
    np.testing.assert_array_equal(got, expected)


def avg_requant(window, relu, fmt):
    if window & (window - 1) == 0:
        return ir.Requant([1], window.bit_length() - 1, 0 if relu else fmt.lo, fmt.hi)
    shift = 15 + (window - 1).bit_length()
    return ir.Requant([(2 ** (shift + 1) + window) // (2 * window)], shift,
                      0 if relu else fmt.lo, fmt.hi)


@pytest.mark.parametrize("stalls", STALLS, ids=STALL_IDS)
@pytest.mark.parametrize("case", range(len(POOL_CASES)))
def test_avg_reduce(case, stalls):
    shape, kernel, stride, padding, is_signed = POOL_CASES[case]
    fmt = ir.ActFormat(5, is_signed, 2)
    window = kernel[0] * kernel[1]
    layer = ir.AvgPool2d("ap", ("input",), shape, kernel, stride, padding, fmt, out_format=fmt,
                         requant=avg_requant(window, case % 2 == 1, fmt))
    rng = np.random.default_rng(case)
    x = random_map(rng, fmt, shape, 2)
    windows = window_lanes(x, kernel, stride, padding, 0)
    expected = map_beats(golden.run_layer(layer, [x]))
    dut = AvgReduce(shape[0], window, fmt, fmt, layer.requant)
    got, _ = run(dut, windows, fmt.bits, len(windows), fmt.bits, shape[0], is_signed,
                 seed=case, stalls=stalls)
    np.testing.assert_array_equal(got, expected)


def test_avg_reduce_covers_both_multiplier_kinds():
    mults = {int(avg_requant(k[0] * k[1], False, ir.ActFormat(5, True, 0)).multiplier[0])
             for _, k, _, _, _ in POOL_CASES}
    assert 1 in mults and len(mults) > 1


def test_avg_reduce_into_another_format():
    """Unsigned 4-bit windows averaged into a wider signed output format."""
    in_fmt, out_fmt = ir.ActFormat(4, False, 0), ir.ActFormat(7, True, 3)
    rq = ir.Requant([2731], 13, -64, 63)  # about 8/3: the mean of 3, three fraction bits more
    layer = ir.AvgPool2d("ap", ("input",), (2, 3, 3), (1, 3), 1, 0, in_fmt, out_format=out_fmt,
                         requant=rq)
    x = random_map(np.random.default_rng(5), in_fmt, layer.in_shape, 2)
    windows = window_lanes(x, (1, 3), (1, 1), (0, 0))
    expected = map_beats(golden.run_layer(layer, [x]))
    got, _ = run(AvgReduce(2, 3, in_fmt, out_fmt, rq), windows, 4, len(windows), 7, 2, True,
                 seed=5, stalls=STALLS[1])
    np.testing.assert_array_equal(got, expected)


# -- ArgMax and FIFO ---------------------------------------------------------------------------

@pytest.mark.parametrize("stalls", STALLS, ids=STALL_IDS)
@pytest.mark.parametrize("classes, bits, is_signed", [(2, 3, True), (5, 4, True), (10, 6, True),
                                                       (3, 2, False)])
def test_argmax(classes, bits, is_signed, stalls):
    fmt = ir.ActFormat(bits, is_signed, 0)
    rng = np.random.default_rng(classes)
    # Values from a narrow range: many ties, which go to the lowest index.
    logits = rng.integers(fmt.lo, min(fmt.lo + 2, fmt.hi), (24, classes), endpoint=True)
    logits[0], logits[1], logits[2] = fmt.lo, fmt.hi, fmt.lo
    logits[2, -1] = fmt.hi
    cls_bits = max(1, (classes - 1).bit_length())
    words = [pack_lanes(row, bits) for row in logits]
    out, _ = simulate_stream(ArgMax(fmt, classes), words, len(words), seed=classes,
                             valid_gap=stalls[0], ready_stall=stalls[1])
    assert None not in out
    cls = np.array([w & ((1 << cls_bits) - 1) for w in out])
    back = np.array([unpack_lanes(w >> cls_bits, bits, classes, is_signed) for w in out])
    np.testing.assert_array_equal(back, logits)
    np.testing.assert_array_equal(cls, np.argmax(logits, axis=1))
    assert cls[0] == 0 and cls[2] == classes - 1


@pytest.mark.parametrize("stalls", STALLS, ids=STALL_IDS)
@pytest.mark.parametrize("depth", [1, 2, 5])
def test_stream_fifo(depth, stalls):
    fmt = ir.ActFormat(3, True, 0)
    rng = np.random.default_rng(depth)
    beats = rng.integers(fmt.lo, fmt.hi, (30, 4), endpoint=True)
    got, _ = run(StreamFifo(fmt, 4, depth), beats, 3, len(beats), 3, 4, True, seed=depth,
                 stalls=stalls)
    np.testing.assert_array_equal(got, beats)


def test_stream_fifo_rejects_depth_zero():
    with pytest.raises(ValueError, match=r"^FIFO depth must be a positive integer, not 0$"):
        StreamFifo(ir.ActFormat(3, True, 0), 4, 0)
