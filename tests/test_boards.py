import re
from pathlib import Path

import pytest

from hwquant.boards import FAMILIES, Board, list_boards, load_board

BOARDS_DIR = Path(__file__).resolve().parents[1] / "boards"
BUNDLED = ("arty_a7_35", "icebreaker", "tangnano9k", "ulx3s_85f")


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


@pytest.mark.parametrize("board_id", BUNDLED)
def test_bundled_board_matches_amaranth_boards(board_id):
    board = load_board(board_id)
    platform = board.platform_class()()
    assert platform.default_clk_frequency == pytest.approx(board.clock_mhz * 1e6)
    uart = platform.lookup("uart", 0)
    pins = {sub.name: sub.ios[0].names[0] for sub in uart.ios}
    assert pins["rx"] == board.uart.rx
    assert pins["tx"] == board.uart.tx


def test_nextpnr_args():
    assert load_board("icebreaker").nextpnr.args() == ["--up5k", "--package", "sg48"]
    assert load_board("ulx3s_85f").nextpnr.args() == ["--85k", "--package", "CABGA381",
                                                      "--speed", "6"]
    assert load_board("arty_a7_35").nextpnr is None


def test_known_capacities():
    up5k = load_board("icebreaker").capacity
    assert (up5k.lut, up5k.dsp, up5k.bram) == (5280, 8, 30)
    ecp5 = load_board("ulx3s_85f").capacity
    assert (ecp5.lut, ecp5.dsp, ecp5.bram) == (83640, 156, 208)
    a7 = load_board("arty_a7_35").capacity
    assert (a7.lut, a7.ff, a7.dsp, a7.bram) == (20800, 41600, 90, 100)


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
    with pytest.raises(ValueError, match=r"^Unknown board 'de10'; bundled boards: "):
        load_board("de10")


def test_bad_toml(tmp_path):
    path = _write(tmp_path, "id = \n")
    with pytest.raises(ValueError, match=rf"^Board file {re.escape(str(path))}: "):
        load_board(path)
