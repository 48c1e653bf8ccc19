"""Folded MVU with bit-masked weights (m = 3 active of n = 8 bits) against plain 8-bit and
3-bit ``fixed`` MVUs of the same shape: Yosys LUT/FF/DSP on ice40 and xilinx (``-nodsp``: every product in LUTs), side by side.

Run: ``.venv/bin/python benchmarks/bench_bitmask.py [--json OUT]``. Shape: 16 x 64 weights,
PE = 2, SIMD = 8, unsigned 8-bit activations, random weights of each kind (seed 0).
"""

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from amaranth.back import verilog

from hwquant import ir
from hwquant.bitmask import parse
from hwquant.estimate.synth import synthesize
from hwquant.hw.mvu import MatrixVectorUnit

OC, FAN_IN, PE, SIMD = 16, 64, 2, 8
FMT = ir.ActFormat(8, False, 0)


def layer(kind, rng):
    if kind == "bitmask 3/8":
        mask = parse("X0.0XX000")
        mags = rng.choice(mask.magnitudes(), (OC, FAN_IN))
        w = np.where(rng.integers(0, 2, (OC, FAN_IN)) == 1, -mags, mags)
        bits, frac, enc, data = mask.span, mask.frac, "bitmask", ir.BitmaskData(mask.pattern)
    else:
        bits = int(kind.split()[1].rstrip("-bit"))
        w = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), (OC, FAN_IN))
        frac, enc, data = 0, "fixed", None
    lo, hi = ir.matrix_range(w, np.zeros(OC, dtype=np.int64), FMT)
    out = ir.ActFormat(ir.signed_bits_for(int(lo.min()), int(hi.max())), True, 0)
    return ir.Linear("fc", ("input",), FMT, w, bits, frac, np.zeros(OC), None, out,
                     encoding=enc, kind_data=data, fold=ir.Fold(PE, SIMD))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rows = []
    for kind in ("bitmask 3/8", "fixed 3-bit", "fixed 8-bit"):
        lay = layer(kind, np.random.default_rng(0))
        for family in ("ice40", "xilinx"):
            tmp = Path(tempfile.mkdtemp())
            (tmp / "mvu.v").write_text(verilog.convert(
                MatrixVectorUnit(lay, lay.weight_matrix()), name="top"))
            res = synthesize(tmp / "mvu.v", "top", family, workdir=tmp / family,
                             splitnets=True, nodsp=True)
            rows.append({"kind": kind, "family": family, "lut": res.lut, "ff": res.ff,
                         "dsp": res.dsp})
            print(f"{kind:<12} {family:<7} LUT {res.lut:>5}  FF {res.ff:>5}  DSP {res.dsp}",
                  flush=True)
    print()
    for family in ("ice40", "xilinx"):
        lut = {r["kind"]: r["lut"] for r in rows if r["family"] == family}
        print(f"{family}: bitmask 3/8 LUTs = {lut['bitmask 3/8'] / lut['fixed 3-bit']:.2f} x "
              f"fixed 3-bit, {lut['bitmask 3/8'] / lut['fixed 8-bit']:.2f} x fixed 8-bit")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
