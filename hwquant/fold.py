"""Folding pass: choose PE/SIMD per weight layer (``Network -> Network``)."""

from __future__ import annotations

import re

from . import ir
from .errors import HwquantError
from .hw.network import plan_stages

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


def _vectors(layer) -> int:
    return layer.out_shape[1] * layer.out_shape[2] if isinstance(layer, ir.Conv2d) else 1


def default_target(net: ir.Network, stages=None) -> int:
    """Default cycle target of ``auto``: 8x the slowest stage that cannot be folded (sliding
    windows, pooling, the input stream): small hardware that keeps the unfoldable stages
    within an order of magnitude of busy."""
    stages = plan_stages(net) if stages is None else stages
    fixed = [st.cycles for st in stages if st.role != "mvu"]
    pixels = net.input_shape[1] * net.input_shape[2] if len(net.input_shape) == 3 else 1
    return 8 * max(fixed + [pixels])


def _auto_fold(layer, target: int) -> ir.Fold:
    """Fewest multipliers (PE*SIMD) whose cycles ``vectors * NF * SF`` meet ``target``; ties
    prefer fewer PEs (fewer accumulators and epilogues)."""
    vec = _vectors(layer)
    best = None
    for pe in divisors(layer.out_channels):
        for simd in divisors(layer.fan_in):
            cycles = vec * (layer.out_channels // pe) * (layer.fan_in // simd)
            key = (pe * simd, pe)
            if cycles <= target and (best is None or key < best[0]):
                best = (key, pe, simd)
    if best is None:  # even fully unrolled is slower than the target
        return ir.Fold(layer.out_channels, layer.fan_in)
    return ir.Fold(best[1], best[2])


def apply_folding(net: ir.Network, spec: str = "auto", *, target_cycles: int | None = None):
    """Return ``net`` with a :class:`~hwquant.ir.Fold` on every weight layer.

    ``max``: fully unrolled (every weight a constant). ``min``: one multiplier per layer.
    ``auto``: per layer the fewest multipliers meeting ``target_cycles`` (default
    :func:`default_target`). Per-layer overrides ``LAYER=PE:SIMD`` are checked against the
    network (known name, PE divides the output channels, SIMD divides the fan-in).
    """
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
            if simd < 1 or layer.fan_in % simd:
                raise FoldError(f"Layer '{layer.name}': SIMD must divide its fan-in "
                                f"{layer.fan_in} ({divisors(layer.fan_in)}), not {simd}")
            fold = ir.Fold(pe, simd)
        elif mode == "max":
            fold = ir.Fold(layer.out_channels, layer.fan_in)
        elif mode == "min":
            fold = ir.Fold(1, 1)
        else:
            fold = _auto_fold(layer, target)
        net = net.replace_layer(layer.name, fold=fold)
    net.validate()
    return net

