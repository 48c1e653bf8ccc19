"""Power-of-two (4-bit INQ codes) vs fixed 8-bit weights: Yosys LUT/FF/DSP of the same MVUs.

Two MVUs (:class:`hwquant.hw.mvu.MatrixVectorUnit`), each with 8-bit unsigned activations and a
requantized 8-bit ReLU output:

* ``folded``: linear 64 -> 64, PE = 8, SIMD = 8 (64 cycles per vector; weights in a ROM);
* ``unrolled``: linear 16 -> 8, PE = 8, SIMD = 16 (every weight a constant).

Each is built with ``pow2`` weights (4-bit codes: 0 or +-2^e, e in 0..3, about 25 % zeros,
from seeded Gaussian weights rounded to powers of two as INQ does) and with ``fixed`` 8-bit
weights (seeded uniform), synthesized by Yosys (:func:`hwquant.estimate.synth.synthesize` on
the MVU's Verilog) for ice40 and xilinx: pow2 with DSP inference on (it finds nothing to put
in a DSP block), fixed with DSP inference on (``-dsp`` on ice40) and off (``-nodsp``). The
table ends with the ratios pow2 / fixed.

Usage::

    .venv/bin/python benchmarks/bench_pow2_vs_fixed.py [--families ice40,xilinx] [--jobs 2]

About 15 minutes on two cores, 12 of them for one run: ABC mapping the 64 LUT multipliers of
the fixed folded MVU without DSP blocks for xilinx. The other eleven runs take 6 to 65 s.
"""

import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from amaranth.back import verilog

from hwquant import ir
from hwquant.estimate.synth import synthesize
from hwquant.hw.mvu import MatrixVectorUnit

__all__ = ["DESIGNS", "inq_weights", "mvu_layer", "main"]

IN_FORMAT = ir.ActFormat(8, False, 0)
OUT_FORMAT = ir.ActFormat(8, False, 0)

#: name -> (out channels, fan-in, PE, SIMD)
DESIGNS = {"folded": (64, 64, 8, 8), "unrolled": (8, 16, 8, 16)}


def inq_weights(rng, shape, bits=4, zeros=0.25):
    """Gaussian weights rounded to ``0, +-2^e`` (``e`` in ``0 .. 2^(bits-2) - 1``): the
    smallest ``zeros`` of the magnitudes become 0, the largest maps to ``2^emax``."""
    w = rng.normal(size=shape)
    emax = (1 << (bits - 2)) - 1
    mag = np.abs(w)
    e = np.clip(np.round(np.log2(mag / mag.max()) + emax), 0, emax).astype(np.int64)
    q = np.sign(w).astype(np.int64) << e
    q[mag < np.quantile(mag, zeros)] = 0
    return q


def mvu_layer(design, encoding, seed=0):
    """The layer of ``design`` with ``pow2`` (4-bit) or ``fixed`` (8-bit) weights."""
    oc, fan_in, pe, simd = DESIGNS[design]
    rng = np.random.default_rng(seed)
    if encoding == "pow2":
        w, bits = inq_weights(rng, (oc, fan_in)), 4
    else:
        w, bits = rng.integers(-128, 128, (oc, fan_in)), 8
    lo, hi = ir.matrix_range(w, np.zeros(oc, dtype=np.int64), IN_FORMAT)
    shift = max(ir.signed_bits_for(int(lo.min()), int(hi.max())) - 1 - OUT_FORMAT.bits, 0)
    return ir.Linear(f"{design}_{encoding}", ("input",), IN_FORMAT, w, bits, 0, np.zeros(oc),
                     ir.Requant(np.ones(oc), shift, 0, OUT_FORMAT.hi), OUT_FORMAT,
                     encoding=encoding, fold=ir.Fold(pe, simd))


def _write_verilog(layer, workdir):
    path = workdir / f"{layer.name}.v"
    path.write_text(verilog.convert(MatrixVectorUnit(layer, layer.weight_matrix()), name="top"))
    return path


def _synth(layer, family, nodsp, workdir):
    path = workdir / f"{layer.name}.v"
    start = time.monotonic()
    res = synthesize(path, "top", family, nodsp=nodsp, splitnets=True,
                     workdir=workdir / f"{layer.name}_{family}_{'nodsp' if nodsp else 'dsp'}")
    return res, time.monotonic() - start


def _ratio(a, b):
    return f"{a / b:.2f}" if b else ("-" if a == 0 else "inf")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", default="ice40,xilinx")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=None,
                    help="keep Verilog and Yosys logs here (default: a temporary directory)")
    args = ap.parse_args(argv)
    families = args.families.split(",")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_pow2_"))
    workdir.mkdir(parents=True, exist_ok=True)

    variants = [("pow2 4-bit", "pow2", False), ("fixed 8-bit, DSP", "fixed", False),
                ("fixed 8-bit, no DSP", "fixed", True)]
    layers = {(d, enc): mvu_layer(d, enc) for d in DESIGNS for enc in ("pow2", "fixed")}
    for (d, enc), lay in layers.items():
        zeros = float(np.mean(lay.weight == 0))
        print(f"{d:8s} {enc:5s}: {lay.out_channels} x {lay.fan_in}, PE={lay.fold.pe} "
              f"SIMD={lay.fold.simd}, {lay.weight_bits}-bit weights ({zeros:.0%} zero), "
              f"accumulator {ir.accumulator_bits(lay)} bits")
        _write_verilog(lay, workdir)
    jobs = [(d, label, enc, nodsp, fam) for d in DESIGNS for label, enc, nodsp in variants
            for fam in families]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {job: pool.submit(_synth, layers[(job[0], job[2])], job[4], job[3], workdir)
                   for job in jobs}
        results = {job: f.result() for job, f in futures.items()}

    print()
    print(f"{'design':9s} {'family':7s} {'variant':20s} {'LUT':>6s} {'FF':>6s} {'DSP':>4s} "
          f"{'$mul':>5s} {'Yosys s':>8s}")
    for d, label, enc, nodsp, fam in sorted(jobs, key=lambda j: (j[0], j[4])):
        res, secs = results[(d, label, enc, nodsp, fam)]
        print(f"{d:9s} {fam:7s} {label:20s} {res.lut:6d} {res.ff:6d} {res.dsp:4d} "
              f"{res.multipliers:5d} {secs:8.1f}")
    print()
    print("ratios pow2 4-bit / fixed 8-bit")
    print(f"{'design':9s} {'family':7s} {'vs':20s} {'LUT':>6s} {'FF':>6s} {'DSP':>6s}")
    for d in DESIGNS:
        for fam in families:
            p2, _ = results[(d, variants[0][0], "pow2", False, fam)]
            for label, enc, nodsp in variants[1:]:
                fx, _ = results[(d, label, enc, nodsp, fam)]
                print(f"{d:9s} {fam:7s} {label:20s} {_ratio(p2.lut, fx.lut):>6s} "
                      f"{_ratio(p2.ff, fx.ff):>6s} {_ratio(p2.dsp, fx.dsp):>6s}")
    print()
    for d in DESIGNS:
        for fam in families:
            p2, _ = results[(d, variants[0][0], "pow2", False, fam)]
            fx, _ = results[(d, variants[2][0], "fixed", True, fam)]
            verdict = "yes" if p2.dsp == 0 and p2.lut < fx.lut else "NO"
            print(f"{d} {fam}: pow2 uses 0 DSP and fewer LUTs than fixed without DSP: "
                  f"{verdict} ({p2.dsp} DSP, {p2.lut} vs {fx.lut} LUT)")


if __name__ == "__main__":
    main()
