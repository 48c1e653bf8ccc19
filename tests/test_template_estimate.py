# amaranth: UnusedElaboratable=no
"""The ``template`` cost face (:mod:`hwquant.estimate.template`) in the MVU model against Yosys.

The shared window sum ``S`` and the per-PE sums are the engine contract's
(:class:`hwquant.engine_shape.TemplateShape`): their registers and accumulators come from it,
the adder trees, AND gates, ``fixed`` lanes and the combine (as wide as each PE's ``ACC``) from
the face. Tolerance: a folded MVU of five template and three fixed channels (the calibration
layer of ``benchmarks/calibrate_estimator.py``, 4 x 3 x 3 input, PE 2, SIMD 9) within 15 %
LUT and 10 % FF of Yosys 0.70 on ice40, DSP blocks equal; measured (model - Yosys) / Yosys in
the docstring of :func:`test_folded_mvu_matches_yosys`. Whole one-layer networks of every
folding and family: ``benchmarks/calibrate_estimator.py -k template``."""

import dataclasses
import os
import sys

import numpy as np
import pytest
from amaranth.back import verilog

from hwquant import ir
from hwquant.estimate.mvu import mvu_resources
from hwquant.hw.mvu import MatrixVectorUnit
from hwquant.layout import conv_weight_matrix

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))

LUT_TOLERANCE, FF_TOLERANCE = 0.15, 0.10


def _layer(fold):
    from calibrate_estimator import template_layer

    lay = template_layer(np.random.default_rng(7), "narrow")
    return dataclasses.replace(lay, fold=fold)


def _model(lay, family):
    return mvu_resources(lay, conv_weight_matrix(lay.weight), family)


def test_shared_sum_registers_follow_the_folding():
    """Folded over SIMD the window sum and each PE sum have an accumulator; unrolled they are
    register copies. Folded, the fixed channels' lanes are products (DSP blocks); unrolled,
    the whole engine is one adder graph without a multiplier (the DSP blocks left are the
    epilogue's requantization products, the same in both)."""
    from hwquant.estimate import template as template_cost

    folded, unrolled = _layer(ir.Fold(2, 9)), _layer(ir.Fold(8, 36))
    f, u = _model(folded, "ice40"), _model(unrolled, "ice40")
    assert f.lut > 0 and u.lut > 0 and u.ff > f.ff
    assert template_cost.multipliers(folded) > 0
    assert template_cost.multipliers(unrolled) == 0
    assert template_cost.resources(unrolled, "ice40").dsp == 0


@pytest.mark.synth
def test_folded_mvu_matches_yosys(tmp_path):
    """Measured (Yosys 0.70): LUT model 1176, Yosys 1321 (-11.0 %); FF 362 / 335 (+8.1 %);
    DSP 2 / 2. About 11 s."""
    from hwquant.estimate.synth import synthesize

    lay = _layer(ir.Fold(2, 9))
    w = conv_weight_matrix(lay.weight)
    path = tmp_path / "mvu.v"
    path.write_text(verilog.convert(MatrixVectorUnit(lay, w), name="top"))
    res = synthesize(path, "top", "ice40", workdir=tmp_path / "ice40", splitnets=True)
    model = _model(lay, "ice40")
    print(f"ice40: LUT model {model.lut} yosys {res.lut} {(model.lut - res.lut) / res.lut:+.1%}, "
          f"FF model {model.ff} yosys {res.ff} {(model.ff - res.ff) / res.ff:+.1%}, "
          f"DSP {model.dsp} / {res.dsp}")
    assert model.dsp == res.dsp
    assert abs(model.lut - res.lut) <= LUT_TOLERANCE * res.lut, (model, res)
    assert abs(model.ff - res.ff) <= FF_TOLERANCE * res.ff, (model, res)
