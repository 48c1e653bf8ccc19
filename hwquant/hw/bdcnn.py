"""Hardware of the ``bdcnn`` arithmetic kind (Binarized-DCNN), written from
``docs/arithmetic.md`` (Binarized-DCNN).

:class:`BdcnnEngine` is the AND-popcount MVU engine (:mod:`hwquant.hw.engine`):

* input lanes become bit planes of ``q = X - lo`` (unsigned: the code bits; signed: the sign bit
  inverted; no logic);
* shared sums (``S = Q``): ``popcount(z_b)`` over the beat's lanes, once for all PEs;
* partial sums (``P = K * Q`` per PE): ``popcount(M+_a AND z_b)``; with constant basis bits
  (unrolled) the AND selects lanes (wiring), folded the ROM word holds ``K`` basis bits per lane
  per PE (PE ``p``, basis ``a`` in field ``p * K + a`` of ``SIMD`` bits, lane 0 the LSB);
* combine: ``T_a = sum_b (P_ab << (b + 1)) - sum_b (S_b << b)`` (shifts), then
  ``ACC = sum_a C_a * T_a + lo * R`` with the channel's coefficients ``C_a`` and offset ``R``
  (constants when ``NF = 1``, chosen by the fold index ``nf`` otherwise: ``K`` multiplies by a
  selected constant per PE).

:class:`DotEngine` (the per-lane face the registry also names) is the ``fixed`` kind's dot engine
on the integer signed sums, ``ACC = W @ X``; not used by the MVU.

Latency 0 (the MVU registers the sums). Resources per PE: ``K * Q`` popcounts of at most
``SIMD`` bits, ``Q`` shared popcounts of ``SIMD`` bits per MVU, ``K`` coefficient products and
an adder tree per PE in combine; ROM ``K`` bits per weight.
"""

import numpy as np
from amaranth.hdl import Array, Cat, Const, Module, signed

from ..bdcnn import basis_bits
from ..engine_shape import BdcnnShape
from ..ir import signed_bits_for
from .engine import Engine
from .fixed import DotEngine as _FixedDotEngine
from .popcount import Popcount

__all__ = ["BdcnnEngine", "DotEngine"]


class DotEngine(_FixedDotEngine):
    """The ``fixed`` per-lane dot engine on a ``bdcnn`` layer's integer weights."""


def _coefficients(layer):
    d = layer.kind_data
    return np.array(d.coefficients, dtype=np.int64).reshape(layer.out_channels, d.basis)


class BdcnnEngine(BdcnnShape, Engine):
    """The AND-popcount engine of ``bdcnn`` layers; see the module docstring. Its sums and
    ranges are :class:`hwquant.engine_shape.BdcnnShape`'s."""

    @classmethod
    def word_bits(cls, layer, *, pe, simd) -> int:
        return pe * layer.kind_data.basis * simd

    @classmethod
    def encode(cls, layer, weights, nf, sf, *, pe, simd) -> int:
        k = layer.kind_data.basis
        rows = slice(nf * pe, (nf + 1) * pe)
        bits = basis_bits(np.asarray(weights)[rows], _coefficients(layer)[rows])
        word = 0
        for p in range(pe):
            for a in range(k):
                lanes = bits[p, a, sf * simd:(sf + 1) * simd]
                word |= int(sum(int(v) << i for i, v in enumerate(lanes))) << ((p * k + a) * simd)
        return word

    def __init__(self, layer, weights, *, pe, simd):
        self._bits = basis_bits(np.asarray(weights), _coefficients(layer))  # (OC, K, F)
        super().__init__(layer, weights, pe=pe, simd=simd, part_bits=signed_bits_for(0, simd),
                         shared_bits=signed_bits_for(0, simd))

    def elaborate(self, platform):
        m = Module()
        layer, pe, simd = self._layer, self._pe, self._simd
        k, q = layer.kind_data.basis, layer.kind_data.qbits
        fmt = layer.in_format
        lanes = []
        for i in range(simd):
            v = self.x.as_value().word_select(i, fmt.bits)
            lanes.append(Cat(v[:q - 1], ~v[q - 1]) if fmt.signed else v)  # q = X - lo
        planes = [Cat(*(lane[b] for lane in lanes)) for b in range(q)]
        for b in range(q):
            pc = Popcount(simd)
            m.submodules[f"plane{b}"] = pc
            m.d.comb += [pc.i.eq(planes[b]), self.shared[b].eq(pc.o)]
        for p in range(pe):
            for a in range(k):
                if self.constant:
                    sel = [i for i in range(simd) if self._bits[p, a, i]]
                else:
                    mask = self.w[(p * k + a) * simd:(p * k + a + 1) * simd]
                for b in range(q):
                    part = self.parts[p * k * q + a * q + b]
                    if self.constant:
                        if not sel:
                            m.d.comb += part.eq(0)
                            continue
                        bits, n = Cat(*(planes[b][i] for i in sel)), len(sel)
                    else:
                        bits, n = planes[b] & mask, simd
                    pc = Popcount(n)
                    m.submodules[f"pe{p}_a{a}_b{b}"] = pc
                    m.d.comb += [pc.i.eq(bits), part.eq(pc.o)]
        return m

    def combine(self, m, parts, shared, nf):
        layer, pe = self._layer, self._pe
        k, q = layer.kind_data.basis, layer.kind_data.qbits
        c = _coefficients(layer)
        offset = layer.in_format.lo * self._weights.sum(axis=1)  # lo * R, R = sum_i W
        sq = sum(shared[b] << b for b in range(q))
        out = []
        for p in range(pe):
            chans = [n * pe + p for n in range(self._nf)]

            def pick(values, chans=chans):
                vals = [int(v) for v in values]
                if len(set(vals)) == 1:
                    return vals[0]
                width = signed_bits_for(min(vals + [0]), max(vals + [0]))
                return Array(Const(v, signed(width)) for v in vals)[nf]

            acc = pick(offset[chans])
            for a in range(k):
                t = sum(parts[p][a * q + b] << (b + 1) for b in range(q)) - sq
                coef = pick(c[chans, a])
                if isinstance(coef, int) and coef == 0:
                    continue
                acc = acc + t * coef
            out.append(acc)
        return out
