import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hwquant.errors import UnsupportedLayerError
from hwquant.frontend import FloatGraph, FloatNode, from_exported, from_module, load_model
from hwquant.train import default_model, export_program, load_exported

# -- models ---------------------------------------------------------------------------------------


class FiveByFive(nn.Module):
    """5×5 kernels, stride 2, padding 2, no conv bias, BatchNorm, AvgPool2d(2), 3 channels."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 5, stride=2, padding=2, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.pool = nn.AvgPool2d(2)
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(8 * 2 * 2, 5)

    def forward(self, x):
        x = self.pool(F.relu(self.bn(self.conv(x)), inplace=True))
        return self.head(torch.flatten(self.drop(x), 1))


class GlobalPool(nn.Module):
    """AdaptiveAvgPool2d(1) + Flatten + Linear."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(2, 6, 3, padding=1), nn.BatchNorm2d(6),
                                      nn.ReLU(), nn.Conv2d(6, 6, 3), nn.ReLU())
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(6, 4))

    def forward(self, x):
        return self.classifier(self.gap(self.features(x)))


class Residual(nn.Module):
    """conv-bn-relu-conv-bn, skip add, relu; global mean; linear."""

    def __init__(self, channels=4):
        super().__init__()
        self.stem = nn.Conv2d(1, channels, 3, padding=1)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.fc = nn.Linear(channels, 3)

    def forward(self, x):
        x = F.relu(self.stem(x))
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        y = F.relu(y + x)
        return self.fc(y.mean(dim=(2, 3)))


class Lambda(nn.Module):
    def __init__(self, fn, **modules):
        super().__init__()
        self.fn = fn
        for name, module in modules.items():
            setattr(self, name, module)

    def forward(self, x):
        return self.fn(self, x)


def _mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(20, 16), nn.BatchNorm1d(16), nn.ReLU(),
                         nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))


def _randomize_batch_norm(model, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-1, 1, generator=gen)
                m.running_var.uniform_(0.2, 3, generator=gen)
                m.weight.uniform_(0.5, 1.5, generator=gen)
                m.bias.uniform_(-0.5, 0.5, generator=gen)
    return model.eval()


ARCHITECTURES = {
    "default_cnn": (lambda: default_model(seed=0), (1, 8, 8),
                    [("conv1", "conv2d", True), ("maxpool2d0", "maxpool2d", False),
                     ("conv2", "conv2d", True), ("maxpool2d1", "maxpool2d", False),
                     ("flatten0", "flatten", False), ("fc", "linear", False)]),
    "five_by_five": (FiveByFive, (3, 8, 8),
                     [("conv", "conv2d", True), ("avgpool2d0", "avgpool2d", False),
                      ("flatten0", "flatten", False), ("head", "linear", False)]),
    "global_pool": (GlobalPool, (2, 6, 6),
                    [("features_0", "conv2d", True), ("features_3", "conv2d", True),
                     ("avgpool2d0", "avgpool2d", False), ("flatten0", "flatten", False),
                     ("classifier_1", "linear", False)]),
    "residual": (Residual, (1, 6, 6),
                 [("stem", "conv2d", True), ("conv1", "conv2d", True),
                  ("conv2", "conv2d", False), ("add0", "add", True),
                  ("avgpool2d0", "avgpool2d", False), ("flatten0", "flatten", False),
                  ("fc", "linear", False)]),
    "mlp_vectors": (_mlp, (20,),
                    [("linear_1", "linear", True), ("linear_4", "linear", True),
                     ("linear_6", "linear", False)]),
    "mlp_images": (lambda: nn.Sequential(nn.Flatten(), nn.Linear(16, 6), nn.ReLU(),
                                         nn.Linear(6, 2)), (1, 4, 4),
                   [("flatten0", "flatten", False), ("linear_1", "linear", True),
                    ("linear_3", "linear", False)]),
}


@pytest.fixture(params=sorted(ARCHITECTURES))
def architecture(request):
    build, shape, expected = ARCHITECTURES[request.param]
    return _randomize_batch_norm(build()), shape, expected


# -- equivalence -----------------------------------------------------------------------------------


class TestEquivalence:
    def test_structure(self, architecture):
        model, shape, expected = architecture
        graph = from_module(model, torch.zeros(1, *shape))
        assert graph.input_shape == shape
        assert [(n.name, n.op, n.relu) for n in graph.nodes] == expected
        assert graph.output is graph.nodes[-1]
        for node in graph.nodes:
            assert node.name.isidentifier()
            if node.op in ("conv2d", "linear"):
                assert node.weight.dtype == np.float64 and node.bias.dtype == np.float64
                assert node.bias.shape == (node.out_shape[0],)

    @pytest.mark.parametrize("seed", [0, 1])
    def test_matches_torch(self, architecture, seed):
        model, shape, _ = architecture
        graph = from_module(model, torch.zeros(2, *shape))
        x = torch.randn(16, *shape, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            expected = model(x).double().numpy()
        values = graph.run(x.numpy())
        np.testing.assert_allclose(values[graph.output.name], expected, rtol=1e-5, atol=1e-5)
        assert set(values) == {"input"} | {n.name for n in graph.nodes}
        for node in graph.nodes:
            assert values[node.name].shape == (16, *node.out_shape)

    def test_intermediate_values(self):
        model = _randomize_batch_norm(default_model(seed=2))
        graph = from_module(model, torch.zeros(1, 1, 8, 8))
        x = torch.rand(4, 1, 8, 8)
        with torch.no_grad():
            conv1 = F.relu(model.bn1(model.conv1(x))).double().numpy()
            pool2 = model.pool2(F.relu(model.bn2(model.conv2(model.pool1(
                torch.from_numpy(conv1).float()))))).double().numpy()
        values = graph.run(x.numpy())
        np.testing.assert_allclose(values["conv1"], conv1, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(values["maxpool2d1"], pool2, rtol=1e-5, atol=1e-5)

    def test_batch_norm_folding(self):
        model = _randomize_batch_norm(default_model(seed=1))
        node = from_module(model, torch.zeros(1, 1, 8, 8)).node("conv1")
        bn, conv = model.bn1, model.conv1

        def f64(t):
            return t.detach().double().numpy()

        scale = f64(bn.weight) / np.sqrt(f64(bn.running_var) + bn.eps)
        w = f64(conv.weight) * scale[:, None, None, None]
        b = (f64(conv.bias) - f64(bn.running_mean)) * scale + f64(bn.bias)
        np.testing.assert_allclose(node.weight, w, rtol=1e-12)
        np.testing.assert_allclose(node.bias, b, rtol=1e-12)

    def test_geometry(self):
        node = from_module(_randomize_batch_norm(FiveByFive()), torch.zeros(1, 3, 8, 8)).nodes[0]
        assert (node.kernel, node.stride, node.padding) == ((5, 5), (2, 2), (2, 2))
        assert (node.in_shape, node.out_shape) == ((3, 8, 8), (8, 4, 4))
        np.testing.assert_array_equal(node.bias[:0], np.zeros(0))

    def test_zero_bias_without_batch_norm(self):
        model = nn.Sequential(nn.Conv2d(1, 3, 3, bias=False)).eval()
        node = from_module(model, torch.zeros(1, 1, 5, 5)).nodes[0]
        np.testing.assert_array_equal(node.bias, np.zeros(3))

    def test_relu_after_maxpool_fused_into_conv(self):
        model = Lambda(lambda s, x: s.fc(F.relu(F.max_pool2d(s.conv(x), 2, padding=1))
                                         .flatten(1)),
                       conv=nn.Conv2d(1, 2, 3), fc=nn.Linear(2 * 3 * 3, 2)).eval()
        graph = from_module(model, torch.zeros(1, 1, 6, 6))
        assert [(n.op, n.relu) for n in graph.nodes] == [
            ("conv2d", True), ("maxpool2d", False), ("flatten", False), ("linear", False)]
        x = torch.randn(5, 1, 6, 6)
        with torch.no_grad():
            np.testing.assert_allclose(graph.run(x.numpy())["fc"], model(x).numpy(),
                                       rtol=1e-5, atol=1e-5)

    def test_view_flatten_and_shared_weights(self):
        model = Lambda(lambda s, x: s.fc(s.conv(x).view(x.size(0), -1)) + s.fc(
            s.conv(x).view(x.size(0), -1)), conv=nn.Conv2d(1, 2, 3), fc=nn.Linear(8, 3)).eval()
        graph = from_module(model, torch.zeros(1, 1, 4, 4))
        assert [n.name for n in graph.nodes] == ["conv", "flatten0", "fc", "conv_1",
                                                 "flatten1", "fc_1", "add0"]

    def test_same_padding_and_adaptive_pool(self):
        model = nn.Sequential(nn.Conv2d(1, 2, 3, padding="same"), nn.AdaptiveAvgPool2d(2),
                              nn.Flatten(), nn.Linear(8, 2)).eval()
        graph = from_module(model, torch.zeros(1, 1, 6, 6))
        assert graph.nodes[0].padding == (1, 1)
        assert graph.nodes[1].kernel == (3, 3) and graph.nodes[1].stride == (3, 3)
        x = torch.randn(3, 1, 6, 6)
        with torch.no_grad():
            np.testing.assert_allclose(graph.run(x.numpy())[graph.output.name],
                                       model(x).numpy(), rtol=1e-5, atol=1e-5)

    def test_static_batch_export(self):
        model = _randomize_batch_norm(default_model(seed=0))
        ep = torch.export.export(model, (torch.zeros(3, 1, 8, 8),))
        graph = from_exported(ep)
        assert graph.nodes[0].name == "conv1"

    @pytest.mark.filterwarnings(
        r"ignore:`isinstance\(treespec, LeafSpec\)` is deprecated:FutureWarning")
    def test_decomposed_program(self):
        model = _randomize_batch_norm(nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten()))
        ep = export_program(model, torch.zeros(2, 1, 6, 6)).run_decompositions()
        graph = from_exported(ep)
        assert [(n.op, n.relu) for n in graph.nodes] == [
            ("conv2d", True), ("maxpool2d", False), ("flatten", False)]
        x = torch.randn(4, 1, 6, 6)
        with torch.no_grad():
            np.testing.assert_allclose(graph.run(x.numpy())[graph.output.name],
                                       model(x).numpy(), rtol=1e-5, atol=1e-5)

    def test_load_model(self, trained_default, trained_default_pt2, digits):
        graph = load_model(trained_default_pt2)
        assert [n.name for n in graph.nodes] == ["conv1", "maxpool2d0", "conv2", "maxpool2d1",
                                                 "flatten0", "fc"]
        module = load_exported(trained_default_pt2).module()
        x = np.array(digits.x_test[:64])
        with torch.no_grad():
            expected = module(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(graph.run(x)["fc"], expected, rtol=1e-5, atol=1e-5)


# -- the float graph itself --------------------------------------------------------------------------


class TestFloatGraph:
    def test_input_shape_checked(self):
        graph = from_module(default_model(), torch.zeros(1, 1, 8, 8))
        with pytest.raises(ValueError, match=r"^Input batch must have shape \(N, 1, 8, 8\), not "
                                             r"\(1, 8, 8\)$"):
            graph.run(np.zeros((1, 8, 8)))

    def test_weights_read_only(self):
        graph = from_module(default_model(), torch.zeros(1, 1, 8, 8))
        with pytest.raises(ValueError):
            graph.nodes[0].weight[0, 0, 0, 0] = 1.0

    def test_unknown_op(self):
        with pytest.raises(ValueError, match=r"^Layer 'x': op must be one of conv2d, linear, "
                                             r"maxpool2d, avgpool2d, flatten, add, not 'relu'$"):
            FloatNode("x", "relu", ("input",), (4,), (4,))

    def test_topology_checked(self):
        node = FloatNode("f", "flatten", ("nope",), (1, 2, 2), (4,))
        with pytest.raises(ValueError, match=r"^Layer 'f' reads 'nope', which is not defined "
                                             r"before it$"):
            FloatGraph((1, 2, 2), (node,))

    def test_lookup(self):
        graph = from_module(default_model(), torch.zeros(1, 1, 8, 8))
        assert graph.node("conv2").op == "conv2d"
        assert [n.name for n in graph.consumers("conv1")] == ["maxpool2d0"]
        with pytest.raises(KeyError):
            graph.node("conv9")


# -- rejections ----------------------------------------------------------------------------------------


def _convert(model, shape):
    return from_module(model.eval(), torch.zeros(2, *shape))


def _bn_plus_skip(s, x):
    y = s.conv(x)
    return s.bn(y) + y


def _relu_plus_skip(s, x):
    y = s.conv(x)
    return F.relu(y) + y


SUPPORTED = r"supported operations are conv2d, convolution, linear, batch_norm, relu, "


class TestRejections:
    def test_groups(self):
        with pytest.raises(UnsupportedLayerError, match=r"^Layer 'conv2d_0' "
                                                        r"\(aten\.conv2d\.default\): groups must "
                                                        r"be 1, not 2$"):
            _convert(nn.Sequential(nn.Conv2d(4, 4, 3, groups=2)), (4, 6, 6))

    def test_dilation(self):
        with pytest.raises(UnsupportedLayerError, match=r"^Layer 'conv' \(aten\.conv2d\.default"
                                                        r"\): dilation must be \(1, 1\), not "
                                                        r"\(2, 2\)$"):
            _convert(Lambda(lambda s, x: s.conv(x), conv=nn.Conv2d(1, 2, 3, dilation=2)),
                     (1, 8, 8))

    def test_ceil_mode(self):
        with pytest.raises(UnsupportedLayerError, match=r"^Layer 'maxpool2d0' "
                                                        r"\(aten\.max_pool2d\.default\): "
                                                        r"ceil_mode must be False, not True$"):
            _convert(nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2, ceil_mode=True)),
                     (1, 7, 7))

    def test_maxpool_dilation(self):
        with pytest.raises(UnsupportedLayerError, match=r"^Layer 'maxpool2d0' "
                                                        r"\(aten\.max_pool2d\.default\): "
                                                        r"dilation must be \(1, 1\), not "
                                                        r"\(2, 2\)$"):
            _convert(nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2, dilation=2)), (1, 8, 8))

    def test_count_include_pad(self):
        with pytest.raises(UnsupportedLayerError, match=r"^Layer 'avgpool2d0' "
                                                        r"\(aten\.avg_pool2d\.default\): "
                                                        r"count_include_pad must be True when "
                                                        r"padding is used, not False with "
                                                        r"padding \(1, 1\)$"):
            _convert(nn.Sequential(nn.Conv2d(1, 2, 3), nn.AvgPool2d(3, 1, 1,
                                                                    count_include_pad=False)),
                     (1, 7, 7))

    def test_count_include_pad_without_padding_is_fine(self):
        graph = _convert(nn.Sequential(nn.Conv2d(1, 2, 3), nn.AvgPool2d(
            2, count_include_pad=False)), (1, 6, 6))
        assert graph.output.op == "avgpool2d"

    def test_divisor_override(self):
        with pytest.raises(UnsupportedLayerError, match=r"^Layer 'avgpool2d0' "
                                                        r"\(aten\.avg_pool2d\.default\): "
                                                        r"divisor_override must be None, not "
                                                        r"3$"):
            _convert(nn.Sequential(nn.Conv2d(1, 2, 3), nn.AvgPool2d(2, divisor_override=3)),
                     (1, 7, 7))

    def test_unsupported_op(self):
        with pytest.raises(UnsupportedLayerError, match=r"^Operation 'sigmoid' "
                                                        r"\(aten\.sigmoid\.default\) in module "
                                                        r"'act' is not supported; " + SUPPORTED):
            _convert(Lambda(lambda s, x: s.act(s.conv(x)), conv=nn.Conv2d(1, 2, 3),
                            act=nn.Sigmoid()), (1, 6, 6))

    def test_transposed_conv(self):
        with pytest.raises(UnsupportedLayerError, match=r"^Operation 'conv_transpose2d' "
                                                        r"\(aten\.conv_transpose2d\.input\) in "
                                                        r"module '0' is not supported; "):
            _convert(nn.Sequential(nn.ConvTranspose2d(1, 2, 3)), (1, 6, 6))

    def test_batch_norm_after_pool(self):
        with pytest.raises(UnsupportedLayerError, match=r"^Layer 'batch_norm_2' "
                                                        r"\(aten\.batch_norm\.default\): "
                                                        r"BatchNorm must directly follow a "
                                                        r"conv2d or linear layer that has no "
                                                        r"other consumers, not maxpool2d "
                                                        r"'maxpool2d0'$"):
            _convert(nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), nn.BatchNorm2d(2)),
                     (1, 8, 8))

    def test_batch_norm_on_input(self):
        with pytest.raises(UnsupportedLayerError, match=r"^Layer 'batch_norm_0' .*, not the "
                                                        r"model input$"):
            _convert(nn.Sequential(nn.BatchNorm2d(1), nn.Conv2d(1, 2, 3)), (1, 8, 8))

    def test_batch_norm_after_relu(self):
        with pytest.raises(UnsupportedLayerError, match=r"^Layer 'batch_norm_2' .*, not "
                                                        r"conv2d \+ relu 'conv2d_0'$"):
            _convert(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.BatchNorm2d(2)), (1, 6, 6))

    def test_batch_norm_shared_producer(self):
        with pytest.raises(UnsupportedLayerError, match=r"^Layer 'bn' \(aten\.batch_norm\."
                                                        r"default\): BatchNorm must directly "
                                                        r"follow .*, not conv2d 'conv'$"):
            _convert(Lambda(_bn_plus_skip, conv=nn.Conv2d(1, 2, 3), bn=nn.BatchNorm2d(2)),
                     (1, 6, 6))

    def test_relu_on_input(self):
        with pytest.raises(UnsupportedLayerError, match=r"^Layer 'relu' \(aten\.relu\.default\)"
                                                        r": ReLU on the model input cannot be "
                                                        r"fused; ReLU must follow a conv2d, "
                                                        r"linear, add or avgpool2d layer$"):
            _convert(nn.Sequential(nn.ReLU(), nn.Conv2d(1, 2, 3)), (1, 6, 6))

    def test_relu_shared_producer(self):
        with pytest.raises(UnsupportedLayerError, match=r"^Layer 'relu' \(aten\.relu\.default\)"
                                                        r": ReLU cannot be fused into conv2d "
                                                        r"'conv', which has other consumers$"):
            _convert(Lambda(_relu_plus_skip, conv=nn.Conv2d(1, 2, 3)), (1, 6, 6))

    def test_reshape(self):
        with pytest.raises(UnsupportedLayerError, match=r"^Layer 'reshape' \(aten\.reshape\."
                                                        r"default\): only a flatten of \(C, H, "
                                                        r"W\) to \(C\*H\*W,\) is supported, not "
                                                        r"a reshape of \(4, 4, 4\) to \(8, 8\)$"):
            _convert(Lambda(lambda s, x: s.conv(x).reshape(x.shape[0], 8, -1),
                            conv=nn.Conv2d(1, 4, 3)), (1, 6, 6))

    def test_partial_flatten(self):
        with pytest.raises(UnsupportedLayerError, match=r"^Layer 'flatten' \(aten\.flatten\."
                                                        r"using_ints\): only a flatten of .*, "
                                                        r"not a reshape of \(4, 4, 4\) to "
                                                        r"\(4, 16\)$"):
            _convert(Lambda(lambda s, x: torch.flatten(s.conv(x), 2), conv=nn.Conv2d(1, 4, 3)),
                     (1, 6, 6))

    def test_batch_axis_flattened(self):
        model = Lambda(lambda s, x: s.conv(x).reshape(-1), conv=nn.Conv2d(1, 2, 3)).eval()
        ep = torch.export.export(model, (torch.zeros(2, 1, 4, 4),))
        with pytest.raises(UnsupportedLayerError, match=r"^Layer 'reshape' \(aten\.reshape\."
                                                        r"default\): the batch axis must be kept,"
                                                        r" not reshaped: \(2, 2, 2, 2\) to "
                                                        r"\(16,\)$"):
            from_exported(ep)

    def test_batch_size_dependent(self):
        with pytest.raises(UnsupportedLayerError, match=r"^Model Lambda depends on its batch "
                                                        r"size, which must not matter"):
            _convert(Lambda(lambda s, x: s.fc(x.view(2, -1)), fc=nn.Linear(16, 2)), (1, 4, 4))

    def test_multiple_outputs(self):
        with pytest.raises(UnsupportedLayerError, match=r"^Model must have exactly one output, "
                                                        r"not 2$"):
            _convert(Lambda(lambda s, x: (s.a(x), s.b(x)), a=nn.Conv2d(1, 2, 3),
                            b=nn.Conv2d(1, 2, 3)), (1, 6, 6))

    def test_multiple_inputs(self):
        class TwoInputs(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(1, 2, 3)

            def forward(self, x, y):
                return self.conv(x) + self.conv(y)

        x = torch.zeros(2, 1, 6, 6)
        ep = torch.export.export(TwoInputs().eval(), (x, x))
        with pytest.raises(UnsupportedLayerError, match=r"^Model must take exactly one tensor "
                                                        r"input, not 2$"):
            from_exported(ep)

    def test_broadcasting_add(self):
        with pytest.raises(UnsupportedLayerError, match=r"^Layer 'add0' \(aten\.add\.Tensor\): "
                                                        r"operands must have the same shape, "
                                                        r"not \(4, 4, 4\) and \(1, 4, 4\) "
                                                        r"\(broadcasting is not supported\)$"):
            _convert(Lambda(lambda s, x: s.a(x) + s.b(x), a=nn.Conv2d(1, 4, 3),
                            b=nn.Conv2d(1, 1, 3)), (1, 6, 6))

    def test_add_alpha(self):
        with pytest.raises(UnsupportedLayerError, match=r"^Layer 'add0' \(aten\.add\.Tensor\): "
                                                        r"alpha must be 1, not 2$"):
            _convert(Lambda(lambda s, x: torch.add(s.a(x), s.b(x), alpha=2),
                            a=nn.Conv2d(1, 2, 3), b=nn.Conv2d(1, 2, 3)), (1, 6, 6))

    def test_add_constant(self):
        with pytest.raises(UnsupportedLayerError, match=r"^Layer 'add0' \(aten\.add\.Tensor\): "
                                                        r"second operand must be an activation "
                                                        r"tensor, not 1\.0$"):
            _convert(Lambda(lambda s, x: s.a(x) + 1.0, a=nn.Conv2d(1, 2, 3)), (1, 6, 6))

    def test_add_parameter(self):
        with pytest.raises(UnsupportedLayerError, match=r"^Layer 'add0' \(aten\.add\.Tensor\): "
                                                        r"second operand must be an activation, "
                                                        r"not the model parameter 'p'$"):
            _convert(Lambda(lambda s, x: s.a(x) + s.p, a=nn.Conv2d(1, 2, 3),
                            p=nn.Parameter(torch.zeros(2, 4, 4))), (1, 6, 6))

    def test_linear_on_feature_map(self):
        with pytest.raises(UnsupportedLayerError, match=r"^Layer 'linear_1' \(aten\.linear\."
                                                        r"default\): input must be a vector "
                                                        r"\(flatten it first\), not shape "
                                                        r"\(4, 4, 4\)$"):
            _convert(nn.Sequential(nn.Conv2d(1, 4, 3), nn.Linear(4, 2)), (1, 6, 6))

    def test_mean_over_channels(self):
        with pytest.raises(UnsupportedLayerError, match=r"^Layer 'mean' \(aten\.mean\.dim\): "
                                                        r"only the global average over dims "
                                                        r"\(2, 3\) of a \(C, H, W\) feature map "
                                                        r"is supported, not dims \[1\] of shape "
                                                        r"\(4, 4, 4\)$"):
            _convert(Lambda(lambda s, x: s.a(x).mean(1), a=nn.Conv2d(1, 4, 3)), (1, 6, 6))

    def test_adaptive_pool_not_dividing(self):
        with pytest.raises(UnsupportedLayerError, match=r"^Layer 'adaptive_avg_pool2d' "
                                                        r"\(aten\.adaptive_avg_pool2d\.default\)"
                                                        r": output_size must divide the input "
                                                        r"size \(4, 4\), not \(3, 3\)$"):
            _convert(nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(3)), (1, 6, 6))

    def test_same_padding_even_kernel(self):
        model = nn.Sequential(nn.Conv2d(1, 2, 4, padding="same")).eval()
        with pytest.warns(UserWarning, match="padding='same' with even kernel"):
            ep = export_program(model, torch.zeros(2, 1, 6, 6))
        with pytest.raises(UnsupportedLayerError, match=r"^Layer 'conv2d_0' \(aten\.conv2d\."
                                                        r"padding\): padding 'same' is only "
                                                        r"supported with stride 1 and odd "
                                                        r"kernels, not stride \(1, 1\) and "
                                                        r"kernel \(4, 4\)$"):
            from_exported(ep)

    def test_conv1d_input(self):
        with pytest.raises(UnsupportedLayerError, match=r"^Model input must have shape \(N, C, "
                                                        r"H, W\) or \(N, F\), not \(N, 1, 6\)$"):
            _convert(nn.Sequential(nn.Conv1d(1, 2, 3)), (1, 6))

    def test_identity_model(self):
        with pytest.raises(UnsupportedLayerError, match=r"^Model computes nothing: its output "
                                                        r"is its input$"):
            _convert(nn.Sequential(nn.Identity()), (6,))

    def test_training_mode_is_exported_in_eval(self):
        model = _randomize_batch_norm(default_model()).train()
        graph = from_module(model, torch.zeros(1, 1, 8, 8))
        assert model.training
        assert graph.nodes[0].op == "conv2d"
