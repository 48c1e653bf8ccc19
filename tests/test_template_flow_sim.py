"""Templated networks through quantize -> compile -> cocotb + Verilator (``hwquant sim``):
every output word and every layer's probe against the golden model under random valid gaps
and ready stalls. The default digits CNN trained with 12 HLAC templates in conv1 (folded, PEs
mixing template and fixed channels), and a model shape no other test uses (2 signed input
channels, unpadded 3x3 stem of 10 kernels, 7 templates, one of them sign-flipped by a
negative BatchNorm gamma, quantized with INQ: the stem's other channels 8-bit fixed), its
stem fully unrolled."""

import numpy as np
import pytest
import torch
from flows import quantize_compile_sim, save_split, train_full_batch
from torch import nn

from hwquant.templates import fix_templates
from hwquant.train import default_model, export_model, train

pytestmark = pytest.mark.sim


def test_default_cnn_with_templates_folded(digits, tmp_path):
    model = default_model(digits.input_shape, digits.num_classes, seed=0)
    freeze = fix_templates(model, 12)
    acc = train(model, digits, seed=0, progress=False, freeze=freeze)
    assert acc >= 0.97
    export_model(model, digits.x_test[:2], tmp_path / "t.pt2")
    # conv1=4:3: PE p computes channels p, p+4, p+8 (templates) and p+12 (fixed)
    rep, net = quantize_compile_sim(tmp_path / "t.pt2", tmp_path, [], "conv1=4:3", vectors=10)
    conv1 = net.layer("conv1")
    assert conv1.encoding == "template"
    assert conv1.kind_data.template_ids == tuple(range(12)) + (-1,) * 4
    assert rep["templates"]["conv1"]["templates"] == 12
    assert rep["accuracy"]["quantized"] >= rep["accuracy"]["float"] - 0.01


class _Unseen(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(2, 10, 3)
        self.bn = nn.BatchNorm2d(10)
        self.pool = nn.MaxPool2d(3)
        self.head = nn.Linear(10 * 2 * 2, 3)

    def forward(self, x):
        x = self.pool(torch.relu(self.bn(self.stem(x))))
        return self.head(torch.flatten(x, 1))


@pytest.mark.slow
def test_unseen_templated_model_inq_unrolled(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(150, 2, 8, 8)).astype(np.float32)
    y = (x[:, 0].mean(axis=(1, 2)) > 0).astype(np.int64) + (x[:, 1, :4].mean(axis=(1, 2)) > 0)
    data = save_split(tmp_path / "data.npz", x, y, 110)
    torch.manual_seed(1)
    model = _Unseen()
    freeze = fix_templates(model, 7)
    train_full_batch(model, x[:110], y[:110], epochs=30, weight_decay=1e-3, freeze=freeze)
    with torch.no_grad():
        model.bn.weight[2] = -model.bn.weight[2].abs()  # template 2 folds with sign -1
    export_model(model, x[:2], tmp_path / "u.pt2")
    _, net = quantize_compile_sim(tmp_path / "u.pt2", tmp_path,
                                  ["--method", "inq", "--bits", "5", "--retrain-epochs", "1"],
                                  "stem=10:18", vectors=8, data=data)
    stem = net.layer("stem")
    assert stem.encoding == "template" and stem.weight_bits == 8
    assert stem.kind_data.template_ids == tuple(range(7)) + (-1,) * 3
    assert stem.kind_data.signs[2] == -1 and stem.kind_data.signs[0] == 1
    assert net.layer("head").encoding == "pow2"
