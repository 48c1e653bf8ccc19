"""Fully unrolled layers through the constant-matrix engine, quantize -> compile -> cocotb +
Verilator: every output word and probe compared with the golden model under random stalls,
cycles as the schedule predicts. (Unrolled layers elsewhere: ``test_flow_sim_pow2`` unrolls an
unseen model's stem; ``test_network_hw`` and ``test_hw_mvu`` unroll whole random networks.)"""

import json

import pytest

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
