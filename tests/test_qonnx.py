"""QONNX import (``hwquant import``): Brevitas models trained here for seconds on the digits set
and exported with ``brevitas.export.export_qonnx`` (nothing is committed), read by
:mod:`hwquant.qonnx`, checked against qonnx's ``execute_onnx`` and, for the power-of-two W4A4
CNN, through ``compile -> sim`` in Verilator."""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import pytest

pytest.importorskip("qonnx")
pytest.importorskip("onnxruntime")
brevitas = pytest.importorskip("brevitas")

import torch
from torch import nn

from hwquant import cli
from hwquant.data import load_dataset
from hwquant.qonnx import (
    EXTRA_MESSAGE,
    SUPPORTED_OPS,
    QonnxImportError,
    compare_with_onnx,
    import_qonnx,
)

DIGITS = load_dataset("digits")

# Brevitas and torch.onnx warn about their own deprecations and export details while a model
# is exported; nothing hwquant can act on.
pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore::FutureWarning")]


# -- the fixture generator: tiny Brevitas models, trained for seconds, exported ---------------

def _brevitas_model(kind):
    """``pow2``: W4A4 CNN, every scale a power of two; ``float``: the same with float scales;
    ``w1a1``: binary weights and bipolar activations (8-bit input)."""
    import brevitas.nn as qnn
    from brevitas.core.restrict_val import RestrictValueType
    from brevitas.quant.binary import (
        SignedBinaryActPerTensorConst,
        SignedBinaryWeightPerTensorConst,
    )

    torch.manual_seed(0)
    p2 = RestrictValueType.POWER_OF_TWO
    if kind == "w1a1":
        w = {"weight_quant": SignedBinaryWeightPerTensorConst}

        def act():
            return qnn.QuantIdentity(act_quant=SignedBinaryActPerTensorConst,
                                     return_quant_tensor=True)
        pad2, flat = 0, 32 * 2 * 2  # a bipolar map is not padded (ONNX pads with 0)
        widths = (16, 32)
    else:
        extra = {"weight_restrict_scaling_type": p2} if kind == "pow2" else {}
        w = {"weight_bit_width": 4, **extra}
        aextra = {"restrict_scaling_type": p2} if kind == "pow2" else {}

        def act():
            return qnn.QuantReLU(bit_width=4, return_quant_tensor=True, **aextra)
        pad2, flat = 1, 16 * 2 * 2
        widths = (8, 16)
    inp_extra = {} if kind == "float" else {"restrict_scaling_type": p2}

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = qnn.QuantIdentity(bit_width=8, return_quant_tensor=True, **inp_extra)
            self.c1 = qnn.QuantConv2d(1, widths[0], 3, padding=1, bias=False, **w)
            self.bn1 = nn.BatchNorm2d(widths[0])
            self.a1 = act()
            self.p1 = nn.MaxPool2d(2)
            self.c2 = qnn.QuantConv2d(widths[0], widths[1], 3, padding=pad2, bias=False, **w)
            self.bn2 = nn.BatchNorm2d(widths[1])
            self.a2 = act()
            self.p2 = nn.MaxPool2d(2) if pad2 else nn.Identity()
            self.fc = qnn.QuantLinear(flat, 10, bias=False, **w)

        def forward(self, x):
            x = self.p1(self.a1(self.bn1(self.c1(self.inp(x)))))
            x = self.p2(self.a2(self.bn2(self.c2(x))))
            return self.fc(torch.flatten(x, 1))

    return Net()


def export_brevitas(kind, path, *, epochs=3, batch=128):
    """Train ``_brevitas_model(kind)`` briefly on the digits set and export it as QONNX to
    ``path``; returns ``(path, brevitas test accuracy, seconds)``."""
    from brevitas.export import export_qonnx

    t0 = time.monotonic()
    model = _brevitas_model(kind)
    x = torch.tensor(DIGITS.x_train, dtype=torch.float32)
    y = torch.tensor(DIGITS.y_train)
    opt = torch.optim.Adam(model.parameters(), 0.02)
    gen = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch):
            idx = perm[i:i + batch]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        logits = model(torch.tensor(DIGITS.x_test, dtype=torch.float32))
    acc = float((logits.argmax(1).numpy() == DIGITS.y_test).mean())
    export_qonnx(model, torch.tensor(DIGITS.x_test[:1], dtype=torch.float32),
                 export_path=str(path))
    return path, acc, time.monotonic() - t0


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Exported models by kind, built on first use: ``{kind: (path, brevitas accuracy, s)}``."""
    root = tmp_path_factory.mktemp("qonnx")
    cache = {}

    def get(kind):
        if kind not in cache:
            cache[kind] = export_brevitas(kind, root / f"{kind}.onnx")
        return cache[kind]
    return get


def _imported(models, kind):
    path, acc, _ = models(kind)
    net, info = import_qonnx(path)
    return net, info, compare_with_onnx(net, info, DIGITS), acc


# -- a hand-built QONNX graph (no training): the fast tests -----------------------------------

class _QonnxGraph:
    """Builds a QONNX graph by hand: float initialisers, ``Quant`` nodes (QONNX's general
    domain) and standard ONNX nodes, one 1x1x8x8 input ``x`` and 10 logits ``y``."""

    DOMAIN = "qonnx.custom_op.general"

    def __init__(self):
        from onnx import numpy_helper

        self._numpy_helper = numpy_helper
        self.inits = []

    def const(self, name, value, dtype=np.float32):
        self.inits.append(self._numpy_helper.from_array(np.asarray(value, dtype), name))
        return name

    def quant(self, name, x, scale, bits, signed, zp=0.0, narrow=0):
        from onnx import helper

        return helper.make_node("Quant", [x, self.const(name + "_s", scale),
                                          self.const(name + "_z", zp),
                                          self.const(name + "_b", bits)], [name],
                                domain=self.DOMAIN, name=name, signed=signed, narrow=narrow,
                                rounding_mode="ROUND")

    def save(self, nodes, name, path):
        import onnx
        from onnx import TensorProto, helper

        graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info(
            "x", TensorProto.FLOAT, [1, 1, 8, 8])], [helper.make_tensor_value_info(
                "y", TensorProto.FLOAT, [1, 10])], self.inits)
        onnx.save(helper.make_model(graph, opset_imports=[
            helper.make_opsetid("", 13), helper.make_opsetid(self.DOMAIN, 1)]), str(path))
        return path


def hand_model(path, *, input_scale=2.0 ** -7, act_scale=0.25, zero_point=0.0, op="Relu",
               act_bits=4, seed=0):
    """Quant(input, 8 bit) -> Conv 3x3 (Quant 4-bit weights, per-channel scales) ->
    BatchNormalization -> ``op`` -> Quant (4 bit unsigned) -> MaxPool -> Reshape -> Gemm
    (Quant 4-bit weights) -> logits, random weights and BatchNorm statistics (negative gammas
    included), written to ``path``."""
    from onnx import helper

    rng = np.random.default_rng(seed)
    g = _QonnxGraph()
    oc = 6
    w1 = rng.normal(0, 0.3, (oc, 1, 3, 3))
    s1 = (2.0 ** -rng.integers(2, 4, oc)).reshape(oc, 1, 1, 1)
    w2 = rng.normal(0, 0.3, (10, oc * 16))
    nodes = [
        g.quant("q_in", "x", input_scale, 8, 1),
        g.quant("q_w1", g.const("w1", w1), s1, 4, 1, narrow=1),
        helper.make_node("Conv", ["q_in", "q_w1"], ["conv"], name="conv", pads=[1, 1, 1, 1],
                         kernel_shape=[3, 3]),
        helper.make_node("BatchNormalization",
                         ["conv", g.const("g", rng.normal(1, 0.6, oc)),
                          g.const("b", rng.normal(0, 0.5, oc)),
                          g.const("m", rng.normal(0, 0.5, oc)),
                          g.const("v", rng.uniform(0.2, 2, oc))], ["bn"], name="bn"),
        helper.make_node(op, ["bn"], ["act"], name="act"),
        g.quant("q_act", "act", act_scale, act_bits, 0, zp=zero_point),
        helper.make_node("MaxPool", ["q_act"], ["pool"], name="pool", kernel_shape=[2, 2],
                         strides=[2, 2]),
        helper.make_node("Reshape", ["pool", g.const("shape", [1, oc * 16], np.int64)],
                         ["flat"], name="flat"),
        g.quant("q_w2", g.const("w2", w2), 2.0 ** -3, 4, 1),
        helper.make_node("Gemm", ["flat", "q_w2"], ["y"], name="fc", transB=1),
    ]
    return g.save(nodes, "hand", path)


def hand_residual(path, *, sum_scale=2.0 ** -3, seed=1):
    """Quant(input) -> Conv -> Relu -> Quant (a) -> Conv -> Relu -> Quant (b) -> Add(a, b) ->
    Quant -> Reshape -> Gemm: a residual block, every scale a power of two."""
    from onnx import helper

    rng = np.random.default_rng(seed)
    g = _QonnxGraph()
    c = 4
    nodes = [
        g.quant("q_in", "x", 2.0 ** -7, 8, 1),
        g.quant("q_w1", g.const("w1", rng.normal(0, 0.4, (c, 1, 3, 3))), 2.0 ** -3, 4, 1),
        helper.make_node("Conv", ["q_in", "q_w1"], ["c1"], name="c1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="r1"),
        g.quant("a", "r1", 2.0 ** -3, 4, 0),
        g.quant("q_w2", g.const("w2", rng.normal(0, 0.3, (c, c, 3, 3))), 2.0 ** -3, 4, 1),
        helper.make_node("Conv", ["a", "q_w2"], ["c2"], name="c2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="r2"),
        g.quant("b", "r2", 2.0 ** -3, 4, 0),
        helper.make_node("Add", ["a", "b"], ["sum"], name="add"),
        g.quant("q_sum", "sum", sum_scale, 4, 0),
        helper.make_node("Reshape", ["q_sum", g.const("shape", [1, c * 64], np.int64)],
                         ["flat"], name="flat"),
        g.quant("q_w3", g.const("w3", rng.normal(0, 0.3, (10, c * 64))), 2.0 ** -3, 4, 1),
        helper.make_node("Gemm", ["flat", "q_w3"], ["y"], name="fc", transB=1),
    ]
    return g.save(nodes, "residual", path)


def test_hand_residual_add(tmp_path):
    """A residual Add quantized at its operands' scale: exact (aligned, saturated). At a
    coarser scale the IR Add rounds half up where Quant rounds half to even (stated): the
    classes then differ on many images of this random network."""
    net, info = import_qonnx(hand_residual(tmp_path / "r.onnx"))
    assert [type(layer).__name__ for layer in net.layers] == [
        "Conv2d", "Conv2d", "Add", "Flatten", "Linear"]
    assert info["stated"] == []
    cmp = compare_with_onnx(net, info, DIGITS)
    assert cmp["logits_exact"] and cmp["differ_untied"] == 0, cmp
    net, info = import_qonnx(hand_residual(tmp_path / "c.onnx", sum_scale=2.0 ** -2))
    assert any("residual add" in line for line in info["stated"])

def test_hand_model_exact_on_every_test_image(tmp_path):
    """Per-channel power-of-two weight scales, BatchNorm with negative gammas: the imported
    thresholds reproduce execute_onnx's logits exactly (rescaled) on all 450 test images."""
    net, info = import_qonnx(hand_model(tmp_path / "m.onnx"))
    assert info["notes"] == [] and info["stated"] == []
    conv = net.weight_layers[0]
    assert type(conv.epilogue).__name__ == "Thresholds" and conv.epilogue.count == 15
    assert set(conv.epilogue.direction.tolist()) <= {1, -1}
    cmp = compare_with_onnx(net, info, DIGITS)
    assert cmp["logits_exact"] and cmp["differ_untied"] == 0, cmp


def test_hand_model_float_scales(tmp_path):
    """An input scale that is not a power of two is regridded (a note); float activation
    scales are exact through the thresholds."""
    net, info = import_qonnx(hand_model(tmp_path / "m.onnx", input_scale=0.0091,
                                        act_scale=0.3))
    assert any("input scale" in note for note in info["notes"])
    cmp = compare_with_onnx(net, info, DIGITS)
    assert cmp["agreement"] >= 0.9, cmp


def test_hand_model_wide_activation_requant(tmp_path):
    """An 8-bit activation after BatchNorm: a Requant (multiplier and bias rounded half up,
    stated), close to the ONNX graph."""
    net, info = import_qonnx(hand_model(tmp_path / "m.onnx", act_bits=8, act_scale=2.0 ** -4))
    assert type(net.weight_layers[0].epilogue).__name__ == "Requant"
    assert any("rounded" in line for line in info["stated"])
    cmp = compare_with_onnx(net, info, DIGITS)
    assert cmp["agreement"] >= 0.95, cmp


def test_hand_model_other_ops_rejected_fast(tmp_path, capsys):
    src = hand_model(tmp_path / "m.onnx", op="Sigmoid")
    line = _refused(["import", str(src), "-o", str(tmp_path / "n.hwq")], capsys,
                    tmp_path / "n.hwq")
    assert "Sigmoid is not supported" in line and ", ".join(SUPPORTED_OPS) in line
    src = hand_model(tmp_path / "z.onnx", zero_point=2.0)
    line = _refused(["import", str(src), "-o", str(tmp_path / "n.hwq")], capsys,
                    tmp_path / "n.hwq")
    assert "(Quant): zero point 2 is not supported" in line


# -- (a) power-of-two scales: exact ----------------------------------------------------------

@pytest.mark.slow
def test_pow2_w4a4_logits_equal_execute_onnx(models):
    net, info, cmp, brevitas_acc = _imported(models, "pow2")
    assert [type(layer).__name__ for layer in net.layers] == [
        "Conv2d", "MaxPool2d", "Conv2d", "MaxPool2d", "Flatten", "Linear"]
    assert [layer.out_format.bits for layer in net.weight_layers[:2]] == [4, 4]
    assert all(type(layer.epilogue).__name__ == "Thresholds" for layer in net.weight_layers[:2])
    assert info["notes"] == [] and info["stated"] == []
    assert cmp["logits_exact"], cmp  # every logit of every test image, rescaled
    assert cmp["agreement"] == 1.0
    assert cmp["accuracy"]["golden"] == cmp["accuracy"]["onnx"]
    assert abs(cmp["accuracy"]["onnx"] - brevitas_acc) < 0.01
    print(f"\npow2 W4A4: brevitas {brevitas_acc:.2%}, onnx {cmp['accuracy']['onnx']:.2%}, "
          f"golden {cmp['accuracy']['golden']:.2%}")


@pytest.mark.slow
def test_pow2_thresholds_reproduce_every_hidden_layer(models):
    """Every hidden layer's integers equal execute_onnx's quantized tensor divided by its
    scale, on every test image (not only the logits)."""
    from qonnx.core.onnx_exec import execute_onnx

    from hwquant import golden
    from hwquant.simulate import quantize_input

    net, info, _, _ = _imported(models, "pow2")
    model = info["model"]
    quants = [n for n in model.graph.node if n.op_type == "Quant"
              and model.get_initializer(n.input[0]) is None][1:]  # activations after the input
    hidden = [layer for layer in net.weight_layers[:-1]]
    assert len(quants) == len(hidden)
    x = DIGITS.x_test[:64]
    out = golden.run(net, quantize_input(net, x))
    for i, img in enumerate(x):
        ctx = execute_onnx(model, {model.graph.input[0].name: img[None].astype(np.float32)},
                           return_full_exec_context=True)
        for q, layer in zip(quants, hidden):
            scale = float(model.get_initializer(q.input[1]))
            ref = ctx[q.output[0]][0] / scale
            assert np.array_equal(ref, out[layer.name][i]), (layer.name, i)


def _run_cli(argv, capsys):
    code = cli.main(argv)
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def builds(models, tmp_path_factory):
    """``hwquant import`` then ``compile`` of an exported model, by kind, built once."""
    cache = {}

    def get(kind):
        if kind not in cache:
            path, _, _ = models(kind)
            root = tmp_path_factory.mktemp(f"qonnx_build_{kind}")
            assert cli.main(["import", str(path), "-o", str(root / "net.hwq"),
                             "--json", str(root / "import.json")]) == 0
            assert cli.main(["compile", str(root / "net.hwq"), "-o", str(root / "build")]) == 0
            cache[kind] = root
        return cache[kind]
    return get


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["pow2", "w1a1"])
def test_import_compile_sim_bit_exact(builds, kind):
    """W4A4 (power-of-two scales, thresholds) and W1A1 (binary kind, bipolar thresholds):
    every output word and every layer probe equal to the golden model under stalls."""
    root = builds(kind)
    report = json.loads((root / "import.json").read_text())
    assert report["logits_exact"] and report["differ_untied"] == 0
    assert cli.main(["sim", str(root / "build"), "--vectors", "24", "--stall", "0.3",
                     "--json", str(root / "sim.json")]) == 0
    sim = json.loads((root / "sim.json").read_text())
    assert sim["passed"] and sim["mismatches"] == 0 and sim["vectors"] == 24


# -- (b) float scales: stated rounding, agreement measured ------------------------------------

@pytest.mark.slow
def test_float_scales_agreement(models):
    _, _, cmp, brevitas_acc = _imported(models, "float")
    print(f"\nfloat W4A4: brevitas {brevitas_acc:.2%}, onnx {cmp['accuracy']['onnx']:.2%}, "
          f"golden {cmp['accuracy']['golden']:.2%}, agreement {cmp['agreement']:.2%}")
    assert cmp["agreement"] >= 0.95
    assert abs(cmp["accuracy"]["golden"] - cmp["accuracy"]["onnx"]) <= 0.03


# -- (c) W1A1: binary weights, bipolar activations --------------------------------------------

@pytest.mark.slow
def test_w1a1_binary_kind(models):
    net, _, cmp, brevitas_acc = _imported(models, "w1a1")
    assert [layer.encoding for layer in net.weight_layers] == ["binary"] * 3
    assert [layer.out_format.bipolar for layer in net.weight_layers[:2]] == [True, True]
    print(f"\nW1A1: brevitas {brevitas_acc:.2%}, onnx {cmp['accuracy']['onnx']:.2%}, "
          f"golden {cmp['accuracy']['golden']:.2%}, agreement {cmp['agreement']:.2%} "
          f"({cmp['tied_images']} images with tied logits)")
    assert cmp["logits_exact"], cmp
    assert cmp["differ_untied"] == 0, cmp  # classes differ only where two logits tie


# -- (d) bad input: one line, exit 2, nothing written -----------------------------------------

def _edited(models, tmp_path, edit):
    import onnx

    path, _, _ = models("pow2")
    proto = onnx.load(str(path))
    edit(proto)
    out = tmp_path / "edited.onnx"
    onnx.save(proto, str(out))
    return out


def _refused(argv, capsys, out):
    code, err = _run_cli(argv, capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert not out.exists() and not list(out.parent.glob(f".{out.name}*"))
    return lines[0]


@pytest.mark.slow
def test_unsupported_op_named_with_the_list(models, tmp_path, capsys):
    def edit(proto):
        next(n for n in proto.graph.node if n.op_type == "Relu").op_type = "Sigmoid"
    src = _edited(models, tmp_path, edit)
    line = _refused(["import", str(src), "-o", str(tmp_path / "n.hwq")], capsys,
                    tmp_path / "n.hwq")
    assert "Sigmoid is not supported" in line and ", ".join(SUPPORTED_OPS) in line


@pytest.mark.slow
def test_nonzero_zero_point_refused(models, tmp_path, capsys):
    import onnx
    from onnx import numpy_helper

    def edit(proto):
        quant = [n for n in proto.graph.node if n.op_type == "Quant"][-1]
        init = next(i for i in proto.graph.initializer if i.name == quant.input[2])
        init.CopyFrom(numpy_helper.from_array(np.array(3.0, np.float32), init.name))
    src = _edited(models, tmp_path, edit)
    assert onnx.load(str(src))
    line = _refused(["import", str(src), "-o", str(tmp_path / "n.hwq")], capsys,
                    tmp_path / "n.hwq")
    assert "zero point 3 is not supported" in line


def test_not_an_onnx_file(tmp_path, capsys):
    src = tmp_path / "model.onnx"
    src.write_bytes(b"\x00not a protobuf\xff" * 10)
    line = _refused(["import", str(src), "-o", str(tmp_path / "n.hwq")], capsys,
                    tmp_path / "n.hwq")
    assert "is not an ONNX model" in line
    src.write_text("hello")
    line = _refused(["import", str(src), "-o", str(tmp_path / "n.hwq")], capsys,
                    tmp_path / "n.hwq")
    assert "ONNX" in line


def test_missing_extra_says_how_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "qonnx", None)  # import qonnx -> ImportError
    src = tmp_path / "model.onnx"
    src.write_bytes(b"")
    with pytest.raises(QonnxImportError, match="qonnx extra"):
        import_qonnx(src)
    line = _refused(["import", str(src), "-o", str(tmp_path / "n.hwq")], capsys,
                    tmp_path / "n.hwq")
    assert line == f"error: {EXTRA_MESSAGE}"
