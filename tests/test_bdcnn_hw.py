"""The ``bdcnn`` AND-popcount engine in the MVU (Amaranth simulator) against the golden model:
every fold shape, random stalls, signed and unsigned inputs (the offset term)."""

import numpy as np
import pytest
from mvusim import FOLDS, random_x, run_mvu
from netbuilders import random_bdcnn_layer

from hwquant import golden, ir
from hwquant.hw.bdcnn import BdcnnEngine
from hwquant.hw.engine import engine_for


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
@pytest.mark.parametrize("fold", FOLDS)
def test_mvu_equals_golden(fold, signed):
    rng = np.random.default_rng(list(FOLDS).index(fold) + 10 * signed)
    fmt = ir.ActFormat(3, signed, 1)
    base = random_bdcnn_layer(rng, fmt, oc=4, ic=1, k=3, conv=False)  # F = 9
    pe, simd = {"unrolled": (4, 9), "nf1": (4, 3), "sf1": (2, 9), "both": (2, 3),
                "serial": (1, 1)}[fold]
    lo, hi = ir.matrix_range(base.weight, base.bias, fmt)
    out = ir.ActFormat(ir.signed_bits_for(int(lo.min()), int(hi.max())), True, 0)
    layer = ir.Linear("fc", ("input",), fmt, base.weight, base.weight_bits, 0, base.bias,
                      ir.Logits(), out, encoding="bdcnn", kind_data=base.kind_data,
                      fold=ir.Fold(pe, simd))
    assert engine_for(layer) is BdcnnEngine
    x = random_x(rng, fmt, 4, layer.fan_in)
    got, _ = run_mvu(layer, x, seed=3, stalls=0.3)
    np.testing.assert_array_equal(got, golden.run_layer(layer, [x]))
