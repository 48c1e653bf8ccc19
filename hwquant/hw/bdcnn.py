"""Hardware of the ``bdcnn`` arithmetic kind, interim form.

``ACC = W @ X`` exactly for a ``bdcnn`` layer (:mod:`hwquant.golden.bdcnn`), so until the
AND-popcount engine is written the MVU computes it with the ``fixed`` kind's per-lane dot
engine on the stored integer weights (the signed sums of the coefficients), through
:class:`hwquant.hw.engine.LaneEngine`: bit-exact, but products per weight instead of ``K * Q``
AND-popcounts per PE. Not yet: the ``BdcnnEngine`` (ROM of ``K`` basis bits per lane, shared
plane popcounts, coefficient combine).
"""

from .fixed import DotEngine as _FixedDotEngine

__all__ = ["DotEngine"]


class DotEngine(_FixedDotEngine):
    """The ``fixed`` per-lane dot engine on a ``bdcnn`` layer's integer weights (interim)."""
