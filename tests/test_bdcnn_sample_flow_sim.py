"""Binarized-DCNN with the per-sample range (``--range sample``) through quantize -> compile ->
cocotb + Verilator: every output word and every layer's probe against the golden model under
random valid gaps and ready stalls, and the cycles per inference the replayed schedule
predicts equal to the measured ones.

Each bdcnn layer is the quantizer (the whole input map buffered, min/max, one reciprocal per
sample), the window on the codes, the AND-popcount MVU and the combine with the layer's
epilogue (:mod:`hwquant.sample_range`). The default suite runs one small network of shapes no
other test uses; the digits default and the unseen stem model are slow."""

import json

import numpy as np
import pytest
import torch
from flows import export, make_unseen, save_split, train_full_batch
from netbuilders import sample_conv_linear_net
from torch import nn

from hwquant import golden, hwq, ir
from hwquant import plan as P
from hwquant.cli import main
from hwquant.simulate import quantize_input

pytestmark = pytest.mark.sim


class _SampleShapes(nn.Module):
    """Signed 2-channel input into a padded 3x3 conv; its output, not rectified, into a
    padded stride-2 3x3 conv (a signed map: the offset ``m * Rin`` with border taps left out
    matters on both); a 1x1 conv (no window); flatten + linear."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(2, 4, 3, padding=1)
        self.c2 = nn.Conv2d(4, 6, 3, stride=2, padding=1)
        self.c3 = nn.Conv2d(6, 4, 1)
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        x = torch.relu(self.c2(self.c1(x)))
        x = torch.relu(self.c3(x))
        return self.fc(torch.flatten(x, 1))


def _make_model(tmp_path):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(96, 2, 8, 8)).astype(np.float32)
    y = (x[:, 0, :4].mean(axis=(1, 2)) > 0).astype(np.int64) + \
        (x[:, 1, :, 4:].mean(axis=(1, 2)) > 0).astype(np.int64)
    data = save_split(tmp_path / "data.npz", x, y, 72)
    torch.manual_seed(0)
    model = train_full_batch(_SampleShapes(), x[:72], y[:72], epochs=30)
    return export(model, x[:2], tmp_path / "m.pt2"), data


def _flow(model, tmp_path, quant_args, fold, *, vectors, data=None):
    data_args = ["--data", str(data)] if data else []
    q, c, s = tmp_path / "q.json", tmp_path / "c.json", tmp_path / "s.json"
    assert main(["quantize", str(model), "--method", "bdcnn", "--range", "sample", *quant_args,
                 *data_args, "--quiet", "-o", str(tmp_path / "n.hwq"), "--json", str(q)]) == 0
    assert main(["compile", str(tmp_path / "n.hwq"), "--fold", fold, "-o",
                 str(tmp_path / "build"), "--json", str(c)]) == 0
    assert main(["sim", str(tmp_path / "build"), "--vectors", str(vectors), "--seed", "5",
                 "--stall", "0.3", "--json", str(s)]) == 0
    res = json.loads(s.read_text())
    assert res["passed"] and res["mismatches"] == 0 and res["vectors"] == vectors, res
    net = hwq.load(tmp_path / "n.hwq")
    for layer in net.weight_layers:
        assert layer.kind_data.range == "sample", layer.name
        assert res["streams"][f"probe_{layer.name}"]["received"] > 0, layer.name
    for name, stream in res["streams"].items():
        assert stream["received"] == stream["expected"] > 0, name
        assert stream["mismatches"] == 0, name
    # The replayed schedule is the hardware's: predicted cycles per inference = measured.
    assert res["cycles_per_inference"] == res["predicted_cycles"], res
    comp = json.loads(c.read_text())
    kinds = [st["kind"] for st in comp["stages"]]
    assert kinds.count("SampleQuant") == kinds.count("SampleCombine") == len(net.weight_layers)
    return json.loads(q.read_text()), net, comp, res


@pytest.mark.parametrize("fc", [
    "1:16", pytest.param("3:64", marks=pytest.mark.slow, id="fc_unrolled")])
def test_unseen_shapes_sample_range_bit_exact(fc, tmp_path):
    """Signed padded convs (register and memory windows), a 1x1 conv, a flatten + linear
    (folded; or fully unrolled: its quantizer holds a one-beat map); K = 3, Q = 4, 6-bit
    coefficients."""
    model, data = _make_model(tmp_path)
    _, net, comp, _ = _flow(model, tmp_path, ["--basis", "3", "--qbits", "4", "--coef-bits",
                                              "6"], f"c1=2:6,c2=3:4,c3=2:3,fc={fc}",
                            vectors=6, data=data)
    c1, c2 = net.layer("c1"), net.layer("c2")
    assert c1.in_format.signed and c2.in_format.signed and c2.padding == (1, 1)
    x = np.asarray(np.load(data)["x_test"][:6])
    gold = golden.run(net, quantize_input(net, x))
    assert gold["c1"].min() < 0  # c2's input is negative somewhere
    assert comp["cycles_per_inference"] >= max(st["busy_cycles"] for st in comp["stages"])


@pytest.mark.slow
def test_default_cnn_sample_range_k6_q6_bit_exact(trained_default_pt2, tmp_path):
    rep, net, _, _ = _flow(trained_default_pt2, tmp_path, ["--basis", "6", "--qbits", "6"],
                             "auto", vectors=16)
    assert {layer.encoding for layer in net.weight_layers} == {"bdcnn"}
    assert rep["accuracy"]["quantized"] >= rep["accuracy"]["float"] - 0.02


@pytest.mark.slow
def test_unseen_signed_padded_stem_sample_range_k4_q4(tmp_path):
    """The 5x5 stride-2, padding-2 stem on signed data (unrolled), the rest folded."""
    model, data = make_unseen(tmp_path)
    _, net, _, _ = _flow(model, tmp_path, ["--basis", "4", "--qbits", "4", "--coef-bits", "6"],
                         "stem=12:75,conv=2:12", vectors=8, data=data)
    stem = net.layer("stem")
    assert stem.in_format.signed and stem.padding == (2, 2)


def test_plan_of_sample_layers():
    """The stages a per-sample layer plans to and their rates: quantizer (two outputs, its
    token FIFO), window on the Q-bit codes (pad code 0), MVU on the codes, combine; the
    linear layer's quantizer reads the conv's stream through a width converter."""
    from hwquant.schedule.replay import replay

    plan = P.plan_network(sample_conv_linear_net((2, 6), (1, 16)))
    kinds = [type(st).__name__ for st in plan.stages]
    assert kinds == ["Source", "SampleQuant", "Fifo", "Window", "Mvu", "SampleCombine", "Fifo",
                     "Width", "SampleQuant", "Fifo", "Mvu", "SampleCombine", "ArgMax"], kinds
    quant, tokens, window, mvu, combine = plan.stages[1:6]
    assert quant.outputs == 2 and tokens.inputs == (P.Ref(quant.name, 1),)
    assert window.inputs == (P.Ref(quant.name, 0),) and window.fmt == ir.ActFormat(4, False, 0)
    assert window.pad_value == 0 and mvu.sample and mvu.fmt.signed
    assert combine.inputs == (P.Ref(mvu.name), P.Ref(tokens.name))
    assert list(plan.layer_outputs()) == ["conv", "fc"]
    assert plan.layer_outputs()["conv"] is combine
    # 2 * 16 beats + Q + S + 4: the map is loaded, the reciprocal formed, the codes out.
    assert quant.busy == 2 * 16 + 4 + 13 + 4
    fc_quant = plan.stages[8]
    assert (fc_quant.lanes, fc_quant.beats) == (16, 4)
    res = replay(plan, images=3)
    assert res.period >= quant.busy


@pytest.mark.parametrize("folds", [
    pytest.param(((2, 6), (1, 16)), id="mixed"),
    pytest.param(((4, 18), (3, 64)), id="unrolled", marks=pytest.mark.slow),
    pytest.param(((1, 2), (1, 4)), id="serial", marks=pytest.mark.slow)])
def test_network_top_bit_exact_and_cycles_equal_the_replay(folds):
    """The network top in the Amaranth simulator: every output word the golden model's under
    random stalls; never stalled, each further inference costs exactly the replayed
    schedule's period (the quantizer's load, divide and emit included)."""
    from netsim import check_network

    from hwquant.compile import plan_build

    net = sample_conv_linear_net(*folds)
    plan, sched = plan_build(net, "auto")
    check_network(net, n=3, seed=1, stalls=0.3, plan=plan)
    one = check_network(net, n=1, seed=0, stalls=0.0, plan=plan)
    three = check_network(net, n=3, seed=0, stalls=0.0, plan=plan)
    assert (three - one) / 2 == sched.period
    assert sched.period >= plan.bottleneck_cycles()
