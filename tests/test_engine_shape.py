"""The engine contract's static face (:mod:`hwquant.engine_shape`) is one definition: the MVU
engines inherit it and the cost model sizes the MVU's sums, accumulators and combine
register from it."""

from types import SimpleNamespace

import numpy as np
import pytest

from hwquant import ir
from hwquant.bdcnn import sign_patterns
from hwquant.engine_shape import SHAPES, BdcnnShape, register_bits, shape_for
from hwquant.estimate.model import estimate_network
from hwquant.kinds import KINDS, hw_engine


def test_register_bits_keeps_only_bits_that_vary():
    assert register_bits(0, 0) == 0  # a constant 0: no flip-flop
    assert register_bits(0, 16) == 5  # a popcount: no sign bit
    assert register_bits(-16, 16) == 6
    assert register_bits(-3, 0) == 3


@pytest.mark.parametrize("encoding", sorted(SHAPES))
def test_engines_inherit_their_shape(encoding):
    engine = hw_engine(SimpleNamespace(encoding=encoding, fold=ir.Fold(1, 1)))
    assert issubclass(engine, SHAPES[encoding])
    for name in ("parts_per_pe", "shared_count", "part_ranges", "shared_ranges",
                 "combine_ranges", "beat_part_ranges", "beat_shared_ranges"):
        assert getattr(engine, name).__func__ is getattr(SHAPES[encoding], name).__func__, name


def test_lane_kinds_have_no_shape():
    for enc, kind in KINDS.items():
        if kind.engine.endswith(":LaneEngine"):
            assert enc not in SHAPES


def _bdcnn(k, q, fold, coef=None, seed=0):
    rng = np.random.default_rng(seed)
    oc, f = 4, 16
    c = rng.integers(1, 8, (oc, k)) if coef is None else np.asarray(coef)
    w = np.take_along_axis(c @ sign_patterns(k).T, rng.integers(0, 1 << k, (oc, f)), 1)
    fmt = ir.ActFormat(q, False, 0)
    lo, hi = ir.matrix_range(w, np.zeros(oc, dtype=np.int64), fmt)
    out = ir.ActFormat(ir.signed_bits_for(int(lo.min()), int(hi.max())), True, 0)
    data = ir.BdcnnData(basis=k, qbits=q, coef_bits=4,
                        coefficients=tuple(map(tuple, c.tolist())))
    return ir.Linear("fc", ("input",), fmt, w, 8, 0, np.zeros(oc, dtype=np.int64),
                     ir.Logits(), out, encoding="bdcnn", kind_data=data, fold=fold)


def _parts(layer, family="ice40"):
    net = ir.Network("n", (layer.fan_in,), layer.in_format, (layer,))
    return {r["component"]: r for r in estimate_network(net, family).components
            if r["stage"] == layer.name}


def test_mvu_sums_follow_the_contract():
    """Folded bdcnn: one sums-register lane and one accumulator per partial sum (K * Q per
    PE) and per shared plane sum (Q): a popcount lane without its constant sign bit, an
    accumulator with it (an adder's output)."""
    for k, q in ((2, 3), (3, 4)):
        layer = _bdcnn(k, q, ir.Fold(2, 4))
        assert shape_for(layer) is BdcnnShape
        parts = _parts(layer)
        lanes = 2 * k * q + q
        assert parts["mvu.dot_registers"]["ff"] == lanes * register_bits(0, 4)
        assert parts["mvu.accumulators"]["ff"] == lanes * ir.signed_bits_for(0, 16)


def test_unread_bdcnn_sums_cost_nothing():
    """A basis with coefficient 0 in every channel of a PE is skipped by the combine step:
    its popcounts and registers are not modelled."""
    full = _bdcnn(2, 3, ir.Fold(4, 16), coef=[[3, 5]] * 4)
    half = _bdcnn(2, 3, ir.Fold(4, 16), coef=[[3, 0]] * 4)
    a, b = _parts(full), _parts(half)
    assert b["mvu.dot_registers"]["ff"] < a["mvu.dot_registers"]["ff"]
    assert b["mvu.dot_engines"]["lut"] < a["mvu.dot_engines"]["lut"]


def _bnn(thresholds, fold=None):
    fold = fold or ir.Fold(4, 16)
    w = np.random.default_rng(1).choice([-1, 1], (4, 16))
    t = np.asarray(thresholds, dtype=np.int64).reshape(4, -1)
    ep = ir.Thresholds(t, np.ones(4, dtype=np.int64))
    return ir.Linear("fc", ("input",), ir.BIPOLAR, w, 1, 0, np.zeros(4, dtype=np.int64), ep,
                     ir.BIPOLAR, encoding="binary", fold=fold)


def test_dead_low_bits_of_constant_thresholds():
    from hwquant.estimate.epilogue import dead_low_bits

    # ACC >= K reads the bits from K's lowest set bit; with ACC even (2P - F), -9 is -8.
    assert dead_low_bits(_bnn([8, 1, -9, 6]), [6] * 4, [1] * 4) == [3, 1, 3, 1]
    assert dead_low_bits(_bnn([8, 1, -9, 6]), [6] * 4) == [3, 0, 0, 1]
    # Folded over the channels, a threshold selected by the fold index reads every bit.
    assert dead_low_bits(_bnn([8, 1, -9, 6], ir.Fold(2, 16)), [6] * 2, [1] * 2) == [0, 0]
    rq = _bnn([8, 1, -9, 6])
    rq = ir.Linear("fc", ("input",), ir.ActFormat(4, False, 0), rq.weight, 1, 0, rq.bias,
                   ir.Requant(np.ones(4), 2, 0, 15), ir.ActFormat(4, False, 0),
                   encoding="binary", fold=rq.fold)
    assert dead_low_bits(rq, [8] * 4) == [0] * 4


def test_unread_low_bits_cost_no_flip_flops():
    """Unrolled (SF = 1): thresholds at multiples of 8 leave three low bits of the combine
    register unread (odd multiples of 2: only the constant one), and two of each popcount's
    copies (2P - 16: bit i of ACC is bit i - 1 of P); folded over SIMD the accumulators carry
    into the read bits, so only the combine register loses them."""
    low, round_ = _parts(_bnn([2, 6, 10, -2])), _parts(_bnn([8, -8, 8, -8]))
    for part, fewer in (("mvu.combine_register", 4 * 2), ("mvu.dot_registers", 4 * 2),
                        ("mvu.accumulators", 4 * 2)):
        assert low[part]["ff"] - round_[part]["ff"] == fewer, part
    low, round_ = _parts(_bnn([2, 6, 10, -2], ir.Fold(4, 4))), _parts(_bnn([8, -8, 8, -8],
                                                                          ir.Fold(4, 4)))
    assert low["mvu.accumulators"]["ff"] == round_["mvu.accumulators"]["ff"]
    assert low["mvu.combine_register"]["ff"] - round_["mvu.combine_register"]["ff"] == 4 * 2
