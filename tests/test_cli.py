"""The ``hwquant`` command line: reports, exit statuses, and no half-written outputs."""

import json
import re

import numpy as np
import pytest
import torch
from netbuilders import tiny_net
from torch import nn

import hwquant
from hwquant import golden, hwq
from hwquant.cli import main
from hwquant.simulate import quantize_input


@pytest.fixture
def tiny_hwq(tmp_path):
    path = tmp_path / "tiny.hwq"
    hwq.save(tiny_net(), path)
    return path


def test_compile_report_keys(tiny_hwq, tmp_path):
    out, rep = tmp_path / "build", tmp_path / "c.json"
    assert main(["compile", str(tiny_hwq), "--fold", "min", "-o", str(out),
                 "--json", str(rep)]) == 0
    report = json.loads(rep.read_text())
    assert report["verilog"] == str(out / "network.v") and (out / "network.v").is_file()
    assert [(r["name"], r["pe"], r["simd"]) for r in report["layers"]] == \
        [("conv1", 1, 1), ("fc", 1, 1)]
    assert report["bottleneck_cycles"] == max(r["cycles"] for r in report["layers"])
    # The replayed schedule: at least the busiest stage, within 5 % of it here.
    assert report["bottleneck_cycles"] <= report["cycles_per_inference"] \
        <= 1.05 * report["bottleneck_cycles"]
    assert set(report["fifo_depths"]) == set(report["fifos"]) == {"conv1_fifo"}
    assert report["fifo_memory_bits"] == sum(f["memory_bits"] for f in report["fifos"].values())
    assert "module hwquant_top" in (out / "network.v").read_text()
    # A second compile replaces the build directory.
    assert main(["compile", str(tiny_hwq), "--fold", "max", "-o", str(out)]) == 0
    assert json.loads((out / "compile.json").read_text())["layers"][0]["pe"] == 4


@pytest.mark.parametrize("argv, message", [
    (["compile", "{hwq}", "--fold", "conv1=3:1", "-o", "{out}"], r"PE must divide"),
    (["compile", "{hwq}", "--fold", "nope=1:1", "-o", "{out}"], r"not a weight layer"),
    (["compile", "{hwq}", "--fold", "conv1:1:1", "-o", "{out}"], r"Fold must be"),
    (["compile", "{hwq}", "--fold", "conv1=1:2", "-o", "{out}"],
     (r"^error: Layer 'conv1': SIMD must be one of \[1, 3, 9\] \(what its input stream can "
      r"supply\), not 2$")),
    (["compile", "{hwq}", "--fold", "max", "--board", "icebreaker", "-o", "{out}"],
     # Fully unrolled layers are adder graphs (no DSP blocks): the LUTs overflow.
     (r"^error: The network does not fit board 'icebreaker' .*LUTs: \d+ needed, 5280 "
      r"available; the largest consumer is layer 'fc'")),
    (["compile", "{hwq}", "--board", "nosuchboard", "-o", "{out}"], r"nosuchboard"),
    (["compile", "{bad}", "-o", "{out}"], r"not a readable \.hwq file"),
    (["compile", "{missing}", "-o", "{out}"], r"No such \.hwq file"),
    (["sim", "{out}"], r"not a hwquant build directory"),
    (["quantize", "{missing}", "-o", "{out}"], r"does not exist"),
])
def test_bad_input_exits_2_and_writes_nothing(argv, message, tiny_hwq, tmp_path, capsys):
    bad = tmp_path / "bad.hwq"
    bad.write_bytes(tiny_hwq.read_bytes()[:200])
    out = tmp_path / "out"
    subst = {"hwq": tiny_hwq, "bad": bad, "missing": tmp_path / "missing", "out": out}
    assert main([a.format(**subst) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert re.search(message, err), err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out-")]


def test_compile_refuses_foreign_directory(tiny_hwq, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert main(["compile", str(tiny_hwq), "-o", str(out)]) == 2
    assert (out / "notes.txt").read_text() == "keep me"


def test_python_api_live_module(digits):
    """A live nn.Module and an example input go through the public API."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.AvgPool2d(2), nn.Flatten(), nn.Linear(64, 10)).eval()
    graph = hwquant.from_module(model, torch.tensor(digits.x_test[:2]))
    net = hwquant.quantize_fixed(graph, digits.x_train[:64], wbits=8, abits=8)
    x = quantize_input(net, digits.x_test[:32])
    logits = golden.run(net, x)[net.output.name] * 2.0 ** -net.output.out_format.frac
    with torch.no_grad():
        ref = model(torch.tensor(digits.x_test[:32])).numpy()
    # 8-bit quantization of an untrained model: close to float, not equal.
    assert np.abs(logits - ref).max() < 0.1 * np.abs(ref).max() + 0.05


class _BroadcastAdd(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(1, 4, 3), nn.Conv2d(1, 1, 3)
        self.fc = nn.Linear(64, 3)

    def forward(self, x):
        return self.fc(torch.flatten(self.a(x) + self.b(x), 1))


def test_residual_add_of_different_shapes_exits_2(tmp_path, capsys):
    """A residual add whose operands differ in shape: one line naming the layer, exit 2,
    nothing written."""
    x = torch.zeros(2, 1, 6, 6)
    torch.export.save(torch.export.export(_BroadcastAdd().eval(), (x,)), tmp_path / "m.pt2")
    rng = np.random.default_rng(0)
    data = tmp_path / "d.npz"
    np.savez(data, x_train=rng.random((8, 1, 6, 6)), y_train=rng.integers(0, 3, 8),
             x_test=rng.random((4, 1, 6, 6)), y_test=rng.integers(0, 3, 4))
    out = tmp_path / "q.hwq"
    assert main(["quantize", str(tmp_path / "m.pt2"), "--data", str(data), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.match(r"^error: .*Layer 'add0' \(aten\.add\.Tensor\): operands "
                                      r"must have the same shape, not \(4, 4, 4\) and "
                                      r"\(1, 4, 4\)", err[0]), err
    assert not out.exists()
