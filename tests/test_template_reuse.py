"""The computation-reuse statistic (:mod:`hwquant.reuse`): exact counts against a brute-force
loop, the study's 777,600-multiplication shape with and without templates, and the CLI."""

import json
import time
from collections import Counter

import numpy as np
import pytest

from hwquant.cli import main
from hwquant.reuse import BINS, layer_reuse, pair_counts, reuse_histogram
from hwquant.templates import template_kernel


def brute_force(w, x, stride, padding):
    oc, c, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (padding, padding), (padding, padding)))
    ho = (xp.shape[1] - kh) // stride + 1
    wo = (xp.shape[2] - kw) // stride + 1
    pairs = Counter()
    for o in range(oc):
        for ci in range(c):
            for p in range(kh):
                for q in range(kw):
                    for i in range(ho):
                        for j in range(wo):
                            pairs[(w[o, ci, p, q], xp[ci, i * stride + p, j * stride + q])] += 1
    return sorted(pairs.values())


@pytest.mark.parametrize("stride, padding", [(1, 0), (2, 1)])
def test_counts_equal_brute_force(stride, padding):
    rng = np.random.default_rng(0)
    w = rng.integers(-2, 3, (4, 2, 3, 3))
    x = rng.integers(0, 4, (2, 6, 5))
    assert sorted(pair_counts(w, x, stride=(stride,) * 2, padding=(padding,) * 2).tolist()) == \
        brute_force(w, x, stride, padding)


def test_histogram_bins():
    counts = np.array([1, 5, 6, 10, 11, 50, 51, 100, 101, 500, 501, 1000, 1001, 5000, 5001,
                       10000, 10001, 99999])
    h = reuse_histogram(counts)
    assert h["histogram"] == [2] * len(BINS) and h["distinct"] == len(counts)
    assert h["total"] == counts.sum()


def test_study_shape_fraction_falls_with_templates_and_fixed8():
    """A random-weights 32x3x3x3 conv over 32x32x3 images of 8-bit pixels (k/255):
    777,600 multiplications per image, in well under a second each."""
    rng = np.random.default_rng(0)
    w = rng.normal(0, 1 / np.sqrt(27), (32, 3, 3, 3)).astype(np.float32)
    x = (rng.integers(0, 256, (2, 3, 32, 32)) / 255).astype(np.float32)
    start = time.perf_counter()
    plain = layer_reuse(w, x, precisions=("float32", "fixed8"))
    tw = w.copy()
    for k in range(25):
        tw[k] = template_kernel(k, 3)
    tpl = layer_reuse(tw, x, precisions=("float32", "fixed8"))
    assert time.perf_counter() - start < 20
    assert plain["float32"]["total"] == 777_600
    assert plain["float32"]["distinct"] == sum(plain["float32"]["histogram"])
    f32, t32, t8 = (plain["float32"]["fraction"], tpl["float32"]["fraction"],
                    tpl["fixed8"]["fraction"])
    assert f32 > 0.2 and t32 < f32 / 3 and t8 < t32
    # the template multiplications use two weight values: the high-count bins fill
    assert sum(tpl["float32"]["histogram"][5:]) > 100
    assert sum(plain["float32"]["histogram"][5:]) == 0


def test_cli_tables_and_errors(trained_default_pt2, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["reuse", str(trained_default_pt2), "--images", "2", "--templates", "8",
                 "--precision", "float32,fixed8", "--json", str(out)]) == 0
    rep = json.loads(out.read_text())
    cols = rep["columns"]
    assert rep["layer"] == "conv1" and len(rep["image_indices"]) == 2
    assert set(cols) == {"float32 (as given)", "fixed8 (as given)", "float32 (8 templates)",
                         "fixed8 (8 templates)"}
    assert cols["float32 (as given)"]["total"] == 16 * 9 * 64
    assert cols["float32 (8 templates)"]["fraction"] < cols["float32 (as given)"]["fraction"]
    assert "| distinct / total |" in capsys.readouterr().err
    for argv, message in [
        (["--precision", "float64"], ("--precision 'float64' is not one of float32, "
                                      "float16, fixed8")),
        (["--layer", "nope"], "--layer nope is not a weight layer of the model"),
        (["--layer", "fc", "--templates", "2"], "templates need a 3x3 conv layer"),
        (["--templates", "17"], "--templates 17 is more than 16"),
    ]:
        bad = tmp_path / "bad.json"
        assert main(["reuse", str(trained_default_pt2), "--images", "1", *argv,
                     "--json", str(bad)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err, err
        assert not bad.exists()
