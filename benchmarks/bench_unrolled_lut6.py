"""Constant-weight (fully unrolled) dot engines alone on Xilinx LUT6: Yosys vs the cost faces.

The engines of a fully unrolled MVU of the ``binary`` and ``bdcnn`` kinds are popcounts and
add/subtract trees whose weights are constants, so the XNORs, the lane selection and the
inverters fold into the logic and ABC packs them into LUT6 together. This measures them alone,
between an input and an output register (:class:`hwquant.hw.registered.Registered` around the
kind's :class:`~hwquant.hw.engine.Engine`, every partial and shared sum an output), on shapes
other than the calibration's 8 x 16 layers (``benchmarks/calibrate_estimator.py``):

* ``bin``: bipolar binary layers (XNOR popcounts of constant signs), built for the LUT4 and
  the LUT6 popcount structure;
* ``mb``: multi-bit binary layers (add/subtract trees of constant signs);
* ``bd``: bdcnn layers (the shared plane popcounts and the AND-popcounts of constant basis
  bits).

It prints, per design, the Yosys LUT6 count (``synth_xilinx`` through
:func:`hwquant.estimate.synth.synthesize`) and the engine part of the cost face (the binary
face less its ``2P - F`` combine, which is not in the engine; the bdcnn face's popcounts), and
the ratio. ``--json`` writes the rows.

``--combine``: the bdcnn engines with a register on every sum and their combine step
(:class:`EngineCombine`), and the engines alone; ``--calibration``: the engines of the
calibration's unrolled binary, bdcnn and template cases (a check, not part of the fit).

Measured (Yosys 0.70; model with the fitted xilinx prices, before them in brackets)::

    engine alone                       Yosys  model
    bin  4 x 32                          107    105  (113)
    bin 16 x 8                            32     40  (86)
    bin  6 x 24                          107    103  (118)
    bin 12 x 12                           70     50  (79)
    bin  6 x 24, LUT6 structure           88    168  (192)   not what builds use
    mb   4 x 24, 4-bit                   550    716          the compiler builds these as
    mb   6 x 12, 8-bit                   588    906          constant-matrix or memo
    mb  12 x 8, 5-bit                    293    708          engines: not fitted
    bd   4 x 24, K 2, Q 3                267    293  (330)
    bd   6 x 12, K 3, Q 5                225    213  (335)
    bd  12 x 8,  K 2, Q 4                108    109  (228)
    engine + combine (--combine)
    bd   4 x 24, K 2, Q 3                358    382  (526)
    bd   6 x 12, K 3, Q 5                437    423  (873)
    bd  12 x 8,  K 2, Q 4                413    436  (916)
    checks (--calibration, not fitted)
    binary-unrolled-narrow 8 x 16         69     78  (100)
    bdcnn-unrolled-wide 8 x 16           504    500  (816)
    bdcnn-unrolled-wide, + combine      1086    974  (1772)
    template-unrolled-narrow             766    740          one adder graph for S, the
    template-unrolled-wide              2205   2173          masks and the fixed channels
                                                             (as separate trees: Yosys
                                                             1133 / 3045, model 1220 / 3055)

Usage::

    .venv/bin/python benchmarks/bench_unrolled_lut6.py [--only bin,mb,bd] [--json out.json]
        [--combine] [--calibration]
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from amaranth.back import verilog
from amaranth.hdl import Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hwquant import ir
from hwquant.bdcnn import sign_patterns
from hwquant.engine_shape import bdcnn_coefficients
from hwquant.estimate import bdcnn as bdcnn_cost
from hwquant.estimate import binary as binary_cost
from hwquant.estimate.synth import synthesize
from hwquant.hw.bdcnn import BdcnnEngine
from hwquant.hw.binary import BinaryEngine, popcount_for
from hwquant.hw.registered import Registered
from hwquant.hw.streams import lane_shape
from hwquant.hw.template import TemplateEngine

__all__ = ["DESIGNS", "binary_layer", "bdcnn_layer", "engine_model", "measure", "main"]

#: ``(name, builder kwargs)``: none of them is the calibration's 8 x 16.
DESIGNS = [
    ("bin", {"oc": 4, "fan_in": 32, "seed": 1}),
    ("bin", {"oc": 16, "fan_in": 8, "seed": 2}),
    ("bin", {"oc": 6, "fan_in": 24, "seed": 3}),
    ("bin", {"oc": 12, "fan_in": 12, "seed": 4}),
    ("bin", {"oc": 6, "fan_in": 24, "seed": 3, "lut": 6}),
    ("mb", {"oc": 4, "fan_in": 24, "x_bits": 4, "seed": 5}),
    ("mb", {"oc": 6, "fan_in": 12, "x_bits": 8, "seed": 6}),
    ("mb", {"oc": 12, "fan_in": 8, "x_bits": 5, "seed": 7}),
    ("bd", {"oc": 4, "fan_in": 24, "basis": 2, "x_bits": 3, "seed": 8}),
    ("bd", {"oc": 6, "fan_in": 12, "basis": 3, "x_bits": 5, "seed": 9}),
    ("bd", {"oc": 12, "fan_in": 8, "basis": 2, "x_bits": 4, "seed": 10}),
]


#: The calibration's cases whose engines ``--calibration`` measures.
CALIBRATION = ("binary-unrolled-narrow", "bdcnn-unrolled-wide", "template-unrolled-narrow",
               "template-unrolled-wide")


def binary_layer(oc, fan_in, seed, x_bits=None):
    """A fully unrolled binary linear layer (bipolar input unless ``x_bits``)."""
    rng = np.random.default_rng(seed)
    w = rng.choice([-1, 1], (oc, fan_in))
    fmt = ir.BIPOLAR if x_bits is None else ir.ActFormat(x_bits, False, 0)
    lo, hi = ir.matrix_range(w, np.zeros(oc, dtype=np.int64), fmt)
    out = ir.ActFormat(ir.signed_bits_for(int(lo.min()), int(hi.max())), True, 0)
    return ir.Linear("fc", ("input",), fmt, w, 1, 0, np.zeros(oc), ir.Logits(), out,
                     encoding="binary", fold=ir.Fold(oc, fan_in))


def bdcnn_layer(oc, fan_in, basis, x_bits, seed):
    """A fully unrolled bdcnn linear layer on unsigned ``x_bits``-bit inputs."""
    rng = np.random.default_rng(seed)
    c = rng.integers(1, 8, (oc, basis)) * rng.choice([-1, 1], (oc, basis))
    pat = rng.integers(0, 1 << basis, (oc, fan_in))
    w = np.take_along_axis(c @ sign_patterns(basis).T, pat, axis=1)
    fmt = ir.ActFormat(x_bits, False, 0)
    lo, hi = ir.matrix_range(w, np.zeros(oc, dtype=np.int64), fmt)
    out = ir.ActFormat(ir.signed_bits_for(int(lo.min()), int(hi.max())), True, 0)
    data = ir.BdcnnData(basis=basis, qbits=x_bits, coef_bits=4,
                        coefficients=tuple(map(tuple, c.tolist())))
    return ir.Linear("fc", ("input",), fmt, w, 8, 0, np.zeros(oc), ir.Logits(), out,
                     encoding="bdcnn", kind_data=data, fold=ir.Fold(oc, fan_in))


def engine_model(layer, lut=4) -> int:
    """Modelled LUT6 of the engine alone (what the harness synthesizes)."""
    if layer.encoding == "template":
        from hwquant.estimate import template as template_cost

        return template_cost.resources(layer, "xilinx").lut - template_cost.combine_luts(
            layer, "xilinx")
    if layer.encoding == "binary":
        lut6 = binary_cost.resources(layer, "xilinx", lut_inputs=lut).lut
        if layer.in_format.bipolar:
            lut6 -= binary_cost._combine(layer, "xilinx").lut
        return lut6
    d = layer.kind_data
    live = np.ones((layer.out_channels, d.basis * d.qbits), dtype=bool)
    return (binary_cost.popcount_luts(layer.fan_in, "xilinx") * d.qbits
            + bdcnn_cost._popcount_nodes(layer, "xilinx", live)).lut


def calibration_layer(case):
    """The first layer of a case of ``benchmarks/calibrate_estimator.py`` (a check of the fit,
    not part of it)."""
    from calibrate_estimator import CASES, case_network

    return case_network(*CASES[case]).weight_layers[0]


class EngineCombine(wiring.Component):
    """A bdcnn engine, a register on every sum and the engine's combine step (fold 0), as the
    MVU has them when fully unrolled (``SF = 1``)."""

    def __init__(self, layer):
        self._layer = layer
        self._engine = BdcnnEngine(layer, layer.weight_matrix(), pe=layer.out_channels,
                                   simd=layer.fan_in)
        self._bits = ir.accumulator_bits(layer)
        super().__init__({"x": In(data.ArrayLayout(lane_shape(layer.in_format), layer.fan_in)),
                          "y": Out(layer.out_channels * self._bits)})

    def elaborate(self, platform):
        m = Module()
        layer, e = self._layer, self._engine
        m.submodules.engine = e
        m.d.comb += e.x.eq(self.x)

        def reg(v):
            s = Signal(v.shape())
            m.d.sync += s.eq(v)
            return s

        n = e.parts_per_pe(layer)
        parts = [[reg(e.parts[p * n + j]) for j in range(n)] for p in range(layer.out_channels)]
        shared = [reg(e.shared[i]) for i in range(e.shared_count(layer))]
        for p, v in enumerate(e.combine(m, parts, shared, 0)):
            m.d.comb += self.y[p * self._bits:(p + 1) * self._bits].eq(v)
        return m


def combine_model(layer) -> dict:
    """Modelled LUT6 of the bdcnn combine step's parts (unrolled, xilinx)."""
    full = bdcnn_cost.resources(layer, "xilinx").lut
    saved = dict(bdcnn_cost.UNROLLED_PLANE_SUM_FACTOR)
    bdcnn_cost.UNROLLED_PLANE_SUM_FACTOR.clear()
    try:
        unscaled = bdcnn_cost.resources(layer, "xilinx").lut
    finally:
        bdcnn_cost.UNROLLED_PLANE_SUM_FACTOR.update(saved)
    return {"face": full, "face_unscaled_t": unscaled, "engine": engine_model(layer)}


def measure_combine(params, workdir):
    """Yosys LUT6 of the engine with its combine step, and of the engine alone."""
    layer = calibration_layer(params["case"]) if "case" in params else bdcnn_layer(**params)
    name = "comb_" + "_".join(f"{k}{v}" for k, v in params.items())
    path = Path(workdir) / f"{name}.v"
    path.write_text(verilog.convert(Registered(EngineCombine(layer)), name="top"))
    res = synthesize(path, "top", "xilinx", workdir=Path(workdir) / name, splitnets=True)
    alone = measure("bd", params, workdir)["yosys"]
    return {"design": name, **params, "yosys": res.lut, "yosys_engine": alone,
            **combine_model(layer)}


def measure(kind, params, workdir):
    params = dict(params)
    lut = params.pop("lut", 4)
    if "case" in params:
        layer = calibration_layer(params["case"])
        cls = {"bdcnn": BdcnnEngine, "binary": BinaryEngine,
               "template": TemplateEngine}[layer.encoding]
        with popcount_for(lut):
            engine = cls(layer, layer.weight_matrix(), pe=layer.out_channels,
                         simd=layer.fan_in)
    elif kind == "bd":
        layer = bdcnn_layer(**params)
        assert bdcnn_coefficients(layer).all()
        engine = BdcnnEngine(layer, layer.weight_matrix(), pe=layer.out_channels,
                             simd=layer.fan_in)
    else:
        layer = binary_layer(**params)
        with popcount_for(lut):
            engine = BinaryEngine(layer, layer.weight_matrix(), pe=layer.out_channels,
                                  simd=layer.fan_in)
    name = f"{kind}_" + "_".join(f"{k}{v}" for k, v in params.items()) + f"_lut{lut}"
    path = Path(workdir) / f"{name}.v"
    path.write_text(verilog.convert(Registered(engine), name="top"))
    t0 = time.perf_counter()
    res = synthesize(path, "top", "xilinx", workdir=Path(workdir) / name, splitnets=True)
    return {"design": name, "kind": kind, **params, "lut_inputs": lut, "yosys": res.lut,
            "carry": res.carry,
            "model": engine_model(layer, lut), "seconds": round(time.perf_counter() - t0, 1)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default="bin,mb,bd")
    ap.add_argument("--json")
    ap.add_argument("--combine", action="store_true",
                    help="bdcnn: the engine with its combine step (and the engine alone)")
    ap.add_argument("--calibration", action="store_true",
                    help="measure the engines of the calibration's unrolled binary and bdcnn "
                    "cases instead (a check, not the fit)")
    args = ap.parse_args(argv)
    kinds = args.only.split(",")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.combine:
            designs = [("bd", {"case": "bdcnn-unrolled-wide"})] if args.calibration else \
                [d for d in DESIGNS if d[0] == "bd"]
            for _, params in designs:
                r = measure_combine(params, tmp)
                rows.append(r)
                print(f"{r['design']:48s} yosys {r['yosys']:5d} (engine {r['yosys_engine']:4d})"
                      f"  model {r['face']:5d} (engine {r['engine']:4d}, unscaled T "
                      f"{r['face_unscaled_t']:5d})", flush=True)
            designs = []
        else:
            designs = [("cal", {"case": c}) for c in CALIBRATION] if args.calibration \
                else [d for d in DESIGNS if d[0] in kinds]
        for kind, params in designs:
            r = measure(kind, params, tmp)
            rows.append(r)
            print(f"{r['design']:42s} yosys {r['yosys']:5d}  model {r['model']:5d}  "
                  f"carry {r['carry']:4d}  model/yosys {r['model'] / r['yosys']:5.2f}  ({r['seconds']} s)", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
