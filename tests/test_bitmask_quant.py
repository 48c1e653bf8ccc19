"""``quantize --method bitmask``: the quantizer faces (projection and literal, exactly on the
mask's grid), the per-layer search on the training split, the fake-quant path tied to the
golden model, and bad input (one ``error:`` line, exit 2, nothing written)."""

import json

import numpy as np
import pytest
import torch
from flows import assert_integer_faces_agree

from hwquant import hwq
from hwquant.bitmask import parse
from hwquant.cli import main
from hwquant.quant.bitmask import BitmaskWeights, point_for


@pytest.mark.parametrize("rounding", ["projection", "literal"])
def test_quantizer_values_lie_on_the_mask_and_lower_exactly(rounding):
    mask = parse("X0.0XX0")  # frac 4, magnitudes {0, 2, 4, 6} / 16
    rng = np.random.default_rng(0)
    w = torch.tensor(rng.normal(0, 0.3, (6, 5)))
    q = BitmaskWeights(mask, rounding)
    wq = q.quantize(w, q.fit(w))
    low = q.lower(wq.numpy(), None)
    assert low.encoding == "bitmask" and low.kind_data.pattern == "X0.0XX0"
    assert (low.weight_bits, low.weight_frac) == (mask.span, mask.frac)
    np.testing.assert_array_equal(low.weight * 2.0 ** -mask.frac, wq.numpy())
    assert mask.representable(low.weight).all()
    expected = (mask.project if rounding == "projection" else mask.literal)(w.numpy() * 16)
    np.testing.assert_array_equal(low.weight, expected)


def test_projection_straight_through_gradient():
    q = BitmaskWeights(parse("XX.X"))
    w = torch.tensor([0.3, -0.8, 2.0], requires_grad=True)
    q.project(w, None).sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), [1, 1, 1])


def test_point_covers_the_largest_weight():
    assert point_for(0.9, 8) == 7  # clamped: the point right after the sign
    assert point_for(3.0, 8) == 5  # 127 * 2**-5 = 3.97 >= 3
    assert point_for(300.0, 8) == 0


def _quantize(model, tmp_path, *args):
    out, rep = tmp_path / "n.hwq", tmp_path / "q.json"
    code = main(["quantize", str(model), "--method", "bitmask", *args, "--quiet",
                 "-o", str(out), "--json", str(rep)])
    return code, out, rep


def test_default_cnn_per_layer_search_and_golden_tie(trained_default_pt2, digits, tmp_path):
    """3 of 8 bits: every conv layer gets a 3-bit mask chosen on the training split, the
    linear layer 8-bit fixed point; the fake-quant path equals the golden model on every
    layer."""
    code, out, rep = _quantize(trained_default_pt2, tmp_path, "--active", "3", "--span", "8")
    assert code == 0
    report = json.loads(rep.read_text())
    net = hwq.load(out)
    record = report["bitmask"]
    convs = [layer for layer in net.weight_layers if layer.weight.ndim == 4]
    assert set(record["patterns"]) == {layer.name for layer in convs}
    for layer in convs:
        mask = parse(record["patterns"][layer.name])
        assert layer.encoding == "bitmask" and mask.bits == 3 and mask.span == 8
        assert layer.kind_data.pattern == mask.pattern
    assert record["other_layers"] == {"fc": "fixed 8-bit"}
    assert net.layer("fc").encoding == "fixed" and net.layer("fc").weight_bits == 8
    assert record["strategy"] == "exhaustive" and record["evaluations"] > 21
    assert record["accuracy"] >= record["uniform_accuracy"]
    assert report["accuracy"]["quantized"] >= report["accuracy"]["float"] - 0.03
    x = np.asarray(digits.x_test[:16])
    assert_integer_faces_agree(net, x)


def test_same_pattern_and_patterns_by_hand(trained_default_pt2, tmp_path):
    code, out, rep = _quantize(trained_default_pt2, tmp_path, "--same-pattern")
    assert code == 0
    pats = set(json.loads(rep.read_text())["bitmask"]["patterns"].values())
    assert len(pats) == 1
    code, out, rep = _quantize(trained_default_pt2, tmp_path, "--pattern",
                               "conv1=X0.XX00,conv2=5_2_0_1_0", "--rounding", "literal")
    assert code == 0
    net = hwq.load(out)
    assert net.layer("conv1").kind_data.pattern == "X0.XX00"
    assert net.layer("conv2").kind_data.pattern == "X0.0XX"


@pytest.mark.parametrize("args,message", [
    (["--active", "9", "--span", "8"], "error: --active 9 is more than --span 8"),
    (["--active", "0"], ("error: --active (bits kept by the mask, sign included) must be at "
                        "least 2")),
    (["--span", "17"], ("error: --span (bits of the masked format, sign included) must be an "
                       "integer in 2..16")),
    (["--pattern", "conv1=X0.0YX"], ("error: --pattern for layer 'conv1': Bit-mask pattern "
                                    "'X0.0YX'")),
    (["--pattern", "conv9=X0.0XX"], ("error: --pattern names conv9, not a conv layer of the "
                                    "model (conv layers: conv1, conv2)")),
    (["--pattern", "conv1=XX0000000"], ("error: bitmask quantization failed: Layer 'conv1': "
                                       "XX0000000 represents none of its nonzero weights")),
    (["--same-pattern", "--pattern", "conv1=X0.0XX"], ("error: --same-pattern searches one mask "
                                                      "for every conv layer")),
])
def test_bad_input_one_error_line_exit_2_nothing_written(trained_default_pt2, tmp_path,
                                                         capsys, args, message):
    code, out, rep = _quantize(trained_default_pt2, tmp_path, *args)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith(message), err
    assert not out.exists() and not rep.exists()


@pytest.mark.parametrize("active,span", [(2, 8), (3, 8), (4, 6), (5, 5)])
def test_plain_reference_is_the_lowest_contiguous_run_covering_the_layer(active, span):
    """The plain m-bit reference: m - 1 contiguous magnitude bits, covering the largest
    weight (unless the span's top run cannot), and one position lower would not."""
    from hwquant.quant.bitmask import plain_reference

    for a_max in np.geomspace(1e-3, 300, 97):
        mask = plain_reference(float(a_max), active, span)
        act = mask.active
        assert mask.bits == active and act == tuple(range(act[0], act[-1] + 1))
        top = float(mask.values().max())
        if act[-1] < span - 2:
            assert top >= a_max
        if act[0] > 0:
            lower = (2.0 ** act[-1] - 2.0 ** (act[0] - 1)) * 2.0 ** -mask.frac
            assert lower < a_max
