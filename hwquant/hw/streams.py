"""Stream signatures shared by every hardware component."""

from amaranth.hdl import signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import Out

__all__ = ["lane_shape", "activation_signature", "probe_signature"]


def lane_shape(fmt):
    """Amaranth shape of one activation lane of :class:`hwquant.ir.ActFormat` ``fmt``."""
    return signed(fmt.bits) if fmt.signed else unsigned(fmt.bits)


def activation_signature(fmt, lanes: int) -> stream.Signature:
    """``stream.Signature(data.ArrayLayout(lane_shape(fmt), lanes))``: one beat = ``lanes``
    values, lane 0 in the least significant bits."""
    return stream.Signature(data.ArrayLayout(lane_shape(fmt), lanes))


def probe_signature(fmt, lanes: int) -> wiring.Signature:
    """Observe-only copy of a stream: payload, valid *and* ready are outputs."""
    return wiring.Signature({
        "payload": Out(data.ArrayLayout(lane_shape(fmt), lanes)),
        "valid": Out(1),
        "ready": Out(1),
    })
