"""The templated conv1 of the digits CNN (16 kernels of 3x3 on one channel, 12 of them HLAC
templates, 4 fixed 8-bit) as a ``template`` MVU against the same layer as a plain ``fixed``
8-bit MVU (the templates stored as ``+-A_c`` integers, as 8-bit fixed point stores them):
Yosys LUT/FF/DSP on ice40 and xilinx (default DSP inference), and the multipliers each
instantiates, side by side, unrolled (PE = 16, SIMD = 9) and folded (PE = 16, SIMD = 3).

Run: ``.venv/bin/python benchmarks/bench_templates.py [--json OUT]``. Unsigned 8-bit
activations; the fixed channels' weights and the template magnitudes ``A_c`` in 40..127 are
random (seed 0).
"""

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from amaranth.back import verilog

from hwquant import ir
from hwquant.estimate import template as template_cost
from hwquant.estimate.synth import synthesize
from hwquant.hw.mvu import MatrixVectorUnit
from hwquant.layout import conv_weight_matrix
from hwquant.templates import masks

OC, T = 16, 12
FMT = ir.ActFormat(8, False, 0)
#: Folded: every PE computes one channel (12 template PEs read mask bits, 4 fixed PEs
#: multiply). With PE = 4 every PE would mix both kinds and keep its multipliers.
FOLDS = {"unrolled": (16, 9), "folded": (16, 3)}


def layers(fold, rng):
    w_fixed = rng.integers(-128, 128, (OC, 1, 3, 3))
    w_tpl = w_fixed.copy()
    mags = rng.integers(40, 128, T)
    for c in range(T):
        pattern = 2 * masks()[c] - 1
        w_tpl[c, 0] = pattern
        w_fixed[c, 0] = mags[c] * pattern
    out = []
    for enc, w in (("template", w_tpl), ("fixed", w_fixed)):
        lo, hi = ir.matrix_range(w.reshape(OC, -1), np.zeros(OC, dtype=np.int64), FMT)
        fmt = ir.ActFormat(ir.signed_bits_for(int(lo.min()), int(hi.max())), True, 0)
        data = ir.TemplateData(tuple(range(T)) + (-1,) * (OC - T), (1,) * OC) \
            if enc == "template" else None
        out.append(ir.Conv2d("conv1", ("input",), FMT, w, 8, 0, np.zeros(OC), None, fmt,
                             encoding=enc, kind_data=data, fold=ir.Fold(*fold),
                             in_shape=(1, 8, 8), padding=(1, 1)))
    return out


def multipliers(layer):
    if layer.encoding == "template":
        return template_cost.multipliers(layer)
    unrolled = layer.fold.pe == OC and layer.fold.simd == layer.fan_in
    return 0 if unrolled else layer.fold.pe * layer.fold.simd  # unrolled: an adder graph


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rows = []
    for fold_name, fold in FOLDS.items():
        for lay in layers(fold, np.random.default_rng(0)):
            for family in ("ice40", "xilinx"):
                tmp = Path(tempfile.mkdtemp())
                mvu = MatrixVectorUnit(lay, conv_weight_matrix(lay.weight))
                (tmp / "mvu.v").write_text(verilog.convert(mvu, name="top"))
                res = synthesize(tmp / "mvu.v", "top", family, workdir=tmp / family,
                                 splitnets=True)
                row = {"fold": fold_name, "kind": lay.encoding, "family": family,
                       "lut": res.lut, "ff": res.ff, "dsp": res.dsp,
                       "multipliers": multipliers(lay)}
                rows.append(row)
                print(f"{fold_name:<9} {lay.encoding:<9} {family:<7} LUT {res.lut:>5}  "
                      f"FF {res.ff:>5}  DSP {res.dsp:>3}  multipliers {row['multipliers']}",
                      flush=True)
    print()
    for fold_name in FOLDS:
        for family in ("ice40", "xilinx"):
            r = {x["kind"]: x for x in rows if x["fold"] == fold_name and x["family"] == family}
            t, f = r["template"], r["fixed"]
            print(f"{fold_name} {family}: template LUT+DSP {t['lut'] + t['dsp']} vs fixed "
                  f"{f['lut'] + f['dsp']} ({(t['lut'] + t['dsp']) / (f['lut'] + f['dsp']):.2f} x)")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
