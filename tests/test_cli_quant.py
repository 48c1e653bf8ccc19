"""``quantize --method inq|ternary`` and ``compare`` on the command line: reports, bad input
(exit 2, one clear line, nothing written)."""

import json
import re

import numpy as np
import pytest
import torch
from torch import nn

from hwquant import hwq
from hwquant.cli import main
from hwquant.train import export_model


def _run(argv) -> int:
    """Exit status of ``hwquant argv`` (argparse's own usage errors raise SystemExit)."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


def _export(module, digits, path):
    export_model(module.eval(), torch.tensor(digits.x_test[:2]), path)
    return path


@pytest.fixture(scope="module")
def odd_models(digits, tmp_path_factory):
    """A model whose second layer has all-zero weights, and one without weight layers."""
    root = tmp_path_factory.mktemp("odd_models")
    torch.manual_seed(0)
    zero = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(256, 10))
    with torch.no_grad():
        zero[3].weight.zero_()
    none = nn.Sequential(nn.MaxPool2d(2), nn.Flatten())
    return {"zero": _export(zero, digits, root / "zero.pt2"),
            "none": _export(none, digits, root / "none.pt2")}


@pytest.mark.parametrize("extra, message", [
    (["--method", "inq", "--bits", "9"], r"Weight width for inq must be an integer in 2\.\.8"),
    (["--method", "inq", "--bits", "1"], (r"Weight width for inq must be an integer in 2\.\.8, "
                                          r"not 1")),
    (["--method", "fixed", "--bits", "0"], r"--bits/--wbits: must be in 1\.\.16"),
    (["--method", "ternary", "--bits", "4"], r"Ternary weights have 2 bits"),
    (["--method", "inq", "--portions", "0.5,0.4,1.0"], r"Portions must increase strictly"),
    (["--method", "inq", "--portions", "0.5,0.75"], r"end at 1\.0"),
    (["--method", "inq", "--portions", "half,1"], r"comma-separated numbers"),
    (["--model", "zero", "--method", "inq"], r"Layer 'linear_3': all weights are zero"),
    (["--model", "none", "--method", "inq"], r"no weight layers"),
    (["--model", "none"], r"no weight layers"),
])
def test_quantize_bad_input_exits_2_and_writes_nothing(extra, message, trained_default_pt2,
                                                       odd_models, tmp_path, capsys):
    model = trained_default_pt2
    if extra[0] == "--model":
        model, extra = odd_models[extra[1]], extra[2:]
    out = tmp_path / "net.hwq"
    assert _run(["quantize", str(model), *extra, "--quiet", "-o", str(out),
                 "--json", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert err.strip().splitlines()[-1].startswith(("error: ", "usage:", "hwquant quantize:"))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("method, bits, extra", [
    ("inq", 4, ["--partition", "random", "--portions", "0.5,1.0"]),
    ("ternary", 2, ["--scale", "channel", "--edge-layers", "same"]),
    ("ternary", 2, ["--ternary", "ttq", "--schedule", "layerwise", "--edge-layers", "same"]),
])
def test_quantize_pow2_methods(method, bits, extra, trained_default_pt2, tmp_path, capsys):
    out, rep = tmp_path / "net.hwq", tmp_path / "r.json"
    assert main(["quantize", str(trained_default_pt2), "--method", method, "--bits", str(bits),
                 "--retrain-epochs", "2", "--quiet", *extra, "-o", str(out),
                 "--json", str(rep)]) == 0
    report = json.loads(rep.read_text())
    assert report["method"] == method and report["wbits"] == bits
    assert report["accuracy"]["quantized"] > 0.9
    net = hwq.load(out)
    for layer in net.weight_layers:
        assert layer.encoding == "pow2" and layer.weight_bits == bits
        assert len(np.unique(layer.weight)) <= 2 ** (bits - 1) + 1
    assert net.metadata["quantization"]["schedule"] == report["schedule"]


def test_compare_writes_json_markdown_and_plot(trained_default_pt2, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", str(trained_default_pt2), "--methods", "fixed,inq,ternary",
                 "--bits", "3,4", "--schedules", "simple,incremental", "--retrain-epochs", "1",
                 "--quiet", "-o", str(out)]) == 0
    report = json.loads((out / "compare.json").read_text())
    combos = [(r["method"], r["wbits"], r["schedule"]) for r in report["rows"]]
    assert combos == [("fixed", 3, "simple"), ("fixed", 3, "incremental"),
                      ("fixed", 4, "simple"), ("fixed", 4, "incremental"),
                      ("inq", 3, "simple"), ("inq", 3, "incremental"),
                      ("inq", 4, "simple"), ("inq", 4, "incremental"),
                      ("ternary", 2, "simple"), ("ternary", 2, "incremental")]
    for r in report["rows"]:
        assert 0 < r["accuracy"] <= 1
        assert r["delta"] == pytest.approx(r["accuracy"] - report["float_accuracy"])
    md = (out / "compare.md").read_text()
    assert "| method | bits | simple | incremental |" in md and "| inq | 4 |" in md
    assert (out / "compare.png").read_bytes()[:4] == b"\x89PNG"
    assert "| ternary | 2 |" in capsys.readouterr().err


def test_compare_rejects_bad_combination_before_running(trained_default_pt2, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert _run(["compare", str(trained_default_pt2), "--methods", "inq", "--bits", "4,9",
                 "-o", str(out)]) == 2
    assert "Weight width for inq must be an integer in 2..8, not 9" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def small_conv_pt2(digits, tmp_path_factory):
    """An untrained two-conv model (the report's structure, not its accuracy)."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(4, 6, 3), nn.ReLU(), nn.Flatten(), nn.Linear(24, 10))
    return _export(model, digits, tmp_path_factory.mktemp("small_conv") / "small.pt2")


def test_compare_bitmask_rows_patterns_and_histograms(small_conv_pt2, tmp_path, capsys):
    """``compare --methods bitmask``: plain / same-pattern / per-layer per active width, the
    patterns each used (plain: contiguous), the search's ordering on its own split, one
    histogram per conv layer, and a table of its own in the Markdown."""
    from hwquant.bitmask import parse

    out = tmp_path / "masks"
    assert main(["compare", str(small_conv_pt2), "--methods", "bitmask", "--bits", "2",
                 "-o", str(out)]) == 0
    report = json.loads((out / "compare.json").read_text())
    rows = {r["schedule"]: r for r in report["rows"]}
    assert list(rows) == ["plain", "same-pattern", "per-layer"]
    for row in rows.values():
        assert set(row["patterns"]) == {"conv2d_0", "conv2d_3"}  # the conv layers
        assert all(parse(p).bits == 2 for p in row["patterns"].values())
    for p in rows["plain"]["patterns"].values():  # contiguous active bits
        active = parse(p).active
        assert active == tuple(range(active[0], active[-1] + 1)), p
    assert len(set(rows["same-pattern"]["patterns"].values())) == 1
    # The per-layer search starts from the best single mask: never worse on its split.
    assert rows["per-layer"]["calibration_accuracy"] >= rows["same-pattern"][
        "calibration_accuracy"]
    assert sorted(report["bitmask"]["histograms"]) == ["bitmask_m2_conv2d_0.png",
                                                         "bitmask_m2_conv2d_3.png"]
    for name in report["bitmask"]["histograms"]:
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    md = (out / "compare.md").read_text()
    assert "| m | plain | same-pattern | per-layer |" in md and "Retraining per phase" not in md
