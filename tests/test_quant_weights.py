"""Weight quantizers (INQ, ternary TWN/TTQ, fixed) against the INQ, TWN and TTQ formulas, and
their lowering into IR integers that the golden model reads back as the same real weights."""

import itertools
import math

import numpy as np
import pytest
import torch

from hwquant import ir
from hwquant.golden import pow2 as golden_pow2
from hwquant.quant.weights import (
    InqWeights,
    TernaryWeights,
    WeightQuantError,
    inq_exponents,
    inq_project,
    make_quantizer,
)


def _real(low):
    """Real weights a LoweredWeights stands for."""
    w = low.weight.astype(np.float64) * math.ldexp(1.0, -low.weight_frac)
    if low.channel_scale is not None:
        w = w * low.channel_scale.reshape((-1,) + (1,) * (w.ndim - 1))
    return w


@pytest.mark.parametrize("s", [0.75, 0.7499999999999999, 1.0, 1.5, 1.4999999999999998, 3.0,
                               3e-5, 123.0])
def test_inq_n1_exact_form(s):
    """n1 = max{n : 3·2^(n-2) <= s}, exact even within an ulp of the boundaries."""
    n1, n2 = inq_exponents(s, 4)
    assert math.ldexp(3.0, n1 - 2) <= s < math.ldexp(3.0, n1 - 1)
    assert n2 == n1 - 3


def test_inq_exponent_count_per_bit_width():
    for bits, count in [(2, 1), (3, 2), (4, 4), (5, 8), (8, 64)]:
        n1, n2 = inq_exponents(1.0, bits)
        assert n1 - n2 + 1 == count


@pytest.mark.parametrize("bits", [2, 3, 4, 5])
def test_inq_equals_nearest_element_ties_to_larger(bits):
    """Eq. (4) is the nearest element of P_l, ties to the larger magnitude (§1.2 (4))."""
    rng = np.random.default_rng(bits)
    w = rng.normal(0, 0.3, 20000)
    n1, n2 = inq_exponents(np.abs(w).max(), bits)
    # add exact ties: midpoints between neighbouring candidates
    levels = [0.0] + [math.ldexp(1.0, n) for n in range(n2, n1 + 1)]
    mids = [(a + b) / 2 for a, b in itertools.pairwise(levels)]
    w = np.concatenate([w, mids, [-m for m in mids]])
    got = inq_project(torch.tensor(w), n1, n2).numpy()
    cand = np.array(levels)
    dist = np.abs(np.abs(w)[:, None] - cand[None, :])
    best = dist.min(axis=1, keepdims=True)
    # among equally near candidates take the largest
    want = np.where(dist == best, cand[None, :], -1).max(axis=1) * np.sign(w)
    np.testing.assert_array_equal(got, want)


def test_inq_caffe_ties_go_to_smaller_and_saturation():
    n1, n2 = 0, -1  # 3-bit: {0, ±0.5, ±1}
    ties = torch.tensor([0.25, 0.75, -0.75])
    assert inq_project(ties, n1, n2).tolist() == [0.5, 1.0, -1.0]
    assert inq_project(ties, n1, n2, tie="caffe").tolist() == [0.0, 0.5, -0.5]
    # weights that grew past 3·2^(n1-1) saturate at 2^n1 (normative, not 0)
    assert inq_project(torch.tensor([1.6, -40.0]), n1, n2).tolist() == [1.0, -1.0]


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 6])
def test_inq_lowering_round_trips_through_ir_and_golden(bits):
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.2, (6, 3, 3, 3))
    q = InqWeights(bits)
    state = q.fit(torch.tensor(w))
    wq = q.quantize(torch.tensor(w), state).numpy()
    low = q.lower(wq, state)
    assert low.encoding == "pow2" and low.weight_bits == bits
    np.testing.assert_array_equal(_real(low), wq)
    assert len(np.unique(wq)) <= 2 ** (bits - 1) + 1
    fmt = ir.ActFormat(8, False, 4)
    layer = ir.Conv2d("c", ("input",), fmt, low.weight, bits, low.weight_frac, np.zeros(6),
                      None, ir.ActFormat(40, True, 4 + low.weight_frac), encoding="pow2",
                      in_shape=(3, 5, 5))
    cols = rng.integers(0, 256, (40, 27))
    np.testing.assert_array_equal(golden_pow2.dot(layer, cols),
                                  cols @ low.weight.reshape(6, -1).T)


def test_twn_threshold_and_scale():
    w = torch.tensor([[1.0, -0.5, 0.1, 0.0], [2.0, -2.0, 0.2, -0.1]])
    q = TernaryWeights()
    st = q.fit(w)
    delta = 0.7 * w.abs().mean()
    assert torch.isclose(st["delta"], delta)
    big = w.abs()[w.abs() > delta]
    assert torch.isclose(st["alpha"], big.mean())
    out = q.quantize(w, st)
    assert set(out.unique().tolist()) <= {-float(st["alpha"]), 0.0, float(st["alpha"])}
    # strict threshold: |w| == Δ maps to 0
    st2 = {"delta": torch.tensor(0.5), "alpha": torch.tensor(1.0)}
    assert q.quantize(torch.tensor([0.5, -0.5, 0.51]), st2).tolist() == [0.0, 0.0, 1.0]


def test_twn_per_channel_scale_lowers_to_channel_scale():
    rng = np.random.default_rng(1)
    w = torch.tensor(rng.normal(0, 1, (4, 10)) * np.array([[1], [2], [4], [8]]))
    q = TernaryWeights(per_channel=True)
    st = q.fit(w)
    wq = q.quantize(w, st).numpy()
    low = q.lower(wq, st)
    assert low.weight_bits == 2 and low.weight_frac == 0
    assert set(np.unique(low.weight)) <= {-1, 0, 1}
    np.testing.assert_allclose(low.channel_scale, st["alpha"].reshape(-1).numpy())
    np.testing.assert_array_equal(_real(low), wq)


def test_ttq_scales_train_and_lower_to_sign_scales():
    w = torch.tensor([0.9, 0.5, -0.3, -0.2, 0.01, 0.0], requires_grad=True)
    q = TernaryWeights(asymmetric=True)
    st = q.fit(w.detach())
    assert float(st["delta"]) == pytest.approx(0.05 * 0.9)
    wp, wn = st["scales"].tolist()
    assert wp == pytest.approx(0.7) and wn == pytest.approx(0.25)
    st["scales"].requires_grad_(True)
    out = q.project(w, st)
    out.sum().backward()
    # d/dW^p = #positive, d/dW^n = -#negative (autodiff sign, TTQ §3)
    assert st["scales"].grad.tolist() == [2.0, -2.0]
    # scaled straight-through gradient to the latent weights
    assert w.grad.tolist() == pytest.approx([wp, wp, wn, wn, 1.0, 1.0])
    low = q.lower(q.quantize(w, st).detach().numpy(), st)
    p, n = low.kind_data.sign_scales
    assert max(p, n) <= 255 and low.encoding == "pow2"
    assert p * 2.0 ** -low.weight_frac == pytest.approx(wp, rel=1 / 128)
    assert n * 2.0 ** -low.weight_frac == pytest.approx(wn, rel=1 / 64)
    assert low.weight.tolist() == [p, p, -n, -n, 0, 0]


def test_fixed_quantizer_matches_post_training_grid():
    from hwquant.quant.grid import frac_for_range, quantize_to_grid

    w = np.random.default_rng(2).normal(0, 0.3, (5, 7))
    q = make_quantizer("fixed", 6)
    st = q.fit(torch.tensor(w))
    assert st["frac"] == frac_for_range(np.abs(w).max(), 31, 24)
    low = q.lower(q.quantize(torch.tensor(w), st).numpy(), st)
    np.testing.assert_array_equal(low.weight, quantize_to_grid(w, st["frac"], -32, 31))


def test_all_zero_weights_are_rejected():
    for q in (InqWeights(4), TernaryWeights(), make_quantizer("fixed", 8)):
        with pytest.raises(WeightQuantError, match="all weights are zero"):
            q.fit(torch.zeros(3, 3))
