"""Pin and clock constraints of a board top, one writer per family, from the board file
(:class:`hwquant.boards.Board`).

The board top (:class:`hwquant.fpga_flow.BoardPins`) has three ports: ``clk`` (the board
clock), ``rx`` (UART from the host) and ``tx`` (UART to the host); its reset is the power-on
reset of :class:`hwquant.hw.board_top.BoardTop`, so no reset pin is constrained. Each writer
returns the text of the family's constraint file:

* iCE40, PCF (nextpnr-ice40 ``--pcf``): ``set_io`` per port, ``set_frequency`` of the clock.
* ECP5, LPF (nextpnr-ecp5 ``--lpf``): ``LOCATE COMP``/``IOBUF PORT`` per port,
  ``FREQUENCY PORT`` of the clock.
* Gowin, CST (nextpnr-himbaechel ``--vopt cst=``): ``IO_LOC``/``IO_PORT`` per port (the
  frequency goes on the nextpnr command line, ``--freq``).
* Xilinx, XDC (Vivado ``read_xdc``): ``PACKAGE_PIN``/``IOSTANDARD`` per port, a
  ``create_clock`` of the board clock's period.

Every I/O is ``LVCMOS33``: the clock and UART pins of all bundled boards sit in 3.3 V banks.
"""

from __future__ import annotations

__all__ = ["IO_STANDARD", "PORTS", "CONSTRAINT_FILES", "constraints_for", "pcf", "lpf", "cst",
           "xdc"]

#: The I/O standard of every constrained port.
IO_STANDARD = "LVCMOS33"

#: The board top's ports, in the order the files list them.
PORTS = ("clk", "rx", "tx")

#: Per family, the constraint file's name in a build directory.
CONSTRAINT_FILES = {"ice40": "board.pcf", "ecp5": "board.lpf", "gowin": "board.cst",
                    "xilinx": "board.xdc"}


def _pins(board):
    """``{port: package pin}`` of the board top."""
    if board.uart is None:
        raise ValueError(f"Board '{board.id}': uart is 'from platform'; building a board top "
                         f"needs its rx/tx pins in the board file ([uart] rx = ..., tx = ...)")
    return {"clk": board.clock_pin, "rx": board.uart.rx, "tx": board.uart.tx}


def _header(board, comment):
    return (f"{comment} {board.name}: board clock {board.clock_mhz:g} MHz on pin "
            f"{board.clock_pin}, host UART rx/tx; written by hwquant build\n")


def pcf(board) -> str:
    """iCE40 PCF: ``set_io`` of the three ports and ``set_frequency clk <MHz>``."""
    pins = _pins(board)
    lines = [_header(board, "#")]
    lines += [f"set_io {port} {pins[port]}\n" for port in PORTS]
    lines.append(f"set_frequency clk {board.clock_mhz:g}\n")
    return "".join(lines)


def lpf(board) -> str:
    """ECP5 LPF: site and I/O type of the three ports, ``FREQUENCY PORT "clk"``."""
    pins = _pins(board)
    lines = [_header(board, "#")]
    for port in PORTS:
        lines.append(f'LOCATE COMP "{port}" SITE "{pins[port]}";\n')
        lines.append(f'IOBUF PORT "{port}" IO_TYPE={IO_STANDARD};\n')
    lines.append(f'FREQUENCY PORT "clk" {board.clock_mhz:g} MHZ;\n')
    return "".join(lines)


def cst(board) -> str:
    """Gowin CST: location and I/O type of the three ports."""
    pins = _pins(board)
    lines = [_header(board, "//")]
    for port in PORTS:
        lines.append(f'IO_LOC "{port}" {pins[port]};\n')
        lines.append(f'IO_PORT "{port}" IO_TYPE={IO_STANDARD};\n')
    return "".join(lines)


def xdc(board) -> str:
    """Xilinx XDC: package pin and I/O standard of the three ports, the board clock."""
    pins = _pins(board)
    period = 1000.0 / board.clock_mhz
    lines = [_header(board, "#")]
    for port in PORTS:
        lines.append(f"set_property -dict {{PACKAGE_PIN {pins[port]} IOSTANDARD "
                     f"{IO_STANDARD}}} [get_ports {port}]\n")
    lines.append(f"create_clock -name clk -period {period:.3f} [get_ports clk]\n")
    return "".join(lines)


_WRITERS = {"ice40": pcf, "ecp5": lpf, "gowin": cst, "xilinx": xdc}


def constraints_for(board) -> tuple:
    """``(file name, text)`` of the board's constraint file (:data:`CONSTRAINT_FILES`).

    Raises
    ------
    ValueError
        The board file names no UART pins (``uart = "from platform"``).
    """
    return CONSTRAINT_FILES[board.family], _WRITERS[board.family](board)
