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
from netbuilders import random_chain, residual_net, vector_chain
from test_hw_pow2 import linear, random_weights


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
            w = random_weights(rng, layer.weight.shape, 4, (3, 5))
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
    w = random_weights(rng, (7, 40), 5, (3, 5), zeros=0.2)
    layer = linear(w, 5, fmt, scales=(3, 5))
    xs = _extreme(rng, (500, 40), fmt.lo, fmt.hi)
    fast = gpow2.dot(layer, xs)
    with exact.int64_only():
        reference = gpow2.dot(layer, xs)
    np.testing.assert_array_equal(fast, reference)
    np.testing.assert_array_equal(reference, xs @ w.T)
