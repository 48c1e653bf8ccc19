"""Calibration of the analytical resource model against Yosys over every arithmetic kind.

The sweep is every arithmetic kind of :data:`hwquant.kinds.KINDS` (``fixed``, ``pow2``,
``binary``, ``bitmask``, ``template``, ``bdcnn``) times three foldings (``unrolled``: PE = OC,
SIMD = F; ``partly``: half the PEs, a quarter of the SIMD lanes; ``folded``: one PE, two
lanes) times two widths (``narrow``: 3-4 bit activations and weights with a requantization
epilogue; ``wide``: 6-8 bits, raw logits), on the four families (ice40, ecp5, xilinx, gowin).
Fully unrolled ``fixed``, ``pow2`` and ``bitmask`` layers build the constant-matrix adder graph
(:func:`hwquant.kinds.uses_constant_matrix`); they are reported as their own kind, ``cmvm``.
Every case is a one-layer network (a linear layer of 8 x 16 on a vector input; ``template``: a
3x3 conv of 8 channels on a 4 x 3 x 3 input, five template and three fixed channels, and a
small fully unrolled fixed linear head of 4 logits, as the last layer must be linear), compiled
with :func:`hwquant.compile.compile_network` and modelled with
:func:`hwquant.estimate.report.estimate_build` (what ``hwquant estimate`` prints) and
synthesized with :func:`hwquant.estimate.report.synthesize_build`, so the numbers include the
stream interface, the epilogue and the output stage around the MVU.

It reports, per family and per kind, the median and worst absolute relative error
``|model - yosys| / yosys`` of LUTs and flip-flops and how many DSP and BRAM counts are exact,
against the goals (DSP and BRAM exact; LUT and FF median <= 10 %, worst <= 25 %), and writes

* ``OUT/calibration.json``: every case (model, Yosys, errors) and the summaries;
* ``OUT/calibration.md``: the same as Markdown tables;
* ``OUT/calibration.png``: model vs Yosys, one panel per resource (log axes; DSP and BRAM on
  symmetric-log axes, as most counts are 0), points coloured by kind, marker by family.

With ``--time-estimate`` it also trains the default digits CNN (fixed 8/8, ``--fold auto``),
compiles it and times ``hwquant estimate BUILD_DIR`` (the whole command, interpreter start
included, and the in-process :func:`~hwquant.estimate.report.estimate_build` call).

Usage::

    .venv/bin/python benchmarks/calibrate_estimator.py --cache calib.json -o calib_out
    .venv/bin/python benchmarks/calibrate_estimator.py -k pow2 -k cmvm -f ice40 --cache c.json
    .venv/bin/python benchmarks/calibrate_estimator.py --time-estimate --no-synth

The Yosys counts are cached by a hash of ``network.v`` and the family (``--cache``, the cache
format of ``benchmarks/model_vs_yosys.py``); ``--cached-only`` reports just the designs already
in the cache. 144 syntheses of 5-100 s each (xilinx and the fully unrolled template and bdcnn
layers are the slowest): on a two-core machine under a load of about 6, 50 partly folded and
folded designs took 16 minutes with ``--jobs 2``, so all 144 take about 45 minutes there
(less on an idle machine; ``--fold``/``--width``/``-k``/``-f`` select a subset). With the cache, a re-run after a model change takes about 30 s (compiling the 36 networks;
``--workdir`` keeps them).
"""

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from model_vs_yosys import cache_key, collect, digits_net

from hwquant import ir
from hwquant.bdcnn import sign_patterns
from hwquant.bitmask import parse
from hwquant.compile import compile_network, load_build
from hwquant.estimate.report import estimate_build
from hwquant.estimate.synth import FAMILIES
from hwquant.kinds import KINDS, uses_constant_matrix
from hwquant.plan import layer_simd_choices
from hwquant.templates import masks

__all__ = ["CASES", "GOALS", "case_network", "summarize", "main"]

#: Kinds as reported: the registry's encodings, and the constant-matrix engine.
REPORT_KINDS = (*KINDS, "cmvm")
FOLDS = ("unrolled", "partly", "folded")
WIDTHS = ("narrow", "wide")
RESOURCES = ("lut", "ff", "dsp", "bram")
#: The goals the model is measured against: relative-error bounds for LUT and FF, exact
#: counts for DSP and BRAM.
GOALS = {"median": 0.10, "worst": 0.25}

OC, FAN_IN = 8, 16


# -- Layers -------------------------------------------------------------------------------------

def _requant(rng, w, bias, in_fmt, bits=4):
    """A ReLU requantization to ``bits`` unsigned bits that spreads the accumulator range."""
    lo, hi = ir.matrix_range(w.reshape(len(w), -1), bias, in_fmt)
    mult = rng.integers(1, 8, len(w))
    span = int(max(-lo.min(), hi.max(), 1)) * int(mult.max())
    out = ir.ActFormat(bits, False, 0)
    shift = max(1, span.bit_length() - bits - 1)
    return ir.Requant(mult, shift, 0, out.hi), out


def _epilogue(rng, w, bias, in_fmt, width):
    if width == "narrow":
        return _requant(rng, w, bias, in_fmt)
    lo, hi = ir.matrix_range(w.reshape(len(w), -1), bias, in_fmt)
    return ir.Logits(), ir.ActFormat(ir.signed_bits_for(int(lo.min()), int(hi.max())), True, 0)


def _linear(rng, w, bits, frac, in_fmt, width, **kind):
    bias = rng.integers(-8, 9, len(w))
    ep, out = _epilogue(rng, w, bias, in_fmt, width)
    return ir.Linear("fc", ("input",), in_fmt, w, bits, frac, bias, ep, out, **kind)


def fixed_layer(rng, width):
    bits, fmt = (4, ir.ActFormat(4, False, 0)) if width == "narrow" else \
        (8, ir.ActFormat(8, True, 0))
    w = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), (OC, FAN_IN))
    return _linear(rng, w, bits, 0, fmt, width)


def pow2_layer(rng, width):
    bits, fmt = (3, ir.ActFormat(4, False, 0)) if width == "narrow" else \
        (5, ir.ActFormat(8, False, 0))
    e = rng.integers(0, (1 << (bits - 2)), (OC, FAN_IN))
    w = np.where(rng.integers(0, 2, e.shape) == 1, -(1 << e), 1 << e)
    w[rng.random(w.shape) < 0.25] = 0
    return _linear(rng, w, bits, 0, fmt, width, encoding="pow2", kind_data=ir.Pow2Data((1, 1)))


def binary_layer(rng, width):
    w = rng.choice([-1, 1], (OC, FAN_IN))
    bias = rng.integers(-3, 4, OC)
    if width == "narrow":  # BNN: bipolar in, one threshold (bipolar out)
        fmt = ir.BIPOLAR
        lo, hi = ir.matrix_range(w, bias, fmt)
        t = np.sort(rng.integers(int(lo.min()), int(hi.max()) + 1, (OC, 1)), axis=1)
        ep, out = ir.Thresholds(t, np.ones(OC, dtype=np.int64)), ir.BIPOLAR
    else:  # multi-bit input: the add/subtract tree, three thresholds (2-bit out)
        fmt = ir.ActFormat(6, False, 0)
        lo, hi = ir.matrix_range(w, bias, fmt)
        t = np.sort(rng.integers(int(lo.min()) // 2, int(hi.max()) // 2 + 1, (OC, 3)), axis=1)
        ep, out = ir.Thresholds(t, np.ones(OC, dtype=np.int64)), ir.ActFormat(2, False, 0)
    return ir.Linear("fc", ("input",), fmt, w, 1, 0, bias, ep, out, encoding="binary")


def bitmask_layer(rng, width):
    pattern, fmt = ("XX.X", ir.ActFormat(4, False, 0)) if width == "narrow" else \
        ("X0.0XX000", ir.ActFormat(8, False, 0))
    mask = parse(pattern)
    mags = mask.magnitudes()
    w = rng.choice(mags, (OC, FAN_IN)) * rng.choice([-1, 1], (OC, FAN_IN))
    return _linear(rng, w, mask.span, mask.frac, fmt, width, encoding="bitmask",
                   kind_data=ir.BitmaskData(pattern))


def template_layer(rng, width, ic=4):
    """A 3x3 conv on ``ic x 3 x 3`` (one output pixel), requantized (it is not the last
    layer: :func:`case_network` puts a small fixed linear head behind it)."""
    bits, fmt = (4, ir.ActFormat(4, False, 0)) if width == "narrow" else \
        (8, ir.ActFormat(8, False, 0))
    ids, signs = (3, 24, -1, 7, -1, 12, 20, -1), (1, -1, 1, 1, 1, -1, 1, 1)
    w = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), (len(ids), ic, 3, 3))
    for c, (t, s) in enumerate(zip(ids, signs, strict=True)):
        if t >= 0:
            w[c] = s * (2 * masks()[t] - 1)
    bias = rng.integers(-8, 9, len(ids))
    ep, out = _requant(rng, w, bias, fmt, bits=4 if width == "narrow" else 8)
    return ir.Conv2d("fc", ("input",), fmt, w, bits, 0, bias, ep, out, encoding="template",
                     kind_data=ir.TemplateData(ids, signs), in_shape=(ic, 3, 3))


def _head(rng, layer):
    """Flatten and a fully unrolled 4-bit linear layer of 4 logits behind a conv."""
    flat = ir.Flatten("flat", (layer.name,), layer.out_shape, layer.out_format)
    w = rng.integers(-8, 8, (4, flat.out_shape[0]))
    lo, hi = ir.matrix_range(w, np.zeros(4, dtype=np.int64), flat.out_format)
    out = ir.ActFormat(ir.signed_bits_for(int(lo.min()), int(hi.max())), True, 0)
    head = ir.Linear("head", ("flat",), flat.out_format, w, 4, 0, np.zeros(4), ir.Logits(),
                     out, fold=ir.Fold(4, flat.out_shape[0]))
    return flat, head


def bdcnn_layer(rng, width):
    basis, fmt = (2, ir.ActFormat(3, True, 0)) if width == "narrow" else \
        (3, ir.ActFormat(6, False, 0))
    c = rng.integers(-8, 8, (OC, basis))
    pat = rng.integers(0, 1 << basis, (OC, FAN_IN))
    w = np.take_along_axis(c @ sign_patterns(basis).T, pat, axis=1)
    data = ir.BdcnnData(basis=basis, qbits=fmt.bits, coef_bits=4,
                        coefficients=tuple(map(tuple, c.tolist())))
    return _linear(rng, w, 8, 0, fmt, width, encoding="bdcnn", kind_data=data)


LAYERS = {"fixed": fixed_layer, "pow2": pow2_layer, "binary": binary_layer,
          "bitmask": bitmask_layer, "template": template_layer, "bdcnn": bdcnn_layer}


def fold_of(layer, fold):
    """``(PE, SIMD)`` of folding ``fold`` for ``layer`` (SIMD from the hardware's choices)."""
    simds = layer_simd_choices(layer)
    if fold == "unrolled":
        return layer.out_channels, layer.fan_in
    if fold == "partly":
        return layer.out_channels // 2, max(s for s in simds if s <= max(layer.fan_in // 4, 1))
    return 1, min(s for s in simds if s >= min(2, simds[-1]))


def case_network(encoding, fold, width):
    """The one-layer network of a case, with its fold set."""
    rng = np.random.default_rng(zlib.crc32(f"{encoding}/{fold}/{width}".encode()))
    layer = LAYERS[encoding](rng, width)
    pe, simd = fold_of(layer, fold)
    layer = dataclasses.replace(layer, fold=ir.Fold(pe, simd))
    if isinstance(layer, ir.Conv2d):
        layers, shape = (layer, *_head(rng, layer)), layer.in_shape
    else:
        layers, shape = (layer,), (layer.fan_in,)
    return ir.Network(f"{encoding}_{fold}_{width}", shape, layer.in_format, layers)


def report_kind(layer):
    return "cmvm" if uses_constant_matrix(layer) else layer.encoding


#: case name -> (encoding, fold, width)
CASES = {f"{e}-{f}-{w}": (e, f, w) for e in LAYERS for f in FOLDS for w in WIDTHS}
assert set(LAYERS) == set(KINDS), "a kind of the registry has no calibration layer"


def build(name, workdir):
    """Compile case ``name`` into ``workdir/name`` (reused when already there)."""
    out = Path(workdir) / name
    if not (out / "compile.json").is_file():
        net = case_network(*CASES[name])
        compile_network(net, out, fold=",".join(f"{x.name}={x.fold.pe}:{x.fold.simd}"
                                                for x in net.weight_layers))
    return out


# -- Errors and summaries -----------------------------------------------------------------------

def _err(m, y):
    if y == 0:
        return 0.0 if m == 0 else None
    return (m - y) / y


def rows_for(builds, families, synth):
    rows = []
    for name, bdir in builds.items():
        encoding, fold, width = CASES[name]
        net, _ = load_build(bdir)
        layer = net.weight_layers[0]
        for fam in families:
            if (name, fam) not in synth:
                continue
            est = estimate_build(bdir, family=fam)["model"]
            s = synth[(name, fam)]
            row = {"case": name, "kind": report_kind(layer), "encoding": encoding,
                   "fold": fold, "pe": layer.fold.pe, "simd": layer.fold.simd, "width": width,
                   "family": fam, "model": {k: est[k] for k in (*RESOURCES, "lutram")}}
            if "failed" in s:
                row["failed"] = s["failed"]
            else:
                row["yosys"] = {k: s[k] for k in (*RESOURCES, "lutram", "carry")}
                row["error"] = {k: _err(est[k], s[k]) for k in (*RESOURCES, "lutram")}
            rows.append(row)
    return rows


def summarize(rows):
    """Per resource: LUT/FF ``{n, median, worst, worst_case, undefined}`` of the absolute
    relative errors; DSP/BRAM/LUTRAM ``{n, exact}``."""
    ok = [r for r in rows if "error" in r]
    out = {"n": len(ok), "failed": len(rows) - len(ok)}
    for res in ("lut", "ff"):
        errs = [(abs(r["error"][res]), r) for r in ok if r["error"][res] is not None]
        if not errs:
            out[res] = {"n": 0}
            continue
        worst = max(errs, key=lambda t: t[0])
        out[res] = {"n": len(errs), "median": float(np.median([e for e, _ in errs])),
                    "worst": worst[0], "worst_case": f"{worst[1]['case']} {worst[1]['family']}",
                    "undefined": len(ok) - len(errs)}
    for res in ("dsp", "bram", "lutram"):
        out[res] = {"n": len(ok), "exact": sum(r["model"][res] == r["yosys"][res] for r in ok)}
    out["goals_met"] = bool(ok) and all(
        out[r]["n"] and out[r]["median"] <= GOALS["median"] and out[r]["worst"] <= GOALS["worst"]
        for r in ("lut", "ff")) and all(out[r]["exact"] == out[r]["n"] for r in ("dsp", "bram"))
    return out


def summaries(rows, families):
    return {
        "all": summarize(rows),
        "family": {f: summarize([r for r in rows if r["family"] == f]) for f in families},
        "kind": {k: summarize([r for r in rows if r["kind"] == k])
                 for k in REPORT_KINDS if any(r["kind"] == k for r in rows)},
        "fold": {f: summarize([r for r in rows if r["fold"] == f]) for f in FOLDS},
    }


# -- Output -------------------------------------------------------------------------------------

def _pct(x):
    return "-" if x is None else f"{x:+.1%}"


def _summary_table(title, groups):
    lines = [f"### {title}", "",
             ("| group | n | LUT median | LUT worst | FF median | FF worst | DSP exact | "
             "BRAM exact | LUTRAM exact | goals |"),
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for name, s in groups.items():
        if not s["n"]:
            lines.append(f"| {name} | 0 | | | | | | | | |")
            continue
        lut, ff = s["lut"], s["ff"]
        cells = [f"{lut.get('median', 0):.1%}", f"{lut.get('worst', 0):.1%}",
                 f"{ff.get('median', 0):.1%}", f"{ff.get('worst', 0):.1%}"]
        lines.append(f"| {name} | {s['n']} | " + " | ".join(cells)
                     + f" | {s['dsp']['exact']}/{s['n']} | {s['bram']['exact']}/{s['n']} | "
                     f"{s['lutram']['exact']}/{s['n']} | {'met' if s['goals_met'] else 'no'} |")
    return lines


def markdown(rows, summ, timing):
    lines = ["# Resource model vs Yosys: calibration", "",
             (f"Goals: DSP and BRAM exact; LUT and FF median |error| <= {GOALS['median']:.0%}, "
             f"worst <= {GOALS['worst']:.0%}. Error = (model - Yosys) / Yosys."), ""]
    lines += _summary_table("Per family", {**summ["family"], "all": summ["all"]}) + [""]
    lines += _summary_table("Per kind", summ["kind"]) + [""]
    lines += _summary_table("Per folding", summ["fold"]) + [""]
    if timing:
        lines += ["### `hwquant estimate` on the default network", "",
                  (f"- whole command: {timing['cli_seconds']:.2f} s (median of "
                  f"{timing['runs']})"), (f"- `estimate_build` in process: "
                  f"{timing['call_seconds'] * 1000:.0f} ms"), ""]
    lines += ["### Every case", "",
              ("| case | kind | PE:SIMD | family | LUT y/m | err | FF y/m | err | DSP y/m | "
              "BRAM y/m | LUTRAM y/m |"), "|---|---|---|---|---|---:|---|---:|---|---|---|"]
    for r in rows:
        m = r["model"]
        head = f"| {r['case']} | {r['kind']} | {r['pe']}:{r['simd']} | {r['family']} |"
        if "failed" in r:
            lines.append(head + f" Yosys failed: {r['failed']} | | | | | | |")
            continue
        y, e = r["yosys"], r["error"]
        lines.append(head + f" {y['lut']}/{m['lut']} | {_pct(e['lut'])} | {y['ff']}/{m['ff']} | "
                     f"{_pct(e['ff'])} | {y['dsp']}/{m['dsp']} | {y['bram']}/{m['bram']} | "
                     f"{y['lutram']}/{m['lutram']} |")
    return "\n".join(lines) + "\n"


def scatter(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if "yosys" in r]
    kinds = [k for k in REPORT_KINDS if any(r["kind"] == k for r in ok)]
    colours = dict(zip(kinds, plt.get_cmap("tab10").colors, strict=False))
    markers = dict(zip(FAMILIES, "os^D", strict=True))
    fig, axes = plt.subplots(1, len(RESOURCES), figsize=(5 * len(RESOURCES), 5))
    for ax, res in zip(axes, RESOURCES, strict=True):
        ys = [r["yosys"][res] for r in ok]
        ms = [r["model"][res] for r in ok]
        top = max(ys + ms + [1]) * 1.5
        for r in ok:
            ax.scatter(r["yosys"][res], r["model"][res], color=colours[r["kind"]],
                       marker=markers[r["family"]], s=22, alpha=0.75, linewidths=0)
        exact = res in ("dsp", "bram")
        lo = 0 if exact else max(min(v for v in ys + ms if v > 0) / 1.5, 0.5)
        line = np.array([max(lo, 1e-9), top])
        ax.plot(line, line, "k-", lw=0.8)
        if not exact:
            for f in (1 - GOALS["worst"], 1 + GOALS["worst"]):
                ax.plot(line, line * f, "k:", lw=0.6)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlim(lo, top)
            ax.set_ylim(lo, top)
        else:
            ax.set_xscale("symlog", linthresh=1)
            ax.set_yscale("symlog", linthresh=1)
            ax.set_xlim(-0.2, top)
            ax.set_ylim(-0.2, top)
        ax.set_xlabel(f"Yosys {res.upper()}")
        ax.set_ylabel(f"model {res.upper()}")
        ax.set_title(res.upper() + ("" if exact else f" (dotted: +-{GOALS['worst']:.0%})"))
    handles = [plt.Line2D([], [], color=colours[k], marker="o", ls="", label=k) for k in kinds]
    handles += [plt.Line2D([], [], color="grey", marker=markers[f], ls="", label=f)
                for f in FAMILIES if any(r["family"] == f for r in ok)]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def print_summary(summ):
    print(f"{'group':10s} {'n':>3s} | {'LUT med':>7s} {'worst':>6s} | {'FF med':>7s} "
          f"{'worst':>6s} | {'DSP ok':>6s} {'BRAM ok':>7s} | goals  worst LUT case")
    groups = [*summ["family"].items(), ("all", summ["all"]), *summ["kind"].items()]
    for name, s in groups:
        if not s["n"] or not s["lut"]["n"]:
            continue
        print(f"{name:10s} {s['n']:3d} | {s['lut']['median']:7.1%} {s['lut']['worst']:6.1%} | "
              f"{s['ff']['median']:7.1%} {s['ff']['worst']:6.1%} | "
              f"{s['dsp']['exact']:3d}/{s['n']:<3d}{s['bram']['exact']:4d}/{s['n']:<3d}| "
              f"{'met' if s['goals_met'] else 'no ':5s}  {s['lut']['worst_case']}")


# -- Estimate timing ----------------------------------------------------------------------------

def time_estimate(workdir, runs=5):
    """Seconds of ``hwquant estimate`` on the compiled default digits CNN (median of ``runs``)
    and of one in-process :func:`estimate_build` call."""
    bdir = Path(workdir) / "digits_default"
    if not (bdir / "compile.json").is_file():
        print("training and compiling the default digits CNN...", file=sys.stderr)
        compile_network(digits_net(), bdir, fold="auto")
    root = Path(__file__).resolve().parents[1]
    cli = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "hwquant", "estimate", str(bdir)], check=True,
                       cwd=root, capture_output=True, env={"PYTHONPATH": str(root),
                                                           "PATH": "/usr/bin:/bin"})
        cli.append(time.perf_counter() - t)
    estimate_build(bdir)  # warm imports
    t = time.perf_counter()
    estimate_build(bdir)
    call = time.perf_counter() - t
    return {"cli_seconds": float(np.median(cli)), "call_seconds": call, "runs": runs}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", "--kind", action="append", choices=REPORT_KINDS,
                        help="only cases of this kind (repeatable; cmvm: the unrolled "
                             "fixed/pow2/bitmask cases)")
    parser.add_argument("--fold", action="append", choices=FOLDS, help="only this folding")
    parser.add_argument("--width", action="append", choices=WIDTHS, help="only this width")
    parser.add_argument("-c", "--case", action="append", choices=list(CASES),
                        help="only this case (repeatable)")
    parser.add_argument("-f", "--family", action="append", choices=FAMILIES,
                        help="only this family (repeatable)")
    parser.add_argument("-j", "--jobs", type=int, default=2, help="parallel Yosys runs")
    parser.add_argument("--cache", metavar="JSON", help="keep Yosys counts in this file")
    parser.add_argument("--workdir", metavar="DIR",
                        help="build directories (default: a temporary directory)")
    parser.add_argument("-o", "--out", metavar="DIR", default="calibration_out",
                        help="where calibration.{json,md,png} go (default %(default)s)")
    parser.add_argument("--time-estimate", action="store_true",
                        help="also time `hwquant estimate` on the default digits CNN")
    parser.add_argument("--cached-only", action="store_true",
                        help="report only the designs whose Yosys counts are in --cache")
    parser.add_argument("--no-synth", action="store_true", help="skip the sweep")
    args = parser.parse_args(argv)
    families = args.family or list(FAMILIES)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="hwq-calib-") as tmp:
        workdir = Path(args.workdir) if args.workdir else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        timing = time_estimate(workdir) if args.time_estimate else None
        if timing:
            print(f"hwquant estimate (default digits CNN): {timing['cli_seconds']:.2f} s "
                  f"whole command, {timing['call_seconds'] * 1000:.0f} ms estimate_build")
        if args.no_synth:
            return 0
        names = [n for n, (e, f, w) in CASES.items()
                 if (not args.case or n in args.case) and (not args.fold or f in args.fold)
                 and (not args.width or w in args.width)]
        print(f"compiling {len(names)} networks...", file=sys.stderr)
        builds = {n: build(n, workdir) for n in names}
        if args.kind:
            kinds = {n: report_kind(load_build(b)[0].weight_layers[0]) for n, b in builds.items()}
            builds = {n: b for n, b in builds.items() if kinds[n] in args.kind}
        if args.cached_only:
            cache = json.loads(Path(args.cache).read_text()) if args.cache else {}
            synth = {(n, f): cache[cache_key(b, f)] for n, b in builds.items()
                     for f in families if cache_key(b, f) in cache}
            print(f"{len(synth)} of {len(builds) * len(families)} designs in the cache",
                  file=sys.stderr)
        else:
            synth = collect(builds, families, jobs=args.jobs, cache_path=args.cache)
        rows = rows_for(builds, families, synth)
    summ = summaries(rows, families)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "calibration.json").write_text(json.dumps(
        {"goals": GOALS, "summary": summ, "estimate_timing": timing, "cases": rows}, indent=1))
    (out / "calibration.md").write_text(markdown(rows, summ, timing))
    scatter(rows, out / "calibration.png")
    print_summary(summ)
    print(f"\nwrote {out}/calibration.{{json,md,png}} ({time.monotonic() - start:.0f} s)",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
