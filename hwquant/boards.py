"""Boards as data: ``boards/<id>.toml``, parsed strictly.

Each board file names the FPGA (family, device, package), the board clock, the host-link UART
pins, the nextpnr target where an open place & route exists, the amaranth-boards platform that
owns the pins, and the capacity in the units :mod:`hwquant.estimate.synth` counts, with the
source of every capacity number. A file with an unknown key, a missing key or a value of the
wrong type is rejected with the file and the key named::

    id = "icebreaker"
    name = "1BitSquared iCEBreaker (iCE40UP5K-SG48)"
    family = "ice40"                      # ice40 | ecp5 | xilinx | gowin
    device = "iCE40UP5K"
    package = "SG48"
    speed = ""                            # speed grade: "" (ice40 has none), ecp5 "6"|"7"|"8",
                                          # xilinx "1"|"2"|"3"|"1L"|"2L", gowin "C6/I5"
    clock_pin = "35"
    clock_mhz = 12.0
    amaranth_board = "amaranth_boards.icebreaker:ICEBreakerPlatform"   # or "" if none
    uart = "from platform"                # or a table: [uart] rx = "6", tx = "9"

    [nextpnr]                             # optional: no open place & route for xilinx
    tool = "nextpnr-ice40"                # nextpnr-ice40 | nextpnr-ecp5 | nextpnr-himbaechel
    device = "up5k"
    package = "sg48"                      # optional (himbaechel takes the full part number)
    extra_args = []

    [capacity]
    lut = 5280
    ff = 5280
    dsp = 8
    bram = 30

    [capacity.source]                     # one string per capacity number
    lut = "..."

A user adds a board by writing such a file, named ``<id>.toml``, into a directory and passing
that directory as ``boards_dir`` (``--boards-dir`` on the command line): its boards are listed
and loaded beside the bundled ones.

The bundled files are read through :func:`importlib.resources.files` from
``hwquant.board_files`` (the repository's ``boards/`` directory, packaged under that name);
from a source tree that is not installed, the ``boards/`` directory next to the package is used.
"""

import difflib
import importlib
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

__all__ = ["BoardTypeError", "FAMILIES", "NEXTPNR_TOOLS", "Board", "Capacity", "NextpnrTarget", "UartPins",
           "load_board", "list_boards", "board_path", "boards_table"]

#: FPGA families a board may name.
FAMILIES = ("ice40", "ecp5", "xilinx", "gowin")

#: nextpnr flavours a board may name.
NEXTPNR_TOOLS = ("nextpnr-ice40", "nextpnr-ecp5", "nextpnr-himbaechel")

_FROM_PLATFORM = "from platform"

#: Speed grades each family allows, as a regular expression over the whole value, and how a
#: file is told what is allowed.
SPEED_GRADES = {
    "ice40": ("", '"" (iCE40 parts have no speed grade)'),
    "ecp5": ("[678]", '"6", "7" or "8"'),
    "xilinx": ("[1-3]L?", '"1", "2", "3" or with an "L" suffix ("1L", low power)'),
    "gowin": ("[CIA][0-9](/[CIA][0-9])?", 'a Gowin grade such as "C6/I5" or "C6"'),
}


@dataclass(frozen=True)
class UartPins:
    """Host-link UART pins (package pin names, as the constraint file spells them)."""

    rx: str
    tx: str


@dataclass(frozen=True)
class NextpnrTarget:
    """How nextpnr is told about the device.

    Attributes
    ----------
    tool : str
        One of :data:`NEXTPNR_TOOLS`.
    device : str
        ``"up5k"`` becomes ``--up5k`` (ice40/ecp5); himbaechel takes ``--device <device>``.
    package : str or None
        ``--package`` (ice40/ecp5).
    extra_args : tuple of str
        Further arguments (``--speed 6``, ``--vopt family=GW1N-9C``).
    """

    tool: str
    device: str
    package: str | None
    extra_args: tuple

    def args(self):
        """The device arguments of a nextpnr command line, as a list of strings."""
        if self.tool == "nextpnr-himbaechel":
            argv = ["--device", self.device]
        else:
            argv = [f"--{self.device}"]
        if self.package is not None:
            argv += ["--package", self.package]
        return argv + list(self.extra_args)


@dataclass(frozen=True)
class Capacity:
    """What a device holds, in the units of :class:`hwquant.estimate.synth.SynthResult`.

    Attributes
    ----------
    lut, ff, dsp, bram : int
        LUTs (LUT4 or LUT6 by family), flip-flops, DSP/multiplier blocks, block RAMs.
    source : mapping of str to str
        Where each of the four numbers comes from.
    """

    lut: int
    ff: int
    dsp: int
    bram: int
    source: MappingProxyType

    def as_resources(self):
        """The capacity as a :class:`hwquant.estimate.resources.Resources`."""
        from .estimate.resources import Resources

        return Resources(lut=self.lut, ff=self.ff, dsp=self.dsp, bram=self.bram)


@dataclass(frozen=True)
class Board:
    """One board, as read from its TOML file (see the module documentation for the schema).

    Attributes
    ----------
    id, name, family, device, package : str
        Identity of the board and its FPGA; ``family`` is one of :data:`FAMILIES`.
    speed : str
        Speed grade of the part, as the vendor's part number spells it (see
        :data:`SPEED_GRADES`); ``""`` for iCE40.
    clock_pin : str
        Package pin of the board clock.
    clock_mhz : float
        Frequency of the board clock the design runs from.
    amaranth_board : str or None
        ``"module:Class"`` of the amaranth-boards platform, if it has the board.
    uart : UartPins or None
        Host-link pins; ``None`` means "from platform" (the amaranth-boards ``uart`` resource).
    nextpnr : NextpnrTarget or None
        ``None`` when no open place & route exists (Xilinx 7-series).
    capacity : Capacity
    path : str
        The file it was read from.
    """

    id: str
    name: str
    family: str
    device: str
    package: str
    speed: str
    clock_pin: str
    clock_mhz: float
    amaranth_board: str | None
    uart: UartPins | None
    nextpnr: NextpnrTarget | None
    capacity: Capacity
    path: str

    def platform_class(self):
        """Import and return the amaranth-boards platform class.

        Raises
        ------
        ValueError
            The board has no amaranth-boards platform.
        ImportError
            The module or class does not exist.
        """
        if self.amaranth_board is None:
            raise ValueError(f"Board '{self.id}' has no amaranth-boards platform")
        module_name, _, class_name = self.amaranth_board.partition(":")
        module = importlib.import_module(module_name)
        try:
            return getattr(module, class_name)
        except AttributeError:
            raise ImportError(f"Board '{self.id}': module {module_name!r} has no platform "
                              f"class {class_name!r}") from None


# -- Strict parsing ----------------------------------------------------------------------------

class BoardTypeError(TypeError, ValueError):
    """A key of a board file has a value of the wrong type: bad input, like every other schema
    error (hence also a :class:`ValueError`)."""


class _Reader:
    """Checks one TOML table: every key known, required keys present, types right."""

    def __init__(self, path, table, where=""):
        self.path, self.table, self.where = path, table, where

    def _name(self, key):
        return f"{self.where}.{key}" if self.where else key

    def reject_unknown(self, known):
        for key in self.table:
            if key not in known:
                raise ValueError(f"Board file {self.path}: unknown key '{self._name(key)}'; "
                                 f"expected one of {', '.join(known)}")

    def get(self, key, types, *, required=True, default=None):
        if key not in self.table:
            if required:
                raise ValueError(f"Board file {self.path}: missing key '{self._name(key)}'")
            return default
        value = self.table[key]
        if isinstance(value, bool) or not isinstance(value, types):
            names = " or ".join(t.__name__ for t in (types if isinstance(types, tuple)
                                                     else (types,)))
            raise BoardTypeError(f"Board file {self.path}: key '{self._name(key)}' must be "
                            f"{names}, not {value!r}")
        return value

    def sub(self, key, *, required=True):
        table = self.get(key, dict, required=required)
        return None if table is None else _Reader(self.path, table, self._name(key))


_TOP_KEYS = ("id", "name", "family", "device", "package", "speed", "clock_pin", "clock_mhz",
             "amaranth_board", "uart", "nextpnr", "capacity")
_CAPACITY_KEYS = ("lut", "ff", "dsp", "bram")


def _parse(path, text):
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"Board file {path}: {error}") from None
    top = _Reader(path, data)
    top.reject_unknown(_TOP_KEYS)

    board_id = top.get("id", str)
    family = top.get("family", str)
    if family not in FAMILIES:
        raise ValueError(f"Board file {path}: family must be one of {', '.join(FAMILIES)}, "
                         f"not {family!r}")
    speed = top.get("speed", str)
    pattern, allowed = SPEED_GRADES[family]
    if not re.fullmatch(pattern, speed):
        raise ValueError(f"Board file {path}: speed for family {family} must be {allowed}, "
                         f"not {speed!r}")
    clock_pin = top.get("clock_pin", str)
    if not clock_pin:
        raise ValueError(f"Board file {path}: clock_pin must name a package pin, not ''")
    clock_mhz = float(top.get("clock_mhz", (int, float)))
    if not clock_mhz > 0:
        raise ValueError(f"Board file {path}: clock_mhz must be positive, not {clock_mhz!r}")
    amaranth_board = top.get("amaranth_board", str) or None
    if amaranth_board is not None and amaranth_board.count(":") != 1:
        raise ValueError(f"Board file {path}: amaranth_board must be 'module:Class', not "
                         f"{amaranth_board!r}")

    uart_value = top.get("uart", (str, dict))
    if isinstance(uart_value, str):
        if uart_value != _FROM_PLATFORM:
            raise ValueError(f"Board file {path}: uart must be a table of rx/tx pins or "
                             f"'{_FROM_PLATFORM}', not {uart_value!r}")
        if amaranth_board is None:
            raise ValueError(f"Board file {path}: uart is '{_FROM_PLATFORM}', but the board "
                             f"names no amaranth_board")
        uart = None
    else:
        reader = top.sub("uart")
        reader.reject_unknown(("rx", "tx"))
        uart = UartPins(rx=reader.get("rx", str), tx=reader.get("tx", str))

    nextpnr = None
    reader = top.sub("nextpnr", required=False)
    if reader is not None:
        reader.reject_unknown(("tool", "device", "package", "extra_args"))
        tool = reader.get("tool", str)
        if tool not in NEXTPNR_TOOLS:
            raise ValueError(f"Board file {path}: nextpnr.tool must be one of "
                             f"{', '.join(NEXTPNR_TOOLS)}, not {tool!r}")
        extra = reader.get("extra_args", list, required=False, default=[])
        if not all(isinstance(arg, str) for arg in extra):
            raise ValueError(f"Board file {path}: nextpnr.extra_args must be a list of "
                             f"strings, not {extra!r}")
        if "--speed" in extra and (extra.index("--speed") + 1 == len(extra)
                                   or extra[extra.index("--speed") + 1] != speed):
            raise ValueError(f"Board file {path}: nextpnr.extra_args pass --speed, which "
                             f"must be followed by the board's speed {speed!r}")
        nextpnr = NextpnrTarget(tool=tool, device=reader.get("device", str),
                                package=reader.get("package", str, required=False),
                                extra_args=tuple(extra))

    reader = top.sub("capacity")
    reader.reject_unknown((*_CAPACITY_KEYS, "source"))
    numbers = {}
    for key in _CAPACITY_KEYS:
        value = reader.get(key, int)
        if value < 0:
            raise ValueError(f"Board file {path}: capacity.{key} must be non-negative, not "
                             f"{value!r}")
        numbers[key] = value
    source_reader = reader.sub("source")
    source_reader.reject_unknown(_CAPACITY_KEYS)
    source = {key: source_reader.get(key, str) for key in _CAPACITY_KEYS}

    return Board(
        id=board_id, name=top.get("name", str), family=family, device=top.get("device", str),
        package=top.get("package", str), speed=speed, clock_pin=clock_pin, clock_mhz=clock_mhz, amaranth_board=amaranth_board,
        uart=uart, nextpnr=nextpnr,
        capacity=Capacity(**numbers, source=MappingProxyType(source)), path=str(path))


# -- Bundled boards ----------------------------------------------------------------------------

def _board_dir():
    """The bundled board files: ``hwquant.board_files``, else ``<source tree>/boards``."""
    try:
        from importlib import resources

        files = resources.files("hwquant.board_files")
        if any(entry.name.endswith(".toml") for entry in files.iterdir()):
            return files
    except (ModuleNotFoundError, FileNotFoundError, NotADirectoryError, TypeError):
        pass
    return Path(__file__).resolve().parent.parent / "boards"


def _user_files(boards_dir):
    """``{id: path}`` of the ``*.toml`` files of a user's board directory."""
    directory = Path(boards_dir)
    if not directory.is_dir():
        raise ValueError(f"Boards directory {directory} does not exist or is not a directory")
    return {path.name.removesuffix(".toml"): path for path in sorted(directory.glob("*.toml"))}


def list_boards(boards_dir=None):
    """Identifiers of the bundled boards (and those of ``boards_dir``), sorted.

    Parameters
    ----------
    boards_dir : path-like, optional
        A directory of user board files (``<id>.toml``).

    Returns
    -------
    list of str

    Raises
    ------
    ValueError
        ``boards_dir`` is not a directory, or one of its files has a bundled board's name.
    """
    bundled = [entry.name.removesuffix(".toml") for entry in _board_dir().iterdir()
               if entry.name.endswith(".toml")]
    user = _user_files(boards_dir) if boards_dir is not None else {}
    clash = sorted(set(user) & set(bundled))
    if clash:
        raise ValueError(f"Board file {user[clash[0]]}: '{clash[0]}' is a bundled board; "
                         f"give the board another id and file name")
    return sorted([*bundled, *user])


def board_path(board_id, boards_dir=None):
    """Where board ``board_id`` is read from: a path (user boards) or ``None`` (bundled).

    Raises
    ------
    ValueError
        No such board; the message suggests the closest names.
    """
    known = list_boards(boards_dir)
    if board_id not in known:
        close = difflib.get_close_matches(board_id, known, n=3, cutoff=0.5)
        hint = f" (did you mean {' or '.join(repr(name) for name in close)}?)" if close else ""
        where = f" (bundled and in {boards_dir})" if boards_dir is not None else ""
        raise ValueError(f"Unknown board {board_id!r}{hint}; known boards{where}: "
                         f"{', '.join(known)}")
    if boards_dir is not None:
        return _user_files(boards_dir).get(board_id)
    return None


def load_board(id_or_path, boards_dir=None):
    """Read a board by identifier (bundled, or a file of ``boards_dir``) or by the path of a
    TOML file.

    Parameters
    ----------
    id_or_path : str or path-like
        ``"icebreaker"``, or a path ending in ``.toml``.
    boards_dir : path-like, optional
        A directory of user board files, searched beside the bundled ones.

    Returns
    -------
    Board

    Raises
    ------
    ValueError
        No such board (the closest names are suggested), or the file breaks the schema
        (unknown key, missing key, unknown family, bad value); the message names the file and
        the key.
    BoardTypeError
        A key of the file has a value of the wrong type (a ``TypeError`` and a
        ``ValueError``).
    FileNotFoundError
        The path does not exist.
    """
    if not isinstance(id_or_path, (str, Path)):
        raise TypeError(f"Board must be an identifier or a path, not {id_or_path!r}")
    text_id = str(id_or_path)
    if isinstance(id_or_path, Path) or text_id.endswith(".toml") or "/" in text_id:
        path = Path(id_or_path)
        return _parse(path, path.read_text(encoding="utf-8"))
    path = board_path(text_id, boards_dir)
    if path is None:
        name = f"{text_id}.toml"
        board = _parse(name, (_board_dir() / name).read_text(encoding="utf-8"))
    else:
        name = str(path)
        board = _parse(path, path.read_text(encoding="utf-8"))
    if board.id != text_id:
        raise ValueError(f"Board file {name}: id must match the file name ({text_id!r}), not "
                         f"{board.id!r}")
    return board


def boards_table(boards_dir=None):
    """Every board (bundled and of ``boards_dir``), loaded and validated, as report rows.

    Returns
    -------
    list of dict
        One row per board: identity, part, clock, UART pins, place-and-route tool, capacity
        and the capacity sources.
    """
    rows = []
    for board_id in list_boards(boards_dir):
        board = load_board(board_id, boards_dir)
        cap = board.capacity
        rows.append({
            "id": board.id, "name": board.name, "family": board.family,
            "device": board.device, "package": board.package, "speed": board.speed,
            "clock_pin": board.clock_pin, "clock_mhz": board.clock_mhz,
            "uart": None if board.uart is None else {"rx": board.uart.rx, "tx": board.uart.tx},
            "amaranth_board": board.amaranth_board,
            "nextpnr": None if board.nextpnr is None else board.nextpnr.tool,
            "capacity": {key: getattr(cap, key) for key in _CAPACITY_KEYS},
            "capacity_source": dict(cap.source), "path": board.path,
        })
    return rows
