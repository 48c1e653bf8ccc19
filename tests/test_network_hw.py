# amaranth: UnusedElaboratable=no
"""Whole networks (:class:`hwquant.hw.network.NetworkTop`) in the Amaranth Python simulator
against the golden model, on small random chains with every folding mode and random stalls."""

import math
import os
import re
import sys

import numpy as np
import pytest

from hwquant import golden, ir
from hwquant.errors import UnsupportedLayerError
from hwquant.fold import apply_folding, default_target
from hwquant.hw.network import NetworkTop, bottleneck_cycles, layer_cycles, plan_stages
from hwquant.vectors import expected_words, input_words

sys.path.insert(0, os.path.dirname(__file__))
from streamsim import simulate_stream


def _int(rng, lo, hi):
    return int(rng.integers(lo, hi, endpoint=True))


def weight_layer(rng, name, src, in_shape, in_fmt, oc, *, conv=None, last=False):
    """Random conv (``conv=(kernel, stride, padding)``) or linear layer; per-channel
    multipliers, a shift that spreads the outputs, ReLU or not; raw logits when ``last``."""
    wbits = _int(rng, 2, 5)
    shape = (oc, in_shape[0], *conv[0]) if conv else (oc, in_shape[0])
    w = rng.integers(-(1 << (wbits - 1)), 1 << (wbits - 1), shape)
    lo, hi = ir.matrix_range(w.reshape(oc, -1), np.zeros(oc, dtype=np.int64), in_fmt)
    span = int(max(-lo.min(), hi.max(), 1))
    bias = rng.integers(-span // 8 - 1, span // 8 + 1, oc)
    common = {"name": name, "inputs": (src,), "in_format": in_fmt, "weight": w,
              "weight_bits": wbits, "weight_frac": _int(rng, 0, 4), "bias": bias}
    if last:
        lo, hi = ir.matrix_range(w.reshape(oc, -1), bias, in_fmt)
        out_fmt = ir.ActFormat(ir.signed_bits_for(int(lo.min()), int(hi.max())), True,
                               in_fmt.frac + common["weight_frac"])
        requant = None
    else:
        relu = bool(rng.integers(2))
        out_fmt = ir.ActFormat(_int(rng, 3, 6), not relu, _int(rng, 0, 4))
        mult = rng.integers(1, 6, oc) if rng.integers(2) else np.ones(oc, dtype=np.int64)
        typical = span * int(mult.max()) / math.sqrt(w[0].size)
        shift = int(max(typical, 1)).bit_length() - out_fmt.bits + _int(rng, -1, 1)
        requant = ir.Requant(mult, shift, 0 if relu else out_fmt.lo, out_fmt.hi)
    if conv:
        return ir.Conv2d(**common, requant=requant, out_format=out_fmt, in_shape=in_shape,
                         stride=conv[1], padding=conv[2])
    return ir.Linear(**common, requant=requant, out_format=out_fmt)


def avg_requant(window, fmt):
    if window & (window - 1) == 0:
        return ir.Requant([1], window.bit_length() - 1, fmt.lo, fmt.hi)
    shift = 15 + (window - 1).bit_length()
    return ir.Requant([(2 ** (shift + 1) + window) // (2 * window)], shift, fmt.lo, fmt.hi)


def random_chain(seed):
    """conv -> maxpool -> conv (stride 2) -> avgpool -> flatten -> linear (logits)."""
    rng = np.random.default_rng(seed)
    in_fmt = ir.ActFormat(_int(rng, 3, 6), bool(seed % 2), 2)
    shape = (_int(rng, 1, 2), _int(rng, 5, 7), _int(rng, 5, 7))
    k = (_int(rng, 2, 3), _int(rng, 1, 3))
    c1 = weight_layer(rng, "c1", "input", shape, in_fmt, _int(rng, 2, 3),
                      conv=(k, (1, 1), (k[0] // 2, k[1] // 2)))
    mk = _int(rng, 2, 3)
    mp = ir.MaxPool2d("mp", ("c1",), c1.out_shape, mk, (2, 1 + seed % 2), mk // 2,
                      c1.out_format)
    c2 = weight_layer(rng, "c2", "mp", mp.out_shape, mp.out_format, 4,
                      conv=((3, 3), (2, 2), (1, 1)))
    ak = (min(c2.out_shape[1], _int(rng, 1, 3)), min(c2.out_shape[2], 3))
    ap = ir.AvgPool2d("ap", ("c2",), c2.out_shape, ak, ak, 0, c2.out_format,
                      out_format=c2.out_format,
                      requant=avg_requant(ak[0] * ak[1], c2.out_format))
    flat = ir.Flatten("flat", ("ap",), ap.out_shape, ap.out_format)
    fc = weight_layer(rng, "fc", "flat", flat.out_shape, flat.out_format, _int(rng, 3, 5),
                      last=True)
    return ir.Network(f"chain{seed}", shape, in_fmt, (c1, mp, c2, ap, flat, fc))


def vector_chain(seed):
    """linear -> linear (logits) on a vector input."""
    rng = np.random.default_rng(seed)
    in_fmt = ir.ActFormat(4, True, 1)
    fc1 = weight_layer(rng, "fc1", "input", (8,), in_fmt, 6)
    fc2 = weight_layer(rng, "fc2", "fc1", fc1.out_shape, fc1.out_format, 4, last=True)
    return ir.Network(f"mlp{seed}", (8,), in_fmt, (fc1, fc2))


def pointwise_padded_chain(seed):
    """1x1 conv with padding 1 (windows of padding alone) -> maxpool -> flatten -> linear."""
    rng = np.random.default_rng(seed)
    in_fmt = ir.ActFormat(4, False, 0)
    c1 = weight_layer(rng, "c1", "input", (2, 3, 4), in_fmt, 3,
                      conv=((1, 1), (1, 1), (1, 1)))
    mp = ir.MaxPool2d("mp", ("c1",), c1.out_shape, 2, 2, 0, c1.out_format)
    flat = ir.Flatten("flat", ("mp",), mp.out_shape, mp.out_format)
    fc = weight_layer(rng, "fc", "flat", flat.out_shape, flat.out_format, 3, last=True)
    return ir.Network(f"pointwise{seed}", (2, 3, 4), in_fmt, (c1, mp, flat, fc))


def check(net, *, n, seed, stalls, fifo_depth="auto"):
    fmt = net.input_format
    rng = np.random.default_rng(seed + 7)
    x = rng.integers(fmt.lo, fmt.hi, (n, *net.input_shape), endpoint=True)
    gold = golden.run(net, x)
    expected = expected_words(net, gold)["o_stream"]
    dut = NetworkTop(net, fifo_depth=fifo_depth)
    out, cycles = simulate_stream(dut, input_words(net, x), len(expected), seed=seed,
                                  valid_gap=stalls, ready_stall=stalls)
    assert None not in out, "extra output beat"
    out_fmt, classes = net.output.out_format, net.output.out_channels
    cls_bits = max(1, (classes - 1).bit_length())
    got_cls = np.array([w & ((1 << cls_bits) - 1) for w in out])
    got_logits = np.array([[((w >> (cls_bits + i * out_fmt.bits)) & ((1 << out_fmt.bits) - 1))
                            for i in range(classes)] for w in out])
    got_logits = np.where(got_logits >> (out_fmt.bits - 1), got_logits - (1 << out_fmt.bits),
                          got_logits)
    np.testing.assert_array_equal(got_logits, gold[net.output.name].reshape(n, -1))
    np.testing.assert_array_equal(got_cls, golden.predict(net, x))
    assert out == expected  # and the packed words themselves
    return cycles


MODES = ["max", "min", "auto", "auto_fast", "override"]


def fold(net, mode):
    """``auto_fast``: auto with the target of the slowest unfoldable stage (1/8 of the default),
    which folds these small layers only partly; ``override``: c2 with 2 of its 4 PEs and SIMD 3
    (its fan-in is C * 9), the others auto."""
    if mode == "auto_fast":
        return apply_folding(net, "auto", target_cycles=default_target(net) // 8)
    if mode == "override":
        return apply_folding(net, "c2=2:3")
    return apply_folding(net, mode)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("seed", range(3))
def test_random_chain(seed, mode):
    net = fold(random_chain(seed), mode)
    check(net, n=2, seed=seed, stalls=0.4 if (seed + MODES.index(mode)) % 2 else 0.0)


@pytest.mark.parametrize("mode", ["max", "min"])
def test_pointwise_conv_with_padding(mode):
    check(apply_folding(pointwise_padded_chain(5), mode), n=3, seed=5, stalls=0.4)


def test_random_chains_cover_the_folds():
    nets = {mode: [fold(random_chain(seed), mode) for seed in range(3)] for mode in MODES}
    for net in nets["max"]:
        assert all(lay.fold == ir.Fold(lay.out_channels, lay.fan_in)
                   for lay in net.weight_layers)
    for net in nets["min"]:
        assert all(lay.fold == ir.Fold(1, 1) for lay in net.weight_layers)
    folds = [(lay.fold, lay) for mode in ("auto_fast", "override") for net in nets[mode]
             for lay in net.weight_layers]
    assert any(f.pe > 1 and f.pe < lay.out_channels for f, lay in folds)
    assert any(f.simd > 1 and f.simd < lay.fan_in for f, lay in folds)


@pytest.mark.parametrize("fifo_depth", [0, 1, 4])
def test_chain_with_fifo_depths(fifo_depth):
    net = fold(random_chain(3), "auto_fast")
    check(net, n=2, seed=3, stalls=0.4, fifo_depth=fifo_depth)


@pytest.mark.parametrize("mode", ["max", "min"])
def test_vector_network(mode):
    net = apply_folding(vector_chain(4), mode)
    check(net, n=5, seed=4, stalls=0.4)


@pytest.mark.parametrize("seed, mode, fifo_depth", [(0, "min", "auto"), (2, "max", "auto"),
                                                    (2, "auto_fast", "auto"), (2, "min", 0)])
def test_steady_state_cycles(seed, mode, fifo_depth):
    """Without stalls, each further inference costs at least the slowest stage's cycles
    (``bottleneck_cycles`` is a lower bound); with FIFOs between layers it costs just that,
    for every folding (window generator and MVU are costed by replaying their handshake)."""
    net = fold(random_chain(seed), mode)
    slowest = bottleneck_cycles(net)
    assert slowest == max(layer_cycles(net).values())
    one = check(net, n=1, seed=seed, stalls=0.0, fifo_depth=fifo_depth)
    three = check(net, n=3, seed=seed, stalls=0.0, fifo_depth=fifo_depth)
    per_inference = (three - one) / 2
    assert per_inference >= slowest
    if fifo_depth:
        assert per_inference <= slowest * 1.05


# -- what has no hardware yet ------------------------------------------------------------------

def residual_net():
    net = random_chain(0)
    c1 = net.layer("c1")
    fmt = c1.out_format
    c1b = ir.Conv2d("c1b", ("c1",), fmt, np.ones((c1.out_channels, c1.out_channels, 1, 1)), 2,
                    0, np.zeros(c1.out_channels),
                    ir.Requant(np.ones(c1.out_channels), 0, fmt.lo, fmt.hi), fmt,
                    in_shape=c1.out_shape)
    res = ir.Add("res", ("c1", "c1b"), c1.out_shape, (fmt, fmt), fmt)
    mp = net.layer("mp")
    rest = [ir.MaxPool2d("mp", ("res",), mp.in_shape, mp.kernel, mp.stride, mp.padding,
                         mp.in_format)] + list(net.layers[2:])
    return ir.Network("residual", net.input_shape, net.input_format, (c1, c1b, res, *rest))


def test_plan_rejects_residual_add():
    with pytest.raises(UnsupportedLayerError,
                       match=r"^Layer 'res': only chains of layers have hardware so far "
                             r"\(it reads c1, c1b, not just 'c1b'\)$"):
        plan_stages(residual_net())
    with pytest.raises(UnsupportedLayerError, match=r"^Layer 'res': only chains"):
        NetworkTop(residual_net())


def truncated(net, last):
    """``net`` up to and including layer ``last``."""
    names = [layer.name for layer in net.layers]
    layers = net.layers[:names.index(last) + 1]
    tail = layers[-1]
    if isinstance(tail, (ir.Conv2d, ir.Linear)):  # make it a logits layer
        lo, hi = ir.accumulator_range(tail)
        fmt = ir.ActFormat(ir.signed_bits_for(int(lo.min()), int(hi.max())), True, 0)
        import dataclasses
        layers = (*layers[:-1], dataclasses.replace(tail, requant=None, out_format=fmt))
    return ir.Network("truncated", net.input_shape, net.input_format, layers)


@pytest.mark.parametrize("last", ["c1", "mp", "c2", "ap"])
def test_plan_rejects_a_network_not_ending_in_linear(last):
    net = truncated(random_chain(0), last)
    with pytest.raises(UnsupportedLayerError,
                       match=rf"^Layer '{last}': the last layer must be a linear layer "
                             rf"producing the logits$"):
        plan_stages(net)


def test_plan_rejects_a_network_ending_in_flatten():
    with pytest.raises(UnsupportedLayerError,
                       match=r"^Layer 'flat': a network may not end in a flatten$"):
        plan_stages(truncated(random_chain(0), "flat"))


def test_plan_names_stages_after_layers():
    net = apply_folding(random_chain(0), "max")
    stages = plan_stages(net)
    assert [(st.layer, st.role) for st in stages if st.role != "window"] == [
        ("c1", "mvu"), ("mp", "maxpool"), ("c2", "mvu"), ("ap", "avgpool"), ("fc", "mvu")]
    assert all(re.fullmatch(r"[a-z0-9]+", st.layer) for st in stages)
    top = NetworkTop(net, probes=True)
    assert list(top.probe_points()) == ["c1", "mp", "c2", "ap", "fc"]
    assert all(hasattr(top, f"probe_{name}") for name in top.probe_points())
