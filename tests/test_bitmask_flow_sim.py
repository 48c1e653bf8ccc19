"""Bit-masked networks through quantize -> compile -> cocotb + Verilator: every output word
and every layer's probe stream against the golden model under random valid gaps and ready
stalls (``hwquant sim``), on the default digits CNN with 3-of-8-bit masks searched per layer,
conv1 fully unrolled (constant-matrix adder graph) and conv2 folded (m-bit code ROM and the
bit-masked partial products)."""

import pytest
from test_flow_sim_pow2 import _quantize_compile_sim

pytestmark = pytest.mark.sim


def test_default_cnn_bitmask_3_of_8_unrolled_and_folded(trained_default_pt2, tmp_path):
    rep, net = _quantize_compile_sim(trained_default_pt2, tmp_path,
                                     ["--method", "bitmask", "--active", "3", "--span", "8"],
                                     "conv1=16:9,conv2=4:8", vectors=10)
    assert {net.layer(n).encoding for n in ("conv1", "conv2")} == {"bitmask"}
    assert rep["accuracy"]["quantized"] >= rep["accuracy"]["float"] - 0.03
