"""A ResNet-style model the other tests have not seen (identity and projection skips,
BatchNorm, ReLU after each add, a stride-2 block) through quantize -> compile -> sim on the
emitted Verilog: every output word and every layer probe, with random stalls; cycles as the
replayed schedule predicts."""

import json

import pytest
import torch
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
