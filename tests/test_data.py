import numpy as np
import pytest

from hwquant.data import (
    Dataset,
    DatasetError,
    calibration_split,
    infer_scale_frac,
    load_dataset,
    load_npz,
)
from hwquant.errors import HwquantError


def _arrays(n_train=12, n_test=6, shape=(1, 4, 4), classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 8, (n_train, *shape)) / 8.0,
        "y_train": np.arange(n_train) % classes,
        "x_test": rng.integers(0, 8, (n_test, *shape)) / 8.0,
        "y_test": np.arange(n_test) % classes,
    }


def _save(tmp_path, name="data.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


class TestDigits:
    def test_split_and_types(self, digits):
        assert isinstance(digits, Dataset)
        assert digits.name == "digits"
        assert digits.num_classes == 10
        assert digits.input_shape == (1, 8, 8)
        assert digits.x_train.shape == (1347, 1, 8, 8)
        assert digits.x_test.shape == (450, 1, 8, 8)
        assert digits.x_train.dtype == np.float32 and digits.x_test.dtype == np.float32
        assert digits.y_train.dtype == np.int64 and digits.y_test.dtype == np.int64

    def test_values_on_the_sixteenth_grid(self, digits):
        assert digits.input_scale_frac == 4
        for x in (digits.x_train, digits.x_test):
            assert x.min() == 0.0 and x.max() == 1.0
            np.testing.assert_array_equal(x * 16, np.round(x * 16))
        assert infer_scale_frac(digits.x_train) == 4

    def test_stratified(self, digits):
        train_counts = np.bincount(digits.y_train, minlength=10)
        test_counts = np.bincount(digits.y_test, minlength=10)
        # every class is split 3:1 to within one sample
        assert np.all(np.abs(test_counts - (train_counts + test_counts) / 4) <= 1)

    def test_deterministic(self, digits):
        again = load_dataset("digits")
        np.testing.assert_array_equal(again.x_train, digits.x_train)
        np.testing.assert_array_equal(again.y_test, digits.y_test)

    def test_read_only(self, digits):
        with pytest.raises(ValueError):
            digits.x_train[0, 0, 0, 0] = 1.0

    def test_unknown_name(self):
        with pytest.raises(DatasetError, match=r"^Unknown dataset 'mnist'; known datasets are "
                                               r"digits \(pass your own data as a \.npz file\)$"):
            load_dataset("mnist")

    def test_no_name(self):
        with pytest.raises(DatasetError, match=r"^No dataset given; name one of digits or pass "
                                               r"a \.npz file$"):
            load_dataset(None)


class TestNpz:
    def test_images(self, tmp_path):
        arrays = _arrays()
        ds = load_dataset(path=_save(tmp_path, "mine.npz", **arrays))
        assert ds.name == "mine"
        assert ds.num_classes == 3
        assert ds.input_shape == (1, 4, 4)
        assert ds.input_scale_frac == 3
        assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
        np.testing.assert_array_equal(ds.x_test, arrays["x_test"].astype(np.float32))

    def test_path_wins_over_name(self, tmp_path):
        ds = load_dataset("digits", path=_save(tmp_path, **_arrays()))
        assert ds.name == "data"

    def test_channel_axis_added(self, tmp_path):
        arrays = _arrays(shape=(5, 6))
        ds = load_npz(_save(tmp_path, **arrays))
        assert ds.input_shape == (1, 5, 6)

    def test_vectors(self, tmp_path):
        arrays = _arrays(shape=(7,))
        ds = load_npz(_save(tmp_path, **arrays))
        assert ds.input_shape == (7,)

    def test_num_classes_key(self, tmp_path):
        ds = load_npz(_save(tmp_path, num_classes=np.int64(5), **_arrays()))
        assert ds.num_classes == 5

    def test_off_grid_inputs(self, tmp_path):
        arrays = _arrays()
        arrays["x_train"] = arrays["x_train"] + 0.1
        assert load_npz(_save(tmp_path, **arrays)).input_scale_frac is None

    def test_missing_file(self, tmp_path):
        with pytest.raises(DatasetError, match=r"^Dataset file '.*nope\.npz' does not exist$"):
            load_npz(tmp_path / "nope.npz")

    @pytest.mark.parametrize("content, why", [(b"this is not a zip file", "not a zip archive"),
                                              (b"", "empty"),
                                              (b"x_train = [1, 2]\n", "not a zip archive")])
    def test_not_an_archive(self, tmp_path, content, why):
        """A text file is named for what it is (not "pickled data", NumPy's guess)."""
        path = tmp_path / "junk.npz"
        path.write_bytes(content)
        with pytest.raises(DatasetError, match=rf"^Dataset file '.*junk\.npz' is not a \.npz "
                                               rf"archive \(it is {why}\); save one with "
                                               rf"numpy\.savez holding x_train, y_train, "
                                               rf"x_test, y_test$"):
            load_npz(path)

    def test_truncated_archive(self, tmp_path):
        path = _save(tmp_path, **_arrays())
        path.write_bytes(path.read_bytes()[:100])
        with pytest.raises(DatasetError, match=r"^Dataset file '.*' is not a readable \.npz "
                                               r"archive: "):
            load_npz(path)

    def test_directory(self, tmp_path):
        with pytest.raises(DatasetError, match=r"^Dataset file '.*' is not a file$"):
            load_npz(tmp_path)

    def test_single_array(self, tmp_path):
        path = tmp_path / "one.npy"
        np.save(path, np.zeros(3))
        with pytest.raises(DatasetError, match=r"^Dataset file '.*one\.npy' is a single array, "
                                               r"not a \.npz archive with x_train, y_train, "
                                               r"x_test, y_test$"):
            load_npz(path)

    def test_missing_key(self, tmp_path):
        arrays = _arrays()
        del arrays["y_test"]
        with pytest.raises(DatasetError, match=r"^Dataset file '.*' has no array 'y_test'; "
                                               r"required arrays are x_train, y_train, x_test, "
                                               r"y_test$"):
            load_npz(_save(tmp_path, **arrays))

    def test_unknown_key(self, tmp_path):
        with pytest.raises(DatasetError, match=r"^Dataset file '.*' has unknown array "
                                               r"'x_valid'; allowed arrays are x_train, "
                                               r"y_train, x_test, y_test, num_classes$"):
            load_npz(_save(tmp_path, x_valid=np.zeros(2), **_arrays()))

    def test_length_mismatch(self, tmp_path):
        arrays = _arrays()
        arrays["y_train"] = arrays["y_train"][:-1]
        with pytest.raises(DatasetError, match=r"^Dataset file '.*': 'y_train' has 11 labels, "
                                               r"but 'x_train' has 12 samples$"):
            load_npz(_save(tmp_path, **arrays))

    def test_float_labels(self, tmp_path):
        arrays = _arrays()
        arrays["y_test"] = arrays["y_test"] + 0.5
        with pytest.raises(DatasetError, match=r"^Dataset file '.*': 'y_test' must hold integer "
                                               r"class indices, not float64$"):
            load_npz(_save(tmp_path, **arrays))

    def test_label_shape(self, tmp_path):
        arrays = _arrays()
        arrays["y_train"] = arrays["y_train"][:, None]
        with pytest.raises(DatasetError, match=r"^Dataset file '.*': 'y_train' must be a 1-D "
                                               r"array of class indices, not shape \(12, 1\)$"):
            load_npz(_save(tmp_path, **arrays))

    def test_negative_label(self, tmp_path):
        arrays = _arrays()
        arrays["y_train"][3] = -1
        with pytest.raises(DatasetError, match=r"^Dataset file '.*': 'y_train' holds negative "
                                               r"label -1$"):
            load_npz(_save(tmp_path, **arrays))

    def test_label_out_of_range(self, tmp_path):
        arrays = _arrays()
        arrays["y_test"][0] = 7
        with pytest.raises(DatasetError, match=r"^Dataset file '.*': 'y_test' holds label 7, "
                                               r"which is out of range for 3 classes \(labels "
                                               r"must be 0\.\.2\)$"):
            load_npz(_save(tmp_path, **arrays))

    def test_label_out_of_declared_range(self, tmp_path):
        with pytest.raises(DatasetError, match=r"^Dataset file '.*': 'y_train' holds label 2, "
                                               r"which is out of range for 2 classes"):
            load_npz(_save(tmp_path, num_classes=np.int64(2), **_arrays()))

    def test_bad_num_classes(self, tmp_path):
        with pytest.raises(DatasetError, match=r"^Dataset file '.*': 'num_classes' must be an "
                                               r"integer scalar, not float64 of shape \(\)$"):
            load_npz(_save(tmp_path, num_classes=np.float64(3), **_arrays()))

    def test_one_class(self, tmp_path):
        arrays = _arrays(classes=1)
        with pytest.raises(DatasetError, match=r"^Dataset file '.*': a classifier needs at "
                                               r"least 2 classes, not 1$"):
            load_npz(_save(tmp_path, **arrays))

    def test_nan(self, tmp_path):
        arrays = _arrays()
        arrays["x_train"][0, 0, 0, 0] = np.nan
        arrays["x_train"][1, 0, 0, 0] = np.inf
        with pytest.raises(DatasetError, match=r"^Dataset file '.*': 'x_train' holds 2 NaN or "
                                               r"infinite values$"):
            load_npz(_save(tmp_path, **arrays))

    def test_bad_rank(self, tmp_path):
        arrays = _arrays()
        arrays["x_test"] = arrays["x_test"][..., None]
        with pytest.raises(DatasetError, match=r"^Dataset file '.*': 'x_test' must have shape "
                                               r"\(N, C, H, W\), \(N, H, W\) or \(N, F\), not "
                                               r"\(6, 1, 4, 4, 1\)$"):
            load_npz(_save(tmp_path, **arrays))

    def test_sample_shape_mismatch(self, tmp_path):
        arrays = _arrays()
        arrays["x_test"] = arrays["x_test"][:, :, :3, :]
        with pytest.raises(DatasetError, match=r"^Dataset file '.*': 'x_train' samples have "
                                               r"shape \(1, 4, 4\), but 'x_test' samples have "
                                               r"shape \(1, 3, 4\)$"):
            load_npz(_save(tmp_path, **arrays))

    def test_empty(self, tmp_path):
        arrays = _arrays()
        arrays["x_test"] = arrays["x_test"][:0]
        arrays["y_test"] = arrays["y_test"][:0]
        with pytest.raises(DatasetError, match=r"^Dataset file '.*': 'x_test' holds no "
                                               r"samples$"):
            load_npz(_save(tmp_path, **arrays))

    def test_non_numeric(self, tmp_path):
        arrays = _arrays()
        arrays["x_train"] = np.full(arrays["x_train"].shape, "a")
        with pytest.raises(DatasetError, match=r"^Dataset file '.*': 'x_train' must be a "
                                               r"numeric array, not <U1$"):
            load_npz(_save(tmp_path, **arrays))

    def test_error_classes(self):
        assert issubclass(DatasetError, HwquantError)
        assert issubclass(DatasetError, ValueError)


class TestCalibration:
    def test_subset(self, digits):
        x = calibration_split(digits, n=64, seed=3)
        assert x.shape == (64, 1, 8, 8) and x.dtype == np.float32
        flat = digits.x_train.reshape(len(digits.x_train), -1)
        rows = {row.tobytes() for row in flat}
        assert all(row.tobytes() in rows for row in x.reshape(64, -1))

    def test_deterministic(self, digits):
        np.testing.assert_array_equal(calibration_split(digits, 32, seed=1),
                                      calibration_split(digits, 32, seed=1))
        assert not np.array_equal(calibration_split(digits, 32, seed=1),
                                  calibration_split(digits, 32, seed=2))

    def test_all(self, digits):
        np.testing.assert_array_equal(calibration_split(digits, 10_000), digits.x_train)

    @pytest.mark.parametrize("n", [0, -3, 2.5, True])
    def test_bad_size(self, digits, n):
        with pytest.raises(ValueError, match=r"^Calibration size must be a positive integer, "
                                             r"not .*$"):
            calibration_split(digits, n)
