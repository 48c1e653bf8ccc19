"""The bit-mask rows of ``hwquant compare --methods bitmask``: plain, same-pattern, per-layer.

For each active width ``m`` (``--bits``), three post-training quantizations of the same float
model, as in the bit-masked fixed-point study (Doi et al.): the *plain* ``m``-bit reference
(every conv layer a contiguous ``m``-bit sign-magnitude format, its binary point placed so it
covers the layer's largest weight), one mask for every conv layer (*same-pattern*, the
searched baseline) and a mask per conv layer (*per-layer*, searched). Non-conv layers get
8-bit ``fixed`` weights in all three. The report adds the chosen patterns per layer and one
PNG per conv layer and width: the layer's (BatchNorm-folded) float weights as a histogram with
the real values the chosen per-layer mask can represent overlaid.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

__all__ = ["VARIANTS", "conv_weights", "plain_patterns", "variant_options",
           "render_masks_markdown", "plot_mask_histograms"]

#: The three rows per active width, in table order.
VARIANTS = ("plain", "same-pattern", "per-layer")


def conv_weights(model_path) -> dict:
    """``{conv layer: float weights (NumPy)}`` of the model, BatchNorm folded (what the
    quantizer sees)."""
    from ..frontend import load_model
    from .schedules import TrainableGraph

    graph = load_model(model_path)
    model = TrainableGraph(graph)
    return {n.name: model.weights[n.name].detach().numpy().copy()
            for n in graph.nodes if n.op == "conv2d"}


def plain_patterns(weights: dict, active: int, span: int) -> str:
    """``--pattern`` text of the plain ``active``-bit reference for every conv layer
    (:func:`hwquant.quant.bitmask.plain_reference`)."""
    from .bitmask import plain_reference

    return ",".join(f"{name}={plain_reference(float(np.abs(w).max()), active, span)}"
                    for name, w in weights.items())


def variant_options(base, variant: str, active: int, weights: dict):
    """The options of one bit-mask row (post-training: no schedule)."""
    if variant not in VARIANTS:
        raise ValueError(f"bitmask variant must be one of {', '.join(VARIANTS)}, "
                         f"not {variant!r}")
    opts = dataclasses.replace(base, method="bitmask", wbits=active, schedule="none",
                               patterns=None, same_pattern=False)
    if variant == "plain":
        return dataclasses.replace(opts, patterns=plain_patterns(weights, active,
                                                                  opts.resolved_span()))
    if variant == "same-pattern":
        return dataclasses.replace(opts, same_pattern=True)
    return opts


def render_masks_markdown(rows, float_accuracy, span) -> list:
    """Markdown lines: accuracy of plain / same-pattern / per-layer per width, then the
    patterns each row used."""
    rows = [r for r in rows if r["method"] == "bitmask"]
    if not rows:
        return []
    widths = sorted({r["wbits"] for r in rows})
    cell = {(r["wbits"], r["schedule"]): r for r in rows}
    lines = ["## Bit-masked weights", "",
             (f"Conv layers under a mask of `m` active bits (sign included) over a {span}-bit "
              f"sign-magnitude span; plain = the `m − 1` contiguous magnitude bits from each layer's most significant one (an `m`-bit fixed-point format with its point fitted per layer). Golden-model test "
              f"accuracy, points versus float ({float_accuracy:.2%}) in brackets; masks "
              f"searched on training images."), "",
             "| m | " + " | ".join(VARIANTS) + " |", "|---:|" + "---:|" * len(VARIANTS)]
    for m in widths:
        cells = []
        for v in VARIANTS:
            r = cell.get((m, v))
            cells.append("—" if r is None else f"{r['accuracy']:.2%} ({r['delta'] * 100:+.2f})")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += ["", ("Patterns, and the accuracy on the search's training-image split (float "
                   "activations, the search's score):"), "",
              "| m | row | patterns | search split |", "|---:|---|---|---:|"]
    for m in widths:
        for v in VARIANTS:
            r = cell.get((m, v))
            if r is not None:
                pats = ", ".join(f"`{k}={p}`" for k, p in (r.get("patterns") or {}).items())
                score = r.get("calibration_accuracy")
                shown = "—" if score is None else f"{score:.2%}"
                lines.append(f"| {m} | {v} | {pats} | {shown} |")
    lines.append("")
    for m in widths:
        r = cell.get((m, "per-layer"))
        for name in (r or {}).get("patterns") or {}:
            lines.append(f"![{name}, m = {m}]({histogram_name(m, name)})")
    lines.append("")
    return lines


def histogram_name(active: int, layer: str) -> str:
    return f"bitmask_m{active}_{layer}.png"


def plot_mask_histograms(rows, weights: dict, out_dir) -> list:
    """One PNG per conv layer and width of the per-layer rows; returns the file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..bitmask import parse

    written = []
    for r in rows:
        if r["method"] != "bitmask" or r["schedule"] != "per-layer":
            continue
        for name, pattern in (r.get("patterns") or {}).items():
            w = weights[name].ravel()
            values = parse(pattern).values()
            fig, ax = plt.subplots(figsize=(6.5, 3.6))
            lim = max(float(np.abs(w).max()), float(np.abs(values).max())) * 1.05
            ax.hist(w, bins=120, range=(-lim, lim), color="C0", alpha=0.8,
                    label=f"{name} weights ({w.size})")
            for k, v in enumerate(values):
                ax.axvline(v, color="C3", linewidth=0.9, alpha=0.8,
                           label=f"representable by {pattern}" if k == 0 else None)
            ax.set_xlabel("weight (BatchNorm folded)")
            ax.set_ylabel("count")
            ax.set_title(f"{name}: m = {r['wbits']}, mask {pattern}")
            ax.legend(fontsize=7)
            fig.tight_layout()
            path = Path(out_dir) / histogram_name(r["wbits"], name)
            fig.savefig(path, dpi=100)
            plt.close(fig)
            written.append(path.name)
    return written
