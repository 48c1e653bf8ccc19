"""Dataflow scale benchmark: a baseline revision and the working tree, side by side in one run.

For each revision (the baseline is checked out into a temporary git worktree and imported in
a child process with ``PYTHONPATH`` pointing at it; both run the same ``hwquant`` CLI
commands on the same trained model):

* the digits default CNN (``fixed`` w8/a8, ``--fold auto``): compile time, Verilog size,
  cycles per inference (compile's prediction; with ``--sim`` also measured in Verilator),
  FIFO memory, analytical model and Yosys ``synth_ice40`` LUT/FF/BRAM;
* with ``--cnv``: BNN-PYNQ's CIFAR-10 "CNV" topology (3x32x32; 3x3 valid convs 64, 64,
  maxpool, 128, 128, maxpool, 256, 256; linear 256-512-512-10) with random weights,
  ``--method ternary --abits 4 --schedule none``, ``compile --target-cycles 100000``: compile
  time, Verilog size, model LUT/FF/RAMB18 on xilinx (and Yosys ``synth_xilinx`` with
  ``--cnv-synth``, which takes long on 2 cores). The baseline's CNV run takes ~16 minutes
  of compile alone: it runs only with ``--cnv-baseline``.

    .venv/bin/python benchmarks/bench_dataflow.py [--baseline a9a9afb] [--sim] [--cnv]
        [--cnv-synth] [--cnv-baseline] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _env(pythonpath):
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = str(pythonpath)
    return env


def _cli(args, *, pythonpath=None):
    """Run ``hwquant`` CLI ``args`` in a child Python (in the imported tree's directory, so
    ``sys.path[0]`` is that tree); returns wall seconds."""
    code = "import sys; from hwquant.cli import main; sys.exit(main(sys.argv[1:]))"
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, *map(str, args)], env=_env(pythonpath),
                   cwd=pythonpath or ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def _which_hwquant(pythonpath):
    code = "import hwquant.sim; print(hwquant.__file__, hwquant.sim.__file__)"
    out = subprocess.run([sys.executable, "-c", code], env=_env(pythonpath),
                         cwd=pythonpath or ROOT, capture_output=True, text=True, check=True)
    return out.stdout.split()


def _baseline_tree(path, rev):
    """The baseline revision as an importable tree: the package directories that the
    installed package maps into ``hwquant`` are linked into it."""
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), rev],
                   check=True, stdout=subprocess.DEVNULL)
    for pkg, src in (("sim", "sim"), ("board_files", "boards"),
                     ("rtl_templates", "rtl_templates")):
        (path / "hwquant" / pkg).symlink_to(path / src, target_is_directory=True)


def _digits(work, model, pythonpath, *, sim):
    work.mkdir(parents=True, exist_ok=True)
    _cli(["quantize", model, "-o", work / "q.hwq"], pythonpath=pythonpath)
    t_compile = _cli(["compile", work / "q.hwq", "--fold", "auto", "-o", work / "build",
                      "--json", work / "compile.json"], pythonpath=pythonpath)
    comp = json.loads((work / "compile.json").read_text())
    row = {"compile_s": t_compile,
           "verilog_mb": (work / "build" / "network.v").stat().st_size / 1e6,
           "cycles_predicted": comp["cycles_per_inference"]}
    fifo_bits = comp.get("fifo_memory_bits")
    if fifo_bits is None:  # the baseline reports depths per layer only
        fifo_bits = "n/a"
    row["fifo_memory_bits"] = fifo_bits
    _cli(["estimate", work / "build", "--family", "ice40", "--synth", "--json",
          work / "estimate.json"], pythonpath=pythonpath)
    est = json.loads((work / "estimate.json").read_text())
    for key in ("lut", "ff", "bram"):
        row[f"model_{key}"] = est["model"][key]
        row[f"yosys_{key}"] = est["synth"][key]
    if sim:
        _cli(["sim", work / "build", "--vectors", "8", "--json", work / "sim.json"],
             pythonpath=pythonpath)
        s = json.loads((work / "sim.json").read_text())
        row["cycles_measured"] = s["cycles_per_inference"]
        row["bit_exact"] = s["passed"]
    return row


def _cnv_model(path, data_path):
    import numpy as np
    import torch

    from hwquant.topologies import cnv
    from hwquant.train import export_model

    torch.manual_seed(0)
    model = cnv()
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(96, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, size=96)
    np.savez(data_path, x_train=x[:64], y_train=y[:64], x_test=x[64:], y_test=y[64:],
             num_classes=10)
    export_model(model, torch.tensor(x[:2]), path)


def _cnv(work, model, data, pythonpath, *, synth):
    work.mkdir(parents=True, exist_ok=True)
    _cli(["quantize", model, "--data", data, "--method", "ternary", "--abits", "4",
          "--schedule", "none", "-o", work / "q.hwq"], pythonpath=pythonpath)
    t_compile = _cli(["compile", work / "q.hwq", "--target-cycles", "100000", "-o",
                      work / "build", "--json", work / "compile.json"], pythonpath=pythonpath)
    comp = json.loads((work / "compile.json").read_text())
    row = {"compile_s": t_compile,
           "verilog_mb": (work / "build" / "network.v").stat().st_size / 1e6,
           "cycles_predicted": comp["cycles_per_inference"]}
    args = ["estimate", work / "build", "--family", "xilinx", "--json", work / "estimate.json"]
    _cli(args + (["--synth"] if synth else []), pythonpath=pythonpath)
    est = json.loads((work / "estimate.json").read_text())
    for key in ("lut", "ff", "bram", "dsp"):
        row[f"model_{key}"] = est["model"][key]
        if synth:
            row[f"yosys_{key}"] = est["synth"][key]
    return row


def _table(title, before, after):
    keys = [k for k in after if k in before] + [k for k in after if k not in before]
    print(f"\n{title}")
    print(f"  {'':<20} {'baseline':>14} {'now':>14} {'now/baseline':>13}")
    for k in keys:
        b, a = before.get(k, "-"), after[k]
        ratio = (f"{a / b:.3f}" if isinstance(a, (int, float)) and isinstance(b, (int, float))
                 and not isinstance(a, bool) and b else "")
        fmt = (lambda v: f"{v:.2f}" if isinstance(v, float) else str(v))
        print(f"  {k:<20} {fmt(b):>14} {fmt(a):>14} {ratio:>13}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", default="a9a9afb",
                    help="git revision of the baseline (default: the chain-only spine)")
    ap.add_argument("--sim", action="store_true", help="also measure cycles in Verilator")
    ap.add_argument("--cnv", action="store_true", help="also the CIFAR-10 CNV topology")
    ap.add_argument("--cnv-synth", action="store_true", help="Yosys synth_xilinx of CNV")
    ap.add_argument("--cnv-baseline", action="store_true",
                    help="also compile CNV with the baseline (~16 min)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    work = Path(args.out or tempfile.mkdtemp(prefix="hwquant-dataflow-"))
    work.mkdir(parents=True, exist_ok=True)
    base_tree = work / "baseline_tree"
    if not base_tree.exists():
        _baseline_tree(base_tree, args.baseline)
    try:
        where = _which_hwquant(base_tree)
        assert all(w.startswith(str(base_tree)) for w in where), f"baseline not imported: {where}"
        model = work / "digits.pt2"
        _cli(["train", "--seed", "0", "-o", model])
        before = _digits(work / "digits_before", model, base_tree, sim=args.sim)
        after = _digits(work / "digits_after", model, None, sim=args.sim)
        _table("digits default CNN, fixed w8/a8, --fold auto (Yosys synth_ice40)", before,
               after)
        results = {"digits": {"baseline": before, "now": after}}
        if args.cnv:
            cnv, data = work / "cnv.pt2", work / "cnv.npz"
            _cnv_model(cnv, data)
            cb = (_cnv(work / "cnv_before", cnv, data, base_tree, synth=args.cnv_synth)
                  if args.cnv_baseline else {})
            ca = _cnv(work / "cnv_after", cnv, data, None, synth=args.cnv_synth)
            _table("CNV (CIFAR-10), ternary w2/a4, --target-cycles 100000 (xilinx)", cb, ca)
            results["cnv"] = {"baseline": cb, "now": ca}
        (work / "bench_dataflow.json").write_text(json.dumps(results, indent=2))
        print(f"\n-> {work / 'bench_dataflow.json'}")
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                        str(base_tree)], check=False)


if __name__ == "__main__":
    main()
