"""Cost of the constant-matrix engine (:class:`hwquant.hw.cmvm.ConstantMatrix`) from its adder
graph (:mod:`hwquant.cmvm`, pure Python): one adder per graph node, no multipliers, no DSP
blocks, no registers when combinational (the MVU's registers are costed by
:mod:`hwquant.estimate.mvu`). A pipelined engine (the layer's ``Fold.stages > 0``) adds
:attr:`hwquant.cmvm.PipelinePlan.register_bits` flip-flops, every live signal's width at
every cut it crosses (:func:`pipeline_register_bits`; the MVU's face adds them to its
``engine_pipeline`` row, :func:`hwquant.estimate.mvu.engine_pipeline`); its adders are the
same.

Per node, as Yosys 0.70 maps it (measured on single adders and on whole graphs):

* xilinx: one LUT per bit where both operands have logic (above the overlap the ``CARRY4``
  passes the one operand through). A signed operand's sign-extension bits count as its bits
  (each needs a LUT: the chain adds the sign, it does not pass the other operand through), so
  do a subtrahend's inverted zeros above its top (ones); plus, when it subtracts, an inverter
  per subtrahend bit outside the overlap;
* ice40 (and the other LUT4 families, through :func:`hwquant.estimate.resources.adder`): one
  LUT per result bit that needs logic (the pass-through low bits cost nothing, the carry-out
  none), plus one LUT per subtrahend bit (Yosys inverts it beside the carry chain);
* plus :data:`NODE_OVERHEAD` LUTs per node.

Calibration: two 8x16 matrices (INQ 4-bit, random 4-bit weights; unsigned 8-bit inputs),
``-nodsp``: within 2 % on xilinx and ice40. On the matrices of ``benchmarks/bench_cmvm.py``
(Yosys 0.70, ``-nodsp``, the graphs of this construction with a subtraction penalty of 1),
xilinx: 16x64 random 4-bit -1.3 % (8,115 vs 8,221 LUT), 16x64 INQ +1.7 % (5,148 vs 5,061),
the CNN's first layer +0.3 % (1,951 vs 1,945); without the sign-extension bits the face was
-3.4 %, +1.2 %, -2.2 %. ice40: -13.5 %, -8.7 %, +3.2 % (wide graphs cost the LUT4 families
more per node than the small calibration matrices). With the penalty of 2 (the default):
xilinx -2.5 %, +1.0 %, +0.9 %; ice40 -13.1 %, -9.8 %, +4.1 %. ecp5 and gowin are not
measured.
"""

from __future__ import annotations

from ..cmvm import layer_adder_graph, pipeline_plan
from ..ir import range_bits
from .resources import Resources, adder

__all__ = ["NODE_OVERHEAD", "graph_resources", "node_logic_bits", "pipeline_register_bits",
           "resources"]

#: LUTs per adder beyond :func:`node_logic_bits` (see the module docstring).
NODE_OVERHEAD = 0.4


def node_logic_bits(graph, node, family) -> int:
    """Adder bits of ``node`` that need a LUT on ``family`` (see the module docstring)."""
    la, ha = graph.signal_range(node.a)
    lb, hb = graph.signal_range(node.b)
    wa, wb = range_bits(la, ha), range_bits(lb, hb)
    if family != "xilinx":
        subtrahend = wb if node.neg_b else wa if node.neg_a else 0
        return max(node.cost_bits - 1, 1) + subtrahend
    width = node.bits
    low = max(node.shift_a, node.shift_b)
    # An operand's bits reach up to its top, or (signed: sign extension; subtracted: the
    # inverted zeros are ones) up to the result's top.
    top_a = width if la < 0 or node.neg_a else node.shift_a + wa
    top_b = width if lb < 0 or node.neg_b else node.shift_b + wb
    high = min(top_a, top_b, width)
    overlap = max(0, high - low)
    if not (node.neg_a or node.neg_b):
        return overlap
    # The subtrahend's own bits outside the overlap are inverted, a LUT each.
    s, w = (node.shift_b, wb) if node.neg_b else (node.shift_a, wa)
    inside = max(0, min(s + w, high) - max(s, low))
    return overlap + w - inside


def graph_resources(graph, family, *, stages=0) -> Resources:
    """Resources of the adder graph ``graph`` on ``family``, with ``stages`` pipeline register
    cuts (:class:`hwquant.hw.cmvm.ConstantMatrix`'s option; 0: combinational, no FF)."""
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
    return total + Resources(lut=round(NODE_OVERHEAD * count),
                             ff=pipeline_register_bits(graph, stages))


def pipeline_register_bits(graph, stages) -> int:
    """Flip-flops of ``stages`` pipeline cuts in ``graph`` (0 when combinational)."""
    return pipeline_plan(graph, stages).register_bits if stages else 0


def resources(layer, weights, family) -> Resources:
    """Resources of the constant-matrix engine of the fully unrolled ``layer`` (``weights``
    ``(OC, F)`` in window-lane order)."""
    return graph_resources(layer_adder_graph(layer, weights), family)
