"""Random IR networks for the hardware tests: chains, vector MLPs and residual networks
(identity and projection skips), with random weights, per-channel requantization and
formats. Shared by the Amaranth-level and Verilator-level network tests. Also the single
layers and small networks of the other weight kinds (pow2, template, bdcnn, memo) that
several test modules build, the ``.hwq`` tests' networks and their deep IR comparison."""

import dataclasses
import math

import numpy as np

from hwquant import ir

__all__ = ["weight_layer", "avg_requant", "random_chain", "vector_chain",
           "pointwise_padded_chain", "residual_net", "input_residual_net", "truncated",
           "add_layer", "binary_thresholds", "binary_linear", "binary_chain", "binary_mlp",
           "random_pow2_weights", "pow2_linear", "template_layer", "random_bdcnn_layer",
           "sample_bdcnn_layer", "sample_conv_linear_net", "few_valued_net", "FEW_VALUED_FOLD",
           "tiny_net", "rich_network", "assert_same"]


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


# -- single layers of the other weight kinds -------------------------------------------------

def random_pow2_weights(rng, shape, bits, scales=(1, 1), zeros=0.25):
    """Valid pow2 integer weights: ``0``, ``+P * 2**e``, ``-N * 2**e``, every exponent."""
    emax = (1 << (bits - 2)) - 1
    e = rng.integers(0, emax + 1, shape)
    w = np.where(rng.integers(0, 2, shape) == 1, -(scales[1] << e), scales[0] << e)
    w[rng.random(shape) < zeros] = 0
    return w


def pow2_linear(w, bits, in_fmt, *, scales=(1, 1), fold=None, requant=None, out_fmt=None):
    """A pow2 linear layer ``fc`` of weights ``w`` (logits of the exact range unless
    ``requant`` and ``out_fmt`` are given), fully unrolled unless ``fold``."""
    w = np.asarray(w)
    if out_fmt is None:
        lo, hi = ir.matrix_range(w, np.zeros(len(w), dtype=np.int64), in_fmt)
        out_fmt = ir.ActFormat(ir.signed_bits_for(int(lo.min()), int(hi.max())), True, 0)
    return ir.Linear("fc", ("input",), in_fmt, w, bits, 0, np.zeros(len(w), dtype=np.int64),
                     requant, out_fmt, encoding="pow2", kind_data=ir.Pow2Data(scales),
                     fold=fold or ir.Fold(len(w), w.shape[1]))


_U4 = ir.ActFormat(4, False, 0)


def template_layer(rng, *, ic=2, ids=(3, -1, 24, -1), signs=(1, 1, -1, 1), wbits=4,
                   in_fmt=_U4, fold=None, requant=True):
    """A 3x3 conv over an ``ic x 3 x 3`` input (one output pixel) mixing templates and
    fixed channels."""
    from hwquant.templates import masks

    oc = len(ids)
    w = rng.integers(-(1 << (wbits - 1)), 1 << (wbits - 1), (oc, ic, 3, 3))
    for c, (t, s) in enumerate(zip(ids, signs, strict=True)):
        if t >= 0:
            w[c] = s * (2 * masks()[t] - 1)
    lo, hi = ir.matrix_range(w.reshape(oc, -1), np.zeros(oc, dtype=np.int64), in_fmt)
    if requant:
        out_fmt = ir.ActFormat(5, True, 0)
        epi = ir.Requant(rng.integers(1, 9, oc), 3, out_fmt.lo, out_fmt.hi)
    else:
        out_fmt = ir.ActFormat(ir.signed_bits_for(int(lo.min()), int(hi.max())), True, 0)
        epi = None
    return ir.Conv2d("conv", ("input",), in_fmt, w, wbits, 0, rng.integers(-9, 9, oc), epi,
                     out_fmt, encoding="template",
                     kind_data=ir.TemplateData(ids, signs), fold=fold or ir.Fold(oc, ic * 9),
                     in_shape=(ic, 3, 3))


def random_bdcnn_layer(rng, fmt, *, oc=3, ic=2, k=2, conv=True, padding=1):
    """A random bdcnn layer ``l`` (K = ``k`` bases, static range, logits): a 3x3 conv over an
    ``ic x 4 x 4`` input, or a linear layer of ``ic * 9`` inputs."""
    from hwquant.bdcnn import sign_patterns

    c = rng.integers(-8, 8, size=(oc, k))
    shape = (oc, ic, 3, 3) if conv else (oc, ic * 9)
    pat = rng.integers(0, 1 << k, size=(oc, int(np.prod(shape[1:]))))
    w = np.take_along_axis(c @ sign_patterns(k).T, pat, axis=1).reshape(shape)
    data = ir.BdcnnData(basis=k, qbits=fmt.bits, coef_bits=4,
                        coefficients=tuple(map(tuple, c.tolist())))
    common = {"name": "l", "inputs": ("input",), "in_format": fmt, "weight": w,
              "weight_bits": 8, "weight_frac": 0, "bias": np.zeros(oc, dtype=np.int64),
              "epilogue": ir.Logits(), "out_format": ir.ActFormat(24, True, 0),
              "encoding": "bdcnn", "kind_data": data}
    if conv:
        return ir.Conv2d(in_shape=(ic, 4, 4), padding=(padding, padding), **common)
    return ir.Linear(**common)


def sample_bdcnn_layer(rng, fmt, qbits, **kw):
    """:func:`random_bdcnn_layer` with the per-sample range: ``fmt`` input quantized to
    ``qbits``-bit codes per sample."""
    base = random_bdcnn_layer(rng, ir.ActFormat(qbits, fmt.signed, 0), **kw)
    fields = {k: getattr(base, k) for k in ("name", "inputs", "weight", "weight_bits",
                                            "weight_frac", "bias", "epilogue", "encoding")}
    fields["out_format"] = ir.ActFormat(24, True, fmt.frac + base.weight_frac)  # logits
    data = ir.BdcnnData(basis=base.kind_data.basis, qbits=qbits, coef_bits=4,
                        coefficients=base.kind_data.coefficients, range="sample")
    extra = {"in_shape": base.in_shape, "padding": base.padding} \
        if isinstance(base, ir.Conv2d) else {}
    return type(base)(**{**fields, **extra, "in_format": fmt, "kind_data": data})


def _bdcnn_weights(rng, shape, k):
    from hwquant.bdcnn import sign_patterns

    c = rng.integers(-8, 8, size=(shape[0], k))
    pat = rng.integers(0, 1 << k, size=(shape[0], int(np.prod(shape[1:]))))
    w = np.take_along_axis(c @ sign_patterns(k).T, pat, axis=1).reshape(shape)
    return w, ir.BdcnnData(basis=k, qbits=4, coef_bits=4,
                           coefficients=tuple(map(tuple, c.tolist())), range="sample")


def sample_conv_linear_net(fold_conv, fold_fc):
    """A signed padded 3x3 conv (2 -> 4 channels, 4x4) into flatten + linear (3 classes),
    both bdcnn with the per-sample range."""
    rng = np.random.default_rng(2)
    fmt, mid = ir.ActFormat(6, True, 1), ir.ActFormat(8, True, 0)
    w1, d1 = _bdcnn_weights(rng, (4, 2, 3, 3), 3)
    conv = ir.Conv2d("conv", ("input",), fmt, w1, 8, 0, np.zeros(4, dtype=np.int64),
                     ir.Requant([1] * 4, 4, mid.lo, mid.hi), mid, in_shape=(2, 4, 4),
                     padding=(1, 1), encoding="bdcnn", kind_data=d1, fold=ir.Fold(*fold_conv))
    flat = ir.Flatten("flat", ("conv",), (4, 4, 4), mid)
    w2, d2 = _bdcnn_weights(rng, (3, 64), 2)
    fc = ir.Linear("fc", ("flat",), mid, w2, 8, 0, np.arange(3), ir.Logits(),
                   ir.ActFormat(24, True, 0), encoding="bdcnn", kind_data=d2,
                   fold=ir.Fold(*fold_fc))
    return ir.Network("n", (2, 4, 4), fmt, (conv, flat, fc))


# -- small whole networks --------------------------------------------------------------------

def few_valued_net(seed=0):
    """A strided conv stem whose channels hold two weight values each, max pool, flatten and a
    linear head of the values -1, 0, 2: the ``memo`` engine's network."""
    rng = np.random.default_rng(seed)
    in_fmt = ir.ActFormat(4, True, 2)
    shape = (3, 9, 7)
    stem = weight_layer(rng, "stem", "input", shape, in_fmt, 5, conv=((3, 3), (2, 2), (1, 1)))
    ab = np.array([[3, -5], [6, -2], [-7, 1], [5, 2], [-3, 7]])
    pick = rng.integers(0, 2, stem.weight.shape) == 1
    w = np.where(pick, ab[:, 0, None, None, None], ab[:, 1, None, None, None])
    stem = dataclasses.replace(stem, weight=w, weight_bits=4)
    mp = ir.MaxPool2d("mp", ("stem",), stem.out_shape, 2, 2, 0, stem.out_format)
    flat = ir.Flatten("flat", ("mp",), mp.out_shape, mp.out_format)
    head = weight_layer(rng, "head", "flat", flat.out_shape, flat.out_format, 3, last=True)
    hw = rng.choice([-1, 0, 0, 2], head.weight.shape)
    lo, hi = ir.matrix_range(hw, head.bias, head.in_format)
    out = ir.ActFormat(ir.signed_bits_for(int(lo.min()), int(hi.max())), True,
                       head.out_format.frac)
    head = dataclasses.replace(head, weight=hw, weight_bits=3, out_format=out)
    return ir.Network("few", shape, in_fmt, (stem, mp, flat, head))


#: The ``--fold`` of :func:`few_valued_net` in its compile tests.
FEW_VALUED_FOLD = "stem=5:9,head=1:10"


def tiny_net():
    """An 8-bit 3x3 padded conv (4 channels, 6x6) -> flatten -> linear (3 classes)."""
    rng = np.random.default_rng(0)
    fin, fo = ir.ActFormat(8, False, 7), ir.ActFormat(8, False, 4)
    conv = ir.Conv2d(name="conv1", inputs=("input",), in_format=fin,
                     weight=rng.integers(-127, 128, (4, 1, 3, 3)), weight_bits=8, weight_frac=7,
                     bias=rng.integers(-50, 50, 4), epilogue=ir.Requant(np.ones(4), 10, 0, 255),
                     out_format=fo, in_shape=(1, 6, 6), padding=1)
    flat = ir.Flatten("flat", ("conv1",), (4, 6, 6), fo)
    fc = ir.Linear(name="fc", inputs=("flat",), in_format=fo,
                   weight=rng.integers(-127, 128, (3, 144)), weight_bits=8, weight_frac=7,
                   bias=np.zeros(3), epilogue=ir.Logits(), out_format=ir.ActFormat(24, True, 11))
    return ir.Network("tiny", (1, 6, 6), fin, (conv, flat, fc))


_S8 = ir.ActFormat(8, True, 5)
_U6 = ir.ActFormat(6, False, 2)
_S5 = ir.ActFormat(5, True, -1)


def rich_network():
    """One layer of every IR type and epilogue type, with non-default folds, multipliers,
    strides and formats."""
    rng = np.random.default_rng(7)

    def rq(n, shift, fmt, relu=False, mult=None):
        mult = np.ones(n, dtype=np.int64) if mult is None else mult
        return ir.Requant(mult, shift, 0 if relu else fmt.lo, fmt.hi)

    c1 = ir.Conv2d("c1", ("input",), _S8, rng.integers(-8, 8, (4, 2, 3, 2)), 4, 3,
                   rng.integers(-300, 300, 4), rq(4, 7, _U6, True, np.array([1, 3, 2, 5])), _U6,
                   fold=ir.Fold(2, 3), in_shape=(2, 7, 6), stride=(1, 2), padding=(1, 0))
    thresholds = ir.Thresholds(np.sort(rng.integers(-40, 40, (4, 3)), axis=1), [1, -1, 1, 1])
    c2 = ir.Conv2d("c2", ("c1",), _U6, rng.integers(-2, 2, (4, 4, 1, 1)), 2, 1,
                   np.zeros(4), thresholds, _S5, in_shape=(4, 7, 3))
    add = ir.Add("res", ("c1", "c2"), (4, 7, 3), (_U6, _S5), _U6, relu=True)
    mp = ir.MaxPool2d("mp", ("res",), (4, 7, 3), (3, 2), (2, 1), (1, 1), _U6)
    ap = ir.AvgPool2d("ap", ("mp",), (4, 4, 4), 3, 1, 1, _U6, out_format=_U6,
                      requant=ir.Requant([3641], 15, 0, _U6.hi))
    flat = ir.Flatten("flat", ("ap",), (4, 4, 4), _U6)
    fc1 = ir.Linear("fc1", ("flat",), _U6, rng.integers(-128, 128, (6, 64)), 8, 6,
                    rng.integers(-1000, 1000, 6), rq(6, 4, _S8), _S8, fold=ir.Fold(3, 16))
    w2 = rng.integers(-4, 4, (3, 6))
    lo, hi = ir.matrix_range(w2, np.zeros(3, dtype=np.int64), _S8)
    fc2 = ir.Linear("fc2", ("fc1",), _S8, w2, 3, 1, np.zeros(3), ir.Logits(np.array([1, 3, 2])),
                    ir.ActFormat(ir.signed_bits_for(3 * int(lo.min()), 3 * int(hi.max())), True,
                                 6))
    return ir.Network("rich", (2, 7, 6), _S8, (c1, c2, add, mp, ap, flat, fc1, fc2),
                      metadata={"method": "fixed", "accuracy": 0.96875, "classes": ["a", "b", "c"],
                                "nested": {"wbits": 4, "seed": None}})


def assert_same(a, b, where="network"):
    """Deep equality of IR objects: types, every dataclass field, arrays with dtype."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype, f"{where}: dtype {a.dtype} != {b.dtype}"
        np.testing.assert_array_equal(a, b, err_msg=where)
    elif dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            assert_same(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b), f"{where}: length {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), f"{where}: keys differ"
        for k in a:
            assert_same(a[k], b[k], f"{where}[{k!r}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"
