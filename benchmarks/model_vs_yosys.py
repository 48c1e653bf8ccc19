"""Analytical resource model vs Yosys on whole compiled networks, for the four families.

A handful of small networks, built directly in :mod:`hwquant.ir` with seeded random integer
weights, are compiled with :func:`hwquant.compile.compile_network` in folded, partly unrolled
and fully unrolled variants (plus one network that is a single MVU on a vector input). Each
build is modelled with :func:`hwquant.estimate.report.estimate_build` and synthesized with
:func:`hwquant.estimate.report.synthesize_build` (Yosys 0.70 defaults: DSP inference on,
``-nowidelut`` on ecp5/gowin) for ice40, ecp5, xilinx and gowin. The script prints model and
Yosys LUT/FF/DSP/BRAM (and distributed-RAM cells) with the relative errors
``(model - yosys) / yosys``, then per family the mean and worst absolute LUT and FF error and
how many DSP and BRAM counts match.

Usage::

    .venv/bin/python benchmarks/model_vs_yosys.py                 # every case and family
    .venv/bin/python benchmarks/model_vs_yosys.py -f ice40 -c small_auto
    .venv/bin/python benchmarks/model_vs_yosys.py --cache bench.json  # reuse Yosys counts

Yosys runs take 5-40 s each (xilinx is the slowest), about 10 minutes for everything on two
cores (``--jobs``); with ``--cache`` the counts are kept (keyed by a hash of ``network.v``)
and a re-run after a model change takes seconds. A Yosys failure is reported in the table and
left out of the means.
"""

import argparse
import hashlib
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from hwquant import ir
from hwquant.compile import compile_network
from hwquant.errors import ToolFailedError
from hwquant.estimate.report import estimate_build, relative_error, synthesize_build
from hwquant.estimate.synth import FAMILIES

__all__ = ["CASES", "HOLDOUT", "build_case", "cache_key", "collect", "main"]


# -- Networks ---------------------------------------------------------------------------------

def _requant(channels, shift, hi, rng=None, multipliers=False):
    mult = rng.integers(1, 8, channels) if multipliers else np.ones(channels)
    return ir.Requant(mult, shift, 0, hi)


def small_net(seed=0):
    """conv 1->8 3x3 pad 1 on 8x8 (8-bit), maxpool 2, fc 128->10 logits."""
    rng = np.random.default_rng(seed)
    fin, fo = ir.ActFormat(8, False, 7), ir.ActFormat(8, False, 4)
    conv = ir.Conv2d(name="conv1", inputs=("input",), in_format=fin,
                     weight=rng.integers(-127, 128, (8, 1, 3, 3)), weight_bits=8, weight_frac=7,
                     bias=rng.integers(-100, 100, 8), epilogue=_requant(8, 10, 255),
                     out_format=fo, in_shape=(1, 8, 8), padding=1)
    pool = ir.MaxPool2d("pool1", ("conv1",), (8, 8, 8), 2, 2, 0, fo)
    flat = ir.Flatten("flat", ("pool1",), (8, 4, 4), fo)
    fc = ir.Linear(name="fc", inputs=("flat",), in_format=fo,
                   weight=rng.integers(-127, 128, (10, 128)), weight_bits=8, weight_frac=7,
                   bias=np.zeros(10), epilogue=None, out_format=ir.ActFormat(24, True, 11))
    return ir.Network("small", (1, 8, 8), fin, (conv, pool, flat, fc))


def tiny_net(seed=1):
    """4-bit: conv 1->4 3x3 on 6x6, maxpool 2, fc 16->4 (small enough to unroll fully)."""
    rng = np.random.default_rng(seed)
    fin, fo = ir.ActFormat(4, False, 3), ir.ActFormat(4, False, 2)
    conv = ir.Conv2d(name="conv1", inputs=("input",), in_format=fin,
                     weight=rng.integers(-7, 8, (4, 1, 3, 3)), weight_bits=4, weight_frac=3,
                     bias=rng.integers(-20, 20, 4), epilogue=_requant(4, 4, 15), out_format=fo,
                     in_shape=(1, 6, 6))
    pool = ir.MaxPool2d("pool1", ("conv1",), (4, 4, 4), 2, 2, 0, fo)
    flat = ir.Flatten("flat", ("pool1",), (4, 2, 2), fo)
    fc = ir.Linear(name="fc", inputs=("flat",), in_format=fo,
                   weight=rng.integers(-7, 8, (4, 16)), weight_bits=4, weight_frac=3,
                   bias=rng.integers(-50, 50, 4), epilogue=None,
                   out_format=ir.ActFormat(16, True, 5))
    return ir.Network("tiny", (1, 6, 6), fin, (conv, pool, flat, fc))


def deep_net(seed=2):
    """Signed 8-bit input, 2 convs (6-bit weights, per-channel multipliers), avgpool, fc."""
    rng = np.random.default_rng(seed)
    fin, f1 = ir.ActFormat(8, True, 7), ir.ActFormat(6, False, 3)
    c1 = ir.Conv2d(name="c1", inputs=("input",), in_format=fin,
                   weight=rng.integers(-31, 32, (6, 2, 3, 3)), weight_bits=6, weight_frac=5,
                   bias=rng.integers(-300, 300, 6), epilogue=_requant(6, 9, 63, rng, True),
                   out_format=f1, in_shape=(2, 10, 10))
    ap = ir.AvgPool2d("ap", ("c1",), (6, 8, 8), 2, 2, 0, f1, out_format=f1,
                      requant=ir.Requant(np.array([1]), 2, 0, 63))
    c2 = ir.Conv2d(name="c2", inputs=("ap",), in_format=f1,
                   weight=rng.integers(-31, 32, (8, 6, 3, 3)), weight_bits=6, weight_frac=5,
                   bias=rng.integers(-300, 300, 8), epilogue=_requant(8, 8, 63), out_format=f1,
                   in_shape=(6, 4, 4), padding=1)
    flat = ir.Flatten("flat", ("c2",), (8, 4, 4), f1)
    fc = ir.Linear(name="fc", inputs=("flat",), in_format=f1,
                   weight=rng.integers(-31, 32, (4, 128)), weight_bits=6, weight_frac=5,
                   bias=np.zeros(4), epilogue=None, out_format=ir.ActFormat(20, True, 8))
    return ir.Network("deep", (2, 10, 10), fin, (c1, ap, c2, flat, fc))


def mvu_net(seed=3):
    """A single MVU: linear 64->10 on an 8-bit vector input, 6-bit weights."""
    rng = np.random.default_rng(seed)
    fin = ir.ActFormat(8, False, 7)
    fc = ir.Linear(name="fc", inputs=("input",), in_format=fin,
                   weight=rng.integers(-31, 32, (10, 64)), weight_bits=6, weight_frac=5,
                   bias=rng.integers(-1000, 1000, 10), epilogue=None,
                   out_format=ir.ActFormat(22, True, 12))
    return ir.Network("mvu", (64,), fin, (fc,))


def lenet_net(seed=4):
    """conv 1->6 5x5 on 12x12, maxpool 2, conv 6->8 3x3 pad 1, fc 128->10 (held out)."""
    rng = np.random.default_rng(seed)
    fin, f1 = ir.ActFormat(8, False, 7), ir.ActFormat(8, False, 4)
    c1 = ir.Conv2d(name="c1", inputs=("input",), in_format=fin,
                   weight=rng.integers(-127, 128, (6, 1, 5, 5)), weight_bits=8, weight_frac=7,
                   bias=rng.integers(-500, 500, 6), epilogue=_requant(6, 11, 255), out_format=f1,
                   in_shape=(1, 12, 12))
    p1 = ir.MaxPool2d("p1", ("c1",), (6, 8, 8), 2, 2, 0, f1)
    c2 = ir.Conv2d(name="c2", inputs=("p1",), in_format=f1,
                   weight=rng.integers(-127, 128, (8, 6, 3, 3)), weight_bits=8, weight_frac=7,
                   bias=rng.integers(-500, 500, 8), epilogue=_requant(8, 12, 255), out_format=f1,
                   in_shape=(6, 4, 4), padding=1)
    flat = ir.Flatten("flat", ("c2",), (8, 4, 4), f1)
    fc = ir.Linear(name="fc", inputs=("flat",), in_format=f1,
                   weight=rng.integers(-127, 128, (10, 128)), weight_bits=8, weight_frac=7,
                   bias=rng.integers(-500, 500, 10), epilogue=None,
                   out_format=ir.ActFormat(24, True, 11))
    return ir.Network("lenet", (1, 12, 12), fin, (c1, p1, c2, flat, fc))


def digits_net():
    """The project's default CNN trained on digits and quantized to 8/8 bits (held out)."""
    import torch

    from hwquant.data import calibration_split, load_dataset
    from hwquant.frontend import load_model
    from hwquant.quant.fixed import quantize_fixed
    from hwquant.train import default_model, export_model, train

    ds = load_dataset("digits")
    model = default_model(ds.x_train.shape[1:], ds.num_classes, seed=0)
    train(model, ds, epochs=30, seed=0, progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.pt2"
        export_model(model, torch.tensor(ds.x_test[:2]), path)
        graph = load_model(path)
    return quantize_fixed(graph, calibration_split(ds, n=256, seed=0), wbits=8, abits=8,
                          name="digits")


#: name -> (network builder, fold spec for compile_network)
CASES = {
    "small_auto": (small_net, "auto"),
    "small_min": (small_net, "min"),
    "small_mixed": (small_net, "conv1=8:9,fc=2:8"),
    "tiny_max": (tiny_net, "max"),
    "tiny_auto": (tiny_net, "auto"),
    "deep_auto": (deep_net, "auto"),
    "deep_mixed": (deep_net, "c1=6:18,c2=2:6,fc=1:4"),
    "mvu_min": (mvu_net, "min"),
    "mvu_fold": (mvu_net, "fc=5:8"),
    "mvu_max": (mvu_net, "max"),
}

#: Cases the model was not tuned on (run with ``--holdout``), reported apart.
HOLDOUT = {
    "lenet_auto": (lenet_net, "auto"),
    "digits_auto": (digits_net, "auto"),
    "digits_min": (digits_net, "min"),
}


def build_case(name, workdir):
    """Compile case ``name`` into ``workdir/name`` (reused when already there)."""
    builder, fold = {**CASES, **HOLDOUT}[name]
    out = Path(workdir) / name
    if not (out / "compile.json").is_file():
        compile_network(builder(), out, fold=fold)
    return out


# -- Measurement ------------------------------------------------------------------------------

def cache_key(build_dir, family):
    """The Yosys-count cache key of a build: the family and a hash of its ``network.v``."""
    digest = hashlib.sha256((Path(build_dir) / "network.v").read_bytes()).hexdigest()[:16]
    return f"{family}/{digest}"


def collect(builds, families, *, jobs, cache_path):
    """Yosys counts for every (case, family) of ``builds`` (``{case: build dir}``): from the
    cache or from new runs (a failed run: ``{"family", "failed": message}``)."""
    cache = {}
    if cache_path is not None and Path(cache_path).is_file():
        cache = json.loads(Path(cache_path).read_text())
    todo = [(n, f) for n in builds for f in families if cache_key(builds[n], f) not in cache]
    if todo:
        print(f"synthesizing {len(todo)} designs with {jobs} job(s)...", file=sys.stderr)

    def run(name, family):
        try:
            return synthesize_build(builds[name], family)
        except ToolFailedError as e:
            return {"family": family, "failed": str(e).splitlines()[-1][:200]}

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {(n, f): pool.submit(run, n, f) for n, f in todo}
        for i, ((n, f), future) in enumerate(futures.items(), 1):
            res = future.result()
            cache[cache_key(builds[n], f)] = res
            note = "FAILED" if "failed" in res else f"{res['seconds']} s"
            print(f"  [{i}/{len(todo)}] {n} {f} ({note})", file=sys.stderr)
            if cache_path is not None:
                Path(cache_path).write_text(json.dumps(cache, indent=1, sort_keys=True))
    return {(n, f): cache[cache_key(builds[n], f)] for n in builds for f in families}


# -- Report -----------------------------------------------------------------------------------

def _pct(x):
    return "     -" if x is None else f"{x:+6.1%}"


def report(builds, families, synth):
    """Print the per-case table and, per group (tuned on / held out), the per-family summary;
    return ``{group: {family: mean |LUT error|}}``."""
    print(f"{'case':12s} {'family':7s} | {'LUT y':>6s} {'model':>6s} {'err':>6s} | "
          f"{'FF y':>6s} {'model':>6s} {'err':>6s} | {'DSP y/m':>7s} | {'BRAM y/m':>8s} | "
          f"{'LUTRAM y/m':>10s}")
    groups = {}
    for name, build in builds.items():
        group = "held out" if name in HOLDOUT else "tuned on"
        errors = groups.setdefault(group, {f: {"lut": [], "ff": [], "dsp": [], "bram": []}
                                           for f in families})
        for fam in families:
            model = estimate_build(build, family=fam)["model"]
            s = synth[(name, fam)]
            if "failed" in s:
                print(f"{name:12s} {fam:7s} | Yosys failed: {s['failed']}")
                continue
            err = relative_error(model, s)
            errors[fam]["lut"].append(err["lut"])
            errors[fam]["ff"].append(err["ff"])
            errors[fam]["dsp"].append(model["dsp"] == s["dsp"])
            errors[fam]["bram"].append(model["bram"] == s["bram"])
            print(f"{name:12s} {fam:7s} | {s['lut']:6d} {model['lut']:6d} {_pct(err['lut'])} | "
                  f"{s['ff']:6d} {model['ff']:6d} {_pct(err['ff'])} | "
                  f"{s['dsp']:3d}/{model['dsp']:<3d} | {s['bram']:4d}/{model['bram']:<3d} | "
                  f"{s['lutram']:5d}/{model['lutram']:<4d}")
    summary = {}
    for group, errors in groups.items():
        print(f"\n{group}:")
        print(f"{'family':7s} {'n':>3s} {'LUT mean|err|':>14s} {'LUT max|err|':>13s} "
              f"{'FF mean|err|':>13s} {'DSP match':>10s} {'BRAM match':>11s}")
        overall = []
        for fam in families:
            e = errors[fam]
            if not e["lut"]:
                print(f"{fam:7s}   0 (no successful Yosys run)")
                continue
            lut = np.abs(e["lut"])
            overall += list(lut)
            summary.setdefault(group, {})[fam] = float(lut.mean())
            print(f"{fam:7s} {len(lut):3d} {lut.mean():14.1%} {lut.max():13.1%} "
                  f"{np.abs(e['ff']).mean():13.1%} {sum(e['dsp']):6d}/{len(lut):<3d} "
                  f"{sum(e['bram']):7d}/{len(lut):<3d}")
        if overall:
            print(f"{'all':7s} {len(overall):3d} {np.mean(overall):14.1%} "
                  f"{np.max(overall):13.1%}")
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--case", action="append", choices=list(CASES) + list(HOLDOUT),
                        help="only this case (repeatable)")
    parser.add_argument("--holdout", action="store_true",
                        help="also the held-out cases (the default digits CNN, trained here)")
    parser.add_argument("-f", "--family", action="append", choices=FAMILIES,
                        help="only this family (repeatable)")
    parser.add_argument("-j", "--jobs", type=int, default=2, help="parallel Yosys runs")
    parser.add_argument("--cache", metavar="JSON", help="keep Yosys counts in this file")
    parser.add_argument("--workdir", metavar="DIR",
                        help="build directories (default: a temporary directory)")
    args = parser.parse_args(argv)
    names = args.case or list(CASES) + (list(HOLDOUT) if args.holdout else [])
    families = args.family or list(FAMILIES)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="hwq-bench-") as tmp:
        workdir = Path(args.workdir) if args.workdir else Path(tmp)
        print(f"compiling {len(names)} networks...", file=sys.stderr)
        builds = {n: build_case(n, workdir) for n in names}
        synth = collect(builds, families, jobs=args.jobs, cache_path=args.cache)
        report(builds, families, synth)
    print(f"\n{time.monotonic() - start:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
