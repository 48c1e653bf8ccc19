"""PLL settings (``hwquant.pll``), the PLL in the board top, ``hwquant build --clock-mhz``
(refusals in one line; a real iCE40 build with Yosys + nextpnr, slow)."""

import json
import sys
from pathlib import Path

import pytest
from amaranth.back import verilog

from hwquant import hwq
from hwquant.boards import load_board
from hwquant.cli import main
from hwquant.pll import TOLERANCE, PllError, ecp5_pll, ice40_pll, pll_for

sys.path.insert(0, str(Path(__file__).resolve().parent))
from netbuilders import vector_chain


def _ice40_out(f_in, p):
    return f_in / (p["DIVR"] + 1) * (p["DIVF"] + 1) / 2 ** p["DIVQ"]


@pytest.mark.parametrize("f_out", [17, 18, 24.5, 30, 45, 48, 60, 75.3, 100, 133, 270])
def test_ice40_setting_achieves_what_it_reports(f_out):
    s = ice40_pll(12.0, f_out)
    p = s.params
    assert s.primitive == "SB_PLL40_PAD"
    assert s.f_out_mhz == pytest.approx(_ice40_out(12.0, p))
    assert (1 - TOLERANCE) * f_out <= s.f_out_mhz <= f_out * (1 + 1e-9)
    assert 10 <= s.f_pfd_mhz <= 133 and 533 <= s.f_vco_mhz <= 1066
    assert 0 <= p["DIVR"] <= 15 and 0 <= p["DIVF"] <= 127 and 1 <= p["DIVQ"] <= 6
    assert 1 <= p["FILTER_RANGE"] <= 6


def test_ice40_exact_settings():
    assert ice40_pll(12.0, 48).params == {"DIVR": 0, "DIVF": 63, "DIVQ": 4, "FILTER_RANGE": 1}
    assert ice40_pll(12.0, 48).f_out_mhz == 48
    # No setting makes exactly 100 MHz from 12: the nearest one below, by brute force.
    outs = {f for r in range(16) for f_ in range(128) for q in range(1, 7)
            if 10 <= 12 / (r + 1) <= 133 and 533 <= 12 / (r + 1) * (f_ + 1) <= 1066
            for f in [_ice40_out(12.0, {"DIVR": r, "DIVF": f_, "DIVQ": q})]}
    assert 100 not in outs
    assert ice40_pll(12.0, 100).f_out_mhz == max(f for f in outs if f <= 100) == 99.0


@pytest.mark.parametrize("f_out", [3.125, 12.5, 50, 62.5, 100, 125, 133.33, 200, 400])
def test_ecp5_setting_achieves_what_it_reports(f_out):
    s = ecp5_pll(25.0, f_out)
    p = s.params
    assert s.primitive == "EHXPLLL"
    assert s.f_out_mhz == pytest.approx(25.0 / p["CLKI_DIV"] * p["CLKFB_DIV"])
    assert s.f_vco_mhz == pytest.approx(s.f_out_mhz * p["CLKOP_DIV"])
    assert (1 - TOLERANCE) * f_out <= s.f_out_mhz <= f_out * (1 + 1e-9)
    assert 400 <= s.f_vco_mhz <= 800 and 3.125 <= s.f_pfd_mhz <= 400
    assert 1 <= p["CLKI_DIV"] <= 128 and 1 <= p["CLKFB_DIV"] <= 80
    assert 1 <= p["CLKOP_DIV"] <= 128


def test_ecp5_prefers_small_dividers():
    assert ecp5_pll(25.0, 125).params == {"CLKI_DIV": 1, "CLKFB_DIV": 5, "CLKOP_DIV": 5}


@pytest.mark.parametrize("fn,f_in,f_out,match", [
    (ice40_pll, 12.0, 10, "outside the ice40 PLL's output range 16..275"),
    (ice40_pll, 12.0, 300, "outside the ice40 PLL's output range"),
    (ice40_pll, 12.0, 0, "positive frequency"),
    (ice40_pll, 12.0, True, "positive frequency"),
    (ice40_pll, 2.0, 20, "cannot make 20 MHz from the 2 MHz board clock"),
    (ecp5_pll, 25.0, 500, "outside the ecp5 PLL's output range"),
    (ecp5_pll, 25.0, 12, r"cannot make 12 MHz .* \(nearest below: 10.71 MHz\)"),
])
def test_unreachable_requests_are_refused(fn, f_in, f_out, match):
    with pytest.raises(PllError, match=match):
        fn(f_in, f_out)


def test_families_without_pll_support_are_refused():
    with pytest.raises(PllError, match=r"tangnano9k.*--clock-mhz needs a PLL.*ecp5, ice40"):
        pll_for(load_board("tangnano9k"), 50)
    assert pll_for(load_board("icebreaker"), 30).f_out_mhz == 30


@pytest.mark.parametrize("board,primitive,params", [
    ("icebreaker", "SB_PLL40_PAD", ("DIVF", "DIVQ", "PACKAGEPIN", "PLLOUTGLOBAL")),
    ("ulx3s_85f", "EHXPLLL", ("CLKFB_DIV", "CLKOP_DIV", "FEEDBK_PATH", "CLKOP")),
])
def test_board_top_instantiates_the_pll(board, primitive, params):
    from hwquant.fpga_flow import BoardPins

    b = load_board(board)
    pll = pll_for(b, 40)
    pins = BoardPins(vector_chain(1), clock_hz=pll.f_out_mhz * 1e6, baud=115200, pll=pll)
    text = verilog.convert(pins, name="hwquant_board", emit_src=False)
    assert primitive in text
    for name in params:
        assert name in text, name
    assert pins.divisor == round(pll.f_out_mhz * 1e6 / 115200)
    no_pll = verilog.convert(BoardPins(vector_chain(1), clock_hz=12e6, baud=115200),
                             name="hwquant_board", emit_src=False)
    assert primitive not in no_pll


@pytest.fixture
def tiny_hwq(tmp_path):
    path = tmp_path / "net.hwq"
    hwq.save(vector_chain(1), path)
    return path


@pytest.mark.parametrize("board,mhz,message", [
    ("icebreaker", "300", "outside the ice40 PLL's output range"),
    ("tangnano9k", "50", "--clock-mhz needs a PLL"),
])
def test_build_refuses_an_unreachable_clock(tiny_hwq, tmp_path, capsys, board, mhz, message):
    out = tmp_path / "out"
    assert main(["build", str(tiny_hwq), "--board", board, "--clock-mhz", mhz,
                 "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]
    assert not out.exists()


@pytest.mark.slow
def test_ice40_build_on_the_pll(tiny_hwq, tmp_path, capsys):
    """Yosys + nextpnr with SB_PLL40_PAD: nextpnr derives the PLL output's constraint, the
    report and the images/s follow the PLL clock, the bitstream packs."""
    out = tmp_path / "out"
    assert main(["build", str(tiny_hwq), "--board", "icebreaker", "--clock-mhz", "18",
                 "--bitstream", "-o", str(out)]) == 0
    rep = json.loads((out / "build.json").read_text())
    assert rep["clock"]["board_mhz"] == 12 and rep["clock"]["design_mhz"] == 18
    assert rep["clock"]["pll"]["params"] == {"DIVR": 0, "DIVF": 47, "DIVQ": 5,
                                             "FILTER_RANGE": 1}
    assert rep["pnr"]["constraint_mhz"] == 18
    (clock,) = [c for name, c in rep["pnr"]["fmax_by_clock"].items()
                if not name.startswith("$PACKER")]
    assert clock["constraint"] == pytest.approx(18, abs=0.01)
    assert rep["pnr"]["fmax_mhz"] >= 18 and rep["pnr"]["timing_met"]
    assert rep["images_per_s"]["at_design_clock"] == pytest.approx(
        18e6 / rep["cycles_per_inference"])
    assert rep["uart"]["divisor"] == round(18e6 / 115200)
    assert "Derived frequency constraint of 18.0 MHz" in (out / "logs/nextpnr.log").read_text()
    assert (out / rep["files"]["bitstream"]).stat().st_size > 100_000
