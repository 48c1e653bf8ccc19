"""Exceptions that carry a user-facing message (the CLI prints them as one line, exit 2)."""

__all__ = [
    "HwquantError",
    "UnsupportedLayerError",
    "HwqFormatError",
    "ToolNotFoundError",
    "ToolFailedError",
    "VerificationFailed",
]


class HwquantError(Exception):
    """Base class of every error hwquant raises on purpose."""


class UnsupportedLayerError(HwquantError, ValueError):
    """A model contains an operation or parameter hwquant cannot map."""


class HwqFormatError(HwquantError, ValueError):
    """A ``.hwq`` file is corrupt, truncated or of an unknown version."""


class ToolNotFoundError(HwquantError, RuntimeError):
    """An external tool (Verilator, Yosys, nextpnr) is not installed."""


class ToolFailedError(HwquantError, RuntimeError):
    """An external tool ran and failed; the message carries its log tail."""


class VerificationFailed(HwquantError):
    """The simulated hardware disagrees with the golden model."""
