"""The ``bdcnn`` kind's golden model (AND-popcount form = ``W @ X``), IR validation, and
``quantize --method bdcnn`` on the digits default (golden accuracy, fake-quant tie, bad input)."""

import json

import numpy as np
import pytest

from hwquant import golden, hwq, ir
from hwquant.bdcnn import basis_bits, sign_patterns
from hwquant.cli import main
from hwquant.golden import bdcnn as gbd
from hwquant.golden.exact import int64_only
from hwquant.quant.fakequant import FakeQuantNetwork


def _random_layer(rng, fmt, *, oc=3, ic=2, k=2, conv=True, padding=1):
    c = rng.integers(-8, 8, size=(oc, k))
    shape = (oc, ic, 3, 3) if conv else (oc, ic * 9)
    pat = rng.integers(0, 1 << k, size=(oc, int(np.prod(shape[1:]))))
    w = np.take_along_axis(c @ sign_patterns(k).T, pat, axis=1).reshape(shape)
    data = ir.BdcnnData(basis=k, qbits=fmt.bits, coef_bits=4,
                        coefficients=tuple(map(tuple, c.tolist())))
    common = {"name": "l", "inputs": ("input",), "in_format": fmt, "weight": w,
              "weight_bits": 8, "weight_frac": 0, "bias": np.zeros(oc, dtype=np.int64),
              "epilogue": ir.Logits(), "out_format": ir.ActFormat(24, True, 0),
              "encoding": "bdcnn", "kind_data": data}
    if conv:
        return ir.Conv2d(in_shape=(ic, 4, 4), padding=(padding, padding), **common)
    return ir.Linear(**common)


@pytest.mark.parametrize("fmt", [ir.ActFormat(3, True, 0), ir.ActFormat(3, False, 0),
                                 ir.ActFormat(2, True, 1)], ids=["signed", "unsigned", "q2"])
@pytest.mark.parametrize("seed", range(3))
def test_and_popcount_form_equals_the_product(fmt, seed):
    """Random inputs and the extremes, incl. negative inputs where the offset term
    ``lo * sum W`` matters."""
    rng = np.random.default_rng(seed)
    layer = _random_layer(rng, fmt, conv=False, k=int(rng.integers(1, 5)))
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
    layer = _random_layer(rng, fmt, oc=4, ic=2, k=3, padding=1)
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
    layer = _random_layer(rng, ir.ActFormat(3, False, 0), conv=False, k=4)
    c = gbd.coefficients_of(layer)
    m = basis_bits(layer.weight_matrix(), c)
    np.testing.assert_array_equal(np.einsum("nk,nkd->nd", c, 2 * m - 1), layer.weight_matrix())


def test_kind_data_is_validated():
    rng = np.random.default_rng(1)
    good = _random_layer(rng, ir.ActFormat(3, False, 0), conv=False, k=2)
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


def _quantize(model, tmp_path, *args):
    out, rep = tmp_path / "n.hwq", tmp_path / "q.json"
    code = main(["quantize", str(model), "--method", "bdcnn", *args, "--quiet",
                 "-o", str(out), "--json", str(rep)])
    return code, out, rep


def test_default_cnn_k6_q6_within_two_points_and_fake_quant_tie(trained_default_pt2, digits,
                                                                tmp_path):
    code, out, rep = _quantize(trained_default_pt2, tmp_path, "--basis", "6", "--qbits", "6")
    assert code == 0
    report = json.loads(rep.read_text())
    acc = report["accuracy"]
    assert acc["quantized"] >= acc["float"] - 0.02
    net = hwq.load(out)
    for layer in net.weight_layers:
        assert layer.encoding == "bdcnn" and layer.kind_data.basis == 6
        assert layer.in_format.bits == 6 and layer.kind_data.coef_bits == 8
    x = np.asarray(digits.x_test[:16])
    x_int = np.clip(np.floor(x * 2.0 ** net.input_format.frac + 0.5).astype(np.int64),
                    net.input_format.lo, net.input_format.hi)
    gold = golden.run(net, x_int)
    with int64_only():
        ref = golden.run(net, x_int)
    fq = FakeQuantNetwork(net).integer_outputs(x_int)
    for name in gold:
        np.testing.assert_array_equal(fq[name], gold[name], err_msg=name)
        np.testing.assert_array_equal(ref[name], gold[name], err_msg=name)


@pytest.mark.parametrize("args,message", [
    (["--basis", "9"], "error: --basis must be an integer in 1..8, not 9"),
    (["--basis", "0"], "error: --basis must be an integer in 1..8, not 0"),
    (["--qbits", "1"], "error: --qbits must be an integer in 2..8, not 1"),
    (["--coef-bits", "17"], "error: --coef-bits must be an integer in 2..16, not 17"),
    (["--range", "sample"], "error: --range must be static"),
    (["--basis", "8", "--restarts", "1"], None),
])
def test_bad_input_one_error_line_exit_2_nothing_written(trained_default_pt2, tmp_path,
                                                         capsys, args, message):
    code, out, rep = _quantize(trained_default_pt2, tmp_path, *args)
    err = capsys.readouterr().err.strip().splitlines()
    if message is None:  # K = 8 < D = 9 of conv1: allowed
        assert code == 0
        return
    assert code == 2
    assert len(err) == 1 and err[0].startswith(message), err
    assert not out.exists() and not rep.exists()
