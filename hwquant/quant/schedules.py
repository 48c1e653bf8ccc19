"""Quantization schedules (seed S0, INQ): when weights are quantized and what is retrained.

All three work with any weight quantizer of :mod:`hwquant.quant.weights` on a trainable
float copy of a :class:`hwquant.frontend.FloatGraph` (:class:`TrainableGraph`; BatchNorm is
already folded, activations stay float while retraining):

``simple`` (simple quantization of the weight-quantization study, §3.2)
    Quantize every weight; train the float shadow weights with the straight-through estimator
    (the forward pass sees the quantized weights); the result is the quantized shadow weights.
``incremental`` (INQ, Zhou et al. 2017, §2)
    Per layer, quantize an accumulated portion ``σ_1 < … < σ_N = 1`` of the weights (largest
    magnitude first, or a seeded random order), freeze them, retrain the rest; repeat.
``layerwise`` (the layer-wise sequential quantization of the weight-quantization study, §4)
    Quantize whole layers from the input side to the output side, freezing each and retraining
    the later layers.

Frozen weights are restored after every optimizer step, so neither weight decay nor momentum
can move them (masking the gradient alone is not enough: momentum and weight decay move them). The per-layer
quantizer constants are fitted once, on the weights as they are when the layer's first
weights are quantized (INQ's ``P_l`` never changes, §1.7 P3); TWN in the ``simple`` schedule
refits them on every pass (its reference code does), TTQ trains its two scales.

Biases are never quantized here (the lowering turns them into integers at accumulator scale);
they keep training in every retraining phase.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .options import DEFAULT_PORTIONS, SCHEDULES, RetrainConfig

__all__ = ["TrainableGraph", "run_schedule"]



class TrainableGraph(nn.Module):
    """float32 torch forward of a :class:`~hwquant.frontend.FloatGraph` with trainable weights.

    ``weights`` and ``biases`` are parameter dicts keyed by node name; :meth:`forward` takes
    optional replacement weights (the quantized view) per node.

    ``act_quant`` maps a node name (or ``"input"`` for the network input) to an activation
    fake-quantizer: a callable applied to that node's output after its ReLU (straight-through
    or clipped gradient), so retraining sees the activations the integer model computes.
    Empty by default (float activations).
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

    @property
    def layer_names(self) -> list:
        return list(self.weights.keys())

    def forward(self, x, weights=None):
        weights = weights or {}
        aq = self.act_quant
        values = {"input": aq["input"](x) if "input" in aq else x}
        for node in self.graph.nodes:
            a = [values[s] for s in node.inputs]
            if node.op in ("conv2d", "linear"):
                w = weights.get(node.name, self.weights[node.name])
                b = self.biases[node.name]
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
        """The float graph with ``weights`` (numpy, per layer) and the trained biases."""
        nodes = []
        for node in self.graph.nodes:
            if node.name in weights:
                node = dataclasses.replace(
                    node, weight=np.asarray(weights[node.name], dtype=np.float64),
                    bias=self.biases[node.name].detach().double().numpy())
            nodes.append(node)
        return dataclasses.replace(self.graph, nodes=tuple(nodes))


def _accuracy(model, x, y, weights) -> float:
    with torch.no_grad():
        return float((model(x, weights).argmax(1) == y).float().mean())


class _Retrainer:
    """Adam over the float weights and biases, frozen entries restored after every step."""

    def __init__(self, model, quantizers, states, dataset, cfg: RetrainConfig):
        self.model, self.quantizers, self.states, self.cfg = model, quantizers, states, cfg
        self.x = torch.tensor(np.asarray(dataset.x_train), dtype=torch.float32)
        self.y = torch.tensor(np.asarray(dataset.y_train), dtype=torch.int64)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.frozen = {}  # layer -> (mask of frozen entries, their quantized values)
        self.refit = False

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

    def _restore_frozen(self):
        with torch.no_grad():
            for name, (mask, values) in self.frozen.items():
                w = self.model.weights[name]
                w.copy_(torch.where(mask, values, w))

    def train(self, desc, quantized_layers=(), trainable_layers=None):
        """One retraining phase; ``trainable_layers`` None means every layer."""
        cfg = self.cfg
        if cfg.epochs == 0:
            return
        names = self.model.layer_names
        train = names if trainable_layers is None else list(trainable_layers)
        params = [self.model.weights[n] for n in train] + list(self.model.biases.values())
        scales = [self.states[n]["scales"].requires_grad_(True) for n in quantized_layers
                  if self.quantizers[n].trainable_scales]
        params += scales
        opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        steps = cfg.epochs * math.ceil(len(self.x) / cfg.batch_size)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
        from tqdm.auto import tqdm

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
            bar.set_postfix(loss=f"{loss.item():.3f}")


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
                 portions=DEFAULT_PORTIONS, partition="magnitude", log=None):
    """Quantize ``graph``'s weights with ``quantizers`` (layer name -> quantizer) by
    ``schedule``; returns ``(float_graph_with_quantized_weights, states, history)``.

    ``history`` lists the float-activation test accuracy after each step (for reports).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: threads only add synchronisation
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            return _run_schedule(graph, dataset, quantizers, schedule, cfg, portions,
                                 partition, log)
    finally:
        torch.set_num_threads(threads)


def _run_schedule(graph, dataset, quantizers, schedule, cfg, portions, partition, log):
    model = TrainableGraph(graph)
    names = model.layer_names
    r = _Retrainer(model, quantizers, {}, dataset, cfg)
    xt = torch.tensor(np.asarray(dataset.x_test), dtype=torch.float32)
    yt = torch.tensor(np.asarray(dataset.y_test), dtype=torch.int64)
    history = []
    say = log or (lambda msg: None)

    def fit(name):
        r.states[name] = quantizers[name].fit(model.weights[name].detach())

    def note(step):
        # simple: the forward pass sees the quantized view; otherwise frozen weights are
        # already quantized in place and the rest is float.
        acc = _accuracy(model, xt, yt, r.quantized_view(names) if schedule == "simple" else {})
        history.append({"step": step, "accuracy": acc})
        say(f"{step}: accuracy {acc:.2%} (float activations)")

    if schedule == "simple":
        for n in names:
            fit(n)
        note("quantize all")
        r.refit = True
        r.train("simple: retrain shadow weights", quantized_layers=names)
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
            note(f"step {i + 1}/{len(portions)} ({sigma:.4g} quantized)")
            if sigma < 1:
                # Trainable TTQ scales would move frozen values; they stay as fitted here.
                r.train(f"incremental {i + 1}/{len(portions)}: retrain {1 - sigma:.4g}")
    elif schedule == "layerwise":
        for i, n in enumerate(names):
            fit(n)
            with torch.no_grad():
                q = quantizers[n].quantize(model.weights[n], r.states[n]).detach()
                r.frozen[n] = (torch.ones(q.shape, dtype=torch.bool), q)
            r._restore_frozen()
            note(f"layer {i + 1}/{len(names)} ({n}) quantized")
            if i + 1 < len(names):
                r.train(f"layerwise {i + 1}/{len(names)}: retrain after {n}",
                        trainable_layers=names[i + 1:])
    else:
        raise ValueError(f"Schedule must be one of {', '.join(SCHEDULES)}, not {schedule!r}")

    if r.refit:  # the simple schedule's constants follow the final shadow weights
        with torch.no_grad():
            r.quantized_view(names)
    with torch.no_grad():
        final = {n: quantizers[n].quantize(model.weights[n], r.states[n]).double().numpy()
                 for n in names}
    if schedule == "simple":
        note("final")
    return model.export_graph(final), r.states, history
