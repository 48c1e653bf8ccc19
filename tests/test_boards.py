import json
import re
from pathlib import Path

import pytest
from amaranth.build.res import ResourceError

from hwquant.boards import FAMILIES, Board, board_path, boards_table, list_boards, load_board
from hwquant.cli import main

BOARDS_DIR = Path(__file__).resolve().parents[1] / "boards"
BUNDLED = ("arty_a7_35", "icebreaker", "orangecrab_25f", "pynq_z2", "tangnano9k", "ulx3s_85f")
WITH_PLATFORM = tuple(b for b in BUNDLED if b != "pynq_z2")


def test_bundled_boards_listed():
    assert set(BUNDLED) <= set(list_boards())


@pytest.mark.parametrize("board_id", BUNDLED)
def test_bundled_board_loads(board_id):
    board = load_board(board_id)
    assert isinstance(board, Board)
    assert board.id == board_id
    assert board.family in FAMILIES
    assert board.clock_mhz > 0
    for key in ("lut", "ff", "dsp", "bram"):
        assert getattr(board.capacity, key) > 0
        assert board.capacity.source[key]
    resources = board.capacity.as_resources()
    assert resources.lut == board.capacity.lut


@pytest.mark.parametrize("board_id", WITH_PLATFORM)
def test_bundled_board_matches_amaranth_boards(board_id):
    board = load_board(board_id)
    platform = board.platform_class()()
    assert platform.default_clk_frequency == pytest.approx(board.clock_mhz * 1e6)
    assert platform.lookup(platform.default_clk).ios[0].names == [board.clock_pin]
    assert str(getattr(platform, "speed", "") or "") == board.speed
    try:
        uart = platform.lookup("uart", 0)
    except ResourceError:  # no USB-UART bridge: the pins are on a header of the platform
        header = {pin for connector in platform.connectors.values()
                  for pin in connector.mapping.values()}
        assert {board.uart.rx, board.uart.tx} <= header
        return
    pins = {sub.name: sub.ios[0].names[0] for sub in uart.ios}
    assert pins["rx"] == board.uart.rx
    assert pins["tx"] == board.uart.tx


def test_pynq_z2_pins_match_the_same_part_on_arty_z7():
    """PYNQ-Z2 is not in amaranth-boards; the Arty Z7-20 has the same xc7z020clg400-1 and
    puts its 125 MHz clock and Arduino D0/D1 on the same package pins."""
    from amaranth_boards.arty_z7 import ArtyZ720Platform

    board, platform = load_board("pynq_z2"), ArtyZ720Platform()
    assert (board.device, board.package, board.speed) == (platform.device, platform.package,
                                                          platform.speed)
    assert platform.lookup(platform.default_clk).ios[0].names == [board.clock_pin]
    arduino = platform.connectors["ck_io", 0].mapping
    assert (board.uart.rx, board.uart.tx) == (arduino["io0"], arduino["io1"])


def test_nextpnr_args():
    assert load_board("icebreaker").nextpnr.args() == ["--up5k", "--package", "sg48"]
    assert load_board("ulx3s_85f").nextpnr.args() == ["--85k", "--package", "CABGA381",
                                                      "--speed", "6"]
    assert load_board("arty_a7_35").nextpnr is None
    assert load_board("orangecrab_25f").nextpnr.args() == ["--25k", "--package", "CSFBGA285",
                                                           "--speed", "8"]


def test_known_capacities():
    up5k = load_board("icebreaker").capacity
    assert (up5k.lut, up5k.dsp, up5k.bram) == (5280, 8, 30)
    ecp5 = load_board("ulx3s_85f").capacity
    assert (ecp5.lut, ecp5.dsp, ecp5.bram) == (83640, 156, 208)
    a7 = load_board("arty_a7_35").capacity
    assert (a7.lut, a7.ff, a7.dsp, a7.bram) == (20800, 41600, 90, 100)
    crab = load_board("orangecrab_25f").capacity
    assert (crab.lut, crab.ff, crab.dsp, crab.bram) == (24288, 24288, 28, 56)
    z7 = load_board("pynq_z2").capacity
    assert (z7.lut, z7.ff, z7.dsp, z7.bram) == (53200, 106400, 220, 280)


def test_load_by_path():
    board = load_board(BOARDS_DIR / "icebreaker.toml")
    assert board.id == "icebreaker"


def _write(tmp_path, text):
    path = tmp_path / "board.toml"
    path.write_text(text)
    return path


def _icebreaker_text():
    return (BOARDS_DIR / "icebreaker.toml").read_text()


def test_unknown_key(tmp_path):
    path = _write(tmp_path, 'colour = "blue"\n' + _icebreaker_text())
    with pytest.raises(ValueError, match=rf"^Board file {re.escape(str(path))}: unknown key "
                                         r"'colour'; expected one of id, name, "):
        load_board(path)


def test_unknown_nested_key(tmp_path):
    text = _icebreaker_text().replace("[capacity]\n", "[capacity]\nuram = 4\n")
    path = _write(tmp_path, text)
    with pytest.raises(ValueError, match=rf"^Board file {re.escape(str(path))}: unknown key "
                                         r"'capacity\.uram'; expected one of lut, ff, dsp, "
                                         r"bram, source$"):
        load_board(path)


def test_missing_key(tmp_path):
    text = _icebreaker_text().replace("clock_mhz = 12.0\n", "")
    path = _write(tmp_path, text)
    with pytest.raises(ValueError, match=rf"^Board file {re.escape(str(path))}: missing key "
                                         r"'clock_mhz'$"):
        load_board(path)


def test_missing_source(tmp_path):
    text = re.sub(r"\nbram = \"nextpnr[^\n]*", "", _icebreaker_text())
    path = _write(tmp_path, text)
    with pytest.raises(ValueError, match=rf"^Board file {re.escape(str(path))}: missing key "
                                         r"'capacity\.source\.bram'$"):
        load_board(path)


def test_bad_family(tmp_path):
    text = _icebreaker_text().replace('family = "ice40"', 'family = "stratix"')
    path = _write(tmp_path, text)
    with pytest.raises(ValueError, match=rf"^Board file {re.escape(str(path))}: family must "
                                         r"be one of ice40, ecp5, xilinx, gowin, not "
                                         r"'stratix'$"):
        load_board(path)


def test_wrong_type(tmp_path):
    text = _icebreaker_text().replace("lut = 5280", 'lut = "5280"')
    path = _write(tmp_path, text)
    with pytest.raises(TypeError, match=rf"^Board file {re.escape(str(path))}: key "
                                        r"'capacity\.lut' must be int, not '5280'$"):
        load_board(path)


def test_uart_from_platform(tmp_path):
    text = re.sub(r"\[uart\]\nrx = \"6\"\ntx = \"9\"\n", "", _icebreaker_text())
    text = text.replace('amaranth_board = "amaranth_boards.icebreaker:ICEBreakerPlatform"',
                        'amaranth_board = "amaranth_boards.icebreaker:ICEBreakerPlatform"\n'
                        'uart = "from platform"')
    board = load_board(_write(tmp_path, text))
    assert board.uart is None


def test_unknown_board():
    with pytest.raises(ValueError, match=r"^Unknown board 'de10'; known boards: arty_a7_35, "):
        load_board("de10")


def test_unknown_board_suggests_close_names():
    with pytest.raises(ValueError, match=r"^Unknown board 'ulx3s' \(did you mean "
                                         r"'ulx3s_85f'\?\); known boards: "):
        load_board("ulx3s")
    with pytest.raises(ValueError, match=r"did you mean 'orangecrab_25f'\?"):
        load_board("orangecrab")


@pytest.mark.parametrize("family, old, bad", [
    ("ice40", 'speed = ""', 'speed = "6"'),
    ("ecp5", 'speed = "6"', 'speed = "9"'),
    ("xilinx", 'speed = "1L"', 'speed = "-1"'),
    ("gowin", 'speed = "C6/I5"', 'speed = "fast"'),
])
def test_bad_speed(tmp_path, family, old, bad):
    board_id = {"ice40": "icebreaker", "ecp5": "ulx3s_85f", "xilinx": "arty_a7_35",
                "gowin": "tangnano9k"}[family]
    text = (BOARDS_DIR / f"{board_id}.toml").read_text()
    assert old in text
    path = _write(tmp_path, text.replace(old, bad))
    with pytest.raises(ValueError, match=rf"^Board file {re.escape(str(path))}: speed for "
                                         rf"family {family} must be "):
        load_board(path)


def test_missing_speed_and_clock_pin(tmp_path):
    path = _write(tmp_path, _icebreaker_text().replace('speed = ""\n', ""))
    with pytest.raises(ValueError, match=r"missing key 'speed'$"):
        load_board(path)
    path = _write(tmp_path, _icebreaker_text().replace('clock_pin = "35"\n', ""))
    with pytest.raises(ValueError, match=r"missing key 'clock_pin'$"):
        load_board(path)


def test_nextpnr_speed_must_match(tmp_path):
    text = (BOARDS_DIR / "ulx3s_85f.toml").read_text().replace('"--speed", "6"',
                                                               '"--speed", "8"')
    path = _write(tmp_path, text)
    with pytest.raises(ValueError, match=r"nextpnr\.extra_args pass --speed, which must be "
                                         r"followed by the board's speed '6'$"):
        load_board(path)


def _user_board(directory, board_id="myboard", lut=1234):
    text = _icebreaker_text().replace('id = "icebreaker"', f'id = "{board_id}"')
    text = text.replace("lut = 5280", f"lut = {lut}")
    directory.mkdir(exist_ok=True)
    (directory / f"{board_id}.toml").write_text(text)


def test_boards_dir_adds_a_board(tmp_path):
    _user_board(tmp_path / "mine")
    assert "myboard" not in list_boards()
    assert set(list_boards(tmp_path / "mine")) == {*BUNDLED, "myboard"}
    board = load_board("myboard", tmp_path / "mine")
    assert (board.id, board.capacity.lut) == ("myboard", 1234)
    assert board_path("myboard", tmp_path / "mine") == tmp_path / "mine" / "myboard.toml"
    assert board_path("icebreaker", tmp_path / "mine") is None
    assert load_board("icebreaker", tmp_path / "mine").capacity.lut == 5280
    with pytest.raises(ValueError, match=r"^Unknown board 'myboard'"):
        load_board("myboard")


def test_boards_dir_errors(tmp_path):
    with pytest.raises(ValueError, match=r"^Boards directory .*nowhere does not exist"):
        list_boards(tmp_path / "nowhere")
    _user_board(tmp_path / "clash", board_id="icebreaker")
    with pytest.raises(ValueError, match=r"icebreaker\.toml: 'icebreaker' is a bundled "
                                         r"board; give the board another id"):
        list_boards(tmp_path / "clash")
    _user_board(tmp_path / "renamed")
    (tmp_path / "renamed" / "myboard.toml").rename(tmp_path / "renamed" / "other.toml")
    with pytest.raises(ValueError, match=r"other\.toml: id must match the file name "
                                         r"\('other'\), not 'myboard'$"):
        load_board("other", tmp_path / "renamed")
    _user_board(tmp_path / "broken")
    path = tmp_path / "broken" / "myboard.toml"
    path.write_text(path.read_text().replace("dsp = 8\n", ""))
    with pytest.raises(ValueError, match=rf"^Board file {re.escape(str(path))}: missing key "
                                         r"'capacity\.dsp'$"):
        boards_table(tmp_path / "broken")


def test_cli_boards(tmp_path, capsys):
    _user_board(tmp_path / "mine")
    out = tmp_path / "boards.json"
    assert main(["boards", "--boards-dir", str(tmp_path / "mine"), "--json", str(out)]) == 0
    listing = capsys.readouterr().err
    for board_id in (*BUNDLED, "myboard"):
        assert re.search(rf"^{board_id} ", listing, re.MULTILINE)
    rows = {row["id"]: row for row in json.loads(out.read_text())["boards"]}
    assert set(rows) == {*BUNDLED, "myboard"}
    assert rows["orangecrab_25f"]["capacity"] == {"lut": 24288, "ff": 24288, "dsp": 28,
                                                 "bram": 56}
    assert rows["pynq_z2"]["nextpnr"] is None
    assert rows["myboard"]["capacity"]["lut"] == 1234
    assert rows["ulx3s_85f"]["capacity_source"]["dsp"].startswith("nextpnr-ecp5")


def test_cli_bad_boards(tmp_path, capsys):
    _user_board(tmp_path / "broken")
    path = tmp_path / "broken" / "myboard.toml"
    path.write_text(path.read_text().replace('family = "ice40"', "family = 3"))
    assert main(["boards", "--boards-dir", str(tmp_path / "broken")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: Board file {path}: key 'family' must be str, not 3"]
    out = tmp_path / "build"
    assert main(["compile", str(tmp_path / "net.hwq"), "--board", "icebrker", "-o",
                 str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: Unknown board 'icebrker' (did you mean 'icebreaker'?)")
    assert not out.exists()


def test_bad_toml(tmp_path):
    path = _write(tmp_path, "id = \n")
    with pytest.raises(ValueError, match=rf"^Board file {re.escape(str(path))}: "):
        load_board(path)


def test_compile_on_a_user_board(tmp_path, capsys):
    import sys

    from hwquant import hwq

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from netbuilders import vector_chain

    hwq.save(vector_chain(1), tmp_path / "net.hwq")
    _user_board(tmp_path / "mine", "roomy", lut=5280)
    _user_board(tmp_path / "mine", "tiny", lut=10)
    out = tmp_path / "build"
    argv = ["compile", str(tmp_path / "net.hwq"), "--boards-dir", str(tmp_path / "mine"),
            "-o", str(out)]
    assert main([*argv, "--board", "tiny"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: The network does not fit board 'tiny' (iCE40UP5K): "
                              "LUTs: ")
    assert not out.exists()
    assert main([*argv, "--board", "roomy"]) == 0
    assert json.loads((out / "compile.json").read_text())["board"]["id"] == "roomy"
