"""PLL settings for a design clock faster (or slower) than the board oscillator.

Pure Python: :func:`pll_for` finds the divider settings of the family's PLL that bring the
board clock closest to a requested frequency without exceeding it, and reports the frequency
they achieve. The board top (:class:`hwquant.fpga_flow.BoardPins`) instantiates the PLL with
them, and the build constrains nextpnr to the achieved frequency.

* iCE40 (``SB_PLL40_PAD``, simple feedback; iCE40 sysCLOCK PLL design guide):
  ``f_pfd = f_in / (DIVR + 1)`` in 10..133 MHz, ``f_vco = f_pfd * (DIVF + 1)`` in
  533..1066 MHz, ``f_out = f_vco / 2**DIVQ`` in 16..275 MHz; ``DIVR`` 0..15, ``DIVF``
  0..127, ``DIVQ`` 1..6; ``FILTER_RANGE`` from ``f_pfd``.
* ECP5 (``EHXPLLL``, feedback from ``CLKOP``; ECP5 sysCLOCK PLL usage guide):
  ``f_pfd = f_in / CLKI_DIV`` in 3.125..400 MHz, ``f_out = f_pfd * CLKFB_DIV`` in
  3.125..400 MHz, ``f_vco = f_out * CLKOP_DIV`` in 400..800 MHz; ``CLKI_DIV`` 1..128,
  ``CLKFB_DIV`` 1..80, ``CLKOP_DIV`` 1..128.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import HwquantError

__all__ = ["PllError", "PllSetting", "ice40_pll", "ecp5_pll", "pll_for", "PLL_FAMILIES",
           "TOLERANCE"]

#: A setting is accepted when the achieved frequency is at most this far below the request.
TOLERANCE = 0.01

#: Output range (MHz) per family's PLL.
_OUT_RANGE = {"ice40": (16.0, 275.0), "ecp5": (3.125, 400.0)}


class PllError(HwquantError):
    """A requested clock the family's PLL cannot make from the board clock."""


@dataclass(frozen=True)
class PllSetting:
    """One PLL configuration.

    Attributes
    ----------
    family : str
    primitive : str
        ``SB_PLL40_PAD`` or ``EHXPLLL``.
    f_in_mhz, f_out_mhz, requested_mhz : float
        Board clock, achieved output, what was asked for.
    f_vco_mhz, f_pfd_mhz : float
    params : dict
        The primitive's divider parameters (``DIVR``, ``DIVF``, ``DIVQ``, ``FILTER_RANGE``;
        ``CLKI_DIV``, ``CLKFB_DIV``, ``CLKOP_DIV``).
    """

    family: str
    primitive: str
    f_in_mhz: float
    f_out_mhz: float
    requested_mhz: float
    f_vco_mhz: float
    f_pfd_mhz: float
    params: dict = field(default_factory=dict)

    def summary(self) -> dict:
        return {"primitive": self.primitive, "f_in_mhz": self.f_in_mhz,
                "f_out_mhz": round(self.f_out_mhz, 6), "requested_mhz": self.requested_mhz,
                "f_vco_mhz": round(self.f_vco_mhz, 6), "f_pfd_mhz": round(self.f_pfd_mhz, 6),
                "params": dict(self.params)}


def _ice40_filter_range(f_pfd: float) -> int:
    """The loop filter setting for a phase-detector frequency (MHz)."""
    for limit, value in ((17, 1), (26, 2), (44, 3), (66, 4), (101, 5)):
        if f_pfd < limit:
            return value
    return 6


def _check_request(family, f_in, f_out):
    lo, hi = _OUT_RANGE[family]
    for what, v in (("board clock", f_in), ("clock", f_out)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise PllError(f"The {what} must be a positive frequency in MHz, not {v!r}")
    if not lo <= f_out <= hi:
        raise PllError(f"Clock {f_out:g} MHz is outside the {family} PLL's output range "
                       f"{lo:g}..{hi:g} MHz")


def _pick(candidates, family, f_in, f_out):
    """The candidate closest to ``f_out`` from below (ties: the smallest input divider, then
    the lowest VCO); refused when the best is more than :data:`TOLERANCE` below the
    request."""
    below = [c for c in candidates if c.f_out_mhz <= f_out * (1 + 1e-9)]
    if below:
        best = min(below, key=lambda c: (round(max(f_out - c.f_out_mhz, 0), 9),
                                         next(iter(c.params.values())), c.f_vco_mhz))
        if f_out - best.f_out_mhz <= TOLERANCE * f_out:
            return best
        near = f" (nearest below: {best.f_out_mhz:.4g} MHz)"
    else:
        near = ""
    raise PllError(f"The {family} PLL cannot make {f_out:g} MHz from the {f_in:g} MHz board "
                   f"clock within {TOLERANCE:.0%}{near}")


def ice40_pll(f_in_mhz: float, f_out_mhz: float) -> PllSetting:
    """The ``SB_PLL40_PAD`` setting (simple feedback) closest to ``f_out_mhz`` from below.

    Raises
    ------
    PllError
        The request is outside 16..275 MHz or no setting comes within :data:`TOLERANCE`.
    """
    _check_request("ice40", f_in_mhz, f_out_mhz)
    found = []
    for divr in range(16):
        f_pfd = f_in_mhz / (divr + 1)
        if not 10 <= f_pfd <= 133:
            continue
        for divf in range(128):
            f_vco = f_pfd * (divf + 1)
            if not 533 <= f_vco <= 1066:
                continue
            for divq in range(1, 7):
                f = f_vco / (1 << divq)
                if 16 <= f <= 275:
                    found.append(PllSetting(
                        "ice40", "SB_PLL40_PAD", f_in_mhz, f, f_out_mhz, f_vco, f_pfd,
                        {"DIVR": divr, "DIVF": divf, "DIVQ": divq,
                         "FILTER_RANGE": _ice40_filter_range(f_pfd)}))
    return _pick(found, "ice40", f_in_mhz, f_out_mhz)


def ecp5_pll(f_in_mhz: float, f_out_mhz: float) -> PllSetting:
    """The ``EHXPLLL`` setting (``CLKOP`` feedback) closest to ``f_out_mhz`` from below.

    Raises
    ------
    PllError
        The request is outside 3.125..400 MHz or no setting comes within :data:`TOLERANCE`.
    """
    _check_request("ecp5", f_in_mhz, f_out_mhz)
    found = []
    for clki in range(1, 129):
        f_pfd = f_in_mhz / clki
        if not 3.125 <= f_pfd <= 400:
            continue
        for clkfb in range(1, 81):
            f = f_pfd * clkfb
            if not 3.125 <= f <= 400:
                continue
            # The VCO's divider: the one nearest the middle of the VCO range.
            ops = [d for d in range(1, 129) if 400 <= f * d <= 800]
            if not ops:
                continue
            clkop = min(ops, key=lambda d: abs(f * d - 600))
            found.append(PllSetting("ecp5", "EHXPLLL", f_in_mhz, f, f_out_mhz, f * clkop,
                                    f_pfd, {"CLKI_DIV": clki, "CLKFB_DIV": clkfb,
                                            "CLKOP_DIV": clkop}))
    return _pick(found, "ecp5", f_in_mhz, f_out_mhz)


#: Families with a PLL the board top can instantiate, and their setting functions.
PLL_FAMILIES = {"ice40": ice40_pll, "ecp5": ecp5_pll}


def pll_for(board, f_out_mhz: float) -> PllSetting:
    """The PLL setting of ``board``'s family for a ``f_out_mhz`` design clock.

    Raises
    ------
    PllError
        The family has no PLL support here, or the request is unreachable.
    """
    fn = PLL_FAMILIES.get(board.family)
    if fn is None:
        raise PllError(f"Board '{board.id}' ({board.family}): --clock-mhz needs a PLL, which "
                       f"hwquant instantiates for {', '.join(sorted(PLL_FAMILIES))} only")
    return fn(board.clock_mhz, f_out_mhz)
