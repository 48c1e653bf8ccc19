"""Whole networks through quantize -> compile -> cocotb + Verilator, against the golden model.

Each design is built once in Verilator (tens of seconds on 2 cores) and then runs through the
bulk bench, where whole test sets take seconds: every output word, every per-layer probe,
random stalls, measured cycles.
"""

import json

import numpy as np
import pytest
import torch
from torch import nn

from hwquant import hwq, ir
from hwquant.cli import main
from hwquant.compile import compile_network
from hwquant.data import calibration_split
from hwquant.frontend import load_model
from hwquant.quant.fixed import quantize_fixed
from hwquant.simulate import simulate_build

pytestmark = pytest.mark.sim


@pytest.fixture(scope="module")
def default_net(trained_default_pt2, digits):
    graph = load_model(trained_default_pt2)
    return quantize_fixed(graph, calibration_split(digits, n=128), wbits=8, abits=8,
                          metadata={"dataset": {"name": "digits"}})


@pytest.fixture(scope="module")
def default_build(default_net, tmp_path_factory):
    out = tmp_path_factory.mktemp("default") / "build"
    compile_network(default_net, out, fold="auto")
    return out


def test_default_cnn_bit_exact_with_cycles(default_build):
    res = simulate_build(default_build, vectors=64, seed=1, stall=0.3)
    assert res["passed"], res
    assert res["mode"] == "bulk"
    assert res["mismatches"] == 0
    assert res["first_mismatch_layer"] is None
    assert res["streams"]["o_stream"]["received"] == 64
    for name, s in res["streams"].items():
        assert s["received"] == s["expected"] > 0, name
    # Steady-state cycles per inference match the analytical bottleneck within 5 %.
    assert abs(res["cycle_error"]) <= 0.05, res


def test_whole_test_split_through_the_rtl(default_build, digits, tmp_path):
    """``hwquant sim --vectors all``: all 450 test images bit-exact under random stalls (two
    simulator processes, 225 images each), and the accuracy of the simulated class outputs
    equals the golden model's."""
    report = tmp_path / "sim.json"
    assert main(["sim", str(default_build), "--vectors", "all", "--jobs", "2",
                 "--json", str(report)]) == 0
    res = json.loads(report.read_text())
    assert res["vectors"] == len(digits.y_test) == 450 and res["jobs"] == 2
    assert res["passed"] and res["mismatches"] == 0 and not res["timed_out"], res
    assert res["streams"]["o_stream"]["received"] == 450
    assert all(s["received"] == s["expected"] > 0 for s in res["streams"].values())
    assert res["accuracy"] == res["golden_accuracy"] > 0.9
    # Random stalls did slow the run down: more cycles than the stall-free schedule needs.
    assert res["stalled_cycles"] > 450 * res["predicted_cycles"]


def test_mismatch_names_the_first_bad_layer(default_build, tmp_path):
    """Change one bias in the golden copy of conv2: the output and conv2's probe disagree,
    earlier probes do not, and ``hwquant sim`` exits 1 (the bulk bench, the default)."""
    net = hwq.load(default_build / "network.hwq")
    conv2 = net.layer("conv2")
    bias = conv2.bias.copy()
    bias[:] += 1 << 12
    hwq.save(net.replace_layer("conv2", bias=bias), default_build / "network.hwq")
    try:
        for jobs in (1, 2):  # one simulator, or two with two images each
            res = simulate_build(default_build, vectors=4, seed=2, stall=0.2, jobs=jobs)
            assert res["mode"] == "bulk" and res["jobs"] == jobs
            assert not res["passed"]
            assert res["first_mismatch_layer"] == "conv2"
            assert res["streams"]["probe_conv1"]["mismatches"] == 0
            assert res["streams"]["probe_conv2"]["mismatches"] > 0
        report = tmp_path / "sim.json"
        assert main(["sim", str(default_build), "--vectors", "2", "--json", str(report)]) == 1
        assert json.loads(report.read_text())["first_mismatch_layer"] == "conv2"
    finally:
        hwq.save(net, default_build / "network.hwq")


class _Unseen(nn.Module):
    """Shapes no other test uses: 3 channels, 5x5 kernel with stride 2 and padding 2, no bias
    + BatchNorm, 3x3 conv without padding, average pooling, 12 output channels."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 12, 5, stride=2, padding=2, bias=False)
        self.bn = nn.BatchNorm2d(12)
        self.conv = nn.Conv2d(12, 6, 3)
        self.pool = nn.AvgPool2d(2)
        self.head = nn.Linear(6 * 2 * 2, 4)

    def forward(self, x):
        x = torch.relu(self.bn(self.stem(x)))
        x = self.pool(torch.relu(self.conv(x)))
        return self.head(torch.flatten(x, 1))


def make_unseen(tmp_path):
    """Train :class:`_Unseen` on random signed 3-channel data; returns ``(model.pt2, data.npz)``."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(160, 3, 12, 12)).astype(np.float32)
    y = (x[:, 0, :6].mean(axis=(1, 2)) > 0).astype(np.int64) * 2 + \
        (x[:, 1, :, :6].mean(axis=(1, 2)) > 0).astype(np.int64)
    data = tmp_path / "data.npz"
    np.savez(data, x_train=x[:120], y_train=y[:120], x_test=x[120:], y_test=y[120:])
    torch.manual_seed(0)
    model = _Unseen()
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(40):
        opt.zero_grad()
        nn.functional.cross_entropy(model(torch.tensor(x[:120])), torch.tensor(y[:120])).backward()
        opt.step()
    model.eval()
    ep = torch.export.export(model, (torch.tensor(x[:2]),))
    torch.export.save(ep, tmp_path / "unseen.pt2")
    return tmp_path / "unseen.pt2", data


def test_unseen_model_through_the_cli(tmp_path):
    """A user's model and data (.npz) go through quantize -> compile -> sim unchanged."""
    _, data = make_unseen(tmp_path)
    q = tmp_path / "q.json"
    assert main(["quantize", str(tmp_path / "unseen.pt2"), "--data", str(data), "--wbits", "6",
                 "--abits", "7", "-o", str(tmp_path / "u.hwq"), "--json", str(q)]) == 0
    assert json.loads(q.read_text())["accuracy"]["quantized"] > 0.5
    net = hwq.load(tmp_path / "u.hwq")
    assert net.input_format.signed  # the data is signed
    assert any(isinstance(layer, ir.AvgPool2d) for layer in net.layers)
    c = tmp_path / "c.json"
    assert main(["compile", str(tmp_path / "u.hwq"), "--fold", "stem=4:15", "-o",
                 str(tmp_path / "build"), "--json", str(c)]) == 0
    rows = {r["name"]: r for r in json.loads(c.read_text())["layers"]}
    assert (rows["stem"]["pe"], rows["stem"]["simd"]) == (4, 15)
    s = tmp_path / "s.json"
    assert main(["sim", str(tmp_path / "build"), "--vectors", "8", "--seed", "3",
                 "--json", str(s)]) == 0
    res = json.loads(s.read_text())
    assert res["vectors"] == 8 and res["mismatches"] == 0
    assert abs(res["cycle_error"]) <= 0.05, res


@pytest.mark.slow
def test_default_cnn_python_driven_bench(default_build):
    """The Python-driven bench (cocotb drivers on every edge) on the same design."""
    res = simulate_build(default_build, vectors=4, seed=3, stall=0.3, mode="python")
    assert res["passed"] and res["mode"] == "python" and res["mismatches"] == 0, res
    assert all(s["received"] == s["expected"] > 0 for s in res["streams"].values())
    assert abs(res["cycle_error"]) <= 0.05, res


@pytest.mark.slow
def test_fully_unrolled_layer_bit_exact(default_net, tmp_path):
    """First layer fully unrolled (constant weights, no ROM), the others folded both ways."""
    out = tmp_path / "build"
    compile_network(default_net, out, fold="conv1=16:9,conv2=4:16,fc=1:1")
    res = simulate_build(out, vectors=3, seed=4, stall=0.5)
    assert res["passed"] and res["mismatches"] == 0
