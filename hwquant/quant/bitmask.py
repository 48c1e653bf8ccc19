"""Post-training bit-masked quantization (``--method bitmask``): the weight quantizer and the
per-layer mask search.

The bit-masking paper (Doi, bit masks over fixed-point CNN weights; docs/arithmetic.md,
References) quantizes the
*conv* layers after training to an ``n``-bit sign-magnitude fixed-point format and masks all
but ``m`` of its bits (sign included), choosing the mask per layer, with no retraining.

* **Quantizer** (:class:`BitmaskWeights`): ``projection`` (default) maps every weight to the
  nearest value the mask can represent (ties to the larger magnitude, saturating at the
  largest); ``literal`` rounds to the ``n``-bit grid half up, saturates, then clears the
  masked bits (a weight whose rounded code has a masked bit loses it).
* **Binary point.** Each conv layer's point is placed so that the full ``n``-bit span covers
  its largest weight (the fixed quantizer's rule, :func:`hwquant.quant.grid.frac_for_range`),
  clamped to ``0 .. n - 1`` fraction bits (the notation's range); masks with their top bits
  masked then reach smaller weights. With ``same_pattern`` all conv layers share one point
  (that of the largest weight) and one mask.
* **Non-conv layers** (linear) get plain 8-bit ``fixed`` weights, one power-of-two scale per
  layer: the paper leaves them in float, which the hardware has no form for.
* **Search** (:func:`search_masks`): the score of an assignment is the float-activation
  accuracy of the model with every conv layer's weights replaced (linear layers at their
  8-bit values) on a calibration split of the *training* images (never the test split),
  ties broken by the smaller mean squared logit error against the float model (the score is
  then rarely tied on a few hundred images). Float activations are the paper's own score and
  two orders of magnitude cheaper than the integer golden model per candidate; the golden
  model scores the chosen network afterwards (``quantize`` reports its test accuracy).
  Per layer the candidates are all ``C(n-1, m-1)`` masks. First the best single mask for all
  layers (the paper's baseline); then exhaustive over the product of the per-layer
  candidates when it fits the budget, coordinate descent (one layer at a time, all its
  candidates, others fixed, until no change or the budget is spent) beyond it.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from .. import ir
from ..bitmask import Mask, candidates, parse
from .grid import frac_for_range
from .weights import LoweredWeights, WeightQuantError, abs_max

__all__ = ["BitmaskWeights", "search_masks", "SearchResult", "point_for", "ROUNDINGS",
           "DEFAULT_SPAN", "DEFAULT_BUDGET", "CALIB_FRACTION"]

ROUNDINGS = ("projection", "literal")
DEFAULT_SPAN = 8
#: Evaluations of the search beyond the uniform pass.
DEFAULT_BUDGET = 500
#: Share of the training images the search scores on (a fixed, seeded split).
CALIB_FRACTION = 0.25


def point_for(a_max: float, span: int) -> int:
    """Fraction bits of a ``span``-bit sign-magnitude format whose full range covers
    ``a_max``, clamped to ``0 .. span - 1``."""
    return max(0, min(frac_for_range(a_max, (1 << (span - 1)) - 1, span - 1), span - 1))


def _with_point(mask: Mask, frac: int) -> Mask:
    return Mask(mask.span, frac, mask.active)


class BitmaskWeights:
    """Weights of one layer under a fixed :class:`hwquant.bitmask.Mask` (``rounding``:
    ``projection`` or ``literal``); the faces of :mod:`hwquant.quant.weights`."""

    method, trainable_scales = "bitmask", False

    def __init__(self, mask: Mask, rounding: str = "projection"):
        if rounding not in ROUNDINGS:
            raise ValueError(f"Bit-mask rounding must be one of {', '.join(ROUNDINGS)}, not "
                             f"{rounding!r}")
        self.mask, self.rounding = mask, rounding

    def integers(self, w) -> np.ndarray:
        """The integer weights (at scale ``2**-frac``) of float weights ``w``."""
        scaled = np.asarray(torch.as_tensor(w).detach().double()) * 2.0 ** self.mask.frac
        return (self.mask.project(scaled) if self.rounding == "projection"
                else self.mask.literal(scaled))

    def fit(self, w):
        abs_max(w)
        return {"mask": self.mask}

    def quantize(self, w, state):
        w = torch.as_tensor(w)
        q = torch.tensor(self.integers(w), dtype=w.dtype)
        return q * 2.0 ** -self.mask.frac

    def project(self, w, state):
        return w + (self.quantize(w, state) - w).detach()

    def lower(self, wq, state):
        w = np.rint(np.asarray(wq, dtype=np.float64) * 2.0 ** self.mask.frac).astype(np.int64)
        if not w.any():
            raise WeightQuantError(f"bit mask {self.mask.pattern} represents none of the "
                                   f"layer's weights (all quantize to 0)")
        return LoweredWeights(w, self.mask.span, self.mask.frac, "bitmask",
                              kind_data=ir.BitmaskData(self.mask.pattern))


@dataclass
class SearchResult:
    """The chosen mask per conv layer and how it was found."""

    masks: dict
    #: The best single mask (same active positions) for all conv layers, per layer, and its
    #: calibration accuracy.
    uniform: dict | None = None
    uniform_score: float | None = None
    score: float | None = None
    evaluations: int = 0
    strategy: str = "fixed"
    calib_images: int = 0
    log: list = field(default_factory=list)

    def to_json(self) -> dict:
        return {"patterns": {k: v.pattern for k, v in self.masks.items()},
                "uniform": self.uniform, "uniform_accuracy": self.uniform_score,
                "accuracy": self.score, "evaluations": self.evaluations,
                "strategy": self.strategy, "calib_images": self.calib_images}


def _calibration_split(dataset, fraction, seed):
    n = len(dataset.x_train)
    k = max(1, round(n * fraction))
    idx = np.random.default_rng(seed).permutation(n)[:k]
    return (torch.tensor(np.asarray(dataset.x_train)[idx], dtype=torch.float32),
            torch.tensor(np.asarray(dataset.y_train)[idx], dtype=torch.int64))


def search_masks(graph, dataset, *, active, span, rounding="projection", fixed=None,
                 same_pattern=False, budget=DEFAULT_BUDGET, seed=0, log=None) -> SearchResult:
    """Choose a mask of ``active`` bits over ``span`` for every conv layer of ``graph``.

    ``fixed`` maps layer names to masks given by hand (kept, not searched). Raises
    :class:`WeightQuantError` when no candidate mask represents any nonzero weight of a layer.
    """
    from .schedules import TrainableGraph

    say = log or (lambda msg: None)
    fixed = dict(fixed or {})
    convs = [n for n in graph.nodes if n.op == "conv2d"]
    linears = [n for n in graph.nodes if n.op == "linear"]
    model = TrainableGraph(graph)
    x, y = _calibration_split(dataset, CALIB_FRACTION, seed)
    with torch.no_grad():
        ref = model(x)
    base = {}
    from .weights import FixedWeights

    for node in linears:  # at their final 8-bit values throughout the search
        q8 = FixedWeights(8)
        w = model.weights[node.name].detach()
        base[node.name] = q8.quantize(w, q8.fit(w))
    weights = {n.name: model.weights[n.name].detach() for n in convs}
    cands = {}
    top = max(float(w.abs().max()) for w in weights.values()) if weights else 0.0
    cache = {}
    for node in convs:
        if node.name in fixed:
            cands[node.name] = [fixed[node.name]]
            continue
        frac = point_for(top if same_pattern else float(weights[node.name].abs().max()), span)
        cands[node.name] = [_with_point(c, frac) for c in candidates(active, span)]

    def quantized(name, mask):
        key = (name, mask)
        if key not in cache:
            q = BitmaskWeights(mask, rounding).quantize(weights[name], None)
            cache[key] = q if q.abs().max() > 0 else None
        return cache[key]

    for name, cs in cands.items():
        usable = [c for c in cs if quantized(name, c) is not None]
        if not usable:
            shown = cs[0].pattern if len(cs) == 1 else f"any of the {len(cs)} masks"
            raise WeightQuantError(f"Layer '{name}': {shown} represents none of its nonzero "
                                   f"weights (all quantize to 0); largest |w| = "
                                   f"{float(weights[name].abs().max()):.3g}")
        cands[name] = usable

    count = {"n": 0}

    def score(assign):
        ws = dict(base)
        for name, mask in assign.items():
            ws[name] = quantized(name, mask)
        count["n"] += 1
        with torch.no_grad():
            out = model(x, ws)
        acc = float((out.argmax(1) == y).float().mean())
        return (acc, -float(((out - ref) ** 2).mean()))

    names = list(cands)
    result = SearchResult(masks={}, calib_images=len(x))
    if not names:
        return result
    if same_pattern or not fixed:
        # Uniform pass: one mask (same positions) for every searched layer.
        options = cands[names[0]] if same_pattern else None
        best = None
        for k, mask in enumerate(options or candidates(active, span)):
            assign = {n: (cands[n][0] if n in fixed else
                          _with_point(mask, cands[n][0].frac)) for n in names}
            if any(quantized(n, m) is None for n, m in assign.items()):
                continue
            s = score(assign)
            if best is None or s > best[0]:
                best = (s, assign, mask)
        if best is None:
            raise WeightQuantError("no single bit mask represents nonzero weights of every "
                                   "conv layer")
        result.uniform = {n: m.pattern for n, m in best[1].items()}
        result.uniform_score = best[0][0]
        current, current_score = best[1], best[0]
        say("same pattern: " + ", ".join(f"{n}={m}" for n, m in result.uniform.items())
            + f": calibration accuracy {best[0][0]:.2%}")
    else:
        current = {n: cands[n][0] for n in names}
        current_score = score(current)
    if same_pattern:
        result.strategy = "same-pattern"
    else:
        total = math.prod(len(cands[n]) for n in names)
        if total <= budget:
            result.strategy = "exhaustive"
            for combo in itertools.product(*(cands[n] for n in names)):
                assign = dict(zip(names, combo, strict=True))
                s = score(assign)
                if s > current_score:
                    current, current_score = assign, s
        else:
            result.strategy = "coordinate-descent"
            spent, changed = 0, True
            while changed and spent < budget:
                changed = False
                for n in names:
                    for mask in cands[n]:
                        if spent >= budget or mask == current[n]:
                            continue
                        trial = {**current, n: mask}
                        s = score(trial)
                        spent += 1
                        if s > current_score:
                            current, current_score, changed = trial, s, True
        say(f"per-layer ({result.strategy}): "
            + ", ".join(f"{n}={m.pattern}" for n, m in current.items())
            + f": calibration accuracy {current_score[0]:.2%}")
    result.masks, result.score, result.evaluations = current, current_score[0], count["n"]
    return result


def parse_patterns(text) -> dict:
    """``conv1=X0.0XX,conv2=5_2_0_1_0`` -> ``{name: Mask}``; ValueError naming the entry."""
    out = {}
    if not text:
        return out
    for item in str(text).split(","):
        name, sep, pat = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--pattern entries are LAYER=PATTERN (e.g. conv1=X0.0XX), not "
                             f"{item!r}")
        try:
            out[name.strip()] = parse(pat.strip())
        except (ValueError, TypeError) as exc:
            raise ValueError(f"--pattern for layer '{name.strip()}': {exc}") from None
    return out


def plain_reference(a_max: float, active: int, span: int) -> Mask:
    """The plain ``active``-bit reference for a layer whose largest weight is ``a_max``: the
    ``active - 1`` contiguous magnitude bits of the ``span``-bit format (binary point from
    :func:`point_for`) that start at the layer's most significant bit, the lowest run that
    still covers ``a_max`` (an ``active``-bit fixed-point format with its point fitted to the
    layer, inside the span)."""
    frac = point_for(a_max, span)
    target = a_max * 2.0 ** frac
    run = active - 1
    for top in range(run - 1, span - 1):
        if (1 << (top + 1)) - (1 << (top - run + 1)) >= target:
            break
    return Mask(span, frac, tuple(range(top - run + 1, top + 1)))
