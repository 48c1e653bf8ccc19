"""``hwquant sweep`` on an embedded local Ray (two workers), its cache, its bad-input checks,
the Pareto front and the choice, and the per-layer weight widths it sweeps
(``quantize --bits 4,edges=8``)."""

import json
import os
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from hwquant.cli import main


def _run(argv) -> int:
    """``main(argv)``, with argparse's own exits returned as their status."""
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


def _children(pid) -> list:
    """Processes descending from ``pid`` (from /proc)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    out, frontier = [], {pid}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier}
        out += frontier
    return out


@pytest.fixture(scope="module")
def tiny_pt2(digits, tmp_path_factory):
    """An untrained two-conv model (the sweep's structure, not its accuracy): weight layers
    conv2d_0, conv2d_3, linear_6."""
    from hwquant.train import export_model

    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(4, 6, 3), nn.ReLU(), nn.Flatten(), nn.Linear(24, 10)).eval()
    path = tmp_path_factory.mktemp("sweep_model") / "tiny.pt2"
    export_model(model, torch.tensor(digits.x_test[:2]), path)
    return path


FOLD = "conv2d_0=2:1,conv2d_3=1:2,linear_6=1:1"
KILLED = "conv2d_0=4:1"


def test_sweep_on_local_ray_records_a_crashed_point_and_reuses_the_rest(tiny_pt2, tmp_path,
                                                                       monkeypatch, capsys):
    """Three points (fixed 8 bits x three foldings) on two local Ray workers; the worker of
    one of them dies (``os._exit``, the test hook): the sweep completes, that point is failed
    with the worker's death as its error, the others have accuracy, resources, cycles and
    images/s; one quantization serves every folding. A re-run of the finished points takes
    them from the cache without starting Ray. No Ray process is left behind."""
    ray = pytest.importorskip("ray")
    from hwquant.sweep import FAIL_ENV

    out = tmp_path / "sw"
    monkeypatch.setenv(FAIL_ENV, f"fixed-8/{KILLED}")
    assert main(["sweep", str(tiny_pt2), "--methods", "fixed", "--bits", "8", "--fold", "min",
                 "--fold", FOLD, "--fold", KILLED, "--workers", "2", "--quiet",
                 "-o", str(out)]) == 0
    report = json.loads((out / "sweep.json").read_text())
    assert not ray.is_initialized()
    deadline = time.monotonic() + 10
    while _children(os.getpid()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _children(os.getpid()) == []

    assert report["status"] == "complete"
    rows = {r["label"]: r for r in report["points"]}
    assert set(rows) == {"fixed-8/min", f"fixed-8/{FOLD}", f"fixed-8/{KILLED}"}
    dead = rows[f"fixed-8/{KILLED}"]
    assert dead["status"] == "failed" and "died" in dead["error"].lower(), dead
    assert dead["accuracy"] is not None  # its quantization finished; the point task died
    for label in ("fixed-8/min", f"fixed-8/{FOLD}"):
        row = rows[label]
        assert row["status"] == "ok", row
        assert 0 <= row["accuracy"] <= 1 and row["model"]["lut"] > 0
        assert row["images_per_s"] == pytest.approx(12e6 / row["cycles_per_inference"])
        assert row["clock"] == "board" and row["yosys"] is None
    assert rows["fixed-8/min"]["folding"] == "conv2d_0=1:1,conv2d_3=1:1,linear_6=1:1"
    assert rows[f"fixed-8/{FOLD}"]["folding"] == FOLD
    assert rows["fixed-8/min"]["cycles_per_inference"] > \
        rows[f"fixed-8/{FOLD}"]["cycles_per_inference"]
    assert rows["fixed-8/min"]["accuracy"] == rows[f"fixed-8/{FOLD}"]["accuracy"]
    assert len(list((out / "cache" / "quant").iterdir())) == 1  # once per method x bits
    assert report["counts"] == {"points": 3, "done": 3, "ok": 2, "failed": 1, "cached": 0}
    fits = [r for r in rows.values() if r["status"] == "ok" and r["fits"]]
    best = max(r["accuracy"] for r in fits)
    assert report["chosen"] in {r["label"] for r in fits if r["accuracy"] == best}
    assert report["fronts"]["area"] and set(report["fronts"]["area"]) <= set(rows)
    md = (out / "sweep.md").read_text()
    assert report["rule"] in md and "failed" in md and f"★ {report['chosen']}" in md
    assert (out / "sweep.png").read_bytes()[:4] == b"\x89PNG"

    # The finished points again, and only those: everything from the cache, Ray not started.
    monkeypatch.delenv(FAIL_ENV)
    capsys.readouterr()
    assert main(["sweep", str(tiny_pt2), "--methods", "fixed", "--bits", "8", "--fold", "min",
                 "--fold", FOLD, "--workers", "2", "--quiet", "-o", str(out)]) == 0
    again = json.loads((out / "sweep.json").read_text())
    assert again["counts"]["cached"] == again["counts"]["points"] == 2
    assert "ray" not in again and not ray.is_initialized()
    for row in again["points"]:
        assert {k: v for k, v in row.items() if k != "cached"} == \
            {k: v for k, v in rows[row["label"]].items() if k != "cached"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("extra, message", [
    (["--methods", "fixed,nosuch"], "nosuch not among"),
    (["--methods", "inq", "--bits", "4,12"], ("point inq-12: Weight width for inq must be an "
                                             "integer in 2..8")),
    (["--methods", "fixed", "--bits", "4:conv1=8"], "'conv1', not a conv/linear layer"),
    (["--methods", "fixed", "--bits", "4,conv2d_0=8"], ("per-layer widths follow a width "
                                                        "with ':'")),
    (["--methods", "fixed", "--fold", "nosuch=1:1"], "nosuch is not a weight layer"),
    (["--methods", "fixed", "--place", "--board", "arty_a7_35"], "no open place and route"),
    (["--methods", "fixed", "--address", "ADDRESS"], "is unreachable"),
])
def test_sweep_bad_input_exits_2_before_any_point(extra, message, tiny_pt2, tmp_path, capsys):
    """Unknown method, a width the method does not take, an unknown layer, a bad fold, a
    board without place and route, an unreachable Ray address: one error line, exit 2,
    nothing written."""
    out = tmp_path / "sw"
    extra = [f"127.0.0.1:{_free_port()}" if v == "ADDRESS" else v for v in extra]
    start = time.monotonic()
    assert _run(["sweep", str(tiny_pt2), *extra, "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0], err
    assert not out.exists()
    assert time.monotonic() - start < 60


def test_bit_specs_and_folds():
    from hwquant.errors import HwquantError
    from hwquant.sweep import BitSpec, parse_bit_specs, parse_folds, plan_points

    specs = parse_bit_specs("2,4,4:edges=8,4:linear_6=8:edges=6,4")
    assert [s.label for s in specs] == ["2", "4", "4:edges=8", "4:edges=6:linear_6=8"]
    assert specs[3] == BitSpec(4, (("edges", 6), ("linear_6", 8)))
    with pytest.raises(HwquantError, match="given two weight widths"):
        parse_bit_specs("4:edges=8:edges=6")
    assert parse_folds(["auto,max", "min", "a=1:2,b=3:4", "max"]) == \
        ["auto", "max", "min", "a=1:2,b=3:4"]
    with pytest.raises(HwquantError):
        parse_folds(["auto,bogus"])
    quants, points = plan_points(["fixed", "ternary", "binary"], specs[:2], ["min", "max"])
    assert [q.label for q in quants] == ["fixed-2", "fixed-4", "ternary-2", "binary-1"]
    assert len(points) == 8 and points[0].label == "fixed-2/min"


def test_front_and_choice():
    """Non-dominated points in (accuracy up, area down); the choice is the most accurate
    point that fits, ties to less area."""
    from hwquant.pareto import non_dominated
    from hwquant.sweep import choose

    rows = [{"label": "a", "accuracy": 0.9, "lut_eq": 100, "images_per_s": 10, "fits": True},
            {"label": "b", "accuracy": 0.95, "lut_eq": 300, "images_per_s": 30, "fits": True},
            {"label": "c", "accuracy": 0.95, "lut_eq": 200, "images_per_s": 5, "fits": True},
            {"label": "d", "accuracy": 0.99, "lut_eq": 900, "images_per_s": 50, "fits": False},
            {"label": "e", "accuracy": 0.8, "lut_eq": 150, "images_per_s": 1, "fits": True}]
    for r in rows:
        r["status"] = "ok"
    area = non_dominated(rows, [(lambda r: r["accuracy"], 1), (lambda r: r["lut_eq"], -1)])
    assert [rows[i]["label"] for i in area] == ["a", "c", "d"]
    rate = non_dominated(rows, [(lambda r: r["accuracy"], 1), (lambda r: r["images_per_s"], 1)])
    assert [rows[i]["label"] for i in rate] == ["d"]
    assert choose(rows)["label"] == "c"
    assert choose([dict(r, fits=False) for r in rows]) is None


def test_lut_equivalents():
    from hwquant.estimate.resources import multiplier
    from hwquant.pareto import lut_equivalents

    assert lut_equivalents({"lut": 10, "dsp": 0, "bram": 0}, "ice40") == 10
    assert lut_equivalents({"lut": 10, "dsp": 1, "bram": 2}, "ice40") == \
        10 + multiplier(16, 16, "ice40", False, signed=True).lut + 2 * 64
    assert lut_equivalents({"lut": 0, "dsp": 0, "bram": 0, "lutram": 3}, "ecp5") == 6


def test_quantize_per_layer_bits(tiny_pt2, tmp_path, capsys):
    """``--bits 4,edges=8``: the first and the last weight layer 8 bits, the other 4 (fixed,
    retrained; inq too); a named layer wins over edges."""
    from hwquant import hwq

    out = tmp_path / "m.hwq"
    assert main(["quantize", str(tiny_pt2), "--bits", "4,edges=8", "--retrain-epochs", "0",
                 "--quiet", "-o", str(out), "--json", str(tmp_path / "m.json")]) == 0
    net = hwq.load(out)
    assert [layer.weight_bits for layer in net.weight_layers] == [8, 4, 8]
    assert int(np.abs(net.weight_layers[1].weight).max()) <= 7
    rep = json.loads((tmp_path / "m.json").read_text())
    assert rep["layer_bits"] == {"edges": 8} and rep["schedule"] == "simple"
    out2 = tmp_path / "i.hwq"
    assert main(["quantize", str(tiny_pt2), "--method", "inq", "--bits",
                 "5,edges=3,linear_6=6", "--retrain-epochs", "0", "--quiet",
                 "-o", str(out2)]) == 0
    net = hwq.load(out2)
    assert [(layer.weight_bits, layer.encoding) for layer in net.weight_layers] == \
        [(3, "pow2"), (5, "pow2"), (6, "pow2")]


@pytest.mark.parametrize("extra, message", [
    (["--bits", "4,nosuch=8"], ("'nosuch', not a conv/linear layer of the model (its weight "
                               "layers: conv2d_0, conv2d_3, linear_6")),
    (["--bits", "4,edges=17"], ("Weight width of layer 'edges' for fixed must be an integer in "
                               "2..16, not 17")),
    (["--method", "inq", "--bits", "4,conv2d_0=9"], "for inq must be an integer in 2..8"),
    (["--method", "ternary", "--bits", "2,edges=8"], ("apply to --method fixed or inq, not "
                                                     "ternary")),
    (["--bits", "4,edges"], "Per-layer weight widths are LAYER=B"),
])
def test_quantize_per_layer_bits_bad_input(extra, message, tiny_pt2, tmp_path, capsys):
    out = tmp_path / "m.hwq"
    assert _run(["quantize", str(tiny_pt2), *extra, "--quiet", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not out.exists()


@pytest.mark.slow
def test_sweep_cancels_a_point_past_its_timeout(tiny_pt2, tmp_path, monkeypatch):
    """A point whose task hangs is cancelled after ``--timeout`` and recorded as such; the
    other point completes."""
    pytest.importorskip("ray")
    from hwquant.sweep import FAIL_ENV

    out = tmp_path / "sw"
    monkeypatch.setenv(FAIL_ENV, f"hang:fixed-8/{FOLD}")
    start = time.monotonic()
    assert main(["sweep", str(tiny_pt2), "--methods", "fixed", "--bits", "8", "--fold", "min",
                 "--fold", FOLD, "--workers", "2", "--timeout", "40", "--quiet",
                 "-o", str(out)]) == 0
    rows = {r["label"]: r for r in json.loads((out / "sweep.json").read_text())["points"]}
    assert rows["fixed-8/min"]["status"] == "ok"
    assert rows[f"fixed-8/{FOLD}"]["status"] == "timeout"
    assert "timed out after 40 s" in rows[f"fixed-8/{FOLD}"]["error"]
    assert time.monotonic() - start < 300


@pytest.mark.slow
@pytest.mark.synth
def test_sweep_synth_and_place_share_runs_of_the_same_verilog(tiny_pt2, tmp_path):
    """``--synth --place`` with one worker: ``min`` and the same folding spelt out emit the
    same Verilog, so the second point takes Yosys's and nextpnr's results of the first; the
    rows carry Yosys counts, Fmax and images/s at Fmax."""
    pytest.importorskip("ray")
    out = tmp_path / "sw"
    same = "conv2d_0=1:1,conv2d_3=1:1,linear_6=1:1"
    assert main(["sweep", str(tiny_pt2), "--methods", "fixed", "--bits", "8", "--fold", "min",
                 "--fold", same, "--synth", "--place", "--workers", "1", "--quiet",
                 "-o", str(out)]) == 0
    report = json.loads((out / "sweep.json").read_text())
    a, b = report["points"]
    assert a["status"] == b["status"] == "ok", (a, b)
    assert a["yosys"] == b["yosys"] and a["yosys"]["lut"] > 0
    assert a["yosys_design"] == "board top"
    fmax = a["nextpnr"]["fmax_mhz"]
    assert fmax > 0 and a["clock"] == "fmax"
    assert a["images_per_s"] == pytest.approx(fmax * 1e6 / a["cycles_per_inference"])
    tools = sorted(p.name.split("-")[0] for p in (out / "cache" / "tools").iterdir())
    assert tools == ["place", "synth"]  # one run each for the two points
    md = (out / "sweep.md").read_text()
    assert "MHz" in md
