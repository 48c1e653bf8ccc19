"""Binarized-DCNN (``bdcnn``) hardware against fixed 8-bit and binary, and the decomposition
time of a large layer, side by side in one run.

* ``mvu``: one MVU (:class:`hwquant.hw.mvu.MatrixVectorUnit`) of 32 x 144 (the digits
  default's conv2 as a matrix), PE = 4, SIMD = 16 (72 cycles per vector, weights in a ROM),
  logits out, random weights of each kind (seed 0): ``bdcnn`` K = 4 bases with 8-bit
  coefficients on Q = 4 bit planes (4-bit unsigned input), ``fixed`` 8-bit weights on 8-bit
  unsigned input, ``binary`` weights on bipolar input. Yosys LUT / FF / DSP on ice40
  (``synth_ice40 -dsp``) and xilinx (DSP inference on, as Yosys does by default), the ratios,
  and the cost model's prediction for the bdcnn MVU (:mod:`hwquant.estimate.model`).
* ``decompose``: :func:`hwquant.bdcnn.decompose` of a 512 x 4608 layer (VGG's 3 x 3 x 512
  conv) of Gaussian weights at K = 6: seconds per restart, iterations, relative error.

Run: ``.venv/bin/python benchmarks/bench_bdcnn.py [--parts mvu,decompose] [--restarts L]
[--json OUT]``. The MVU part takes a few minutes of Yosys on two cores.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from amaranth.back import verilog

from hwquant import ir
from hwquant.bdcnn import decompose, sign_patterns
from hwquant.estimate.model import estimate_network
from hwquant.estimate.resources import Resources
from hwquant.estimate.synth import synthesize
from hwquant.hw.mvu import MatrixVectorUnit

__all__ = ["mvu_layer", "mvu_model", "KINDS", "MVU", "main"]

#: (out channels, fan-in, PE, SIMD) of the MVU comparison.
MVU = (32, 144, 4, 16)
KINDS = ("bdcnn K4Q4", "fixed 8-bit", "binary")
FAMILIES = ("ice40", "xilinx")
#: The decomposed layer: (neurons, weights per neuron, K).
LAYER = (512, 4608, 6)


def mvu_layer(kind, seed=0, shape=MVU, basis=4, qbits=4, coef_bits=8):
    """The MVU layer of ``kind`` (:data:`KINDS`) with random weights, logits out."""
    oc, fan_in, pe, simd = shape
    rng = np.random.default_rng(seed)
    data = None
    if kind.startswith("bdcnn"):
        fmt = ir.ActFormat(qbits, False, 0)
        hi = (1 << (coef_bits - 1)) - 1
        c = rng.integers(-hi, hi + 1, (oc, basis))
        pat = rng.integers(0, 1 << basis, (oc, fan_in))
        w = np.take_along_axis(c @ sign_patterns(basis).T, pat, axis=1)
        bits, enc = ir.signed_bits_for(int(min(w.min(), 0)), int(max(w.max(), 0))), "bdcnn"
        data = ir.BdcnnData(basis=basis, qbits=qbits, coef_bits=coef_bits,
                            coefficients=tuple(map(tuple, c.tolist())))
    elif kind == "binary":
        fmt, w, bits, enc = ir.BIPOLAR, rng.choice([-1, 1], (oc, fan_in)), 1, "binary"
    else:
        fmt, bits, enc = ir.ActFormat(8, False, 0), 8, "fixed"
        w = rng.integers(-128, 128, (oc, fan_in))
    lo, hi = ir.matrix_range(w, np.zeros(oc, dtype=np.int64), fmt)
    out = ir.ActFormat(ir.signed_bits_for(int(lo.min()), int(hi.max())), True, 0)
    return ir.Linear("fc", ("input",), fmt, w, bits, 0, np.zeros(oc, dtype=np.int64),
                     ir.Logits(), out, encoding=enc, kind_data=data, fold=ir.Fold(pe, simd))


def mvu_model(layer, family) -> Resources:
    """The cost model's LUT/FF/DSP/BRAM of ``layer``'s MVU stage (input buffer included)."""
    net = ir.Network("n", (layer.fan_in,), layer.in_format, (layer,))
    rows = [r for r in estimate_network(net, family).components if r["stage"] == layer.name]
    return sum((Resources(r["lut"], r["ff"], r["dsp"], r["bram"]) for r in rows), Resources())


def run_mvu(workdir):
    rows = []
    for kind in KINDS:
        lay = mvu_layer(kind)
        path = workdir / f"mvu_{kind.split()[0]}.v"
        path.write_text(verilog.convert(MatrixVectorUnit(lay, lay.weight_matrix()), name="top"))
        for family in FAMILIES:
            t0 = time.monotonic()
            res = synthesize(path, "top", family, workdir=workdir / f"{kind.split()[0]}_{family}",
                             splitnets=True)
            model = mvu_model(lay, family)
            row = {"kind": kind, "family": family, "lut": res.lut, "ff": res.ff,
                   "dsp": res.dsp, "bram": res.bram, "seconds": round(time.monotonic() - t0, 1),
                   "model": {"lut": model.lut, "ff": model.ff, "dsp": model.dsp,
                             "bram": model.bram}}
            rows.append(row)
            print(f"  {kind:<11} {family:<7} LUT {res.lut:>6}  FF {res.ff:>5}  DSP {res.dsp:>3}"
                  f"  BRAM {res.bram:>2}   model LUT {model.lut:>6} "
                  f"({(model.lut - res.lut) / max(res.lut, 1):+.1%})  FF {model.ff:>5}  DSP "
                  f"{model.dsp:>3}   ({row['seconds']:.0f} s)", flush=True)
    oc, f, pe, simd = MVU
    print(f"MVU {oc}x{f} PE={pe} SIMD={simd}, logits out:")
    for family in FAMILIES:
        got = {r["kind"]: r for r in rows if r["family"] == family}
        b = got["bdcnn K4Q4"]
        parts = []
        for other in ("fixed 8-bit", "binary"):
            o = got[other]
            parts.append(f"vs {other}: LUT {b['lut'] / max(o['lut'], 1):.2f}x, FF "
                         f"{b['ff'] / max(o['ff'], 1):.2f}x, DSP {b['dsp']} vs {o['dsp']}")
        print(f"  {family}: bdcnn K4Q4 " + "; ".join(parts))
    return rows


def run_decompose(restarts):
    n, d, k = LAYER
    w = np.random.default_rng(0).normal(size=(n, d))
    t0 = time.monotonic()
    dec = decompose(w, k, restarts=restarts, seed=0)
    secs = time.monotonic() - t0
    rel = float(dec.error.sum() / (w ** 2).sum())
    print(f"decompose {n}x{d} K={k}: {restarts} restart(s) in {secs:.1f} s "
          f"({secs / restarts:.1f} s per restart), {dec.iterations} iterations at most, "
          f"relative error {rel:.5f}")
    return {"neurons": n, "weights": d, "basis": k, "restarts": restarts,
            "seconds": round(secs, 2), "seconds_per_restart": round(secs / restarts, 2),
            "iterations": dec.iterations, "relative_error": rel}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default="mvu,decompose")
    ap.add_argument("--restarts", type=int, default=2)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    parts = args.parts.split(",")
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench_bdcnn_"))
    workdir.mkdir(parents=True, exist_ok=True)
    out = {}
    if "decompose" in parts:
        out["decompose"] = run_decompose(args.restarts)
    if "mvu" in parts:
        out["mvu"] = run_mvu(workdir)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
