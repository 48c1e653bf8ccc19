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
        # Wall and CPU seconds of the task, its imports, its worker (one torch thread).
        assert row["seconds"] > 0 and 0 < row["cpu_seconds"] and row["import_seconds"] >= 0
        assert row["worker"]["pid"] > 0 and row["quant_cpu_seconds"] > 0
        assert row["spec"] == "fixed" and row["method_options"] is None
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
    (["--methods", "bdcnn:qbits=9"], ("point bdcnn-4[qbits=9]: --qbits must be an integer in "
                                      "2..8, not 9")),
    (["--methods", "fixed,bdcnn:basis=2/0"], "point bdcnn-0: --basis must be an integer in 1..8"),
    (["--methods", "bitmask:active=5:span=4"], ("point bitmask-5[span=4]: --active 5 is "
                                                "more than --span 4")),
    (["--methods", "ttq:nosuch=1"], ("ternary takes no option 'nosuch' (its options: variant, "
                                     "abits")),
    (["--methods", "bdcnn:range=dynamic"], "range must be one of static, sample"),
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


def test_method_specs():
    """``--methods``: methods with options of their own after colons, value lists expanded,
    ``twn``/``ttq`` as ternary's variants, canonical order and labels; the width key (bdcnn
    basis, bitmask active) replaces ``--bits``; one line naming the spec for bad ones."""
    from hwquant.errors import HwquantError
    from hwquant.quant.options import QuantOptions
    from hwquant.sweep import MethodSpec, parse_bit_specs, parse_method_specs, plan_points

    specs = parse_method_specs("fixed, bdcnn:qbits=4/6:basis=2/4, ttq, twn:scale=layer, "
                               "bitmask:span=6:active=3:same-pattern=yes, fixed, "
                               "binary:abits=1/2:alpha=channel, inq:retrain-epochs=3")
    assert [s.text for s in specs] == [
        "fixed", "bdcnn:basis=2:qbits=4", "bdcnn:basis=2:qbits=6", "bdcnn:basis=4:qbits=4",
        "bdcnn:basis=4:qbits=6", "ternary:variant=ttq", "ternary:variant=twn:scale=layer",
        "bitmask:active=3:span=6:same-pattern=yes", "binary:abits=1:alpha=channel",
        "binary:abits=2:alpha=channel", "inq:retrain-epochs=3"]
    assert specs[1] == MethodSpec("bdcnn", (("basis", 2), ("qbits", 4)))
    assert parse_method_specs(specs[7].text) == [specs[7]]  # the text reads back
    quants, points = plan_points(specs, parse_bit_specs("4,8"), ["min"])
    labels = [q.label for q in quants]
    assert labels == ["fixed-4", "fixed-8", "bdcnn-2[qbits=4]", "bdcnn-2[qbits=6]",
                      "bdcnn-4[qbits=4]", "bdcnn-4[qbits=6]", "ternary-2[variant=ttq]",
                      "ternary-2[variant=twn,scale=layer]",
                      "bitmask-3[span=6,same-pattern=yes]", "binary-1[abits=1,alpha=channel]",
                      "binary-1[abits=2,alpha=channel]", "inq-4[retrain-epochs=3]",
                      "inq-8[retrain-epochs=3]"]
    assert points[2].label == "bdcnn-2[qbits=4]/min"
    # The options land on the QuantOptions (retrain-epochs on its retraining).
    o = quants[3].spec.apply(QuantOptions(method="bdcnn", wbits=2))
    assert (o.wbits, o.abits) == (2, 6)
    o = quants[8].spec.apply(QuantOptions(method="bitmask", wbits=3))
    assert (o.span, o.same_pattern) == (6, True)
    o = quants[7].spec.apply(QuantOptions(method="ternary", wbits=2))
    assert (o.ternary, o.granularity) == ("twn", "layer")
    assert quants[-1].spec.apply(QuantOptions(method="inq")).retrain.epochs == 3
    assert quants[0].spec.apply(QuantOptions()) == QuantOptions()
    for text, message in [
            ("nosuch", "nosuch not among fixed, inq, ternary, binary, bitmask, bdcnn, twn, ttq"),
            ("bdcnn:qbits=x", "bdcnn:qbits=x: qbits must be an integer, not 'x'"),
            ("fixed:qbits=4", "fixed takes no option 'qbits' (its options: abits, scale"),
            ("bdcnn:range=dynamic", "range must be one of static, sample, not 'dynamic'"),
            ("bdcnn:basis", "options are KEY=VALUE after ':'"),
            ("bdcnn:basis=2:basis=4", "basis is given twice"),
            ("bitmask:same-pattern=1", "same-pattern must be yes or no"),
            ("twn:variant=ttq", "variant is given twice")]:
        with pytest.raises(HwquantError) as err:
            parse_method_specs(text)
        assert message in str(err.value) and "\n" not in str(err.value), (text, err.value)


def test_cache_keys():
    """One digest shape for every cache entry; a quantization's key follows every option
    (a method spec's too) but not the progress bar, a point's key its label and folding."""
    import dataclasses

    from hwquant import sweep
    from hwquant.quant.options import QuantOptions
    from hwquant.sweep import BitSpec, MethodSpec, Point, QuantPoint

    cache_key, point_key, quant_key = sweep.cache_key, sweep.point_key, sweep.quant_key

    key = cache_key("synth", "abc", "ice40", "v1")
    assert key.startswith("synth-") and len(key) == len("synth-") + 24
    assert key == cache_key("synth", "abc", "ice40", "v1") != cache_key("synth", "abc",
                                                                        "ecp5", "v1")
    base = QuantOptions(method="bdcnn", wbits=4, abits=6)

    def qk(opts, calib=256, version="v1"):
        return quant_key("m" * 64, {"name": "digits"}, opts, calib, 0, version)

    k = qk(base)
    assert k.startswith("q-") and k == qk(dataclasses.replace(base))
    quiet = dataclasses.replace(base, retrain=dataclasses.replace(base.retrain,
                                                                  progress=False))
    assert qk(quiet) == k
    spec = MethodSpec("bdcnn", (("basis", 4), ("qbits", 4)))
    assert qk(spec.apply(base)) != k
    for other in (dataclasses.replace(base, range_mode="sample"),
                  dataclasses.replace(base, coef_bits=6), dataclasses.replace(base, restarts=2)):
        assert qk(other) != k
    assert qk(base, calib=128) != k and qk(base, version="v2") != k
    q = QuantPoint(spec, BitSpec(4))
    pk = point_key(k, Point(q, "min"), {"id": "icebreaker"}, 0.7, False, False, 1, "v1")
    assert pk.startswith("p-")
    assert pk != point_key(k, Point(q, "max"), {"id": "icebreaker"}, 0.7, False, False, 1,
                           "v1")
    other = QuantPoint(MethodSpec("bdcnn", (("basis", 4), ("qbits", 6))), BitSpec(4))
    assert pk != point_key(k, Point(other, "min"), {"id": "icebreaker"}, 0.7, False, False, 1,
                           "v1")
    # The nextpnr seed matters only with --place.
    assert pk == point_key(k, Point(q, "min"), {"id": "icebreaker"}, 0.7, False, False, 7, "v1")
    assert pk != point_key(k, Point(q, "min"), {"id": "icebreaker"}, 0.7, False, True, 7, "v1")


def _processes_mentioning(text) -> list:
    """Pids whose command line contains ``text`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.mark.slow
def test_sweep_sigterm_while_waiting_for_ray_exits_143_and_keeps_finished_points(tiny_pt2,
                                                                                  tmp_path):
    """SIGTERM to a real ``hwquant sweep`` while it waits in ``ray.wait`` (one point done,
    the other hanging): exit 143 as every command (not 130, which Ray's wait would turn it
    into), ``interrupted`` as the last line, ``sweep.json`` interrupted with the finished
    point, that point in the cache, and no process of its Ray instance left."""
    import signal
    import subprocess
    import sys
    import tempfile

    pytest.importorskip("ray")
    from hwquant.sweep import FAIL_ENV

    out = tmp_path / "sw"
    ray_tmp = tempfile.mkdtemp(prefix="hwqray")  # short: Ray's socket paths live under it
    env = dict(os.environ, RAY_TMPDIR=ray_tmp, **{FAIL_ENV: f"hang:fixed-8/{FOLD}"})
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parent.parent),
                                         *filter(None, env.get("PYTHONPATH", "").split(
                                             os.pathsep))])
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen([sys.executable, "-m", "hwquant.cli", "sweep", str(tiny_pt2),
                                 "--methods", "fixed", "--bits", "8", "--fold", "min", "--fold",
                                 FOLD, "--workers", "2", "--quiet", "-o", str(out)],
                                stderr=subprocess.PIPE, env=env, cwd=tmp_path)
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        deadline = time.monotonic() + 240
        done = 0
        while done < 1 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
            try:
                done = json.loads((out / "sweep.json").read_text())["counts"]["done"]
            except (OSError, ValueError, KeyError):
                pass
        assert done == 1, proc.poll()
        time.sleep(1.0)  # in ray.wait's loop, the hanging point in flight
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    err = err.decode()
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == "interrupted" and "Traceback" not in err, err
    report = json.loads((out / "sweep.json").read_text())
    assert report["status"] == "interrupted"
    assert [(r["label"], r["status"]) for r in report["points"]] == [("fixed-8/min", "ok")]
    assert len(list((out / "cache" / "points").iterdir())) == 1
    deadline = time.monotonic() + 20
    while _processes_mentioning(ray_tmp) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _processes_mentioning(ray_tmp) == []


@pytest.mark.slow
def test_sweep_runs_every_method_with_its_options(tiny_pt2, tmp_path):
    """bdcnn at two Q, bitmask, TTQ, binary and INQ (the last three retrained on the training
    split) in one sweep on two workers: every point completes, each quantization is its own
    cache entry with its spec's options, the labels carry them; a re-run is all cached."""
    pytest.importorskip("ray")
    out = tmp_path / "sw"
    argv = ["sweep", str(tiny_pt2), "--methods",
            "bdcnn:basis=2:qbits=4/6:restarts=1,bitmask:active=3:search-budget=5,ttq,binary,inq",
            "--bits", "4", "--retrain-epochs", "1", "--fold", "min", "--workers", "2",
            "--quiet", "-o", str(out)]
    assert main(argv) == 0
    report = json.loads((out / "sweep.json").read_text())
    rows = {r["label"]: r for r in report["points"]}
    assert list(rows) == ["bdcnn-2[qbits=4,restarts=1]/min", "bdcnn-2[qbits=6,restarts=1]/min",
                          "bitmask-3[search-budget=5]/min", "ternary-2[variant=ttq]/min",
                          "binary-1/min", "inq-4/min"]
    assert all(r["status"] == "ok" for r in rows.values()), rows
    assert report["methods"] == ["bdcnn:basis=2:qbits=4:restarts=1",
                                 "bdcnn:basis=2:qbits=6:restarts=1",
                                 "bitmask:active=3:search-budget=5", "ternary:variant=ttq",
                                 "binary", "inq"]
    assert {r["schedule"] for r in rows.values() if r["method"] in ("ternary", "binary")} == \
        {"simple"} and rows["inq-4/min"]["schedule"] == "incremental"
    assert rows["bdcnn-2[qbits=4,restarts=1]/min"]["method_options"] == \
        {"basis": 2, "qbits": 4, "restarts": 1}
    metas = [json.loads((d / "quant.json").read_text())
             for d in (out / "cache" / "quant").iterdir()]
    assert len(metas) == 6
    bd = sorted((m["options"]["basis"], m["options"]["qbits"], m["options"]["restarts"])
                for m in metas if m["options"]["method"] == "bdcnn")
    assert bd == [(2, 4, 1), (2, 6, 1)]
    assert {m["options"].get("ternary") for m in metas} >= {"ttq"}
    assert [m["options"]["retrain"]["epochs"] for m in metas if "retrain" in m["options"]] \
        == [1, 1, 1]
    assert main(argv) == 0
    again = json.loads((out / "sweep.json").read_text())
    assert again["counts"]["cached"] == 6 and "ray" not in again
