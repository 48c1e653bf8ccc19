"""The ``memo`` engine through quantize -> compile -> cocotb + Verilator (``hwquant sim``):
every output word and every layer's probe against the golden model under random valid gaps
and ready stalls. The default digits CNN quantized to 2-bit weights (one scale per channel)
with both convolutions on the memo engine, and the unseen few-valued shape of
``test_memo_network`` (stride-2 padded stem of two-valued kernels, low-bit head) as the
compiler chooses its engines."""

import json

import pytest
from netbuilders import FEW_VALUED_FOLD, few_valued_net

from hwquant import hwq
from hwquant.cli import main

pytestmark = [pytest.mark.sim, pytest.mark.slow]


def _sim(build, tmp_path, vectors):
    s = tmp_path / "s.json"
    assert main(["sim", str(build), "--vectors", str(vectors), "--seed", "4", "--stall", "0.3",
                 "--json", str(s)]) == 0
    res = json.loads(s.read_text())
    assert res["passed"] and res["mismatches"] == 0 and res["vectors"] == vectors
    for name, stream in res["streams"].items():
        assert stream["received"] == stream["expected"] > 0, name
    assert abs(res["cycle_error"]) <= 0.05, res


def test_default_cnn_2bit_memo_convs(trained_default_pt2, tmp_path):
    q, c = tmp_path / "q.json", tmp_path / "c.json"
    assert main(["quantize", str(trained_default_pt2), "--wbits", "2", "--scale", "channel",
                 "--quiet", "-o", str(tmp_path / "n.hwq"), "--json", str(q)]) == 0
    assert json.loads(q.read_text())["accuracy"]["quantized"] >= 0.85
    assert main(["compile", str(tmp_path / "n.hwq"), "--engine", "conv1=memo", "--engine",
                 "conv2=memo", "-o", str(tmp_path / "build"), "--json", str(c)]) == 0
    engines = json.loads(c.read_text())["engines"]
    assert engines["conv1"]["engine"] == engines["conv2"]["engine"] == "memo"
    assert engines["fc"]["engine"] == "plain"
    _sim(tmp_path / "build", tmp_path, 8)


def test_unseen_few_valued_net(tmp_path):
    hwq.save(few_valued_net(), tmp_path / "n.hwq")
    c = tmp_path / "c.json"
    assert main(["compile", str(tmp_path / "n.hwq"), "--fold", FEW_VALUED_FOLD, "-o",
                 str(tmp_path / "build"), "--json", str(c)]) == 0
    engines = json.loads(c.read_text())["engines"]
    assert {k: v["engine"] for k, v in engines.items()} == {"stem": "memo", "head": "memo"}
    _sim(tmp_path / "build", tmp_path, 6)
