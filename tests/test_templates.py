"""The 25 HLAC templates, templated training (fixed kernels stay bit-identical) and the
recognition of template kernels in a weight tensor."""

import numpy as np
import pytest
import torch
from torch import nn

from hwquant.cli import main
from hwquant.templates import (
    HLAC_MASKS,
    HLAC_ORDERS,
    TemplateError,
    find_templates,
    fix_templates,
    mask_class,
    masks,
    template_kernel,
    translation_classes,
)
from hwquant.train import default_model, train


class TestMasks:
    def test_count_unique_orders(self):
        m = masks()
        assert m.shape == (25, 3, 3) and len(HLAC_MASKS) == 25
        assert len({x.tobytes() for x in m}) == 25
        assert HLAC_ORDERS.count(0) == 1 and HLAC_ORDERS.count(1) == 4
        assert HLAC_ORDERS.count(2) == 20
        assert np.all(m[:, 1, 1] == 1)  # every mask contains the reference (centre) pixel

    def test_the_25_translation_classes(self):
        classes = translation_classes()
        assert len(classes) == 25  # exhaustive: 1 + 4 + 20
        assert {mask_class(x) for x in masks()} == classes  # each class exactly once

    def test_a_translate_is_the_same_class(self):
        # 000/011/000 and 000/110/000 are one class (the right neighbour or the left one)
        a = np.array([[0, 0, 0], [0, 1, 1], [0, 0, 0]])
        b = np.array([[0, 0, 0], [1, 1, 0], [0, 0, 0]])
        assert mask_class(a) == mask_class(b)

    def test_kernel_values(self):
        k = template_kernel(5, 3)  # 000/111/000 on three input channels
        a = 3 / np.sqrt(27)
        assert k.shape == (3, 3, 3)
        assert np.all(k[:, 1, :] == a) and np.all(k[:, 0, :] == -a) and np.all(k[:, 2, :] == -a)
        assert np.all(template_kernel(0, 1)[0] == np.where(masks()[0], 1.0, -1.0))


class TestRecognition:
    def test_finds_templates_with_either_sign(self):
        w = np.random.default_rng(0).normal(size=(6, 2, 3, 3))
        w[1] = template_kernel(7, 2, a=0.3)
        w[3] = -template_kernel(24, 2, a=1.7)  # BatchNorm with a negative gamma folded in
        ids, signs, scales = find_templates(w)
        assert ids == (-1, 7, -1, 24, -1, -1)
        assert signs == (1, 1, 1, -1, 1, 1)
        assert scales[1] == 0.3 and scales[3] == 1.7
        for c in (1, 3):
            expect = signs[c] * scales[c] * (2.0 * masks()[ids[c]] - 1)
            assert np.array_equal(w[c], np.broadcast_to(expect, w[c].shape))

    @pytest.mark.parametrize("edit", ["other_channel", "three_values", "not_hlac"])
    def test_near_misses_are_not_templates(self, edit):
        w = np.stack([template_kernel(3, 2)])
        if edit == "other_channel":
            w[0, 1] = template_kernel(4, 1)[0]
        elif edit == "three_values":
            w[0, 0, 0, 0] = 0.0
        else:
            w[0] = np.where(np.eye(3, dtype=bool)[None] | (np.arange(3) == 0)[None, :, None],
                            1.0, -1.0)  # top row + diagonal: 5 on cells
        assert find_templates(w)[0] == (-1,)

    def test_only_3x3(self):
        assert find_templates(np.ones((2, 1, 5, 5)))[0] == (-1, -1)


class TestTraining:
    def test_templates_stay_bit_identical_and_the_rest_learns(self, digits):
        model = default_model(digits.input_shape, digits.num_classes, seed=1)
        freeze = fix_templates(model, 9)
        fixed = model.conv1.weight.detach().clone()
        assert freeze.conv_weights_before == 144 and freeze.conv_weights_after == 63
        assert freeze.params_before - freeze.params_after == 81
        # weight decay and Adam's momentum would move a weight with a zero gradient
        train(model, digits, epochs=2, seed=1, progress=False, weight_decay=1e-2,
              freeze=freeze)
        w = model.conv1.weight.detach()
        assert torch.equal(w[:9], fixed[:9])
        assert not torch.equal(w[9:], fixed[9:])
        for k in range(9):
            assert torch.equal(w[k], torch.tensor(template_kernel(k, 1), dtype=w.dtype))
        ids, _, _ = find_templates(w.numpy())
        assert ids[:9] == tuple(range(9)) and set(ids[9:]) == {-1}

    def test_paper_counts(self):
        # a 32x3x3x3 conv1 with 25 templates: 864 -> 189 learnable weights
        model = nn.Sequential(nn.Conv2d(3, 32, 3), nn.ReLU())
        freeze = fix_templates(model, 25)
        assert (freeze.conv_weights_before, freeze.conv_weights_after) == (864, 189)
        assert freeze.to_json()["template_names"][0] == "000/010/000"

    def test_bad_requests(self):
        with pytest.raises(TemplateError, match=r"^Layer '0': templates need a 3x3 kernel, "
                                                r"not 5x5$"):
            fix_templates(nn.Sequential(nn.Conv2d(1, 4, 5)), 2)
        with pytest.raises(TemplateError, match=r"more than its 4 output channels"):
            fix_templates(nn.Sequential(nn.Conv2d(1, 4, 3)), 5)
        with pytest.raises(TemplateError, match=r"more than the 25 HLAC templates"):
            fix_templates(nn.Sequential(nn.Conv2d(1, 32, 3)), 26)
        with pytest.raises(TemplateError, match=r"has none"):
            fix_templates(nn.Sequential(nn.Linear(3, 4)), 1)


def test_cli_refuses_too_many_templates(tmp_path, capsys):
    out = tmp_path / "m.pt2"
    assert main(["train", "--templates", "17", "--epochs", "1", "--quiet", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == ("error: Layer 'conv1': --templates 17 is more than its 16 output "
                   "channels\n")
    assert not out.exists() and not list(tmp_path.iterdir())
