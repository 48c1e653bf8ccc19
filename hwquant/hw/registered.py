"""A component with every port behind a register: the unit of a synthesis measurement.

Synthesis counts the logic between registers and times register-to-register paths, so a
combinational block (a dot engine, a popcount, a constant-matrix adder graph) is measured with
its inputs and outputs registered, as it sits in a pipeline. :class:`Registered` does that for
any component whose signature is flat (only ``In``/``Out`` members).
"""

from amaranth.hdl import Module, Shape, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Registered"]


class Registered(wiring.Component):
    """``inner`` with a register on every input and every output port.

    Signature: one flat ``unsigned`` port per port of ``inner``, same name, direction and
    width (a port with a data layout, e.g. an array of lanes, becomes its bits, element 0 in
    the LSBs), except that an input whose signature gives it a nonzero ``init`` (an enable
    that idles high, e.g. :class:`hwquant.hw.cmvm.ConstantMatrix` ``en``) is tied to that
    value: the block is measured as it runs. Latency: two cycles more than ``inner`` (one
    input, one output register).
    Resources: ``inner`` plus one reset-less flip-flop per port bit, no logic.

    Parameters
    ----------
    inner : wiring.Component
        A component with a flat signature (no nested interfaces).

    Raises
    ------
    TypeError
        If ``inner``'s signature has a member that is not a port.
    """

    def __init__(self, inner):
        members = {}
        for name, member in inner.signature.members.items():
            if not member.is_port:
                raise TypeError(f"Registered needs a flat signature; member {name!r} of "
                                f"{type(inner).__name__} is an interface")
            if member.flow == wiring.In and member.init:
                continue  # tied to its init in elaborate
            width = Shape.cast(member.shape).width
            members[name] = (In if member.flow == wiring.In else Out)(width)
        self._inner = inner
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.inner = inner = self._inner
        for name, member in inner.signature.members.items():
            port = Value.cast(getattr(inner, name))
            if name not in self.signature.members:
                m.d.comb += port.eq(member.init)
                continue
            outer = getattr(self, name)
            if member.flow == wiring.In:
                held = Signal(len(port), name=f"{name}_q", reset_less=True)
                m.d.sync += held.eq(outer)
                m.d.comb += port.eq(held)
            else:
                m.d.sync += outer.eq(port)
        return m
