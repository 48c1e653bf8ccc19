"""Dot engines of the ``binary`` arithmetic kind: weights ``-1``/``+1``, no multiplier.

Written from ``docs/arithmetic.md`` ("Weight kinds", binary):

* **bipolar inputs**: ``ACC = 2 * popcount(XNOR(wb, xb)) - N`` over the ``N`` lanes, ``wb``/``xb``
  the code bits (1 = ``+1``). With constant weights (a fully unrolled MVU) the XNOR with a
  weight bit is the input bit or its inverse, which folds into the popcount's first LUT level:
  free. Folded, the weight bits are a ROM word of ``SIMD`` bits per PE.
* **multi-bit inputs** (the first layer): ``ACC = sum_{w=+1} x - sum_{w=-1} x``, an
  add/subtract tree; with weight bits from the ROM, ``sum(wb ? x : ~x) + #(wb = 0)``
  (``-x = ~x + 1``).

:class:`DotEngine` is the per-lane face (one output channel, ``y`` the signed dot product);
:class:`BinaryEngine` is the MVU-level engine (:mod:`hwquant.hw.engine`). For bipolar inputs it
keeps the popcount itself as the partial sum (``0..SIMD`` per beat, ``0..F`` per vector: the
accumulators are ``log2 F + 1`` bits) and forms ``2 * P - F`` once per output in its combine
step; for multi-bit inputs its partial sum is the signed sum and combine is the identity.
"""

from contextlib import contextmanager
from contextvars import ContextVar

import numpy as np
from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..engine_shape import BinaryShape, multibit_range
from ..golden.binary import weight_bits_of
from ..ir import signed_bits_for
from ..layout import pack_lanes
from .arith import adder_tree
from .engine import Engine
from .popcount import DEFAULT_LUT_INPUTS, LUT_INPUTS, Popcount, XnorPopcount, lut_inputs_of
from .streams import lane_shape

__all__ = ["DotEngine", "BinaryEngine", "xnor_bits", "signed_sum", "popcount_for"]


#: LUT size binary MVUs built in this context elaborate their popcounts for.
_POPCOUNT_LUT = ContextVar("popcount_lut_inputs", default=DEFAULT_LUT_INPUTS)


@contextmanager
def popcount_for(family_or_lut):
    """Within this context binary MVUs elaborate their popcounts for a family (``"xilinx"``:
    the LUT6 structure) or a LUT size (4 or 6); the cost model's ``lut_inputs`` is the same
    choice. An engine takes the size in force when it is constructed; the setting is local to
    the thread (a context variable), so concurrent builds for other families do not see it."""
    lut = family_or_lut if isinstance(family_or_lut, int) else lut_inputs_of(family_or_lut)
    if lut not in LUT_INPUTS:
        raise ValueError(f"Popcount LUT size must be one of {LUT_INPUTS}, not {lut!r}")
    token = _POPCOUNT_LUT.set(lut)
    try:
        yield lut
    finally:
        _POPCOUNT_LUT.reset(token)


def _check_weights(weights, simd):
    weights = tuple(int(w) for w in weights)
    if len(weights) != simd:
        raise ValueError(f"Dot engine needs {simd} weights, not {len(weights)}")
    bad = [w for w in weights if w not in (-1, 1)]
    if bad:
        raise ValueError(f"Binary weights must be -1 or +1, not {bad[0]}")
    return weights


def xnor_bits(x, weights=None, w=None) -> list:
    """The XNOR lanes of bipolar code bits ``x`` (indexable, one bit per lane) with constant
    ``weights`` (the input bit or its inverse: free, the inverter folds into the next LUT) or
    with the weight bits ``w`` (a Value, one bit per lane)."""
    n = len(x)
    if weights is not None:
        return [x[i] if weights[i] > 0 else ~x[i] for i in range(n)]
    return [~(x[i] ^ w[i]) for i in range(n)]


def signed_sum(m, x, x_format, weights=None, w=None):
    """``sum_i W_i * x_i`` of multi-bit lanes ``x`` with binary weights, logic added to ``m``.

    Constant ``weights``: one adder tree over the ``+1`` lanes minus one over the ``-1`` lanes.
    Weight bits ``w``: ``sum(wb ? x : ~x) + #(wb = 0)`` (``-x = ~x + 1``), one adder tree over the
    conditionally inverted lanes plus the count of ``-1`` weights. Two-input adders, no
    multiplier."""
    n = len(x)
    if weights is not None:
        plus = [x[i] for i in range(n) if weights[i] > 0]
        minus = [x[i] for i in range(n) if weights[i] < 0]
        if not minus:
            return adder_tree(plus)
        if not plus:
            return -adder_tree(minus)
        return adder_tree(plus) - adder_tree(minus)
    # One more bit than an unsigned lane: ~v of an unsigned v is negative.
    width = x_format.bits + (0 if x_format.signed else 1)
    terms, negatives = [], []
    for i in range(n):
        lane = Signal(signed(width), name=f"lane{i}")
        m.d.comb += lane.eq(x[i])
        terms.append(Mux(w[i], lane, ~lane))
        negatives.append(~w[i])
    return adder_tree(terms + [adder_tree(negatives)])


class DotEngine(wiring.Component):
    """``y = sum_i w[i] * value(x[i])`` over ``simd`` lanes for binary weights, combinational.

    Parameters
    ----------
    simd : int
        Number of lanes.
    x_format : :class:`hwquant.ir.ActFormat`
        Format of the activation lanes (bipolar: XNOR-popcount; otherwise add/subtract).
    weight_bits : int
        Always 1.
    weights : sequence of int, optional
        Constant weights ``-1``/``+1`` (fully unrolled MVU). Without it, weight bits arrive on
        the ``w`` port (1 = ``+1``, lane 0 in the LSB).
    lut_inputs : int
        LUT size the popcount is built for (:class:`hwquant.hw.popcount.Popcount`).

    Members
    -------
    x : ``In(data.ArrayLayout(lane_shape(x_format), simd))``
    w : ``In(unsigned(simd))``, only when ``weights`` is None
    y : ``Out(signed(out_bits))``, from :meth:`value_range`

    Latency 0. No multiplier, no DSP. Resources: bipolar, one popcount of ``simd`` bits plus
    ``2p - simd`` (a shift and a constant adder of ``log2(simd) + 2`` bits); the XNORs are free
    with constant weights, one more LUT input each otherwise. Multi-bit: ``simd - 1`` adders of
    about ``x_bits + log2(simd)`` bits.
    """

    def __init__(self, *, simd, x_format, weight_bits=1, weights=None,
                 lut_inputs=DEFAULT_LUT_INPUTS):
        if weight_bits != 1:
            raise ValueError(f"Binary weights take weight_bits=1, not {weight_bits}")
        self._simd, self._x_format, self._lut_inputs = simd, x_format, lut_inputs
        self._weights = None if weights is None else _check_weights(weights, simd)
        lo, hi = self.value_range(self._weights, simd=simd, x_format=x_format)
        members = {"x": In(data.ArrayLayout(lane_shape(x_format), simd)),
                   "y": Out(signed(signed_bits_for(min(lo, 0), max(hi, 0))))}
        if self._weights is None:
            members["w"] = In(unsigned(simd))
        super().__init__(members)

    @staticmethod
    def options(layer) -> dict:
        """Extra keyword arguments the engine of ``layer`` needs: none."""
        return {}

    @staticmethod
    def value_range(weights, *, simd, x_format, weight_bits=1):
        """Worst-case ``(lo, hi)`` of ``y`` (exact for constant weights)."""
        return multibit_range(weights, x_format, simd)

    @staticmethod
    def encode_weights(weights, weight_bits=1) -> int:
        """Weight-ROM word of ``simd`` binary weights: one bit each (1 = ``+1``), lane 0 in the
        LSB."""
        return pack_lanes(weight_bits_of(weights), 1)

    @staticmethod
    def word_bits(simd, weight_bits=1) -> int:
        return simd

    def elaborate(self, platform):
        m = Module()
        x = [self.x[i] for i in range(self._simd)]
        w = None if self._weights is not None else self.w
        if self._x_format.bipolar:
            m.submodules.popcount = pc = Popcount(self._simd, lut_inputs=self._lut_inputs)
            m.d.comb += [pc.i.eq(Cat(*xnor_bits(x, self._weights, w))),
                         self.y.eq((pc.o << 1) - self._simd)]
        else:
            m.d.comb += self.y.eq(signed_sum(m, x, self._x_format, self._weights, w))
        return m


class BinaryEngine(BinaryShape, Engine):
    """The MVU engine of binary layers: ``PE`` XNOR-popcounts (bipolar inputs) or ``PE``
    add/subtract trees (multi-bit inputs) over the ``SIMD`` lanes of a beat.

    Bipolar input: partial sum ``j = 0`` of PE ``p`` is ``popcount(XNOR(wb, xb))`` over the beat
    (``0..SIMD``); the MVU accumulates it over the ``SF`` slices to ``P in 0..F`` and
    :meth:`combine` returns ``ACC = 2 * P - F`` (a shift and one constant adder per PE).
    Multi-bit input: the partial sum is the signed beat sum, combine is the identity.

    ROM word (folded): ``PE`` fields of ``SIMD`` weight bits, PE 0 in the LSBs, lane 0 the LSB of
    its field; for LUT6 the XNORs with the ROM bits sit inside (3:2) counters
    (:class:`hwquant.hw.popcount.XnorPopcount`). Constant weights (unrolled): no ROM; an XNOR is
    wiring or an inverter.

    Attribute :attr:`lut_inputs` is the popcount's structure
    (:class:`hwquant.hw.popcount.Popcount`): the emitted Verilog does not know its family, so
    it is the LUT4 tree unless a build for a LUT6 family asks otherwise
    (:func:`popcount_for`, in force when the engine is constructed).

    Resources: bipolar, ``PE`` popcounts of ``SIMD`` bits (about 1.0 LUT4 per bit on iCE40 with
    the LUT4 tree, 1.1 LUT6 per bit on Xilinx with the LUT6 structure), ``PE`` combine adders,
    ``PE`` accumulators of ``log2(F) + 1`` bits; multi-bit, ``PE * (SIMD - 1)`` adders.
    Latency 0 (the MVU registers the sums).
    """

    @classmethod
    def word_bits(cls, layer, *, pe, simd) -> int:
        return pe * simd

    @classmethod
    def encode(cls, layer, weights, nf, sf, *, pe, simd) -> int:
        word = 0
        for p in range(pe):
            row = np.asarray(weights)[nf * pe + p, sf * simd:(sf + 1) * simd]
            word |= pack_lanes(weight_bits_of(row), 1) << (p * simd)
        return word

    def __init__(self, layer, weights, *, pe, simd):
        weights = np.asarray(weights, dtype=np.int64)
        if layer.in_format.bipolar:
            bits = signed_bits_for(0, simd)
        else:
            constant = (layer.out_channels // pe) * (layer.fan_in // simd) == 1
            rows = weights[:pe].tolist() if constant else [None]
            ranges = [multibit_range(r, layer.in_format, simd) for r in rows]
            bits = max(signed_bits_for(min(lo, 0), max(hi, 0)) for lo, hi in ranges)
        super().__init__(layer, weights, pe=pe, simd=simd, part_bits=bits)
        #: LUT size the popcounts are built for (:func:`popcount_for`).
        self.lut_inputs = _POPCOUNT_LUT.get()

    def combine(self, m, parts, shared, nf):
        if not self._layer.in_format.bipolar:
            return [p[0] for p in parts]
        f = self._layer.fan_in
        return [(p[0] << 1) - f for p in parts]

    def elaborate(self, platform):
        m = Module()
        layer, pe, simd = self._layer, self._pe, self._simd
        x = [self.x[i] for i in range(simd)]
        for p in range(pe):
            weights = self._weights[p].tolist() if self.constant else None
            w = None if self.constant else self.w[p * simd:(p + 1) * simd]
            if layer.in_format.bipolar and w is not None and self.lut_inputs == 6:
                # ROM weights on LUT6: the XNORs inside (3:2) counters.
                pc = XnorPopcount(simd)
                m.submodules[f"popcount{p}"] = pc
                m.d.comb += [pc.x.eq(self.x.as_value()), pc.w.eq(w), self.parts[p].eq(pc.o)]
            elif layer.in_format.bipolar:
                pc = Popcount(simd, lut_inputs=self.lut_inputs)
                m.submodules[f"popcount{p}"] = pc
                m.d.comb += [pc.i.eq(Cat(*xnor_bits(x, weights, w))), self.parts[p].eq(pc.o)]
            else:
                with_lanes = Module()
                m.submodules[f"pe{p}"] = with_lanes
                m.d.comb += self.parts[p].eq(signed_sum(with_lanes, x, layer.in_format,
                                                        weights, w))
        return m
