# amaranth: UnusedElaboratable=no
"""Whole networks (:class:`hwquant.hw.network.NetworkTop`) in the Amaranth Python simulator
against the golden model: random chains, vector MLPs and residual networks with every folding
mode and random stalls; stall-free cycles against the replayed schedule; the skip FIFO's
derived depth."""

import os
import re
import sys

import pytest

from hwquant import ir
from hwquant.compile import plan_build
from hwquant.errors import UnsupportedLayerError
from hwquant.fold import apply_folding, default_target
from hwquant.hw.network import NetworkTop
from hwquant.plan import Fifo, Fork, Join, PlanError, layer_simd_choices, plan_network
from hwquant.schedule.replay import Deadlock, replay

sys.path.insert(0, os.path.dirname(__file__))
from netbuilders import (
    input_residual_net,
    pointwise_padded_chain,
    random_chain,
    residual_net,
    truncated,
    vector_chain,
)
from netsim import check_network

MODES = ["max", "min", "auto", "auto_fast", "override"]


def fold(net, mode):
    """``auto_fast``: auto with the target of the slowest unfoldable stage (1/8 of the default),
    which folds these small layers only partly; ``override``: c2 with 2 of its 4 PEs and SIMD
    its input channels (one kernel offset per beat), the others auto."""
    if mode == "auto_fast":
        return apply_folding(net, "auto", target_cycles=default_target(net) // 8)
    if mode == "override":
        return apply_folding(net, f"c2=2:{net.layer('c2').in_shape[0]}")
    return apply_folding(net, mode)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("seed", range(3))
def test_random_chain(seed, mode):
    net = fold(random_chain(seed), mode)
    check_network(net, n=2, seed=seed, stalls=0.4 if (seed + MODES.index(mode)) % 2 else 0.0)


@pytest.mark.parametrize("mode", ["max", "min"])
def test_pointwise_conv_with_padding(mode):
    check_network(apply_folding(pointwise_padded_chain(5), mode), n=3, seed=5, stalls=0.4)


def test_random_chains_cover_the_folds():
    nets = {mode: [fold(random_chain(seed), mode) for seed in range(3)] for mode in MODES}
    for net in nets["max"]:
        assert all(lay.fold == ir.Fold(lay.out_channels, lay.fan_in)
                   for lay in net.weight_layers)
    for net in nets["min"]:
        assert all(lay.fold == ir.Fold(1, 1) for lay in net.weight_layers)
    folds = [(lay.fold, lay) for mode in ("auto_fast", "override") for net in nets[mode]
             for lay in net.weight_layers]
    assert any(f.pe > 1 and f.pe < lay.out_channels for f, lay in folds)
    assert any(f.simd > 1 and f.simd < lay.fan_in for f, lay in folds)


@pytest.mark.parametrize("fifo_depth", [1, 4])
def test_chain_with_fifo_depths(fifo_depth):
    net = fold(random_chain(3), "auto_fast")
    check_network(net, n=2, seed=3, stalls=0.4, fifo_depth=fifo_depth)


@pytest.mark.parametrize("mode", ["max", "min", "auto"])
def test_vector_network(mode):
    net = apply_folding(vector_chain(4), mode)
    check_network(net, n=5, seed=4, stalls=0.4)


@pytest.mark.parametrize("seed, mode", [(0, "auto"), pytest.param(1, "min", marks=pytest.mark.slow),
                                        (2, "max"), (3, "auto_fast")])
def test_residual_network(seed, mode):
    """Identity and projection skips: forks, joins and skip FIFOs, with stalls."""
    net = fold(residual_net(seed), mode) if mode != "auto_fast" else apply_folding(
        residual_net(seed), "auto", target_cycles=default_target(residual_net(seed)) // 4)
    check_network(net, n=2, seed=seed, stalls=0.4 if seed % 2 else 0.25)


@pytest.mark.parametrize("seed, mode", [(0, "auto"), (1, "min")])
def test_residual_block_on_the_network_input(seed, mode):
    """The input itself is forked: its skip branch gets a FIFO like any other."""
    net = apply_folding(input_residual_net(seed), mode)
    assert "input_to_res_fifo" in plan_network(net).fifos
    check_network(net, n=2, seed=seed, stalls=0.3)


def test_residual_plan_has_forks_joins_and_skip_fifos():
    plan = plan_network(apply_folding(residual_net(0), "auto"))
    forks = [st.name for st in plan.stages if isinstance(st, Fork)]
    joins = [st.name for st in plan.stages if isinstance(st, Join)]
    assert forks == ["stem_fork", "add1_fork"]
    assert joins == ["add1", "add2"]
    assert {"stem_to_add1_fifo", "add1_to_proj_fifo"} <= set(plan.fifos)


@pytest.mark.parametrize("net, mode", [(random_chain(0), "min"), (random_chain(2), "max"),
                                       (random_chain(2), "auto_fast"), (residual_net(1), "auto"),
                                       (vector_chain(3), "min")],
                         ids=["chain_min", "chain_max", "chain_auto_fast", "resnet", "mlp"])
def test_steady_state_cycles_equal_the_replayed_schedule(net, mode):
    """Without stalls, each further inference costs exactly the replayed schedule's period
    (the timing models are cycle-exact), never less than the busiest stage, and with the
    derived FIFO depths within 5 % of it."""
    net = fold(net, mode)
    plan, sched = plan_build(net, "auto")
    one = check_network(net, n=1, seed=0, stalls=0.0, plan=plan)
    three = check_network(net, n=3, seed=0, stalls=0.0, plan=plan)
    per_inference = (three - one) / 2
    assert per_inference == sched.period
    assert sched.period >= plan.bottleneck_cycles()
    assert sched.period <= plan.bottleneck_cycles() * 1.05


def test_skip_fifo_smaller_than_derived_stalls_or_deadlocks():
    """The derived skip-FIFO depth is the least that keeps the rate: one less slows the
    network or deadlocks it, in the replay and in the hardware."""
    net = apply_folding(residual_net(0), "auto")
    plan, sched = plan_build(net, "auto")
    skip = "stem_to_add1_fifo"
    depth = plan.fifos[skip]
    assert depth > 1
    small = plan.with_fifo_depths({skip: depth - 1})
    try:
        slower = replay(small).period
    except Deadlock:
        slower = None
    assert slower is None or slower > sched.period
    # The hardware agrees: with the smaller skip FIFO, three inferences take longer (or hang).
    good = check_network(net, n=3, seed=0, stalls=0.0, plan=plan)
    try:
        bad = check_network(net, n=3, seed=0, stalls=0.0, plan=small)
    except TimeoutError:
        bad = None
    assert (bad is None) == (slower is None)
    if bad is not None:
        assert bad > good


def test_fifo_depths_are_derived_not_whole_maps():
    net = apply_folding(random_chain(1), "auto")
    plan, _ = plan_build(net, "auto")
    for st in plan.stages:
        if isinstance(st, Fifo):
            assert 1 <= st.depth <= st.beats, (st.name, st.depth, st.beats)


# -- what the planner rejects ------------------------------------------------------------------

@pytest.mark.parametrize("last", ["c1", "mp", "c2", "ap"])
def test_plan_rejects_a_network_not_ending_in_linear(last):
    net = truncated(random_chain(0), last)
    with pytest.raises(UnsupportedLayerError,
                       match=rf"^Layer '{last}': the last layer must be a linear layer "
                             rf"producing the logits$"):
        plan_network(net)


@pytest.mark.parametrize("simd", [3, 6, 9, 18])
def test_plan_rejects_a_simd_the_window_cannot_supply(simd):
    """b1a: 4 channels, 3x3 kernel (fan-in 36): SIMD 1, 2, 4 (memory), 12, 36 (registers)."""
    net = residual_net(0)
    assert layer_simd_choices(net.layer("b1a")) == [1, 2, 4, 12, 36]
    with pytest.raises(PlanError, match=rf"^Layer 'b1a': SIMD={simd} cannot be streamed; this "
                                        rf"layer supports SIMD \[1, 2, 4, 12, 36\]$"):
        plan_network(net.replace_layer("b1a", fold=ir.Fold(1, simd)))


def test_plan_names_stages_after_layers():
    net = apply_folding(random_chain(0), "max")
    plan = plan_network(net)
    assert list(plan.layer_outputs()) == ["c1", "mp", "c2", "ap", "fc"]
    assert all(re.fullmatch(r"[a-z0-9_]+", st.name) for st in plan.stages)
    top = NetworkTop(plan, probes=True)
    assert list(top.probe_points()) == ["c1", "mp", "c2", "ap", "fc"]
    assert all(hasattr(top, f"probe_{name}") for name in top.probe_points())
