"""Fully unrolled layers through the constant-matrix engine, quantize -> compile -> cocotb +
Verilator: every output word and probe compared with the golden model under random stalls,
cycles as the schedule predicts; an unseen network with pipelined engines (``--engine-stages``),
its measured cycles and latency equal to the replayed schedule's. (Unrolled layers elsewhere: ``test_flow_sim_pow2`` unrolls an
unseen model's stem; ``test_network_hw`` and ``test_hw_mvu`` unroll whole random networks.)"""

import json

import numpy as np
import pytest
import torch
from flows import export, quantize_compile_sim, save_split, train_full_batch
from torch import nn

from hwquant import hwq
from hwquant.cli import main

pytestmark = pytest.mark.sim


@pytest.mark.parametrize("method", [["--method", "fixed", "--bits", "6"],
                                    pytest.param(["--method", "ternary"],
                                                 marks=pytest.mark.slow)])
def test_default_cnn_with_unrolled_first_layer(trained_default_pt2, tmp_path, method):
    s, c = tmp_path / "s.json", tmp_path / "build" / "compile.json"
    assert main(["quantize", str(trained_default_pt2), *method, "--quiet",
                 "-o", str(tmp_path / "n.hwq")]) == 0
    assert main(["compile", str(tmp_path / "n.hwq"), "--fold", "conv1=16:9",
                 "-o", str(tmp_path / "build")]) == 0
    layers = {layer["name"]: layer for layer in json.loads(c.read_text())["layers"]}
    assert (layers["conv1"]["pe"], layers["conv1"]["simd"]) == (16, 9)
    # The unrolled conv1 is one adder graph (submodule "matrix"), not PE engines of products.
    verilog = (tmp_path / "build" / "network.v").read_text()
    assert ".matrix" in verilog and ".pe0" not in verilog.split("conv2")[0]
    assert main(["sim", str(tmp_path / "build"), "--vectors", "24", "--seed", "3",
                 "--stall", "0.3", "--json", str(s)]) == 0
    res = json.loads(s.read_text())
    assert res["passed"] and res["mismatches"] == 0
    for name, stream in res["streams"].items():
        assert stream["received"] == stream["expected"] > 0, name
    assert abs(res["cycle_error"]) <= 0.05, res


class _HiddenMlpCnn(nn.Module):
    """An unrolled-first-conv shape no other test uses: a 3x3 stride-2 conv on 2 channels of
    8x8, then a hidden linear layer of 10 and a 3-class head."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 6, 3, stride=2, padding=1)
        self.hidden = nn.Linear(6 * 4 * 4, 10)
        self.head = nn.Linear(10, 3)

    def forward(self, x):
        x = torch.relu(self.conv(x))
        return self.head(torch.relu(self.hidden(torch.flatten(x, 1))))


def test_pipelined_engines_in_an_unseen_network(tmp_path):
    """The unrolled conv cut twice, the unrolled head once (``--engine-stages``), the hidden
    layer folded: bit-exact under stalls, the measured cycles per inference equal to the
    replayed schedule's, and the measured latency equal to the replayed one: 3 cycles (the cuts
    on the path) longer than without cuts (the MVU timing models with their engine stages)."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(120, 2, 8, 8)).astype(np.float32)
    y = (x[:, 0].mean(axis=(1, 2)) > 0).astype(np.int64) + (x[:, 1, :4].mean(axis=(1, 2)) > 0)
    data = save_split(tmp_path / "data.npz", x, y, 90)
    torch.manual_seed(0)
    model = export(train_full_batch(_HiddenMlpCnn(), x[:90], y[:90], epochs=30), x[:2],
                   tmp_path / "m.pt2")
    runs = {}
    for spec in ("0", "conv=2,head=1,0"):
        work = tmp_path / spec.replace(",", "_").replace("=", "")
        work.mkdir()
        quantize_compile_sim(model, work, ["--method", "fixed", "--bits", "5"],
                             "conv=6:18,hidden=2:8,head=3:10", data=data,
                             compile_args=["--engine-stages", spec])
        report = json.loads((work / "build" / "compile.json").read_text())
        res = json.loads((work / "s.json").read_text())
        assert res["cycles_per_inference"] == res["predicted_cycles"], res
        assert res["latency_cycles"] == report["latency_cycles"], (res, report)
        runs[spec] = (report, res, hwq.load(work / "build" / "network.hwq"))
    report, res, net = runs["conv=2,head=1,0"]
    assert [net.layer(n).fold.stages for n in ("conv", "hidden", "head")] == [2, 0, 1]
    assert {k: v["stages"] for k, v in report["engine_stages"].items()} == \
        {"conv": 2, "hidden": 0, "head": 1}
    base_report, base_res, _ = runs["0"]
    assert report["latency_cycles"] - base_report["latency_cycles"] == 3
    assert res["latency_cycles"] - base_res["latency_cycles"] == 3
