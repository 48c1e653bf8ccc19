"""Epilogues of a weight layer: the per-channel step from ``ACC`` to the output lane.

One component per epilogue type of the IR, all with the same members and one pipeline register
per lane inside (:data:`Epilogue.LATENCY`, advanced by ``en``; the MVU registers the result),
``pe`` lanes per beat; the constants of channel ``nf*PE + p`` (bias,
multiplier, thresholds, scale) are chosen by the output-fold index ``nf`` (a constant per
lane when ``NF = 1``). Written from ``docs/arithmetic.md``:

* :class:`Requantizer` (``ir.Requant``): ``sat(rshift_rhu((ACC + B) * M[c], shift), lo, hi)``.
* :class:`MultiThreshold` (``ir.Thresholds``):
  ``out_format.lo + #{t : dir[c] * (ACC + B) >= dir[c] * thr[c, t]}``.
* :class:`LogitScaler` (``ir.Logits``): ``(ACC + B) * scale[c]`` (``scale`` None: ``ACC + B``).

:func:`epilogue_unit` picks the component for a layer.
"""

import numpy as np
from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .. import ir
from .arith import adder_tree, const_signed, rshift_rhu, saturate
from .streams import lane_shape

__all__ = ["Epilogue", "Requantizer", "MultiThreshold", "LogitScaler", "epilogue_of",
           "epilogue_class", "epilogue_unit", "requant", "thresholds", "logits"]


def epilogue_of(layer):
    """The IR epilogue of ``layer`` (:attr:`hwquant.ir.Conv2d.epilogue`)."""
    return layer.epilogue


def _select(index, values):
    """``values[index]`` over per-channel integer constants (a constant when all agree)."""
    values = [int(v) for v in values]
    if len(set(values)) == 1:
        return const_signed(values[0])
    return Array(const_signed(v) for v in values)[index]


class Epilogue(wiring.Component):
    """Common shape of the epilogue components.

    Parameters
    ----------
    layer : :class:`hwquant.ir.Conv2d` or :class:`hwquant.ir.Linear`
        Supplies bias, fold (``pe``), output format and name.
    epilogue : :class:`hwquant.ir.Requant`, :class:`hwquant.ir.Thresholds` or :class:`hwquant.ir.Logits`
    acc_range : (int array (OC,), int array (OC,))
        Worst-case ``(lo, hi)`` of ``ACC`` per channel (without bias).

    Members
    -------
    acc : ``In(data.ArrayLayout(signed(acc_bits), pe))``, ``acc_bits`` holding ``ACC`` and
        ``ACC + B`` over every channel
    nf : ``In(unsigned(nf_bits))``, the output-fold index (``0 .. NF-1``) of the beat that
        ``acc`` holds *after* the next cycle ``en`` is high: the fold index travels one
        pipeline stage ahead of its value, so the per-channel constants it selects are
        registered (``reset_less``, loaded under ``en``) by the time their ``acc`` arrives
    en : ``In(1)``, advances the pipeline registers
    y : ``Out(data.ArrayLayout(lane_shape(layer.out_format), pe))``

    Latency :data:`LATENCY` (1): ``y`` is the result for the ``acc`` of the last cycle ``en``
    was high (and the ``nf`` of the ``en`` before it). Each type registers its lanes where the
    logic splits about evenly (below), so that the per-channel constant selection, the bias
    adder and the multiplier are not one combinational path with the rounding and the
    saturation; a selected constant enters its adder or multiplier from a register, so the
    ``NF``-way multiplexer is not on that path either. Resources per lane: one bias adder and
    the type's own logic (below), plus, when ``NF > 1``, a multiplexer over the ``NF`` values
    of each per-channel constant and its register (the requantization's bias and multiplier,
    the logits' bias and scale; the thresholds' comparisons select from a registered fold
    index instead, ``nf_bits`` flip-flops).
    """

    #: Cycles (of ``en``) from ``acc`` to ``y``.
    LATENCY = 1

    def __init__(self, layer, epilogue, *, acc_range):
        self.validate(layer, epilogue, acc_range=acc_range)
        self._layer, self._epilogue = layer, epilogue
        pe = layer.fold.pe
        self._pe, self._nf = pe, layer.out_channels // pe
        lo, hi = (np.asarray(v, dtype=np.int64) for v in acc_range)
        self._acc_lo, self._acc_hi = lo, hi
        bias = np.asarray(layer.bias, dtype=np.int64)
        self.acc_bits = ir.signed_bits_for(int(min(lo.min(), (lo + bias).min(), 0)),
                                           int(max(hi.max(), (hi + bias).max(), 0)))
        super().__init__({
            "acc": In(data.ArrayLayout(signed(self.acc_bits), pe)),
            "nf": In(unsigned(max(1, (self._nf - 1).bit_length()))),
            "en": In(1),
            "y": Out(data.ArrayLayout(lane_shape(layer.out_format), pe)),
        })

    @classmethod
    def validate(cls, layer, epilogue, *, acc_range):
        """Raise ``ValueError`` if the epilogue cannot be built for these ranges."""

    @property
    def layer(self):
        return self._layer

    def _picked(self, m, values, name):
        """``values[n]`` for the fold ``n`` of the current ``acc``: a constant when all agree,
        else a register loaded under ``en`` from the ``NF``-way selection by ``nf``."""
        values = [int(v) for v in values]
        if len(set(values)) == 1:
            return const_signed(values[0])
        reg = Signal(signed(ir.signed_bits_for(min(min(values), 0), max(max(values), 0))),
                     name=name, reset_less=True)
        with m.If(self.en):
            m.d.sync += reg.eq(Array(const_signed(v) for v in values)[self.nf])
        return reg

    def _channel_values(self, m, p, values, name):
        """``values[nf*PE + p]`` for the current ``acc`` (:meth:`_picked`)."""
        return self._picked(m, [values[n * self._pe + p] for n in range(self._nf)],
                            f"{name}{p}")

    def _biased(self, m, p):
        return self.acc[p] + self._channel_values(m, p, self._layer.bias, "bias")

    def _fold_index(self, m):
        """The fold index of the current ``acc`` (``nf`` one ``en`` later), for the types
        that select from it combinationally."""
        if self._nf == 1:
            return self.nf
        if self._nf_r is None:
            self._nf_r = Signal.like(self.nf, name="nf_r", reset_less=True)
            with m.If(self.en):
                m.d.sync += self._nf_r.eq(self.nf)
        return self._nf_r

    def elaborate(self, platform):
        m = Module()
        self._nf_r = None
        for p in range(self._pe):
            m.d.comb += self.y[p].eq(self._lane(m, p))
        return m

    def _lane(self, m, p):
        """Lane ``p``'s output value, built in ``m`` with one :meth:`_register` on the way."""
        raise NotImplementedError

    def _register(self, m, value, name):
        """``value`` through the lane's pipeline register (advanced by ``en``)."""
        reg = Signal(value.shape(), name=name)
        with m.If(self.en):
            m.d.sync += reg.eq(value)
        return reg


class Requantizer(Epilogue):
    """``sat(rshift_rhu((ACC + B[c]) * M[c], shift), lo, hi)``: per lane a bias adder, a
    multiplier (none when every ``M`` is 1; a constant one when ``NF = 1``), the pipeline
    register on the product, a rounding adder, two comparators and muxes."""

    def _lane(self, m, p):
        rq = self._epilogue
        chans = [n * self._pe + p for n in range(self._nf)]
        t = self._biased(m, p)
        mult = [int(rq.multiplier[c]) for c in chans]
        if not all(v == 1 for v in mult):
            t = t * self._picked(m, mult, f"mult{p}")
        t = self._register(m, t, f"scaled{p}")
        # One signal that the saturation's comparisons and muxes share (Amaranth's Verilog
        # repeats an expression at each use; Yosys does not always merge the copies).
        rounded = Signal(rshift_rhu(t, rq.shift).shape(), name=f"rounded{p}")
        m.d.comb += rounded.eq(rshift_rhu(t, rq.shift))
        return saturate(rounded, rq.lo, rq.hi)


class MultiThreshold(Epilogue):
    """``out_format.lo + #{t : dir[c] * (ACC + B[c]) >= dir[c] * thr[c, t]}``.

    Computed as ``d * ACC >= d * (thr - B)`` (``d = dir[c]``): per lane an optional negation
    (only when the lane's channels mix directions), ``T`` comparators against per-channel
    constants (thresholds beyond the accumulator's reach become always/never), the pipeline
    register on the ``T`` results, and their popcount. No multiplier, no bias adder.
    """

    def _lane(self, m, p):
        ep, layer = self._epilogue, self._layer
        thr = np.asarray(ep.thresholds, dtype=np.int64).reshape(layer.out_channels, -1)
        direction = np.asarray(ep.direction, dtype=np.int64).reshape(-1)
        bias = np.asarray(layer.bias, dtype=np.int64)
        chans = [n * self._pe + p for n in range(self._nf)]
        dirs = [int(direction[c]) for c in chans]
        acc = self.acc[p]
        nf = self._fold_index(m)
        reach = 1 << self.acc_bits  # |d * ACC| < reach
        if all(d < 0 for d in dirs):
            s = -acc
        elif all(d > 0 for d in dirs):
            s = acc
        else:
            neg = Array(int(d < 0) for d in dirs)[nf]
            s = Mux(neg, -acc, acc)
        passed = []
        for t in range(thr.shape[1]):
            k = [int(np.clip(direction[c] * (thr[c, t] - bias[c]), -reach, reach)) for c in chans]
            passed.append(s >= _select(nf, k))
        if not passed:
            return self._register(m, Const(self._layer.out_format.lo,
                                           lane_shape(self._layer.out_format)), f"level{p}")
        passed = self._register(m, Cat(*passed), f"passed{p}")
        return adder_tree(list(passed)) + self._layer.out_format.lo


class LogitScaler(Epilogue):
    """``(ACC + B[c]) * scale[c]`` (``scale`` None: ``ACC + B``), as wide as the output
    format, which must hold every value (checked here). Per lane a bias adder and, with a
    scale, a multiplier (constant when ``NF = 1``), then the pipeline register.

    Raises
    ------
    ValueError
        The output format cannot hold the worst-case logits.
    """

    @staticmethod
    def _scale_of(epilogue):
        scale = epilogue.scale
        return None if scale is None else np.asarray(scale, dtype=np.int64).reshape(-1)

    @classmethod
    def validate(cls, layer, epilogue, *, acc_range):
        scale = cls._scale_of(epilogue)
        lo, hi = (np.asarray(v, dtype=np.int64) + layer.bias for v in acc_range)
        if scale is not None:
            lo, hi = np.minimum(lo * scale, hi * scale), np.maximum(lo * scale, hi * scale)
        lo, hi = int(lo.min()), int(hi.max())
        fmt = layer.out_format
        if lo < fmt.lo or hi > fmt.hi:
            raise ValueError(f"Layer '{layer.name}': logits need {ir.signed_bits_for(lo, hi)} "
                             f"bits, but the output format has {fmt.bits}")

    def __init__(self, layer, epilogue, *, acc_range):
        self._scale = self._scale_of(epilogue)
        super().__init__(layer, epilogue, acc_range=acc_range)

    def _lane(self, m, p):
        v = self._biased(m, p)
        if self._scale is not None:
            scale = [int(self._scale[n * self._pe + p]) for n in range(self._nf)]
            if scale != [1] * self._nf:
                v = v * self._picked(m, scale, f"scale{p}")
        return self._register(m, v, f"logit{p}")


def epilogue_class(layer) -> type:
    """The epilogue component class of ``layer``: the hardware face its registry row
    (:data:`hwquant.epilogues.EPILOGUE_KINDS`) names in this module.

    Raises
    ------
    TypeError
        The epilogue is not one of :data:`hwquant.ir.EPILOGUES`.
    """
    from ..epilogues import epilogue_kind, hw_epilogue_module

    ep = epilogue_of(layer)
    return getattr(hw_epilogue_module(ep), epilogue_kind(ep).name)


def epilogue_unit(layer, *, acc_range) -> Epilogue:
    """The epilogue component of ``layer``; ``acc_range`` as for :class:`Epilogue`."""
    return epilogue_class(layer)(layer, epilogue_of(layer), acc_range=acc_range)


#: The hardware face of each epilogue under its registry name (``hwquant.epilogues``).
requant, thresholds, logits = Requantizer, MultiThreshold, LogitScaler
