"""Golden inner product of the ``bitmask`` arithmetic kind.

The IR stores a bit-masked weight as its integer value at the layer's weight scale
(:class:`hwquant.ir.BitmaskData`; the mask only restricts which integers occur), so the
inner product is the plain signed integer dot product of the ``fixed`` kind:
``ACC[n, oc] = sum_i W[oc, i] * cols[n, i]``, exactly, in int64.
"""

from .fixed import dot

__all__ = ["dot"]
