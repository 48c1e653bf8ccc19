"""Cost face of the ``fixed`` arithmetic kind: the ``PE`` dot engines of one MVU.

What :class:`hwquant.hw.fixed.DotEngine` builds, per processing element, and what Yosys 0.70
makes of it by default (``synthesize(..., allow_dsp=True)``: ``synth_ice40 -dsp``, the other
families without ``-nodsp``):

* **Unrolled** (``PE = OC`` and ``SIMD = F``): every weight is a constant. A zero weight builds
  nothing and a positive power of two is wiring. Yosys strips a constant's trailing zeros and
  merges equal products, so each lane builds ``x * odd(w)`` once for all PEs. A product goes
  to a DSP block when ``mul2dsp`` takes the ``$mul`` Amaranth emits (:func:`const_product`;
  an unsigned activation times a negative constant is a multiply by the constant
  sign-extended to the product width), otherwise it is LUT logic: a product used once melts
  into its PE's sum as partial-product rows, a shared one is a
  :func:`~hwquant.estimate.resources.const_multiplier` of its own.
* **Folded**: ``SIMD`` variable ``x_bits x weight_bits`` products
  (:func:`~hwquant.estimate.resources.multiplier`, DSP blocks by
  :func:`~hwquant.estimate.resources.dsp_blocks`) fed by the weight ROM.

The products of one PE are summed by :func:`hwquant.hw.arith.adder_tree`; Yosys packs some of
its adders into the DSP blocks (post-adders, cascades; see ``_ABSORB``) and merges the rest
into multi-operand sums (``$macc``), which become carry-save trees of full adders
(:func:`adder_tree`, :func:`macc`). Measured against Yosys on single dot engines of 1 to 48
products (signed and unsigned activations, constant and ROM weights): within 15 % except
small LUT-multiplier engines (up to 20 %).

The weight ROM, the operand and dot registers, accumulators and the epilogue are costed by
:mod:`hwquant.estimate.model`, which calls :func:`resources` (and, for the registers the DSP
blocks absorb on Xilinx, :func:`absorbed_registers`).
"""

from __future__ import annotations

import numpy as np

from .. import ir
from ..plan import mvu_cycles
from .common import macc
from .resources import Resources, const_multiplier, dsp_product, multiplier

__all__ = ["resources", "absorbed_registers", "cycles", "is_unrolled",
           "product_bits", "adder_tree", "macc", "const_product", "dot_range", "word_bits",
           "DSP_Y_MIN"]

# Smallest product (Y) width mul2dsp maps to a DSP block (Yosys 0.70 synth scripts:
# DSP_Y_MINWIDTH); the operand minimums are in resources.dsp_blocks.
DSP_Y_MIN = {"ice40": 11, "ecp5": 0, "xilinx": 9, "gowin": 0}

# Which adders after a DSP multiply Yosys packs into the block: one post-adder per block, fed
# by its product. ``xilinx_dsp`` (DSP48E1, with the P and A registers around it) takes any;
# ``ice40_dsp`` (SB_MAC16) rejects an addend wider than the product unless the product is a
# full signed one (a truncated product, narrower than its operands' natural width as an
# unsigned activation times a signed weight is, or a zero-extended one, an unsigned
# activation times a positive constant; measured: 24 of 27 and 157 of 126 packed adders on
# two unrolled networks). A whole sum of full products chains through the blocks (a signed
# 16-product dot engine costs no LUT on either family). ECP5 and Gowin pack none.
_ABSORB = {"ice40": "narrow", "ecp5": None, "xilinx": "any", "gowin": None}


def _check(layer):
    if not isinstance(layer, (ir.Conv2d, ir.Linear)):
        raise TypeError(f"Dot engines belong to a conv2d or linear layer, not "
                        f"{type(layer).__name__}")
    if layer.encoding != "fixed":
        raise ValueError(f"Layer '{layer.name}': the fixed cost model cannot estimate weight "
                         f"encoding {layer.encoding!r}")


def is_unrolled(layer) -> bool:
    """Whether the MVU of ``layer`` is fully unrolled (``NF = SF = 1``: constant weights)."""
    return layer.fold.pe == layer.out_channels and layer.fold.simd == layer.fan_in


def _const_bits(weight: int) -> int:
    # hwquant.hw.arith.const_signed: signed, just wide enough.
    return max(2, int(weight).bit_length() + 1)


def product_bits(layer, weight=None) -> int:
    """Width Amaranth gives one product ``x * w``: ``x_bits`` plus the weight width (the
    constant's own width when ``weight`` is given, ``weight_bits`` otherwise)."""
    wbits = layer.weight_bits if weight is None else _const_bits(weight)
    return layer.in_format.bits + wbits


def _operand_widths(weight, xbits, signed_x):
    """``(a, b, y, signed)`` of the ``$mul`` Yosys sees for ``x * const_signed(weight)``.

    Amaranth emits a signed activation times the signed constant as is; an unsigned activation
    times a positive constant as an unsigned multiply by the constant's own bits, and times a
    negative constant as an unsigned multiply by the constant sign-extended to the product
    width (``x * 8'hf9``), truncated to that width.
    """
    cbits = _const_bits(weight)
    if signed_x:
        # wreduce trims the constant to its minimal two's complement width (-1: one bit).
        sbits = weight.bit_length() + 1 if weight > 0 else (~weight).bit_length() + 1
        return xbits, sbits, xbits + sbits, True
    if weight > 0:
        return xbits, weight.bit_length(), xbits + weight.bit_length(), False
    return xbits, xbits + cbits, xbits + cbits, False


def _dsp_operands(weight, xbits, signed_x):
    """:func:`_operand_widths` after Yosys strips the constant's trailing zero bits (a shift)
    before ``mul2dsp`` sees it."""
    a, b, y, signed = _operand_widths(weight, xbits, signed_x)
    k = (abs(weight) & -abs(weight)).bit_length() - 1
    return a, b - k, y - k, signed


def const_product(weight, xbits, signed_x, family, *, use_dsp=True):
    """``(Resources, in_dsp)`` of one constant product of the unrolled dot engine; ``in_dsp``
    is ``False`` or, for a DSP block, how the product reaches the adder tree: ``"full"``,
    ``"truncated"`` or ``"extended"`` (see :func:`adder_tree`).

    Zero and positive powers of two cost nothing (Yosys folds them into wiring). Otherwise a
    DSP block when Yosys's ``mul2dsp`` takes the ``$mul`` Amaranth emits (operand and product
    widths of :func:`_operand_widths` against the family's minimums), else the fitted LUT cost
    of :func:`~hwquant.estimate.resources.const_multiplier`.
    """
    if weight == 0 or (weight > 0 and weight & (weight - 1) == 0):
        return Resources(), False
    if use_dsp:
        a, b, y, signed = _dsp_operands(weight, xbits, signed_x)
        if b >= 1 and y >= DSP_Y_MIN[family]:
            on_dsp = dsp_product(a, b, family, signed)
            if on_dsp is not None:
                if signed_x:
                    return on_dsp, "full"
                return on_dsp, "truncated" if weight < 0 else "extended"
    return const_multiplier(weight, xbits, signed_x, family, use_dsp=False), False


def adder_tree(widths, family, in_dsp=None) -> Resources:
    """A balanced adder tree over terms of the given widths, as
    :func:`hwquant.hw.arith.adder_tree` pairs them, and as Yosys maps it.

    ``alumacc`` merges a tree of additions into one multi-operand ``$macc``: two terms are a
    carry-chain adder; three or more a carry-save tree of full adders (about ``(N - 2) * w``
    of them for ``N`` terms of ``w`` bits, each costing what a full adder of a popcount tree
    costs, :func:`~hwquant.estimate.resources.popcount`) and one carry-chain adder for the
    sum. ``in_dsp`` flags the terms that are DSP products (``"full"``; ``"truncated"`` when
    the product is narrower than its operands; ``"extended"`` when it is zero-extended into
    the sum): the adders Yosys packs into those DSP blocks (see ``_ABSORB``) cost no LUTs, and
    split the rest into separate sums.
    """
    return _tree(widths, family, in_dsp)[0]


def _tree(widths, family, in_dsp=None, rows=None):
    """``(Resources, final sum leaves a DSP block)`` of :func:`adder_tree`; ``rows`` gives,
    per term, the partial-product rows of a constant multiplication merged into the sum (or
    ``None``)."""
    rule = _ABSORB[family]
    flags = in_dsp or [False] * len(widths)
    rows = rows or [None] * len(widths)
    # Nodes: (width, kind, value terms, rows); kind "full"/"truncated"/"extended" (a DSP
    # product that can still take a post-adder), "cascade" (a sum of full products inside DSP
    # blocks, which chains on into the next one), "sealed" (a DSP output that takes no more),
    # "term" (a LUT value) or "fabric" (a sum in LUTs: the terms and rows of its $macc).
    nodes = []
    for w, d, r in zip(widths, flags, rows, strict=True):
        if r is not None:
            nodes.append((w, "fabric", [], list(r)))
        elif d and rule is not None:
            nodes.append((w, d if d in ("truncated", "extended") else "full", None, None))
        else:
            nodes.append((w, "term", None, None))

    def takes(product, addend):
        if product[1] == "cascade":
            return addend[1] in ("full", "cascade")
        if product[1] not in ("full", "truncated", "extended"):
            return False
        if rule == "any":
            return True
        return product[1] == "full" or addend[0] <= product[0]

    if not nodes:
        return Resources(), False
    total = Resources()

    def parts(node):
        return (node[2], node[3]) if node[1] == "fabric" else ([node[0]], [])

    def close(node):
        nonlocal total
        if node[1] == "fabric":
            total += macc(node[2], family, node[3])

    while len(nodes) > 1:
        nxt = []
        for i in range(0, len(nodes) - 1, 2):
            a, b = nodes[i], nodes[i + 1]
            wide = max(a[0], b[0]) + 1
            absorbed = takes(a, b) or takes(b, a)
            if absorbed:
                close(a)
                close(b)
                # Sums of full products chain through the blocks' cascade ports.
                full = {a[1], b[1]} <= {"full", "cascade"}
                nxt.append((wide, "cascade" if full else "sealed", None, None))
            else:
                (ta, ra), (tb, rb) = parts(a), parts(b)
                nxt.append((wide, "fabric", ta + tb, ra + rb))
        if len(nodes) % 2:
            nxt.append(nodes[-1])
        nodes = nxt
    close(nodes[0])
    return total, nodes[0][1] in ("full", "truncated", "extended", "sealed", "cascade")


def _rows(weight, xbits, signed_x):
    """Partial-product rows ``(bits, top)`` of ``x * weight`` merged into a ``$macc``, or
    ``None`` when Yosys keeps the multiplication apart (an unsigned activation times a negative
    constant is a truncated multiply, which ``alumacc`` does not merge)."""
    if signed_x:
        nbits = weight.bit_length() + 1 if weight > 0 else (~weight).bit_length() + 1
        pattern = weight & ((1 << nbits) - 1)
        top = xbits + nbits
        return [(top - i, top) for i in range(nbits) if pattern >> i & 1]
    if weight < 0:
        return None
    return [(xbits, xbits + i) for i in range(weight.bit_length()) if weight >> i & 1]


def _odd_part(weight: int) -> int:
    while weight % 2 == 0:
        weight //= 2
    return weight


def _engines(layer, family, use_dsp):
    """``(Resources, per lane: operand register left to DSP blocks, per PE: dot register left
    to a DSP block)`` of the ``PE`` dot engines."""
    xbits, signed_x = layer.in_format.bits, layer.in_format.signed
    pe, simd = layer.fold.pe, layer.fold.simd
    if not is_unrolled(layer):
        # An unsigned activation times a signed weight: Amaranth zero-extends the activation,
        # but Yosys sees through the constant sign bit (an 8 x 8-bit product either way).
        one = multiplier(xbits, layer.weight_bits, family, use_dsp, signed=signed_x)
        in_dsp = one.dsp > 0
        # The zero-extended activation makes the product narrower than its operands.
        kind = ("full" if signed_x else "truncated") if in_dsp else False
        tree, last = _tree([product_bits(layer)] * simd, family, [kind] * simd)
        return (one * simd + tree) * pe, [in_dsp] * simd, [last] * pe
    # Yosys merges equal products: x[i] * w and x[i] * (w << k) both use x[i] * odd(w), built
    # once however many PEs need it (a positive power of two is wiring).
    weights = np.asarray(layer.weight_matrix(), dtype=np.int64)
    uses = {}
    for row in weights:
        for lane, w in enumerate(row.tolist()):
            if w != 0 and _odd_part(w) != 1:
                key = (lane, _odd_part(w))
                uses[key] = uses.get(key, 0) + 1
    products = {key: const_product(key[1], xbits, signed_x, family, use_dsp=use_dsp)
                for key in uses}
    # A product in LUTs with one consumer melts into that PE's sum (its rows join the $macc);
    # a shared one, or a truncated one, is built apart and adds one term.
    merged = {key for key, (_, in_dsp) in products.items()
              if not in_dsp and uses[key] == 1 and _rows(key[1], xbits, signed_x) is not None}
    total = sum((cost for key, (cost, _) in products.items() if key not in merged),
                Resources())
    lanes = [True] * weights.shape[1]
    dots = []
    for row in weights:
        widths, flags, rows = [], [], []
        for lane, w in enumerate(row.tolist()):
            if w == 0:
                continue
            key = (lane, _odd_part(w))
            in_dsp = products[key][1] if key in products else False
            lanes[lane] = lanes[lane] and bool(in_dsp)
            widths.append(product_bits(layer, w))
            # A post-adder is packed only into a DSP block whose product has one consumer and
            # reaches the adder unshifted.
            packable = uses.get(key) == 1 and (w == key[1] or signed_x)
            flags.append(in_dsp if in_dsp and packable else False)
            if key in merged or (key not in products and not signed_x):
                rows.append(_rows(w, xbits, signed_x))  # (a power of two: one shifted row)
            else:
                rows.append(None)
        tree, last = _tree(widths, family, flags, rows)
        total += tree
        dots.append(last)
    return total, lanes, dots


def resources(layer, family, *, use_dsp=True) -> Resources:
    """LUT/FF/DSP/BRAM of the ``PE`` dot engines of the MVU implementing ``layer``.

    Parameters
    ----------
    layer : :class:`hwquant.ir.Conv2d` or :class:`hwquant.ir.Linear`
        With its :class:`~hwquant.ir.Fold`; ``encoding`` must be ``"fixed"``.
    family : str
        One of :data:`hwquant.estimate.resources.FAMILIES`.
    use_dsp : bool
        Model DSP inference as Yosys does by default; ``False`` keeps every product in LUTs
        (Yosys ``-nodsp``).

    Returns
    -------
    Resources
        Combinational logic only (the engines have no registers; the MVU registers their
        results). Zero only when every weight is zero or a power of two and ``SIMD = 1``.

    Raises
    ------
    TypeError
        ``layer`` is not a weight layer.
    ValueError
        The layer's encoding is not ``fixed``, or the family is unknown.
    """
    _check(layer)
    return _engines(layer, family, use_dsp)[0]


def absorbed_registers(layer, family, *, use_dsp=True) -> dict:
    """MVU register bits Yosys packs into the DSP blocks of the dot engines.

    On Xilinx, ``xilinx_dsp`` moves the operand register in front of a DSP48E1 into its A
    register (a lane whose every product is in a DSP block) and the dot register after it into
    its P register (a PE whose final sum leaves a DSP block). Other families: none.

    Returns
    -------
    dict
        ``{"operand": bits of the operand register absorbed, "dot": [bool per PE]}``
        (``True``: that PE's dot register is absorbed).
    """
    _check(layer)
    if family != "xilinx":
        return {"operand": 0, "dot": [False] * layer.fold.pe}
    _, lanes, dots = _engines(layer, family, use_dsp)
    return {"operand": sum(lanes) * layer.in_format.bits, "dot": dots}


def dot_range(layer, weights=None, *, simd) -> tuple:
    """Worst-case ``(lo, hi)`` of one PE's sum of ``simd`` products: exact for constant
    ``weights``; for ``None`` over any ``weight_bits`` weights, as the hardware sizes its
    engine output."""
    xs = (layer.in_format.lo, layer.in_format.hi)
    if weights is None:
        b = layer.weight_bits
        prods = [w * x for w in (-(1 << (b - 1)), (1 << (b - 1)) - 1) for x in xs]
        return simd * min(prods + [0]), simd * max(prods + [0])
    w = np.asarray(weights, dtype=np.int64)
    lo, hi = w * xs[0], w * xs[1]
    return int(np.minimum(lo, hi).sum()), int(np.maximum(lo, hi).sum())


def word_bits(layer, simd) -> int:
    """Bits of the weight-ROM word of one PE and ``simd`` lanes: ``simd * weight_bits``."""
    return simd * layer.weight_bits


def cycles(layer) -> int:
    """Cycles per inference of the MVU when never stalled: :func:`hwquant.plan.mvu_cycles`."""
    _check(layer)
    return mvu_cycles(layer)


