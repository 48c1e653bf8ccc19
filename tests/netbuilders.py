"""Random IR networks for the hardware tests: chains, vector MLPs and residual networks
(identity and projection skips), with random weights, per-channel requantization and
formats. Shared by the Amaranth-level and Verilator-level network tests."""

import dataclasses
import math

import numpy as np

from hwquant import ir

__all__ = ["weight_layer", "avg_requant", "random_chain", "vector_chain",
           "pointwise_padded_chain", "residual_net", "input_residual_net", "truncated",
           "add_layer", "binary_thresholds", "binary_linear", "binary_chain", "binary_mlp"]


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
        return ir.Conv2d(**common, epilogue=requant, out_format=out_fmt, in_shape=in_shape,
                         stride=conv[1], padding=conv[2])
    return ir.Linear(**common, epilogue=requant, out_format=out_fmt)


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


def add_layer(name, a, b, fmt_out=None, *, relu=True):
    """Residual add of IR layers ``a`` and ``b`` (same shape)."""
    fa, fb = a.out_format, b.out_format
    out = fmt_out or ir.ActFormat(max(fa.bits, fb.bits), not relu, min(fa.frac, fb.frac))
    return ir.Add(name, (a.name, b.name), a.out_shape, (fa, fb), out, relu=relu)


def residual_net(seed, *, channels=(4, 6), shape=(2, 6, 6)):
    """stem conv -> identity block (conv, conv, add+ReLU) -> projection block (stride-2
    conv, conv; 1x1 stride-2 projection on the skip; add+ReLU) -> global avg pool ->
    flatten -> linear (logits)."""
    rng = np.random.default_rng(seed)
    in_fmt = ir.ActFormat(4, bool(seed % 2), 2)
    c0, c1 = channels
    same = ((3, 3), (1, 1), (1, 1))
    stem = weight_layer(rng, "stem", "input", shape, in_fmt, c0, conv=same)
    a1 = weight_layer(rng, "b1a", "stem", stem.out_shape, stem.out_format, c0, conv=same)
    b1 = weight_layer(rng, "b1b", "b1a", a1.out_shape, a1.out_format, c0, conv=same)
    add1 = add_layer("add1", stem, b1)
    a2 = weight_layer(rng, "b2a", "add1", add1.out_shape, add1.out_format, c1,
                      conv=((3, 3), (2, 2), (1, 1)))
    b2 = weight_layer(rng, "b2b", "b2a", a2.out_shape, a2.out_format, c1, conv=same)
    proj = weight_layer(rng, "proj", "add1", add1.out_shape, add1.out_format, c1,
                        conv=((1, 1), (2, 2), (0, 0)))
    add2 = add_layer("add2", b2, proj)
    k = add2.out_shape[1:]
    gap = ir.AvgPool2d("gap", ("add2",), add2.out_shape, k, k, 0, add2.out_format,
                       out_format=add2.out_format,
                       requant=avg_requant(k[0] * k[1], add2.out_format))
    flat = ir.Flatten("flat", ("gap",), gap.out_shape, gap.out_format)
    fc = weight_layer(rng, "fc", "flat", flat.out_shape, flat.out_format, 3, last=True)
    return ir.Network(f"resnet{seed}", shape, in_fmt,
                      (stem, a1, b1, add1, a2, b2, proj, add2, gap, flat, fc))


def input_residual_net(seed, shape=(2, 5, 5)):
    """A residual block straight on the network input (the input is forked): input + conv 3x3
    (same channels) -> ReLU -> flatten -> linear (logits)."""
    rng = np.random.default_rng(seed)
    in_fmt = ir.ActFormat(4, bool(seed % 2), 1)
    c1 = weight_layer(rng, "c1", "input", shape, in_fmt, shape[0],
                      conv=((3, 3), (1, 1), (1, 1)))
    out = ir.ActFormat(5, False, min(in_fmt.frac, c1.out_format.frac))
    res = ir.Add("res", ("input", "c1"), shape, (in_fmt, c1.out_format), out, relu=True)
    flat = ir.Flatten("flat", ("res",), shape, out)
    fc = weight_layer(rng, "fc", "flat", flat.out_shape, out, 3, last=True)
    return ir.Network(f"inres{seed}", shape, in_fmt, (c1, res, flat, fc))


def truncated(net, last):
    """``net`` up to and including layer ``last``."""
    names = [layer.name for layer in net.layers]
    layers = net.layers[:names.index(last) + 1]
    tail = layers[-1]
    if isinstance(tail, (ir.Conv2d, ir.Linear)):  # make it a logits layer
        lo, hi = ir.accumulator_range(tail)
        fmt = ir.ActFormat(ir.signed_bits_for(int(lo.min()), int(hi.max())), True, 0)
        layers = (*layers[:-1], dataclasses.replace(tail, epilogue=ir.Logits(), out_format=fmt))
    return ir.Network("truncated", net.input_shape, net.input_format, layers)


# -- binary (BNN) networks ----------------------------------------------------------------------

def binary_thresholds(rng, acc_lo, acc_hi, count, oc):
    """Random :class:`ir.Thresholds` inside ``[acc_lo, acc_hi]`` (non-decreasing rows), mixed
    directions, and channel 0 constant (every threshold below the range: all passed)."""
    t = np.sort(rng.integers(acc_lo, acc_hi + 1, (oc, count)), axis=1)
    t[0] = acc_lo - 1
    direction = rng.choice([-1, 1], oc)
    direction[0] = 1
    return ir.Thresholds(t, direction)


def binary_linear(rng, oc, fan_in, in_fmt, epilogue, *, fold=None, name="fc", src="input"):
    """A binary linear layer (weights -1/+1) on ``in_fmt`` with epilogue ``"thresholds"``
    (bipolar output), ``"multi"`` (3 thresholds, 2-bit output), ``"requant"`` or ``"logits"``."""
    w = rng.choice([-1, 1], (oc, fan_in))
    bias = rng.integers(-3, 4, oc)
    lo, hi = ir.matrix_range(w, bias, in_fmt)
    lo, hi = int(lo.min()), int(hi.max())
    if epilogue == "thresholds":
        ep, out = binary_thresholds(rng, lo, hi, 1, oc), ir.BIPOLAR
    elif epilogue == "multi":
        ep, out = binary_thresholds(rng, lo, hi, 3, oc), ir.ActFormat(2, False, 0)
    elif epilogue == "requant":
        out = ir.ActFormat(4, True, 0)
        ep = ir.Requant(rng.integers(1, 4, oc), max(1, (hi - lo).bit_length() - 3), out.lo,
                        out.hi)
    else:
        ep, out = ir.Logits(), ir.ActFormat(ir.signed_bits_for(lo, hi), True, 0)
    return ir.Linear(name, (src,), in_fmt, w, 1, 0, bias, ep, out, encoding="binary",
                     fold=ir.Fold(*fold) if fold else ir.Fold())


def _binary_conv(rng, name, src, in_shape, in_fmt, oc, kernel, padding, count=1):
    w = rng.choice([-1, 1], (oc, in_shape[0], kernel, kernel))
    bias = rng.integers(-2, 3, oc)
    lo, hi = ir.matrix_range(w.reshape(oc, -1), bias, in_fmt)
    ep = binary_thresholds(rng, int(lo.min()) // 2, int(hi.max()) // 2, count, oc)
    out = ir.BIPOLAR if count == 1 else ir.ActFormat(count.bit_length(), False, 0)
    return ir.Conv2d(name, (src,), in_fmt, w, 1, 0, bias, ep, out, encoding="binary",
                     in_shape=in_shape, padding=padding)


def binary_chain(seed, *, fold="auto"):
    """A small BNN: multi-bit input -> binary conv 3x3 pad 1 (thresholds, bipolar out; the
    first layer's add/subtract tree) -> max pool 2 -> binary conv 3x3 pad 1 on bipolar maps
    (padding is -1) -> flatten -> binary linear (logits). Odd channel counts; folded by
    ``fold`` (:func:`hwquant.fold.apply_folding`)."""
    from hwquant.fold import apply_folding

    rng = np.random.default_rng(seed)
    in_fmt = ir.ActFormat(4, bool(seed % 2), 0)
    shape = (1 + seed % 2, 6, 6)
    c1 = _binary_conv(rng, "c1", "input", shape, in_fmt, 3 + seed % 2, 3, 1)
    mp = ir.MaxPool2d("mp", ("c1",), c1.out_shape, 2, 2, 0, c1.out_format)
    c2 = _binary_conv(rng, "c2", "mp", mp.out_shape, mp.out_format, 5, 3, 1)
    flat = ir.Flatten("flat", ("c2",), c2.out_shape, c2.out_format)
    fc = binary_linear(rng, 3, flat.out_shape[0], flat.out_format, "logits", name="fc",
                       src="flat")
    net = ir.Network(f"bnn{seed}", shape, in_fmt, (c1, mp, c2, flat, fc))
    return apply_folding(net, fold)


def binary_mlp(seed, *, fold="auto", sizes=(12, 10, 6, 4)):
    """A BNN MLP on a vector input (linear only): multi-bit input -> binary linear (1
    threshold: bipolar) -> binary linear (3 thresholds: 2-bit) -> binary linear on the 2-bit
    codes (add/subtract; 1 threshold) -> binary linear (logits)."""
    from hwquant.fold import apply_folding

    rng = np.random.default_rng(seed)
    in_fmt = ir.ActFormat(3, True, 0)
    n0, n1, n2, n3 = sizes
    fc1 = binary_linear(rng, n1, n0, in_fmt, "thresholds", name="fc1")
    fc2 = binary_linear(rng, n2, n1, fc1.out_format, "multi", name="fc2", src="fc1")
    fc3 = binary_linear(rng, n3, n2, fc2.out_format, "thresholds", name="fc3", src="fc2")
    fc4 = binary_linear(rng, 3, n3, fc3.out_format, "logits", name="fc4", src="fc3")
    net = ir.Network(f"bmlp{seed}", (n0,), in_fmt, (fc1, fc2, fc3, fc4))
    return apply_folding(net, fold)
