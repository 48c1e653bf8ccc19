"""The Binarized-DCNN grid of ``hwquant compare --methods bdcnn --basis K,... --qbits Q,...``.

One post-training ``bdcnn`` quantization per basis count ``K`` and bit-plane count ``Q`` (all
from the same float model, calibration images and seed), scored by the integer golden model on
the test split. Per cell the report keeps the accuracy drop versus float and the model size
from the bits the network stores (:func:`stored_bits`: ``K`` basis bits per weight and ``K``
coefficients of ``coef_bits`` each per neuron, against 32-bit float weights; biases left out
on both sides). The size does not depend on ``Q`` (the planes are built at run time). Rendered
as two Markdown grids (``K`` rows, ``Q`` columns) and a PNG of two heat maps.
"""

from __future__ import annotations

import numpy as np

from .. import ir

__all__ = ["stored_bits", "check_grid", "grid_runs", "render_grid_markdown", "plot_grid", "GRID_PNG"]

#: The heat map's file name when the report has other rows too (alone it is compare.png).
GRID_PNG = "bdcnn_grid.png"
#: Bits of a float weight in the size reference.
FLOAT_BITS = 32


def stored_bits(net) -> dict:
    """Model size of a ``bdcnn`` network from what it stores: per weight layer ``K * D`` basis
    bits plus ``K * coef_bits`` coefficient bits per output neuron (``fixed``/other encodings:
    ``weight_bits`` per weight), against ``32 * D`` per neuron as floats. Returns ``{"bits",
    "float_bits", "compression", "layers": [{"name", "bits", "float_bits", "compression"}]}``
    (``compression`` = ``1 - bits / float_bits``)."""
    layers = []
    for layer in net.weight_layers:
        oc, d = layer.out_channels, layer.fan_in
        data = layer.kind_data
        if isinstance(data, ir.BdcnnData):
            bits = oc * data.basis * (d + data.coef_bits)
        else:
            bits = oc * d * layer.weight_bits
        ref = oc * d * FLOAT_BITS
        layers.append({"name": layer.name, "bits": bits, "float_bits": ref,
                       "compression": 1 - bits / ref})
    bits = sum(entry["bits"] for entry in layers)
    ref = sum(entry["float_bits"] for entry in layers)
    return {"bits": bits, "float_bits": ref, "compression": 1 - bits / max(ref, 1),
            "layers": layers}


def check_grid(model_path, basis) -> None:
    """Before any run: every ``K`` of the grid below every weight layer's ``D`` (the message
    of :func:`hwquant.bdcnn.check_basis`, as a :class:`QuantizationError`)."""
    from ..bdcnn import DecompositionError, check_basis
    from ..frontend import load_model
    from .fixed import QuantizationError

    for node in load_model(model_path).nodes:
        if node.op in ("conv2d", "linear"):
            d = int(np.prod(np.shape(node.weight)[1:]))
            try:
                for k in basis:
                    check_basis(k, d, node.name)
            except DecompositionError as exc:
                raise QuantizationError(str(exc)) from None


def grid_runs(basis, qbits) -> list:
    """``(method, K, schedule, Q)`` rows of the grid, ``K`` major (post-training: no
    schedule)."""
    return [("bdcnn", k, "none", q) for k in basis for q in qbits]


def _cells(rows):
    rows = [r for r in rows if r["method"] == "bdcnn"]
    ks = sorted({r["wbits"] for r in rows})
    qs = sorted({r["abits"] for r in rows})
    return ks, qs, {(r["wbits"], r["abits"]): r for r in rows}


def render_grid_markdown(rows, float_accuracy, settings=None) -> list:
    """Markdown lines: accuracy (points versus float) and compression, ``K`` x ``Q``."""
    ks, qs, cell = _cells(rows)
    if not ks:
        return []
    s = settings or {}
    head = "| K \\ Q | " + " | ".join(str(q) for q in qs) + " |"
    rule = "|---:|" + "---:|" * len(qs)
    lines = ["## Binarized-DCNN (K bases × Q bit planes)", "",
             (f"Post-training binary decomposition of every conv/linear layer (coefficients "
              f"{s.get('coef_bits', '?')}-bit, {s.get('restarts', '?')} restarts, "
              f"{s.get('range', 'static')} range). Golden-model test accuracy, points versus "
              f"float ({float_accuracy:.2%}) in brackets:"), "", head, rule]
    for k in ks:
        parts = []
        for q in qs:
            r = cell.get((k, q))
            parts.append("—" if r is None else f"{r['accuracy']:.2%} ({r['delta'] * 100:+.2f})")
        lines.append(f"| {k} | " + " | ".join(parts) + " |")
    lines += ["", ("Model size from the stored bits (K basis bits per weight, K coefficients "
                   "per neuron; biases not counted): how much smaller than 32-bit float "
                   "weights, and the bits (Q does not change it: the planes are built at run "
                   "time):"), "", head, rule]
    for k in ks:
        parts = []
        for q in qs:
            r = cell.get((k, q))
            size = (r or {}).get("size")
            parts.append("—" if not size else
                         f"{size['compression']:.1%} ({size['bits']:,} bits)")
        lines.append(f"| {k} | " + " | ".join(parts) + " |")
    lines.append("")
    return lines


def plot_grid(rows, float_accuracy, path) -> None:
    """Two heat maps over ``K`` x ``Q``: accuracy drop (points) and compression (%)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks, qs, cell = _cells(rows)
    drop = np.full((len(ks), len(qs)), np.nan)
    comp = np.full_like(drop, np.nan)
    for i, k in enumerate(ks):
        for j, q in enumerate(qs):
            r = cell.get((k, q))
            if r is not None:
                drop[i, j] = (float_accuracy - r["accuracy"]) * 100
                if r.get("size"):
                    comp[i, j] = r["size"]["compression"] * 100
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for ax, data, title, cmap, fmt in (
            (axes[0], drop, "accuracy drop vs float (points)", "Reds", "{:.2f}"),
            (axes[1], comp, "size vs 32-bit float (% smaller)", "Greens", "{:.1f}")):
        im = ax.imshow(data, cmap=cmap, aspect="auto", origin="lower")
        ax.set_xticks(range(len(qs)), [str(q) for q in qs])
        ax.set_yticks(range(len(ks)), [str(k) for k in ks])
        ax.set_xlabel("Q (bit planes)")
        ax.set_ylabel("K (bases)")
        ax.set_title(title, fontsize=10)
        fin = data[np.isfinite(data)]
        mid = (fin.max() + fin.min()) / 2 if fin.size else 0
        for i in range(len(ks)):
            for j in range(len(qs)):
                if np.isfinite(data[i, j]):
                    ax.text(j, i, fmt.format(data[i, j]), ha="center", va="center", fontsize=8,
                            color="white" if data[i, j] > mid else "black")
        fig.colorbar(im, ax=ax, shrink=0.85)
    fig.suptitle(f"Binarized-DCNN, golden model (float {float_accuracy:.2%})", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
