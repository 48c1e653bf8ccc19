"""Whole networks through quantize -> compile -> cocotb + Verilator, against the golden model.

Each design is built once in Verilator (tens of seconds on 2 cores) and then runs through the
bulk bench, where whole test sets take seconds: every output word, every per-layer probe,
random stalls, measured cycles.
"""

import json

import pytest
from flows import make_unseen

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
    # The replayed schedule predicts the cycles and the latency exactly.
    report = json.loads((default_build / "compile.json").read_text())
    assert res["cycles_per_inference"] == res["predicted_cycles"]
    assert res["latency_cycles"] == report["latency_cycles"] > 0


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
