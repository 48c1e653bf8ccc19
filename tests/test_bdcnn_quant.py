"""The ``bdcnn`` kind's golden model (AND-popcount form = ``W @ X``), IR validation, and
``quantize --method bdcnn`` on the digits default (golden accuracy, fake-quant tie, bad input)."""

import json

import numpy as np
import pytest
from flows import assert_integer_faces_agree, quantize_bdcnn
from netbuilders import random_bdcnn_layer

from hwquant import golden, hwq, ir
from hwquant.bdcnn import basis_bits
from hwquant.cli import main
from hwquant.golden import bdcnn as gbd
from hwquant.golden.exact import int64_only


@pytest.mark.parametrize("fmt", [ir.ActFormat(3, True, 0), ir.ActFormat(3, False, 0),
                                 ir.ActFormat(2, True, 1)], ids=["signed", "unsigned", "q2"])
@pytest.mark.parametrize("seed", range(3))
def test_and_popcount_form_equals_the_product(fmt, seed):
    """Random inputs and the extremes, incl. negative inputs where the offset term
    ``lo * sum W`` matters."""
    rng = np.random.default_rng(seed)
    layer = random_bdcnn_layer(rng, fmt, conv=False, k=int(rng.integers(1, 5)))
    x = rng.integers(fmt.lo, fmt.hi + 1, size=(500, layer.fan_in))
    x[:2] = [fmt.lo] * layer.fan_in, [fmt.hi] * layer.fan_in
    with int64_only():
        got = gbd.dot(layer, x)
    np.testing.assert_array_equal(got, x @ layer.weight_matrix().T)


def test_padded_conv_with_negative_input_through_the_golden_network():
    """Padding inserts code 0 (value 0, q = -lo): reference (AND-popcount) and fast paths agree
    with a plain convolution."""
    rng = np.random.default_rng(5)
    fmt = ir.ActFormat(4, True, 2)
    layer = random_bdcnn_layer(rng, fmt, oc=4, ic=2, k=3, padding=1)
    net = ir.Network("n", (2, 4, 4), fmt, (layer,))
    x = rng.integers(fmt.lo, fmt.hi + 1, size=(6, 2, 4, 4))
    with int64_only():
        ref = golden.run(net, x)["l"]
    fast = golden.run(net, x)["l"]
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    want = np.einsum("nchwij,ocij->nohw",
                     np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(2, 3)),
                     layer.weight)
    np.testing.assert_array_equal(ref, want)
    np.testing.assert_array_equal(fast, want)


def test_canonical_bits_rebuild_the_weights():
    rng = np.random.default_rng(0)
    layer = random_bdcnn_layer(rng, ir.ActFormat(3, False, 0), conv=False, k=4)
    c = gbd.coefficients_of(layer)
    m = basis_bits(layer.weight_matrix(), c)
    np.testing.assert_array_equal(np.einsum("nk,nkd->nd", c, 2 * m - 1), layer.weight_matrix())


def test_kind_data_is_validated():
    rng = np.random.default_rng(1)
    good = random_bdcnn_layer(rng, ir.ActFormat(3, False, 0), conv=False, k=2)
    with pytest.raises(ValueError, match=r"^Layer 'l': weight \d+ of row 0 is no signed sum"):
        w = good.weight.copy()
        w[0, 0] = int(np.abs(gbd.coefficients_of(good)[0]).sum()) + 1
        ir.Linear(**{**_fields(good), "weight": w})
    with pytest.raises(ValueError, match=r"^Layer 'l': bdcnn with 4 bit planes reads a 4-bit"):
        ir.Linear(**{**_fields(good), "kind_data": ir.BdcnnData(
            basis=2, qbits=4, coef_bits=4, coefficients=good.kind_data.coefficients)})


def _fields(layer):
    return {k: getattr(layer, k) for k in ("name", "inputs", "in_format", "weight",
                                           "weight_bits", "weight_frac", "bias", "epilogue",
                                           "out_format", "encoding", "kind_data")}


def test_default_cnn_k6_q6_within_two_points_and_fake_quant_tie(trained_default_pt2, digits,
                                                                tmp_path):
    code, out, rep = quantize_bdcnn(trained_default_pt2, tmp_path, "--basis", "6",
                                    "--qbits", "6")
    assert code == 0
    report = json.loads(rep.read_text())
    acc = report["accuracy"]
    assert acc["quantized"] >= acc["float"] - 0.02
    net = hwq.load(out)
    for layer in net.weight_layers:
        assert layer.encoding == "bdcnn" and layer.kind_data.basis == 6
        assert layer.in_format.bits == 6 and layer.kind_data.coef_bits == 8
    x = np.asarray(digits.x_test[:16])
    assert_integer_faces_agree(net, x)


@pytest.mark.parametrize("args,message", [
    (["--basis", "9"], "error: --basis must be an integer in 1..8, not 9"),
    (["--basis", "0"], "error: --basis must be an integer in 1..8, not 0"),
    (["--qbits", "1"], "error: --qbits must be an integer in 2..8, not 1"),
    (["--coef-bits", "17"], "error: --coef-bits must be an integer in 2..16, not 17"),
    (["--coef-bits", "1"], "error: --coef-bits must be an integer in 2..16, not 1"),
    (["--basis", "8", "--restarts", "1"], None),
])
def test_bad_input_one_error_line_exit_2_nothing_written(trained_default_pt2, tmp_path,
                                                         capsys, args, message):
    code, out, rep = quantize_bdcnn(trained_default_pt2, tmp_path, *args)
    err = capsys.readouterr().err.strip().splitlines()
    if message is None:  # K = 8 < D = 9 of conv1: allowed
        assert code == 0
        return
    assert code == 2
    assert len(err) == 1 and err[0].startswith(message), err
    assert not out.exists() and not rep.exists()


def test_compare_grid_accuracy_and_stored_bits(trained_default_pt2, tmp_path, capsys):
    """``compare --methods bdcnn``: one golden-model run per K x Q, the size from the stored
    bits (K * (D + coef_bits) per neuron against 32 * D), Markdown grids and a PNG."""
    out = tmp_path / "grid"
    assert main(["compare", str(trained_default_pt2), "--methods", "bdcnn", "--basis", "2,4",
                 "--qbits", "3,5", "--restarts", "1", "--coef-bits", "6", "--quiet",
                 "-o", str(out)]) == 0
    report = json.loads((out / "compare.json").read_text())
    rows = report["rows"]
    assert [(r["wbits"], r["abits"]) for r in rows] == [(2, 3), (2, 5), (4, 3), (4, 5)]
    assert report["bdcnn"] == {"coef_bits": 6, "restarts": 1, "range": "static"}
    fan = {la.name: la.fan_in for la in hwq.load(_one_bdcnn(trained_default_pt2,
                                                            tmp_path)).weight_layers}
    for r in rows:
        assert r["delta"] == pytest.approx(r["accuracy"] - report["float_accuracy"])
        assert r["options"]["basis"] == r["wbits"] and r["options"]["qbits"] == r["abits"]
        size = r["size"]
        k = r["wbits"]
        for layer in size["layers"]:
            d = fan[layer["name"]]
            oc = layer["float_bits"] // (32 * d)
            assert layer["bits"] == oc * k * (d + 6)
        assert size["bits"] == sum(la["bits"] for la in size["layers"])
        assert size["compression"] == pytest.approx(1 - size["bits"] / size["float_bits"])
    # More bases: more bits; Q does not change the size.
    assert rows[0]["size"] == rows[1]["size"] and rows[2]["size"]["bits"] > rows[0]["size"][
        "bits"]
    md = (out / "compare.md").read_text()
    assert "| K \\ Q | 3 | 5 |" in md and "Retraining per phase" not in md
    assert f"{rows[3]['accuracy']:.2%} ({rows[3]['delta'] * 100:+.2f})" in md
    assert (out / "compare.png").read_bytes()[:4] == b"\x89PNG"


def _one_bdcnn(model, tmp_path):
    code, out, _ = quantize_bdcnn(model, tmp_path, "--basis", "2", "--restarts", "1")
    assert code == 0
    return out


def _compare(model, tmp_path, *args):
    out = tmp_path / "cmp"
    try:
        code = main(["compare", str(model), "--quiet", "-o", str(out), *args])
    except SystemExit as exc:
        code = exc.code
    return code, out


@pytest.mark.parametrize("args,message", [
    (["--methods", "bdcnn", "--basis", "2,9"], "error: --basis must be an integer in 1..8, not 9"),
    (["--methods", "bdcnn", "--qbits", "1"], "error: --qbits must be an integer in 2..8, not 1"),
    (["--methods", "fixed", "--qbits", "4", "--bits", "4", "--schedules", "none"],
     "error: --qbits apply to --methods bdcnn"),
    (["--methods", "fixed", "--range", "sample", "--bits", "4", "--schedules", "none"],
     "error: --range apply to --methods bdcnn"),
])
def test_compare_grid_bad_input(trained_default_pt2, tmp_path, capsys, args, message):
    code, out = _compare(trained_default_pt2, tmp_path, *args)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith(message), err
    assert not out.exists()


@pytest.fixture(scope="module")
def narrow_pt2(digits, tmp_path_factory):
    """A model whose first layer has D = 4 weights per neuron (a 2x2 conv on one channel)."""
    import torch
    from torch import nn

    from hwquant.train import export_model

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 2), nn.ReLU(), nn.Flatten(), nn.Linear(196, 10))
    path = tmp_path_factory.mktemp("narrow") / "narrow.pt2"
    export_model(model.eval(), torch.tensor(digits.x_test[:2]), path)
    return path


def test_compare_grid_refuses_basis_not_below_fan_in_before_any_run(narrow_pt2, tmp_path,
                                                                    capsys, monkeypatch):
    import hwquant.flow

    def no_run(*args, **kwargs):
        raise AssertionError("a grid cell ran before the grid was checked")

    monkeypatch.setattr(hwquant.flow, "quantize_model", no_run)
    code, out = _compare(narrow_pt2, tmp_path, "--methods", "bdcnn", "--basis", "2,4",
                         "--qbits", "4")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and not out.exists()
    assert err == [("error: Layer 'conv2d_0': K=4 bases must be fewer than the 4 weights of "
                    "each neuron (K < D); use --basis 3 or less")], err


def test_basis_not_below_fan_in_names_the_layer(narrow_pt2, tmp_path, capsys):
    code, out, rep = quantize_bdcnn(narrow_pt2, tmp_path, "--basis", "4")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and not out.exists() and not rep.exists()
    assert err == [("error: Layer 'conv2d_0': K=4 bases must be fewer than the 4 weights of "
                    "each neuron (K < D); use --basis 3 or less")], err


def test_layer_too_large_to_decompose(trained_default_pt2, tmp_path, capsys, monkeypatch):
    """The memory bound (lowered here so the digits model's fc exceeds it): one line naming
    the layer, exit 2, no output."""
    from hwquant import bdcnn

    conv2 = bdcnn.decomposition_bytes(32, 144, 6)
    monkeypatch.setattr(bdcnn, "MEMORY_LIMIT", conv2 // 2)
    assert bdcnn.decomposition_bytes(16, 9, 6) < conv2 // 2  # conv1 still fits
    code, out, rep = quantize_bdcnn(trained_default_pt2, tmp_path, "--basis", "6")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and not out.exists() and not rep.exists()
    assert err == [("error: Layer 'conv2': decomposing 32 neurons of 144 weights at K=6 "
                    "needs about 344.0 KiB, more than the 172.0 KiB limit")], err
