"""Quantization schedules (simple, incremental, layerwise) and the method pipeline: frozen
weights never move, portions are nested and exact, every result lies on the quantizer's set,
and the INQ accuracy targets hold on the digits default."""

import math

import numpy as np
import pytest
import torch

from hwquant.quant import schedules as S
from hwquant.quant.options import QuantOptions, RetrainConfig
from hwquant.quant.weights import InqWeights, make_quantizer


@pytest.fixture(scope="module")
def graph(trained_default_pt2):
    from hwquant.frontend import load_model

    return load_model(trained_default_pt2)


def _layers(graph):
    return [n.name for n in graph.nodes if n.op in ("conv2d", "linear")]


def test_select_portion_magnitude_and_random_are_exact_and_nested():
    w = torch.tensor([0.1, -0.9, 0.5, 0.5, -0.2, 0.05, 0.7, -0.3])
    frozen = torch.zeros(8, dtype=torch.bool)
    pick = S._select_portion(w, frozen, 3, "magnitude", None)
    assert pick.nonzero().flatten().tolist() == [1, 2, 6]
    frozen |= pick
    pick2 = S._select_portion(w, frozen, 4, "magnitude", None)  # tie 0.5/0.5: lower index first
    assert pick2.nonzero().flatten().tolist() == [3]
    rank = torch.tensor([5, 0, 7, 2, 1, 6, 3, 4])
    f = torch.zeros(8, dtype=torch.bool)
    seen = []
    for k in (2, 4, 6, 8):
        p = S._select_portion(w, f, k, "random", rank)
        f |= p
        seen.append(int(f.sum()))
        assert set(f.nonzero().flatten().tolist()) == set((rank < k).nonzero().flatten().tolist())
    assert seen == [2, 4, 6, 8]


def test_frozen_weights_survive_weight_decay_and_momentum(graph, digits):
    """Restoring after every optimizer step keeps frozen entries exact (masking gradients alone
    would not: momentum and weight decay move them)."""
    model = S.TrainableGraph(graph)
    names = model.layer_names
    qs = {n: InqWeights(4) for n in names}
    # No validation split: early stopping would restore the start if the epoch did not help.
    cfg = RetrainConfig(epochs=1, lr=0.05, weight_decay=0.1, progress=False, val_fraction=0.0)
    r = S._Retrainer(model, qs, {n: qs[n].fit(model.weights[n].detach()) for n in names},
                     digits, cfg)
    before = {n: model.weights[n].detach().clone() for n in names}
    for n in names:
        mask = torch.rand(before[n].shape, generator=torch.Generator().manual_seed(1)) < 0.5
        r.frozen[n] = (mask, qs[n].quantize(before[n], r.states[n]))
    r._restore_frozen()
    r.train("t")
    for n in names:
        mask, values = r.frozen[n]
        w = model.weights[n].detach()
        assert torch.equal(w[mask], values[mask])
        assert not torch.equal(w[~mask], before[n][~mask])  # the rest did train


@pytest.mark.parametrize("schedule", S.SCHEDULES)
@pytest.mark.parametrize("method,bits", [("inq", 3), ("ternary", 2), ("fixed", 4)])
def test_every_schedule_ends_on_the_quantizer_set(graph, digits, schedule, method, bits):
    names = _layers(graph)
    qs = {n: make_quantizer(method, bits) for n in names}
    out, states, history = S.run_schedule(
        graph, digits, qs, schedule=schedule, portions=(0.5, 1.0), partition="random",
        cfg=RetrainConfig(epochs=1, progress=False))
    assert history and all(0 <= h["accuracy"] <= 1 for h in history)
    for node in out.nodes:
        if node.name in qs:
            w = torch.tensor(node.weight)
            np.testing.assert_array_equal(qs[node.name].quantize(w, states[node.name]), w)
            assert len(np.unique(node.weight)) <= 2 ** (bits - 1) + 1 or method == "fixed"


def test_layerwise_freezes_the_first_layer_before_any_training(graph, digits):
    names = _layers(graph)
    qs = {n: InqWeights(4) for n in names}
    out, _states, _ = S.run_schedule(graph, digits, qs, schedule="layerwise",
                                    cfg=RetrainConfig(epochs=1, progress=False))
    first = graph.nodes[[n.name for n in graph.nodes].index(names[0])]
    q = qs[names[0]]
    want = q.quantize(torch.tensor(first.weight, dtype=torch.float32),
                      q.fit(torch.tensor(first.weight, dtype=torch.float32)))
    got = next(n for n in out.nodes if n.name == names[0]).weight
    np.testing.assert_array_equal(got, want.double().numpy())


def test_inq_keeps_its_exponent_range_from_the_pretrained_weights(graph, digits):
    """P_l is fixed once (§1.7 P3): retrained weights that grow saturate at 2^n1."""
    names = _layers(graph)
    qs = {n: InqWeights(5) for n in names}
    out, states, _ = S.run_schedule(graph, digits, qs, schedule="incremental",
                                    cfg=RetrainConfig(epochs=1, progress=False))
    for node in graph.nodes:
        if node.name in states:
            s = float(np.abs(node.weight).astype(np.float32).max())
            assert states[node.name]["n1"] == math.floor(math.log2(4 * s / 3))
            got = next(n for n in out.nodes if n.name == node.name).weight
            assert np.abs(got).max() <= 2.0 ** states[node.name]["n1"]


#: The 3-bit target (the tightest relative to its width) in the default suite, 4 and 5 bits
#: under ``slow``.
@pytest.mark.parametrize("bits,max_drop", [pytest.param(5, 0.005, marks=pytest.mark.slow),
                                           pytest.param(4, 0.01, marks=pytest.mark.slow),
                                           (3, 0.02)])
def test_inq_accuracy_targets_on_digits(trained_default_pt2, digits, bits, max_drop):
    """INQ golden-model accuracy within 0.5 / 1 / 2 points of float at 5 / 4 / 3 bits
    (default CNN seed 0, the defaults for each width, seed 0)."""
    from hwquant.flow import quantize_model

    opts = QuantOptions(method="inq", wbits=bits, retrain=RetrainConfig(progress=False))
    _, rep = quantize_model(trained_default_pt2, digits, {"name": "digits"}, options=opts,
                            calib=256, seed=0)
    acc = rep["accuracy"]
    assert acc["quantized"] >= acc["float"] - max_drop, acc


@pytest.mark.parametrize("opts", [
    QuantOptions(method="inq", wbits=4),
    QuantOptions(method="inq", wbits=3, granularity="channel"),
    QuantOptions(method="ternary", granularity="channel", edge_layers="same"),
    QuantOptions(method="ternary", ternary="ttq", schedule="layerwise", edge_layers="same"),
    QuantOptions(method="ternary"),
], ids=["inq4", "inq3-channel", "twn-channel", "ttq", "twn-default"])
def test_pow2_networks_fake_quant_equals_golden(graph, digits, opts):
    """The lowered pow2 layers (codes, sign scales, α in the multipliers) keep the torch
    fake-quant path and the golden model exactly equal on every layer."""
    from hwquant import golden
    from hwquant.data import calibration_split
    from hwquant.quant.fakequant import FakeQuantNetwork
    from hwquant.quant.methods import quantize_graph
    from hwquant.simulate import quantize_input

    opts.retrain = RetrainConfig(epochs=1, progress=False)
    net, _ = quantize_graph(graph, digits, calibration_split(digits, n=64), opts)
    x = quantize_input(net, digits.x_test[:64])
    fq, gold = FakeQuantNetwork(net).integer_outputs(x), golden.run(net, x)
    for layer in net.layers:
        np.testing.assert_array_equal(fq[layer.name], gold[layer.name], err_msg=layer.name)
    encodings = [layer.encoding for layer in net.weight_layers]
    if opts.resolved_edge_layers() == "fixed8":  # first and last layer 8-bit fixed point
        assert encodings[0] == encodings[-1] == "fixed" and set(encodings[1:-1]) == {"pow2"}
    else:
        assert set(encodings) == {"pow2"}


def test_activation_hook_replaces_node_outputs_and_the_input(graph, digits):
    """``TrainableGraph.act_quant``: a callable per node name (and ``"input"``) replaces that
    value after its ReLU; empty means float activations."""
    model = S.TrainableGraph(graph)
    x = torch.tensor(digits.x_test[:8])
    plain = model(x)
    seen = []
    first = _layers(graph)[0]

    def spy(name):
        def f(v):
            seen.append((name, float(v.detach().min())))
            return v * 0.0 if name == "input" else v
        return f

    model.act_quant = {first: spy(first)}
    assert torch.equal(model(x), plain)
    assert seen == [(first, seen[0][1])] and seen[0][1] >= 0  # after the ReLU
    model.act_quant = {"input": spy("input")}
    zeroed = model(x)
    model.act_quant = {}
    assert torch.equal(zeroed, model(torch.zeros_like(x)))
    assert not torch.equal(zeroed, plain)
