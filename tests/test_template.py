# amaranth: UnusedElaboratable=no
"""The ``template`` kind: its kind data, golden inner product (``s * (2 * sum_on X - sum X)``
equal to ``sum W * X``), ``.hwq`` round trip, the MVU engine against the golden model in the
Amaranth simulator over every fold with random stalls, and the cost face."""

import os
import sys

import numpy as np
import pytest

from hwquant import golden, ir
from hwquant.golden import template as gtemplate
from hwquant.layout import pack_lanes, unpack_lanes

sys.path.insert(0, os.path.dirname(__file__))
from netbuilders import template_layer
from streamsim import simulate_stream


class TestKindData:
    def test_valid_layer(self):
        layer = template_layer(np.random.default_rng(0))
        assert layer.kind_data.is_template(0) and not layer.kind_data.is_template(1)

    @pytest.mark.parametrize("edit, message", [
        ("flip_one", r"channel 0 is not template 3 \(010/010/000, sign \+1\)"),
        ("sign", r"channel 2 is not template 24"),
        ("no_template", r"needs a template channel"),
        ("length", r"one entry per output channel \(4\)"),
        ("range", r"channel 1's weights exceed 4-bit range"),
    ])
    def test_invalid(self, edit, message):
        rng = np.random.default_rng(1)
        layer = template_layer(rng)
        w, ids, signs = layer.weight.copy(), list(layer.kind_data.template_ids), \
            list(layer.kind_data.signs)
        if edit == "flip_one":
            w[0, 1, 0, 0] *= -1
        elif edit == "sign":
            signs[2] = 1
        elif edit == "no_template":
            ids = [-1] * 4
        elif edit == "length":
            ids, signs = ids[:3], signs[:3]
        else:
            w[1, 0, 0, 0] = 9
        with pytest.raises(ValueError, match=message):
            ir.Conv2d("conv", ("input",), layer.in_format, w, 4, 0, layer.bias, layer.epilogue,
                      layer.out_format, encoding="template",
                      kind_data=ir.TemplateData(ids, signs), in_shape=(2, 3, 3))

    def test_not_3x3(self):
        fmt = ir.ActFormat(4, False, 0)
        with pytest.raises(ValueError, match=r"template kernels are 3x3, not 1x1"):
            ir.Conv2d("conv", ("input",), fmt, np.ones((1, 1, 1, 1)), 4, 0, np.zeros(1), None,
                      ir.ActFormat(8, True, 0), encoding="template",
                      kind_data=ir.TemplateData((0,), (1,)), in_shape=(1, 3, 3))

    def test_hwq_round_trip(self, tmp_path):
        from hwquant import hwq

        layer = template_layer(np.random.default_rng(2), requant=False)
        net = ir.Network("n", (2, 3, 3), layer.in_format, (layer,))
        path = tmp_path / "n.hwq"
        hwq.save(net, path)
        back = hwq.load(path)
        assert back.layers[0].kind_data == layer.kind_data
        assert np.array_equal(back.layers[0].weight, layer.weight)


@pytest.mark.parametrize("fmt", [ir.ActFormat(4, False, 0), ir.ActFormat(3, True, 0)],
                         ids=["unsigned", "signed"])
def test_golden_equals_plain_dot(fmt):
    rng = np.random.default_rng(3)
    layer = template_layer(rng, in_fmt=fmt, ids=(0, 5, -1, 17, 24, -1),
                           signs=(1, -1, 1, 1, -1, 1), requant=False)
    cols = rng.integers(fmt.lo, fmt.hi + 1, (500, layer.fan_in))
    cols[0], cols[1] = fmt.lo, fmt.hi
    np.testing.assert_array_equal(gtemplate.dot(layer, cols), cols @ layer.weight_matrix().T)
    on = gtemplate.channel_masks(layer)
    assert on[0].sum() == 2 * 1 and on[1].sum() == 2 * 3 and on[2].sum() == 0


FOLDS = {
    "unrolled": lambda oc, f: (oc, f),
    "pe_all": lambda oc, f: (oc, 3),
    "mixed_pes": lambda oc, f: (2, 6),
    "template_pe": lambda oc, f: (oc // 2, 9),  # PE 0 holds channels 0, 2 (templates)
    "serial": lambda oc, f: (1, 1),
}


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("fold_kind", FOLDS)
def test_mvu_equals_golden(fold_kind, seed):
    """MVUs of every fold, mixed template and fixed channels of both signs, random valid
    gaps and ready stalls; every output word against the golden model."""
    from hwquant.hw.mvu import MatrixVectorUnit

    rng = np.random.default_rng(10 + seed)
    in_fmt = [ir.ActFormat(4, False, 1), ir.ActFormat(3, True, 0)][seed]
    ids, signs = (3, -1, 24, -1), (1, 1, -1, 1)
    layer = template_layer(rng, ids=ids, signs=signs, in_fmt=in_fmt,
                           fold=ir.Fold(*FOLDS[fold_kind](4, 18)))
    n = 5
    x = rng.integers(in_fmt.lo, in_fmt.hi + 1, (n, 2, 3, 3))
    x[0], x[-1] = in_fmt.lo, in_fmt.hi
    expected = golden.run_layer(layer, [x]).reshape(n, -1)
    from hwquant.layout import conv_weight_matrix

    pe, simd = layer.fold.pe, layer.fold.simd
    lanes = x.transpose(0, 2, 3, 1).reshape(n, -1)  # window-lane order
    words = [pack_lanes(beat, in_fmt.bits) for beat in lanes.reshape(-1, simd)]
    mvu = MatrixVectorUnit(layer, conv_weight_matrix(layer.weight))
    out, _ = simulate_stream(mvu, words, n * 4 // pe, seed=seed, valid_gap=0.4,
                             ready_stall=0.4)
    fmt = layer.out_format
    got = np.array([unpack_lanes(v, fmt.bits, pe, fmt.signed) for v in out])
    np.testing.assert_array_equal(got.reshape(n, -1), expected)


def test_rom_words():
    from hwquant.hw.template import TemplateEngine
    from hwquant.layout import conv_weight_matrix

    layer = template_layer(np.random.default_rng(5), ids=(3, -1, 24, -1), signs=(1, 1, -1, 1),
                           fold=ir.Fold(2, 9))
    w = conv_weight_matrix(layer.weight)
    # PE 0 holds channels 0 and 2 (both templates): 9 term bits; PE 1 fixed: 9 x 4 bits
    assert TemplateEngine.word_bits(layer, pe=2, simd=9) == 9 + 36
    word = TemplateEngine.encode(layer, w, 1, 0, pe=2, simd=9)  # channels 2, 3
    row = w[2, :9]
    bits = []  # pairs (0, 1) .. (6, 7): "weights differ", "first weight -1"; lane 8: "-1"
    for a in range(0, 8, 2):
        bits += [int(row[a] != row[a + 1]), int(row[a] < 0)]
    bits.append(int(row[8] < 0))
    assert word & 0x1FF == sum(b << i for i, b in enumerate(bits))
    assert word >> 9 == pack_lanes(w[3, :9], 4)


class TestCost:
    @pytest.mark.parametrize("fold", [(4, 18), (2, 6), (1, 1)])
    def test_never_zero_and_no_multiplier_for_templates(self, fold):
        from hwquant.estimate import template as cost
        from hwquant.estimate.resources import FAMILIES

        layer = template_layer(np.random.default_rng(6), fold=ir.Fold(*fold))
        for family in FAMILIES:
            res = cost.resources(layer, family)
            assert res.lut + res.dsp > 0
        assert cost.multipliers(layer) == (0 if fold == (4, 18) else
                                           fold[1] * sum(1 for p in range(fold[0])
                                                         if -1 in layer.kind_data.template_ids
                                                         [p::fold[0]]))
        all_tpl = template_layer(np.random.default_rng(6), ids=(0, 1, 2, 3), signs=(1,) * 4,
                                 fold=ir.Fold(*fold))
        assert cost.multipliers(all_tpl) == 0


def test_auto_fold_prefers_template_only_pes():
    """``--fold auto`` on a digits-like conv1 with 12 templates: one channel per PE, so the
    12 template PEs need no multiplier and only the 4 fixed ones multiply."""
    from hwquant.estimate.template import fold_cost
    from hwquant.fold import apply_folding

    rng = np.random.default_rng(7)
    conv = template_layer(rng, ic=1, ids=tuple(range(12)) + (-1,) * 4, signs=(1,) * 16)
    assert fold_cost(conv, ir.Fold(4, 3)) == 12 and fold_cost(conv, ir.Fold(16, 1)) == 4
    assert fold_cost(conv, ir.Fold(8, 9)) == 36
    flat = ir.Flatten("flat", ("conv",), (16, 1, 1), conv.out_format)
    fc = ir.Linear("fc", ("flat",), conv.out_format, rng.integers(-3, 4, (3, 16)), 4, 0,
                   np.zeros(3), None, ir.ActFormat(16, True, 0))
    net = apply_folding(ir.Network("n", (1, 3, 3), conv.in_format, (conv, flat, fc)), "auto",
                        target_cycles=9)
    fold = net.layer("conv").fold
    assert (fold.pe, fold.simd) == (16, 1)
