"""Folding pass: choose PE/SIMD per weight layer (``Network -> Network``)."""

from __future__ import annotations

import re

from . import ir
from .errors import HwquantError
from .plan import layer_simd_choices, mvu_cycles, needs_window

__all__ = ["FoldError", "parse_fold_spec", "apply_folding", "divisors", "default_target"]


class FoldError(HwquantError, ValueError):
    """A folding request is malformed or impossible."""


def divisors(n: int) -> list:
    return [d for d in range(1, n + 1) if n % d == 0]


def parse_fold_spec(spec: str) -> tuple:
    """``"max" | "min" | "auto" | "LAYER=PE:SIMD,..."`` -> ``(mode, overrides)``.

    Layers not named in an override list are folded by ``auto``.
    """
    spec = (spec or "auto").strip()
    if spec in ("max", "min", "auto"):
        return spec, {}
    overrides = {}
    for item in spec.split(","):
        m = re.fullmatch(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(\d+)\s*:\s*(\d+)\s*", item)
        if not m:
            raise FoldError(f"Fold must be 'max', 'min', 'auto' or 'LAYER=PE:SIMD,...', "
                            f"not {item.strip()!r}")
        if m.group(1) in overrides:
            raise FoldError(f"Fold names layer {m.group(1)!r} twice")
        overrides[m.group(1)] = (int(m.group(2)), int(m.group(3)))
    return "auto", overrides


def _positions(layer) -> int:
    _, h, w = layer.in_shape
    (ph, pw) = layer.padding
    return (h + 2 * ph) * (w + 2 * pw)


def default_target(net: ir.Network) -> int:
    """Default cycle target of ``auto``: 8x the slowest part that does not fold with PE and
    SIMD: the input stream (one pixel per cycle) and the padded positions a sliding window
    of a conv or pool walks at one pixel per cycle. Small hardware that keeps those within
    an order of magnitude of busy."""
    pixels = net.input_shape[1] * net.input_shape[2] if len(net.input_shape) == 3 else 1
    walks = [_positions(layer) for layer in net.layers
             if isinstance(layer, (ir.MaxPool2d, ir.AvgPool2d))
             or (isinstance(layer, ir.Conv2d) and needs_window(layer))]
    return 8 * max(walks + [pixels])


#: Register-mode windows (SIMD a multiple of the channels) hold the whole window in
#: flip-flops; ``auto`` uses them only for windows up to this many bits.
AUTO_REGISTER_WINDOW_BITS = 512


def _auto_simd_choices(layer) -> list:
    choices = layer_simd_choices(layer)
    if isinstance(layer, ir.Conv2d) and needs_window(layer):
        c = layer.in_shape[0]
        if layer.fan_in * layer.in_format.bits > AUTO_REGISTER_WINDOW_BITS:
            choices = [s for s in choices if c % s == 0]
    return choices


def _fold_cost(layer):
    """``fold -> cost`` of the layer's kind when its cost face ranks folds itself
    (``fold_cost``: the binary kind, whose lanes are popcount bits, far cheaper than its PEs'
    accumulators and comparators); ``None`` for kinds ranked by their multipliers."""
    from .kinds import cost_model

    face = getattr(cost_model(layer), "fold_cost", None)
    return None if face is None else (lambda fold: face(layer, fold))


#: Per-layer orders of ``auto`` (:func:`apply_folding`'s ``prefer``): ``"multipliers"``, the
#: fewest PE*SIMD, then the fewest PEs; ``"pe"``, the fewest PEs (accumulators, epilogues and
#: their multipliers, one per PE), then the fewest PE*SIMD.
PREFER = ("multipliers", "pe")


def _auto_fold(layer, target: int, prefer: str = "multipliers") -> ir.Fold:
    """Fewest multipliers (PE*SIMD) whose cycles ``vectors * NF * SF`` meet ``target``; ties
    prefer fewer PEs (fewer accumulators and epilogues); ``prefer="pe"`` ranks the PEs
    first. A kind whose cost face ranks folds (``fold_cost``) is ranked by that cost
    instead. SIMD is one the streams support (:func:`hwquant.plan.layer_simd_choices`)."""
    best = None
    cost = _fold_cost(layer)
    for pe in divisors(layer.out_channels):
        for simd in _auto_simd_choices(layer):
            cycles = mvu_cycles(layer, ir.Fold(pe, simd))
            if cycles > target:
                continue
            order = (pe * simd, pe) if prefer == "multipliers" else (pe, pe * simd)
            key = order if cost is None else (cost(ir.Fold(pe, simd)), *order)
            if cycles <= target and (best is None or key < best[0]):
                best = (key, pe, simd)
    if best is None:  # even the widest folding is slower than the target
        return ir.Fold(layer.out_channels, max(_auto_simd_choices(layer)))
    return ir.Fold(best[1], best[2])


def apply_folding(net: ir.Network, spec: str = "auto", *, target_cycles: int | None = None,
                  prefer: str = "multipliers"):
    """Return ``net`` with a :class:`~hwquant.ir.Fold` on every weight layer.

    ``max``: fully unrolled (every weight a constant). ``min``: one multiplier per layer.
    ``auto``: per layer the fewest multipliers meeting ``target_cycles`` (default
    :func:`default_target`; ``prefer="pe"``: the fewest PEs, see :data:`PREFER`). Per-layer
    overrides ``LAYER=PE:SIMD`` are checked against the network (known name, PE divides the
    output channels, SIMD divides the fan-in).
    """
    if prefer not in PREFER:
        raise FoldError(f"Fold preference must be one of {', '.join(PREFER)}, not {prefer!r}")
    mode, overrides = parse_fold_spec(spec)
    names = {layer.name for layer in net.weight_layers}
    for name, (pe, simd) in overrides.items():
        if name not in names:
            raise FoldError(f"Fold names layer {name!r}, which is not a weight layer; weight "
                            f"layers: {', '.join(sorted(names))}")
    if target_cycles is not None and (not isinstance(target_cycles, int) or target_cycles < 1):
        raise FoldError(f"Target cycles must be a positive integer, not {target_cycles!r}")
    target = target_cycles
    if target is None and mode == "auto" and not names <= set(overrides):
        target = default_target(net)  # plans the hardware: only when auto needs it
    for layer in net.weight_layers:
        if layer.name in overrides:
            pe, simd = overrides[layer.name]
            if pe < 1 or layer.out_channels % pe:
                raise FoldError(f"Layer '{layer.name}': PE must divide its {layer.out_channels} "
                                f"output channels ({divisors(layer.out_channels)}), not {pe}")
            if simd not in layer_simd_choices(layer):
                raise FoldError(f"Layer '{layer.name}': SIMD must be one of "
                                f"{layer_simd_choices(layer)} (what its input stream can "
                                f"supply), not {simd}")
            fold = ir.Fold(pe, simd)
        elif mode == "max":
            fold = ir.Fold(layer.out_channels, max(layer_simd_choices(layer)))
        elif mode == "min":
            fold = ir.Fold(1, 1)
        else:
            fold = _auto_fold(layer, target, prefer)
        net = net.replace_layer(layer.name, fold=fold)
    net.validate()
    return net

