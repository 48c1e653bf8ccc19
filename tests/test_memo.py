# amaranth: UnusedElaboratable=no
"""The ``memo`` MVU engine (value-grouped sums, :mod:`hwquant.memo`): its per-PE layout, ROM
words, the MVU against the golden model of the layer's own kind in the Amaranth simulator over
every fold with random valid gaps and ready stalls (``fixed`` low-bit weights, two values per
kernel, templates next to fixed channels), the refusals, and the ``.hwq`` round trip."""

import os
import sys

import numpy as np
import pytest

from hwquant import golden, ir
from hwquant.layout import conv_weight_matrix, pack_lanes, unpack_lanes
from hwquant.memo import MemoError, channel_groups, check_memo, memo_layout

sys.path.insert(0, os.path.dirname(__file__))
from netbuilders import template_layer
from streamsim import simulate_stream


def fixed_layer(rng, *, oc=6, ic=3, values=(-2, -1, 0, 1), in_fmt=None,
                fold=None, two_values=False, symmetric=False):
    """A 3x3 conv over an ``ic x 3 x 3`` input (one output pixel) with few weight values;
    ``two_values``: each kernel takes two values ``a, b`` (no zero) of its own;
    ``symmetric``: those two values are ``+-A`` except on channels ``2, 5, ...``."""
    in_fmt = in_fmt or ir.ActFormat(4, False, 0)
    shape = (oc, ic, 3, 3)
    if two_values:
        ab = rng.integers(-7, 8, (oc, 2))
        ab[ab == 0] = 3
        if symmetric:
            amp = rng.integers(2, 60, oc)
            amp[0] = 8  # a shift
            sym = np.arange(oc) % 3 != 2
            ab[sym] = np.stack([amp, -amp], axis=1)[sym]
        w = np.where(rng.integers(0, 2, shape) == 1, ab[:, 0, None, None, None],
                     ab[:, 1, None, None, None])
    else:
        w = rng.choice(values, shape)
    wbits = ir.signed_bits_for(int(min(w.min(), 0)), int(max(w.max(), 0)))
    out_fmt = ir.ActFormat(6, True, 0)
    epi = ir.Requant(rng.integers(1, 9, oc), 4, out_fmt.lo, out_fmt.hi)
    return ir.Conv2d("conv", ("input",), in_fmt, w, wbits, 0, rng.integers(-9, 9, oc), epi,
                     out_fmt, fold=fold or ir.Fold(oc, ic * 9, "memo"), in_shape=(ic, 3, 3))


def test_channel_groups():
    g = channel_groups([3, 3, -5, 3, -5])
    assert (g.base, g.values, g.coefficients) == (3, (-5,), (-8,))
    g = channel_groups([0, 2, -1, 2])
    assert (g.base, g.values) == (0, (-1, 2))
    row = np.array([3, 3, -5, 3, -5])
    x = np.arange(5)
    g = channel_groups(row)
    idx = g.index_row(row)
    assert g.base * x.sum() + sum(c * x[idx == j + 1].sum()
                                  for j, c in enumerate(g.coefficients)) == row @ x


def test_layout_per_pe():
    rng = np.random.default_rng(0)
    conv = template_layer(rng, ids=(3, -1, 24, -1), signs=(1, 1, -1, 1), fold=ir.Fold(4, 6))
    lay = memo_layout(conv)
    # templates: two values +-1 -> lane pairs, no multiply, no S
    # fixed 4-bit random rows: many values -> plain
    assert lay.grouped == lay.paired == (True, False, True, False)
    assert not lay.shared and lay.parts == 1 and lay.index_bits == (1, 0, 1, 0)
    assert lay.plain_bits == 4
    # unrolled, the +-1 rows are grouped (fixed adds of their lanes, the shared S)
    un = memo_layout(conv, ir.Fold(4, 18))
    assert un.grouped == (True, False, True, False) and not any(un.paired) and un.shared
    # the gated form (LUT6 families): the +-1 rows are grouped folded too, with S
    gated = memo_layout(conv, ir.Fold(4, 6, lane_pairs=False))
    assert gated.grouped == (True, False, True, False) and not any(gated.paired)
    assert gated.shared and gated.index_bits == (1, 0, 1, 0)
    with pytest.raises(MemoError, match=r"^Layer 'conv': the memo engine cannot serve it: no PE "
                                        r"needs fewer sums and multiplies than its SIMD=1 multipliers"):
        check_memo(conv, ir.Fold(4, 1))


def test_bipolar_refused():
    w = np.where(np.random.default_rng(1).random((4, 8)) < 0.5, -1, 1)
    lin = ir.Linear("fc", ("input",), ir.BIPOLAR, w, 1, 0, np.zeros(4), None,
                    ir.ActFormat(5, True, 0), encoding="binary", fold=ir.Fold(4, 8))
    with pytest.raises(MemoError, match=r"^Layer 'fc': the memo engine cannot serve it: its "
                                        r"input is bipolar"):
        check_memo(lin)


def _simulate(layer, seed):
    from hwquant.hw.mvu import MatrixVectorUnit

    rng = np.random.default_rng(100 + seed)
    fmt_in, oc = layer.in_format, layer.out_channels
    ic = layer.in_shape[0]
    n = 5
    x = rng.integers(fmt_in.lo, fmt_in.hi + 1, (n, ic, 3, 3))
    x[0], x[-1] = fmt_in.lo, fmt_in.hi
    expected = golden.run_layer(layer, [x]).reshape(n, -1)
    pe, simd = layer.fold.pe, layer.fold.simd
    lanes = x.transpose(0, 2, 3, 1).reshape(n, -1)
    words = [pack_lanes(beat, fmt_in.bits) for beat in lanes.reshape(-1, simd)]
    mvu = MatrixVectorUnit(layer, conv_weight_matrix(layer.weight))
    out, _ = simulate_stream(mvu, words, n * oc // pe, seed=seed, valid_gap=0.4,
                             ready_stall=0.4)
    fmt = layer.out_format
    got = np.array([unpack_lanes(v, fmt.bits, pe, fmt.signed) for v in out])
    np.testing.assert_array_equal(got.reshape(n, -1), expected)


FOLDS = {"unrolled": (6, 27), "pe_all": (6, 9), "folded": (3, 9), "two_folds_pe": (2, 27)}


@pytest.mark.parametrize("fold", FOLDS)
@pytest.mark.parametrize("weights", ["lowbit", "two_values"])
def test_mvu_equals_golden_fixed(weights, fold):
    rng = np.random.default_rng(hash((weights, fold)) % 1000)
    fmt = ir.ActFormat(4, False, 1) if weights == "lowbit" else ir.ActFormat(3, True, 0)
    layer = fixed_layer(rng, in_fmt=fmt, two_values=weights == "two_values",
                        fold=ir.Fold(*FOLDS[fold], "memo"))
    assert any(memo_layout(layer).grouped)
    _simulate(layer, seed=len(fold))


@pytest.mark.parametrize("fold", [(3, 9), (3, 6), (3, 18), (6, 2), (6, 18)])
@pytest.mark.parametrize("signed_in", [False, True])
def test_mvu_equals_golden_symmetric(fold, signed_in):
    """``+-A`` kernels on lane-pair PEs (``A`` and ``K`` differing by fold; SIMD odd and
    even), next to grouped or plain PEs of two-valued kernels."""
    rng = np.random.default_rng(fold[0] * 100 + fold[1] + signed_in)
    fmt = ir.ActFormat(3, True, 0) if signed_in else ir.ActFormat(4, False, 0)
    layer = fixed_layer(rng, ic=2, in_fmt=fmt, two_values=True, symmetric=True,
                        fold=ir.Fold(*fold, "memo"))
    lay = memo_layout(layer)
    assert any(lay.paired) != (fold == (6, 18))  # unrolled: grouped
    assert not any(lay.paired[p] for p in range(fold[0]) if p % 3 == 2)
    _simulate(layer, seed=fold[1])


@pytest.mark.parametrize("fold", [(3, 9), (3, 6), (6, 3)])
def test_mvu_equals_golden_symmetric_gated(fold):
    """The same ``+-A`` kernels in the gated form (``Fold.lane_pairs`` False): AND-gated group
    sums and the shared ``S``, ``A * (2G - S)`` in the combine."""
    rng = np.random.default_rng(fold[0] * 100 + fold[1] + 7)
    layer = fixed_layer(rng, ic=2, two_values=True, symmetric=True,
                        fold=ir.Fold(*fold, "memo", lane_pairs=False))
    lay = memo_layout(layer)
    assert not any(lay.paired) and lay.shared
    assert all(lay.grouped[p] for p in range(fold[0]) if p % 3 != 2)
    _simulate(layer, seed=fold[1])


@pytest.mark.parametrize("fold", [(4, 18), (4, 6), (2, 6), (2, 9)])
def test_mvu_equals_golden_template(fold):
    """Templates and fixed channels in one layer, PEs grouped and plain side by side."""
    rng = np.random.default_rng(fold[0] * 10 + fold[1])
    layer = template_layer(rng, ids=(3, -1, 24, -1), signs=(1, 1, -1, 1),
                           in_fmt=ir.ActFormat(3, True, 0), fold=ir.Fold(*fold, "memo"))
    _simulate(layer, seed=fold[1])


def test_hwq_round_trip(tmp_path):
    from hwquant import hwq

    layer = fixed_layer(np.random.default_rng(2), fold=ir.Fold(3, 9, "memo"))
    net = ir.Network("n", (3, 3, 3), layer.in_format, (layer,))
    hwq.save(net, tmp_path / "n.hwq")
    assert hwq.load(tmp_path / "n.hwq").layers[0].fold == ir.Fold(3, 9, "memo")
    gated = net.replace_layer("conv", fold=ir.Fold(3, 9, "memo", lane_pairs=False))
    hwq.save(gated, tmp_path / "g.hwq")
    assert hwq.load(tmp_path / "g.hwq").layers[0].fold == ir.Fold(3, 9, "memo",
                                                                  lane_pairs=False)
    plain = net.replace_layer("conv", fold=ir.Fold(3, 9))
    hwq.save(plain, tmp_path / "p.hwq")
    assert hwq.load(tmp_path / "p.hwq").layers[0].fold.engine == "plain"


def test_rom_words():
    from hwquant.hw.memo import MemoEngine

    layer = fixed_layer(np.random.default_rng(3), oc=2, ic=1, fold=ir.Fold(2, 9, "memo"))
    w = conv_weight_matrix(layer.weight)
    lay = memo_layout(layer)
    assert lay.grouped == (True, True)
    assert MemoEngine.word_bits(layer, pe=2, simd=9) == 9 * sum(lay.index_bits)
    word = MemoEngine.encode(layer, w, 0, 0, pe=2, simd=9)
    assert word & ((1 << 9 * lay.index_bits[0]) - 1) == \
        pack_lanes(lay.groups[0].index_row(w[0]), lay.index_bits[0])


@pytest.mark.parametrize("family", ["ice40", "ecp5", "gowin", "xilinx"])
def test_engine_choice_memo_form(family):
    """The compiler builds a folded layer's ``+-A`` PEs on lane pairs on LUT4 families and as
    gated groups on xilinx (:data:`hwquant.engines.GATED_MEMO_FAMILIES`) and says which."""
    from hwquant.engines import GATED_MEMO_FAMILIES, choose_engines

    layer = fixed_layer(np.random.default_rng(3), ic=2, two_values=True, symmetric=True,
                        fold=ir.Fold(3, 9))
    net = ir.Network("n", layer.in_shape, layer.in_format, (layer,))
    out, choices = choose_engines(net, {"conv": "memo"}, family=family)
    gated = family in GATED_MEMO_FAMILIES
    assert out.layers[0].fold.engine == "memo"
    assert out.layers[0].fold.lane_pairs is not gated
    assert ("gated" if gated else "lane pairs") in choices["conv"]["reason"]
    assert any(memo_layout(out.layers[0]).paired) is not gated
