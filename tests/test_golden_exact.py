"""The golden model's fast path (float BLAS where a bound proves it exact) equals the int64
reference path, on extreme operands and on random networks driven with extreme inputs."""

import dataclasses
import os
import sys

import numpy as np
import pytest

from hwquant import golden, ir
from hwquant.golden import exact
from hwquant.golden import pow2 as gpow2

sys.path.insert(0, os.path.dirname(__file__))
from netbuilders import (
    pow2_linear,
    random_chain,
    random_pow2_weights,
    residual_net,
    vector_chain,
)


def _extreme(rng, shape, lo, hi):
    """Values at the ends of ``[lo, hi]`` mostly, some in between."""
    x = np.where(rng.integers(0, 2, shape) == 1, hi, lo)
    mixed = rng.random(shape) < 0.2
    x[mixed] = rng.integers(lo, hi, endpoint=True, size=int(mixed.sum()))
    return x.astype(np.int64)


@pytest.mark.parametrize(("xbits", "wbits", "k"), [
    (8, 8, 9),      # float32
    (12, 11, 8),    # just below 2**24: float32
    (12, 12, 8),    # just above 2**24: float64
    (26, 26, 2),    # float64 near 2**53
    (28, 28, 16),   # above 2**53: int64
])
def test_matmul_equals_int64_at_every_regime(xbits, wbits, k):
    rng = np.random.default_rng(xbits * 100 + wbits)
    x = _extreme(rng, (64, k), -(1 << (xbits - 1)), (1 << (xbits - 1)) - 1)
    w = _extreme(rng, (5, k), -(1 << (wbits - 1)), (1 << (wbits - 1)) - 1)
    got = exact.matmul(x, w)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, x @ w.T)


def test_bound_picks_float64_where_float32_is_wrong():
    """An odd sum above 2**24 is not a float32 value: the bound must move to float64."""
    x = np.array([[(1 << 23) + 1, (1 << 23) + 1, 1]], dtype=np.int64)
    w = np.array([[1, 1, 1]], dtype=np.int64)
    exact_sum = int((x @ w.T)[0, 0])
    assert exact_sum == (1 << 24) + 3
    assert int((x.astype(np.float32) @ w.T.astype(np.float32))[0, 0]) != exact_sum
    assert exact.product_bound(x, w) >= exact.FLOAT32_EXACT
    assert int(exact.matmul(x, w)[0, 0]) == exact_sum


def test_int64_only_is_the_reference_path(monkeypatch):
    def no_bound(x, w):
        raise AssertionError("the fast path was consulted")

    monkeypatch.setattr(exact, "product_bound", no_bound)
    x = np.arange(12, dtype=np.int64).reshape(3, 4)
    w = np.ones((2, 4), dtype=np.int64)
    with exact.int64_only():
        assert not exact.fast_enabled()
        np.testing.assert_array_equal(exact.matmul(x, w), x @ w.T)
    assert exact.fast_enabled()
    with pytest.raises(AssertionError, match="^the fast path was consulted$"):
        exact.matmul(x, w)


def _as_pow2(net, rng):
    """Every weight layer of ``net`` with 4-bit power-of-two weights and scales (3, 5)."""
    layers = []
    for layer in net.layers:
        if isinstance(layer, (ir.Conv2d, ir.Linear)):
            w = random_pow2_weights(rng, layer.weight.shape, 4, (3, 5))
            layer = dataclasses.replace(layer, weight=w, weight_bits=4, encoding="pow2",
                                        kind_data=ir.Pow2Data((3, 5)))
            layer = dataclasses.replace(layer, **_widened(layer))
        layers.append(layer)
    return dataclasses.replace(net, layers=tuple(layers))


def _widened(layer):
    """Output format wide enough for new weights (raw logits must hold the whole range)."""
    if layer.epilogue is not None and not isinstance(layer.epilogue, ir.Logits):
        return {}
    lo, hi = ir.matrix_range(layer.weight.reshape(len(layer.weight), -1), layer.bias,
                             layer.in_format)
    fmt = layer.out_format
    return {"out_format": ir.ActFormat(ir.signed_bits_for(int(lo.min()), int(hi.max())), True,
                                       fmt.frac)}


NETWORKS = [("chain", s) for s in range(6)] + [("vector", s) for s in range(3)] + \
    [("residual", s) for s in range(3)]


@pytest.mark.parametrize(("kind", "seed"), NETWORKS)
@pytest.mark.parametrize("encoding", ["fixed", "pow2"])
def test_network_fast_path_equals_int64_path(kind, seed, encoding):
    net = {"chain": random_chain, "vector": vector_chain, "residual": residual_net}[kind](seed)
    rng = np.random.default_rng(seed)
    if encoding == "pow2":
        try:
            net = _as_pow2(net, rng)
        except (ValueError, TypeError) as error:
            pytest.skip(f"pow2 variant not representable: {error}")
    f = net.input_format
    x = _extreme(rng, (300,) + net.input_shape, f.lo, f.hi)
    fast = golden.run(net, x, batch_size=128)
    with exact.int64_only():
        reference = golden.run(net, x, batch_size=128)
    assert fast.keys() == reference.keys()
    for name in reference:
        assert fast[name].dtype == np.int64, name
        np.testing.assert_array_equal(fast[name], reference[name], err_msg=name)


def test_pow2_dot_with_sign_scales_equals_reference():
    rng = np.random.default_rng(11)
    fmt = ir.ActFormat(8, True, 0)
    w = random_pow2_weights(rng, (7, 40), 5, (3, 5), zeros=0.2)
    layer = pow2_linear(w, 5, fmt, scales=(3, 5))
    xs = _extreme(rng, (500, 40), fmt.lo, fmt.hi)
    fast = gpow2.dot(layer, xs)
    with exact.int64_only():
        reference = gpow2.dot(layer, xs)
    np.testing.assert_array_equal(fast, reference)
    np.testing.assert_array_equal(reference, xs @ w.T)


# -- the fast path's pieces, each equal to its reference ------------------------------------


@pytest.mark.parametrize(("c", "kernel", "stride", "padding", "pad"), [
    (1, (3, 3), (1, 1), (1, 1), 0),     # few channels: one copy per kernel offset
    (3, (2, 3), (2, 1), (0, 1), -1),    # bipolar padding value
    (8, (3, 3), (1, 1), (1, 1), 0),     # sliding-window view
    (16, (3, 2), (2, 2), (1, 0), 5),
])
def test_windows_are_im2col_in_window_lane_order(c, kernel, stride, padding, pad):
    from hwquant.golden.network import _windows

    rng = np.random.default_rng(c)
    x = rng.integers(-100, 100, (3, c, 7, 6))
    reference = golden.im2col(x, kernel, stride, padding, pad)  # (N, OH, OW, C, KH, KW)
    lanes = reference.transpose(0, 1, 2, 4, 5, 3).reshape(-1, c * kernel[0] * kernel[1])
    for dtype in (np.float32, np.float64):
        got = _windows(x, dtype, kernel, stride, padding, pad)
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, lanes)
    # Channels-last input seen as (N, C, H, W): the same windows.
    nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(_windows(nhwc, np.float32, kernel, stride, padding, pad),
                                  lanes)


def _requant_layer(rng, shift, oc=5, scale=None, epilogue="requant"):
    w = rng.integers(-8, 8, (oc, 6))
    fmt = ir.ActFormat(8, True, 0)
    if epilogue == "requant":
        ep = ir.Requant(rng.integers(1, 300, oc), shift, -100, 90)
        out = ir.ActFormat(8, True, 0)
    else:
        ep = ir.Logits(scale)
        out = ir.ActFormat(40, True, 0)
    return ir.Linear(name="fc", inputs=(ir.INPUT,), in_format=fmt, out_format=out, weight=w,
                     weight_bits=4, weight_frac=0, bias=rng.integers(-1000, 1000, oc),
                     epilogue=ep)


@pytest.mark.parametrize("shift", [9, 1, 0, -3])
def test_fused_requant_equals_reference(shift):
    from hwquant.golden.network import _epilogue, _fast_epilogue

    rng = np.random.default_rng(shift + 10)
    layer = _requant_layer(rng, shift)
    acc = rng.integers(-(1 << 40), 1 << 40, (400, 5))
    acc[:8] = [[-(1 << 40)] * 5, [(1 << 40) - 1] * 5] * 4
    acc[8:40] = rng.integers(-600, 600, (32, 5))  # near the rounding and clamp edges
    np.testing.assert_array_equal(_fast_epilogue(layer, acc.copy()), _epilogue(layer, acc, 1))


@pytest.mark.parametrize("scale", [None, (3, 1, 2, 7, 5)])
def test_fused_logits_equal_reference(scale):
    from hwquant.golden.network import _epilogue, _fast_epilogue

    rng = np.random.default_rng(5)
    layer = _requant_layer(rng, 0, scale=None if scale is None else np.array(scale),
                           epilogue="logits")
    acc = rng.integers(-(1 << 30), 1 << 30, (50, 5))
    np.testing.assert_array_equal(_fast_epilogue(layer, acc.copy()), _epilogue(layer, acc, 1))


def test_matmul_on_float_windows_with_a_bound():
    rng = np.random.default_rng(2)
    x = rng.integers(-255, 256, (40, 30))
    w = rng.integers(-128, 128, (7, 30))
    for dtype in (np.float32, np.float64):
        got = exact.matmul(x.astype(dtype), w, x_abs_max=255)
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, x @ w.T)
    assert exact.exact_float(w, 255) is np.float32
    assert exact.exact_float(w, 1 << 20) is np.float64
    assert exact.exact_float(w, 1 << 50) is None
    with exact.int64_only():
        assert exact.exact_float(w, 1) is None
        np.testing.assert_array_equal(exact.matmul(x.astype(np.float64), w), x @ w.T)
    with pytest.raises(TypeError, match="^Operands must be integer"):
        exact.matmul(x.astype(bool), w)


@pytest.mark.parametrize("seed", range(3))
def test_one_batch_equals_int64_and_arrays_are_independent(seed):
    net = random_chain(seed)
    rng = np.random.default_rng(seed)
    f = net.input_format
    x = _extreme(rng, (70,) + net.input_shape, f.lo, f.hi)
    fast = golden.run(net, x)  # one batch: arrays returned without concatenation
    with exact.int64_only():
        reference = golden.run(net, x)
    many = golden.run(net, x, batch_size=16)
    arrays = list(fast.values())
    for name in reference:
        assert fast[name].dtype == np.int64
        np.testing.assert_array_equal(fast[name], reference[name], err_msg=name)
        np.testing.assert_array_equal(many[name], reference[name], err_msg=name)
    for i, a in enumerate(arrays):
        for b in arrays[i + 1:]:
            assert not np.shares_memory(a, b)
