"""Datasets: the bundled 8×8 digits and user data from a strictly validated ``.npz`` file.

A :class:`Dataset` holds float32 images ``(N, C, H, W)`` (or vectors ``(N, F)``) and int64
labels for a fixed train/test split. Nothing is downloaded: the digits come with scikit-learn,
everything else comes as a ``.npz`` file with the arrays ``x_train``, ``y_train``, ``x_test``
and ``y_test`` (and optionally a scalar ``num_classes``).
"""

from __future__ import annotations

import os
import zipfile
import zlib
from dataclasses import dataclass

import numpy as np

from .errors import HwquantError

__all__ = [
    "Dataset",
    "DatasetError",
    "DATASETS",
    "NPZ_REQUIRED_KEYS",
    "NPZ_OPTIONAL_KEYS",
    "load_dataset",
    "load_digits",
    "load_npz",
    "calibration_split",
    "infer_scale_frac",
]

#: Names accepted by :func:`load_dataset` (user data comes as ``path=F.npz``).
DATASETS = ("digits",)

#: Arrays every ``.npz`` dataset must hold.
NPZ_REQUIRED_KEYS = ("x_train", "y_train", "x_test", "y_test")
#: Arrays a ``.npz`` dataset may hold in addition.
NPZ_OPTIONAL_KEYS = ("num_classes",)


class DatasetError(HwquantError, ValueError):
    """A dataset is unknown, missing, corrupt or inconsistent."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled train/test split.

    Parameters
    ----------
    x_train, x_test : numpy.ndarray
        float32 inputs, ``(N, C, H, W)`` feature maps or ``(N, F)`` vectors.
    y_train, y_test : numpy.ndarray
        int64 class indices in ``0 .. num_classes - 1``.
    name : str
        ``"digits"`` or the stem of the ``.npz`` file.
    num_classes : int
        Number of classes (the width of the logits).
    input_scale_frac : int or None
        Hint for the input format: every input value is an exact multiple of
        ``2**-input_scale_frac`` (4 for digits, whose pixels are ``0..16 / 16``); ``None``
        when the inputs are not on such a grid.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    name: str
    num_classes: int
    input_scale_frac: int | None = None

    def __post_init__(self):
        for key in NPZ_REQUIRED_KEYS:
            arr = np.array(getattr(self, key), copy=True)
            arr.setflags(write=False)
            object.__setattr__(self, key, arr)

    @property
    def input_shape(self) -> tuple:
        """Shape of one input without the batch axis: ``(C, H, W)`` or ``(F,)``."""
        return tuple(int(v) for v in self.x_train.shape[1:])

    def __repr__(self):
        return (f"Dataset(name={self.name!r}, input_shape={self.input_shape}, "
                f"num_classes={self.num_classes}, train={len(self.x_train)}, "
                f"test={len(self.x_test)}, input_scale_frac={self.input_scale_frac})")


def infer_scale_frac(x, max_frac: int = 16) -> int | None:
    """Smallest ``f`` in ``0 .. max_frac`` with every value of ``x`` a multiple of ``2**-f``.

    Returns ``None`` if there is none (the inputs are not on a power-of-two grid).
    """
    x = np.asarray(x, dtype=np.float64)
    for frac in range(max_frac + 1):
        scaled = x * (1 << frac)
        if np.array_equal(scaled, np.round(scaled)):
            return frac
    return None


def load_digits() -> Dataset:
    """The 8×8 digits of scikit-learn: 1347 training and 450 test images ``(1, 8, 8)``.

    Pixels ``0..16`` are divided by 16, so every value is an exact multiple of ``2**-4``.
    The split is stratified and fixed (``test_size=0.25``, ``random_state=0``).
    """
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_load_digits()
    x = (bunch.images.astype(np.float32) / np.float32(16.0))[:, None, :, :]
    y = bunch.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0,
                                                        stratify=y)
    return Dataset(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
                   name="digits", num_classes=10, input_scale_frac=4)


def _check_inputs(path, key, x):
    if x.dtype == object or not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise DatasetError(f"Dataset file '{path}': '{key}' must be a numeric array, "
                           f"not {x.dtype}")
    if np.issubdtype(x.dtype, np.complexfloating):
        raise DatasetError(f"Dataset file '{path}': '{key}' must be real, not {x.dtype}")
    if x.ndim == 3:
        x = x[:, None, :, :]
    elif x.ndim not in (2, 4):
        raise DatasetError(f"Dataset file '{path}': '{key}' must have shape (N, C, H, W), "
                           f"(N, H, W) or (N, F), not {x.shape}")
    if len(x) == 0:
        raise DatasetError(f"Dataset file '{path}': '{key}' holds no samples")
    if 0 in x.shape[1:]:
        raise DatasetError(f"Dataset file '{path}': '{key}' has an empty sample shape "
                           f"{x.shape[1:]}")
    x = x.astype(np.float32)
    if not np.all(np.isfinite(x)):
        bad = int(np.count_nonzero(~np.isfinite(x)))
        raise DatasetError(f"Dataset file '{path}': '{key}' holds {bad} NaN or infinite "
                           f"value{'s' if bad != 1 else ''}")
    return x


def _check_labels(path, key, y, n):
    if y.ndim != 1:
        raise DatasetError(f"Dataset file '{path}': '{key}' must be a 1-D array of class "
                           f"indices, not shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise DatasetError(f"Dataset file '{path}': '{key}' must hold integer class indices, "
                           f"not {y.dtype}")
    if len(y) != n:
        xkey = "x" + key[1:]
        raise DatasetError(f"Dataset file '{path}': '{key}' has {len(y)} labels, but "
                           f"'{xkey}' has {n} samples")
    if y.min() < 0:
        raise DatasetError(f"Dataset file '{path}': '{key}' holds negative label "
                           f"{int(y.min())}")
    return y.astype(np.int64)


def load_npz(path) -> Dataset:
    """Load and validate a user dataset from a ``.npz`` file.

    Parameters
    ----------
    path : str or os.PathLike
        A NumPy archive holding ``x_train``, ``y_train``, ``x_test``, ``y_test`` and optionally
        ``num_classes``. Inputs are ``(N, C, H, W)``, ``(N, H, W)`` (a channel axis is added)
        or ``(N, F)``; labels are integer class indices.

    Raises
    ------
    DatasetError
        If the file is missing or not an archive, a required array is missing, an unknown
        array is present, or the arrays are inconsistent (lengths, shapes, dtypes, NaNs,
        labels out of range).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DatasetError(f"Dataset file '{path}' does not exist")
    if not os.path.isfile(path):
        raise DatasetError(f"Dataset file '{path}' is not a file")
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except OSError as exc:
        raise DatasetError(f"Dataset file '{path}' cannot be read: {exc.strerror}") from None
    if magic[:4] not in (b"PK\x03\x04", b"PK\x05\x06") and magic != b"\x93NUMPY":
        kind = "it is empty" if not magic else "it is not a zip archive"
        raise DatasetError(f"Dataset file '{path}' is not a .npz archive ({kind}); save one "
                           f"with numpy.savez holding {', '.join(NPZ_REQUIRED_KEYS)}")
    try:
        # Opened here, so that the file is closed whatever NumPy makes of its contents.
        with open(path, "rb") as fileobj:
            archive = np.load(fileobj, allow_pickle=False)
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise DatasetError(f"Dataset file '{path}' is a single array, not a .npz "
                                   f"archive with {', '.join(NPZ_REQUIRED_KEYS)}")
            with archive:
                keys = set(archive.files)
                for key in NPZ_REQUIRED_KEYS:
                    if key not in keys:
                        raise DatasetError(f"Dataset file '{path}' has no array '{key}'; "
                                           f"required arrays are "
                                           f"{', '.join(NPZ_REQUIRED_KEYS)}")
                unknown = sorted(keys - set(NPZ_REQUIRED_KEYS) - set(NPZ_OPTIONAL_KEYS))
                if unknown:
                    raise DatasetError(f"Dataset file '{path}' has unknown array "
                                       f"'{unknown[0]}'; allowed arrays are "
                                       f"{', '.join(NPZ_REQUIRED_KEYS + NPZ_OPTIONAL_KEYS)}")
                arrays = {key: archive[key] for key in keys}
    except DatasetError:
        raise
    except (OSError, ValueError, EOFError, KeyError, RuntimeError, NotImplementedError,
            zipfile.BadZipFile, zlib.error) as exc:
        raise DatasetError(f"Dataset file '{path}' is not a readable .npz archive: "
                           f"{exc}") from None

    x_train = _check_inputs(path, "x_train", arrays["x_train"])
    x_test = _check_inputs(path, "x_test", arrays["x_test"])
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DatasetError(f"Dataset file '{path}': 'x_train' samples have shape "
                           f"{x_train.shape[1:]}, but 'x_test' samples have shape "
                           f"{x_test.shape[1:]}")
    y_train = _check_labels(path, "y_train", arrays["y_train"], len(x_train))
    y_test = _check_labels(path, "y_test", arrays["y_test"], len(x_test))

    if "num_classes" in arrays:
        nc = arrays["num_classes"]
        if nc.shape != () or not np.issubdtype(nc.dtype, np.integer):
            raise DatasetError(f"Dataset file '{path}': 'num_classes' must be an integer "
                               f"scalar, not {nc.dtype} of shape {nc.shape}")
        num_classes = int(nc)
    else:
        num_classes = int(y_train.max()) + 1
    if num_classes < 2:
        raise DatasetError(f"Dataset file '{path}': a classifier needs at least 2 classes, "
                           f"not {num_classes}")
    for key, y in (("y_train", y_train), ("y_test", y_test)):
        if y.max() >= num_classes:
            raise DatasetError(f"Dataset file '{path}': '{key}' holds label {int(y.max())}, "
                               f"which is out of range for {num_classes} classes "
                               f"(labels must be 0..{num_classes - 1})")

    name = os.path.splitext(os.path.basename(path))[0] or "data"
    frac = infer_scale_frac(np.concatenate([x_train.ravel(), x_test.ravel()]))
    return Dataset(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, name=name,
                   num_classes=num_classes, input_scale_frac=frac)


def load_dataset(name: str | None = "digits", path=None) -> Dataset:
    """Load a bundled dataset by ``name``, or a user dataset from ``path`` (``.npz``).

    ``path`` takes precedence over ``name``.

    Raises
    ------
    DatasetError
        If neither is given, the name is unknown, or the file is invalid (see
        :func:`load_npz`).
    """
    if path is not None:
        return load_npz(path)
    if name is None:
        raise DatasetError("No dataset given; name one of " + ", ".join(DATASETS) +
                           " or pass a .npz file")
    if name == "digits":
        return load_digits()
    raise DatasetError(f"Unknown dataset {name!r}; known datasets are {', '.join(DATASETS)} "
                       f"(pass your own data as a .npz file)")


def calibration_split(dataset: Dataset, n: int = 256, seed: int = 0) -> np.ndarray:
    """A random subset of ``n`` training inputs for activation calibration (float32).

    Drawn without replacement with ``numpy.random.default_rng(seed)``; all training inputs
    (in their original order) if ``n`` is at least their number.

    Raises
    ------
    ValueError
        If ``n`` is not a positive integer.
    """
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ValueError(f"Calibration size must be a positive integer, not {n!r}")
    total = len(dataset.x_train)
    if n >= total:
        return np.array(dataset.x_train, copy=True)
    idx = np.sort(np.random.default_rng(seed).choice(total, size=int(n), replace=False))
    return np.array(dataset.x_train[idx], copy=True)
