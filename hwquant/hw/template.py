"""MVU engine of the ``template`` arithmetic kind: HLAC template channels without multipliers,
next to ``fixed`` channels of the same layer.

Written from ``docs/arithmetic.md`` ("Template kernels"). A template channel ``c`` of sign
``s`` has the weights ``w = s * (2 * mask - 1)`` (``+-1``); its accumulator is

    ACC[c] = sum_i w_i x_i = s * (2 * P_c - S),    S = sum_i x_i,    P_c = sum_{i on the mask} x_i

The requantization multiplier of a template channel carries its real magnitude ``a``. One
layer, one MVU, mixed channels (no split of the layer): channel ``c`` sits on PE ``c mod PE``
at fold ``c div PE``.

* **Fully unrolled** (``NF = SF = 1``): ``S`` (the contract's one shared sum), the mask sums
  ``P`` of the template channels and the dots of the ``fixed`` channels are the outputs of one
  constant-matrix adder graph (:mod:`hwquant.cmvm`): the lane sums the masks and ``S`` have in
  common (for an HLAC mask, each pixel's sum over the input channels) are built once, so a
  template adds the 0-2 adders of its 1-3 pixels. The combine forms ``2P - S`` (a shift and
  one subtractor) or ``S - 2P`` and passes a fixed channel's dot through.
* **Folded** (weights from the ROM, no shared sum): the beat's lanes are paired
  (:mod:`hwquant.lane_pairs`: lanes ``2k, 2k + 1``, the last lane alone
  when ``SIMD`` is odd) and each pair's ``u = x_a + x_b`` and ``v = x_a - x_b`` are built
  once for every PE. A PE all of whose channels are templates reads 2 bits per pair, ``d``
  (its two weights differ: ``v``, else ``u``) and ``n`` (its first weight is ``-1``: the
  ones' complement ``~t = -t - 1``), and 1 bit ``n`` for a lone lane; one LUT per bit picks
  a term, and the PE adds its ``ceil(SIMD / 2)`` terms (half the adders of a lane tree).
  That sum is ``ACC - K``, ``K`` the channel's count of complemented terms
  (:meth:`TemplateShape.negations`), which the combine adds (a constant, chosen by the fold
  index when ``NF > 1``). Any other PE is a ``fixed`` dot engine of ``weight_bits`` per lane
  whose template channels are stored as their ``+-1`` weights; its combine is the identity.

ROM word of a beat: the PE fields from PE 0 in the LSBs; a template PE's field is ``SIMD``
bits, per term from the lowest lane up ``d, n`` (a pair) or ``n`` (a lone lane); another
PE's is ``SIMD`` two's-complement ``weight_bits`` lanes, lane 0 lowest. Latency 0 (the MVU
registers ``parts`` and ``shared``).
"""

import numpy as np
from amaranth.hdl import Module, Signal

from .. import ir
from ..engine_shape import TemplateShape, channel_roles, template_pes
from ..lane_pairs import pair_field
from ..layout import pack_lanes
from .engine import Engine
from .fixed import DotEngine
from .lane_pairs import lane_pairs, pair_sum

__all__ = ["TemplateEngine", "DotEngine", "channel_roles", "template_pes"]


def _field_bits(layer, pe, simd) -> list:
    return [simd if t else simd * layer.weight_bits for t in template_pes(layer, pe)]


class TemplateEngine(TemplateShape, Engine):
    """The ``template`` kind's MVU engine; see the module docstring.

    Members: ``x`` (``SIMD`` lanes), ``w`` (folded), ``parts`` (``PE`` sums: unrolled the
    mask sum ``P`` of a template channel; folded a template PE's term sum ``ACC - K``; the
    dot of a fixed one), ``shared`` (unrolled only: ``S``).
    Resources: unrolled, one constant adder graph for ``S`` and every part and one
    subtractor per template channel. Folded, two adders per lane pair (shared by every PE);
    per template PE a term select (one LUT per bit) per term, ``ceil(SIMD / 2) - 1`` adders
    and one constant adder (its constants a ``NF``-way table when they differ by fold); per
    other PE ``SIMD`` multipliers and their adder tree.
    """

    @classmethod
    def word_bits(cls, layer, *, pe, simd) -> int:
        return sum(_field_bits(layer, pe, simd))

    @classmethod
    def encode(cls, layer, weights, nf, sf, *, pe, simd) -> int:
        w = np.asarray(weights, dtype=np.int64)
        word, pos = 0, 0
        for p, (tpe, bits) in enumerate(zip(template_pes(layer, pe),
                                            _field_bits(layer, pe, simd), strict=True)):
            c = nf * pe + p
            row = w[c, sf * simd:(sf + 1) * simd]
            field = pair_field(row, simd) if tpe else pack_lanes(row, layer.weight_bits)
            word |= field << pos
            pos += bits
        return word

    def __init__(self, layer, weights, *, pe, simd):
        fmt = layer.in_format
        weights = np.asarray(weights, dtype=np.int64)
        self._roles = channel_roles(layer, weights)
        constant = (layer.out_channels // pe) * (layer.fan_in // simd) == 1
        if constant:
            ranges = [tuple(r) for r in self.part_ranges(layer, weights)[:, 0, :]]
        else:
            ranges = [tuple(r) for r in self.beat_part_ranges(layer, weights, pe=pe,
                                                                simd=simd)[:, 0, :]]
        part_bits = max(ir.signed_bits_for(min(lo, 0), max(hi, 0)) for lo, hi in ranges)
        shared = (simd * min(fmt.lo, 0), simd * max(fmt.hi, 0))
        super().__init__(layer, weights, pe=pe, simd=simd, part_bits=part_bits,
                         shared_bits=ir.signed_bits_for(*shared))

    def elaborate(self, platform):
        m = Module()
        layer, simd, pe = self._layer, self._simd, self._pe
        x = [self.x[i] for i in range(simd)]
        if self.constant:
            self._constant_parts(m)
            return m
        tpes = template_pes(layer, pe)
        pairs = lane_pairs(m, x, layer.in_format)
        pos = 0
        for p, (tpe, bits) in enumerate(zip(tpes, _field_bits(layer, pe, simd), strict=True)):
            field = self.w[pos:pos + bits]
            pos += bits
            if tpe:
                m.d.comb += self.parts[p].eq(pair_sum(m, pairs, field, simd, f"term{p}"))
                continue
            eng = DotEngine(simd=simd, x_format=layer.in_format, weight_bits=layer.weight_bits)
            m.submodules[f"pe{p}"] = eng
            m.d.comb += [eng.x.eq(self.x), eng.w.eq(field), self.parts[p].eq(eng.y)]
        return m

    def _constant_parts(self, m):
        """Unrolled: ``S`` and every channel's part as outputs of one constant-matrix adder
        graph (:meth:`TemplateShape.unrolled_matrix`)."""
        from ..cmvm import layer_adder_graph

        graph = layer_adder_graph(self._layer, self.unrolled_matrix(self._layer, self._weights))
        width = max(self.parts.shape().elem_shape.width, len(self.shared[0]))
        matrix = self.constant_matrix(m, graph, width)
        m.d.comb += self.shared[0].eq(matrix.y[0])
        for c in range(self._layer.out_channels):
            m.d.comb += self.parts[c].eq(matrix.y[1 + c])

    def combine(self, m, parts, shared, nf):
        """Unrolled: ``s * (2P - S)`` for a template channel, ``P`` for a fixed one. Folded:
        a template PE's sum plus its channel's ``K`` (chosen by the fold index when the PE's
        channels differ), any other PE's dot as it is."""
        layer, pe = self._layer, self._pe
        if self.constant:
            s_acc = shared[0]
            return [parts[c][0] if sign == 0 else
                    (parts[c][0] << 1) - s_acc if sign > 0 else s_acc - (parts[c][0] << 1)
                    for c, (sign, _) in enumerate(self._roles)]
        offsets = self.negations(layer, self._weights)
        out = []
        for p in range(pe):
            acc = parts[p][0]
            k = [int(v) for v in offsets[p::pe]]
            if len(set(k)) == 1:
                out.append(acc + k[0] if k[0] else acc)
                continue
            off = Signal(range(max(k) + 1), name=f"negations{p}")
            with m.Switch(nf):
                for n, v in enumerate(k):
                    with m.Case(n):
                        m.d.comb += off.eq(v)
            out.append(acc + off)
        return out

