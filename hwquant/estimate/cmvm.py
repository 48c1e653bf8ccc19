"""Cost of the constant-matrix engine (:class:`hwquant.hw.cmvm.ConstantMatrix`) from its adder
graph (:mod:`hwquant.cmvm`, pure Python): one adder per graph node, as wide as the node's
result bits that need logic (its pass-through low bits cost nothing), one negation per row
whose sum ends negative; no multipliers, no DSP blocks, no registers (the engine is
combinational; the MVU's registers are costed by :mod:`hwquant.estimate.mvu`).

Calibration (Yosys 0.70, ``-nodsp``, two 8x16 matrices of INQ 4-bit and random 4-bit weights,
unsigned 8-bit inputs): xilinx needs 1.3 LUT per adder beyond its logic bits, ice40 4.3 (the
carry chains' ends and the operand bits ABC does not fold into the chain); within 4 % on both.
ecp5 and gowin take the ice40 overhead on top of their own adder cost (not measured).
"""

from __future__ import annotations

from ..cmvm import layer_adder_graph
from .resources import Resources, adder

__all__ = ["NODE_OVERHEAD", "graph_resources", "resources"]


#: LUTs per adder beyond its logic bits (see the module docstring).
NODE_OVERHEAD = {"xilinx": 1.3, "ice40": 4.3, "ecp5": 4.3, "gowin": 4.3}


def graph_resources(graph, family) -> Resources:
    """Resources of the adder graph ``graph`` on ``family``."""
    total = Resources()
    count = 0
    for node in graph.nodes:
        bits = max(node.cost_bits - 1, 1)  # adder(b) is a b-bit operand, b + 1-bit sum
        total += adder(bits, family)
        count += 1
    for j, (signal, _, negate) in enumerate(graph.outputs):
        if negate and signal >= 0:
            lo, hi = graph.output_ranges[j]
            total += adder(max(abs(lo), abs(hi)).bit_length(), family)
            count += 1
    return total + Resources(lut=round(NODE_OVERHEAD.get(family, 4.3) * count))


def resources(layer, weights, family) -> Resources:
    """Resources of the constant-matrix engine of the fully unrolled ``layer`` (``weights``
    ``(OC, F)`` in window-lane order)."""
    return graph_resources(layer_adder_graph(layer, weights), family)
