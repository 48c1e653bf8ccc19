# amaranth: UnusedElaboratable=no
"""No accumulator overflow by construction (``docs/arithmetic.md``, "Accumulator width").

MVUs whose weights sit at the extremes of their width, driven with inputs at the extremes of
their format, produce exactly the golden result; and :func:`hwquant.ir.accumulator_bits` is
minimal: the extreme results driven here need exactly that many bits.
"""

import itertools
import os
import sys

import numpy as np
import pytest

from hwquant import golden, ir
from hwquant.hw.mvu import MatrixVectorUnit
from hwquant.layout import pack_lanes, unpack_lanes

sys.path.insert(0, os.path.dirname(__file__))
from streamsim import simulate_stream

OC, FAN_IN = 4, 6


def weight_pattern(kind, wbits):
    wlo, whi = -(1 << (wbits - 1)), (1 << (wbits - 1)) - 1
    if kind == "all_max":
        return np.full((OC, FAN_IN), whi)
    if kind == "all_min":
        return np.full((OC, FAN_IN), wlo)
    if kind == "alternating":
        i, j = np.indices((OC, FAN_IN))
        return np.where((i + j) % 2, wlo, whi)
    if kind == "rows":  # one row of each kind, and one of zeros
        return np.stack([np.full(FAN_IN, whi), np.full(FAN_IN, wlo),
                         np.where(np.arange(FAN_IN) % 2, whi, wlo), np.zeros(FAN_IN)])
    raise AssertionError(kind)


def extreme_inputs(w, fmt):
    """All lo, all hi, both alternations, and per output row the two vectors reaching that
    row's extremes (each input at the end its weight favours)."""
    lo, hi = fmt.lo, fmt.hi
    alt = np.arange(FAN_IN) % 2
    vecs = [np.full(FAN_IN, lo), np.full(FAN_IN, hi), np.where(alt, lo, hi),
            np.where(alt, hi, lo)]
    for row in w:
        vecs += [np.where(row > 0, hi, lo), np.where(row > 0, lo, hi)]
    return np.array(vecs, dtype=np.int64)


def bias_for(kind, w, fmt):
    lo, hi = ir.matrix_range(w, np.zeros(OC, dtype=np.int64), fmt)
    if kind == "zero":
        return np.zeros(OC, dtype=np.int64)
    if kind == "push_up":  # ACC + B reaches beyond the largest ACC
        return np.maximum(hi, 1) + 3
    if kind == "push_down":
        return np.minimum(lo, -1) - 3
    raise AssertionError(kind)


FORMATS = {
    "u8": ir.ActFormat(8, False, 0),
    "s8": ir.ActFormat(8, True, 0),
    "s4": ir.ActFormat(4, True, 0),
    "s1": ir.ActFormat(1, True, 0),  # values -1 and 0
    "u1": ir.ActFormat(1, False, 0),
}
FOLDS = {"unrolled": (OC, FAN_IN), "serial": (1, 1), "both": (2, 3), "simd": (1, 2)}
WEIGHT_BITS = (1, 2, 4, 8)

# Every pattern with every input format; widths, folds and biases rotate through the cases.
CASES = [
    (pattern, fmt, WEIGHT_BITS[i % 4], list(FOLDS)[(i // 2) % 4],
     ("zero", "push_up", "push_down")[i % 3])
    for i, (pattern, fmt) in enumerate(itertools.product(
        ("all_max", "all_min", "alternating", "rows"), FORMATS))
]


def logits_layer(w, wbits, fmt, fold, bias):
    layer = ir.Linear("fc", ("input",), fmt, w, wbits, 0, bias, None, ir.ActFormat(2, True, 0),
                      fold=ir.Fold(*FOLDS[fold]))
    # The tightest output format: exactly the accumulator width.
    return ir.Linear("fc", ("input",), fmt, w, wbits, 0, bias, None,
                     ir.ActFormat(ir.accumulator_bits(layer), True, 0), fold=layer.fold)


def simulate(layer, x, seed):
    """The MVU on folded streams: ``SIMD``-lane beats in, ``PE``-lane beats out."""
    fmt, pe, simd = layer.out_format, layer.fold.pe, layer.fold.simd
    words = [pack_lanes(beat, layer.in_format.bits) for v in x for beat in np.reshape(v, (-1, simd))]
    out, _ = simulate_stream(MatrixVectorUnit(layer, layer.weight_matrix()), words,
                             len(x) * OC // pe, seed=seed, valid_gap=0.3, ready_stall=0.3)
    assert None not in out
    beats = [unpack_lanes(word, fmt.bits, pe, fmt.signed) for word in out]
    return np.array(beats).reshape(len(x), OC)


@pytest.mark.parametrize("pattern, fmt, wbits, fold, bias", CASES,
                         ids=["-".join(map(str, c)) for c in CASES])
def test_extreme_logits_are_exact_and_width_is_minimal(pattern, fmt, wbits, fold, bias):
    in_fmt = FORMATS[fmt]
    w = weight_pattern(pattern, wbits)
    layer = logits_layer(w, wbits, in_fmt, fold, bias_for(bias, w, in_fmt))
    x = extreme_inputs(w, in_fmt)
    expected = golden.run_layer(layer, [x])
    np.testing.assert_array_equal(simulate(layer, x, CASES.index(
        (pattern, fmt, wbits, fold, bias))), expected)
    # Minimal: the accumulator values these inputs produce (ACC and ACC + B) need exactly
    # accumulator_bits, i.e. the worst case of ir.accumulator_range is attained.
    acc = x @ w.T
    values = np.concatenate([acc.ravel(), (acc + layer.bias).ravel()])
    assert ir.signed_bits_for(int(values.min()), int(values.max())) == ir.accumulator_bits(layer)


@pytest.mark.parametrize("fold", FOLDS)
def test_extreme_requantized_outputs(fold):
    """Large per-channel multipliers on extreme accumulators: the widened product saturates
    exactly like the golden model, never wraps."""
    in_fmt, wbits = FORMATS["s8"], 8
    w = weight_pattern("rows", wbits)
    bias = bias_for("push_up", w, in_fmt)
    out_fmt = ir.ActFormat(6, True, 0)
    requant = ir.Requant([1000, -977, 3, 65535], 9, out_fmt.lo, out_fmt.hi)
    layer = ir.Linear("fc", ("input",), in_fmt, w, wbits, 0, bias, requant, out_fmt,
                      fold=ir.Fold(*FOLDS[fold]))
    x = extreme_inputs(w, in_fmt)
    got = simulate(layer, x, 99)
    expected = golden.run_layer(layer, [x])
    np.testing.assert_array_equal(got, expected)
    assert {out_fmt.lo, out_fmt.hi} <= set(expected.ravel().tolist())


def test_accumulator_bits_examples():
    """Hand-computed widths."""
    def bits(w, fmt, bias=None):
        w = np.asarray(w)
        bias = np.zeros(len(w), dtype=np.int64) if bias is None else np.asarray(bias)
        layer = ir.Linear("fc", ("input",), fmt, w, 8, 0, bias, None, ir.ActFormat(48, True, 0))
        return ir.accumulator_bits(layer)

    u8 = FORMATS["u8"]
    assert bits([[127] * 6], u8) == 19  # 6 * 127 * 255 = 194310 < 2**18
    assert bits([[-128] * 6], u8) == 19  # -195840 >= -2**18
    assert bits([[127] * 6], u8, [67833]) == 19  # ACC + B = 262144 - 1
    assert bits([[127] * 6], u8, [67834]) == 20  # ACC + B = 262144
    assert bits([[1]], u8) == 9  # 0..255
    assert bits([[-1]], u8) == 9  # -255..0
    assert bits([[1]], u8, [1]) == 10  # ACC + B reaches 256
    assert bits([[-128]], FORMATS["s8"]) == 16  # (-128) * (-128) = 16384 needs 16 bits
    assert bits([[0, 0]], u8) == 1
    assert bits([[-1]], FORMATS["s1"]) == 2  # (-1) * (-1) = 1
