"""Cost of the constant-matrix engine (:class:`hwquant.hw.cmvm.ConstantMatrix`) from its adder
graph (:mod:`hwquant.cmvm`, pure Python): one adder per graph node, no multipliers, no DSP
blocks, no registers (the engine is combinational; the MVU's registers are costed by
:mod:`hwquant.estimate.mvu`).

Per node, as Yosys 0.70 maps it (measured on single adders and on whole graphs):

* xilinx: one LUT per bit where both operands have bits (above the overlap the ``CARRY4``
  passes the one operand through), plus, when it subtracts, an inverter per subtrahend bit
  outside the overlap;
* ice40 (and the other LUT4 families, through :func:`hwquant.estimate.resources.adder`): one
  LUT per result bit that needs logic (the pass-through low bits cost nothing, the carry-out
  none), plus one LUT per subtrahend bit (Yosys inverts it beside the carry chain);
* plus :data:`NODE_OVERHEAD` LUTs per node.

Calibration: two 8x16 matrices (INQ 4-bit, random 4-bit weights; unsigned 8-bit inputs),
``-nodsp``: within 2 % on xilinx and ice40. ecp5 and gowin are not measured.
"""

from __future__ import annotations

from ..cmvm import layer_adder_graph
from ..ir import range_bits
from .resources import Resources, adder

__all__ = ["NODE_OVERHEAD", "graph_resources", "node_logic_bits", "resources"]

#: LUTs per adder beyond :func:`node_logic_bits` (see the module docstring).
NODE_OVERHEAD = 0.4


def node_logic_bits(graph, node, family) -> int:
    """Adder bits of ``node`` that need a LUT on ``family`` (see the module docstring)."""
    wa = range_bits(*graph.signal_range(node.a))
    wb = range_bits(*graph.signal_range(node.b))
    low = max(node.shift_a, node.shift_b)
    overlap = max(0, min(node.shift_a + wa, node.shift_b + wb) - low)
    subtrahend = wb if node.neg_b else wa if node.neg_a else 0
    if family == "xilinx":
        return overlap + max(0, subtrahend - overlap)
    return max(node.cost_bits - 1, 1) + subtrahend


def graph_resources(graph, family) -> Resources:
    """Resources of the adder graph ``graph`` on ``family``."""
    total = Resources()
    count = 0
    for node in graph.nodes:
        total += adder(max(node_logic_bits(graph, node, family), 1), family)
        count += 1
    for j, (signal, _, negate) in enumerate(graph.outputs):
        if negate and signal >= 0:  # 0 - y: a subtractor as wide as the output
            bits = range_bits(*graph.output_ranges[j])
            total += adder(bits if family == "xilinx" else 2 * bits, family)
            count += 1
    return total + Resources(lut=round(NODE_OVERHEAD * count))


def resources(layer, weights, family) -> Resources:
    """Resources of the constant-matrix engine of the fully unrolled ``layer`` (``weights``
    ``(OC, F)`` in window-lane order)."""
    return graph_resources(layer_adder_graph(layer, weights), family)
