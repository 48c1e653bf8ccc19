"""MVU engine of the ``template`` arithmetic kind: HLAC template channels without multipliers,
next to ``fixed`` channels of the same layer.

Written from ``docs/arithmetic.md`` ("Template kernels"). A template channel ``c`` of sign
``s`` has the weights ``s * (2 * mask - 1)``; its accumulator is

    ACC[c] = s * (2 * P_c - S),    S = sum_i x_i,    P_c = sum_{i on the mask} x_i

so the engine computes one **shared** sum ``S`` of the beat's ``SIMD`` lanes (the contract's
``shared_count = 1``: the window sum, one adder tree for every template channel of every
PE), and per PE one partial sum. The MVU accumulates both over the ``SF`` slices; the combine
step forms ``2 * P - S`` (a shift and one subtractor) or ``S - 2 * P`` for a template channel,
and passes ``P`` through for a ``fixed`` channel. The requantization multiplier of a template
channel carries its real magnitude ``a``.

One layer, one MVU, mixed channels (no split of the layer): channel ``c`` sits on PE
``c mod PE`` at fold ``c div PE``.

* **Fully unrolled** (``NF = SF = 1``): ``S``, the mask sums ``P`` of the template channels
  and the dots of the ``fixed`` channels are the outputs of one constant-matrix adder graph
  (:mod:`hwquant.cmvm`): the lane sums the masks and ``S`` have in common (for an HLAC mask,
  each pixel's sum over the input channels) are built once, so a template adds the 0-2
  adders of its 1-3 pixels. No multiplier anywhere.
* **Folded** (weights from the ROM): a PE all of whose channels are templates reads one mask
  bit per lane (``SIMD`` bits) and sums ``b ? x : 0`` (AND gates and an adder tree, no
  multiplier); any other PE is a ``fixed`` dot engine of ``weight_bits`` per lane, whose
  template channels are stored as the 0/1 mask (so its sum is ``P``); the combine of such a
  PE selects, by the fold index, ``2P - S``, ``S - 2P`` or ``P``.

ROM word of a beat: the PE fields from PE 0 in the LSBs; a field is ``SIMD`` mask bits
(template PE) or ``SIMD`` two's-complement ``weight_bits`` lanes (other PEs), lane 0 lowest.
Latency 0 (the MVU registers ``parts`` and ``shared``).
"""

import numpy as np
from amaranth.hdl import Module, Mux, Signal, signed

from .. import ir
from ..engine_shape import TemplateShape, channel_roles, template_pes
from ..layout import pack_lanes
from .arith import adder_tree
from .engine import Engine
from .fixed import DotEngine

__all__ = ["TemplateEngine", "DotEngine", "channel_roles", "template_pes"]


def _field_bits(layer, pe, simd) -> list:
    return [simd if t else simd * layer.weight_bits for t in template_pes(layer, pe)]


class TemplateEngine(TemplateShape, Engine):
    """The ``template`` kind's MVU engine; see the module docstring.

    Members: ``x`` (``SIMD`` lanes), ``w`` (folded), ``parts`` (``PE`` sums: ``P`` of a
    template channel, the dot of a fixed one), ``shared`` (one: ``S``, the lanes' sum).
    Resources: unrolled, one constant adder graph for ``S`` and every part; folded, one
    ``SIMD``-input adder tree for ``S``, per template PE ``SIMD`` AND-gated lanes and their
    adder tree, per fixed PE ``SIMD`` multipliers; per PE
    one subtractor and, for a PE with both kinds of channel, a multiplexer in the combine.
    """

    @classmethod
    def word_bits(cls, layer, *, pe, simd) -> int:
        return sum(_field_bits(layer, pe, simd))

    @classmethod
    def encode(cls, layer, weights, nf, sf, *, pe, simd) -> int:
        roles = channel_roles(layer, weights)
        w = np.asarray(weights, dtype=np.int64)
        word, pos = 0, 0
        for p, (tpe, bits) in enumerate(zip(template_pes(layer, pe),
                                            _field_bits(layer, pe, simd), strict=True)):
            c = nf * pe + p
            sign, on = roles[c]
            lanes = slice(sf * simd, (sf + 1) * simd)
            row = on[lanes] if sign else w[c, lanes]
            field = pack_lanes(row, 1) if tpe else pack_lanes(row, layer.weight_bits)
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
            ranges = [DotEngine.value_range(None, simd=simd, x_format=fmt,
                                            weight_bits=layer.weight_bits)]
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
        m.d.comb += self.shared[0].eq(adder_tree(x))
        tpes = template_pes(layer, pe)
        pos = 0
        for p, (tpe, bits) in enumerate(zip(tpes, _field_bits(layer, pe, simd), strict=True)):
            field = self.w[pos:pos + bits]
            pos += bits
            if tpe:  # mask bits: sum of the lanes on the mask
                m.d.comb += self.parts[p].eq(adder_tree(
                    [Mux(field[i], x[i], 0) for i in range(simd)]))
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
        """``s * (2P - S)`` for a template channel, ``P`` for a fixed one, chosen per PE by
        the fold index when its channels differ."""
        layer, pe = self._layer, self._pe
        s_acc = shared[0]
        out = []
        for p in range(pe):
            acc = parts[p][0]
            signs = [self._roles[c][0] for c in range(p, layer.out_channels, pe)]
            options = {0: acc}
            if 1 in signs:
                options[1] = (acc << 1) - s_acc
            if -1 in signs:
                options[-1] = s_acc - (acc << 1)
            if len(set(signs)) == 1:
                out.append(options[signs[0]])
                continue
            lo, hi = self.combine_ranges(layer, self._weights)[p::pe].T
            value = Signal(signed(ir.signed_bits_for(int(min(lo.min(), 0)),
                                                     int(max(hi.max(), 0)))),
                           name=f"combine{p}")
            with m.Switch(nf):
                for n, sign in enumerate(signs):
                    with m.Case(n):
                        m.d.comb += value.eq(options[sign])
            out.append(value)
        return out
