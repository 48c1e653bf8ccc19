"""Quantization schedules (seed S0, INQ): when weights are quantized and what is retrained.

All three work with any weight quantizer of :mod:`hwquant.quant.weights` on a trainable
float copy of a :class:`hwquant.frontend.FloatGraph` (:class:`TrainableGraph`, BatchNorm
already folded):

``simple`` (simple quantization of the weight-quantization study, §3.2)
    Quantize every weight; train the float shadow weights with the straight-through estimator
    (the forward pass sees the quantized weights); the result is the quantized shadow weights.
``incremental`` (INQ, Zhou et al. 2017, §2)
    Per layer, quantize an accumulated portion ``σ_1 < … < σ_N = 1`` of the weights (largest
    magnitude first, or a seeded random order), freeze them, retrain the rest; repeat.
``layerwise`` (the layer-wise sequential quantization of the weight-quantization study, §4)
    Quantize whole layers from the input side to the output side, freezing each and retraining
    the later layers.

Quantization-aware retraining (``RetrainConfig.qat``, given calibration images): the
activations pass through the golden model's activation quantization while retraining — the
formats are calibrated as :func:`hwquant.quant.fixed.build_network` calibrates them, on the
current weights, before every phase — with a clipped straight-through gradient. With
``RetrainConfig.refit_channels`` every hidden conv/linear layer gets a per-channel gain and
bias re-fitted after each quantization step, so that its pre-activations on the calibration
images have the float model's per-channel mean and standard deviation: folded BatchNorm whose
statistics are re-estimated for the quantized weights (``docs/arithmetic.md``); the gains
and biases then train with the weights, and after the last quantization step of
``incremental``/``layerwise`` a final phase trains only them. Every phase trains at most
``epochs`` epochs, scores each by the loss on a validation split of the training images and
stops after ``patience`` epochs without improvement, keeping its best state.

Frozen weights are restored after every optimizer step, so neither weight decay nor momentum
can move them (masking the gradient alone is not enough: momentum and weight decay move them).
The per-layer quantizer constants are fitted once, on the weights as they are when the layer's
first weights are quantized (INQ's ``P_l`` never changes, §1.7 P3); TWN in the ``simple``
schedule refits them on every pass (its reference code does), TTQ trains its two scales.

Biases are never quantized here (the lowering turns them into integers at accumulator scale);
they keep training in every retraining phase.
"""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .fakequant import fake_quantize_clipped
from .fixed import activation_format, calibrated_range, input_format
from .options import DEFAULT_PORTIONS, SCHEDULES, RetrainConfig

__all__ = ["TrainableGraph", "run_schedule", "activation_quantizers"]

#: What early stopping compares on the validation split: "accuracy" (ties broken by the
#: loss) or "loss".
EARLY_STOP_METRIC = "loss"

#: Per-channel gains re-fitted to match the float statistics stay within this factor of 1.
MAX_GAIN = 4.0


class TrainableGraph(nn.Module):
    """float32 torch forward of a :class:`~hwquant.frontend.FloatGraph` with trainable weights.

    ``weights`` and ``biases`` are parameter dicts keyed by node name; :meth:`forward` takes
    optional replacement weights (the quantized view) per node.

    ``act_quant`` maps a node name (or ``"input"`` for the network input) to an activation
    fake-quantizer: a callable applied to that node's output after its ReLU (straight-through
    or clipped gradient), so retraining sees the activations the integer model computes.
    Empty by default (float activations).

    ``gains`` maps a conv/linear node to a per-output-channel factor on its weights (the
    re-fitted BatchNorm scale; :func:`run_schedule`). Empty by default.
    """

    def __init__(self, graph):
        super().__init__()
        self.graph = graph
        self.weights = nn.ParameterDict()
        self.biases = nn.ParameterDict()
        for node in graph.nodes:
            if node.op in ("conv2d", "linear"):
                self.weights[node.name] = nn.Parameter(
                    torch.tensor(node.weight, dtype=torch.float32))
                self.biases[node.name] = nn.Parameter(torch.tensor(node.bias, dtype=torch.float32))
        self.act_quant = {}
        self.gains = {}

    @property
    def layer_names(self) -> list:
        return list(self.weights.keys())

    def forward(self, x, weights=None, trace=None):
        """Logits for ``x``. ``trace`` (a dict), if given, receives every conv/linear layer's
        ``W * x`` (before gain and bias) under the layer's name."""
        weights = weights or {}
        aq = self.act_quant
        values = {"input": aq["input"](x) if "input" in aq else x}
        for node in self.graph.nodes:
            a = [values[s] for s in node.inputs]
            if node.op in ("conv2d", "linear"):
                w = weights.get(node.name, self.weights[node.name])
                b = self.biases[node.name]
                if node.name in self.gains or trace is not None:
                    y = (F.conv2d(a[0], w, None, stride=node.stride, padding=node.padding)
                         if node.op == "conv2d" else F.linear(a[0], w))
                    if trace is not None:
                        trace[node.name] = y
                    shape = (1, -1) + (1,) * (y.dim() - 2)
                    if node.name in self.gains:
                        y = y * self.gains[node.name].reshape(shape)
                    y = y + b.reshape(shape)
                else:
                    y = (F.conv2d(a[0], w, b, stride=node.stride, padding=node.padding)
                         if node.op == "conv2d" else F.linear(a[0], w, b))
            elif node.op == "maxpool2d":
                y = F.max_pool2d(a[0], node.kernel, node.stride, node.padding)
            elif node.op == "avgpool2d":
                y = F.avg_pool2d(a[0], node.kernel, node.stride, node.padding,
                                 count_include_pad=True)
            elif node.op == "flatten":
                y = torch.flatten(a[0], 1)
            else:
                y = a[0] + a[1]
            y = F.relu(y) if node.relu else y
            values[node.name] = aq[node.name](y) if node.name in aq else y
        return values[self.graph.nodes[-1].name].reshape(len(x), -1)

    def export_graph(self, weights: dict):
        """The float graph with ``weights`` (numpy, per layer; times the layer's gain) and the
        trained biases."""
        nodes = []
        for node in self.graph.nodes:
            if node.name in weights:
                w = np.asarray(weights[node.name], dtype=np.float64)
                if node.name in self.gains:
                    g = self.gains[node.name].detach().double().numpy()
                    w = w * g.reshape((-1,) + (1,) * (w.ndim - 1))
                node = dataclasses.replace(
                    node, weight=w, bias=self.biases[node.name].detach().double().numpy())
            nodes.append(node)
        return dataclasses.replace(self.graph, nodes=tuple(nodes))


def _act_quantizer(frac, lo, hi):
    return lambda v: fake_quantize_clipped(v, frac, lo, hi)


def activation_quantizers(model, x_cal, abits, weights=None, percentile=None) -> dict:
    """Activation fake-quantizers for ``model.act_quant``: the formats
    :func:`~hwquant.quant.fixed.build_network` would calibrate on ``x_cal`` for the model's
    current weights (``weights``: the quantized view), float activations while calibrating.

    The network input, every hidden conv/linear layer and every residual add get their
    calibrated format (``lo = 0`` after a ReLU); an average pool requantizes to its input's
    format; max pools and flatten keep their input's format; the logits stay raw.
    """
    saved, model.act_quant = model.act_quant, {}
    try:
        values = {}
        xc = torch.as_tensor(np.asarray(x_cal), dtype=torch.float32)
        with torch.no_grad():
            _trace_values(model, xc, weights, values)
    finally:
        model.act_quant = saved
    x = np.asarray(x_cal, dtype=np.float64)
    fmt_in = input_format(x, abits, percentile)
    quant = {"input": _act_quantizer(fmt_in.frac, fmt_in.lo, fmt_in.hi)}
    fmts = {"input": fmt_in}
    last = model.graph.nodes[-1].name
    for node in model.graph.nodes:
        out = values[node.name]
        if node.op in ("conv2d", "linear", "add"):
            signed = not node.relu and bool((out < 0).any())
            fmt = activation_format(calibrated_range(out.numpy(), percentile), abits, signed)
            if node.name != last:
                quant[node.name] = _act_quantizer(fmt.frac, 0 if node.relu else fmt.lo, fmt.hi)
        elif node.op == "avgpool2d":
            fmt = fmts[node.inputs[0]]
            quant[node.name] = _act_quantizer(fmt.frac, 0 if node.relu else fmt.lo, fmt.hi)
        else:
            fmt = fmts[node.inputs[0]]
        fmts[node.name] = fmt
    return quant


def _trace_values(model, x, weights, values):
    """Every node's output of ``model`` on ``x`` into ``values`` (act_quant hooks as spies)."""
    spies = {}
    for node in model.graph.nodes:
        def spy(v, name=node.name):
            values[name] = v
            return v
        spies[node.name] = spy
    saved, model.act_quant = model.act_quant, spies
    try:
        model(x, weights)
    finally:
        model.act_quant = saved


def _accuracy(model, x, y, weights) -> float:
    with torch.no_grad():
        return float((model(x, weights).argmax(1) == y).float().mean())


def _channel_stats(v):
    dims = (0,) + tuple(range(2, v.dim()))
    return v.mean(dim=dims), v.std(dim=dims)


class _Retrainer:
    """Adam over the float weights and biases, frozen entries restored after every step;
    early stopping on a validation split of the training images."""

    def __init__(self, model, quantizers, states, dataset, cfg: RetrainConfig, x_cal=None,
                 abits=None, percentile=None):
        cfg = cfg.resolved("incremental")  # run_schedule has resolved it for its schedule
        self.model, self.quantizers, self.states, self.cfg = model, quantizers, states, cfg
        x = torch.tensor(np.asarray(dataset.x_train), dtype=torch.float32)
        y = torch.tensor(np.asarray(dataset.y_train), dtype=torch.int64)
        n_val = round(cfg.val_fraction * len(x)) if len(x) >= 20 else 0
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(cfg.seed + 7919))
        val, train = order[:n_val], order[n_val:]
        self.x, self.y = x[train], y[train]
        self.xv, self.yv = x[val], y[val]
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.frozen = {}  # layer -> (mask of frozen entries, their quantized values)
        self.refit = False
        self.x_cal, self.abits, self.percentile = x_cal, abits, percentile
        self.qat = bool(cfg.qat and x_cal is not None and abits is not None)
        self.epochs_run = []

    def quantized_view(self, layers):
        """Weights the forward pass sees: quantized (STE) for ``layers``, float otherwise.
        With ``refit`` (the simple schedule) quantizers that ask for it refit their constants
        to the current shadow weights first."""
        view = {}
        for name in layers:
            q, w = self.quantizers[name], self.model.weights[name]
            if self.refit and getattr(q, "refit", False):
                self.states[name] = q.fit(w.detach())
            view[name] = q.project(w, self.states[name])
        return view

    def calibrate(self, quantized_layers):
        """Activation quantizers for the current weights (QAT), or none."""
        if self.qat:
            with torch.no_grad():
                view = self.quantized_view(quantized_layers)
            self.model.act_quant = activation_quantizers(self.model, self.x_cal, self.abits,
                                                         view, self.percentile)

    def refit_channels(self, reference, quantized_layers):
        """Re-fit every hidden layer's per-channel gain and bias so that its ``W * x`` on the
        calibration images has the float reference's per-channel mean and standard deviation
        (layer by layer from the input, each seeing the corrected layers before it)."""
        if self.x_cal is None:
            return
        model = self.model
        xc = torch.as_tensor(np.asarray(self.x_cal), dtype=torch.float32)
        hidden = [n.name for n in model.graph.nodes
                  if n.op in ("conv2d", "linear")][:-1]
        with torch.no_grad():
            for name in hidden:
                trace = {}
                model(xc, self.quantized_view(quantized_layers), trace=trace)
                mu_q, sd_q = _channel_stats(trace[name])
                mu_f, sd_f = reference[name]
                ok = sd_q > 1e-6 * torch.clamp(sd_f, min=1e-12)
                gain = torch.where(ok, sd_f / torch.where(ok, sd_q, torch.ones_like(sd_q)),
                                   torch.ones_like(sd_q))
                gain = torch.clamp(gain, 1.0 / MAX_GAIN, MAX_GAIN)
                model.gains[name] = gain
                model.biases[name].copy_(mu_f - gain * mu_q)

    def _restore_frozen(self):
        with torch.no_grad():
            for name, (mask, values) in self.frozen.items():
                w = self.model.weights[name]
                w.copy_(torch.where(mask, values, w))

    def _score(self, quantized_layers):
        """Validation score, larger is better: ``(accuracy, -loss)``, or ``(-loss,)`` with
        :data:`EARLY_STOP_METRIC` ``"loss"``."""
        if not len(self.xv):
            return None
        with torch.no_grad():
            out = self.model(self.xv, self.quantized_view(quantized_layers))
            loss = float(F.cross_entropy(out, self.yv))
            if EARLY_STOP_METRIC == "loss":
                return (-loss,)
            return float((out.argmax(1) == self.yv).float().mean()), -loss

    def _snapshot(self, scales):
        m = self.model
        return ({n: p.detach().clone() for n, p in m.weights.items()},
                {n: p.detach().clone() for n, p in m.biases.items()},
                [s.detach().clone() for s in scales], copy.deepcopy(self.states))

    def _restore(self, snap, scales):
        weights, biases, saved_scales, states = snap
        with torch.no_grad():
            for n, p in self.model.weights.items():
                p.copy_(weights[n])
            for n, p in self.model.biases.items():
                p.copy_(biases[n])
            for s, v in zip(scales, saved_scales, strict=True):
                s.copy_(v)
        for n, st in states.items():  # keep the live scale tensors (the optimizer's)
            if "scales" in st and n in self.states and "scales" in self.states[n]:
                continue
            self.states[n] = st

    def train(self, desc, quantized_layers=(), trainable_layers=None):
        """One retraining phase; ``trainable_layers`` None means every layer."""
        cfg = self.cfg
        if cfg.epochs == 0:
            return
        self.calibrate(quantized_layers)
        names = self.model.layer_names
        train = names if trainable_layers is None else list(trainable_layers)
        params = [self.model.weights[n] for n in train] + list(self.model.biases.values())
        scales = [self.states[n]["scales"].requires_grad_(True) for n in quantized_layers
                  if self.quantizers[n].trainable_scales]
        params += scales
        # The re-fitted channel gains train too (as BatchNorm's scale would), without decay.
        gains = [g.requires_grad_(True) for g in self.model.gains.values()]
        groups = [{"params": params}]
        if gains:
            groups.append({"params": gains, "weight_decay": 0.0})
        scales = scales + gains
        opt = torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
        steps = cfg.epochs * math.ceil(len(self.x) / cfg.batch_size)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
        from tqdm.auto import tqdm

        best, best_score, since = self._snapshot(scales), self._score(quantized_layers), 0
        run = 0
        bar = tqdm(range(cfg.epochs), desc=desc, unit="epoch", disable=not cfg.progress,
                   leave=False)
        for _ in bar:
            order = torch.randperm(len(self.x), generator=self.gen)
            for start in range(0, len(self.x), cfg.batch_size):
                idx = order[start:start + cfg.batch_size]
                opt.zero_grad()
                out = self.model(self.x[idx], self.quantized_view(quantized_layers))
                loss = F.cross_entropy(out, self.y[idx])
                loss.backward()
                opt.step()
                sched.step()
                self._restore_frozen()
            run += 1
            score = self._score(quantized_layers)
            bar.set_postfix(loss=f"{loss.item():.3f}",
                            val=f"{score[0]:.3f}" if score else "-")
            if score is None:
                continue
            if score > best_score:
                best, best_score, since = self._snapshot(scales), score, 0
            else:
                since += 1
                if since >= cfg.patience:
                    break
        bar.close()
        if best_score is not None:
            self._restore(best, scales)
        for g in gains:
            g.requires_grad_(False)
        self.epochs_run.append(run)
        return run


def _select_portion(w, frozen_mask, k_total, partition, rank):
    """Mask of the weights to quantize now so that ``k_total`` are quantized in all."""
    flat_w = w.detach().reshape(-1)
    frozen = frozen_mask.reshape(-1)
    need = k_total - int(frozen.sum())
    pick = torch.zeros_like(frozen)
    if need <= 0:
        return pick.reshape(w.shape)
    if partition == "random":
        pick = (rank < k_total) & ~frozen
    else:  # largest |w| among the float ones; ties to the smaller flat index (stable sort)
        key = torch.where(frozen, torch.full_like(flat_w, -1.0), flat_w.abs())
        order = torch.sort(-key, stable=True).indices[:need]
        pick[order] = True
    return pick.reshape(w.shape)


def run_schedule(graph, dataset, quantizers: dict, *, schedule: str, cfg: RetrainConfig,
                 portions=DEFAULT_PORTIONS, partition="magnitude", log=None, x_cal=None,
                 abits=None, calib_percentile=None):
    """Quantize ``graph``'s weights with ``quantizers`` (layer name -> quantizer) by
    ``schedule``; returns ``(float_graph_with_quantized_weights, states, history)``.

    ``x_cal``/``abits`` (calibration images, activation width) enable quantization-aware
    retraining and the per-channel re-fit as ``cfg`` asks, with activation ranges calibrated
    as the lowering does (``calib_percentile``). Each layer's state then carries
    ``"quantized"`` (its quantized weights, numpy) and, if re-fitted, ``"gain"`` (per channel;
    the exported graph's weights are ``gain * quantized``).

    ``history`` lists the test accuracy after each step (for reports only; early stopping
    uses a validation split of the training images).
    """
    cfg = cfg.resolved(schedule)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: threads only add synchronisation
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            return _run_schedule(graph, dataset, quantizers, schedule, cfg, portions,
                                 partition, log, x_cal, abits, calib_percentile)
    finally:
        torch.set_num_threads(threads)


def _run_schedule(graph, dataset, quantizers, schedule, cfg, portions, partition, log, x_cal,
                  abits, percentile):
    model = TrainableGraph(graph)
    names = model.layer_names
    r = _Retrainer(model, quantizers, {}, dataset, cfg, x_cal=x_cal, abits=abits,
                   percentile=percentile)
    xt = torch.tensor(np.asarray(dataset.x_test), dtype=torch.float32)
    yt = torch.tensor(np.asarray(dataset.y_test), dtype=torch.int64)
    history = []
    say = log or (lambda msg: None)
    reference = None
    if cfg.refit_channels and x_cal is not None:
        trace = {}
        with torch.no_grad():
            model(torch.as_tensor(np.asarray(x_cal), dtype=torch.float32), trace=trace)
        reference = {}
        for n in names:
            mu, sd = _channel_stats(trace[n])
            reference[n] = (mu + model.biases[n].detach(), sd)

    def refit(quantized_layers):
        if reference is not None:
            r.calibrate(quantized_layers)
            r.refit_channels(reference, quantized_layers)

    def fit(name):
        r.states[name] = quantizers[name].fit(model.weights[name].detach())

    def trained(desc, **kw):
        epochs = r.train(desc, **kw)
        if history and epochs is not None:
            history[-1]["retrain_epochs"] = epochs

    def note(step):
        # simple: the forward pass sees the quantized view; otherwise frozen weights are
        # already quantized in place and the rest is float.
        acc = _accuracy(model, xt, yt, r.quantized_view(names) if schedule == "simple" else {})
        history.append({"step": step, "accuracy": acc})
        kind = "quantized" if r.qat else "float"
        say(f"{step}: accuracy {acc:.2%} ({kind} activations)")

    if schedule == "simple":
        for n in names:
            fit(n)
        r.refit = True
        refit(names)
        r.calibrate(names)
        note("quantize all")
        trained("simple: retrain shadow weights", quantized_layers=names)
    elif schedule == "incremental":
        for n in names:
            fit(n)
        gen = torch.Generator().manual_seed(cfg.seed)
        ranks = {n: torch.randperm(model.weights[n].numel(), generator=gen) for n in names}
        masks = {n: torch.zeros(model.weights[n].shape, dtype=torch.bool) for n in names}
        for i, sigma in enumerate(portions):
            with torch.no_grad():
                for n in names:
                    w = model.weights[n]
                    k = math.floor(sigma * w.numel() + 0.5)
                    pick = _select_portion(w, masks[n], k, partition, ranks[n])
                    q = quantizers[n].quantize(w, r.states[n]).detach()
                    masks[n] |= pick
                    values = r.frozen[n][1] if n in r.frozen else torch.zeros_like(w)
                    values = torch.where(pick, q, values)
                    r.frozen[n] = (masks[n].clone(), values)
            r._restore_frozen()
            refit(())
            note(f"step {i + 1}/{len(portions)} ({sigma:.4g} quantized)")
            if sigma < 1:
                # Trainable TTQ scales would move frozen values; they stay as fitted here.
                trained(f"incremental {i + 1}/{len(portions)}: retrain {1 - sigma:.4g}")
    elif schedule == "layerwise":
        for i, n in enumerate(names):
            fit(n)
            with torch.no_grad():
                q = quantizers[n].quantize(model.weights[n], r.states[n]).detach()
                r.frozen[n] = (torch.ones(q.shape, dtype=torch.bool), q)
            r._restore_frozen()
            refit(())
            note(f"layer {i + 1}/{len(names)} ({n}) quantized")
            if i + 1 < len(names):
                trained(f"layerwise {i + 1}/{len(names)}: retrain after {n}",
                        trainable_layers=names[i + 1:])
    else:
        raise ValueError(f"Schedule must be one of {', '.join(SCHEDULES)}, not {schedule!r}")

    if schedule != "simple" and reference is not None:
        # Every weight is quantized now: retrain what stays at full precision (biases and
        # the re-fitted channel gains: folded BatchNorm), as INQ retrains BatchNorm.
        trained("retrain biases and channel gains", trainable_layers=())
    if r.refit:  # the simple schedule's constants follow the final shadow weights
        with torch.no_grad():
            r.quantized_view(names)
    with torch.no_grad():
        final = {n: quantizers[n].quantize(model.weights[n], r.states[n]).double().numpy()
                 for n in names}
    for n in names:
        r.states[n]["quantized"] = final[n]
        if n in model.gains:
            r.states[n]["gain"] = model.gains[n].detach().double().numpy()
    if schedule == "simple":
        note("final")
    return model.export_graph(final), r.states, history
