"""The folding pass (:mod:`hwquant.fold`): spec parsing, max/min/auto, per-layer overrides and
their validation; auto meets its cycle target with the fewest multipliers."""

import re

import numpy as np
import pytest

from hwquant import ir
from hwquant.errors import HwquantError
from hwquant.fold import (
    AUTO_REGISTER_WINDOW_BITS,
    FoldError,
    apply_folding,
    default_target,
    divisors,
    parse_fold_spec,
)
from hwquant.plan import Mvu, layer_simd_choices, needs_window, plan_network

U4 = ir.ActFormat(4, False, 0)


def _rq(n, fmt=U4):
    return ir.Requant(np.ones(n, dtype=np.int64), 4, 0, fmt.hi)


def chain(c1_out=4, c2_out=6, classes=10):
    """input (2, 8, 8) -> c1 3x3 pad 1 -> mp 2x2 -> c2 3x3 -> flatten -> fc (logits)."""
    rng = np.random.default_rng(0)
    c1 = ir.Conv2d("c1", ("input",), U4, rng.integers(-2, 2, (c1_out, 2, 3, 3)), 2, 0,
                   np.zeros(c1_out), _rq(c1_out), U4, in_shape=(2, 8, 8), padding=1)
    mp = ir.MaxPool2d("mp", ("c1",), c1.out_shape, 2, 2, 0, U4)
    c2 = ir.Conv2d("c2", ("mp",), U4, rng.integers(-2, 2, (c2_out, c1_out, 3, 3)), 2, 0,
                   np.zeros(c2_out), _rq(c2_out), U4, in_shape=mp.out_shape)
    flat = ir.Flatten("flat", ("c2",), c2.out_shape, U4)
    fc = ir.Linear("fc", ("flat",), U4, rng.integers(-2, 2, (classes, flat.out_shape[0])), 2, 0,
                   np.zeros(classes), None, ir.ActFormat(16, True, 0))
    return ir.Network("chain", (2, 8, 8), U4, (c1, mp, c2, flat, fc))


def residual():
    net = chain()
    c1 = net.layer("c1")
    c1b = ir.Conv2d("c1b", ("c1",), U4, np.ones((4, 4, 1, 1)), 2, 0, np.zeros(4), _rq(4), U4,
                    in_shape=c1.out_shape)
    add = ir.Add("res", ("c1", "c1b"), c1.out_shape, (U4, U4), U4)
    mp = ir.MaxPool2d("mp", ("res",), c1.out_shape, 2, 2, 0, U4)
    return ir.Network("res", net.input_shape, U4, (c1, c1b, add, mp, *net.layers[2:]))


def folds(net):
    return {layer.name: (layer.fold.pe, layer.fold.simd) for layer in net.weight_layers}


def mvu_cycles(net):
    return {st.layer: st.busy for st in plan_network(net).stages if isinstance(st, Mvu)}


# -- parse_fold_spec --------------------------------------------------------------------------

@pytest.mark.parametrize("spec, mode", [("max", "max"), ("min", "min"), ("auto", "auto"),
                                        ("  max ", "max"), ("", "auto"), (None, "auto")])
def test_parse_modes(spec, mode):
    assert parse_fold_spec(spec) == (mode, {})


@pytest.mark.parametrize("spec, overrides", [
    ("c1=2:3", {"c1": (2, 3)}),
    ("c1=2:3,fc=1:16", {"c1": (2, 3), "fc": (1, 16)}),
    (" c1 = 2 : 3 , fc=10:1 ", {"c1": (2, 3), "fc": (10, 1)}),
    ("_x9=1:1", {"_x9": (1, 1)}),
])
def test_parse_overrides(spec, overrides):
    assert parse_fold_spec(spec) == ("auto", overrides)


@pytest.mark.parametrize("spec, item", [
    ("c1=2", "c1=2"), ("c1=a:b", "c1=a:b"), ("1c=2:3", "1c=2:3"), ("c1=2:3,", ""),
    ("max,c1=1:1", "max"), ("c1:2:3", "c1:2:3"), ("c1=-1:2", "c1=-1:2"), ("fast", "fast"),
    ("c1=2:3;c2=1:1", "c1=2:3;c2=1:1"), ("c1=2.0:3", "c1=2.0:3"),
])
def test_parse_malformed(spec, item):
    with pytest.raises(FoldError, match=rf"^Fold must be 'max', 'min', 'auto' or "
                                        rf"'LAYER=PE:SIMD,\.\.\.', not {re.escape(repr(item))}$"):
        parse_fold_spec(spec)


def test_parse_same_layer_twice():
    with pytest.raises(FoldError, match=r"^Fold names layer 'c1' twice$"):
        parse_fold_spec("c1=1:1,c1=2:2")


def test_fold_error_is_a_value_error():
    assert issubclass(FoldError, ValueError) and issubclass(FoldError, HwquantError)


# -- apply_folding ----------------------------------------------------------------------------

def test_max_unrolls_everything():
    net = apply_folding(chain(), "max")
    assert folds(net) == {"c1": (4, 18), "c2": (6, 36), "fc": (10, 24)}
    assert mvu_cycles(net) == {"c1": 64, "c2": 4, "fc": 1}  # one step per vector


def test_min_folds_everything():
    net = apply_folding(chain(), "min")
    assert folds(net) == {"c1": (1, 1), "c2": (1, 1), "fc": (1, 1)}
    assert mvu_cycles(net) == {"c1": 64 * 4 * 18, "c2": 4 * 6 * 36, "fc": 10 * 24}


def test_folding_returns_a_new_valid_network():
    net = chain()
    folded = apply_folding(net, "max")
    assert folds(net) == {"c1": (1, 1), "c2": (1, 1), "fc": (1, 1)}  # untouched
    folded.validate()
    for a, b in zip(net.layers, folded.layers):
        if isinstance(a, (ir.Conv2d, ir.Linear)):
            np.testing.assert_array_equal(a.weight, b.weight)


def _simds(layer):
    """SIMD values auto may use: what the stream supplies, register windows only when small."""
    choices = layer_simd_choices(layer)
    if isinstance(layer, ir.Conv2d) and needs_window(layer) \
            and layer.fan_in * layer.in_format.bits > AUTO_REGISTER_WINDOW_BITS:
        choices = [s for s in choices if layer.in_shape[0] % s == 0]
    return choices


def _cheapest(layer, vectors, target):
    """Brute force: the fold with the fewest multipliers (then fewest PEs) meeting target."""
    best = None
    for pe in divisors(layer.out_channels):
        for simd in _simds(layer):
            steps = (layer.out_channels // pe) * (layer.fan_in // simd)
            if vectors * steps <= target and (best is None or (pe * simd, pe) < best[0]):
                best = ((pe * simd, pe), (pe, simd))
    return best[1] if best else (layer.out_channels, max(_simds(layer)))


@pytest.mark.parametrize("target", [None, 1, 4, 50, 100, 300, 1000, 5000, 10 ** 6])
def test_auto_meets_its_target_with_fewest_multipliers(target):
    net = chain()
    folded = apply_folding(net, "auto", target_cycles=target)
    goal = default_target(net) if target is None else target
    cycles = mvu_cycles(folded)
    for layer in folded.weight_layers:
        vectors = layer.out_shape[1] * layer.out_shape[2] if isinstance(layer, ir.Conv2d) else 1
        assert folds(folded)[layer.name] == _cheapest(layer, vectors, goal)
        unrolled = vectors  # one step per vector is the fastest a layer can go
        assert cycles[layer.name] <= max(goal, unrolled)
    if target is None:  # the default target is met by every layer, windows included
        assert max(plan_network(folded).layer_cycles().values()) <= goal


def test_default_target():
    net = chain()
    # The slowest unfoldable stage: c1's sliding window over the padded 10x10 input.
    assert default_target(net) == 8 * 100


def test_auto_is_between_min_and_max():
    net = chain()
    auto = apply_folding(net, "auto", target_cycles=300)
    assert folds(auto) != folds(apply_folding(net, "min"))
    assert folds(auto) != folds(apply_folding(net, "max"))
    assert any(1 < pe * simd for pe, simd in folds(auto).values())


def test_overrides_and_auto_for_the_rest():
    net = apply_folding(chain(), "c2=3:4,fc=5:8", target_cycles=10 ** 6)
    assert folds(net) == {"c1": (1, 1), "c2": (3, 4), "fc": (5, 8)}


def test_unknown_layer():
    with pytest.raises(FoldError, match=r"^Fold names layer 'c9', which is not a weight layer; "
                                        r"weight layers: c1, c2, fc$"):
        apply_folding(chain(), "c9=1:1")


def test_override_of_a_pooling_layer():
    with pytest.raises(FoldError, match=r"^Fold names layer 'mp', which is not a weight layer"):
        apply_folding(chain(), "mp=1:1")


@pytest.mark.parametrize("pe", [0, 3, 5, 8])
def test_pe_must_divide_output_channels(pe):
    with pytest.raises(FoldError, match=rf"^Layer 'c1': PE must divide its 4 output channels "
                                        rf"\(\[1, 2, 4\]\), not {pe}$"):
        apply_folding(chain(), f"c1={pe}:1")


@pytest.mark.parametrize("simd", [0, 3, 4, 5, 9, 36])
def test_simd_must_be_one_the_stream_supplies(simd):
    """c1 reads 2 channels through a 3x3 window: SIMD divides the channels (line buffer) or
    is a multiple of them dividing the 18 window lanes (window registers)."""
    with pytest.raises(FoldError, match=rf"^Layer 'c1': SIMD must be one of \[1, 2, 6, 18\] "
                                        rf"\(what its input stream can supply\), not {simd}$"):
        apply_folding(chain(), f"c1=1:{simd}")


@pytest.mark.parametrize("target", [0, -5, 2.5, "100"])
def test_bad_target(target):
    with pytest.raises(FoldError, match=rf"^Target cycles must be a positive integer, "
                                        rf"not {re.escape(repr(target))}$"):
        apply_folding(chain(), "auto", target_cycles=target)


@pytest.mark.parametrize("spec", ["max", "min", "auto", "c1=2:2,c1b=4:4,c2=6:1,fc=1:1"])
def test_folding_a_residual_network(spec):
    net = apply_folding(residual(), spec)
    assert set(folds(net)) == {"c1", "c1b", "c2", "fc"}
    plan_network(net)  # and the hardware plan takes it
