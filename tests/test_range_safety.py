"""Range safety of the quantizer: no bias clipped, no channel silenced, no saturation unreported.

Models at numeric extremes (tiny weights beside large biases, one outlier weight, out-of-range
inputs) through ``quantize`` (the per-layer report and its notes) and, where they are
representable, through the golden model and the hardware bit-exactly.
"""

import json
import os
import sys

import numpy as np
import pytest
import torch
from torch import nn

from hwquant import hwq, ir
from hwquant.cli import main
from hwquant.data import load_dataset
from hwquant.quant.fixed import BIAS_LIMIT_BITS
from hwquant.quant.report import input_saturation, unusual
from hwquant.train import default_model, export_model, train

sys.path.insert(0, os.path.dirname(__file__))
from netsim import check_network


class _TinyConv(nn.Module):
    """conv 1 -> 4 (3x3) -> ReLU -> linear 256 -> 10, its conv weights scaled to <= ``w_max``
    and given ``biases``: tiny weights beside large biases."""

    def __init__(self, w_max, biases):
        super().__init__()
        torch.manual_seed(0)
        self.c, self.f = nn.Conv2d(1, 4, 3, padding=1), nn.Linear(256, 10)
        with torch.no_grad():
            self.c.weight.mul_(w_max / self.c.weight.abs().max())
            self.c.bias.copy_(torch.tensor(biases, dtype=torch.float32))

    def forward(self, x):
        return self.f(torch.flatten(torch.relu(self.c(x)), 1))


def _export(tmp_path, module, name="m.pt2"):
    path = tmp_path / name
    export_model(module, torch.zeros(2, 1, 8, 8), path)
    return path


def _quantize(tmp_path, model, *args, name="n.hwq"):
    out, js = tmp_path / name, tmp_path / (name + ".json")
    try:
        rc = main(["quantize", str(model), "--quiet", *args, "-o", str(out), "--json", str(js)])
    except SystemExit as exc:  # argparse usage errors
        rc = exc.code
    return rc, out, (json.loads(js.read_text()) if js.exists() else None)


def _real_bias(layer):
    return layer.bias * 2.0 ** -(layer.in_format.frac + layer.weight_frac)


@pytest.mark.parametrize("bits, biases", [(16, [3, 0.5, 100, 1e-3]), (8, [3, 0.5, 1000, -700])])
def test_large_biases_beside_tiny_weights_are_kept_exactly(tmp_path, bits, biases):
    """The repro: biases of 100 (16 bits) and 1000 (8 bits) used to be clipped to 2 and about
    512 without a word; now every bias is within half an accumulator step."""
    model = _export(tmp_path, _TinyConv(1e-6, biases))
    rc, out, _ = _quantize(tmp_path, model, "--bits", str(bits), "--abits", str(bits))
    assert rc == 0
    conv = hwq.load(out).layers[0]
    step = 2.0 ** -(conv.in_format.frac + conv.weight_frac)
    np.testing.assert_allclose(_real_bias(conv), biases, rtol=0, atol=step / 2 + 1e-7)


def test_large_bias_network_is_bit_exact_in_hardware(tmp_path):
    model = _export(tmp_path, _TinyConv(1e-6, [3, 0.5, 100, 1e-3]))
    rc, out, _ = _quantize(tmp_path, model, "--bits", "16", "--abits", "16")
    assert rc == 0
    net = hwq.load(out)
    assert ir.accumulator_bits(net.layers[0]) > 40  # wider than the old clip at 2^40
    check_network(net, n=2, seed=1, stalls=0.3)


def test_a_bias_beyond_the_accumulator_is_refused_with_one_line(tmp_path, capsys):
    model = _export(tmp_path, _TinyConv(1e-9, [3, 0.5, 1e4, 1e-3]))
    rc, out, _ = _quantize(tmp_path, model, "--bits", "16", "--abits", "16")
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and not out.exists()
    assert len(err) == 1 and err[0].startswith("error: Layer 'c': bias 10000 of channel 2")
    assert f"2^{BIAS_LIMIT_BITS}" in err[0]


@pytest.fixture(scope="module")
def outlier_model(tmp_path_factory):
    """The default CNN (trained briefly) with one conv1 weight made 1000x the layer's largest;
    conv2 no longer reads that channel, so the float model barely changes while conv1's one
    power-of-two scale is set by the outlier."""
    tmp = tmp_path_factory.mktemp("outlier")
    ds = load_dataset("digits")
    model = default_model(ds.x_train.shape[1:], ds.num_classes, seed=0)
    train(model, ds, epochs=8, seed=0, progress=False)
    conv1, conv2 = [m for m in model.modules() if isinstance(m, nn.Conv2d)][:2]
    with torch.no_grad():
        conv1.weight[0, 0, 0, 0] = 1000 * conv1.weight.abs().max()
        conv2.weight[:, 0] = 0
    return _export(tmp, model, "outlier.pt2")


def test_outlier_weight_is_named_and_per_channel_scales_recover(tmp_path, outlier_model, capsys):
    """One scale for conv1 rounds all but the outlier to zero (named, with the fix). Per-channel
    weight scales fix the weights, but the outlier channel's outputs still set conv1's one
    activation scale (conv2's input collapses: named by its SNR); percentile calibration lets
    that channel saturate and the accuracy comes back."""
    rc, _, layer_scale = _quantize(tmp_path, outlier_model, "--bits", "8", name="l.hwq")
    assert rc == 0
    notes = [line for line in capsys.readouterr().err.splitlines()
             if line.startswith("note: layer 'conv1'")]
    assert notes and "round to zero" in notes[0] and "--scale channel" in notes[0]
    conv1 = next(r for r in layer_scale["layer_report"]["layers"] if r["name"] == "conv1")
    assert conv1["zero_weights"] > 0.9
    acc = layer_scale["accuracy"]
    assert acc["quantized"] < acc["float"] - 0.2  # the cliff

    rc, _, channel = _quantize(tmp_path, outlier_model, "--bits", "8", "--scale", "channel",
                               name="c.hwq")
    assert rc == 0 and channel["granularity"] == "channel"
    rows = {r["name"]: r for r in channel["layer_report"]["layers"]}
    assert rows["conv1"]["zero_weights"] < 0.2 and rows["conv2"]["snr_db"] < 10
    assert any(line.startswith("layer 'conv2'") for line in channel["layer_notes"])

    rc, _, both = _quantize(tmp_path, outlier_model, "--bits", "8", "--scale", "channel",
                            "--calib-percentile", "95", name="b.hwq")
    assert rc == 0
    assert both["accuracy"]["quantized"] >= both["accuracy"]["float"] - 0.02  # recovered


@pytest.mark.slow
def test_per_channel_fixed_network_is_bit_exact(tmp_path, outlier_model):
    rc, out, _ = _quantize(tmp_path, outlier_model, "--bits", "6", "--abits", "6", "--scale",
                           "channel", "--schedule", "none")
    assert rc == 0
    net = hwq.load(out)
    assert not net.layers[0].epilogue.is_shift_only  # the channel scales are multipliers
    check_network(net, n=2, seed=2, stalls=0.4)


def test_percentile_calibration_saturates_and_says_so(tmp_path, outlier_model):
    rc, _, rep = _quantize(tmp_path, outlier_model, "--calib-percentile", "90", "--schedule",
                           "none", name="p.hwq")
    assert rc == 0 and rep["calib_percentile"] == 90
    rows = rep["layer_report"]["layers"]
    assert any(r["saturated_outputs"] > 0.01 for r in rows)
    assert any("saturate" in line for line in rep["layer_notes"])


@pytest.mark.parametrize("value", ["20", "101", "abc"])
def test_bad_percentile_is_one_line(tmp_path, outlier_model, capsys, value):
    rc, out, _ = _quantize(tmp_path, outlier_model, "--calib-percentile", value)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and not out.exists() and len(err) == 1 and err[0].startswith("error:")


def test_input_saturation_is_counted():
    fmt = ir.ActFormat(4, False, 2)  # 0 .. 3.75
    assert input_saturation(np.array([0.0, 1.0, 3.75, 4.0, -1.0]), fmt) == pytest.approx(0.4)
    assert unusual({"saturated_inputs": 0.4, "layers": []})[0].startswith("input: 40.0%")


class _TinyBn(nn.Module):
    """conv 1 -> 4 (3x3) -> BatchNorm with one channel's variance 1e-10 and one negative and
    one zero gamma -> ReLU -> linear."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.c, self.bn, self.f = nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), \
            nn.Linear(256, 10)
        with torch.no_grad():
            self.bn.running_var.copy_(torch.tensor([1e-10, 1.0, 0.5, 2.0]))
            self.bn.running_mean.copy_(torch.tensor([0.1, -0.2, 0.0, 0.3]))
            self.bn.weight.copy_(torch.tensor([1.0, -0.7, 0.0, 1.3]))
        self.eval()

    def forward(self, x):
        return self.f(torch.flatten(torch.relu(self.bn(self.c(x))), 1))


@pytest.mark.parametrize("args", [["--bits", "8"], ["--bits", "8", "--scale", "channel"],
                                  ["--bits", "16", "--abits", "16"]])
def test_extreme_batchnorm_is_bit_exact_or_refused(tmp_path, args, capsys):
    """Variance 1e-10 (weights x 1e5 after folding), gamma < 0 and gamma = 0: quantized and
    simulated bit-exactly, or refused with one line, never silently clipped."""
    model = _export(tmp_path, _TinyBn())
    rc, out, _ = _quantize(tmp_path, model, *args)
    if rc == 2:
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: Layer ") and not out.exists()
        return
    assert rc == 0
    check_network(hwq.load(out), n=2, seed=3, stalls=0.3)
