"""Epilogues (:class:`hwquant.ir.Requant`, :class:`~hwquant.ir.Thresholds`,
:class:`~hwquant.ir.Logits`): validation naming the layer, the registry
(:mod:`hwquant.epilogues`) is complete, and the golden faces compute their definitions."""

import importlib
import inspect
import itertools

import numpy as np
import pytest

from hwquant import epilogues, golden, ir
from hwquant.golden import epilogue as gep

U2 = ir.ActFormat(2, False, 0)
S3 = ir.ActFormat(3, True, 0)


def linear(epilogue, *, oc=3, out_format=U2, weight=None):
    w = np.arange(oc * 4).reshape(oc, 4) % 5 - 2 if weight is None else np.asarray(weight)
    return ir.Linear("fc", ("input",), ir.ActFormat(4, True, 0), w, 4, 0, np.zeros(len(w)),
                     epilogue, out_format)


# -- registry -------------------------------------------------------------------------------

def test_every_epilogue_type_has_a_row():
    assert set(epilogues.EPILOGUE_KINDS) == set(ir.EPILOGUES)
    names = [row.name for row in epilogues.EPILOGUE_KINDS.values()]
    assert len(set(names)) == len(names)
    for cls, row in epilogues.EPILOGUE_KINDS.items():
        assert row.ir_type is cls
        assert row.golden == "hwquant.golden.epilogue"
        assert row.hw == "hwquant.hw.epilogue"
        assert row.estimate == "hwquant.estimate.epilogue"
        assert row.description


@pytest.mark.parametrize("cls", ir.EPILOGUES, ids=lambda c: c.__name__)
def test_golden_face(cls):
    fn = epilogues.golden_epilogue(cls)
    assert fn is getattr(importlib.import_module("hwquant.golden.epilogue"),
                         epilogues.EPILOGUE_KINDS[cls].name)
    assert list(inspect.signature(fn).parameters) == ["epilogue", "acc", "out_format",
                                                      "channel_axis"]


@pytest.mark.parametrize("face", ["hw", "estimate"])
def test_other_faces_when_written(face):
    name = getattr(epilogues.EPILOGUE_KINDS[ir.Requant], face)
    pytest.importorskip(name, reason=f"{name} is not written yet")


def test_unknown_epilogue_type():
    with pytest.raises(TypeError, match=r"^Epilogue must be one of Requant, Thresholds, Logits, "
                                        r"not Fold$"):
        epilogues.epilogue_kind(ir.Fold())


# -- validation -----------------------------------------------------------------------------

def test_none_is_logits_and_requant_view():
    fc = linear(None, out_format=ir.ActFormat(16, True, 0))
    assert isinstance(fc.epilogue, ir.Logits) and fc.epilogue.scale is None
    assert fc.requant is None
    rq = ir.Requant(np.ones(3), 2, 0, 3)
    assert linear(rq).requant is rq
    assert linear(ir.Thresholds([[0], [1], [2]], [1, 1, 1])).requant is None


@pytest.mark.parametrize("epilogue, message", [
    (ir.Thresholds([[0], [1]], [1, 1]), (r"thresholds must have shape \(3, T\) with T >= 1, "
                                        r"not \(2, 1\)")),
    (ir.Thresholds(np.zeros((3, 0)), [1, 1, 1]), (r"thresholds must have shape \(3, T\) with "
                                                 r"T >= 1, not \(3, 0\)")),
    (ir.Thresholds([[0], [1], [2]], [1, 1]), (r"threshold direction must have shape \(3,\), "
                                             r"not \(2,\)")),
    (ir.Thresholds([[0], [1], [2]], [1, 0, 2]), (r"threshold directions must be \+1 or -1, "
                                                r"not \[0, 2\]")),
    (ir.Thresholds(np.zeros((3, 4)), [1, 1, 1]), (r"4 thresholds per channel do not fit output "
                                                 r"format .* \(at most 3\)")),
    (ir.Thresholds([[0, 1], [2, 1], [0, 0]], [1, 1, 1]), (r"thresholds must be non-decreasing "
                                                         r"per channel")),
    (ir.Thresholds([[0], [1 << 47], [0]], [1, 1, 1]), (r"thresholds must be 48-bit signed "
                                                      r"integers")),
    (ir.Logits([1, 2]), r"logits scale must have shape \(3,\), not \(2,\)"),
    (ir.Logits([1, 0, 2]), r"logits scales must be integers in 1\.\.65535"),
    (ir.Requant([1, 1], 0, 0, 3), r"requant multiplier must have one entry per output channel"),
])
def test_epilogue_is_checked_against_its_layer(epilogue, message):
    with pytest.raises(ValueError, match=rf"^Layer 'fc': {message}$"):
        linear(epilogue)


def test_epilogue_type_is_checked():
    with pytest.raises(TypeError, match=r"^Layer 'fc': epilogue must be one of Requant, "
                                        r"Thresholds, Logits, not tuple$"):
        linear((1, 2))


def test_epilogue_arrays_are_frozen():
    th = ir.Thresholds([[0, 1]], [1])
    with pytest.raises(ValueError, match=r"read-only"):
        th.thresholds[0, 0] = 3
    with pytest.raises(ValueError, match=r"read-only"):
        ir.Logits([2]).scale[0] = 3


def test_fewer_thresholds_than_levels_and_full_count():
    linear(ir.Thresholds([[0], [1], [2]], [1, -1, 1]))  # 1 of 3 possible: outputs lo, lo+1
    linear(ir.Thresholds(np.zeros((3, 7)), [1, 1, 1]), out_format=S3)  # 2**3 - 1 thresholds


# -- golden faces -----------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", [U2, S3, ir.ActFormat(1, False, 0)], ids=str)
def test_thresholds_exhaustive(fmt):
    """Every sorted threshold set of up to ``hi - lo`` thresholds in -3..3, both directions,
    against a direct count, for every accumulator value in -5..5."""
    acc = np.arange(-5, 6)
    for count in range(1, min(fmt.hi - fmt.lo, 3) + 1):
        for t in itertools.combinations_with_replacement(range(-3, 4), count):
            for d in (1, -1):
                ep = ir.Thresholds([t], [d])
                got = gep.thresholds(ep, acc[:, None], fmt, 1)[:, 0]
                want = [fmt.lo + sum((a >= x) if d == 1 else (a <= x) for x in t) for a in acc]
                np.testing.assert_array_equal(got, want)


def test_thresholds_per_channel_on_any_axis():
    ep = ir.Thresholds([[0, 2, 4], [-1, -1, 9], [0, 0, 0]], [1, -1, 1])
    acc = np.array([[-2, 0, 5], [4, -1, 0]])  # (N, C)
    want = np.array([[0, 1, 3], [3, 3, 3]])
    np.testing.assert_array_equal(gep.thresholds(ep, acc, U2, 1), want)
    np.testing.assert_array_equal(gep.thresholds(ep, acc.T, U2, 0), want.T)
    fmap = np.broadcast_to(acc[:, :, None, None], (2, 3, 2, 2))
    np.testing.assert_array_equal(gep.thresholds(ep, fmap, U2, 1),
                                  np.broadcast_to(want[:, :, None, None], (2, 3, 2, 2)))
    assert gep.apply(ep, acc, U2, 1).tolist() == want.tolist()


def test_constant_channels():
    """gamma = 0: thresholds beyond the accumulator range make a channel constant."""
    fc = linear(ir.Thresholds([[-100, -100, -100], [100, 100, 100], [-100, 0, 100]], [1, 1, 1]))
    lo, hi = ir.accumulator_range(fc)
    assert lo.min() > -100 and hi.max() < 100
    x = np.random.default_rng(1).integers(-8, 8, (50, 4))
    y = golden.run(ir.Network("n", (4,), fc.in_format, (linear(None, out_format=ir.ActFormat(
        16, True, 0)),)), x)
    out = golden.run_layer(fc, [x])
    np.testing.assert_array_equal(out[:, 0], 3)
    np.testing.assert_array_equal(out[:, 1], 0)
    np.testing.assert_array_equal(out[:, 2], 1 + (y["fc"][:, 2] >= 0))


def test_logits_scale_and_requant():
    acc = np.array([[3, -4, 5]])
    assert gep.logits(ir.Logits(), acc, None, 1).tolist() == [[3, -4, 5]]
    assert gep.logits(ir.Logits([2, 1, 3]), acc, None, 1).tolist() == [[6, -4, 15]]
    assert gep.logits(ir.Logits([2, 1, 3]), acc.T, None, 0).tolist() == [[6], [-4], [15]]
    rq = ir.Requant([1, 2, 3], 1, 0, 7)
    np.testing.assert_array_equal(gep.requant(rq, acc, U2, 1),
                                  golden.requantize(acc, [0, 0, 0], [1, 2, 3], 1, 0, 7))


def test_network_with_scaled_logits():
    fmt = ir.ActFormat(4, True, 0)
    fc = ir.Linear("fc", ("input",), fmt, [[1, 2], [-1, 1]], 3, 0, [1, -2], ir.Logits([3, 1]),
                   ir.ActFormat(8, True, 0))
    net = ir.Network("n", (2,), fmt, (fc,))
    x = np.array([[-4, 3], [-3, 1]])  # unscaled logits [3, 5] and [0, 2]
    np.testing.assert_array_equal(golden.run(net, x)["fc"], [[9, 5], [0, 2]])
    np.testing.assert_array_equal(golden.predict(net, x), [0, 1])


# -- hardware and cost faces --------------------------------------------------------------------

def _folded_requant_layer(family_fold=(2, 4)):
    w = np.arange(8 * 4).reshape(8, 4) % 7 - 3
    rq = ir.Requant(np.array([3, 5, 7, 3, 6, 5, 1, 7]), 4, 0, 3)
    return ir.Linear("fc", ("input",), ir.ActFormat(4, False, 0), w, 4, 0,
                     np.arange(8) - 4, rq, U2, fold=ir.Fold(*family_fold))


def test_requantizer_builds_one_multiplier_per_lane():
    """The saturation's compares and mux share the rounded value: with per-channel
    multipliers chosen by the fold index, the Verilog has exactly one multiply per PE lane
    (Amaranth repeats an expression at each use when it is not a signal)."""
    import re

    from amaranth.back import verilog

    from hwquant.hw.epilogue import epilogue_unit

    layer = _folded_requant_layer()
    lo, hi = ir.accumulator_range(layer)
    text = verilog.convert(epilogue_unit(layer, acc_range=(lo, hi)), name="top",
                           emit_src=False)
    assert len(re.findall(r"\) \* \$signed\(", text)) == layer.fold.pe


def test_xilinx_dsp_takes_the_requant_register_and_adders():
    """On Xilinx a lane whose requantization multiply is a DSP block loses its combine
    register, bias adder and rounding adder to the block; other families keep them."""
    from hwquant.estimate import epilogue as cost
    from hwquant.estimate.model import estimate_network

    layer = _folded_requant_layer()
    acc_bits = ir.accumulator_bits(layer)
    assert cost.absorbed_lanes(layer, "ice40", acc_bits=acc_bits) == [False, False]
    assert cost.absorbed_lanes(layer, "xilinx", acc_bits=acc_bits) == [True, True]
    assert cost.absorbed_lanes(layer, "xilinx", acc_bits=acc_bits, use_dsp=False) == [False] * 2
    net = ir.Network("n", (4,), layer.in_format, (layer,))
    rows = {fam: {r["component"]: r["ff"] for r in estimate_network(net, fam).components}
            for fam in ("ice40", "xilinx")}
    assert rows["ice40"]["mvu.combine_register"] == 2 * acc_bits
    assert "mvu.combine_register" not in rows["xilinx"]  # nothing left: no row
    with_dsp = cost.resources(layer, "xilinx", acc_bits=acc_bits)
    without = cost.resources(layer, "xilinx", acc_bits=acc_bits, use_dsp=False)
    assert with_dsp.dsp == 2 and without.dsp == 0
    assert with_dsp.lut < without.lut
