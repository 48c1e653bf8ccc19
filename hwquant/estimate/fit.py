"""Whether a modelled network fits a board: the estimate against the board's capacity
(:class:`hwquant.boards.Capacity`, in the units the model counts).

Distributed-RAM cells take LUT sites of the fabric (they are counted apart from ``lut``, as
:class:`hwquant.estimate.synth.SynthResult` counts them): :func:`check_fit` charges each cell
the LUTs it occupies (:data:`LUTS_PER_LUTRAM_CELL`: a Xilinx ``RAM32M``/``RAM64M`` is the four
LUT6 of a SLICEM, an ECP5 ``TRELLIS_DPR16X4`` the two LUT4 of a slice, a Gowin
``RAM16SDP4`` the four LUT4 of a CLS pair), with the LUT total.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import HwquantError

__all__ = ["DoesNotFitError", "Fit", "check_fit", "LUTS_PER_LUTRAM_CELL"]

#: LUT sites one distributed-RAM cell occupies, per family.
LUTS_PER_LUTRAM_CELL = {"ice40": 0, "ecp5": 2, "xilinx": 4, "gowin": 4}

_NAMES = {"lut": "LUTs", "ff": "flip-flops", "dsp": "DSP blocks", "bram": "block RAMs"}


class DoesNotFitError(HwquantError, ValueError):
    """The modelled network needs more of a resource than the board's device has."""


@dataclass(frozen=True)
class Fit:
    """Utilization of one board by one estimate.

    Attributes
    ----------
    board : str
        Board id.
    used, available : dict of str to int
        Per resource (``lut``, ``ff``, ``dsp``, ``bram``); ``used["lut"]`` includes the LUT
        sites of distributed RAM.
    over : list of str
        Resources that exceed the capacity, in the order lut, ff, dsp, bram.
    largest : dict of str to dict
        Per resource, the component row (``{layer, stage, component, amount}``) that uses the
        most of it (absent when nothing uses it).
    """

    board: str
    used: dict
    available: dict
    over: list
    largest: dict

    @property
    def fits(self) -> bool:
        return not self.over

    def utilization(self) -> dict:
        """``used / available`` per resource (``None`` where the device has none)."""
        return {k: (self.used[k] / self.available[k] if self.available[k] else None)
                for k in self.used}


def _amount(row, key, family):
    if key == "lut":
        return row["lut"] + row.get("lutram", 0) * LUTS_PER_LUTRAM_CELL[family]
    return row[key]


def check_fit(estimate, board, *, raise_error: bool = True) -> Fit:
    """Compare a :class:`~hwquant.estimate.model.NetworkEstimate` with a board's capacity.

    Parameters
    ----------
    estimate : NetworkEstimate
        Modelled for the board's family.
    board : :class:`hwquant.boards.Board`
    raise_error : bool
        Raise when the network does not fit (default); otherwise return the :class:`Fit`.

    Returns
    -------
    Fit

    Raises
    ------
    ValueError
        The estimate is for another family than the board's.
    DoesNotFitError
        A resource exceeds the capacity: the message names each one over, with used and
        available counts, and the component that uses most of it (layer, stage, part).
    """
    family = estimate.family
    if family != board.family:
        raise ValueError(f"The estimate is for {family}, but board '{board.id}' is "
                         f"{board.family}")
    cap = board.capacity
    available = {"lut": cap.lut, "ff": cap.ff, "dsp": cap.dsp, "bram": cap.bram}
    used = {"lut": estimate.total.lut + estimate.lutram * LUTS_PER_LUTRAM_CELL[family],
            "ff": estimate.total.ff, "dsp": estimate.total.dsp, "bram": estimate.total.bram}
    largest = {}
    for key in used:
        best = max(estimate.components, key=lambda r, k=key: _amount(r, k, family),
                   default=None)
        if best is not None and _amount(best, key, family) > 0:
            largest[key] = {"layer": best["layer"], "stage": best.get("stage", best["layer"]),
                            "component": best["component"],
                            "amount": _amount(best, key, family)}
    over = [k for k in used if used[k] > available[k]]
    fit = Fit(board=board.id, used=used, available=available, over=over, largest=largest)
    if over and raise_error:
        parts = []
        for k in over:
            big = largest[k]
            parts.append(f"{_NAMES[k]}: {used[k]} needed, {available[k]} available; the "
                         f"largest consumer is layer '{big['layer']}' ({big['stage']}, "
                         f"{big['component']}: {big['amount']})")
        raise DoesNotFitError(f"The network does not fit board '{board.id}' "
                              f"({board.device}): " + "; ".join(parts))
    return fit
