# amaranth: UnusedElaboratable=no
"""The ``bitmask`` dot engine (:mod:`hwquant.hw.bitmask`) and the MVUs built from it against
the golden integer dot product, in the Amaranth simulator: every fold (the unrolled one
through the constant-matrix adder graph), gapped and contiguous masks, signed and unsigned
inputs, random stalls."""

import os
import sys

import numpy as np
import pytest

from hwquant import golden, ir
from hwquant.bitmask import parse
from hwquant.golden import bitmask as gbitmask
from hwquant.hw.bitmask import DotEngine, encode_weight
from hwquant.hw.mvu import MatrixVectorUnit
from hwquant.layout import pack_lanes, unpack_lanes

sys.path.insert(0, os.path.dirname(__file__))
from enginesim import all_inputs, simulate_engine
from streamsim import simulate_stream

FORMATS = [ir.ActFormat(3, True, 0), ir.ActFormat(3, False, 0)]
PATTERNS = ["X0.0XX", "X0X0.00X", "XX.X", "X00.X0X0", "X.0X00"]


def random_weights(rng, shape, mask):
    mags = rng.choice(mask.magnitudes(), size=shape)
    return np.where(rng.integers(0, 2, shape) == 1, -mags, mags)


def linear(w, pattern, in_fmt, *, fold=None, requant=None, out_fmt=None):
    w, mask = np.asarray(w), parse(pattern)
    if out_fmt is None:
        lo, hi = ir.matrix_range(w, np.zeros(len(w), dtype=np.int64), in_fmt)
        out_fmt = ir.ActFormat(ir.signed_bits_for(int(lo.min()), int(hi.max())), True, 0)
    return ir.Linear("fc", ("input",), in_fmt, w, mask.span, mask.frac,
                     np.zeros(len(w), dtype=np.int64), requant, out_fmt, encoding="bitmask",
                     kind_data=ir.BitmaskData(pattern), fold=fold or ir.Fold(len(w), w.shape[1]))


@pytest.mark.parametrize("fmt", FORMATS, ids=["signed", "unsigned"])
@pytest.mark.parametrize("pattern", PATTERNS)
def test_port_engine_equals_golden(pattern, fmt):
    """Folded engine: ROM codes of random weights (both signs, the extremes, negative zero)
    on the ``w`` port, every input of three 3-bit lanes."""
    mask = parse(pattern)
    rng = np.random.default_rng(len(pattern) + fmt.signed)
    simd = 3
    weights = random_weights(rng, (10, simd), mask)
    top = mask.max_magnitude
    weights[0], weights[1] = top, -top
    codes = [[encode_weight(w, mask) for w in row] for row in weights]
    codes.append([1 << (mask.bits - 1)] * simd)  # "-0": sign set, no magnitude bit
    weights = np.vstack([weights, np.zeros((1, simd), dtype=np.int64)])
    xs = all_inputs(fmt, simd)
    dut = DotEngine(simd=simd, x_format=fmt, weight_bits=mask.span, pattern=pattern)
    assert len(dut.w.as_value()) == simd * mask.bits  # m bits per weight, not n
    got = simulate_engine(dut, xs, codes).reshape(len(codes), len(xs))
    layer = linear(weights, pattern, fmt)
    np.testing.assert_array_equal(got.T, gbitmask.dot(layer, xs))
    lo, hi = DotEngine.value_range(None, simd=simd, x_format=fmt, weight_bits=mask.span,
                                   pattern=pattern)
    assert (lo, hi) == (got.min(), got.max())  # exact: the extremes were tried


def test_constant_engine_equals_golden():
    fmt, mask = FORMATS[0], parse("X0X0.00X")
    rng = np.random.default_rng(4)
    row = random_weights(rng, (4,), mask)
    xs = rng.integers(fmt.lo, fmt.hi + 1, (50, 4))
    dut = DotEngine(simd=4, x_format=fmt, weight_bits=mask.span, weights=row,
                    pattern=mask.pattern)
    np.testing.assert_array_equal(simulate_engine(dut, xs), xs @ row)


def test_rom_codes_and_widths():
    mask = parse("X0X0.00X")  # span 7, active integer positions 0 and 4: m = 3
    assert encode_weight(0b10001, mask) == 0b011
    assert encode_weight(-0b10000, mask) == 0b110
    assert DotEngine.word_bits(5, 7, pattern=mask.pattern) == 15
    assert DotEngine.encode_weights([1, -16], 7, pattern=mask.pattern) == 0b001 | 0b110 << 3
    with pytest.raises(ValueError, match="Weight 2 is not representable under the bit mask "
                                         "X0X0.00X"):
        encode_weight(2, mask)
    with pytest.raises(ValueError, match="spans 5 bits, the weights 8"):
        DotEngine(simd=2, x_format=FORMATS[0], weight_bits=8, pattern="X0.0XX")


FOLDS = {
    "unrolled": lambda oc, f: (oc, f),
    "pe_only": lambda oc, f: (oc // 2, 1),
    "both": lambda oc, f: (2, f // 2),
    "serial": lambda oc, f: (1, 1),
}


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("fold_kind", FOLDS)
def test_mvu_equals_golden(fold_kind, seed):
    """MVUs of every fold with requantized outputs, random valid gaps and ready stalls."""
    pattern = PATTERNS[seed]
    in_fmt = [ir.ActFormat(4, False, 2), ir.ActFormat(3, True, 1), ir.ActFormat(5, False, 0)][seed]
    rng = np.random.default_rng(seed)
    oc, fan_in = 4, 6
    w = random_weights(rng, (oc, fan_in), parse(pattern))
    out_fmt = ir.ActFormat(5, bool(seed % 2), 1)
    requant = ir.Requant(rng.integers(1, 5, oc), 4, out_fmt.lo, out_fmt.hi)
    layer = linear(w, pattern, in_fmt, fold=ir.Fold(*FOLDS[fold_kind](oc, fan_in)),
                   requant=requant, out_fmt=out_fmt)
    n = 4
    x = rng.integers(in_fmt.lo, in_fmt.hi + 1, (n, fan_in))
    x[0], x[-1] = in_fmt.lo, in_fmt.hi
    expected = golden.run_layer(layer, [x])
    pe, simd = layer.fold.pe, layer.fold.simd
    words = [pack_lanes(beat, in_fmt.bits) for beat in x.reshape(-1, simd)]
    out, _ = simulate_stream(MatrixVectorUnit(layer, layer.weight_matrix()), words,
                             n * oc // pe, seed=seed, valid_gap=0.4, ready_stall=0.4)
    got = np.array([unpack_lanes(v, out_fmt.bits, pe, out_fmt.signed) for v in out])
    np.testing.assert_array_equal(got.reshape(n, -1), expected)
