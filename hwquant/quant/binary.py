"""Binarized networks (BNN, XNOR-Net): training with the straight-through estimator and
lowering into the IR's ``binary`` kind with BatchNorm folded into integer thresholds.

Every conv/linear layer gets binary weights ``sign(w)`` (``sign(0) = +1``) of real-valued
latent weights ``w`` that are clipped to ``[-1, 1]`` after every step and receive the
straight-through gradient ``g_w = g_q * [|w| <= 1]`` (Courbariaux et al., "Binarized Neural
Networks", 2016). With ``alpha="channel"`` the forward pass uses ``alpha[c] * sign(w)``,
``alpha[c] = mean |w[c]|`` (XNOR-Net's binary-weight scale, Rastegari et al. 2016; the
per-pixel input scale ``K`` of XNOR-Net is dropped, as hardware cannot fold it into a
per-channel constant).

Every weight layer is followed, while retraining, by its own BatchNorm (batch statistics,
trainable ``gamma``/``beta``): the float model's BatchNorm was folded into its weights by the
front end, and its statistics describe float accumulators, not the binary ones. Its signs
survive the folding (``sign(w * gamma / sigma) = sign(w) * sign(gamma)``), so the latent weights
start as the folded float weights (scaled into ``[-1, 1]``) and the new BatchNorm starts at the
float pre-activation's mean and spread. After training its statistics are re-estimated on the
training set with the final binary weights, layer by layer, and folded:

* hidden layers with 1-bit activations (``abits=1``): ``sign(BN(alpha * ACC))`` -> one integer
  threshold per channel, direction ``-1`` for a negative ``gamma``, constant for ``gamma = 0``
  (:func:`fold_thresholds`); the activation's gradient is the hard-tanh STE;
* ``abits`` in 2..4: the ``N``-bit activation ``sat(RHU(relu(BN(.)) * 2**f))`` -> ``2**N - 1``
  thresholds; ``abits`` in 5..8: a requantization with a per-channel multiplier
  (:func:`fold_requant`);
* the last layer: logits ``|g[c]| * (ACC + B[c])`` as ``ir.Logits`` with a per-class integer
  scale, rows of negative ``g`` negated (exact for weights in ``{-1, +1}``).

The first layer reads the multi-bit input pixels (``input_bits``, default 8) with binary
weights; max pooling runs after the threshold (correct for any sign of ``gamma``). Bipolar
feature maps are padded with ``-1`` in training as in the integer model. The exact rules are
in ``docs/arithmetic.md`` (section "Binary networks: BatchNorm and activation as integer
thresholds").
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import ir
from .fixed import QuantizationError, activation_format, input_format
from .grid import frac_for_range
from .options import BINARY_ABITS, BINARY_ALPHAS, BINARY_SCHEDULES, METHOD_RETRAIN

__all__ = ["BinaryNet", "quantize_binary", "fold_thresholds", "fold_requant", "fold_logits",
           "sign", "BINARY_ABITS", "THRESHOLD_MAX_BITS", "BINARY_ALPHAS", "BINARY_SCHEDULES",
           "binary_plan", "configuration_name", "lower", "layer_configuration",
           "train_binary_network"]

#: Widest activation produced by thresholds (``2**N - 1`` comparators); wider ones requantize.
THRESHOLD_MAX_BITS = 4
#: Integer bits of a per-class logits scale / a requantization multiplier's magnitude.
SCALE_BITS = 15
#: Weight encoding and width of a binary layer in the IR.
ENCODING, WEIGHT_BITS = "binary", 1


def sign(x):
    """BNN's ``Sign``: ``+1`` where ``x >= 0`` (so ``sign(0) = +1``), ``-1`` elsewhere."""
    if isinstance(x, torch.Tensor):
        return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)
    return np.where(np.asarray(x) >= 0, 1, -1).astype(np.int64)


class _SignSTE(torch.autograd.Function):
    """``sign(x)`` forward; ``g * [|x| <= 1]`` backward (the hard-tanh straight-through
    estimator, used for latent weights and for 1-bit activations)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return sign(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * (x.abs() <= 1).to(g.dtype)


class _GridSTE(torch.autograd.Function):
    """``sat(RHU(x * 2**f), lo, hi) * 2**-f`` forward; the gradient passes where ``x`` lies
    inside ``[lo, hi] * 2**-f`` (clipped straight-through)."""

    @staticmethod
    def forward(ctx, x, frac, lo, hi):
        scale = math.ldexp(1.0, frac)
        ctx.save_for_backward(x)
        ctx.bounds = (lo / scale, hi / scale)
        return torch.clamp(torch.floor(x * scale + 0.5), lo, hi) / scale

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        lo, hi = ctx.bounds
        return g * ((x >= lo) & (x <= hi)).to(g.dtype), None, None, None


# -- the plan: which format each tensor has -------------------------------------------------
@dataclass(frozen=True)
class BinaryPlan:
    """Formats of a binarized graph: ``formats[name]`` for ``"input"`` and every node (the
    last weight layer's is ``None``: logits, sized at lowering); the options it came from."""

    abits: int
    alpha: str
    input_bits: int
    formats: dict
    last: str


def binary_plan(graph, x_cal, *, abits: int, alpha: str = "none", input_bits: int = 8):
    """Check ``graph`` can be binarized and choose every activation format.

    ``abits=1``: every hidden weight layer outputs :data:`hwquant.ir.BIPOLAR`; otherwise an
    ``abits``-bit format calibrated on the float activations (unsigned after a ReLU). The
    network input keeps ``input_bits`` (2..16) bits: the first layer reads the pixels.
    """
    weights = [n for n in graph.nodes if n.op in ("conv2d", "linear")]
    if not weights:
        raise QuantizationError("The model has no weight layers (conv2d or linear) to quantize")
    last = graph.nodes[-1]
    if last.op not in ("conv2d", "linear"):
        raise QuantizationError(f"Layer '{last.name}': the model must end in a conv2d or "
                                f"linear layer producing the logits")
    for node in graph.nodes:
        if node.op not in ("conv2d", "linear", "maxpool2d", "flatten"):
            raise QuantizationError(
                f"Layer '{node.name}': --method binary supports conv2d, linear, max pooling "
                f"and flatten, not {node.op} (binarized networks pool with max after the "
                f"threshold; average pooling and residual adds are not supported)")
    acts = graph.run(np.asarray(x_cal, dtype=np.float64))
    formats = {ir.INPUT: input_format(x_cal, input_bits)}
    for node in graph.nodes:
        src = formats[node.inputs[0]]
        if node.op not in ("conv2d", "linear"):
            formats[node.name] = src
        elif node is last:
            formats[node.name] = None
        elif abits == 1:
            formats[node.name] = ir.BIPOLAR
        else:
            out = acts[node.name]
            signed = not node.relu and bool((out < 0).any())
            formats[node.name] = activation_format(float(np.abs(out).max()), abits, signed)
    return BinaryPlan(abits, alpha, input_bits, formats, last.name)


def configuration_name(plan: BinaryPlan) -> str:
    """``"W1A1"`` style name of a binary configuration (hidden activations ``A`` bits)."""
    return f"W1A{plan.abits}"


# -- the trainable network ------------------------------------------------------------------
class BinaryNet(nn.Module):
    """Torch forward of a binarized :class:`~hwquant.frontend.FloatGraph`.

    ``latent`` holds the real-valued latent weights (binarized on every forward), ``bn`` one
    BatchNorm per weight layer (on its accumulator). In eval mode (running statistics) the
    forward pass computes, layer by layer, the values the lowered integer network computes:
    the test in ``tests/test_quant_binary.py`` compares them code for code.
    """

    def __init__(self, graph, plan: BinaryPlan):
        super().__init__()
        self.graph, self.plan = graph, plan
        self.latent = nn.ParameterDict()
        self.bn = nn.ModuleDict()
        for node in graph.nodes:
            if node.op not in ("conv2d", "linear"):
                continue
            w = np.asarray(node.weight, dtype=np.float64)
            peak = np.abs(w).max()
            self.latent[node.name] = nn.Parameter(torch.tensor(w / peak if peak > 0 else w,
                                                               dtype=torch.float32))
            oc = w.shape[0]
            self.bn[node.name] = nn.BatchNorm2d(oc) if node.op == "conv2d" \
                else nn.BatchNorm1d(oc)

    def binary_weight(self, name):
        """``sign(w)`` (times ``alpha`` with ``alpha="channel"``), straight-through to ``w``."""
        w = self.latent[name]
        q = _SignSTE.apply(w)
        if self.plan.alpha == "channel":
            q = q * self.alpha(name)
        return q

    def alpha(self, name):
        """XNOR-Net's per-output-channel scale ``mean |w[c]|`` (broadcastable to ``w``)."""
        w = self.latent[name]
        return w.abs().reshape(len(w), -1).mean(dim=1).reshape((-1,) + (1,) * (w.dim() - 1))

    def accumulate(self, node, x):
        """``alpha * ACC * 2**-f_x`` of weight layer ``node`` on real input values ``x``
        (``-1`` padding for a bipolar input, as the integer model)."""
        w = self.binary_weight(node.name)
        if node.op == "linear":
            return F.linear(x, w)
        pad = node.padding
        if self.plan.formats[node.inputs[0]].bipolar:
            (ph, pw), pad = pad, (0, 0)
            x = F.pad(x, (pw, pw, ph, ph), value=-1.0)
        return F.conv2d(x, w, stride=node.stride, padding=pad)

    def activation(self, node, z):
        """The hidden layer's output on BatchNorm output ``z``: sign (hard-tanh STE) or the
        ``N``-bit grid (clipped STE)."""
        fmt = self.plan.formats[node.name]
        if fmt.bipolar:
            return _SignSTE.apply(z)
        return _GridSTE.apply(z, fmt.frac, 0 if node.relu else fmt.lo, fmt.hi)

    def forward(self, x, *, upto=None):
        """Logits for a real input batch (``upto``: every node's output instead, up to and
        including that node).

        A hidden layer's activation is monotone non-decreasing in its BatchNorm output ``z``,
        so ``maxpool(act(z)) = act(maxpool(z))``: pooling is done on ``z`` and the activation
        after it. The values are the same; the gradient reaches the window's largest ``z``
        instead of the first of several tied ``+1`` codes.
        """
        fmt = self.plan.formats[ir.INPUT]
        scale = math.ldexp(1.0, fmt.frac)
        x = torch.clamp(torch.floor(x.to(self.dtype) * scale + 0.5), fmt.lo, fmt.hi) / scale
        values = {ir.INPUT: x}
        pending = {}  # value name -> weight node whose activation is still to be applied

        def value(name):
            if name in pending:
                return self.activation(pending[name], values[name])
            return values[name]

        for node in self.graph.nodes:
            src = node.inputs[0]
            if node.op == "maxpool2d":
                y = F.max_pool2d(values[src], node.kernel, node.stride, node.padding)
                if src in pending:
                    pending[node.name] = pending[src]
            elif node.op == "flatten":
                y = torch.flatten(value(src), 1)
            else:
                y = self.bn[node.name](self.accumulate(node, value(src)))
                if node.name != self.plan.last:
                    pending[node.name] = node
            values[node.name] = y
            if node.name == upto:
                return {name: value(name) for name in values}
        return values[self.plan.last].reshape(len(x), -1)

    @property
    def dtype(self):
        return next(iter(self.latent.values())).dtype

    def clip_latent(self):
        with torch.no_grad():
            for w in self.latent.values():
                w.clamp_(-1.0, 1.0)

    @torch.no_grad()
    def init_batchnorm(self, x):
        """Start every BatchNorm at the float pre-activation's per-channel mean and spread
        (``beta``, ``gamma``), computed on the float graph for real inputs ``x``."""
        acts = self.graph.run(np.asarray(x, dtype=np.float64))
        for node in self.graph.nodes:
            if node.op not in ("conv2d", "linear"):
                continue
            src = torch.tensor(acts[node.inputs[0]])
            w = torch.tensor(node.weight)
            b = torch.tensor(node.bias)
            pre = (F.linear(src, w, b) if node.op == "linear" else
                   F.conv2d(src, w, b, stride=node.stride, padding=node.padding))
            dims = [0] + list(range(2, pre.dim()))
            bn = self.bn[node.name]
            mean, std = pre.mean(dim=dims), pre.std(dim=dims).clamp(min=1e-3)
            if node.name != self.plan.last and self.plan.formats[node.name].bipolar:
                # The same signs at unit spread: the hard-tanh window |z| <= 1 is one sigma.
                mean, std = mean / std, torch.ones_like(std)
            bn.bias.copy_(mean.to(bn.bias.dtype))
            bn.weight.copy_(std.to(bn.weight.dtype))

    @torch.no_grad()
    def reestimate_batchnorm(self, x, batch_size=512):
        """Running statistics of every BatchNorm recomputed on ``x`` (real inputs) with the
        current binary weights, in layer order (each layer sees its producers in eval mode).
        Leaves the network in eval mode."""
        self.eval()
        x = torch.tensor(np.array(x), dtype=self.dtype)
        for node in self.graph.nodes:
            if node.op not in ("conv2d", "linear"):
                continue
            bn = self.bn[node.name]
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average over the batches
            bn.train()
            for start in range(0, len(x), batch_size):
                self.forward(x[start:start + batch_size], upto=node.name)
            bn.eval()
            bn.momentum = 0.1


# -- folding into integer epilogues ---------------------------------------------------------
def _affine(model: BinaryNet, node, in_fmt):
    """``(W, g, h)``: integer weights ``sign(w)`` and the per-channel real affine
    ``z = g * ACC + h`` of the layer's BatchNorm (eval) on its integer accumulator."""
    name = node.name
    w = model.latent[name].detach().double()
    weight = sign(w.numpy())
    alpha = (model.alpha(name).detach().double().reshape(-1).numpy()
             if model.plan.alpha == "channel" else np.ones(len(weight)))
    bn = model.bn[name]
    sigma = np.sqrt(bn.running_var.detach().double().numpy() + bn.eps)
    gamma = bn.weight.detach().double().numpy()
    beta = bn.bias.detach().double().numpy()
    mu = bn.running_mean.detach().double().numpy()
    step = math.ldexp(1.0, -in_fmt.frac)  # the real value of one accumulator unit
    g = gamma * alpha * step / sigma
    h = beta - gamma * mu / sigma
    return weight, g, h


def _edges(out_fmt):
    """Real BatchNorm outputs where the output code steps up: ``0`` for the sign, else
    ``(lo + k - 1/2) * 2**-f`` for ``k = 1 .. hi - lo`` (RHU of the grid)."""
    if out_fmt.bipolar:
        return np.zeros(1)
    k = np.arange(1, out_fmt.hi - out_fmt.lo + 1, dtype=np.float64)
    return (out_fmt.lo + k - 0.5) * math.ldexp(1.0, -out_fmt.frac)


def fold_thresholds(g, h, out_fmt, acc_lo, acc_hi, *, relu=True) -> ir.Thresholds:
    """Thresholds epilogue computing ``Q(g * A + h)`` for integer ``A`` in
    ``[acc_lo, acc_hi]`` per channel.

    ``Q`` is the sign (``out_fmt`` bipolar: code 1 iff ``z >= 0``) or the grid
    ``sat(RHU(z * 2**f), lo', hi)`` with ``lo' = 0`` after a ReLU (``out_fmt.lo`` otherwise). With
    ``e_k`` the step edges (:func:`_edges`) and ``tau_k = (e_k - h) / g``: ``g > 0`` passes
    ``A >= ceil(tau_k)`` (direction ``+1``), ``g < 0`` passes ``A <= floor(tau_k)`` (direction
    ``-1``, the row sorted), ``g = 0`` is the constant count ``#{k : h >= e_k}`` (thresholds
    below / above the accumulator range). Every threshold is clamped to
    ``[acc_lo - 1, acc_hi + 1]``, which changes no output.
    """
    g = np.asarray(g, dtype=np.float64)
    h = np.asarray(h, dtype=np.float64)
    lo_b = np.asarray(acc_lo, dtype=np.int64) - 1
    hi_b = np.asarray(acc_hi, dtype=np.int64) + 1
    edges = _edges(out_fmt)
    if not out_fmt.bipolar and relu and out_fmt.lo < 0:
        raise ValueError("a ReLU output format must be unsigned")
    oc, n = len(g), len(edges)
    thr = np.zeros((oc, n), dtype=np.int64)
    direction = np.where(g < 0, -1, 1).astype(np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        tau = (edges[None, :] - h[:, None]) / g[:, None]
    for c in range(oc):
        if g[c] > 0:
            t = np.ceil(tau[c])
        elif g[c] < 0:
            t = np.sort(np.floor(tau[c]))
        else:
            count = int((h[c] >= edges).sum())
            t = np.array([lo_b[c]] * count + [hi_b[c]] * (n - count), dtype=np.float64)
        thr[c] = np.clip(t, lo_b[c], hi_b[c]).astype(np.int64)
    return ir.Thresholds(thr, direction)


def fold_requant(g, h, out_fmt, acc_lo, acc_hi, *, relu=True):
    """``(bias, Requant)`` approximating ``sat(RHU((g * A + h) * 2**f), lo', hi)`` for outputs
    too wide for thresholds: ``M[c] = RHU(g[c] * 2**(f + k))`` (``|M| < 2**15``, one ``k`` per
    layer), ``B[c] = RHU(h[c] / g[c])`` clamped where the output saturates anyway. Exact to its
    own integers (the golden model), within the rounding of ``M`` and ``B`` to the float
    affine. A ``g = 0`` channel gets ``M = 0`` (the constant 0)."""
    g = np.asarray(g, dtype=np.float64)
    h = np.asarray(h, dtype=np.float64)
    f = out_fmt.frac
    peak = float(np.abs(g).max()) * math.ldexp(1.0, f)
    k = frac_for_range(peak, (1 << SCALE_BITS) - 1, 40) if peak > 0 else 0
    mult = np.floor(g * math.ldexp(1.0, f + k) + 0.5).astype(np.int64)
    lo = 0 if relu else out_fmt.lo
    reach = np.maximum(np.abs(np.asarray(acc_lo)), np.abs(np.asarray(acc_hi)))
    with np.errstate(divide="ignore", invalid="ignore"):
        bias = np.where(mult != 0, np.floor(h / np.where(g != 0, g, 1.0) + 0.5), 0.0)
        span = np.where(mult != 0, np.ceil((out_fmt.hi - lo + 1) * math.ldexp(1.0, k)
                                           / np.maximum(np.abs(mult), 1)), 0)
    limit = reach + span + 1
    bias = np.clip(bias, -limit, limit).astype(np.int64)
    return bias, ir.Requant(mult, k, lo, out_fmt.hi)


def fold_logits(weight, g, h, in_fmt):
    """``(weight, bias, Logits, out_format)`` of the last layer: logits
    ``|g[c]| * (ACC + B[c])`` with ``B = RHU(h / |g|)``, as the per-class integer scale
    ``S = max(1, RHU(|g| / max|g| * 2**15))`` (``None`` when all are equal); rows with
    ``g < 0`` negated (``g * ACC = |g| * (-ACC)``: exact for weights in ``{-1, +1}``). A
    ``g = 0`` class keeps the constant ``h`` at the largest class's scale."""
    weight = np.asarray(weight, dtype=np.int64)
    g = np.asarray(g, dtype=np.float64)
    h = np.asarray(h, dtype=np.float64)
    flip = np.where(g < 0, -1, 1)
    weight = weight * flip.reshape((-1,) + (1,) * (weight.ndim - 1))
    mag = np.abs(g)
    top = float(mag.max())
    if top == 0:
        raise QuantizationError("every logit has a zero scale after binarization; retrain")
    denom = np.where(mag > 0, mag, top * math.ldexp(1.0, -SCALE_BITS))
    bias = np.floor(h / denom + 0.5)
    scale = np.maximum(1, np.floor(mag / top * math.ldexp(1.0, SCALE_BITS) + 0.5)).astype(
        np.int64)
    if np.all(mag == mag[0]):
        scale = None
    wm = weight.reshape(len(weight), -1)
    bias = np.clip(bias, -(1 << 40), 1 << 40).astype(np.int64)
    lo, hi = ir.matrix_range(wm, bias, in_fmt)
    if scale is not None:
        lo, hi = np.minimum(lo * scale, hi * scale), np.maximum(lo * scale, hi * scale)
    bits = ir.signed_bits_for(int(lo.min()), int(hi.max()))
    if bits > ir.MAX_BITS:
        raise QuantizationError(f"logits need {bits} bits, more than {ir.MAX_BITS}")
    epilogue = ir.Logits(None if scale is None else scale)
    return weight, bias, epilogue, ir.ActFormat(bits, True, in_fmt.frac)


def lower(model: BinaryNet, *, name="network", metadata=None) -> ir.Network:
    """The IR network of a trained :class:`BinaryNet` (BatchNorm statistics re-estimated):
    ``binary`` weight layers with thresholds / requantization / logits epilogues."""
    plan, graph = model.plan, model.graph
    kind_data = ir.KIND_DATA[ENCODING]
    layers = []
    for node in graph.nodes:
        in_fmt = plan.formats[node.inputs[0]]
        if node.op == "maxpool2d":
            layers.append(ir.MaxPool2d(node.name, tuple(node.inputs), node.in_shape,
                                       node.kernel, node.stride, node.padding, in_fmt))
            continue
        if node.op == "flatten":
            layers.append(ir.Flatten(node.name, tuple(node.inputs), node.in_shape, in_fmt))
            continue
        weight, g, h = _affine(model, node, in_fmt)
        wm = weight.reshape(len(weight), -1)
        acc_lo, acc_hi = ir.matrix_range(wm, np.zeros(len(wm), dtype=np.int64), in_fmt)
        out_fmt = plan.formats[node.name]
        if node.name == plan.last:
            try:
                weight, bias, epilogue, out_fmt = fold_logits(weight, g, h, in_fmt)
            except QuantizationError as exc:
                raise QuantizationError(f"Layer '{node.name}': {exc}") from None
        elif out_fmt.bipolar or out_fmt.bits <= THRESHOLD_MAX_BITS:
            bias = np.zeros(len(weight), dtype=np.int64)
            epilogue = fold_thresholds(g, h, out_fmt, acc_lo, acc_hi, relu=node.relu)
        else:
            bias, epilogue = fold_requant(g, h, out_fmt, acc_lo, acc_hi, relu=node.relu)
        common = {"name": node.name, "inputs": tuple(node.inputs), "in_format": in_fmt,
                  "weight": weight, "weight_bits": WEIGHT_BITS, "weight_frac": 0,
                  "bias": bias, "epilogue": epilogue, "out_format": out_fmt,
                  "encoding": ENCODING, "kind_data": kind_data()}
        if node.op == "conv2d":
            layers.append(ir.Conv2d(in_shape=node.in_shape, stride=node.stride,
                                    padding=node.padding, **common))
        else:
            layers.append(ir.Linear(**common))
    return ir.Network(name=name, input_shape=graph.input_shape,
                      input_format=plan.formats[ir.INPUT], layers=tuple(layers),
                      metadata=dict(metadata or {}))


def _format_name(fmt: ir.ActFormat) -> str:
    return "bipolar" if fmt.bipolar else f"{fmt.bits}-bit{' signed' if fmt.signed else ''}"


def layer_configuration(net: ir.Network) -> list:
    """One row per weight layer: weights, input and output as the hardware sees them."""
    rows = []
    for layer in net.weight_layers:
        ep, out = layer.epilogue, _format_name(layer.out_format)
        if isinstance(ep, ir.Logits):
            out = "logits"
        elif isinstance(ep, ir.Thresholds):
            out = f"{out} ({ep.count} threshold{'s' if ep.count > 1 else ''})"
        else:
            out = f"{out} (requant)"
        rows.append({"name": layer.name, "weights": "binary",
                     "input": _format_name(layer.in_format), "output": out})
    return rows


# -- training -------------------------------------------------------------------------------
def _accuracy(model, x, y) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def _train(model, dataset, cfg):
    """Adam over latent weights and BatchNorm parameters, cosine decay, latent clipping."""
    from tqdm.auto import tqdm

    x = torch.tensor(np.asarray(dataset.x_train), dtype=torch.float32)
    y = torch.tensor(np.asarray(dataset.y_train), dtype=torch.int64)
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * math.ceil(len(x) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1))
    bar = tqdm(range(cfg.epochs), desc="binary: retrain latent weights", unit="epoch",
               disable=not cfg.progress, leave=False)
    model.train()
    for _ in bar:
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            opt.zero_grad()
            loss = F.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            sched.step()
            model.clip_latent()
        bar.set_postfix(loss=f"{loss.item():.3f}")


def _resolved_retrain(cfg):
    """``cfg`` with fields left at None (a config not built by
    :func:`hwquant.quant.options.retrain_config`) taken from the binary defaults."""
    unset = {k: v for k, v in METHOD_RETRAIN["binary"].items() if getattr(cfg, k, None) is None}
    return dataclasses.replace(cfg, **unset) if unset else cfg


def train_binary_network(graph, dataset, x_cal, opts, *, log=None):
    """A trained :class:`BinaryNet` for ``graph`` as ``opts`` (``method="binary"``) says, in
    float64 and eval mode with its BatchNorm statistics re-estimated; returns ``(model,
    history)``, ``history`` the test accuracy of the torch forward before and after
    retraining."""
    cfg = _resolved_retrain(opts.retrain)
    say = log or (lambda msg: None)
    plan = binary_plan(graph, x_cal, abits=opts.abits, alpha=opts.alpha,
                       input_bits=opts.resolved_input_bits())
    schedule = opts.resolved_schedule()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a small model: threads only add synchronisation
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            model = BinaryNet(graph, plan)
            model.init_batchnorm(x_cal)
            xt = torch.tensor(np.asarray(dataset.x_test), dtype=torch.float32)
            yt = torch.tensor(np.asarray(dataset.y_test), dtype=torch.int64)
            history = []

            def note(step):
                model.reestimate_batchnorm(dataset.x_train)
                acc = _accuracy(model, xt.to(model.dtype), yt)
                history.append({"step": step, "accuracy": acc})
                say(f"{step}: accuracy {acc:.2%} ({configuration_name(plan)}, torch)")

            note("binarize all")
            if schedule is not None and cfg.epochs > 0:
                _train(model, dataset, cfg)
            model.double()
            note("final")
    finally:
        torch.set_num_threads(threads)
    return model, history


def quantize_binary(graph, dataset, x_cal, opts, *, name="network", metadata=None, log=None):
    """Binarize and retrain ``graph`` (:func:`train_binary_network`) and lower it into the
    IR (:func:`lower`); returns ``(network, history)``. The network's metadata carries the
    configuration (``"W1A1"``) and one row per weight layer (:func:`layer_configuration`)."""
    model, history = train_binary_network(graph, dataset, x_cal, opts, log=log)
    meta = {**(metadata or {}), "binary": {"configuration": configuration_name(model.plan)}}
    net = lower(model, name=name, metadata=meta)
    net.metadata["binary"]["layers"] = layer_configuration(net)
    return net, history
