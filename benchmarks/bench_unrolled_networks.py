"""Fully unrolled one-layer networks of the ``binary``, ``bdcnn`` and ``template`` kinds on
Xilinx: Yosys vs the model, on shapes other than the calibration's.

The layers are those of ``benchmarks/calibrate_estimator.py`` (same builders, same stream
interface, epilogue and output stage) with other shapes and seeds: ``OC x F`` linear layers
(binary, bdcnn) and 3x3 convolutions on ``IC x 3 x 3`` inputs (template). For each it prints
the Yosys LUT6 count (``synth_xilinx``), the model's and its ``mvu.dot_engines`` part (the
engines and their combine step), and the engine the compiler chose (``plain`` or ``memo``).
A check of the xilinx price of the constant-weight popcounts (fitted on the engines alone,
``benchmarks/bench_unrolled_lut6.py``) in whole networks. Measured (Yosys 0.70; the model
after the priority-encoder price of a 1-bit arg-max, the template engine as one
constant-matrix graph and the memo combine's products cut to the register width)::

    binary-narrow 4 x 32   plain  Yosys  143  model  125 -12.6 %
    binary-narrow 16 x 8   plain  Yosys  110  model  104  -5.5 %
    binary-narrow 12 x 12  plain  Yosys  113  model  108  -4.4 %
    binary-narrow 6 x 24   plain  Yosys  135  model  132  -2.2 %
    bdcnn-wide 4 x 24      memo   Yosys  770  model  827  +7.4 %
    bdcnn-wide 12 x 8      memo   Yosys 1028  model 1116  +8.6 %
    bdcnn-narrow 6 x 24    memo   Yosys  536  model  657 +22.6 %
    bdcnn-narrow 12 x 12   memo   Yosys  921  model 1118 +21.4 %
    template-narrow 8, IC 2  plain  Yosys  703  model  744  +5.8 %
    template-wide 8, IC 3    plain  Yosys 2200  model 2256  +2.5 %
    template-narrow 8, IC 6  plain  Yosys 1489  model 1516  +1.8 %

Before those three changes the binary errors were up to +67 % (the arg-max of the bipolar
outputs priced as comparator chains: 8 and 16 lanes, Yosys 10 and 27 LUT6, modelled 42 and
105) and the template ones up to +30 % (the mask sums as separate adder trees; as one graph
Yosys also needs 6-14 % fewer LUTs). The narrow bdcnn layers (memo engine) remain about 20 %
over: their combine's constant products in LUTs.

Usage::

    .venv/bin/python benchmarks/bench_unrolled_networks.py [--json out.json] [--only binary]
"""

import argparse
import dataclasses
import json
import sys
import tempfile
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import calibrate_estimator as cal
import numpy as np

from hwquant import ir
from hwquant.compile import compile_network, load_build
from hwquant.estimate.report import estimate_build, synthesize_build

__all__ = ["SHAPES", "network", "measure", "main"]

#: ``(encoding, width, OC, F or IC)``: none of them is a calibration case.
SHAPES = [
    ("binary", "narrow", 4, 32), ("binary", "narrow", 16, 8), ("binary", "narrow", 12, 12),
    ("binary", "narrow", 6, 24),
    ("bdcnn", "wide", 4, 24), ("bdcnn", "wide", 12, 8), ("bdcnn", "narrow", 6, 24),
    ("bdcnn", "narrow", 12, 12),
    ("template", "narrow", 8, 2), ("template", "wide", 8, 3), ("template", "narrow", 8, 6),
]


def network(encoding, width, oc, n):
    """The one-layer network of a shape (fully unrolled)."""
    rng = np.random.default_rng(zlib.crc32(f"{encoding}/{width}/{oc}/{n}".encode()))
    saved = cal.OC, cal.FAN_IN
    try:
        cal.OC, cal.FAN_IN = oc, n
        layer = (cal.template_layer(rng, width, ic=n) if encoding == "template"
                 else cal.LAYERS[encoding](rng, width))
    finally:
        cal.OC, cal.FAN_IN = saved
    layer = dataclasses.replace(layer, fold=ir.Fold(layer.out_channels, layer.fan_in))
    if isinstance(layer, ir.Conv2d):
        layers, shape = (layer, *cal._head(rng, layer)), layer.in_shape
    else:
        layers, shape = (layer,), (layer.fan_in,)
    return ir.Network(f"{encoding}_{width}_{oc}_{n}", shape, layer.in_format, layers)


def measure(shape, workdir):
    net = network(*shape)
    out = Path(workdir) / net.name
    compile_network(net, out, fold=",".join(f"{x.name}={x.fold.pe}:{x.fold.simd}"
                                            for x in net.weight_layers))
    built, _ = load_build(out)
    est = estimate_build(out, family="xilinx")
    dots = sum(c["lut"] for c in est["components"]
               if c["layer"] == "fc" and c["component"] == "mvu.dot_engines")
    syn = synthesize_build(out, "xilinx")
    return {"shape": list(shape), "engine": built.weight_layers[0].fold.engine,
            "yosys": syn["lut"], "model": est["model"]["lut"], "model_dot_engines": dots}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json")
    ap.add_argument("--only")
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for shape in SHAPES:
            if args.only and shape[0] != args.only:
                continue
            r = measure(shape, tmp)
            rows.append(r)
            print(f"{'-'.join(map(str, shape)):22s} {r['engine']:5s} yosys {r['yosys']:5d} "
                  f"model {r['model']:5d} ({r['model'] / r['yosys'] - 1:+.1%}) dot_engines "
                  f"{r['model_dot_engines']:5d}", flush=True)
            if args.json:
                Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
