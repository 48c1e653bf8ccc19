import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from hwquant.errors import HwquantError, UnsupportedLayerError
from hwquant.frontend import from_module
from hwquant.train import (
    DigitsCNN,
    ModelError,
    default_model,
    evaluate_float,
    export_model,
    load_exported,
    train,
)


class TestDefaultModel:
    def test_digits_shapes(self):
        model = default_model()
        assert isinstance(model, DigitsCNN)
        assert model.fc.in_features == 32 * 2 * 2
        assert model.eval()(torch.zeros(3, 1, 8, 8)).shape == (3, 10)

    def test_other_image_shape(self):
        model = default_model((3, 12, 10), 4)
        assert model.conv1.in_channels == 3
        assert model.fc.in_features == 32 * 3 * 2
        assert model.eval()(torch.zeros(2, 3, 12, 10)).shape == (2, 4)

    def test_vectors(self):
        model = default_model((20,), 3)
        assert model.eval()(torch.zeros(2, 20)).shape == (2, 3)

    def test_seeded_without_touching_global_rng(self):
        state = torch.get_rng_state()
        a, b = default_model(seed=5), default_model(seed=5)
        assert torch.equal(torch.get_rng_state(), state)
        for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
            assert torch.equal(pa, pb)
        assert not torch.equal(default_model(seed=6).conv1.weight, a.conv1.weight)

    @pytest.mark.parametrize("shape", [(1, 3, 8), (1, 8), ()])
    def test_bad_shape(self, shape):
        with pytest.raises(ValueError, match=r"^Default (CNN|model) input must be "):
            default_model(shape)

    def test_bad_classes(self):
        with pytest.raises(ValueError, match=r"^Number of classes must be an integer of at "
                                             r"least 2, not 1$"):
            default_model(num_classes=1)


class TestTrain:
    def test_reaches_97_percent(self, trained_default):
        # Real training of the bundled CNN on digits (the session fixture trains it once).
        assert trained_default.accuracy >= 0.97
        assert not trained_default.model.training

    def test_deterministic(self, digits):
        small = dataclasses.replace(digits, x_train=digits.x_train[:256],
                                    y_train=digits.y_train[:256])
        runs = []
        for _ in range(2):
            model = default_model(seed=1)
            acc = train(model, small, epochs=2, seed=3, progress=False)
            runs.append((acc, model.state_dict()))
        assert runs[0][0] == runs[1][0]
        for key, value in runs[0][1].items():
            assert torch.equal(value, runs[1][1][key]), key

    def test_restores_global_state(self, digits):
        small = dataclasses.replace(digits, x_train=digits.x_train[:64],
                                    y_train=digits.y_train[:64])
        threads, state = torch.get_num_threads(), torch.get_rng_state()
        train(default_model(), small, epochs=1, progress=False)
        assert torch.get_num_threads() == threads
        assert torch.equal(torch.get_rng_state(), state)

    def test_progress_bar(self, digits, capsys):
        small = dataclasses.replace(digits, x_train=digits.x_train[:64],
                                    y_train=digits.y_train[:64])
        train(default_model(), small, epochs=1, progress=True)

    @pytest.mark.parametrize("kwargs, message", [
        ({"epochs": 0}, r"^Epoch count must be a positive integer, not 0$"),
        ({"batch_size": 1.5}, r"^Batch size must be a positive integer, not 1\.5$"),
        ({"lr": 0.0}, r"^Learning rate must be positive, not 0\.0$"),
    ])
    def test_bad_arguments(self, digits, kwargs, message):
        with pytest.raises(ValueError, match=message):
            train(default_model(), digits, progress=False, **kwargs)


class TestExport:
    def test_round_trip(self, trained_default, trained_default_pt2, digits):
        ep = load_exported(trained_default_pt2)
        assert isinstance(ep, torch.export.ExportedProgram)
        x = torch.from_numpy(np.array(digits.x_test))
        with torch.no_grad():
            expected = trained_default.model(x)
            got = ep.module()(x)
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
        assert evaluate_float(ep, digits.x_test, digits.y_test) == trained_default.accuracy

    @pytest.mark.parametrize("batch", [1, 3, 450])
    def test_any_batch_size(self, trained_default_pt2, digits, batch):
        module = load_exported(trained_default_pt2).module()
        with torch.no_grad():
            out = module(torch.from_numpy(np.array(digits.x_test[:batch])))
        assert out.shape == (batch, 10)

    def test_float_graph_accuracy(self, trained_default, trained_default_pt2, digits):
        graph = from_module(trained_default.model, digits.x_test[:1])
        acc = evaluate_float(graph, digits.x_test, digits.y_test)
        assert acc == pytest.approx(trained_default.accuracy, abs=1 / 450)

    def test_export_keeps_mode(self, tmp_path):
        model = default_model().train()
        export_model(model, np.zeros((1, 1, 8, 8), np.float32), tmp_path / "sub" / "m.pt2")
        assert model.training
        assert (tmp_path / "sub" / "m.pt2").is_file()

    def test_batch_dependent_model(self, tmp_path):
        class Fixed(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(16, 2)

            def forward(self, x):
                return self.fc(x.view(2, -1))

        with pytest.raises(UnsupportedLayerError, match=r"^Model Fixed depends on its batch "
                                                        r"size, which must not matter "):
            export_model(Fixed(), torch.zeros(2, 1, 4, 4), tmp_path / "m.pt2")

    def test_bad_example(self, tmp_path):
        with pytest.raises(ValueError, match=r"^Example input must be a non-empty batch "
                                             r"\(N, \.\.\.\), not shape \(0, 1, 8, 8\)$"):
            export_model(default_model(), torch.zeros(0, 1, 8, 8), tmp_path / "m.pt2")


class TestLoadErrors:
    def test_missing(self, tmp_path):
        with pytest.raises(ModelError, match=r"^Model file '.*nope\.pt2' does not exist$"):
            load_exported(tmp_path / "nope.pt2")

    def test_directory(self, tmp_path):
        with pytest.raises(ModelError, match=r"^Model file '.*' is not a file$"):
            load_exported(tmp_path)

    def test_garbage(self, tmp_path):
        path = tmp_path / "junk.pt2"
        path.write_bytes(b"\x00" * 100)
        with pytest.raises(ModelError, match=r"^Model file '.*junk\.pt2' is not a torch\.export "
                                             r"program \(\.pt2\): it is not a zip archive "):
            load_exported(path)

    def test_truncated(self, trained_default_pt2, tmp_path):
        data = trained_default_pt2.read_bytes()
        path = tmp_path / "cut.pt2"
        path.write_bytes(data[:len(data) // 2])
        with pytest.raises(ModelError, match=r"^Model file '.*cut\.pt2' is not a torch\.export "
                                             r"program"):
            load_exported(path)

    def test_state_dict_file(self, tmp_path):
        path = tmp_path / "weights.pt2"
        torch.save(default_model().state_dict(), path)
        with pytest.raises(ModelError, match=r"^Model file '.*weights\.pt2' is not a "
                                             r"torch\.export program \(\.pt2\); save models with "
                                             r"torch\.export\.save: "):
            load_exported(path)

    def test_error_class(self):
        assert issubclass(ModelError, HwquantError) and issubclass(ModelError, ValueError)


class TestEvaluate:
    def test_module_mode_restored(self, digits):
        model = default_model().train()
        acc = evaluate_float(model, digits.x_test[:20], digits.y_test[:20])
        assert 0.0 <= acc <= 1.0
        assert model.training

    def test_length_mismatch(self, digits):
        with pytest.raises(ValueError, match=r"^Inputs and labels must have the same length, "
                                             r"not 3 and 2$"):
            evaluate_float(default_model(), digits.x_test[:3], digits.y_test[:2])

    def test_bad_model(self, digits):
        with pytest.raises(TypeError, match=r"^Model must be a torch\.nn\.Module, an "
                                            r"ExportedProgram or a FloatGraph, not str$"):
            evaluate_float("model", digits.x_test[:3], digits.y_test[:3])


class TestLearningCurves:
    def test_history_does_not_change_training(self, digits):
        a, b = default_model(digits.input_shape, digits.num_classes, seed=1), \
            default_model(digits.input_shape, digits.num_classes, seed=1)
        history = []
        acc_a = train(a, digits, epochs=2, seed=1, progress=False)
        acc_b = train(b, digits, epochs=2, seed=1, progress=False, history=history)
        assert acc_a == acc_b and [r["epoch"] for r in history] == [1, 2]
        assert history[-1]["test_accuracy"] == acc_b
        assert all(r["loss"] > 0 for r in history)

    def test_cli_templates_writes_curves(self, tmp_path):
        import json

        from hwquant.cli import main

        out, rep = tmp_path / "t.pt2", tmp_path / "r.json"
        assert main(["train", "--epochs", "2", "--templates", "4", "--baseline", "--quiet",
                     "-o", str(out), "--json", str(rep)]) == 0
        png = tmp_path / "t.curves.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        report = json.loads(rep.read_text())
        assert report["curves_png"] == str(png)
        assert {k: len(v) for k, v in report["curves"].items()} == {"4 templates": 2,
                                                                    "no templates": 2}
        assert report["accuracy"]["untemplated"] == report["curves"]["no templates"][-1][
            "test_accuracy"]
        assert main(["train", "--epochs", "1", "--baseline", "-o", str(out)]) == 2
