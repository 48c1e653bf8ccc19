"""Cost face of the ``bdcnn`` arithmetic kind, interim form: the MVU of a ``bdcnn`` layer is
built with the ``fixed`` kind's dot engines on its stored integer weights
(:mod:`hwquant.hw.bdcnn`), so it is costed as that layer with ``fixed`` encoding by
:mod:`hwquant.estimate.fixed`. The AND-popcount engine's cost model (``K * Q`` popcounts of
``SIMD`` bits per PE, ``Q`` shared ones, ``K`` coefficient multiplies per output) is not
written yet."""

from __future__ import annotations

import dataclasses

from .. import ir
from . import fixed as fixed_cost

__all__ = ["resources", "cycles", "dot_range", "word_bits", "as_fixed"]


def as_fixed(layer):
    """``layer`` with ``fixed`` encoding (the same integer weights), as the hardware builds it."""
    if not isinstance(layer, (ir.Conv2d, ir.Linear)) or layer.encoding != "bdcnn":
        raise ValueError(f"Layer '{getattr(layer, 'name', layer)}': the bdcnn cost model takes "
                         f"a bdcnn conv2d or linear layer")
    return dataclasses.replace(layer, encoding="fixed", kind_data=None)


def resources(layer, family, **kw):
    return fixed_cost.resources(as_fixed(layer), family, **kw)


def cycles(layer) -> int:
    return fixed_cost.cycles(as_fixed(layer))


def dot_range(layer, weights=None, *, simd) -> tuple:
    return fixed_cost.dot_range(as_fixed(layer), weights, simd=simd)


def word_bits(layer, simd) -> int:
    return fixed_cost.word_bits(as_fixed(layer), simd)
