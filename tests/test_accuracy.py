"""Accuracy a user can count on: the retraining machinery (validation split, early stopping,
quantization-aware activations, per-channel re-fit) and the accuracy regression suite
(:mod:`hwquant.quant.accuracy`): one fast case per method by default, every model × seed ×
method × width when slow tests run."""

import functools

import numpy as np
import pytest
import torch

from hwquant.quant import accuracy as A
from hwquant.quant import schedules as S
from hwquant.quant.options import (
    HINT_DROP_POINTS,
    QuantOptions,
    RetrainConfig,
    accuracy_hint,
    default_portions,
    default_schedule,
)
from hwquant.quant.weights import InqWeights, make_quantizer


@pytest.fixture(scope="module")
def mlp(digits):
    """The suite's MLP, trained from seed 0 (under a second)."""
    return A.train_float("mlp", 0, digits)


@pytest.fixture(scope="module")
def pooled(digits):
    """The suite's conv + strided conv + average pool + two linear layers model, seed 0."""
    return A.train_float("pooled", 0, digits)


def _x_cal(digits, n=128):
    from hwquant.data import calibration_split

    return calibration_split(digits, n=n, seed=0)


def test_defaults_per_width():
    assert default_portions(5) == (0.5, 0.75, 0.875, 1.0) == default_portions(8)
    assert len(default_portions(2)) > len(default_portions(3)) > len(default_portions(5))
    assert default_portions(4) == default_portions(3)
    assert all(p[-2] >= 0.95 for p in map(default_portions, range(2, 5)))  # small last step
    assert default_schedule("fixed", 8) is None and default_schedule("fixed", 4) == "simple"
    assert QuantOptions(method="ternary").resolved_granularity() == "channel"
    assert QuantOptions(method="ternary", ternary="ttq").resolved_granularity() == "layer"
    assert QuantOptions(method="inq", wbits=3).to_json()["portions"] == list(default_portions(3))


def test_validation_split_is_drawn_from_the_training_images_only(digits):
    cfg = RetrainConfig(progress=False, val_fraction=0.2)
    r = S._Retrainer(torch.nn.Module(), {}, {}, digits, cfg)
    train = {tuple(v.flatten().tolist()) + (int(y),) for v, y in zip(r.x, r.y, strict=True)}
    val = {tuple(v.flatten().tolist()) + (int(y),) for v, y in zip(r.xv, r.yv, strict=True)}
    pool = {tuple(v.flatten().tolist()) + (int(y),)
            for v, y in zip(digits.x_train, digits.y_train, strict=True)}
    assert len(r.xv) == round(0.2 * len(digits.x_train))
    assert len(r.x) + len(r.xv) == len(digits.x_train)
    assert val <= pool and train <= pool
    assert not (val & train) or len(val & train) < 5  # (digits holds a few duplicate images)


def test_early_stopping_keeps_the_best_state(mlp, digits):
    """With a learning rate that ruins the model, a phase stops after ``patience`` epochs
    and restores the state it started from (the best one on the validation split)."""
    names = [n.name for n in mlp.nodes if n.op in ("conv2d", "linear")]
    model = S.TrainableGraph(mlp)
    qs = {n: make_quantizer("fixed", 8) for n in names}
    states = {n: qs[n].fit(model.weights[n].detach()) for n in names}
    before = {n: p.detach().clone() for n, p in model.weights.items()}
    cfg = RetrainConfig(epochs=20, lr=50.0, patience=2, progress=False)
    r = S._Retrainer(model, qs, states, digits, cfg)
    start = r._score(names)
    run = r.train("ruin", quantized_layers=names)
    assert run == cfg.patience
    assert r._score(names) == start
    for n in names:
        assert torch.equal(model.weights[n].detach(), before[n])


def test_qat_formats_are_the_golden_models(pooled, digits):
    """The activation quantizers of retraining use the formats the lowering calibrates: the
    QAT forward of the final weights agrees with the golden model on the test images."""
    from hwquant import golden
    from hwquant.quant.methods import quantize_graph
    from hwquant.simulate import quantize_input

    x_cal = _x_cal(digits)
    opts = QuantOptions(method="inq", wbits=4, abits=4,
                        retrain=RetrainConfig(epochs=2, progress=False))
    net, _ = quantize_graph(pooled, digits, x_cal, opts)
    qgraph = _final_graph(net, pooled)
    model = S.TrainableGraph(qgraph)
    model.act_quant = S.activation_quantizers(model, x_cal, opts.abits)
    x = torch.tensor(digits.x_test)
    with torch.no_grad():
        qat = model(x).argmax(1).numpy()
    gold = golden.predict(net, quantize_input(net, digits.x_test))
    assert np.mean(qat == gold) >= 0.99
    model.act_quant = {}
    with torch.no_grad():
        flt = model(x).argmax(1).numpy()
    assert np.mean(qat == gold) >= np.mean(flt == gold)  # 4-bit activations matter


def _final_graph(net, graph):
    """The float graph whose weights and biases are the real values of ``net``'s layers (a
    per-channel scale read back from the requantization multiplier; the logits layer's one
    scale dropped, as argmax ignores it)."""
    import dataclasses

    from hwquant import ir

    nodes = []
    for node in graph.nodes:
        if node.op in ("conv2d", "linear"):
            layer = next(layer for layer in net.layers if layer.name == node.name)
            w = layer.weight * 2.0 ** -layer.weight_frac
            scale = np.ones(len(w))
            if isinstance(layer.epilogue, ir.Requant):
                rq = layer.epilogue
                k = rq.shift - layer.acc_frac + layer.out_format.frac
                scale = np.asarray(rq.multiplier, dtype=np.float64) * 2.0 ** -k
            w = w * scale.reshape((-1,) + (1,) * (w.ndim - 1))
            b = layer.bias * 2.0 ** -layer.acc_frac * scale
            node = dataclasses.replace(node, weight=w, bias=b)
        nodes.append(node)
    return dataclasses.replace(graph, nodes=tuple(nodes))


def test_channel_refit_restores_the_float_statistics(pooled, digits):
    """After the re-fit, every hidden layer's pre-activation on the calibration images has
    the float model's per-channel mean and standard deviation (where the gain is not
    clamped and not constant)."""
    x_cal = _x_cal(digits)
    names = [n.name for n in pooled.nodes if n.op in ("conv2d", "linear")]
    model = S.TrainableGraph(pooled)
    xc = torch.tensor(x_cal)
    trace = {}
    with torch.no_grad():
        model(xc, trace=trace)
    ref = {n: (trace[n].mean(dim=(0, *range(2, trace[n].dim()))) + model.biases[n].detach(),
               trace[n].std(dim=(0, *range(2, trace[n].dim())))) for n in names}
    qs = {n: InqWeights(3) for n in names}
    states = {n: qs[n].fit(model.weights[n].detach()) for n in names}
    r = S._Retrainer(model, qs, states, digits, RetrainConfig(progress=False), x_cal=x_cal,
                     abits=8)
    r.refit_channels(ref, names)
    with torch.no_grad():
        trace = {}
        model(xc, r.quantized_view(names), trace=trace)
    for n in names[:-1]:
        g = model.gains[n]
        dims = (0, *range(2, trace[n].dim()))
        pre = trace[n] * g.reshape((1, -1) + (1,) * (trace[n].dim() - 2)) + \
            model.biases[n].detach().reshape((1, -1) + (1,) * (trace[n].dim() - 2))
        # Not clamped, and not a channel whose quantized weights see a constant.
        free = (g > 1 / S.MAX_GAIN) & (g < S.MAX_GAIN) & (trace[n].std(dim=dims) > 1e-6)
        assert free.float().mean() > 0.5, n
        torch.testing.assert_close(pre.mean(dim=dims), ref[n][0], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(pre.std(dim=dims)[free], ref[n][1][free], atol=1e-4,
                                   rtol=1e-3)
    assert names[-1] not in model.gains  # the logits layer keeps one scale


def test_inq_per_channel_exponents_lower_exactly(pooled, digits):
    """INQ with one exponent range per channel: every channel's weights on its own set, and
    the torch fake-quant path equals the golden model on every layer."""
    from hwquant import golden
    from hwquant.quant.fakequant import FakeQuantNetwork
    from hwquant.quant.methods import quantize_graph
    from hwquant.simulate import quantize_input

    w = torch.tensor([[0.9, -0.2, 0.05], [0.01, 0.02, -0.03]])
    q = InqWeights(3, per_channel=True)
    st = q.fit(w)
    assert st["n1"].flatten().tolist() == [0, -5]  # floor(log2(4 * 0.03 / 3))
    low = q.lower(q.quantize(w, st).numpy(), st)
    real = low.weight * 2.0 ** -low.weight_frac * low.channel_scale[:, None]
    np.testing.assert_array_equal(real, q.quantize(w, st).double().numpy())
    assert np.abs(low.weight).max() <= 2 ** (2 ** (3 - 2) - 1)

    opts = QuantOptions(method="inq", wbits=3, granularity="channel",
                        retrain=RetrainConfig(epochs=1, progress=False))
    net, _ = quantize_graph(pooled, digits, _x_cal(digits, 64), opts)
    x = quantize_input(net, digits.x_test[:64])
    fq, gold = FakeQuantNetwork(net).integer_outputs(x), golden.run(net, x)
    for layer in net.layers:
        np.testing.assert_array_equal(fq[layer.name], gold[layer.name], err_msg=layer.name)


def test_accuracy_hint_only_past_the_threshold():
    opts = QuantOptions(method="ternary", granularity="layer")
    assert accuracy_hint(opts, 0.98, 0.98 - HINT_DROP_POINTS / 100 + 1e-4) is None
    hint = accuracy_hint(opts, 0.98, 0.90)
    assert "8.0 points" in hint and "--scale channel" in hint and "\n" not in hint
    hint = accuracy_hint(QuantOptions(method="fixed", wbits=3, schedule="none"), 0.98, 0.5)
    assert "--schedule simple" in hint and "--bits 4" in hint


def _check(row):
    assert row["drop"] <= row["target"], row


#: One fast case per method (the MLP trains in under a second).
FAST = [c for c in A.CASES if c.name in ("fixed-4", "inq-4", "twn")]


@pytest.mark.parametrize("case", FAST, ids=[c.name for c in FAST])
def test_fast_case_per_method_within_target(mlp, digits, case):
    _check(A.run_case(mlp, digits, case, seed=0))


@functools.cache
def _suite_graph(model, seed):
    from hwquant.data import load_dataset

    return A.train_float(model, seed, load_dataset("digits"))


#: Runs of the suite that miss their target, with why (README, "Quantization defaults").
#: Strict: if one starts passing, the test says so and this list must shrink.
KNOWN_MISSES = {
    ("residual", 0, "inq-5"): "3 test images (0.67 points) against a 0.5-point target; 2-3 "
                              "with other retraining seeds: the model sits on the target",
}


def _suite_params():
    for model in A.MODELS:
        for seed in A.SEEDS:
            for case in A.CASES:
                why = KNOWN_MISSES.get((model, seed, case.name))
                marks = [pytest.mark.xfail(strict=True, reason=why)] if why else []
                yield pytest.param(model, seed, case, marks=marks,
                                   id=f"{model}-{seed}-{case.name}")


@pytest.mark.slow
@pytest.mark.parametrize("model, seed, case", list(_suite_params()))
def test_suite_within_targets(digits, model, seed, case):
    """Every model × seed × method and width of the suite within its target (the float
    model of each model × seed is trained once per worker)."""
    _check(A.run_case(_suite_graph(model, seed), digits, case, seed=seed))


def test_quantize_prints_the_drop_and_one_hint_line(trained_default_pt2, tmp_path, capsys):
    """``hwquant quantize`` states the drop; a poor result gets one ``hint:`` line."""
    from hwquant.cli import main

    out = tmp_path / "n.hwq"
    assert main(["quantize", str(trained_default_pt2), "--method", "fixed", "--bits", "2",
                 "--schedule", "none", "--quiet", "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert " points) -> " in err
    hints = [line for line in err.splitlines() if line.startswith("hint: ")]
    assert len(hints) == 1 and "--schedule simple" in hints[0], err
    assert main(["quantize", str(trained_default_pt2), "--quiet", "-o", str(out)]) == 0
    assert "hint:" not in capsys.readouterr().err  # 8-bit fixed point loses nothing
