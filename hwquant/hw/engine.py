"""The MVU-level dot engine: the contract an arithmetic kind implements to plug into the
:class:`~hwquant.hw.mvu.MatrixVectorUnit`, and :class:`LaneEngine`, the adapter that serves
every kind whose arithmetic is one plain sum of products per output channel (``fixed``,
``pow2``) through its per-lane dot engine.

The contract
------------

The MVU owns the streams, the input buffer, the weight ROM, the fold counters, the
accumulators, the pipeline and the epilogue. One engine per MVU computes, for one beat (the
``SIMD`` input lanes of slice ``sf`` and the ROM word of fold ``nf``, slice ``sf``), the
per-beat contributions of the ``PE`` output channels ``nf*PE .. nf*PE + PE - 1``; the MVU sums
them over the ``SF`` slices of a vector and hands the sums back to the engine's *combine*
step, whose result is the channel's ``ACC`` (what the epilogue adds the bias to). A kind
subclasses :class:`Engine` and provides:

* ``parts_per_pe(layer)`` -> ``P >= 1``: partial sums per PE (``fixed``: 1; Binarized-DCNN:
  one per basis x plane; asymmetric ternary could keep two, the positive and negative sums).
* ``shared_count(layer)`` -> ``S >= 0``: sums shared by all PEs, computed from ``x`` alone
  (Binarized-DCNN: the popcount of each bit plane; a template kind: the window sum).
* ``word_bits(layer, *, pe, simd)`` -> width of one weight-ROM word (all ``PE`` channels of
  one beat); 0 if the kind keeps no weights in a ROM.
* ``encode(layer, weights, nf, sf, *, pe, simd)`` -> the ROM word (an int) of fold ``nf``,
  slice ``sf``; ``weights`` is the ``(OC, F)`` matrix in window-lane order.
* ``part_ranges(layer, weights)`` -> int array ``(OC, P, 2)``: worst-case ``(lo, hi)`` of each
  partial sum over a whole vector, per channel. Every per-beat contribution's own range must
  contain 0 (true of products and popcounts), so every running sum stays inside the full
  vector's range and accumulators sized from it never overflow.
* ``shared_ranges(layer)`` -> list of ``S`` pairs ``(lo, hi)``, likewise.
* ``combine_ranges(layer, weights)`` -> int array ``(OC, 2)``: range of ``ACC`` per channel.
* ``__init__(layer, weights, *, pe, simd)`` and the members below; ``weights`` are constants
  of the logic when the MVU is fully unrolled (``NF = SF = 1``, no ``w`` member) and come from
  the ROM otherwise.
* ``combine(m, parts, shared, nf)`` (hardware hook): ``parts[p][j]`` the accumulated partial
  sums (signed values), ``shared[s]`` the shared ones, ``nf`` the output-fold index (a value;
  per-channel constants of channel ``nf*PE + p`` are chosen with it, e.g. Binarized-DCNN's
  coefficients ``c_a``). Adds its logic to module ``m`` (combinational; the MVU registers the
  result) and returns ``PE`` values, each inside :meth:`combine_ranges` of its channel.

Members of an engine (combinational, latency 0, unless pipelined; the MVU registers ``parts``
and ``shared``):

* ``x``: ``In(data.ArrayLayout(lane_shape(layer.in_format), simd))``, the beat's lanes.
* ``w``: ``In(unsigned(word_bits))``, the ROM word, only when folded and ``word_bits > 0``.
* ``parts``: ``Out(data.ArrayLayout(signed(part_bits), pe * P))``, lane ``p*P + j`` is partial
  sum ``j`` of PE ``p`` for this beat.
* ``shared``: ``Out(data.ArrayLayout(signed(shared_bits), S))``, only when ``S > 0``.
* ``en``: ``In(1, init=1)``, only when pipelined: the engine's registers advance while it is
  high (the MVU drives its pipeline enable).

Pipelining: a fully unrolled engine that builds a constant-matrix adder graph
(:func:`hwquant.engine_stages.engine_graph`) takes the layer's :attr:`hwquant.ir.Fold.stages`
``= L`` cuts in it (:attr:`Engine.latency`): ``parts`` and ``shared`` are then the sums of the
beat of ``L`` enabled cycles ago (outputs made outside the graph pass through ``L`` registers,
:meth:`Engine.delayed`). ``L > 0`` for any other engine is a ``ValueError``.

The registry names each kind's engine class; :func:`engine_for` resolves it.
"""

import numpy as np
from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .. import ir
from ..engine_shape import EngineShape
from .streams import lane_shape

__all__ = ["Engine", "LaneEngine", "engine_for"]


def engine_for(layer):
    """The MVU engine class of ``layer``'s arithmetic kind (the registry's hardware face).

    Kinds whose registry row names no MVU engine use :class:`LaneEngine` over their per-lane
    dot engine. A layer whose fold names the ``memo`` engine (:data:`hwquant.ir.ENGINES`)
    gets :class:`hwquant.hw.memo.MemoEngine` whatever its kind."""
    from .. import kinds

    if layer.fold.engine == "memo":
        from .memo import MemoEngine

        return MemoEngine

    lookup = getattr(kinds, "hw_engine", None)
    return LaneEngine if lookup is None else lookup(layer)


class Engine(EngineShape, wiring.Component):
    """Base class of MVU-level dot engines; see the module docstring for the contract.

    Subclasses call ``super().__init__(layer, weights, pe=..., simd=..., part_bits=...,
    shared_bits=...)``, which validates the fold and builds the members.

    Parameters
    ----------
    layer : :class:`hwquant.ir.Conv2d` or :class:`hwquant.ir.Linear`
    weights : int array (OC, F)
        In window-lane order.
    pe, simd : int
        Output channels and input lanes per beat.

    Members
    -------
    x : ``In(data.ArrayLayout(lane_shape(layer.in_format), simd))``
    w : ``In(unsigned(word_bits))``, only when folded and the kind has a weight ROM
    parts : ``Out(data.ArrayLayout(signed(part_bits), pe * P))``
    shared : ``Out(data.ArrayLayout(signed(shared_bits), S))``, only when ``S > 0``
    """

    # -- static face (override): the sums and their ranges come from the kind's shape
    # (:class:`hwquant.engine_shape.EngineShape`, shared with the cost model); the ROM here.
    @classmethod
    def word_bits(cls, layer, *, pe, simd) -> int:
        raise NotImplementedError

    @classmethod
    def encode(cls, layer, weights, nf, sf, *, pe, simd) -> int:
        raise NotImplementedError

    # -- instance ------------------------------------------------------------------------------
    def __init__(self, layer, weights, *, pe, simd, part_bits, shared_bits=2):
        oc, fan_in = layer.out_channels, layer.fan_in
        if pe < 1 or simd < 1 or oc % pe or fan_in % simd:
            raise ValueError(f"Layer '{layer.name}': PE={pe} must divide {oc} output channels "
                             f"and SIMD={simd} must divide fan-in {fan_in}")
        self._layer, self._weights = layer, np.asarray(weights, dtype=np.int64)
        self._pe, self._simd = pe, simd
        self._nf, self._sf = oc // pe, fan_in // simd
        self._stages = layer.fold.stages
        if self._stages:
            from ..engine_stages import check_stages

            if (pe, simd) != (layer.fold.pe, layer.fold.simd):
                raise ValueError(f"Layer '{layer.name}': a pipelined engine is built at the "
                                 f"layer's fold, not PE={pe} SIMD={simd}")
            check_stages(layer, self._weights)
        members = {"x": In(data.ArrayLayout(lane_shape(layer.in_format), simd)),
                   "parts": Out(data.ArrayLayout(signed(max(part_bits, 2)),
                                                 pe * self.parts_per_pe(layer)))}
        wb = self.word_bits(layer, pe=pe, simd=simd)
        if not self.constant and wb > 0:
            members["w"] = In(unsigned(wb))
        if self.shared_count(layer):
            members["shared"] = Out(data.ArrayLayout(signed(max(shared_bits, 2)),
                                                     self.shared_count(layer)))
        if self._stages:
            members["en"] = In(1, init=1)
        super().__init__(members)

    @property
    def layer(self):
        return self._layer

    @property
    def latency(self) -> int:
        """Cycles (with ``en`` high) from ``x`` to ``parts``/``shared``: the pipeline cuts of
        its adder graph (0: combinational)."""
        return self._stages

    def delayed(self, m, value, name):
        """``value`` through :attr:`latency` registers advancing on ``en`` (itself when
        combinational): an output made outside the pipelined graph, kept in step with it."""
        for k in range(self._stages):
            reg = Signal.like(value, name=f"{name}_p{k + 1}")
            with m.If(self.en):
                m.d.sync += reg.eq(value)
            value = reg
        return value

    def constant_matrix(self, m, graph, width):
        """Add :class:`hwquant.hw.cmvm.ConstantMatrix` of ``graph`` (outputs ``width`` bits)
        to ``m`` as ``matrix``, pipelined with :attr:`latency` cuts on ``en``, fed ``x``."""
        from .cmvm import ConstantMatrix

        m.submodules.matrix = matrix = ConstantMatrix(graph, lane_shape(self._layer.in_format),
                                                      width, stages=self._stages)
        m.d.comb += matrix.x.eq(self.x)
        if self._stages:
            m.d.comb += matrix.en.eq(self.en)
        return matrix

    @property
    def constant(self) -> bool:
        """Fully unrolled: the weights are constants of the logic, no ROM word."""
        return self._nf * self._sf == 1

    def combine(self, m, parts, shared, nf):
        """Per-PE ``ACC`` from the accumulated sums: identity on the single partial sum."""
        return [p[0] for p in parts]


class LaneEngine(Engine):
    """``PE`` per-lane dot engines of the layer's kind side by side, one partial sum each.

    The per-lane engine class comes from :func:`hwquant.kinds.hw_dot_engine` and is used
    through its static interface (``options``, ``value_range``, ``encode_weights``,
    ``word_bits``): the ROM word of a beat is the ``PE`` per-lane words, PE 0 in the LSBs;
    ``ACC`` is the plain sum (combine is the identity). Resources: those of ``PE`` per-lane
    engines of ``SIMD`` products; a fully unrolled layer of a kind with the ``constant_matrix``
    flag (:func:`hwquant.kinds.uses_constant_matrix`) instead builds the whole constant matrix
    as one shared adder graph (:mod:`hwquant.hw.cmvm`).
    """

    @staticmethod
    def _lane_class(layer):
        from ..kinds import hw_dot_engine

        cls = hw_dot_engine(layer)
        return cls, cls.options(layer)

    @classmethod
    def word_bits(cls, layer, *, pe, simd) -> int:
        lane, opts = cls._lane_class(layer)
        return pe * lane.word_bits(simd, layer.weight_bits, **opts)

    @classmethod
    def encode(cls, layer, weights, nf, sf, *, pe, simd) -> int:
        lane, opts = cls._lane_class(layer)
        bits = lane.word_bits(simd, layer.weight_bits, **opts)
        word = 0
        for p in range(pe):
            row = np.asarray(weights)[nf * pe + p, sf * simd:(sf + 1) * simd]
            word |= lane.encode_weights(row, layer.weight_bits, **opts) << (p * bits)
        return word

    @classmethod
    def part_ranges(cls, layer, weights) -> np.ndarray:
        lane, opts = cls._lane_class(layer)
        weights = np.asarray(weights)
        rows = [lane.value_range(row.tolist(), simd=len(row), x_format=layer.in_format,
                                 weight_bits=layer.weight_bits, **opts) for row in weights]
        return np.array(rows, dtype=np.int64).reshape(len(weights), 1, 2)

    @classmethod
    def combine_ranges(cls, layer, weights) -> np.ndarray:
        return cls.part_ranges(layer, weights)[:, 0, :]

    def __init__(self, layer, weights, *, pe, simd):
        lane, opts = self._lane_class(layer)
        self._lane, self._opts = lane, opts
        weights = np.asarray(weights, dtype=np.int64)
        constant = (layer.out_channels // pe) * (layer.fan_in // simd) == 1
        if constant:
            ranges = [lane.value_range(weights[p].tolist(), simd=simd, x_format=layer.in_format,
                                       weight_bits=layer.weight_bits, **opts)
                      for p in range(pe)]
        else:
            ranges = [lane.value_range(None, simd=simd, x_format=layer.in_format,
                                       weight_bits=layer.weight_bits, **opts)]
        bits = max(ir.signed_bits_for(min(lo, 0), max(hi, 0)) for lo, hi in ranges)
        super().__init__(layer, weights, pe=pe, simd=simd, part_bits=bits)

    def elaborate(self, platform):
        from ..kinds import uses_constant_matrix

        if self.constant and uses_constant_matrix(self._layer):
            return self._constant_matrix()
        m = Module()
        layer, lane = self._layer, self._lane
        if not self.constant:
            bits = lane.word_bits(self._simd, layer.weight_bits, **self._opts)
        for p in range(self._pe):
            if self.constant:
                eng = lane(simd=self._simd, x_format=layer.in_format,
                           weight_bits=layer.weight_bits, weights=self._weights[p].tolist(),
                           **self._opts)
            else:
                eng = lane(simd=self._simd, x_format=layer.in_format,
                           weight_bits=layer.weight_bits, **self._opts)
                m.d.comb += eng.w.eq(self.w[p * bits:(p + 1) * bits])
            m.submodules[f"pe{p}"] = eng
            m.d.comb += [eng.x.eq(self.x), self.parts[p].eq(eng.y)]
        return m

    def _constant_matrix(self):
        """Fully unrolled: the whole ``PE x SIMD`` constant matrix as one shared adder graph
        (:class:`hwquant.hw.cmvm.ConstantMatrix`) instead of ``PE`` engines of products."""
        from ..cmvm import layer_adder_graph

        m = Module()
        graph = layer_adder_graph(self._layer, self._weights)
        matrix = self.constant_matrix(m, graph, self.parts.shape().elem_shape.width)
        for p in range(self._pe):
            m.d.comb += self.parts[p].eq(matrix.y[p])
        return m
