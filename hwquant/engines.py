"""Which MVU dot engine each weight layer gets (:data:`hwquant.ir.ENGINES`): the compiler's
choice by the cost model, and the user's ``LAYER=ENGINE`` overrides.

``plain`` is the layer's kind's own engine (:func:`hwquant.kinds.hw_engine`); ``memo`` is the
value-grouped engine (:mod:`hwquant.memo`), an implementation choice that never changes a
layer's output. For every weight layer the memo engine can serve at its fold, the compiler
models the whole MVU both ways (:func:`hwquant.estimate.mvu.mvu_resources`, for the board's
family, ``ice40`` without a board) and takes memo when it is cheaper both with DSP inference
(``LUT + DSP_LUTS * DSP``) and without DSP blocks (LUTs, Yosys ``-nodsp``): a DSP block that
holds a 2-bit product is not worth 64 LUTs, one that holds an 8 x 8 product is. Each choice is
reported with its reason and both costs.
"""

from __future__ import annotations

import dataclasses
import re

from . import ir
from . import plan as P
from .errors import HwquantError
from .memo import check_memo, memo_refusal

__all__ = ["EngineError", "DSP_LUTS", "DEFAULT_FAMILY", "GATED_MEMO_FAMILIES", "check_weight_layer_names", "choose_engines",
           "parse_engine_specs"]

#: A DSP block ranks like this many LUTs when the compiler compares engines (about what an
#: 8 x 8 multiplier costs in LUT4 logic, and a DSP block is the scarcer resource).
DSP_LUTS = 64
#: Families where the folded memo engine's ``+-A`` PEs are built as AND-gated group sums
#: (:attr:`hwquant.ir.Fold.lane_pairs` False): with six-input LUTs the gate folds into the
#: adder's LUT. Measured (Yosys 0.70, the templated digits conv1 folded PE 16 x SIMD 3,
#: ``benchmarks/bench_templates.py``): xilinx 609 + 24 DSP gated against 634 + 24 on lane
#: pairs; on LUT4 families the pairs win (ice40 559 + 24 against 699 + 24).
GATED_MEMO_FAMILIES = ("xilinx",)
#: The family the engines are ranked for when no board is given.
DEFAULT_FAMILY = "ice40"


class EngineError(HwquantError, ValueError):
    """An ``--engine`` request is malformed or impossible."""


def parse_engine_specs(specs) -> dict:
    """``["LAYER=ENGINE", ...]`` (or a dict) -> ``{layer: engine}``; malformed items and
    unknown engines raise :class:`EngineError`."""
    if isinstance(specs, dict):
        items = [f"{k}={v}" for k, v in specs.items()]
    else:
        items = list(specs or ())
    out = {}
    for item in items:
        m = re.fullmatch(r"\s*([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(\S+)\s*", str(item))
        if not m:
            raise EngineError(f"Engine must be LAYER=ENGINE with ENGINE one of "
                              f"{', '.join(ir.ENGINES)}, not {item!r}")
        name, engine = m.groups()
        if engine not in ir.ENGINES:
            raise EngineError(f"Engine for layer '{name}' must be one of "
                              f"{', '.join(ir.ENGINES)}, not {engine!r}")
        if name in out and out[name] != engine:
            raise EngineError(f"Engine for layer '{name}' given twice ({out[name]}, {engine})")
        out[name] = engine
    return out


def check_weight_layer_names(net: ir.Network, names, error, what: str) -> None:
    """Raise ``error`` (``"<what> layer 'x', which is not a weight layer; weight layers:
    ..."``) for the first of ``names`` that is not a weight layer of ``net``."""
    known = [layer.name for layer in net.weight_layers]
    for name in names:
        if name not in known:
            raise error(f"{what} layer {name!r}, which is not a weight layer; weight layers: "
                        f"{', '.join(known)}")


def _cost(res) -> int:
    return res.lut + DSP_LUTS * res.dsp


def _row(res):
    return {"lut": res.lut, "ff": res.ff, "dsp": res.dsp}


def choose_engines(net: ir.Network, overrides=None, *, family=None) -> tuple:
    """``(network with each weight layer's Fold.engine set, {layer: choice})`` for a folded
    network. ``overrides`` ``{layer: engine}`` (or ``LAYER=ENGINE`` strings) win over the cost
    model; naming a layer that is not a weight layer, or ``memo`` for a layer it cannot serve,
    raises :class:`EngineError`. A choice is ``{"engine", "reason", "cost", "lut_without_dsp",
    "family"}`` with ``cost`` the modelled MVU per engine (``None`` for memo when it cannot
    serve the layer) and ``lut_without_dsp`` its LUTs when no DSP block is used."""
    from .estimate.mvu import mvu_resources

    overrides = parse_engine_specs(overrides)
    family = family or DEFAULT_FAMILY
    check_weight_layer_names(net, overrides, EngineError, "Engine names")
    choices = {}
    from .sample_range import is_sample, mvu_twin

    for layer in net.weight_layers:
        weights = P.mvu_weights(net, layer)
        # A per-sample bdcnn layer's MVU computes its twin on the Q-bit codes.
        mvu_layer = mvu_twin(layer) if is_sample(layer) else layer
        plain = dataclasses.replace(mvu_layer,
                                    fold=dataclasses.replace(layer.fold, engine="plain"))
        memo = dataclasses.replace(mvu_layer, fold=dataclasses.replace(layer.fold, engine="memo",
                                                                       lane_pairs=True))
        why_not = memo_refusal(layer)
        want = overrides.get(layer.name)
        if want == "memo" and why_not:
            try:
                check_memo(layer)
            except HwquantError as e:
                raise EngineError(f"{e} (--engine {layer.name}=memo)") from None
        plain_res = mvu_resources(plain, weights, family)
        plain_lut = mvu_resources(plain, weights, family, use_dsp=False).lut
        memo_res = memo_lut = None
        form = None
        if not why_not:
            memo, form = _memo_form(memo, weights, family)
            memo_res = mvu_resources(memo, weights, family)
            memo_lut = mvu_resources(memo, weights, family, use_dsp=False).lut
        cost = {"plain": _row(plain_res), "memo": None if memo_res is None else _row(memo_res)}
        cost_nodsp = {"plain": plain_lut, "memo": memo_lut}
        if want is not None:
            engine, reason = want, "requested (--engine)"
        elif why_not:
            engine, reason = "plain", f"memo cannot serve it: {why_not}"
        else:
            cheaper = _cost(memo_res) < _cost(plain_res) and memo_lut < plain_lut
            engine = "memo" if cheaper else "plain"
            reason = (f"cost model ({family}): memo {_cost(memo_res)} vs plain "
                      f"{_cost(plain_res)} LUT + {DSP_LUTS} x DSP, {memo_lut} vs {plain_lut} "
                      f"LUT without DSP blocks")
        if engine == "memo" and form is not None:
            reason += f"; {form}"
        choices[layer.name] = {"engine": engine, "reason": reason, "cost": cost,
                               "lut_without_dsp": cost_nodsp, "family": family}
        lane_pairs = memo.fold.lane_pairs if engine == "memo" else True
        if engine != layer.fold.engine or lane_pairs != layer.fold.lane_pairs:
            net = net.replace_layer(layer.name, fold=dataclasses.replace(
                layer.fold, engine=engine, lane_pairs=lane_pairs))
    return net, choices


def _memo_form(memo: ir.Layer, weights, family) -> tuple:
    """``(memo layer in the form built for family, why)``; ``why`` is ``None`` when the layer
    has no folded ``+-A`` PE that could read lane pairs (the two forms are the same). The form
    is the family's (:data:`GATED_MEMO_FAMILIES`), by measurement: the cost model ranks the
    two the other way on xilinx (671 against 594 LUT for the layer measured there, where Yosys
    has 609 against 634: 10 % high on the gated groups, 6 % low on the pairs), so it does not
    choose the form."""
    from .memo import memo_layout

    if not any(memo_layout(memo).paired):
        return memo, None
    if family in GATED_MEMO_FAMILIES:
        gated = dataclasses.replace(memo, fold=dataclasses.replace(memo.fold, lane_pairs=False))
        return gated, f"+-A PEs as AND-gated groups (LUT6 family {family})"
    return memo, f"+-A PEs on lane pairs (LUT4 family {family})"
