"""The constant-matrix engine: ``y = W @ x`` for constant integer ``W`` as one shared adder graph.

:class:`ConstantMatrix` is the hardware of :class:`hwquant.cmvm.AdderGraph` (signed-digit
recoding and common-subexpression elimination across the whole matrix): one adder or
subtractor per graph node, each exactly as wide as its node's range, the low bits below a
shifted operand's shift emitted as wires. It is what a fully unrolled layer of a kind with
constant integer weights (``fixed``, ``pow2`` incl. the TTQ sign scales) builds instead of one
``x * c`` product per weight, through :class:`hwquant.hw.engine.LaneEngine`.

Signature: ``x: In(ArrayLayout(x_shape, n_in))``, ``y: Out(ArrayLayout(signed(y_bits),
n_out))``, ``en: In(1, init=1)`` (the pipeline registers advance only while it is high; left
undriven it is tied high). By default combinational (latency 0); depth
:attr:`hwquant.cmvm.AdderGraph.depth` adders. With ``stages = S > 0`` the graph is cut by
depth into ``S + 1`` stages of at most ``ceil(depth / (S + 1))`` adders
(:func:`hwquant.cmvm.pipeline_plan`): every signal crossing a cut is registered (one
register chain per signal, shared by its users), and every output leaves after
``S`` cycles (:attr:`ConstantMatrix.latency`); a fully pipelined engine takes a vector every
cycle. Resources: :attr:`AdderGraph.adder_bits` LUTs (one per adder bit that needs logic, with
its carry; on xilinx only the bits where both operands have logic, the ``CARRY4`` passing the
rest through), no multipliers, no DSPs; plus :attr:`hwquant.cmvm.PipelinePlan.register_bits`
flip-flops when pipelined. Every node's result is kept (a ``keep`` attribute), so each node is
its own carry-chain adder in synthesis: left alone, Yosys folds a row's single-use adders into
one carry-save tree of full adders in LUTs, which on the 16x64 random 4-bit matrix of
``benchmarks/bench_cmvm.py`` takes 6.6 % more LUTs on xilinx (8,370 against 7,854, but 1,838
``CARRY4`` against 2,637) and 23 % more on iCE40 (10,693 against 8,667).

The MVU builds it with the layer's engine stages (:attr:`hwquant.ir.Fold.stages`, chosen by
:func:`hwquant.engine_stages.choose_stages`) and drives ``en`` with its own pipeline enable, so
a stall freezes the graph's registers with the rest of the unit; the MVU's latency grows by
``stages`` (:attr:`hwquant.hw.mvu.MatrixVectorUnit.latency`).
"""

from amaranth.hdl import Cat, Module, Shape, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..cmvm import pipeline_plan

__all__ = ["ConstantMatrix", "signal_shape"]


def signal_shape(lo: int, hi: int) -> Shape:
    """The smallest Amaranth shape holding ``lo..hi`` (unsigned when ``lo >= 0``)."""
    return Shape.cast(range(int(lo), int(hi) + 1)) if hi > lo else Shape.cast(
        range(int(lo), int(lo) + 2))


class ConstantMatrix(wiring.Component):
    """``y[j] = sum_i W[j, i] * x[i]`` as the adder graph ``graph`` (see the module docstring).

    Parameters
    ----------
    graph : :class:`hwquant.cmvm.AdderGraph`
    x_shape : Amaranth shape of one input lane (its range must lie in ``graph.input_ranges``)
    y_bits : width of every output lane (signed); at least each output's range
    stages : pipeline register cuts (default 0: combinational); ``y`` follows ``x`` by
        ``stages`` cycles in which ``en`` is high (:attr:`latency`), one vector a cycle
    separate_adders : every node's result carries a ``keep`` attribute (default), so
        synthesis maps each node to its own carry-chain adder, as the graph and its cost model
        count it; ``False`` lets Yosys re-associate chains of single-use adders into
        carry-save trees (its ``alumacc`` / ``maccmap``), for comparison
    """

    def __init__(self, graph, x_shape, y_bits, *, stages=0, separate_adders=True):
        self._graph = graph
        self._keep = {"keep": 1} if separate_adders else {}
        need = max([signal_shape(lo, hi).width + (0 if lo < 0 else 1)
                    for lo, hi in graph.output_ranges] + [2])
        if y_bits < need or stages < 0:
            self._MustUse__silence = True  # never elaborated: no "unused" warning
            if stages < 0:
                raise ValueError(f"Constant-matrix pipeline stages must be >= 0, not {stages}")
            raise ValueError(f"Constant-matrix outputs need {need} bits, not {y_bits}")
        self._plan = pipeline_plan(graph, stages)
        super().__init__({"x": In(data.ArrayLayout(x_shape, graph.n_inputs)),
                          "y": Out(data.ArrayLayout(signed(y_bits), graph.n_outputs)),
                          "en": In(1, init=1)})

    @property
    def graph(self):
        return self._graph

    @property
    def plan(self):
        """The :class:`hwquant.cmvm.PipelinePlan` (stages of every signal, register bits)."""
        return self._plan

    @property
    def latency(self) -> int:
        """Cycles from ``x`` to ``y``: the pipeline stages (0: combinational)."""
        return self._plan.stages

    def elaborate(self, platform):
        m = Module()
        g, plan = self._graph, self._plan
        sig = [self.x[i] for i in range(g.n_inputs)]
        # chains[s][k]: signal s in stage plan.signal_stage[s] + k (k registers later).
        chains = {}
        # Every pipeline register's update, enabled by en below. The registers have the
        # domain's reset (free in the FPGAs' flip-flops): reset-less ones made Yosys 0.70's
        # ABC9 pass fail an assertion on an ECP5 board top.
        regs = []

        def at(s, stage):
            chain = chains.setdefault(s, [sig[s]])
            while len(chain) <= stage - plan.signal_stage[s]:
                name = f"x{s}" if s < g.n_inputs else f"s{s - g.n_inputs}"
                reg = Signal(signal_shape(*g.signal_range(s)),
                             name=f"{name}_p{plan.signal_stage[s] + len(chain)}")
                regs.append(reg.eq(chain[-1]))
                chain.append(reg)
            return chain[stage - plan.signal_stage[s]]

        for k, node in enumerate(g.nodes):
            t = plan.signal_stage[g.n_inputs + k]
            sig.append(self._node(m, k, node, at(node.a, t), at(node.b, t), self._keep))
        for j, (s, shift, neg) in enumerate(g.outputs):
            if s < 0:
                m.d.comb += self.y[j].eq(0)
            elif not neg:
                m.d.comb += self.y[j].eq(at(s, plan.stages) << shift)
            elif plan.negate_stage[j] == plan.stages:
                m.d.comb += self.y[j].eq(-(at(s, plan.stages) << shift))
            else:
                m.d.comb += self.y[j].eq(self._delayed_negation(
                    m, j, at(s, plan.negate_stage[j]) << shift, regs))
        if regs:
            with m.If(self.en):
                m.d.sync += regs
        return m

    @staticmethod
    def _node(m, k, node, a, b, keep):
        """Signal ``s{k}``: the adder of ``node`` on the operand values ``a``, ``b`` (``keep``:
        the attributes of its result)."""
        out = Signal(signal_shape(node.lo, node.hi), name=f"s{k}", attrs=keep)
        if node.free_bits:
            # u + (+-o << d) == Cat(u[:f], (u >> f) +- (o << (d - f))), f <= width(u)
            f = node.free_bits
            high = (a >> f) + (-(b << (node.shift_b - f)) if node.neg_b
                               else b << (node.shift_b - f))
            hi_part = Signal(signed(out.shape().width - f + 1), name=f"s{k}_hi", attrs=keep)
            m.d.comb += [hi_part.eq(high), out.eq(Cat(a[:f], hi_part))]
        else:
            ta = a << node.shift_a
            tb = b << node.shift_b
            m.d.comb += out.eq((-ta if node.neg_a else ta) + (-tb if node.neg_b else tb))
        return out

    def _delayed_negation(self, m, j, v, regs):
        """``-v`` (output ``j``, made in its negation's stage) registered up to the last
        stage (the register updates appended to ``regs``)."""
        lo, hi = self._graph.output_ranges[j]
        neg = Signal(signal_shape(lo, hi), name=f"y{j}_neg")
        m.d.comb += neg.eq(-v)
        for t in range(self._plan.negate_stage[j] + 1, self._plan.stages + 1):
            reg = Signal(neg.shape(), name=f"y{j}_neg_p{t}")
            regs.append(reg.eq(neg))
            neg = reg
        return neg
