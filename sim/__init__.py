"""Simulation layer: cocotb + Verilator runs of emitted Verilog against expected streams.

:func:`run` builds a design with Verilator (once per distinct Verilog, in a content-addressed
directory) and runs the generic stream testbench :mod:`hwquant.sim.tb_stream` on it, driven by
a JSON-able spec of input beats and expected output beats; it returns the testbench's result
(every word compared, optional throughput figures). :class:`StreamSource`,
:class:`StreamSink` and :class:`StreamProbe` are the cocotb models of Amaranth ``lib.stream``
ports, for writing other testbenches. :func:`run_bulk` runs the same spec through a harness
that drives and captures the streams inside the simulator (:mod:`hwquant.sim.bulk`): the same
checks without Python on every clock edge, for whole vector sets.
"""

from .bulk import BULK_BUILD_ARGS, read_capture, render_harness, run_bulk
from .runner import BUILD_ARGS, build, run
from .streams import StreamProbe, StreamSink, StreamSource
from .tb_stream import SPEC_ENV, parse_spec
from .verilator import find_verilator, verilator_env

__all__ = [
    "BUILD_ARGS",
    "BULK_BUILD_ARGS",
    "SPEC_ENV",
    "StreamProbe",
    "StreamSink",
    "StreamSource",
    "build",
    "find_verilator",
    "parse_spec",
    "read_capture",
    "render_harness",
    "run",
    "run_bulk",
    "verilator_env",
]
