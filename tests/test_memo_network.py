# amaranth: UnusedElaboratable=no
"""Networks whose layers the compiler gives the ``memo`` engine, through
:func:`hwquant.compile.compile_network` (its choice, its report, the ``--engine`` overrides)
and the whole compiled top in the Amaranth simulator against the golden model with random
stalls: a shape no other test uses (3 signed input channels of 9 x 7, a stride-2 padded 3 x 3
stem of 5 kernels that each take two values of their own, max pooling, a linear head of
low-bit weights)."""

import json
import os
import sys

import pytest

from hwquant import ir
from hwquant.compile import compile_network
from hwquant.engines import EngineError

sys.path.insert(0, os.path.dirname(__file__))
from netbuilders import FEW_VALUED_FOLD, few_valued_net
from netsim import check_network


def test_compiler_chooses_memo_and_sim_bit_exact(tmp_path):
    net = few_valued_net()
    res = compile_network(net, tmp_path / "b", fold=FEW_VALUED_FOLD)
    engines = {name: row["engine"] for name, row in res.report["engines"].items()}
    assert engines == {"stem": "memo", "head": "memo"}, res.report["engines"]
    for row in res.report["engines"].values():
        assert row["reason"].startswith("cost model (ice40)")
        assert row["cost"]["memo"]["lut"] + 64 * row["cost"]["memo"]["dsp"] < \
            row["cost"]["plain"]["lut"] + 64 * row["cost"]["plain"]["dsp"]
        assert row["lut_without_dsp"]["memo"] < row["lut_without_dsp"]["plain"]
    report = json.loads((tmp_path / "b" / "compile.json").read_text())
    assert {r["name"]: r.get("engine") for r in report["layers"]
            if r["pe"]} == {"stem": "memo", "head": "memo"}
    assert res.network.layer("stem").fold == ir.Fold(5, 9, "memo")
    check_network(res.network, n=3, seed=1, stalls=0.3, plan=res.plan)


def test_override_plain_and_memo(tmp_path):
    net = few_valued_net()
    res = compile_network(net, tmp_path / "b", fold=FEW_VALUED_FOLD, engines=["head=plain"])
    assert res.report["engines"]["head"] == {**res.report["engines"]["head"],
                                             "engine": "plain",
                                             "reason": "requested (--engine)"}
    assert res.report["engines"]["stem"]["engine"] == "memo"
    check_network(res.network, n=2, seed=2, stalls=0.4, plan=res.plan)


@pytest.mark.parametrize("engines, message", [
    (["stem=fast"], r"^Engine for layer 'stem' must be one of plain, memo, not 'fast'$"),
    (["mp=memo"], (r"^Engine names layer 'mp', which is not a weight layer; weight layers: "
                   r"stem, head$")),
    (["stem"], r"^Engine must be LAYER=ENGINE"),
    (["stem=memo", "stem=plain"], r"^Engine for layer 'stem' given twice"),
])
def test_bad_engine_requests(engines, message, tmp_path):
    with pytest.raises(EngineError, match=message):
        compile_network(few_valued_net(), tmp_path / "b", fold=FEW_VALUED_FOLD, engines=engines)
    assert not (tmp_path / "b").exists()


def test_memo_refused_for_a_layer_it_cannot_serve(tmp_path):
    """SIMD = 1: one product per beat already; grouping cannot save a multiplier."""
    with pytest.raises(EngineError, match=r"^Layer 'stem': the memo engine cannot serve it: "
                                          r".*SIMD=1 multipliers.*\(--engine stem=memo\)$"):
        compile_network(few_valued_net(), tmp_path / "b", fold="stem=5:1,head=1:10",
                        engines={"stem": "memo"})
    assert not (tmp_path / "b").exists()


def test_cli_engine_flag(tmp_path, capsys):
    from hwquant import hwq
    from hwquant.cli import main

    hwq.save(few_valued_net(), tmp_path / "n.hwq")
    assert main(["compile", str(tmp_path / "n.hwq"), "--fold", FEW_VALUED_FOLD, "--engine",
                 "stem=plain", "--engine", "head=memo", "-o", str(tmp_path / "b")]) == 0
    cap = capsys.readouterr()
    out = cap.out + cap.err
    assert "engine plain" in out and "engine memo" in out and "requested (--engine)" in out
    assert main(["compile", str(tmp_path / "n.hwq"), "--fold", FEW_VALUED_FOLD, "--engine",
                 "stem=turbo", "-o", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: Engine for layer 'stem' must be one of plain, memo, not 'turbo'"]
