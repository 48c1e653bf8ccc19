"""The templated conv1 of the digits CNN (16 kernels of 3x3 on one channel, 12 of them HLAC
templates, 4 fixed 8-bit) as a ``template`` MVU, against the same layer as a ``fixed`` 8-bit
MVU (the templates stored as ``+-A_c`` integers, as 8-bit fixed point stores them) with the
plain fixed engine and with the ``memo`` engine (its ``+-A`` template kernels folded on
lane-pair PEs, as the template engine reads them: ``A_c * sum +-x`` from the shared
``x_a + x_b``, ``x_a - x_b``, no window sum, one constant multiply per channel, or, the
``memo-gated`` rows, as grouped kernels with AND-gated lanes; unrolled, grouped sums
``A_c * (2 * sum_on x - sum x)`` with one shared window sum; the 4 random kernels stay plain
PEs): Yosys LUT/FF/DSP on ice40 and
xilinx (default DSP inference, and without DSP blocks, Yosys ``-nodsp``: every multiplier in
LUTs), the cost model's LUT/DSP (default inference), and the multipliers each instantiates,
side by side, unrolled (PE = 16, SIMD = 9) and folded (PE = 16, SIMD = 3).

Measured (Yosys 0.70; LUT+DSP, a DSP block counted as one), the folded rows all in one run
(``--folds folded``, one ``MatrixVectorUnit`` per row, the layers built below). The memo engine
in both of its forms (``hwquant.ir.Fold.lane_pairs``): ``memo`` its ``+-A`` kernels on lane
pairs, ``memo-gated`` as grouped kernels ``A * (2G - S)`` with AND-gated lanes; the compiler
builds the pairs on ice40 and the gated form on xilinx (``hwquant.engines.GATED_MEMO_FAMILIES``,
marked *):

=========================  ==========  ==========  ==========  ===========  ======  ==========
folded (PE 16, SIMD 3)     template    memo        memo-gated  plain fixed  templ.  memo /
                           LUT + DSP   (pairs)                 LUT + DSP    / plain plain
=========================  ==========  ==========  ==========  ===========  ======  ==========
ice40                      559 + 12    559 + 24 *  699 + 24    601 + 48     0.88 x  **0.90 x**
ice40 -nodsp               2026        2980 *      3199        4989         0.41 x  0.60 x
xilinx                     633 + 12    634 + 24    609 + 24 *  605 + 48     0.99 x  **0.97 x**
xilinx -nodsp              1810        2392        2525 *      4149         0.44 x  0.61 x
=========================  ==========  ==========  ==========  ===========  ======  ==========

Multipliers (each DSP above is one): template 12 (one ``A_c`` per template channel, none per
tap), memo 24 (the 12 ``A_c`` and the 4 plain channels' 3 lanes each), plain fixed 48 (16 x 3).
On xilinx the gated form wins by 25 LUT: its gates fold into the adders' LUT6s and ``2G - S``
into the DSP48E1's pre-adder (Yosys maps ``(2g - s) * 76`` to one DSP and no LUT); on ice40 the
pairs win by 140 LUT (a gate is a LUT4 of its own per bit there).

The cost model's folded rows (default inference, LUT + DSP; ``model`` in the run's output)
against Yosys's above: ice40 template 686 + 12 (+23 % LUT), memo 686 + 24 (+23 %), memo-gated
1070 (+53 %), plain fixed 582 + 48 (-3 %); xilinx template 594 + 12 (-6 %), memo 594 + 24
(-6 %), memo-gated 671 (+10 %; 899 before the DSP pre-adder was modelled), plain fixed 605 + 48
(+0 %). The model ranks the two memo forms the other way on xilinx, so the compiler's form is
the measured per-family rule, not the model's. Before the accumulators were priced per family
(one LUT4 per bit on ice40, where the load mux folds into the sum LUT) and the 3-word weight ROM
as its distinct bit columns the model had ice40 1023 / 1023 / 1226 LUT (+83 % / +83 % /
+104 %), xilinx 739 / 739 / 1002 (+17 % / +17 % / +66 %). The ice40 template and memo rows are
still high in the template engine's lanes (``dot_engines``). Before the template engine's lane
pairs it was ice40 667 + 12, xilinx 722 + 12.

Unrolled (PE 16, SIMD 9; ``--folds unrolled``, one run; LUT + DSP, model LUT in brackets):

========================  ===============  ============  ==============  ============  ==========
unrolled (PE 16, SIMD 9)  template         memo          plain fixed     template /    memo /
                                                                         plain         plain
========================  ===============  ============  ==============  ============  ==========
ice40                     1098 (1101)      1221 + 12     1835 (1963)     0.60 x        0.67 x
ice40 -nodsp              1098             2248          1835            0.60 x        1.23 x
xilinx                    844 (892)        791 + 12      1404 (1519)     0.60 x        0.57 x
xilinx -nodsp             844              1526          1404            0.60 x        1.09 x
========================  ===============  ============  ==============  ============  ==========

Unrolled, plain fixed is the constant-matrix adder graph (no multipliers), so the memo engine's
12 template factors ``A_c`` are the only multipliers on the table: counting a DSP as one LUT it
wins, in LUTs (``-nodsp``) it loses to the graph. The compiler's engine choice
(``hwquant.engines.choose_engines``: a DSP weighted as ``DSP_LUTS`` LUTs, and without DSPs)
keeps plain for this layer on both families (model memo 2,146 / 1,911 against plain 1,963 /
1,519 LUT-equivalents, ice40 / xilinx). The memo model is +13 % (ice40) / +45 % (xilinx) on
these rows.

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
from hwquant.engines import GATED_MEMO_FAMILIES
from hwquant.estimate import memo as memo_cost
from hwquant.estimate import template as template_cost
from hwquant.estimate.mvu import mvu_resources
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
    for enc, w in (("template", w_tpl), ("fixed", w_fixed), ("memo", w_fixed),
                   ("memo-gated", w_fixed)):
        lo, hi = ir.matrix_range(w.reshape(OC, -1), np.zeros(OC, dtype=np.int64), FMT)
        fmt = ir.ActFormat(ir.signed_bits_for(int(lo.min()), int(hi.max())), True, 0)
        data = ir.TemplateData(tuple(range(T)) + (-1,) * (OC - T), (1,) * OC) \
            if enc == "template" else None
        out.append(ir.Conv2d("conv1", ("input",), FMT, w, 8, 0, np.zeros(OC), None, fmt,
                             encoding="fixed" if enc.startswith("memo") else enc,
                             kind_data=data,
                             fold=ir.Fold(*fold, "memo" if enc.startswith("memo") else "plain",
                                          lane_pairs=enc != "memo-gated"),
                             in_shape=(1, 8, 8), padding=(1, 1)))
    return out


def name(layer):
    if layer.fold.engine == "memo":
        return "memo" if layer.fold.lane_pairs else "memo-gated"
    return layer.encoding


def compiled(kind, family):
    """Whether the compiler builds the memo row ``kind`` on ``family``: the lane-pair form
    (``memo``) on LUT4 families, the gated one (``memo-gated``) on
    :data:`hwquant.engines.GATED_MEMO_FAMILIES`."""
    return (kind == "memo-gated") == (family in GATED_MEMO_FAMILIES)


def model(layer, family):
    """The cost model's MVU of ``layer``."""
    return mvu_resources(layer, conv_weight_matrix(layer.weight), family)


def multipliers(layer):
    if layer.fold.engine == "memo":
        return memo_cost.multipliers(layer)
    if layer.encoding == "template":
        return template_cost.multipliers(layer)
    unrolled = layer.fold.pe == OC and layer.fold.simd == layer.fan_in
    return 0 if unrolled else layer.fold.pe * layer.fold.simd  # unrolled: an adder graph


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=None)
    ap.add_argument("--folds", default=",".join(FOLDS),
                    help=f"comma-separated subset of {', '.join(FOLDS)} (default: all)")
    args = ap.parse_args()
    folds = {k: FOLDS[k] for k in args.folds.split(",")}
    rows = []
    for fold_name, fold in folds.items():
        for lay in layers(fold, np.random.default_rng(0)):
            for family in ("ice40", "xilinx"):
                for nodsp in (False, True):
                    tmp = Path(tempfile.mkdtemp())
                    mvu = MatrixVectorUnit(lay, conv_weight_matrix(lay.weight))
                    (tmp / "mvu.v").write_text(verilog.convert(mvu, name="top"))
                    res = synthesize(tmp / "mvu.v", "top", family, workdir=tmp / family,
                                 splitnets=True, nodsp=nodsp)
                    row = {"fold": fold_name, "kind": name(lay), "family": family,
                           "nodsp": nodsp, "lut": res.lut, "ff": res.ff, "dsp": res.dsp,
                           "multipliers": multipliers(lay)}
                    model_note = ""
                    if not nodsp:
                        est = model(lay, family)
                        row.update(model_lut=est.lut, model_dsp=est.dsp)
                        model_note = (f"   model LUT {est.lut:>5} "
                                  f"({(est.lut - res.lut) / res.lut:+.0%}) DSP {est.dsp:>3}")
                    rows.append(row)
                    flavour = f"{family}{'-nodsp' if nodsp else ''}"
                    print(f"{fold_name:<9} {name(lay):<9} {flavour:<13} LUT {res.lut:>5}  "
                          f"FF {res.ff:>5}  DSP {res.dsp:>3}  multipliers "
                          f"{row['multipliers']:>3}{model_note}", flush=True)
    print()
    for fold_name in folds:
        for family in ("ice40", "xilinx"):
            for nodsp in (False, True):
                r = {x["kind"]: x for x in rows if x["fold"] == fold_name
                     and x["family"] == family and x["nodsp"] == nodsp}
                f = r["fixed"]
                base = f["lut"] + f["dsp"]
                flavour = f"{family}{'-nodsp' if nodsp else ''}"
                for kind in ("template", "memo", "memo-gated"):
                    t = r[kind]
                    mark = " (the compiler's memo form)" if kind.startswith("memo") and \
                        compiled(kind, family) else ""
                    print(f"{fold_name} {flavour}: {kind} LUT+DSP {t['lut'] + t['dsp']} vs "
                          f"plain fixed {base} ({(t['lut'] + t['dsp']) / base:.2f} x), "
                          f"multipliers {t['multipliers']} vs {f['multipliers']}{mark}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
