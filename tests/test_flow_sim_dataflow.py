"""Models the other network tests have not seen, through quantize -> compile -> sim on the
emitted Verilog with default options: a ResNet-style model (identity and projection skips,
BatchNorm, ReLU after each add, a stride-2 block) and an MLP on vector data (hidden linear
layers whose outputs are one vector per inference). Every output word and every layer probe,
with random stalls; cycles as the replayed schedule predicts."""

import json

import numpy as np
import pytest
import torch
from flows import export, save_split, train_full_batch
from torch import nn

from hwquant import hwq, ir
from hwquant.cli import main

pytestmark = pytest.mark.sim


class _TinyResNet(nn.Module):
    def __init__(self, classes=10):
        super().__init__()

        def conv_bn(cin, cout, k, stride=1):
            return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False),
                                 nn.BatchNorm2d(cout))

        self.stem = conv_bn(1, 8, 3)
        self.b1a, self.b1b = conv_bn(8, 8, 3), conv_bn(8, 8, 3)
        self.b2a, self.b2b = conv_bn(8, 12, 3, 2), conv_bn(12, 12, 3)
        self.proj = conv_bn(8, 12, 1, 2)
        self.head = nn.Linear(12, classes)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = torch.relu(x + self.b1b(torch.relu(self.b1a(x))))
        x = torch.relu(self.b2b(torch.relu(self.b2a(x))) + self.proj(x))
        return self.head(x.mean((2, 3)))


@pytest.fixture(scope="module")
def resnet_pt2(digits, tmp_path_factory):
    from hwquant.train import export_model, train

    torch.manual_seed(1)
    model = _TinyResNet(digits.num_classes)
    acc = train(model, digits, epochs=6, seed=1, progress=False)
    assert acc > 0.8
    model.eval()
    path = tmp_path_factory.mktemp("resnet") / "resnet.pt2"
    export_model(model, digits.x_test[:2], path)
    return path


def test_resnet_quantize_compile_sim_bit_exact(resnet_pt2, tmp_path):
    assert main(["quantize", str(resnet_pt2), "-o", str(tmp_path / "r.hwq")]) == 0
    net = hwq.load(tmp_path / "r.hwq")
    adds = [layer for layer in net.layers if isinstance(layer, ir.Add)]
    assert len(adds) == 2 and all(a.relu for a in adds)
    c = tmp_path / "c.json"
    assert main(["compile", str(tmp_path / "r.hwq"), "-o", str(tmp_path / "build"),
                 "--json", str(c)]) == 0
    report = json.loads(c.read_text())
    skips = {k: v for k, v in report["fifos"].items() if "_to_" in k}
    assert skips, report["fifos"]
    s = tmp_path / "s.json"
    assert main(["sim", str(tmp_path / "build"), "--vectors", "6", "--seed", "2",
                 "--json", str(s)]) == 0
    res = json.loads(s.read_text())
    assert res["mismatches"] == 0 and res["passed"], res
    for name, st in res["streams"].items():
        assert st["received"] == st["expected"] > 0 and st["mismatches"] == 0, name
    assert abs(res["cycle_error"]) <= 0.05, res


def test_mlp_on_vector_data_with_default_options(tmp_path):
    """Linear(13, 24) + BatchNorm1d + ReLU, Linear(24, 12) + ReLU, Linear(12, 3) on vectors:
    a layer producing one vector per inference gets a FIFO that Verilator accepts."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 13)).astype(np.float32)
    y = (x[:, :4].sum(1) > 0).astype(np.int64) + (x[:, 4:8].sum(1) > 1).astype(np.int64)
    data = save_split(tmp_path / "vec.npz", x, y, 160)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(13, 24), nn.BatchNorm1d(24), nn.ReLU(), nn.Linear(24, 12),
                          nn.ReLU(), nn.Linear(12, 3))
    train_full_batch(model, x[:160], y[:160], epochs=60)
    export(model, x[:2], tmp_path / "m.pt2")
    assert main(["quantize", str(tmp_path / "m.pt2"), "--data", str(data), "-o",
                 str(tmp_path / "m.hwq")]) == 0
    assert main(["compile", str(tmp_path / "m.hwq"), "-o", str(tmp_path / "build")]) == 0
    s = tmp_path / "s.json"
    assert main(["sim", str(tmp_path / "build"), "--vectors", "8", "--json", str(s)]) == 0
    res = json.loads(s.read_text())
    assert res["passed"] and res["mismatches"] == 0, res
    probes = [k for k in res["streams"] if k.startswith("probe_")]
    assert len(probes) == 3, res["streams"]


def _cnv(tmp_path):
    """BNN-PYNQ's CIFAR-10 "CNV" topology with random weights and random 3x32x32 data."""
    from hwquant.topologies import cnv

    torch.manual_seed(0)
    model = cnv()
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(40, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, size=40)
    data = save_split(tmp_path / "cnv.npz", x, y, 32, num_classes=10)
    return export(model, x[:2], tmp_path / "cnv.pt2"), data


@pytest.mark.slow
def test_cnv_ternary_a4_two_images_bit_exact(tmp_path):
    """The CNV network at a 100k-cycle target: two random images through the Verilog."""
    model, data = _cnv(tmp_path)
    assert main(["quantize", str(model), "--data", str(data), "--method", "ternary",
                 "--abits", "4", "--schedule", "none", "-o", str(tmp_path / "q.hwq")]) == 0
    assert main(["compile", str(tmp_path / "q.hwq"), "--target-cycles", "100000", "-o",
                 str(tmp_path / "build")]) == 0
    s = tmp_path / "s.json"
    assert main(["sim", str(tmp_path / "build"), "--vectors", "2", "--stall", "0.1",
                 "--json", str(s)]) == 0
    res = json.loads(s.read_text())
    assert res["passed"] and res["mismatches"] == 0, res
    assert abs(res["cycle_error"]) <= 0.05, res
