# amaranth: UnusedElaboratable=no
"""Property test: random small networks (shapes, layer kinds present, weight kinds, bit
widths, foldings) in the Amaranth simulator, bit-exact against the golden model.

Hypothesis draws the structure; :mod:`netbuilders` fills in weights and requantization. The
Amaranth simulator is slow, so the default suite runs a handful of tiny networks
(derandomized: the same ones every run) and the ``slow`` variant many more.
"""

import dataclasses
import os
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from hwquant import hwq, ir
from hwquant.errors import HwquantError
from hwquant.fold import apply_folding

sys.path.insert(0, os.path.dirname(__file__))
import netsim
from netbuilders import add_layer, avg_requant, weight_layer

FAST = settings(max_examples=60, deadline=None, derandomize=True, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SLOW = settings(FAST, max_examples=500)


def _pow2(layer, rng):
    """``layer`` with power-of-two weights (INQ-like codes of 4 bits: 0, +-2^0..+-2^3)."""
    w = layer.weight
    e = rng.integers(0, 4, w.shape)
    w = np.sign(w) * (1 << e)
    return dataclasses.replace(layer, weight=w, weight_bits=4, encoding="pow2",
                               kind_data=ir.Pow2Data((1, 1)))


@st.composite
def networks(draw):
    seed = draw(st.integers(0, 2 ** 16))
    rng = np.random.default_rng(seed)
    vector = draw(st.integers(0, 3)) == 3
    bits = draw(st.integers(2, 6))
    in_fmt = ir.ActFormat(bits, draw(st.booleans()), draw(st.integers(0, 3)))
    layers = []
    if vector:
        shape = (draw(st.integers(1, 8)),)
        src, fmt, cur = "input", in_fmt, shape
    else:
        shape = (draw(st.integers(1, 2)), draw(st.integers(3, 5)), draw(st.integers(3, 5)))
        k = (draw(st.integers(1, min(3, shape[1]))), draw(st.integers(1, min(3, shape[2]))))
        pad = (draw(st.integers(0, k[0] // 2)), draw(st.integers(0, k[1] // 2)))
        conv = weight_layer(rng, "c1", "input", shape, in_fmt, draw(st.integers(1, 3)),
                            conv=(k, (draw(st.integers(1, 2)),) * 2, pad))
        if draw(st.booleans()):
            conv = _pow2(conv, rng)
        layers.append(conv)
        src, fmt, cur = "c1", conv.out_format, conv.out_shape
        if draw(st.integers(0, 2)) == 0:  # a residual block: fork, 3x3 conv, join
            branch = weight_layer(rng, "c1b", "c1", cur, fmt, cur[0],
                                  conv=((3, 3), (1, 1), (1, 1)))
            add = add_layer("res", conv, branch, relu=draw(st.booleans()))
            layers += [branch, add]
            src, fmt = "res", add.out_format
        pool = draw(st.sampled_from(["avg", "max", "none"]))
        if pool != "none" and min(cur[1:]) >= 2:
            pk = draw(st.integers(1, min(2, *cur[1:])))
            if pool == "max":
                layer = ir.MaxPool2d("pool", (src,), cur, pk, pk, 0, fmt)
            else:
                layer = ir.AvgPool2d("pool", (src,), cur, pk, pk, 0, fmt, out_format=fmt,
                                     requant=avg_requant(pk * pk, fmt))
            layers.append(layer)
            src, cur = "pool", layer.out_shape
        flat = ir.Flatten("flat", (src,), cur, fmt)
        layers.append(flat)
        src, cur = "flat", flat.out_shape
    if draw(st.booleans()):
        hidden = weight_layer(rng, "fc1", src, cur, fmt, draw(st.integers(1, 4)))
        if draw(st.booleans()):
            hidden = _pow2(hidden, rng)
        layers.append(hidden)
        src, fmt, cur = "fc1", hidden.out_format, hidden.out_shape
    layers.append(weight_layer(rng, "fc", src, cur, fmt, draw(st.integers(2, 4)), last=True))
    net = ir.Network(f"fuzz{seed}", shape, in_fmt, tuple(layers))
    mode = draw(st.sampled_from(["max", "min", "auto", "random"]))
    if mode == "random":
        from hwquant.plan import layer_simd_choices

        specs = []
        for layer in net.weight_layers:
            pes = [d for d in range(1, layer.out_channels + 1) if layer.out_channels % d == 0]
            specs.append(f"{layer.name}={draw(st.sampled_from(pes))}:"
                         f"{draw(st.sampled_from(layer_simd_choices(layer)))}")
        mode = ",".join(specs)
    return net, mode, draw(st.sampled_from([0.0, 0.4]))


def check_network(case):
    net, mode, stalls = case
    assert hwq.dumps(hwq.loads(hwq.dumps(net))) == hwq.dumps(net)
    try:
        folded = apply_folding(net, mode)
    except HwquantError as e:  # a combination the planner cannot stream: said clearly
        assert str(e).startswith("Layer '"), e
        event("folding refused")
        return
    event("simulated: " + ", ".join(sorted({type(la).__name__ for la in net.layers})))
    netsim.check_network(folded, n=2, seed=0, stalls=stalls)


@FAST
@given(networks())
def test_random_networks_are_bit_exact(case):
    check_network(case)


@pytest.mark.slow
@SLOW
@given(networks())
def test_random_networks_are_bit_exact_slow(case):
    check_network(case)
