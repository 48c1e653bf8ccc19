"""Bipolar 1-bit activations (:data:`hwquant.ir.BIPOLAR`): code 1 = +1, code 0 = -1, padded
positions hold code 0 (= -1). A tiny network with a bipolar hidden activation (produced by a
thresholds epilogue, consumed by fixed-weight layers) against a hand-written NumPy reference,
the XNOR-popcount identity the padding convention is chosen for, the fake-quant path, the
``.hwq`` round trip and the validation rules."""

import dataclasses

import numpy as np
import pytest
from netbuilders import assert_same

from hwquant import golden, hwq, ir
from hwquant.quant.fakequant import FakeQuantNetwork

U4 = ir.ActFormat(4, False, 0)
S8 = ir.ActFormat(8, True, 1)
B = ir.BIPOLAR


def tiny_network():
    """input U4 (1, 5, 5) -> c1 3x3 pad 1, thresholds (one per channel, one negative
    direction) -> bipolar (2, 5, 5) -> max pool 2 stride 1 -> (2, 4, 4) -> c2 3x3 pad 1 on
    bipolar values, requantized -> S8 (3, 4, 4) -> flatten -> fc logits (4 classes)."""
    rng = np.random.default_rng(11)
    c1 = ir.Conv2d("c1", ("input",), U4, rng.integers(-4, 4, (2, 1, 3, 3)), 3, 0,
                   np.array([-5, 7]), ir.Thresholds([[4], [-3]], [1, -1]), B,
                   in_shape=(1, 5, 5), padding=1)
    mp = ir.MaxPool2d("mp", ("c1",), (2, 5, 5), 2, 1, 0, B)
    c2 = ir.Conv2d("c2", ("mp",), B, rng.integers(-2, 2, (3, 2, 3, 3)), 2, 0,
                   np.array([1, -2, 0]), ir.Requant([3, 1, 2], 1, S8.lo, S8.hi), S8,
                   in_shape=(2, 4, 4), padding=1)
    flat = ir.Flatten("flat", ("c2",), (3, 4, 4), S8)
    w = rng.integers(-8, 8, (4, 48))
    lo, hi = ir.matrix_range(w, np.zeros(4, dtype=np.int64), S8)
    fc = ir.Linear("fc", ("flat",), S8, w, 4, 0, np.zeros(4), ir.Logits(),
                   ir.ActFormat(ir.signed_bits_for(int(lo.min()), int(hi.max())), True, 1))
    return ir.Network("tiny_bnn", (1, 5, 5), U4, (c1, mp, c2, flat, fc))


def conv_reference(x, w, b, pad_value):
    """Direct loops: stride 1, padding 1, ``x`` (N, C, H, W) of values."""
    n, _, h, wd = x.shape
    oc, ic, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=pad_value)
    out = np.zeros((n, oc, h, wd), dtype=np.int64)
    for i in range(n):
        for o in range(oc):
            for r in range(h):
                for c in range(wd):
                    out[i, o, r, c] = b[o] + sum(
                        int(w[o, ci, u, v]) * int(xp[i, ci, r + u, c + v])
                        for ci in range(ic) for u in range(kh) for v in range(kw))
    return out


def reference(net, x):
    """The network by hand: BN-sign thresholds, bipolar values with -1 padding."""
    c1, _, c2, _, fc = net.layers
    a1 = conv_reference(x, c1.weight, c1.bias, 0)
    bits = np.stack([a1[:, 0] >= 4, a1[:, 1] <= -3], axis=1).astype(np.int64)  # codes
    pooled = np.maximum.reduce([bits[:, :, i:i + 4, j:j + 4] for i in (0, 1) for j in (0, 1)])
    values = np.where(pooled == 1, 1, -1)
    a2 = conv_reference(values, c2.weight, c2.bias, -1)
    t = a2 * np.array([3, 1, 2])[None, :, None, None]
    y2 = np.clip((t + 1) >> 1, S8.lo, S8.hi)
    logits = y2.reshape(len(x), -1) @ fc.weight.T
    return {"c1": bits, "mp": pooled, "c2": y2, "fc": logits}


@pytest.fixture(scope="module")
def net():
    return tiny_network()


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(3).integers(0, 16, (12, 1, 5, 5))


def test_golden_equals_hand_reference(net, x):
    got = golden.run(net, x)
    want = reference(net, x)
    for name, value in want.items():
        np.testing.assert_array_equal(got[name], value, err_msg=name)
    assert set(np.unique(got["c1"])) == {0, 1}  # both codes occur
    assert got["c2"].min() < 0 < got["c2"].max()


def test_padding_is_minus_one_not_zero(net, x):
    """The border outputs of c2 differ from what zero padding would give."""
    values = 2 * golden.run(net, x)["mp"] - 1
    c2 = net.layer("c2")
    with_minus_one = conv_reference(values, c2.weight, c2.bias, -1)
    with_zero = conv_reference(values, c2.weight, c2.bias, 0)
    assert np.any(with_minus_one != with_zero)
    acc = golden.run_layer(dataclasses.replace(c2, epilogue=ir.Requant(np.ones(3), 0, -99, 99),
                                               out_format=ir.ActFormat(8, True, 0)),
                           [golden.run(net, x)["mp"]])
    np.testing.assert_array_equal(acc, with_minus_one)


def test_xnor_popcount_identity_with_padding():
    """With weights in {-1, +1} the accumulator is ``2 * popcount(XNOR(x_bits, w_bits)) - N``
    with ``N`` the full kernel size at every position: padded taps are bit 0 like any -1
    input, so an XNOR array needs neither masks nor per-position counts."""
    rng = np.random.default_rng(5)
    w = rng.choice([-1, 1], (2, 3, 3, 3))
    layer = ir.Conv2d("c", ("input",), B, w, 2, 0, np.zeros(2),
                      ir.Requant(np.ones(2), 0, -99, 99), ir.ActFormat(8, True, 0),
                      in_shape=(3, 4, 4), padding=1)
    codes = rng.integers(0, 2, (5, 3, 4, 4))
    acc = golden.run_layer(layer, [codes])
    cols = golden.im2col(codes, (3, 3), (1, 1), (1, 1), 0).reshape(5, 4, 4, -1)
    wbits = ((w + 1) // 2).reshape(2, -1)
    xnor = 1 - (cols[..., None, :] ^ wbits)  # (N, H, W, OC, fan_in)
    popcount = xnor.sum(axis=-1).transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(acc, 2 * popcount - w[0].size)


def test_fake_quant_path_matches(net, x):
    fq = FakeQuantNetwork(net).integer_outputs(x)
    gold = golden.run(net, x)
    for layer in net.layers:
        np.testing.assert_array_equal(fq[layer.name], gold[layer.name], err_msg=layer.name)


def test_bipolar_network_input(net):
    """A bipolar network input: codes 0/1 in, ±1 into the first layer's arithmetic."""
    c2 = net.layer("c2")
    first = dataclasses.replace(c2, inputs=("input",), in_shape=(2, 4, 4))
    tail = dataclasses.replace(net.layer("flat"), inputs=("c2",))
    small = ir.Network("b", (2, 4, 4), B, (first, tail, net.layer("fc")))
    codes = np.random.default_rng(9).integers(0, 2, (4, 2, 4, 4))
    got = golden.run(small, codes)["c2"]
    a2 = conv_reference(2 * codes - 1, c2.weight, c2.bias, -1)
    np.testing.assert_array_equal(got, np.clip((a2 * np.array([3, 1, 2])[None, :, None, None]
                                                + 1) >> 1, S8.lo, S8.hi))
    np.testing.assert_array_equal(FakeQuantNetwork(small).integer_outputs(codes)["c2"], got)
    with pytest.raises(ValueError, match=r"^Input values must lie in \[0, 1\], not \[0, 2\]$"):
        golden.run(small, codes * 2)


def test_hwq_round_trip(net):
    back = hwq.loads(hwq.dumps(net))
    assert_same(back, net)
    assert back.layer("c1").out_format == B and back.layer("c2").in_format.bipolar


# -- the format ------------------------------------------------------------------------------

def test_format_codes_and_values():
    assert (B.bits, B.signed, B.frac, B.bipolar, B.lo, B.hi) == (1, False, 0, True, 0, 1)
    assert (B.value_lo, B.value_hi) == (-1, 1)
    assert B.value([0, 1]).tolist() == [-1, 1]
    u1 = ir.ActFormat(1, False, 0)
    assert u1 != B and u1.value([0, 1]).tolist() == [0, 1]
    assert ir.ActFormat.from_json(B.to_json()) == B
    assert "bipolar" not in u1.to_json()  # unchanged for every other format
    assert ir.ActFormat.from_json(u1.to_json()) == u1


def test_matrix_range_uses_values():
    lo, hi = ir.matrix_range([[2, -3, 1]], np.array([1]), B)
    assert (lo.tolist(), hi.tolist()) == ([-5], [7])


@pytest.mark.parametrize("kwargs", [{"bits": 2, "signed": False, "frac": 0},
                                    {"bits": 1, "signed": True, "frac": 0},
                                    {"bits": 1, "signed": False, "frac": 1}], ids=str)
def test_bipolar_is_one_unsigned_integer_bit(kwargs):
    with pytest.raises(ValueError, match=r"^A bipolar activation format has bits=1, "
                                         r"signed=False, frac=0, not "):
        ir.ActFormat(bipolar=True, **kwargs)
    with pytest.raises(TypeError, match=r"^Activation bipolar flag must be a bool, not 1$"):
        ir.ActFormat(1, False, 0, bipolar=1)


def test_bipolar_output_needs_thresholds(net):
    c1 = net.layer("c1")
    with pytest.raises(ValueError, match=r"^Layer 'c1': a bipolar output needs a Thresholds "
                                         r"epilogue, not Requant$"):
        dataclasses.replace(c1, epilogue=ir.Requant(np.ones(2), 0, 0, 1))


def test_bipolar_average_pool_and_add_are_rejected():
    with pytest.raises(ValueError, match=r"^Layer 'ap': average pooling of bipolar "
                                         r"activations is not defined$"):
        ir.AvgPool2d("ap", ("c1",), (2, 4, 4), 2, 2, 0, B, out_format=B,
                     requant=ir.Requant([1], 2, 0, 1))
    with pytest.raises(ValueError, match=r"^Layer 'res': residual add of bipolar activations "
                                         r"is not defined$"):
        ir.Add("res", ("a", "b"), (2, 4, 4), (B, B), U4)
