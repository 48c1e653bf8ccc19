"""The bit-mask encoding (:mod:`hwquant.bitmask`): pattern notation and the paper's codes,
value sets, projection and round-then-mask, the IR's validation and the ``.hwq`` round trip."""

import math

import numpy as np
import pytest

from hwquant import bitmask, hwq, ir
from hwquant.bitmask import Mask, candidates, parse

#: (code, pattern, real magnitudes) of the bit-masking paper's codes, decoded by hand: bit i
#: of the magnitude (0 = most significant) weighs 2**-i, the point follows bit 0.
CODES = [
    ("3_0_0", "XX.X", [0, .5, 1, 1.5]),
    ("4_1_0_0", "X0.XX", [0, .25, .5, .75]),
    ("5_2_0_1_0", "X0.0XX", [0, .125, .25, .375]),
    ("5_2_0_2_0", "X0.X0X", [0, .125, .5, .625]),
    ("6_3_0_1_3_0", "X0.0X0X", [0, .0625, .25, .3125]),
    ("8_5_0_2_3_4_5_0", "X0.X0000X", [0, .015625, .5, .515625]),
    ("7_4_0_1_2_4_0", "X0.00X0X", [0, .03125, .125, .15625]),
    ("4_0_0", "XX.XX", [0, .25, .5, .75, 1, 1.25, 1.5, 1.75]),
]


@pytest.mark.parametrize("code,pattern,mags", CODES, ids=[c[0] for c in CODES])
def test_paper_codes_decode_to_their_patterns(code, pattern, mags):
    mask = parse(code)
    assert mask.pattern == pattern
    assert parse(pattern) == mask
    np.testing.assert_array_equal(mask.magnitudes() * 2.0 ** -mask.frac, mags)
    vals = mask.values()
    assert len(vals) == 2 ** mask.bits - 1 and np.all(np.diff(vals) > 0)
    np.testing.assert_array_equal(vals, -vals[::-1])  # sign-magnitude: symmetric


def test_pattern_fields():
    mask = parse("X0.0XX")
    assert (mask.span, mask.frac, mask.active, mask.bits, mask.bitmask) == (5, 3, (0, 1), 3, 3)
    assert parse("X0X0X").frac == 0 and parse("X0X0X").active == (0, 2)
    assert parse("X.0X").pattern == "X.0X" and parse("X.0X").frac == 2
    assert str(bitmask.full_mask(4, 1)) == "XXX.X"


@pytest.mark.parametrize("text,match", [
    ("", "must start with X"),
    ("0X.X", "must start with X"),
    ("XA.X", "only X, 0 and one '.'"),
    ("X.X.X", "only X, 0 and one '.'"),
    ("X", "no magnitude bits"),
    ("X00.0", "masks every magnitude bit"),
    ("5_2_0_1", "K = 2 masked positions need 2 position fields and the final 0"),
    ("5_2_0_1_1", "reserved and must be 0"),
    ("5_2_0_0_0", "distinct"),
    ("5_x_0", "integers joined by '_'"),
    ("3_2_0_1_0", "masks every magnitude bit"),
    ("X" + "X" * 16, "spans 2..16 bits"),
])
def test_bad_patterns_say_what_is_allowed(text, match):
    with pytest.raises(ValueError, match=match):
        parse(text)


def test_projection_is_nearest_ties_to_larger_magnitude():
    mask = parse("X0X0X")  # integer magnitudes 0, 1, 4, 5
    got = mask.project([0.4, 0.5, 2.4, 2.5, 2.6, 4.6, 9.0, -2.5, -0.49, -7])
    np.testing.assert_array_equal(got, [0, 1, 1, 4, 4, 5, 5, -4, 0, -5])
    assert mask.representable(got).all()


def test_literal_rounds_then_masks():
    mask = parse("X0X0X")
    # 2 rounds to 0b0010: its bit is masked, the weight becomes 0; 7 -> 0b0111 -> 5;
    # 9 -> 0b1001 -> 1 (not the nearest, 5); 20 saturates at 0b1111 -> 5.
    got = mask.literal([2.2, 3.4, 6.6, 9.0, -3.6, 20])
    np.testing.assert_array_equal(got, [0, 1, 5, 1, -4, 5])


def test_projection_beats_literal_on_random_weights():
    rng = np.random.default_rng(0)
    w = rng.normal(0, 4, 1000)
    for mask in candidates(3, 6):
        err_p = np.abs(mask.project(w) - w).mean()
        err_l = np.abs(mask.literal(w) - w).mean()
        assert err_p <= err_l + 1e-12, mask.pattern


def test_candidates_are_every_mask_once():
    for m, n in ((3, 8), (4, 8), (2, 5), (5, 5)):
        got = candidates(m, n)
        assert len(got) == math.comb(n - 1, m - 1) == len({c.active for c in got})
        assert all(c.bits == m and c.span == n for c in got)
    assert candidates(3, 8)[0].pattern == "XXX00000"  # contiguous from the top first
    with pytest.raises(ValueError, match="need 2..8"):
        candidates(1, 8)
    with pytest.raises(ValueError, match="need 2..8"):
        candidates(9, 8)


def test_mask_validates_its_fields():
    with pytest.raises(ValueError, match="Active positions of a 4-bit mask are 0..2"):
        Mask(4, 0, (3,))
    with pytest.raises(ValueError, match="fraction bits"):
        Mask(4, 4, (0,))


# -- IR and .hwq -------------------------------------------------------------------------------

def _layer(w, pattern, *, bits=None, frac=None):
    mask = parse(pattern) if pattern else None
    bits = bits or mask.span
    frac = mask.frac if frac is None else frac
    w = np.asarray(w)
    return ir.Linear("fc", ("input",), ir.ActFormat(4, False, 0), w, bits, frac,
                     np.zeros(len(w)), None, ir.ActFormat(16, True, 0), encoding="bitmask",
                     kind_data=ir.BitmaskData(pattern))


def test_ir_accepts_representable_weights_and_stores_the_pattern():
    layer = _layer([[3, -2, 0, 1], [-3, 2, 2, 0]], "5_2_0_1_0")
    assert layer.kind_data.pattern == "X0.0XX"
    assert layer.kind_data.mask(layer) == parse("X0.0XX")


def test_ir_rejects_weights_outside_the_mask():
    with pytest.raises(ValueError, match=r"Layer 'fc': weight 4 is not representable under "
                                         r"the bit mask X0.0XX"):
        _layer([[3, 4]], "X0.0XX")
    with pytest.raises(ValueError, match=r"weight -2 is not representable under the bit mask "
                                         r"X0X0X"):
        _layer([[1, -2]], "X0X0X")


def test_ir_checks_span_and_point_against_the_layer():
    with pytest.raises(ValueError, match="is a 5-bit format with 3 fraction bits; the layer "
                                         "has weight_bits=6, weight_frac=3"):
        _layer([[1]], "X0.0XX", bits=6)
    with pytest.raises(ValueError, match="weight_frac=2"):
        _layer([[1]], "X0.0XX", frac=2)
    with pytest.raises(ValueError, match="must start with X"):
        ir.BitmaskData("Y0.0X")


def test_default_kind_data_is_plain_sign_magnitude():
    layer = _layer([[7, -7, 0]], None, bits=4, frac=0)
    assert layer.kind_data.pattern is None
    with pytest.raises(ValueError, match="weight -8 is not representable"):
        _layer([[-8]], None, bits=4, frac=0)


def test_hwq_round_trip_keeps_the_pattern():
    layer = _layer([[3, -2, 0, 1]], "X0.0XX")
    net = ir.Network("bm", (4,), layer.in_format, (layer,))
    back = hwq.loads(hwq.dumps(net))
    (got,) = back.layers
    assert got.encoding == "bitmask" and got.kind_data == ir.BitmaskData("X0.0XX")
    np.testing.assert_array_equal(got.weight, layer.weight)
