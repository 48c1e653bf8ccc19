"""``hwquant demo`` end to end on its default board: train, quantize, the iCEBreaker build
(folding that fits, Yosys, nextpnr, icepack), the simulation of that build, the report."""

import json

import pytest

from hwquant.demo import DEFAULT_BOARD, run_demo


@pytest.mark.slow
def test_demo_builds_simulates_and_reports_the_default_board(tmp_path):
    """About 70 s: the build that goes on the board is the one simulated bit-exact; the report
    has its utilization, Fmax and images/s at Fmax, and the bitstream is there."""
    out = tmp_path / "demo"
    report = run_demo(out, epochs=2, vectors=4, synth=False)
    board = report["board"]
    assert board["id"] == DEFAULT_BOARD and board["family"] == "ice40"
    assert report["sim"]["passed"] and report["sim"]["vectors"] == 4
    assert board["fmax_mhz"] > 0 and board["timing_met"]
    assert board["images_per_s"]["at_fmax"] == pytest.approx(
        board["fmax_mhz"] * 1e6 / report["compile"]["cycles_per_inference"])
    assert board["utilization"]["ICESTORM_LC"]["used"] > 0
    for k in ("lut", "dsp", "bram"):  # the folding fits by the model
        assert board["model"]["used"][k] <= board["model"]["available"][k]
    assert (out / "build" / board["bitstream"]).stat().st_size > 0
    assert json.loads((out / "report.json").read_text())["board"]["fmax_mhz"] == \
        board["fmax_mhz"]
    md = (out / "report.md").read_text()
    assert "## Board: " in md and "at Fmax" in md and "Bitstream:" in md
