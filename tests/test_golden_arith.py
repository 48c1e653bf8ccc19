"""Exhaustive tests of the integer arithmetic primitives (``docs/arithmetic.md``).

First the golden model (:mod:`hwquant.golden.arith`) against exact rational arithmetic
(:class:`fractions.Fraction`), then the hardware primitives (:mod:`hwquant.hw.arith`) against
the golden model in the Amaranth simulator, every input value of a small width. Together they
tie the two implementations at the primitive level.
"""

import math
from fractions import Fraction

import numpy as np
import pytest
from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.sim import Simulator

from hwquant.golden import arith as g
from hwquant.hw import arith as hw
from hwquant.quant.grid import frac_for_range, quantize_to_grid

HALF = Fraction(1, 2)


def ref_rhu(a, s):
    """``floor(a / 2**s + 1/2)`` exactly."""
    return math.floor(Fraction(a) / Fraction(2) ** s + HALF)


def ref_sat(v, lo, hi):
    return min(max(v, lo), hi)


# -- golden model against exact arithmetic --------------------------------------------------

@pytest.mark.parametrize("s", range(-3, 10))
def test_rshift_rhu_exhaustive(s):
    a = np.arange(-512, 512)
    expected = np.array([ref_rhu(int(v), s) for v in a], dtype=np.int64)
    np.testing.assert_array_equal(g.rshift_rhu(a, s), expected)


def test_rshift_rhu_rounds_half_up_not_to_even():
    # The example of docs/arithmetic.md.
    np.testing.assert_array_equal(g.rshift_rhu([-6, -2, 2, 6], 2), [-1, 0, 1, 2])
    np.testing.assert_array_equal(g.rshift_rhu([-3, -1, 1, 3], 1), [-1, 0, 1, 2])


def test_rshift_rhu_scalar_and_dtype():
    assert int(g.rshift_rhu(5, 1)) == 3
    assert g.rshift_rhu(np.array([5], dtype=np.int8), 1).dtype == np.int64


@pytest.mark.parametrize("s", [0, 1, 2, 7, 16, 20])
def test_rshift_rhu_at_48_bits(s):
    # Widest integers of the IR (ir.MAX_BITS): int64 must stay exact.
    a = [-(1 << 47), -(1 << 47) + 1, -(1 << 46) - 1, (1 << 46) + 1, (1 << 47) - 2, (1 << 47) - 1]
    expected = np.array([ref_rhu(v, s) for v in a], dtype=np.int64)
    np.testing.assert_array_equal(g.rshift_rhu(a, s), expected)


def test_sat_exhaustive():
    v = np.arange(-64, 64)
    for lo in range(-10, 11):
        for hi in range(lo, 11):
            expected = np.array([ref_sat(int(x), lo, hi) for x in v], dtype=np.int64)
            np.testing.assert_array_equal(g.sat(v, lo, hi), expected)


REQUANT_CHANNELS = {"bias": [3, -7, 0, 100], "multiplier": [1, 3, -2, 5]}


@pytest.mark.parametrize("shift", range(-2, 8))
@pytest.mark.parametrize("lo, hi", [(-8, 7), (0, 15), (0, 255), (-128, 127)])
def test_requantize_per_channel_exhaustive(shift, lo, hi):
    bias, mult = REQUANT_CHANNELS["bias"], REQUANT_CHANNELS["multiplier"]
    acc_values = np.arange(-128, 128)
    # (N, C, H, W) with the same values in every channel and pixel.
    acc = np.broadcast_to(acc_values[:, None, None, None], (256, 4, 2, 3))
    got = g.requantize(acc, bias, mult, shift, lo, hi)
    assert got.shape == acc.shape
    for c in range(4):
        expected = [ref_sat(ref_rhu((int(a) + bias[c]) * mult[c], shift), lo, hi)
                    for a in acc_values]
        for h in range(2):
            for w in range(3):
                np.testing.assert_array_equal(got[:, c, h, w], expected)
    # (N, C) vectors and a channel axis at the end agree with the 4-D layout.
    np.testing.assert_array_equal(g.requantize(acc[:, :, 0, 0], bias, mult, shift, lo, hi),
                                  got[:, :, 0, 0])
    np.testing.assert_array_equal(
        g.requantize(acc[:, :, 0, 0].T, bias, mult, shift, lo, hi, channel_axis=0),
        got[:, :, 0, 0].T)


@pytest.mark.parametrize("window", range(1, 13))
@pytest.mark.parametrize("lo, hi", [(0, 255), (-128, 127), (0, 100)])
def test_avg_requantize_exhaustive(window, lo, hi):
    # The multiplier/shift rule of docs/arithmetic.md for a window of n positions.
    if window & (window - 1) == 0:
        mult, shift = 1, window.bit_length() - 1
    else:
        shift = 15 + math.ceil(math.log2(window))
        mult = math.floor(Fraction(2 ** shift, window) + HALF)
    sums = np.arange(window * -128, window * 255 + 1)
    expected = np.array([ref_sat(ref_rhu(int(s) * mult, shift), lo, hi) for s in sums])
    np.testing.assert_array_equal(g.avg_requantize(sums, mult, shift, lo, hi), expected)
    if mult == 1:  # a power-of-two window is the exactly rounded mean
        mean = np.array([ref_sat(math.floor(Fraction(int(s), window) + HALF), lo, hi)
                         for s in sums])
        np.testing.assert_array_equal(g.avg_requantize(sums, mult, shift, lo, hi), mean)


@pytest.mark.parametrize("fa, fb", [(0, 0), (2, 0), (0, 3), (3, 1), (-1, 2), (4, 4)])
@pytest.mark.parametrize("f_out", [-2, 0, 1, 4])
@pytest.mark.parametrize("lo, hi", [(-8, 7), (0, 7), (-64, 63)])
def test_add_requantize_exhaustive(fa, fb, f_out, lo, hi):
    a, b = np.meshgrid(np.arange(-16, 16), np.arange(-16, 16), indexing="ij")
    got = g.add_requantize(a, fa, b, fb, f_out, lo, hi)
    for x, y, z in zip(a.ravel().tolist(), b.ravel().tolist(), got.ravel().tolist()):
        real = Fraction(x) / Fraction(2) ** fa + Fraction(y) / Fraction(2) ** fb
        assert z == ref_sat(math.floor(real * Fraction(2) ** f_out + HALF), lo, hi), (x, y)


@pytest.mark.parametrize("frac", [-2, 0, 1, 3])
def test_quantize_to_grid_rounds_half_up(frac):
    # Every multiple of 2**-(frac + 3) in a range, so exact halves of the grid are included.
    k = np.arange(-200, 201)
    x = k * 2.0 ** -(frac + 3)
    expected = [ref_sat(math.floor(Fraction(int(v)) / 8 + HALF), -16, 15) for v in k]
    np.testing.assert_array_equal(quantize_to_grid(x, frac, -16, 15), expected)


@pytest.mark.parametrize("a_max", [0.3, 0.5, 1.0, 1.5, 2.0, 7.9, 127.0, 128.0, 1e-9])
@pytest.mark.parametrize("hi", [1, 7, 127, 255])
def test_frac_for_range_is_largest_fitting(a_max, hi):
    f = frac_for_range(a_max, hi, 24)
    if f < 24:
        assert Fraction(a_max) * Fraction(2) ** f <= hi < Fraction(a_max) * Fraction(2) ** (f + 1)
    else:
        assert Fraction(a_max) * Fraction(2) ** 24 <= hi


# -- hardware primitives against the golden model ------------------------------------------

def _evaluate(x_shape, cases):
    """Evaluate combinational expressions of one input signal for every input value.

    ``cases`` maps a key to ``build(x) -> Value``. Each result is driven onto a signal of the
    expression's own shape (so a too-narrow result cannot hide). Returns the input values and
    ``{key: array of results}``.
    """
    m = Module()
    x = Signal(x_shape)
    outs = {}
    for key, build in cases.items():
        expr = build(x)
        outs[key] = Signal(expr.shape(), name=f"out{len(outs)}")
        m.d.comb += outs[key].eq(expr)
    lo = -(1 << (x_shape.width - 1)) if x_shape.signed else 0
    values = list(range(lo, lo + (1 << x_shape.width)))
    results = {key: [] for key in cases}

    async def testbench(ctx):
        for v in values:
            ctx.set(x, v)
            for key, sig in outs.items():
                results[key].append(ctx.get(sig))

    sim = Simulator(m)
    sim.add_testbench(testbench)
    sim.run()
    return np.array(values), {k: np.array(v, dtype=np.int64) for k, v in results.items()}


SHAPES = [signed(7), unsigned(7), signed(2)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_hw_rshift_rhu_exhaustive(shape):
    shifts = range(-3, 10)
    values, got = _evaluate(shape, {s: (lambda x, s=s: hw.rshift_rhu(x, s)) for s in shifts})
    for s in shifts:
        np.testing.assert_array_equal(got[s], g.rshift_rhu(values, s), err_msg=f"shift {s}")


SAT_BOUNDS = [(-100, 100), (0, 15), (-8, 7), (5, 5), (-64, 63), (-3, -1), (0, 127), (70, 90)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_hw_saturate_exhaustive(shape):
    values, got = _evaluate(shape, {b: (lambda x, b=b: hw.saturate(x, *b)) for b in SAT_BOUNDS})
    for lo, hi in SAT_BOUNDS:
        np.testing.assert_array_equal(got[lo, hi], g.sat(values, lo, hi),
                                      err_msg=f"bounds {lo, hi}")


# (bias, multiplier, shift, lo, hi); multiplier 1 builds no multiplier in hardware.
REQUANT_CASES = [
    (b, mult, shift, lo, hi)
    for b in (0, 5, -17)
    for mult in (1, 3, -2, 37)
    for shift in (-1, 0, 3, 6)
    for lo, hi in ((-8, 7), (0, 15), (0, 255))
]


@pytest.mark.parametrize("shape", SHAPES[:2], ids=str)
def test_hw_requantize_exhaustive(shape):
    def build(case):
        b, mult, shift, lo, hi = case
        hw_mult = 1 if mult == 1 else hw.const_signed(mult)
        return lambda x: hw.requantize(x, hw.const_signed(b), hw_mult, shift, lo, hi)

    values, got = _evaluate(shape, {case: build(case) for case in REQUANT_CASES})
    for case in REQUANT_CASES:
        b, mult, shift, lo, hi = case
        expected = g.requantize(values[:, None], [b], [mult], shift, lo, hi)[:, 0]
        np.testing.assert_array_equal(got[case], expected, err_msg=f"case {case}")


@pytest.mark.parametrize("value", [0, 1, -1, 2, -2, 127, -128, 128, 1 << 40, -(1 << 40) - 1])
def test_hw_const_signed_holds_value(value):
    c = hw.const_signed(value)
    assert c.shape().signed
    assert c.value == value


def test_hw_adder_tree_exhaustive():
    # Three signed(3) lanes and an unsigned(2) lane: every combination, no overflow.
    def build(n):
        return lambda x: hw.adder_tree([x[i * 3:(i + 1) * 3].as_signed() for i in range(n)])

    cases = {n: build(n) for n in (1, 2, 3)}
    cases[0] = lambda x: hw.adder_tree([])
    cases[4] = lambda x: hw.adder_tree([x[i * 3:(i + 1) * 3].as_signed() for i in range(3)]
                                       + [x[9:11]])
    values, got = _evaluate(unsigned(11), cases)
    lanes = [((values >> (3 * i)) & 7) for i in range(3)]
    lanes = [np.where(v >= 4, v - 8, v) for v in lanes]
    np.testing.assert_array_equal(got[0], np.zeros_like(values))
    for n in (1, 2, 3):
        np.testing.assert_array_equal(got[n], sum(lanes[:n]), err_msg=f"{n} terms")
    np.testing.assert_array_equal(got[4], sum(lanes) + ((values >> 9) & 3))
