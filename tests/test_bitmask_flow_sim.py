"""Bit-masked networks through quantize -> compile -> cocotb + Verilator: every output word
and every layer's probe stream against the golden model under random valid gaps and ready
stalls (``hwquant sim``), on the default digits CNN with 3-of-8-bit masks searched per layer,
conv1 fully unrolled (constant-matrix adder graph) and conv2 folded (m-bit code ROM and the
bit-masked partial products)."""

import pytest
from flows import make_unseen, quantize_compile_sim

pytestmark = pytest.mark.sim


def test_default_cnn_bitmask_3_of_8_unrolled_and_folded(trained_default_pt2, tmp_path):
    rep, net = quantize_compile_sim(trained_default_pt2, tmp_path,
                                    ["--method", "bitmask", "--active", "3", "--span", "8"],
                                    "conv1=16:9,conv2=4:8", vectors=10)
    assert {net.layer(n).encoding for n in ("conv1", "conv2")} == {"bitmask"}
    assert rep["accuracy"]["quantized"] >= rep["accuracy"]["float"] - 0.03


@pytest.mark.slow
def test_unseen_model_bitmask_4_of_6_unrolled_and_folded(tmp_path):
    """A model and data the other bit-mask tests do not use (3 input channels, a 5x5 stride-2
    conv with BatchNorm, average pooling, signed input): 4-of-6-bit masks searched per conv
    layer, the stem fully unrolled (adder graph of the masked constants), the second conv and
    the linear head folded."""
    model, data = make_unseen(tmp_path)
    rep, net = quantize_compile_sim(model, tmp_path,
                                    ["--method", "bitmask", "--active", "4", "--span", "6",
                                     "--abits", "7"],
                                    "stem=12:75,conv=2:12,head=1:8", data=data)
    convs = [n for n in ("stem", "conv") if net.layer(n).encoding == "bitmask"]
    assert convs == ["stem", "conv"] and net.layer("head").encoding == "fixed"
    assert all(net.layer(n).weight_bits == 6 for n in convs)
    assert set(rep["bitmask"]["patterns"]) == {"stem", "conv"}
