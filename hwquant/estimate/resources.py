"""Resource records and the per-family cost of the primitives the analytical model composes.

:class:`Resources` is the currency of every estimate (LUT, FF, DSP, BRAM, in the units
:class:`hwquant.estimate.synth.SynthResult` counts: LUT4 on ice40/ecp5/gowin, LUT6 on xilinx;
``SB_RAM40_4K``/``DP16KD``/RAMB18/BSRAM blocks). The primitive functions below return what one
instance of a primitive costs on a family, as Yosys 0.70 maps it (``synth_<family>``, ecp5 and
gowin with ``-nowidelut``). Registers around a primitive are not included: add
:func:`register` for the pipeline registers a component really has.

How the numbers were obtained
-----------------------------
``benchmarks/calibrate_primitives.py`` builds every primitive as a small Amaranth design with
reset-less registered inputs and outputs, synthesizes it for the four families and compares the
counts with these functions (it also refits the coefficients). Three kinds of formula:

* **Exact structural formulas** where the mapping is regular: adders (one LUT per bit, plus the
  carry cell; ECP5 ``CCU2C`` covers two bits with two LUT4s), comparators, registers, the
  DSP-block count of a multiply (Yosys's ``mul2dsp`` splitting rules per family) and the
  block-RAM decision and count of a ROM (``memory_libmap``'s cost rule: block RAM when
  ``blocks x cost < bits x logic cost per bit``; cost 64 per ``SB_RAM40_4K``, 128 per
  ``DP16KD``/BSRAM, 129 per RAMB18; 1/16 per ROM bit, 1/64 on xilinx), with the block count
  taken from the primitive's aspect ratios. These match every calibration case exactly.
* **Least-squares fits**, linear in a few features, for what ABC maps irregularly: muxes,
  constant and variable multipliers in LUTs, ROMs in LUTs, popcounts. The coefficients are in
  ``_LUT_COEFFS`` with the mean and worst relative error of the fit over the calibration cases
  (written next to each row). The constant-multiplier fit is the loosest (mean 15-22 %, worst
  45-86 %: a narrow activation times a wider constant, which Yosys maps row by activation
  bit, and two-term constants such as ``x*5``): Yosys does not recode constants (``x*127``
  costs 83 LUT4 on iCE40, ``(x<<7)-x`` 21), and its cost depends on the bit pattern of the
  constant in ways a few features only approximate. Multiplierless hardware should be emitted as explicit
  shift-add structure and estimated with :func:`adder`.

A cost is rounded to an integer per primitive instance; multiply a :class:`Resources` by an
instance count with ``*``.
"""

import math
from dataclasses import dataclass

__all__ = [
    "FAMILIES",
    "Resources",
    "adder",
    "register",
    "comparator",
    "mux",
    "const_multiplier",
    "multiplier",
    "truncated_multiplier",
    "ice40_piece_in_dsp",
    "dsp_blocks",
    "rom",
    "rom_in_bram",
    "popcount",
    "full_adder_luts",
    "dsp_product",
    "bram_layout",
    "bram_cost",
    "LUT_FEATURES",
]

#: Families the cost functions know, as in :data:`hwquant.estimate.synth.FAMILIES`.
FAMILIES = ("ice40", "ecp5", "xilinx", "gowin")


@dataclass(frozen=True)
class Resources:
    """LUT, flip-flop, DSP-block and block-RAM counts.

    Supports ``a + b``, ``sum([...])`` and ``n * a`` / ``a * n`` for a non-negative integer
    ``n``.

    Attributes
    ----------
    lut : int
        LUTs (LUT4 on ice40/ecp5/gowin, LUT6 on xilinx), carry-chain LUTs included.
    ff : int
        Flip-flops.
    dsp : int
        DSP/multiplier blocks.
    bram : int
        Block RAMs in the family's unit (``SB_RAM40_4K``, ``DP16KD``, RAMB18, BSRAM).
    """

    lut: int = 0
    ff: int = 0
    dsp: int = 0
    bram: int = 0

    def __post_init__(self):
        for name in ("lut", "ff", "dsp", "bram"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"Resource count {name} must be an integer, not {value!r}")
            if value < 0:
                raise ValueError(f"Resource count {name} must be non-negative, not {value!r}")

    def __add__(self, other):
        if not isinstance(other, Resources):
            return NotImplemented
        return Resources(self.lut + other.lut, self.ff + other.ff, self.dsp + other.dsp,
                         self.bram + other.bram)

    def __radd__(self, other):
        if isinstance(other, int) and not isinstance(other, bool) and other == 0:
            return self  # makes sum() work
        return NotImplemented

    def __mul__(self, count):
        if not isinstance(count, int) or isinstance(count, bool):
            return NotImplemented
        if count < 0:
            raise ValueError(f"Resource multiplier must be non-negative, not {count!r}")
        return Resources(self.lut * count, self.ff * count, self.dsp * count,
                         self.bram * count)

    __rmul__ = __mul__

    def to_json(self):
        """The counts as a JSON-ready ``dict``."""
        return {"lut": self.lut, "ff": self.ff, "dsp": self.dsp, "bram": self.bram}


# -- Validation -------------------------------------------------------------------------------

def _family(family):
    if family not in FAMILIES:
        raise ValueError(f"Family must be one of {', '.join(FAMILIES)}, not {family!r}")
    return family


def _count(name, value, minimum=1):
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {value!r}")
    return value


def _lut(value):
    return Resources(lut=max(0, round(value)))


# -- Fitted coefficients ----------------------------------------------------------------------
#
# LUT cost = dot(coefficients, features), the features from LUT_FEATURES. Fitted by
# `benchmarks/calibrate_primitives.py --fit` (least squares) against Yosys 0.70 (YoWASP) with
# the calibration designs of that script; the comment gives the number of cases and the mean and
# worst relative error (model - yosys) / yosys of the fit.

_LUT_COEFFS = {
    "mux": {
        "ice40": (0.8657, 0.5233),  # n=8, mean 9.3%, max 22.3%
        "ecp5": (0.9496, 0.4006),  # n=8, mean 11.3%, max 30.9%
        "xilinx": (1.033, 0.9319),  # n=8, mean 3.2%, max 8.9%
        "gowin": (0.8656, 0.5221),  # n=8, mean 9.0%, max 17.8%
    },
    "const_multiplier": {
        "ice40": (1.58, 1.633, 0.6319),  # n=24, mean 24.8%, max 82.1%
        "ecp5": (1.727, 2.145, 0.5495),  # n=24, mean 17.6%, max 59.5%
        "xilinx": (1.078, 0.8905, 0.4565),  # n=24, mean 19.8%, max 82.2%
        "gowin": (1.633, 2.112, 0.6011),  # n=24, mean 17.7%, max 56.7%
    },
    "multiplier": {
        "ice40": (2.881, -2.296, 3.18),  # n=8, mean 4.4%, max 12.8%
        "ecp5": (2.849, -1.939, 3.267),  # n=8, mean 3.8%, max 11.2%
        "xilinx": (2.365, -2.64, 2.909),  # n=8, mean 6.9%, max 24.0%
        "gowin": (2.882, -2.092, 3.289),  # n=8, mean 4.7%, max 14.4%
    },
    "rom": {
        "ice40": (1.927, 0.4764),  # n=5, mean 4.2%, max 11.7%
        "ecp5": (1.34, 1.189),  # n=7, mean 6.4%, max 19.0%
        "xilinx": (0.9854, 1.931),  # n=8, mean 1.5%, max 2.0%
        "gowin": (1.876, 0.5407),  # n=7, mean 5.1%, max 14.5%
    },
    "popcount": {
        "ice40": (2.038, -2.412),  # n=6, mean 2.9%, max 9.3%
        "ecp5": (2.015, -1.988),  # n=6, mean 4.4%, max 7.7%
        "xilinx": (1.697, -2.074),  # n=6, mean 5.1%, max 22.6%
        "gowin": (2.003, -2.042),  # n=6, mean 3.2%, max 10.0%
    },
}


def _fitted(primitive, family, features):
    coeffs = _LUT_COEFFS[primitive][family]
    return sum(c * f for c, f in zip(coeffs, features, strict=True))


# -- Features of the fitted formulas ----------------------------------------------------------

def _mux_features(family, *, bits, ways, **_):
    if ways <= 1:
        return None
    if family == "xilinx":
        # A LUT6 is a 4:1 mux; MUXF7/MUXF8 combine LUT6 outputs for free.
        groups = -(-ways // 4)
        return [bits * groups, bits * (groups - 1)]
    return [bits * (ways - 1), ways - 1]


def _constant_bits(weight):
    """``(width, pattern)`` of a weight as Amaranth types it: unsigned for ``weight >= 0``,
    two's complement in the fewest bits for ``weight < 0``."""
    if weight < 0:
        width = (~weight).bit_length() + 1
        return width, weight & ((1 << width) - 1)
    return max(weight.bit_length(), 1), weight


def _const_multiplier_features(family, *, weight, xbits, signed_x, **_):
    if weight >= 0 and weight & (weight - 1) == 0:
        return None  # 0 or a power of two: wiring
    cbits, pattern = _constant_bits(weight)
    ones = pattern.bit_count()
    negative = weight < 0
    # rows: one shifted copy of x per set bit; a negative weight adds a negation; an unsigned x
    # times a negative weight is a mixed-sign product, which Yosys sign-extends row by row.
    return [xbits * (ones - 1), xbits * negative, xbits * cbits * (negative and not signed_x)]


def _multiplier_features(family, *, abits, bbits, signed=False, **_):
    if min(abits, bbits) <= 2:
        return None  # structural: see multiplier()
    return [abits * bbits, abits + bbits, (abits + bbits) * bool(signed)]


def _rom_features(family, *, depth, width, **_):
    if rom_in_bram(depth, width, family):
        return None
    if depth <= (64 if family == "xilinx" else 16):
        return None  # one LUT per output bit
    if family == "xilinx":
        # LUT6 leaves of 64 words, MUXF7/MUXF8 free up to 256 words, LUTs above that.
        leaves = -(-depth // 64)
        return [width * leaves, width * max(-(-depth // 256) - 1, 0)]
    leaves = -(-depth // 16)
    return [width * leaves, width * (leaves - 1)]


def _popcount_features(family, *, n, **_):
    # A balanced adder tree has about 2n - log2(n) - 2 sum bits.
    return [n, math.ceil(math.log2(n))]


#: Per fitted primitive, ``features(family, **params) -> list of float`` (or ``None`` where the
#: cost is structural, not fitted). ``benchmarks/calibrate_primitives.py --fit`` uses these.
LUT_FEATURES = {
    "mux": _mux_features,
    "const_multiplier": _const_multiplier_features,
    "multiplier": _multiplier_features,
    "rom": _rom_features,
    "popcount": _popcount_features,
}


# -- Primitives -------------------------------------------------------------------------------

def register(bits):
    """``bits`` flip-flops (no LUT: every family has reset and enable in the flip-flop).

    Parameters
    ----------
    bits : int

    Returns
    -------
    Resources
    """
    return Resources(ff=_count("Register width", bits, 0))


def adder(bits, family):
    """A two-operand adder (or subtractor) of ``bits``-bit operands with a ``bits + 1``-bit sum.

    Exact for Yosys 0.70: ice40 ``bits`` LUT4 (+ ``bits`` ``SB_CARRY``, which cost no LUT);
    ecp5 one ``CCU2C`` (2 LUT4) per 2 sum bits; xilinx ``bits`` LUT6 (+ ``CARRY4``); gowin
    ``bits + 1`` ``ALU`` (1 LUT4 each). A sum truncated to ``bits`` bits costs the same to
    within one LUT.

    Parameters
    ----------
    bits : int
        Width of the wider operand.
    family : str

    Returns
    -------
    Resources
    """
    bits = _count("Adder width", bits)
    family = _family(family)
    if family == "ecp5":
        return Resources(lut=2 * (-(-(bits + 1) // 2)))
    if family == "gowin":
        return Resources(lut=bits + 1)
    return Resources(lut=bits)


def comparator(bits, family):
    """A magnitude comparison (``a < b``) of two ``bits``-bit operands.

    Exact for Yosys 0.70: a carry chain of ``bits + 1`` LUT4 on ice40/ecp5/gowin; on xilinx
    ``ceil(2 * bits / 3)`` LUT6 (three bit pairs per LUT6 into a ``CARRY4``).

    Parameters
    ----------
    bits : int
    family : str

    Returns
    -------
    Resources
    """
    bits = _count("Comparator width", bits)
    family = _family(family)
    if family == "xilinx":
        return Resources(lut=-(-2 * bits // 3))
    return Resources(lut=bits + 1)


def mux(bits, ways, family):
    """A ``ways``-to-1 multiplexer of ``bits``-bit words with a binary select.

    Fitted: about ``bits * (ways - 1)`` LUT4 (a LUT4 is a 2:1 mux), ``bits * (2 * ceil(ways /
    4) - 1)`` LUT6 on xilinx.

    Parameters
    ----------
    bits : int
    ways : int
    family : str

    Returns
    -------
    Resources
    """
    bits = _count("Mux width", bits)
    ways = _count("Mux inputs", ways)
    family = _family(family)
    features = _mux_features(family, bits=bits, ways=ways)
    if features is None:
        return Resources()
    return _lut(_fitted("mux", family, features))


def dsp_blocks(abits, bbits, family, *, signed=False):
    """DSP blocks Yosys 0.70 infers for an ``abits`` x ``bbits`` multiply (0: stays in LUTs).

    The rules of ``mul2dsp`` per family: ice40 ``SB_MAC16`` 16x16, only for products of at
    least 11 bits; ecp5 ``MULT18X18D`` 18x18 for any product of at least 2x2; xilinx
    ``DSP48E1`` 25x18 signed (24x17 unsigned), for products of at least 9 bits; gowin
    ``MULT36X36``, ``MULT18X18`` or ``MULT9X9`` (each counted as one block) by the passes of
    ``synth_gowin`` (:data:`_GOWIN_PASSES`: both operands at least 4 bits, one at least 10
    for 18x18). Wider operands are split into blocks of the maximum size; on gowin a piece
    too small for its pass goes to the later ones, or stays in LUTs.

    Parameters
    ----------
    abits, bbits : int
        Operand widths (for a constant, the width of the constant).
    family : str
    signed : bool

    Returns
    -------
    int
    """
    abits = _count("Multiplier operand width", abits)
    bbits = _count("Multiplier operand width", bbits)
    family = _family(family)
    a, b = max(abits, bbits), min(abits, bbits)
    if family == "ice40":
        if b < 2 or a + b < 11:
            return 0
        return sum(ice40_piece_in_dsp(pa, pb) for pa, pb in _ice40_pieces(a, b))
    if family == "ecp5":
        if b < 2:
            return 0
        return -(-a // 18) * -(-b // 18)
    if family == "xilinx":
        if b < 2 or a + b < 9:
            return 0
        amax, bmax = (25, 18) if signed else (24, 17)
        return -(-a // amax) * -(-b // bmax)
    return _gowin_blocks(a, b, 0)


#: ``synth_gowin``'s ``mul2dsp`` passes, in order: (max A, max B, min A, min B) of
#: ``MULT36X36``, ``MULT18X18`` (twice, the minimums mirrored) and ``MULT9X9``.
_GOWIN_PASSES = ((36, 36, 22, 22), (18, 18, 10, 4), (18, 18, 4, 10), (9, 9, 4, 4))


def _gowin_blocks(a, b, start) -> int:
    """Gowin multiplier blocks of an ``a`` x ``b`` product from pass ``start`` on: the first
    pass whose minimums the operands meet (the wider one on A) splits them into pieces of
    its maximums, takes every piece that meets its minimums, and leaves the others to the
    later passes (a piece no pass takes stays in LUTs). Measured with Yosys 0.70: 21 x 4 is
    one MULT18X18 (and a 3 x 4 LUT multiplier), 24 x 16 one MULT18X18 and two MULT9X9
    (the 6 x 16 piece), 30 x 6 two MULT18X18."""
    a, b = max(a, b), min(a, b)  # mul2dsp puts the wider operand on A
    for i in range(start, len(_GOWIN_PASSES)):
        amax, bmax, amin, bmin = _GOWIN_PASSES[i]
        if a < amin or b < bmin:
            continue
        blocks = 0
        for pa in [amax] * (a // amax) + ([a % amax] if a % amax else []):
            for pb in [bmax] * (b // bmax) + ([b % bmax] if b % bmax else []):
                taken = pa >= amin and pb >= bmin
                blocks += 1 if taken else _gowin_blocks(pa, pb, i + 1)
        return blocks
    return 0


def _ice40_pieces(a, b) -> list:
    """``(a, b)`` widths of the 16 x 16 pieces ``mul2dsp`` splits an iCE40 multiply into."""
    def split(n):
        return [16] * (n // 16) + ([n % 16] if n % 16 else [])
    return [(pa, pb) for pa in split(a) for pb in split(b)]


def ice40_piece_in_dsp(pa, pb) -> bool:
    """Whether ``mul2dsp`` maps a ``pa`` x ``pb`` piece of an iCE40 multiply to an SB_MAC16."""
    # A piece too small for SB_MAC16 (under 2 bits, or a product under 11 bits) stays in LUTs
    # (a 21 x 4 requantization multiply: one SB_MAC16 and a 5 x 4 LUT multiplier).
    return min(pa, pb) >= 2 and pa + pb >= 11


#: Width of the pre-adder in front of a DSP block's multiplier that Yosys packs an add or a
#: subtract into (``xilinx_dsp``: DSP48E1's ``D +- A``); families without one are absent.
DSP_PRE_ADDER_BITS = {"xilinx": 25}


def pre_adder_absorbs(product: Resources, sum_bits: int, family) -> bool:
    """Whether the one add feeding ``product`` (a multiply costed by :func:`dsp_product`) of
    ``sum_bits`` fits the family's DSP pre-adder, where it costs no LUTs (measured: Yosys maps
    ``(2g - s) * 76`` on xilinx to one DSP48E1 and no LUT)."""
    return product.dsp == 1 and sum_bits <= DSP_PRE_ADDER_BITS.get(family, 0)


def dsp_product(abits, bbits, family, signed):
    """A multiply of ``abits`` x ``bbits`` in DSP blocks (:func:`dsp_blocks`), with the
    fabric adders that sum the partial products of a split one; ``None`` when Yosys keeps the
    product in LUTs."""
    blocks = dsp_blocks(abits, bbits, family, signed=signed)
    if blocks == 0:
        return None
    # Partial products of split multiplies are summed in fabric.
    extra = Resources()
    pieces = blocks
    if family == "ice40":
        small = [(pa, pb) for pa, pb in _ice40_pieces(max(abits, bbits), min(abits, bbits))
                 if not ice40_piece_in_dsp(pa, pb)]
        for pa, pb in small:
            extra += multiplier(pa, pb, family, False, signed=signed)
        pieces += len(small)
    if pieces > 1:
        extra += adder(max(abits + bbits - 18, 1), family) * (pieces - 1)
    return Resources(dsp=blocks) + extra


def const_multiplier(weight, xbits, signed_x, family, *, use_dsp=False):
    """Multiplication of an ``xbits``-bit activation by the constant ``weight``.

    Yosys keeps a constant multiply as a ``$mul``: with DSP inference (``use_dsp``; on ecp5,
    xilinx and gowin that is the default unless ``-nodsp``, on ice40 it needs ``-dsp``) it takes
    a DSP block when :func:`dsp_blocks` says so, even for ``x*3``; otherwise it is LUT logic of
    one shifted row per set bit of the constant, which Yosys does not recode. ``0`` and positive
    powers of two cost nothing.

    Fitted LUT cost: ``c0 * xbits * (ones - 1) + c1 * xbits * [weight < 0] + c2 * xbits * cbits
    * [weight < 0 and x unsigned]``, with ``ones`` the set bits of the constant (two's
    complement for a negative one) and ``cbits`` its width. Mixed signedness is expensive: an
    unsigned activation times a negative constant costs about ``xbits * cbits / 2`` more LUTs.

    Parameters
    ----------
    weight : int
    xbits : int
    signed_x : bool
    family : str
    use_dsp : bool
        Model DSP inference (Yosys without ``-nodsp``, ``-dsp`` on ice40).

    Returns
    -------
    Resources
    """
    if not isinstance(weight, int) or isinstance(weight, bool):
        raise TypeError(f"Weight must be an integer, not {weight!r}")
    xbits = _count("Activation width", xbits)
    family = _family(family)
    features = _const_multiplier_features(family, weight=weight, xbits=xbits,
                                          signed_x=signed_x)
    if features is None:
        return Resources()
    if use_dsp:
        cbits, _ = _constant_bits(weight)
        on_dsp = dsp_product(xbits, cbits, family, signed_x or weight < 0)
        if on_dsp is not None:
            return on_dsp
    return _lut(_fitted("const_multiplier", family, features))


def multiplier(abits, bbits, family, use_dsp, *, signed=False):
    """A variable ``abits`` x ``bbits`` multiplier.

    With ``use_dsp``, the blocks of :func:`dsp_blocks` (plus adders for split products);
    without, or when the product is too small for a DSP block, LUT logic fitted as
    ``c0 * abits * bbits + c1 * (abits + bbits) + c2 * (abits + bbits) * signed``
    (about 2.6 LUT4 or 2.1 LUT6 per partial-product bit).

    Parameters
    ----------
    abits, bbits : int
    family : str
    use_dsp : bool
    signed : bool

    Returns
    -------
    Resources
    """
    abits = _count("Multiplier operand width", abits)
    bbits = _count("Multiplier operand width", bbits)
    family = _family(family)
    if use_dsp:
        on_dsp = dsp_product(abits, bbits, family, signed)
        if on_dsp is not None:
            return on_dsp
    if min(abits, bbits) == 1:
        return Resources(lut=max(abits, bbits))  # an AND gate per bit
    if min(abits, bbits) == 2:
        # two rows of AND gates and one adder
        return Resources(lut=max(abits, bbits)) + adder(max(abits, bbits), family)
    features = _multiplier_features(family, abits=abits, bbits=bbits, signed=signed)
    return _lut(_fitted("multiplier", family, features))


def truncated_multiplier(abits, bbits, ybits, family) -> Resources:
    """A variable ``abits`` x ``bbits`` multiply in LUTs of which only the low ``ybits``
    product bits are read (Yosys drops the partial-product cells above them; the sign
    extension of a signed product lies above them too): the unsigned :func:`multiplier`'s
    price scaled by the partial-product bits kept, ``sum_i min(abits, ybits - i)`` over the
    ``bbits`` rows. Measured on the selected-coefficient products of a partly folded bdcnn
    layer cut to 9-10 bits (ice40, Yosys 0.70): about 61 LUT4 each, modelled 44-68."""
    abits = _count("Multiplier operand width", abits)
    bbits = _count("Multiplier operand width", bbits)
    ybits = _count("Product width", ybits)
    if ybits >= abits + bbits:
        return multiplier(abits, bbits, family, False)
    kept = sum(max(min(abits, ybits - i), 0) for i in range(bbits))
    full = multiplier(abits, bbits, family, False)
    return Resources(lut=round(full.lut * kept / (abits * bbits)))


# Block RAM aspect ratios (depth, width) and memory_libmap costs. ECP5/Gowin/Xilinx widths
# of 9/18/36 hold 8/16/32-bit words; a ROM reads through one port.
_BRAM_SHAPES = {
    "ice40": ((256, 16), (512, 8), (1024, 4), (2048, 2)),
    "ecp5": ((512, 36), (1024, 18), (2048, 9), (4096, 4), (8192, 2), (16384, 1)),
    "xilinx": ((512, 36), (1024, 18), (2048, 9), (4096, 4), (8192, 2), (16384, 1)),
    "gowin": ((512, 36), (1024, 18), (2048, 9), (4096, 4), (8192, 2), (16384, 1)),
}
_BRAM_COST = {"ice40": 64, "ecp5": 128, "xilinx": 129, "gowin": 128}
_ROM_LOGIC_BITS_PER_COST = {"ice40": 16, "ecp5": 16, "xilinx": 64, "gowin": 16}


def bram_layout(depth, width, family):
    """``(blocks, depth slices)`` of the cheapest block-RAM tiling of ``depth`` x ``width``."""
    # Fewest blocks; of those, fewest depth slices (no output mux), as memory_libmap picks.
    return min((-(-depth // shape_depth) * -(-width // shape_width), -(-depth // shape_depth))
               for shape_depth, shape_width in _BRAM_SHAPES[family])


def bram_cost(family):
    """``memory_libmap``'s cost of one block RAM of the family (64, 128, 129 or 128)."""
    return _BRAM_COST[_family(family)]


def full_adder_luts(family):
    """LUTs per full adder of a carry-save tree: the slope of the calibrated
    :func:`popcount` (a tree of full adders), in LUTs per input bit."""
    return _LUT_COEFFS["popcount"][_family(family)][0]


def rom_in_bram(depth, width, family):
    """Whether Yosys puts a ``depth`` x ``width`` ROM (synchronous read) in block RAM.

    ``memory_libmap`` picks block RAM when ``blocks x cost`` is strictly below the logic cost,
    ``depth * width / 16`` (``/ 64`` on xilinx). So: ice40 from 2048 bits (one
    ``SB_RAM40_4K``), ecp5/gowin above 2048 bits, xilinx above 8256 bits (a RAMB18); a
    256 x 8 ROM stays in LUTs on ecp5, gowin and xilinx.

    Parameters
    ----------
    depth, width : int
    family : str

    Returns
    -------
    bool
    """
    blocks, _ = bram_layout(depth, width, family)
    logic_cost = (depth * width) // _ROM_LOGIC_BITS_PER_COST[family]
    return blocks * _BRAM_COST[family] < logic_cost


def rom(depth, width, family):
    """A ROM of ``depth`` words of ``width`` bits with a synchronous read port.

    In block RAM (see :func:`rom_in_bram`) it costs the blocks of the cheapest aspect ratio
    (``SB_RAM40_4K`` 256x16 .. 2048x2; ``DP16KD``/BSRAM/RAMB18 512x36 .. 16k x 1) plus one
    LUT per output bit and extra depth slice for the output mux. In LUTs the cost is fitted:
    ``c0 * width * leaves + c1 * width * (mux stages)`` with 16-word LUT4 leaves (64-word LUT6
    leaves and free MUXF7/F8 up to 256 words on xilinx). The output register is not included.

    Parameters
    ----------
    depth, width : int
    family : str

    Returns
    -------
    Resources
    """
    depth = _count("ROM depth", depth)
    width = _count("ROM width", width)
    family = _family(family)
    if depth == 1:
        return Resources()
    if rom_in_bram(depth, width, family):
        blocks, slices = bram_layout(depth, width, family)
        return Resources(lut=width * (slices - 1), bram=blocks)
    features = _rom_features(family, depth=depth, width=width)
    if features is None:
        return Resources(lut=width)  # one LUT per output bit
    return _lut(_fitted("rom", family, features))


def popcount(n, family):
    """The number of set bits of an ``n``-bit vector, as a balanced tree of adders.

    Fitted: about 1.95 LUT4 per input bit (ice40/ecp5/gowin), 1.6 LUT6 (xilinx).

    Parameters
    ----------
    n : int
    family : str

    Returns
    -------
    Resources
    """
    n = _count("Popcount width", n)
    family = _family(family)
    if n == 1:
        return Resources()
    return _lut(_fitted("popcount", family, _popcount_features(family, n=n)))
