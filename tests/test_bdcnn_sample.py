"""The per-sample range of the ``bdcnn`` kind (``--range sample``): the quantization
sub-layer's reciprocal form is the exact rounded division, the layer's ACC is ``RHU(W . z)``
of the values the codes stand for (exact zero padding), golden = fake-quant = int64 path, and
the digits default within two points of float."""

import json
from fractions import Fraction

import numpy as np
import pytest
from flows import assert_integer_faces_agree, quantize_bdcnn
from netbuilders import sample_bdcnn_layer

from hwquant import golden, hwq, ir
from hwquant.golden import bdcnn as gbd
from hwquant.golden.exact import int64_only
from hwquant.quant.fakequant import FakeQuantNetwork


@pytest.mark.parametrize("qbits", range(2, 9))
def test_reciprocal_quantizer_is_the_exact_rounded_division(qbits):
    """Every 8-bit range R and offset X - m: ((X - m) * ceil(L 2^S / R) + 2^(S-1)) >> S is
    floor((X - m) L / R + 1/2); R = 0 gives 0."""
    fmt = ir.ActFormat(8, False, 0)
    layer = sample_bdcnn_layer(np.random.default_rng(0), fmt, qbits, conv=False)
    top = (1 << qbits) - 1
    r = np.repeat(np.arange(256), 256)
    d = np.tile(np.arange(256), 256)
    keep = d <= r
    r, d = r[keep], d[keep]
    # One sample per (R, X - m): a map holding 0, R and R - d ... (only its min and max
    # matter), read back at the position of X = d.
    x = np.zeros((len(r), layer.fan_in), dtype=np.int64)
    x[:, 1], x[:, 2] = r, d
    q, m, rr = gbd.sample_codes(layer, x)
    np.testing.assert_array_equal(m, 0)
    np.testing.assert_array_equal(rr, r)
    want = np.where(r > 0, (2 * d * top + r) // (2 * np.maximum(r, 1)), 0)
    np.testing.assert_array_equal(q[:, 2], want)
    assert q.min() >= 0 and q.max() <= top


def _exact_acc(layer, x):
    """RHU(W . z) with z = m + q R / L in Fractions, zero padding, for (N, C, H, W) input."""
    q, m, r = gbd.sample_codes(layer, x)
    top = (1 << layer.kind_data.qbits) - 1
    (kh, kw), (ph, pw) = layer.kernel, layer.padding
    n, c, h, w = x.shape
    out = np.zeros((n, layer.out_channels, h + 2 * ph - kh + 1, w + 2 * pw - kw + 1),
                   dtype=np.int64)
    for s in range(n):
        z = [[[Fraction(int(m[s])) + Fraction(int(q[s, ch, i, j]) * int(r[s]), top)
               for j in range(w)] for i in range(h)] for ch in range(c)]
        for o in range(out.shape[1]):
            for i in range(out.shape[2]):
                for j in range(out.shape[3]):
                    acc = Fraction(0)
                    for ch in range(c):
                        for a in range(kh):
                            for b in range(kw):
                                y, xx = i + a - ph, j + b - pw
                                if 0 <= y < h and 0 <= xx < w:
                                    acc += int(layer.weight[o, ch, a, b]) * z[ch][y][xx]
                    out[s, o, i, j] = int(np.floor(acc + Fraction(1, 2)))
    return out


@pytest.mark.parametrize("fmt,qbits", [(ir.ActFormat(8, False, 3), 4),
                                       (ir.ActFormat(6, True, 2), 3)], ids=["u8q4", "s6q3"])
def test_padded_conv_is_the_rounded_exact_value(fmt, qbits):
    """Golden (reference and fast entry) and fake-quant equal RHU(W . z) in exact
    arithmetic, padded taps 0; one sample constant (R = 0)."""
    rng = np.random.default_rng(qbits)
    layer = sample_bdcnn_layer(rng, fmt, qbits, oc=3, ic=2, k=3, padding=1)
    net = ir.Network("n", (2, 4, 4), fmt, (layer,))
    x = rng.integers(fmt.lo, fmt.hi + 1, size=(5, 2, 4, 4))
    x[0] = fmt.hi  # R = 0
    x[1, 0, 0, 0], x[1, 1, 3, 3] = fmt.lo, fmt.hi  # the whole range
    want = _exact_acc(layer, x)
    with int64_only():
        ref = golden.run(net, x)["l"]
    np.testing.assert_array_equal(ref, want)
    np.testing.assert_array_equal(golden.run(net, x)["l"], want)
    np.testing.assert_array_equal(FakeQuantNetwork(net).integer_outputs(x)["l"], want)


def test_ir_checks_and_hwq_keep_the_range(tmp_path):
    rng = np.random.default_rng(3)
    layer = sample_bdcnn_layer(rng, ir.ActFormat(8, False, 0), 4, conv=False)
    assert layer.kind_data.range == "sample"
    net = ir.Network("n", (layer.fan_in,), layer.in_format, (layer,))
    hwq.save(net, tmp_path / "n.hwq")
    assert hwq.load(tmp_path / "n.hwq").layers[0].kind_data.range == "sample"
    with pytest.raises(ValueError, match=r"^bdcnn range must be one of static, sample, not "
                                         r"'dynamic'"):
        ir.BdcnnData(basis=1, qbits=4, range="dynamic")
    with pytest.raises(ValueError, match=r"^Layer 'l': bdcnn with a per-sample range "
                                         r"quantizes a non-bipolar input"):
        sample_bdcnn_layer(rng, ir.BIPOLAR, 4, conv=False)


def test_default_cnn_sample_range_k6_q6(trained_default_pt2, digits, tmp_path):
    """``quantize --range sample`` at K = Q = 6: within two points of float, golden equal to
    fake-quant and to the int64 path on the test images; planned, replayed and costed."""
    code, out, rep = quantize_bdcnn(trained_default_pt2, tmp_path, "--basis", "6",
                                    "--qbits", "6", "--range", "sample")
    assert code == 0
    acc = json.loads(rep.read_text())["accuracy"]
    assert acc["quantized"] >= acc["float"] - 0.02
    net = hwq.load(out)
    for layer in net.weight_layers:
        assert layer.kind_data.range == "sample" and layer.kind_data.qbits == 6
        assert layer.in_format.bits == 8
    x = np.asarray(digits.x_test)
    assert_integer_faces_agree(net, x)
    # The network plans (the whole-map quantizer, window, MVU and combine per layer), its
    # schedule replays and the cost model counts the map buffers; the Verilog and its
    # simulation are tests/test_bdcnn_sample_flow_sim.py.
    from hwquant import plan as P
    from hwquant.estimate import estimate_network
    from hwquant.fold import apply_folding
    from hwquant.schedule.replay import replay

    plan = P.plan_network(apply_folding(net, "auto"))
    quants = [st for st in plan.stages if isinstance(st, P.SampleQuant)]
    assert [st.layer for st in quants] == [layer.name for layer in net.weight_layers]
    assert replay(plan, images=2).period >= max(st.busy for st in quants)
    rows = estimate_network(plan, "ice40").components
    buffers = {r["layer"] for r in rows if r["component"] == "sample_quant.map_buffer"}
    assert buffers == {layer.name for layer in net.weight_layers}


@pytest.mark.parametrize("qbits", range(2, 9))
@pytest.mark.parametrize("in_bits,p_bits", [(8, 14), (4, 6), (8, 20)])
def test_combine_division_is_a_multiply_and_shift(qbits, in_bits, p_bits):
    """The combine's ``floor((2 R P + L) / 2L)`` as ``((n + c 2L) M >> k) - c``
    (:func:`hwquant.sample_range.division_constants`) over the corners of ``R`` and ``P`` and
    random values in between."""
    from hwquant.sample_range import division_constants

    fmt, p_fmt = ir.ActFormat(in_bits, True, 0), ir.ActFormat(p_bits, True, 0)
    c, mult, k = division_constants(fmt, p_fmt, qbits)
    top = (1 << qbits) - 1
    rng = np.random.default_rng(qbits)
    r_vals = [0, 1, 2, (1 << in_bits) - 2, (1 << in_bits) - 1] + \
        rng.integers(0, 1 << in_bits, 200).tolist()
    p_vals = [p_fmt.lo, p_fmt.lo + 1, -1, 0, 1, p_fmt.hi - 1, p_fmt.hi] + \
        rng.integers(p_fmt.lo, p_fmt.hi + 1, 200).tolist()
    for r in r_vals:
        for p in p_vals:
            n = 2 * r * p + top
            assert ((n + c * 2 * top) * mult >> k) - c == n // (2 * top), (r, p)
