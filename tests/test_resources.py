import importlib.util
from pathlib import Path

import pytest

from hwquant.estimate import resources
from hwquant.estimate.resources import (
    Resources,
    adder,
    comparator,
    const_multiplier,
    dsp_blocks,
    multiplier,
    mux,
    popcount,
    register,
    rom,
    rom_in_bram,
)

# -- Resources ---------------------------------------------------------------------------------


def test_resources_arithmetic():
    a = Resources(lut=10, ff=4, dsp=1, bram=0)
    b = Resources(lut=1, ff=2, dsp=0, bram=3)
    assert a + b == Resources(11, 6, 1, 3)
    assert 3 * a == a * 3 == Resources(30, 12, 3, 0)
    assert sum([a, b, b]) == Resources(12, 8, 1, 6)
    assert a.to_json() == {"lut": 10, "ff": 4, "dsp": 1, "bram": 0}


def test_resources_validation():
    with pytest.raises(ValueError, match=r"^Resource count lut must be non-negative, not -1$"):
        Resources(lut=-1)
    with pytest.raises(TypeError, match=r"^Resource count ff must be an integer, not 1\.5$"):
        Resources(ff=1.5)
    with pytest.raises(TypeError):
        Resources(lut=1) * 0.5
    with pytest.raises(ValueError, match=r"^Resource multiplier must be non-negative, not -2$"):
        Resources(lut=1) * -2


# -- Structural formulas (exact for Yosys 0.70) ---------------------------------------------


def test_adder_and_comparator():
    assert adder(8, "ice40") == Resources(lut=8)
    assert adder(8, "ecp5") == Resources(lut=10)  # 5 CCU2C
    assert adder(7, "ecp5") == Resources(lut=8)
    assert adder(8, "gowin") == Resources(lut=9)
    assert adder(8, "xilinx") == Resources(lut=8)
    assert comparator(16, "ice40") == Resources(lut=17)
    assert comparator(16, "xilinx") == Resources(lut=11)
    assert register(12) == Resources(ff=12)


def test_constant_multiplier_free_cases():
    for family in resources.FAMILIES:
        assert const_multiplier(0, 8, True, family) == Resources()
        assert const_multiplier(1, 8, True, family) == Resources()
        assert const_multiplier(64, 8, False, family, use_dsp=True) == Resources()
        assert const_multiplier(-1, 8, True, family).lut > 0


def test_constant_multiplier_dsp():
    # Yosys maps even small constant multiplies to a DSP block unless -nodsp.
    assert const_multiplier(3, 8, False, "xilinx", use_dsp=True) == Resources(dsp=1)
    assert const_multiplier(5, 4, False, "ecp5", use_dsp=True) == Resources(dsp=1)
    # iCE40 SB_MAC16 only for products of 11 bits or more; x*5 (4 x 3 bits) stays in LUTs.
    assert const_multiplier(5, 4, False, "ice40", use_dsp=True).dsp == 0
    assert const_multiplier(127, 8, False, "ice40", use_dsp=True) == Resources(dsp=1)
    assert const_multiplier(127, 8, False, "ice40").dsp == 0


def test_dsp_blocks():
    assert dsp_blocks(8, 8, "ice40") == 1
    assert dsp_blocks(4, 4, "ice40") == 0
    assert dsp_blocks(24, 16, "ice40") == 2
    assert dsp_blocks(2, 2, "ecp5") == 1
    assert dsp_blocks(24, 16, "ecp5") == 2
    assert dsp_blocks(24, 16, "xilinx") == 1
    assert dsp_blocks(4, 4, "xilinx") == 0
    assert dsp_blocks(6, 4, "xilinx") == 1
    assert dsp_blocks(4, 4, "gowin") == 1
    assert dsp_blocks(24, 16, "gowin") == 3
    # synth_gowin's passes (Yosys 0.70): the 18 x 18 pass takes 18 x 4; the 3 x 4 rest of a
    # 21 x 4 stays in LUTs; a 12 x 6 rest is another 18 x 18.
    assert dsp_blocks(21, 4, "gowin") == 1
    assert dsp_blocks(30, 6, "gowin", signed=True) == 2
    assert dsp_blocks(8, 8, "gowin") == 1
    assert multiplier(24, 16, "ecp5", True).dsp == 2
    assert multiplier(8, 8, "ice40", False).dsp == 0


def test_rom_placement():
    # memory_libmap: block RAM when blocks x cost < bits / 16 (bits / 64 on xilinx).
    assert not rom_in_bram(128, 8, "ice40")
    assert rom_in_bram(256, 8, "ice40")
    assert not rom_in_bram(256, 8, "ecp5")
    assert rom_in_bram(512, 8, "ecp5")
    assert not rom_in_bram(1024, 8, "xilinx")
    assert rom_in_bram(1024, 18, "xilinx")
    assert rom(1024, 18, "ice40") == Resources(bram=5)  # 1024x4 blocks
    assert rom(4096, 4, "ice40") == Resources(lut=4, bram=4)  # 2 depth slices, output mux
    assert rom(512, 16, "ecp5") == Resources(bram=1)
    assert rom(16, 8, "gowin") == Resources(lut=8)
    assert rom(64, 8, "xilinx") == Resources(lut=8)


def test_argument_errors():
    with pytest.raises(ValueError, match=r"^Family must be one of ice40, ecp5, xilinx, gowin, "
                                         r"not 'stratix'$"):
        adder(8, "stratix")
    with pytest.raises(ValueError, match=r"^Adder width must be at least 1, not 0$"):
        adder(0, "ice40")
    with pytest.raises(TypeError, match=r"^Weight must be an integer, not 1\.5$"):
        const_multiplier(1.5, 8, True, "ice40")
    with pytest.raises(TypeError, match=r"^Mux inputs must be an integer, not '4'$"):
        mux(8, "4", "ice40")


def test_monotone_in_size():
    for family in resources.FAMILIES:
        assert popcount(64, family).lut > popcount(32, family).lut > 0
        assert mux(8, 16, family).lut > mux(8, 4, family).lut > 0
        assert multiplier(8, 8, family, False).lut > multiplier(4, 4, family, False).lut > 0


# -- Against Yosys, within the documented fit error -------------------------------------------

_CALIBRATE = Path(__file__).resolve().parents[1] / "benchmarks" / "calibrate_primitives.py"


@pytest.fixture(scope="module")
def calibration():
    spec = importlib.util.spec_from_file_location("calibrate_primitives", _CALIBRATE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# (case label, family, tolerance on the relative LUT error): exact formulas get 0, fitted ones
# the worst error of their fit over the calibration set (rounded up).
YOSYS_CASES = [
    ("add12", "ice40", 0.0),
    ("add12", "ecp5", 0.0),
    ("lt16", "gowin", 0.0),
    ("popcount32", "ice40", 0.15),
    ("rom128x16", "ice40", 0.0),
    ("rom128x16", "ecp5", 0.25),
    ("rom512x8", "gowin", 0.0),
    ("mux8x8", "ecp5", 0.35),
    ("mulu8x8", "gowin", 0.25),
    ("cmulu8x127", "ice40", 0.9),
    ("cmul_dsp8x127", "ecp5", 0.0),
]


@pytest.mark.synth
@pytest.mark.parametrize(("label", "family", "tolerance"), YOSYS_CASES)
def test_model_against_yosys(calibration, tmp_path, label, family, tolerance):
    (case,) = [c for c in calibration.cases() if c.label == label]
    measured = calibration.measure(case, family, tmp_path)
    model = case.model(family)
    for what in case.compare:
        got, want = getattr(model, what), measured[what]
        if what in ("dsp", "bram", "ff"):
            assert got == want, f"{label} {family} {what}: model {got}, Yosys {want}"
        else:
            error = abs(got - want) / max(want, 1)
            assert error <= tolerance, (f"{label} {family} {what}: model {got}, Yosys {want} "
                                        f"({error:.0%} > {tolerance:.0%})")
