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
* plus :data:`NODE_OVERHEAD` LUTs per node on the LUT4 families (none on xilinx).

Every node is its own carry-chain adder in the netlist (:class:`hwquant.hw.cmvm.ConstantMatrix`
keeps each result), which is what makes the count node by node hold. On the matrices of
``benchmarks/bench_cmvm.py`` (Yosys 0.70, ``-nodsp``, the default graphs), model against Yosys:
xilinx 16x64 random 4-bit -0.6 % (7,809 vs 7,854 LUT), 16x64 INQ -0.3 % (4,980 vs 4,996),
16x36 bit-masked -2.2 % (3,072 vs 3,142), the CNN's first layer -3.7 % (1,836 vs 1,907);
ice40 +1.4 % (8,792 vs 8,667), +2.2 % (5,694 vs 5,572), +0.9 % (3,629 vs 3,598), -0.2 %
(2,384 vs 2,389). (When Yosys was left to fold each row's adders into a carry-save tree the
ice40 counts were up to 13 % above the model, and the xilinx node overhead of 0.4 made the
model 4 % high once it was not.) ecp5 and gowin are not measured.
"""

from __future__ import annotations

from ..cmvm import layer_adder_graph, pipeline_plan
from ..ir import range_bits
from .resources import Resources, adder

__all__ = ["NODE_OVERHEAD", "graph_resources", "node_logic_bits", "pipeline_register_bits",
           "resources"]

#: LUTs per adder beyond :func:`node_logic_bits`, per family (see the module docstring): on
#: xilinx the overlap alone is within a few per cent of Yosys.
NODE_OVERHEAD = {"ice40": 0.4, "ecp5": 0.4, "gowin": 0.4, "xilinx": 0.0}


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
    return total + Resources(lut=round(NODE_OVERHEAD[family] * count),
                             ff=pipeline_register_bits(graph, stages))


def pipeline_register_bits(graph, stages) -> int:
    """Flip-flops of ``stages`` pipeline cuts in ``graph`` (0 when combinational)."""
    return pipeline_plan(graph, stages).register_bits if stages else 0


def resources(layer, weights, family) -> Resources:
    """Resources of the constant-matrix engine of the fully unrolled ``layer`` (``weights``
    ``(OC, F)`` in window-lane order)."""
    return graph_resources(layer_adder_graph(layer, weights), family)
