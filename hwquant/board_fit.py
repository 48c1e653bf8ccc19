"""Whether a folded network fits a board with headroom, and the fastest folding that does.

:func:`check_board_fit` models a folded network (its dataflow plan with FIFOs sized from the
replayed schedule, :func:`hwquant.compile.plan_build`) for the board's family
(:func:`hwquant.estimate.model.estimate_network`) and compares it with the board's capacity:
LUTs (distributed RAM included) within ``lut_budget`` of the device (default
:data:`DEFAULT_LUT_BUDGET`, 70 %: the headroom vendors recommend for place and route),
flip-flops, DSP blocks and block RAMs within the device. A design that does not fit raises
:class:`hwquant.estimate.fit.DoesNotFitError` naming, per resource over, the largest consumer
(layer, stage, part) and what to change.

:func:`fold_for_board` searches the folding (PE/SIMD per weight layer). Each candidate cycle
target ``T`` (every ``vectors * NF * SF`` some layer can reach) gives two foldings, per layer
the fewest multipliers or the fewest PEs that meet ``T`` (:func:`hwquant.fold.apply_folding`
with ``target_cycles=T`` and ``prefer``); the targets are walked from the fastest up and the
first candidate within every capacity wins (resources are not monotone in ``T``: a DSP count
follows the PEs), each screened first by the model without the FIFO replay. With
``target_fps`` the target is the board clock's cycles per image at that rate, and the folding
the least area meeting it.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import ir
from .errors import HwquantError
from .estimate.fit import DoesNotFitError, check_fit

__all__ = ["DEFAULT_LUT_BUDGET", "FoldChoice", "check_board_fit", "model_board_fit",
           "fold_for_board", "candidate_targets"]

#: Share of a device's LUTs a design may fill by the model.
DEFAULT_LUT_BUDGET = 0.7

_NAMES = {"lut": "LUTs", "ff": "flip-flops", "dsp": "DSP blocks", "bram": "block RAMs"}

_ADVICE = {
    "lut": "fold it more (--fold {layer}=PE:SIMD with a smaller PE*SIMD, or --fold auto), use "
           "fewer weight/activation bits (quantize --bits 4 --abits 4), or a cheaper method "
           "(--method inq: shifts instead of multipliers; --method binary: XNOR-popcounts)",
    "ff": "fold it more (--fold {layer}=PE:SIMD with a smaller PE*SIMD, or --fold auto) or "
          "use fewer activation bits (quantize --abits 4)",
    "dsp": "its multipliers map to DSP blocks: fold it more (--fold {layer}=PE:SIMD with a "
           "smaller PE*SIMD, or --fold auto), or use a method without multipliers "
           "(--method inq or binary)",
    "bram": "its memories (weight ROM, buffers) fill block RAMs: use fewer weight bits "
            "(quantize --bits 4) or fold it less (a ROM word per PE*SIMD weights), or a "
            "smaller network",
}


def _check_budget(lut_budget):
    if isinstance(lut_budget, bool) or not isinstance(lut_budget, (int, float)) or \
            not 0 < lut_budget <= 1:
        raise HwquantError(f"LUT budget must be a fraction in (0, 1], not {lut_budget!r}")


def _plan(net):
    from .compile import plan_build
    from .golden.binary import flip_negative_directions

    return plan_build(flip_negative_directions(net))


def model_board_fit(net: ir.Network, board, *, lut_budget: float = DEFAULT_LUT_BUDGET):
    """``(fit, over, allowed, cycles)`` of a folded network on a board by the model: the
    :class:`hwquant.estimate.fit.Fit`, the resources over their allowance (lut, ff, dsp, bram
    order), ``{resource: allowed amount}`` and the replayed cycles per image."""
    from .estimate.model import estimate_network

    _check_budget(lut_budget)
    plan, sched = _plan(net)
    fit = check_fit(estimate_network(plan, board.family), board, raise_error=False)
    allowed = dict(fit.available)
    allowed["lut"] = int(lut_budget * fit.available["lut"])
    over = [k for k in ("lut", "ff", "dsp", "bram") if fit.used[k] > allowed[k]]
    return fit, over, allowed, sched.period


def _report(fit, allowed, cycles, lut_budget):
    return {"used": dict(fit.used), "available": dict(fit.available), "allowed": allowed,
            "lut_budget": lut_budget,
            "utilization": {k: (round(v, 4) if v is not None else None)
                            for k, v in fit.utilization().items()},
            "largest": fit.largest, "cycles_per_inference": cycles}


def _message(board, fit, over, allowed, lut_budget, prefix="The network does not fit"):
    parts = []
    for k in over:
        big = fit.largest.get(k)
        cap = (f"{allowed[k]} allowed ({lut_budget:.0%} of {fit.available[k]})" if k == "lut"
               else f"{fit.available[k]} available")
        part = f"{_NAMES[k]}: {fit.used[k]} needed by the model, {cap}"
        if big is not None:
            part += (f"; the largest consumer is layer '{big['layer']}' ({big['stage']}, "
                     f"{big['component']}: {big['amount']}): "
                     + _ADVICE[k].format(layer=big["layer"]))
        parts.append(part)
    return f"{prefix} board '{board.id}' ({board.device}): " + "; ".join(parts)


def check_board_fit(net: ir.Network, board, *, lut_budget: float = DEFAULT_LUT_BUDGET) -> dict:
    """Check a folded network fits ``board`` by the model (LUTs within ``lut_budget``, the
    rest within the device); return the model's numbers for the build report (``used``,
    ``available``, ``allowed``, ``utilization``, ``largest``, ``cycles_per_inference``).

    Raises
    ------
    DoesNotFitError
        Naming each resource over, the largest consumer and what to change.
    """
    fit, over, allowed, cycles = model_board_fit(net, board, lut_budget=lut_budget)
    if over:
        raise DoesNotFitError(_message(board, fit, over, allowed, lut_budget))
    return _report(fit, allowed, cycles, lut_budget)


@dataclass(frozen=True)
class FoldChoice:
    """The folding :func:`fold_for_board` chose.

    Attributes
    ----------
    network : ir.Network
        The network with its folding.
    target_cycles : int
        The cycle target it was folded for.
    cycles : int
        Replayed cycles per image.
    evaluated : int
        Foldings modelled during the search.
    goal : str
        ``"most images/s"`` or ``"least area for F images/s"``.
    """

    network: ir.Network
    target_cycles: int
    cycles: int
    evaluated: int
    goal: str

    def summary(self) -> dict:
        return {"goal": self.goal, "target_cycles": self.target_cycles,
                "cycles_per_inference": self.cycles, "foldings_modelled": self.evaluated}


def candidate_targets(net: ir.Network) -> list:
    """Sorted cycle targets the folding can meet: every ``vectors * NF * SF`` of every weight
    layer's foldings (:func:`hwquant.plan.mvu_cycles`), from the fastest folding's up."""
    from .fold import divisors
    from .plan import layer_simd_choices, mvu_cycles

    targets = set()
    for layer in net.weight_layers:
        for pe in divisors(layer.out_channels):
            for simd in layer_simd_choices(layer):
                targets.add(mvu_cycles(layer, ir.Fold(pe, simd)))
    return sorted(targets)


def _screen_over(net: ir.Network, board, lut_budget) -> list:
    """The resources a folded network is over by the model with every FIFO at depth 1 and
    no replay (milliseconds): FIFOs cost least at depth 1 and nothing else depends on their
    depths, so a resource over here is over in :func:`model_board_fit` too."""
    from .estimate.model import estimate_network
    from .golden.binary import flip_negative_directions
    from .plan import plan_network

    plan = plan_network(flip_negative_directions(net))
    plan = plan.with_fifo_depths({name: 1 for name in plan.fifos})
    fit = check_fit(estimate_network(plan, board.family), board, raise_error=False)
    allowed = dict(fit.available)
    allowed["lut"] = int(lut_budget * fit.available["lut"])
    return [k for k in ("lut", "ff", "dsp", "bram") if fit.used[k] > allowed[k]]


def fold_for_board(net: ir.Network, board, *, lut_budget: float = DEFAULT_LUT_BUDGET,
                   target_fps: float | None = None, clock_mhz: float | None = None,
                   engine_stages="auto") -> FoldChoice:
    """The fastest folding of ``net`` that fits ``board`` by the model, every capacity
    (LUTs within ``lut_budget``, flip-flops, DSP blocks, block RAMs) at once; or, with
    ``target_fps``, the least area that reaches that many images/s at the board clock (or at
    ``clock_mhz``, the design clock of a build with a PLL). Every candidate is modelled with
    its adder-graph engines cut as ``engine_stages`` asks
    (:func:`hwquant.engine_stages.choose_stages`): their pipeline registers count.

    The candidates are, for every cycle target from the fastest up
    (:func:`candidate_targets`), the per-layer foldings of ``auto`` in both orders of
    :data:`hwquant.fold.PREFER` (fewest multipliers; fewest PEs, which saves the per-PE
    epilogue multipliers a DSP budget counts). Resources are not monotone in the target
    (a DSP count follows the PEs, a fully unrolled layer becomes an adder graph), so the
    search walks the targets in order instead of bisecting: each candidate is screened
    without the FIFO replay (:func:`_screen_over`, exact for DSP blocks, a lower bound
    otherwise) and only those that pass are modelled in full; the first that fits wins.

    Raises
    ------
    DoesNotFitError
        Not even the most folded design fits (or none reaching ``target_fps`` does); the
        message names the largest consumer of the most folded candidate.
    HwquantError
        ``target_fps`` is not positive, or faster than the fastest folding at the board clock.
    """
    from .engine_stages import choose_stages, parse_stage_spec
    from .fold import PREFER, apply_folding

    _check_budget(lut_budget)
    parse_stage_spec(engine_stages)
    targets = candidate_targets(net)
    seen = {}

    def fold(target, prefer="multipliers"):
        folded = apply_folding(net, "auto", target_cycles=target, prefer=prefer)
        return choose_stages(folded, engine_stages)[0]

    def model(folded):
        key = tuple((layer.fold.pe, layer.fold.simd) for layer in folded.weight_layers)
        if key not in seen:
            seen[key] = (folded, *model_board_fit(folded, board, lut_budget=lut_budget))
        return seen[key]

    def first_fit(target_list):
        """The first candidate that fits, walking ``target_list`` in order, or None."""
        screened = set()
        for target in target_list:
            for prefer in PREFER:
                folded = fold(target, prefer)
                key = tuple((layer.fold.pe, layer.fold.simd) for layer in folded.weight_layers)
                if key in screened:
                    continue
                screened.add(key)
                if _screen_over(folded, board, lut_budget):
                    continue
                found = model(folded)
                if not found[2]:
                    return target, found
        return None

    if target_fps is not None:
        if isinstance(target_fps, bool) or not target_fps > 0:
            raise HwquantError(f"Target images/s must be positive, not {target_fps!r}")
        mhz = board.clock_mhz if clock_mhz is None else clock_mhz
        target = max(int(mhz * 1e6 // target_fps), 1)
        folded, fit, over, allowed, cycles = model(fold(target))
        if cycles > target:
            fastest = model(fold(targets[0]))[4]
            raise HwquantError(
                f"{target_fps:g} images/s needs at most {target} cycles per "
                f"image at the {mhz:.4g} MHz clock of '{board.id}'; the "
                f"fastest folding takes {fastest} ({mhz * 1e6 / fastest:,.0f} "
                f"images/s)")
        if over:
            other = model(fold(target, "pe"))
            if not other[2] and other[4] <= target:
                folded, fit, over, allowed, cycles = other
        if over:
            raise DoesNotFitError(_message(board, fit, over, allowed, lut_budget,
                                           f"No folding reaching {target_fps:g} images/s fits"))
        return FoldChoice(folded, target, cycles, len(seen),
                          f"least area for {target_fps:g} images/s")

    found = first_fit(targets)
    if found is None:  # not even the most folded design fits
        folded, fit, over, allowed, cycles = model(fold(targets[-1]))
        raise DoesNotFitError(_message(board, fit, over, allowed, lut_budget,
                                       "Even the most folded network does not fit"))
    target, (folded, fit, over, allowed, cycles) = found
    return FoldChoice(folded, target, cycles, len(seen), "most images/s")
