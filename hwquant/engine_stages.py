"""Pipeline stages inside the MVU's dot engine: which layers can be cut, how many cuts each
gets (:attr:`hwquant.ir.Fold.stages`), and the ``--engine-stages`` option (pure Python).

A fully unrolled layer (``PE = OC``, ``SIMD = F``) of a constant-weight kind builds its dot
products as one shared adder graph (:func:`engine_graph`: the ``fixed``, ``pow2`` and
``bitmask`` kinds' whole matrix, the ``template`` kind's window sum and parts, the memo
engine's plain rows). :class:`hwquant.hw.cmvm.ConstantMatrix` cuts that graph by depth into
``S + 1`` stages (:func:`hwquant.cmvm.pipeline_plan`); the MVU advances the cuts on its own
enable and delays its control by ``S``, so its latency is
:data:`hwquant.schedule.mvu.BASE_LATENCY` ``+ S`` and its rate is unchanged (one vector a
cycle). Every other engine has ``S = 0``.

The choice (:func:`choose_stages`, ``hwquant compile --engine-stages``):

* ``auto`` (default): the fewest cuts that leave no stage deeper than :data:`AUTO_LEVELS`
  adders, ``ceil(depth / AUTO_LEVELS) - 1``;
* ``N``: ``N`` cuts in every layer with an adder graph (at most its depth less one), 0
  elsewhere;
* ``LAYER=N`` (or ``LAYER=auto``): that layer; several items are comma-separated, and a bare
  ``auto`` or ``N`` among them is the rule of the unnamed layers.

A layer named with ``N > 0`` whose engine is no adder graph, or ``N`` beyond its graph's
depth less one, is an :class:`EngineStagesError` (one line, the layer and what is allowed).
"""

from __future__ import annotations

import dataclasses
import re

from . import ir
from . import plan as P
from .engines import check_weight_layer_names
from .errors import HwquantError

__all__ = ["AUTO_LEVELS", "EngineStagesError", "auto_stages", "check_stages", "choose_stages",
           "engine_graph", "max_stages", "parse_stage_spec"]

#: Adder levels per stage that ``auto`` allows: a stage of 3 ripple adders of ~10-16 bits
#: with their routing is about the delay of the MVU's other stages (a DSP multiply and its
#: adder, the epilogue's requantization). Not swept: on iCE40 the digits default's first conv
#: graph (depth 6) alone went 64.5 -> 113.7 MHz with 2 cuts; in a whole network on the
#: ULX3S the folded layers' engines bound Fmax first (``benchmarks/bench_engine_stages.py``).
AUTO_LEVELS = 3


class EngineStagesError(HwquantError, ValueError):
    """An ``--engine-stages`` request is malformed or impossible."""


def _unrolled(layer) -> bool:
    return layer.fold.pe == layer.out_channels and layer.fold.simd == layer.fan_in


def engine_graph(layer, weights):
    """The :class:`hwquant.cmvm.AdderGraph` the MVU's engine of ``layer`` builds at its fold
    (``weights`` ``(OC, F)`` in window-lane order), or ``None`` when the engine is no adder
    graph (folded, a kind without constant-matrix arithmetic, a memo engine whose rows are all
    grouped). The hardware engines build exactly this graph (the construction is cached)."""
    import numpy as np

    from .cmvm import layer_adder_graph
    from .engine_shape import shape_for
    from .kinds import uses_constant_matrix

    if not _unrolled(layer):
        return None
    w = np.asarray(weights, dtype=np.int64)
    if layer.fold.engine == "memo":
        from .memo import memo_layout

        lay = memo_layout(layer)
        plain = [c for c in range(layer.out_channels) if not lay.grouped[c]]
        return layer_adder_graph(layer, w[plain]) if plain else None
    shape = shape_for(layer)
    if shape is not None:
        matrix = getattr(shape, "unrolled_matrix", None)
        return None if matrix is None else layer_adder_graph(layer, matrix(layer, w))
    return layer_adder_graph(layer, w) if uses_constant_matrix(layer) else None


def check_stages(layer, weights) -> None:
    """Raise ``ValueError`` naming ``layer`` when its ``Fold.stages > 0`` but its engine is no
    adder graph (:func:`engine_graph`)."""
    stages = layer.fold.stages
    if stages and engine_graph(layer, weights) is None:
        raise ValueError(f"Layer '{layer.name}': engine stages must be 0, not {stages}: its "
                         f"engine (PE={layer.fold.pe} SIMD={layer.fold.simd}, "
                         f"{layer.encoding}, engine {layer.fold.engine}) is no adder graph")


def max_stages(graph) -> int:
    """Most cuts worth making in ``graph``: one between every two adder levels (its depth less
    one; 0 for a graph without adders)."""
    return max(graph.depth - 1, 0)


def auto_stages(graph, levels: int = AUTO_LEVELS) -> int:
    """``auto``'s cuts: the fewest that leave no stage deeper than ``levels`` adders."""
    return max(-(-graph.depth // levels) - 1, 0)


_ITEM = re.compile(r"\s*(?:([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*)?(auto|\d+)\s*")


def parse_stage_spec(spec) -> tuple:
    """``"auto" | "N" | "LAYER=N,..."`` (or a list of such items, or ``{layer: N}``) ->
    ``(rule, {layer: rule})`` with a rule ``"auto"`` or an int; the first is that of the
    layers not named (default ``auto``). Malformed items raise :class:`EngineStagesError`."""
    if spec is None:
        items = []
    elif isinstance(spec, dict):
        items = [f"{k}={v}" for k, v in spec.items()]
    elif isinstance(spec, (int, str)) and not isinstance(spec, bool):
        items = str(spec).split(",")
    else:
        items = [part for item in spec for part in str(item).split(",")]
    default, named = "auto", {}
    seen_default = False
    for item in items:
        m = _ITEM.fullmatch(item)
        if not m:
            raise EngineStagesError(f"Engine stages must be auto, N or LAYER=N (N a "
                                    f"non-negative integer, comma-separated), not {item!r}")
        name, value = m.groups()
        rule = value if value == "auto" else int(value)
        if name is None:
            if seen_default and rule != default:
                raise EngineStagesError(f"Engine stages for the unnamed layers given twice "
                                        f"({default}, {rule})")
            default, seen_default = rule, True
        elif name in named and named[name] != rule:
            raise EngineStagesError(f"Engine stages for layer '{name}' given twice "
                                    f"({named[name]}, {rule})")
        else:
            named[name] = rule
    return default, named


def choose_stages(net: ir.Network, spec="auto") -> tuple:
    """``(network with each weight layer's Fold.stages set, {layer: choice})`` for a folded
    network whose engines are chosen. A choice is ``{"stages", "depth", "stage_depth",
    "reason"}``: ``depth`` the adder graph's (``None`` without one), ``stage_depth`` the
    adders of its deepest stage. Raises :class:`EngineStagesError` for a bad ``spec``
    (:func:`parse_stage_spec`), a name that is no weight layer, ``N > 0`` for a layer
    without an adder graph, or ``N`` beyond :func:`max_stages`."""
    from .sample_range import is_sample, mvu_twin

    default, named = parse_stage_spec(spec)
    check_weight_layer_names(net, named, EngineStagesError, "Engine stages name")
    choices = {}
    for layer in net.weight_layers:
        mvu_layer = mvu_twin(layer) if is_sample(layer) else layer
        graph = engine_graph(mvu_layer, P.mvu_weights(net, layer))
        rule = named.get(layer.name, default)
        asked = layer.name in named
        if graph is None:
            if asked and rule not in ("auto", 0):
                raise EngineStagesError(
                    f"Layer '{layer.name}': engine stages must be 0 (or auto): its engine is "
                    f"no adder graph (PE={layer.fold.pe} SIMD={layer.fold.simd}, "
                    f"{layer.encoding}, engine {layer.fold.engine}); only fully unrolled "
                    f"constant-weight layers can be pipelined")
            stages, reason = 0, "no adder graph"
        elif rule == "auto":
            stages = auto_stages(graph)
            reason = f"auto: at most {AUTO_LEVELS} adder levels per stage"
        elif rule > max_stages(graph):
            if asked:
                raise EngineStagesError(
                    f"Layer '{layer.name}': engine stages must be 0..{max_stages(graph)} (its "
                    f"adder graph is {graph.depth} adders deep), not {rule}")
            stages, reason = max_stages(graph), f"{rule} requested, at most the depth less one"
        else:
            stages, reason = rule, "requested (--engine-stages)"
        choices[layer.name] = {
            "stages": stages, "depth": None if graph is None else graph.depth,
            "stage_depth": None if graph is None else -(-graph.depth // (stages + 1)),
            "reason": reason}
        if stages != layer.fold.stages:
            net = net.replace_layer(layer.name,
                                    fold=dataclasses.replace(layer.fold, stages=stages))
    return net, choices
