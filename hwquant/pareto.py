"""Pareto fronts of a design sweep: one area number per design, the non-dominated designs, and
the plot of accuracy against area and against throughput.

*LUT-equivalents* put a design's LUTs, DSP blocks and block RAMs on one axis, at exchange rates
taken from the tools themselves (:func:`lut_equivalents`):

- a LUT counts 1 (distributed-RAM cells count the LUT sites they occupy,
  :data:`hwquant.estimate.fit.LUTS_PER_LUTRAM_CELL`);
- a DSP block counts the LUTs the calibrated cost model gives for the multiply the block does
  natively, built in the fabric instead (:data:`DSP_NATIVE`: 16x16 on iCE40, 18x18 on ECP5
  and Gowin, 25x18 on Xilinx; :func:`hwquant.estimate.resources.multiplier`);
- a block RAM counts what Yosys's ``memory_libmap`` charges for it against logic, its cost
  unit being one LUT (:func:`hwquant.estimate.resources.bram_cost`: 64 on iCE40, 128 on ECP5
  and Gowin, 129 on Xilinx).
"""

from __future__ import annotations

import functools

__all__ = ["DSP_NATIVE", "dsp_luts", "lut_equivalents", "non_dominated", "plot_fronts"]

#: The multiply one DSP block does natively, per family (operand widths).
DSP_NATIVE = {"ice40": (16, 16), "ecp5": (18, 18), "xilinx": (25, 18), "gowin": (18, 18)}


@functools.cache
def dsp_luts(family: str) -> int:
    """LUTs of the family's native DSP multiply built in the fabric (the cost model's)."""
    from .estimate.resources import multiplier

    a, b = DSP_NATIVE[family]
    return multiplier(a, b, family, False, signed=True).lut


def lut_equivalents(counts: dict, family: str) -> int:
    """One area number for ``counts`` (``lut``, ``dsp``, ``bram`` and optionally ``lutram``
    cells): LUTs + DSP blocks x :func:`dsp_luts` + block RAMs x ``memory_libmap``'s block
    cost (module notes)."""
    from .estimate.fit import LUTS_PER_LUTRAM_CELL
    from .estimate.resources import bram_cost

    lut = counts["lut"] + counts.get("lutram", 0) * LUTS_PER_LUTRAM_CELL[family]
    return int(lut + counts["dsp"] * dsp_luts(family) + counts["bram"] * bram_cost(family))


def non_dominated(points, objectives) -> list:
    """Indices of the points no other point dominates.

    ``objectives`` is a sequence of ``(key, sense)``: ``key(point)`` a number, ``sense`` +1
    to maximize, -1 to minimize. A point dominates another when it is at least as good in
    every objective and better in one. Equal points do not dominate each other (both stay).
    """
    vals = [[sense * key(p) for key, sense in objectives] for p in points]
    front = []
    for i, a in enumerate(vals):
        if not any(all(x >= y for x, y in zip(b, a)) and any(x > y for x, y in zip(b, a))
                   for j, b in enumerate(vals) if j != i):
            front.append(i)
    return front


def plot_fronts(rows, path, *, title: str, chosen=None, area_label="LUT-equivalents",
                rate_label="images/s") -> None:
    """Two panels: accuracy vs ``row["lut_eq"]`` (less is better) and accuracy vs
    ``row["images_per_s"]`` (more is better). Each panel's non-dominated points are coloured
    and joined, the dominated ones grey; ``chosen`` (a row) gets a star. Rows without numbers
    are left out; colours by ``row["spec"]`` (the method and its options), else
    ``row["method"]``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r.get("accuracy") is not None and r.get("lut_eq") is not None
            and r.get("images_per_s")]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    panels = ((axes[0], "lut_eq", -1, area_label), (axes[1], "images_per_s", +1, rate_label))
    methods = list(dict.fromkeys(r.get("spec", r["method"]) for r in rows))
    for ax, key, sense, label in panels:
        front = set(non_dominated(rows, [(lambda r: r["accuracy"], +1),
                                         (lambda r, k=key: r[k], sense)]))
        for i, r in enumerate(rows):
            on = i in front
            ax.scatter(r[key], 100 * r["accuracy"], s=36 if on else 22, zorder=3 if on else 2,
                       color=f"C{methods.index(r.get('spec', r['method'])) % 10}" if on
                       else "0.75",
                       edgecolors="k" if on else "none", linewidths=0.5)
        line = sorted((rows[i][key], 100 * rows[i]["accuracy"]) for i in front)
        if line:
            ax.step([p[0] for p in line], [p[1] for p in line], where="post" if sense < 0
                    else "pre", color="k", linewidth=0.8, alpha=0.6)
        for i in front:
            ax.annotate(rows[i]["label"], (rows[i][key], 100 * rows[i]["accuracy"]),
                        fontsize=6, xytext=(3, 3), textcoords="offset points")
        if chosen is not None and chosen.get(key):
            ax.scatter(chosen[key], 100 * chosen["accuracy"], marker="*", s=220,
                       color="gold", edgecolors="k", zorder=4, label="chosen for the board")
        ax.set_xscale("log")
        ax.set_xlabel(label + (" (fewer is better)" if sense < 0 else " (more is better)"))
        ax.set_ylabel("golden-model test accuracy (%)")
        ax.grid(alpha=0.3, which="both")
    handles = [plt.Line2D([], [], marker="o", linestyle="", color=f"C{i % 10}",
                          markeredgecolor="k", label=m) for i, m in enumerate(methods)]
    handles.append(plt.Line2D([], [], marker="o", linestyle="", color="0.75",
                              label="dominated"))
    if chosen is not None:
        handles.append(plt.Line2D([], [], marker="*", linestyle="", color="gold",
                                  markeredgecolor="k", markersize=12,
                                  label="chosen for the board"))
    axes[1].legend(handles=handles, fontsize=7, loc="lower right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
