"""Binary (XNOR-popcount) hardware against fixed 8-bit, and BNN-PYNQ's LFC-W1A1, in Yosys.

Two parts, each printed side by side:

* ``mvu``: one MVU (:class:`hwquant.hw.mvu.MatrixVectorUnit`) of 256 x 256, PE = 16,
  SIMD = 64 (64 cycles per vector, weights in a ROM), built twice: ``binary`` weights on
  bipolar inputs with a one-threshold epilogue (bipolar output), and ``fixed`` 8-bit weights on
  unsigned 8-bit inputs with a requantized 8-bit output. LUT / FF / DSP / BRAM on
  ``synth_xilinx`` (DSP inference on, as Yosys does by default) and the ratio binary / fixed.
* ``lfc``: BNN-PYNQ's LFC-W1A1 topology (Umuroglu et al., "FINN: A Framework for Fast,
  Scalable Binarized Neural Network Inference", FPGA 2017): 784-1024-1024-1024-10, binary
  weights and bipolar activations everywhere, the published folding PE x SIMD = 32 x 64,
  64 x 32, 32 x 64, 16 x 8, random weights and thresholds (mixed directions, as negative
  BatchNorm gammas give; ``--flip`` folds them into the weights first, as FINN does:
  :func:`hwquant.golden.binary.flip_negative_directions`). As in the published design the
  input is padded to 832 bits (13 x 64) and the 10 classes to 16 (PE = 16): 6,272 XNOR lanes.
  Whole network top (:func:`hwquant.compile.emit_verilog`) through ``synth_xilinx``: LUT per
  XNOR lane (all LUTs / sum of PE * SIMD; the published Vivado design: 28,360 LUT for 6,272
  lanes, 4.5), the compile-time prediction of cycles per image against the bottleneck bound
  ``max(NF * SF)`` and, with ``--pnr``, synthesis for ECP5 and nextpnr on an LFE5U-85F
  (Fmax, median of the seeds that place).

Usage::

    .venv/bin/python benchmarks/bench_binary.py [--parts mvu,lfc] [--pnr] [--seeds 1,2,3]
        [--workdir DIR]

The LFC synthesis takes long on two cores (run it once, in the background, e.g. with
``nohup``); the MVU part takes a few minutes.
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from amaranth.back import verilog

from hwquant import ir
from hwquant.compile import TOP_NAME, emit_verilog
from hwquant.errors import HwquantError
from hwquant.estimate.synth import place_and_route, synthesize
from hwquant.golden.binary import flip_negative_directions
from hwquant.hw.binary import popcount_for
from hwquant.hw.mvu import MatrixVectorUnit
from hwquant.plan import plan_network

__all__ = ["mvu_layer", "lfc_network", "LFC_FOLDS", "main"]

#: (out channels, fan-in, PE, SIMD) of the MVU comparison.
MVU = (256, 256, 16, 64)

#: LFC-W1A1: (fan-in, out channels, PE, SIMD) per layer, padded as the published design.
LFC_FOLDS = [(832, 1024, 32, 64), (1024, 1024, 64, 32), (1024, 1024, 32, 64), (1024, 16, 16, 8)]

#: The published LFC-W1A1 on xc7z020 (Vivado): LUTs and lanes.
PUBLISHED_LUT, PUBLISHED_LANES = 28_360, 6_272


def _thresholds(rng, fan_in, oc):
    """One threshold per channel around the middle of the bipolar range (``ACC`` in
    ``[-F, F]``, steps of 2), mixed directions."""
    t = rng.integers(-fan_in // 8, fan_in // 8 + 1, (oc, 1))
    return ir.Thresholds(t, rng.choice([-1, 1], oc))


def mvu_layer(encoding, seed=0):
    """The 256 x 256 layer with ``binary`` (bipolar in and out) or ``fixed`` 8-bit weights."""
    oc, fan_in, pe, simd = MVU
    rng = np.random.default_rng(seed)
    if encoding == "binary":
        w = rng.choice([-1, 1], (oc, fan_in))
        return ir.Linear("binary", ("input",), ir.BIPOLAR, w, 1, 0, np.zeros(oc),
                         _thresholds(rng, fan_in, oc), ir.BIPOLAR, encoding="binary",
                         fold=ir.Fold(pe, simd))
    fmt = ir.ActFormat(8, False, 0)
    w = rng.integers(-128, 128, (oc, fan_in))
    lo, hi = ir.matrix_range(w, np.zeros(oc, dtype=np.int64), fmt)
    shift = max(ir.signed_bits_for(int(lo.min()), int(hi.max())) - 1 - fmt.bits, 0)
    return ir.Linear("fixed", ("input",), fmt, w, 8, 0, np.zeros(oc),
                     ir.Requant(np.ones(oc), shift, 0, fmt.hi), fmt, encoding="fixed",
                     fold=ir.Fold(pe, simd))


def lfc_network(seed=0):
    """LFC-W1A1 with random binary weights and thresholds, the published folding."""
    rng = np.random.default_rng(seed)
    layers, src = [], "input"
    for k, (fan_in, oc, pe, simd) in enumerate(LFC_FOLDS):
        w = rng.choice([-1, 1], (oc, fan_in))
        last = k == len(LFC_FOLDS) - 1
        if last:
            ep, out = ir.Logits(), ir.ActFormat(ir.signed_bits_for(-fan_in, fan_in), True, 0)
        else:
            ep, out = _thresholds(rng, fan_in, oc), ir.BIPOLAR
        layers.append(ir.Linear(f"fc{k}", (src,), ir.BIPOLAR, w, 1, 0, np.zeros(oc), ep, out,
                                encoding="binary", fold=ir.Fold(pe, simd)))
        src = f"fc{k}"
    return ir.Network("lfc_w1a1", (LFC_FOLDS[0][0],), ir.BIPOLAR, tuple(layers))


def _synth(path, family, workdir, top="top", **kw):
    t0 = time.monotonic()
    res = synthesize(path, top, family, workdir=workdir, splitnets=True, **kw)
    return res, time.monotonic() - t0


def run_mvu(workdir):
    rows = {}
    for enc in ("binary", "fixed"):
        layer = mvu_layer(enc)
        path = workdir / f"mvu_{enc}.v"
        with popcount_for("xilinx"):
            path.write_text(verilog.convert(MatrixVectorUnit(layer, layer.weight_matrix()),
                                            name="top"))
        rows[enc] = _synth(path, "xilinx", workdir / f"mvu_{enc}_xilinx")
        res, secs = rows[enc]
        print(f"  {enc:6s} LUT {res.lut:7d}  FF {res.ff:6d}  DSP {res.dsp:4d}  BRAM "
              f"{res.bram:4d}  ({secs:.0f} s)", flush=True)
    b, f = rows["binary"][0], rows["fixed"][0]
    ratio = lambda a, c: f"{a / c:.3f}" if c else "-"
    print(f"MVU {MVU[0]}x{MVU[1]} PE={MVU[2]} SIMD={MVU[3]} synth_xilinx: binary / fixed "
          f"LUT {ratio(b.lut, f.lut)}  FF {ratio(b.ff, f.ff)}  DSP {b.dsp} vs {f.dsp}  "
          f"BRAM {b.bram} vs {f.bram}")
    return {enc: {"lut": r.lut, "ff": r.ff, "dsp": r.dsp, "bram": r.bram, "seconds": s}
            for enc, (r, s) in rows.items()}


def run_lfc(workdir, pnr, seeds, flip=False):
    net = lfc_network()
    if flip:
        net = flip_negative_directions(net)
    plan = plan_network(net)
    lanes = sum(layer.fold.pe * layer.fold.simd for layer in net.weight_layers)
    bound = max((layer.out_channels // layer.fold.pe) * (layer.fan_in // layer.fold.simd)
                for layer in net.weight_layers)
    predicted = plan.bottleneck_cycles()
    print(f"LFC-W1A1{' (directions flipped into the weights)' if flip else ''}: {lanes} XNOR "
          f"lanes; cycles per image predicted {predicted}, "
          f"bottleneck bound max(NF*SF) = {bound}", flush=True)
    path = workdir / "lfc_xilinx.v"
    t0 = time.monotonic()
    with popcount_for("xilinx"):
        path.write_text(emit_verilog(plan))
    print(f"  Verilog {path.stat().st_size / 1e6:.1f} MB in {time.monotonic() - t0:.0f} s",
          flush=True)
    res, secs = _synth(path, "xilinx", workdir / "lfc_xilinx", top=TOP_NAME)
    out = {"lanes": lanes, "cycles_predicted": predicted, "cycles_bound": bound,
           "xilinx": {"lut": res.lut, "ff": res.ff, "dsp": res.dsp, "bram": res.bram,
                      "lutram": getattr(res, "lutram", 0), "seconds": secs}}
    print(f"  synth_xilinx: LUT {res.lut}  FF {res.ff}  DSP {res.dsp}  BRAM {res.bram}  "
          f"({secs:.0f} s)", flush=True)
    print(f"  LUT per XNOR lane: ours {res.lut / lanes:.2f}  published (Vivado) "
          f"{PUBLISHED_LUT / PUBLISHED_LANES:.2f}  ratio {res.lut / PUBLISHED_LUT:.2f}",
          flush=True)
    if pnr:
        path = workdir / "lfc_ecp5.v"
        with popcount_for("ecp5"):
            path.write_text(emit_verilog(plan))
        ecp5, secs = _synth(path, "ecp5", workdir / "lfc_ecp5", top=TOP_NAME, netlist=True)
        out["ecp5"] = {"lut": ecp5.lut, "ff": ecp5.ff, "bram": ecp5.bram, "seconds": secs}
        print(f"  synth_ecp5: LUT {ecp5.lut}  FF {ecp5.ff}  BRAM {ecp5.bram} ({secs:.0f} s)",
              flush=True)
        fmax = []
        for seed in seeds:
            try:
                p = place_and_route(workdir / "lfc_ecp5" / "netlist.json", "ecp5", "85k",
                                    "CABGA381", workdir=workdir / f"pnr_{seed}", seed=seed)
            except HwquantError as e:  # report what did not place, keep the other numbers
                print(f"  nextpnr seed {seed}: {type(e).__name__}: {str(e)[:200]}", flush=True)
                continue
            f = min(p.fmax_mhz.values()) if p.fmax_mhz else float("nan")
            fmax.append(f)
            print(f"  nextpnr LFE5U-85F seed {seed}: Fmax {f:.1f} MHz", flush=True)
        out["ecp5"]["fmax_mhz"] = fmax
        if fmax:
            print(f"  ECP5-85F Fmax median {statistics.median(fmax):.1f} MHz", flush=True)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default="mvu,lfc")
    ap.add_argument("--pnr", action="store_true", help="also ECP5 synthesis and nextpnr (LFC)")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--flip", action="store_true",
                    help="LFC: fold negative threshold directions into the weights first")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None, help="write the numbers here")
    args = ap.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_binary_"))
    workdir.mkdir(parents=True, exist_ok=True)
    parts = args.parts.split(",")
    result = {}
    if "mvu" in parts:
        result["mvu"] = run_mvu(workdir)
    if "lfc" in parts:
        result["lfc"] = run_lfc(workdir, args.pnr, [int(s) for s in args.seeds.split(",")],
                                flip=args.flip)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
