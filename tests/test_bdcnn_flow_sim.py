"""Binarized-DCNN networks through quantize -> compile -> cocotb + Verilator: every output word
and every layer's probe against the golden model under random valid gaps and ready stalls
(``hwquant sim``), with the AND-popcount engine (:class:`hwquant.hw.bdcnn.BdcnnEngine`)."""

import numpy as np
import pytest
from flows import make_unseen, quantize_compile_sim

pytestmark = [pytest.mark.sim, pytest.mark.slow]


def test_default_cnn_bdcnn_k6_q6(trained_default_pt2, tmp_path):
    rep, net = quantize_compile_sim(trained_default_pt2, tmp_path,
                                    ["--method", "bdcnn", "--basis", "6", "--qbits", "6"],
                                    "auto", vectors=8)
    assert {layer.encoding for layer in net.weight_layers} == {"bdcnn"}
    assert rep["accuracy"]["quantized"] >= rep["accuracy"]["float"] - 0.02


def test_unseen_signed_padded_stem_bdcnn_k4_q4(tmp_path):
    """Signed input (the offset term ``lo * sum W`` is not zero), a 5x5 stride-2 conv with
    padding 2 (padded taps are code 0, ``q = -lo``), K = 4, Q = 4; the stem unrolled, the rest
    folded."""
    model, data = make_unseen(tmp_path)
    _, net = quantize_compile_sim(model, tmp_path,
                                  ["--method", "bdcnn", "--basis", "4", "--qbits", "4",
                                   "--coef-bits", "6"], "stem=12:75,conv=2:12", vectors=8,
                                  data=data)
    stem = net.layer("stem")
    assert stem.in_format.signed and stem.padding == (2, 2) and stem.encoding == "bdcnn"
    assert np.any(stem.weight_matrix().sum(axis=1) != 0)
