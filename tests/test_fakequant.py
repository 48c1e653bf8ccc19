"""The torch fake-quant path (:mod:`hwquant.quant.fakequant`) is bit-exact to the golden model
on every layer: on random IR networks exercising every layer type and epilogue, and on the
trained default model quantized at several widths. Its shadow weights train (STE)."""

import math

import numpy as np
import pytest
import torch

from hwquant import golden, ir
from hwquant.frontend import load_model
from hwquant.quant.fakequant import FakeQuantNetwork, fake_quantize
from hwquant.quant.fixed import quantize_fixed
from hwquant.quant.grid import quantize_to_grid


def _int(rng, lo, hi):
    """Uniform Python int in ``[lo, hi]``."""
    return int(rng.integers(lo, hi, endpoint=True))


def random_format(rng, *, signed=None, bits=(3, 8)):
    signed = bool(rng.integers(2)) if signed is None else signed
    return ir.ActFormat(_int(rng, *bits), signed, _int(rng, -2, 7))


def random_weight_layer(rng, name, src, in_shape, in_fmt, oc, *, conv=None, last=False,
                        out_fmt=None, relu=None):
    """A Conv2d (``conv=(kernel, stride, padding)``) or Linear with random integer weights,
    bias, per-channel multipliers (some != 1, some negative) and a shift that keeps outputs
    spread over the output range (with some saturation)."""
    wbits = _int(rng, 2, 8)
    fan_shape = (in_shape[0], *conv[0]) if conv else (in_shape[0],)
    weight = rng.integers(-(1 << (wbits - 1)), 1 << (wbits - 1), (oc, *fan_shape))
    wf = _int(rng, -2, 7)
    lo, hi = ir.matrix_range(weight.reshape(oc, -1), np.zeros(oc, dtype=np.int64), in_fmt)
    span = int(max(-lo.min(), hi.max(), 1))
    bias = rng.integers(-span // 4 - 1, span // 4 + 1, oc)
    common = {"name": name, "inputs": (src,), "in_format": in_fmt, "weight": weight,
              "weight_bits": wbits, "weight_frac": wf, "bias": bias}
    if last:
        lo, hi = ir.matrix_range(weight.reshape(oc, -1), bias, in_fmt)
        out_fmt = ir.ActFormat(ir.signed_bits_for(int(lo.min()), int(hi.max())), True,
                               in_fmt.frac + wf)
        requant = None
    else:
        relu = bool(rng.integers(2)) if relu is None else relu
        out_fmt = out_fmt or random_format(rng, signed=None if relu else True)
        kind = _int(rng, 0, 2)
        mult = (np.ones(oc, dtype=np.int64) if kind == 0
                else rng.integers(1, 12, oc) if kind == 1
                else rng.choice([-5, -3, -1, 1, 2, 3, 7, 13], oc))
        # Random inputs sum like sqrt(fan-in); aim the shift at that, give or take.
        typical = span * int(np.abs(mult).max()) / math.sqrt(weight[0].size)
        shift = int(max(typical, 1)).bit_length() - out_fmt.bits + _int(rng, -1, 2)
        if rng.random() < 0.2:  # a left shift (saturates often, but must still be exact)
            shift = -_int(rng, 1, 2)
        requant = ir.Requant(mult, shift, 0 if relu else out_fmt.lo, out_fmt.hi)
    if conv:
        _, stride, padding = conv
        return ir.Conv2d(**common, epilogue=requant, out_format=out_fmt, in_shape=in_shape,
                         stride=stride, padding=padding)
    return ir.Linear(**common, epilogue=requant, out_format=out_fmt)


def pool_geometry(rng, shape, *, pow2=None):
    """Random kernel, stride and padding (at most half the kernel) fitting ``shape``."""
    _, h, w = shape
    while True:
        kernel = (_int(rng, 1, min(3, h)), _int(rng, 1, min(3, w)))
        if pow2 is not None:
            n = kernel[0] * kernel[1]
            if pow2 != (n & (n - 1) == 0):
                continue
        stride = (_int(rng, 1, 2), _int(rng, 1, 2))
        padding = (_int(rng, 0, kernel[0] // 2), _int(rng, 0, kernel[1] // 2))
        return kernel, stride, padding


def avg_requant(window, relu, fmt):
    """The rule of docs/arithmetic.md: M = 1 for power-of-two windows, else 15 + ceil(log2 n)
    bits of shift and M = RHU(2**shift / n)."""
    if window & (window - 1) == 0:
        return ir.Requant([1], window.bit_length() - 1, 0 if relu else fmt.lo, fmt.hi)
    shift = 15 + math.ceil(math.log2(window))
    return ir.Requant([(2 ** (shift + 1) + window) // (2 * window)], shift,
                      0 if relu else fmt.lo, fmt.hi)


def random_network(seed, *, avg_out_format=None):
    """conv (any geometry) -> conv 3x3 -> residual add -> maxpool -> avgpool -> flatten ->
    linear -> linear (logits), every format and parameter drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    in_fmt = random_format(rng, signed=bool(seed % 2), bits=(4, 8))
    shape = (_int(rng, 1, 3), _int(rng, 6, 9), _int(rng, 6, 9))
    layers = []

    kernel = (_int(rng, 1, 3), _int(rng, 1, 3))
    conv = (kernel, (_int(rng, 1, 2), _int(rng, 1, 2)), (_int(rng, 0, 2), _int(rng, 0, 1)))
    c1 = random_weight_layer(rng, "c1", "input", shape, in_fmt, _int(rng, 2, 4), conv=conv)
    c2 = random_weight_layer(rng, "c2", "c1", c1.out_shape, c1.out_format, c1.out_channels,
                             conv=((3, 3), (1, 1), (1, 1)), relu=False,
                             out_fmt=ir.ActFormat(_int(rng, 4, 8), True,
                                                  c1.out_format.frac + _int(rng, -3, 3)))
    add_relu = bool(rng.integers(2))
    res = ir.Add("res", ("c1", "c2"), c1.out_shape, (c1.out_format, c2.out_format),
                 random_format(rng, signed=None if add_relu else True), relu=add_relu)
    layers += [c1, c2, res]

    k, s, p = pool_geometry(rng, res.out_shape)
    mp = ir.MaxPool2d("mp", ("res",), res.out_shape, k, s, p, res.out_format)
    k, s, p = pool_geometry(rng, mp.out_shape, pow2=bool(seed % 3 == 0))
    ap_relu = bool(rng.integers(2))
    ap_fmt = avg_out_format or mp.out_format
    ap = ir.AvgPool2d("ap", ("mp",), mp.out_shape, k, s, p, mp.out_format, out_format=ap_fmt,
                      requant=avg_requant(k[0] * k[1], ap_relu, ap_fmt))
    flat = ir.Flatten("flat", ("ap",), ap.out_shape, ap.out_format)
    layers += [mp, ap, flat]

    fc1 = random_weight_layer(rng, "fc1", "flat", flat.out_shape, flat.out_format,
                              _int(rng, 3, 6))
    fc2 = random_weight_layer(rng, "fc2", "fc1", fc1.out_shape, fc1.out_format,
                              _int(rng, 2, 5), last=True)
    layers += [fc1, fc2]
    return ir.Network(f"random{seed}", shape, in_fmt, tuple(layers))


def random_inputs(net, n, seed):
    fmt = net.input_format
    rng = np.random.default_rng(seed + 1000)
    x = rng.integers(fmt.lo, fmt.hi, (n, *net.input_shape), endpoint=True)
    x[0], x[1] = fmt.lo, fmt.hi  # the format's extremes everywhere
    return x


def assert_all_layers_equal(net, fq_out, gold):
    assert set(fq_out) == set(gold)
    for name in [ir.INPUT] + [layer.name for layer in net.layers]:
        assert fq_out[name].dtype == np.int64
        np.testing.assert_array_equal(fq_out[name], gold[name], err_msg=f"layer '{name}'")


SEEDS = range(10)


@pytest.mark.parametrize("seed", SEEDS)
def test_random_network_matches_golden(seed):
    net = random_network(seed)
    x = random_inputs(net, 24, seed)
    assert_all_layers_equal(net, FakeQuantNetwork(net).integer_outputs(x), golden.run(net, x))


def test_random_networks_cover_every_feature():
    """The seeds above really exercise what they are meant to."""
    nets = [random_network(seed) for seed in SEEDS]
    assert {n.input_format.signed for n in nets} == {False, True}
    assert any(n.layer("c1").padding != (0, 0) for n in nets)
    assert any(n.layer("c1").stride != (1, 1) for n in nets)
    assert any(n.layer("c1").kernel[0] != n.layer("c1").kernel[1] for n in nets)
    assert any(not n.layer(c).requant.is_shift_only for n in nets for c in ("c1", "c2", "fc1"))
    assert any(n.layer(c).requant.shift < 0 for n in nets for c in ("c1", "c2", "fc1"))
    fracs = [tuple(f.frac for f in n.layer("res").in_formats) for n in nets]
    assert any(a != b for a, b in fracs)
    assert {n.layer("res").relu for n in nets} == {False, True}
    assert any(n.layer("mp").padding != (0, 0) for n in nets)
    assert any(int(n.layer("ap").requant.multiplier[0]) != 1 for n in nets)
    assert any(int(n.layer("ap").requant.multiplier[0]) == 1 for n in nets)
    assert all(n.output.requant is None for n in nets)


@pytest.mark.parametrize("seed", [0, 3, 5])
def test_avgpool_with_its_own_output_format(seed):
    """An AvgPool2d may requantize into a format other than its input's (the IR allows it):
    the integers follow the requant and the output format's scale."""
    base = random_network(seed)
    mp_fmt = base.layer("mp").out_format
    other = ir.ActFormat(mp_fmt.bits + 2, mp_fmt.signed, mp_fmt.frac + 3)
    net = random_network(seed, avg_out_format=other)
    x = random_inputs(net, 16, seed)
    assert_all_layers_equal(net, FakeQuantNetwork(net).integer_outputs(x), golden.run(net, x))


@pytest.mark.parametrize("seed", [1, 2])
def test_float_input_is_quantized_to_the_input_grid(seed):
    net = random_network(seed)
    fmt = net.input_format
    rng = np.random.default_rng(seed)
    # Off-grid values, exact halves and out-of-range values.
    x = rng.uniform(fmt.lo - 4, fmt.hi + 4, (12, *net.input_shape)) * 2.0 ** -fmt.frac
    x[0] = (fmt.lo + 0.5) * 2.0 ** -fmt.frac
    x[1] = (fmt.hi - 0.5) * 2.0 ** -fmt.frac
    x_int = quantize_to_grid(x, fmt.frac, fmt.lo, fmt.hi)
    gold = golden.run(net, x_int)
    with torch.no_grad():
        out = FakeQuantNetwork(net)(torch.from_numpy(x))
    for name, v in out.items():
        ints = v.numpy() * 2.0 ** net.format_of(name).frac
        np.testing.assert_array_equal(ints, gold[name], err_msg=f"layer '{name}'")


def test_golden_run_batches_and_checks_its_input():
    net = random_network(3)
    x = random_inputs(net, 10, 3)
    whole, parts = golden.run(net, x), golden.run(net, x, batch_size=3)
    for name in whole:
        np.testing.assert_array_equal(parts[name], whole[name], err_msg=name)
    fmt = net.input_format
    with pytest.raises(TypeError, match=r"^Golden model input must be an integer array, "
                                        r"not float64$"):
        golden.run(net, x.astype(np.float64))
    with pytest.raises(ValueError, match=r"^Input batch must have shape \(N, \d+, \d+, \d+\), "
                                         r"not \(10, 1\)$"):
        golden.run(net, x.reshape(10, -1)[:, :1])
    bad = x.copy()
    bad[3, 0, 0, 0] = fmt.hi + 1
    with pytest.raises(ValueError, match=rf"^Input values must lie in \[{fmt.lo}, {fmt.hi}\], "
                                         rf"not \[{fmt.lo}, {fmt.hi + 1}\]$"):
        golden.run(net, bad)


def test_fake_quantize_rounds_half_up_and_saturates():
    x = torch.tensor([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 100.0, -100.0], dtype=torch.float64)
    np.testing.assert_array_equal(fake_quantize(x, 0, -8, 7).numpy(),
                                  [-2, -1, 0, 1, 2, 3, 7, -8])
    np.testing.assert_array_equal(fake_quantize(x, 1, -8, 7).numpy() * 2,
                                  [-5, -3, -1, 1, 3, 5, 7, -8])


# -- the trained default model -----------------------------------------------------------------

@pytest.fixture(scope="module")
def default_graph(trained_default_pt2):
    return load_model(trained_default_pt2)


@pytest.mark.parametrize("wbits, abits", [(8, 8), (4, 6), (3, 3)])
def test_trained_model_matches_golden(default_graph, digits, wbits, abits):
    net = quantize_fixed(default_graph, digits.x_train[:256], wbits=wbits, abits=abits)
    fmt = net.input_format
    x = quantize_to_grid(digits.x_test, fmt.frac, fmt.lo, fmt.hi)
    gold = golden.run(net, x)
    assert_all_layers_equal(net, FakeQuantNetwork(net).integer_outputs(x), gold)
    # Not degenerate: the logits are not all equal.
    assert len(np.unique(golden.predict(net, x))) > 1


# -- shadow weights (quantization-aware training) ---------------------------------------------

def shadow_weights(net, offset=0.0):
    return {layer.name: (layer.weight + offset) * 2.0 ** -layer.weight_frac
            for layer in net.weight_layers}


@pytest.mark.parametrize("seed", [0, 1, 4])
def test_shadow_weights_forward_equals_ir(seed):
    net = random_network(seed)
    x = random_inputs(net, 16, seed)
    gold = golden.run(net, x)
    for offset in (0.0, 0.49, -0.49):  # within half an LSB: the same integers
        fq = FakeQuantNetwork(net, weights=shadow_weights(net, offset))
        assert set(fq.shadow) == {layer.name for layer in net.weight_layers}
        assert_all_layers_equal(net, fq.integer_outputs(x), gold)


def test_shadow_weights_saturate_to_weight_range():
    net = random_network(2)
    x = random_inputs(net, 8, 2)
    rng = np.random.default_rng(0)
    far = {}
    clamped = net
    for layer in net.weight_layers:
        hi = (1 << (layer.weight_bits - 1)) - 1
        big = rng.choice([-3.0, 3.0], layer.weight.shape) * (hi + 1)
        far[layer.name] = np.where(rng.random(layer.weight.shape) < 0.3, big, layer.weight)
        clamped = clamped.replace_layer(
            layer.name, weight=np.clip(far[layer.name], -hi - 1, hi).astype(np.int64))
    far = {k: v * 2.0 ** -net.layer(k).weight_frac for k, v in far.items()}
    out = FakeQuantNetwork(net, weights=far).integer_outputs(x)
    assert_all_layers_equal(net, out, golden.run(clamped, x))


@pytest.mark.parametrize("seed", [0, 1])
def test_shadow_weights_get_gradients(seed):
    net = random_network(seed)
    fq = FakeQuantNetwork(net, weights=shadow_weights(net))
    fmt = net.input_format
    x = torch.from_numpy(random_inputs(net, 8, seed) * 2.0 ** -fmt.frac)
    logits = fq(x)[net.output.name]
    loss = torch.nn.functional.cross_entropy(logits, torch.arange(8) % logits.shape[1])
    loss.backward()
    for name, param in fq.shadow.items():
        assert param.grad is not None, name
        assert param.grad.shape == param.shape
        assert torch.isfinite(param.grad).all(), name
        assert (param.grad != 0).any(), f"layer '{name}' gets no gradient"
    # The straight-through estimator: d fake_quantize / dx = 1 everywhere, even when clamped.
    w = torch.tensor([-9.3, -0.2, 0.26, 5.0], dtype=torch.float64, requires_grad=True)
    fake_quantize(w, 2, -4, 3).sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), [1.0, 1.0, 1.0, 1.0])
