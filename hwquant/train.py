"""The bundled default CNN, deterministic training, and ``.pt2`` export.

Models leave this module as :mod:`torch.export` programs (``.pt2``), which load without the
class definitions; :mod:`hwquant.frontend` turns them into a float graph for the quantizer.
"""

from __future__ import annotations

import logging
import math
import os
import zipfile

import numpy as np
import torch
from torch import nn

from .errors import HwquantError, UnsupportedLayerError
from .frontend import FloatGraph

__all__ = [
    "DigitsCNN",
    "ModelError",
    "default_model",
    "train",
    "export_program",
    "export_model",
    "load_exported",
    "evaluate_float",
]


class ModelError(HwquantError, ValueError):
    """A model file is missing or corrupt, or a model cannot be exported."""


class DigitsCNN(nn.Module):
    """The bundled default CNN (two conv blocks, one classifier).

    ``conv1`` (3×3, 16 ch, pad 1) + BatchNorm + ReLU → 2×2 max pool → ``conv2`` (3×3, 32 ch,
    pad 1) + BatchNorm + ReLU → 2×2 max pool → flatten → ``fc`` (linear to the classes).
    The module names become the layer names of the hardware.
    """

    def __init__(self, in_shape=(1, 8, 8), num_classes=10):
        super().__init__()
        c, h, w = in_shape
        self.conv1 = nn.Conv2d(c, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(32)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(32 * (h // 4) * (w // 4), num_classes)

    def forward(self, x):
        x = self.pool1(self.relu1(self.bn1(self.conv1(x))))
        x = self.pool2(self.relu2(self.bn2(self.conv2(x))))
        return self.fc(self.flatten(x))


class _DefaultMLP(nn.Module):
    """Default model for vector inputs: ``fc1`` + BatchNorm + ReLU → ``fc2``."""

    def __init__(self, features, num_classes, hidden=64):
        super().__init__()
        self.fc1 = nn.Linear(features, hidden)
        self.bn1 = nn.BatchNorm1d(hidden)
        self.relu1 = nn.ReLU()
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x):
        return self.fc2(self.relu1(self.bn1(self.fc1(x))))


def default_model(in_shape=(1, 8, 8), num_classes=10, *, seed: int | None = 0) -> nn.Module:
    """The bundled default model for inputs of shape ``in_shape``.

    A :class:`DigitsCNN` for ``(C, H, W)`` inputs (H and W at least 4; the classifier's
    fan-in is ``32 * (H // 4) * (W // 4)``); a two-layer MLP for ``(F,)`` vectors.
    Initialised from ``seed`` without touching the global RNG (``None``: from the global RNG).

    Raises
    ------
    ValueError
        If the shape is not ``(C, H, W)`` with ``H, W >= 4`` or ``(F,)``, or there are fewer
        than 2 classes.
    """
    in_shape = tuple(int(v) for v in in_shape)
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"Number of classes must be an integer of at least 2, "
                         f"not {num_classes!r}")
    if len(in_shape) == 3:
        if min(in_shape) < 1 or in_shape[1] < 4 or in_shape[2] < 4:
            raise ValueError(f"Default CNN input must be (C, H, W) with H and W at least 4, "
                             f"not {in_shape}")
        cls, args = DigitsCNN, (in_shape, num_classes)
    elif len(in_shape) == 1 and in_shape[0] >= 1:
        cls, args = _DefaultMLP, (in_shape[0], num_classes)
    else:
        raise ValueError(f"Default model input must be (C, H, W) or (F,), not {in_shape}")
    if seed is None:
        return cls(*args)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return cls(*args)


def _as_tensor(x):
    if isinstance(x, torch.Tensor):
        return x.detach().to(torch.float32)
    return torch.from_numpy(np.array(x, dtype=np.float32))  # a writable copy


def train(model: nn.Module, dataset, epochs: int = 30, seed: int = 0, lr: float = 3e-3,
          batch_size: int = 64, progress: bool = True, weight_decay: float = 1e-4,
          freeze=None, history=None) -> float:
    """Train ``model`` on ``dataset`` in place; return its float test accuracy (0..1).

    Adam with a cosine learning-rate schedule over all steps, cross-entropy loss, shuffled
    mini-batches. Deterministic for a given ``seed`` (the shuffle order and any dropout are
    drawn from it; the global RNG state is restored afterwards) on a given machine; runs on
    one CPU thread (for a model this small, more threads only add synchronisation).

    Parameters
    ----------
    model : torch.nn.Module
        Left in eval mode on return.
    dataset : hwquant.data.Dataset
    epochs, batch_size : int
    seed : int
    lr, weight_decay : float
        Peak learning rate and Adam weight decay.
    progress : bool
        Show a tqdm progress bar with the running loss.
    freeze : :class:`hwquant.templates.TemplateFreeze`, optional
        Weights excluded from every update (template kernels): their gradient is zeroed
        before each step and their values restored after it.
    history : list, optional
        Appended with one ``{"epoch", "loss", "test_accuracy"}`` per epoch (the epoch's mean
        training loss and the float test accuracy after it, evaluated without touching the
        random state, so the training is the same with or without it).

    Raises
    ------
    ValueError
        If ``epochs`` or ``batch_size`` is not a positive integer or ``lr`` is not positive.
    """
    from tqdm.auto import tqdm

    for what, value in (("Epoch count", epochs), ("Batch size", batch_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{what} must be a positive integer, not {value!r}")
    if not lr > 0:
        raise ValueError(f"Learning rate must be positive, not {lr!r}")

    x = _as_tensor(dataset.x_train)
    y = torch.from_numpy(np.array(dataset.y_train, dtype=np.int64))
    steps_per_epoch = math.ceil(len(x) / batch_size)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: threads only add synchronisation
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            gen = torch.Generator().manual_seed(seed)
            opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * steps_per_epoch)
            loss_fn = nn.CrossEntropyLoss()
            bar = tqdm(range(epochs), desc=f"train {dataset.name}", unit="epoch",
                       disable=not progress, leave=False)
            model.train()
            for _ in bar:
                order = torch.randperm(len(x), generator=gen)
                total = 0.0
                for start in range(0, len(x), batch_size):
                    idx = order[start:start + batch_size]
                    if len(idx) < 2 and len(x) >= 2:
                        continue  # BatchNorm cannot train on a single sample
                    opt.zero_grad()
                    loss = loss_fn(model(x[idx]), y[idx])
                    loss.backward()
                    if freeze is not None:
                        freeze.mask_grads()
                    opt.step()
                    if freeze is not None:
                        freeze.restore()
                    sched.step()
                    total += loss.item() * len(idx)
                bar.set_postfix(loss=f"{total / len(x):.4f}")
                if history is not None:
                    acc = evaluate_float(model, dataset.x_test, dataset.y_test)
                    model.train()
                    history.append({"epoch": len(history) + 1, "loss": total / len(x),
                                    "test_accuracy": acc})
            bar.close()
    finally:
        model.eval()
        torch.set_num_threads(threads)
    return evaluate_float(model, dataset.x_test, dataset.y_test)


def _example_batch(example_input):
    x = _as_tensor(example_input)
    if x.ndim < 2 or len(x) == 0:
        raise ValueError(f"Example input must be a non-empty batch (N, ...), not shape "
                         f"{tuple(x.shape)}")
    # A batch of 1 makes torch.export specialise the batch axis; use at least 2.
    return torch.cat([x, x]) if len(x) == 1 else x


def export_program(module, example_input):
    """``torch.export.export`` of ``module`` in eval mode, with a dynamic batch axis.

    The module's train/eval mode is restored afterwards.

    Raises
    ------
    UnsupportedLayerError
        If the model bakes in its batch size (the batch size must not matter).
    ModelError
        If torch cannot export the model.
    """
    x = _example_batch(example_input)
    was_training = module.training
    module.eval()
    try:
        return torch.export.export(module, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    except Exception as exc:  # torch raises many types here; keep the first line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "Constraints violated" in first and "batch" in first:
            raise UnsupportedLayerError(
                f"Model {type(module).__name__} depends on its batch size, which must not "
                f"matter (flatten with x.flatten(1) or x.view(x.size(0), -1))") from None
        raise ModelError(f"Model {type(module).__name__} cannot be exported with "
                         f"torch.export: {first}") from exc
    finally:
        module.train(was_training)


def load_exported(path):
    """Load a ``.pt2`` file written by ``torch.export.save`` (``hwquant train`` writes one).

    Raises
    ------
    ModelError
        If the file is missing, a directory, or not a torch.export program.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ModelError(f"Model file '{path}' does not exist")
    if not os.path.isfile(path):
        raise ModelError(f"Model file '{path}' is not a file")
    if not zipfile.is_zipfile(path):
        raise ModelError(f"Model file '{path}' is not a torch.export program (.pt2): it is not "
                         f"a zip archive (truncated or of another format)")
    logger = logging.getLogger("torch.export")
    level = logger.level
    logger.setLevel(logging.CRITICAL)  # torch logs a traceback before raising
    try:
        return torch.export.load(path)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a foreign file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"Model file '{path}' is not a torch.export program (.pt2); save "
                         f"models with torch.export.save: {first}") from None
    finally:
        logger.setLevel(level)


def export_model(model: nn.Module, example_input, path) -> torch.export.ExportedProgram:
    """Export ``model`` (in eval mode) with :func:`torch.export.export` and save it to ``path``.

    The batch axis is exported as dynamic (see :func:`export_program`), so the ``.pt2`` runs
    on any batch size. ``example_input`` is a batch ``(N, ...)`` with ``N >= 1``. Returns the
    program.

    Raises
    ------
    hwquant.errors.UnsupportedLayerError
        If the model depends on its batch size.
    ModelError
        If torch cannot export the model.
    """
    ep = export_program(model, example_input)
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    torch.export.save(ep, path)
    return ep


def evaluate_float(model, x, y, *, batch_size: int = 512) -> float:
    """Top-1 accuracy (0..1) of a float model on inputs ``x`` and integer labels ``y``.

    ``model`` is a :class:`torch.nn.Module` (evaluated in eval mode and restored), a
    :class:`torch.export.ExportedProgram`, or a :class:`hwquant.frontend.FloatGraph`.
    """
    x = np.array(x.detach().numpy() if isinstance(x, torch.Tensor) else x, dtype=np.float32)
    y = np.asarray(y.numpy() if isinstance(y, torch.Tensor) else y, dtype=np.int64)
    if len(x) != len(y):
        raise ValueError(f"Inputs and labels must have the same length, not {len(x)} and "
                         f"{len(y)}")
    if len(x) == 0:
        raise ValueError("Cannot evaluate on an empty set")
    if isinstance(model, FloatGraph):
        out = model.run(x)[model.output.name]
        return float(np.mean(np.argmax(out, axis=1) == y))
    was_training = None
    if isinstance(model, torch.export.ExportedProgram):
        fn = model.module()
    elif isinstance(model, nn.Module):
        was_training = model.training
        model.eval()
        fn = model
    else:
        raise TypeError(f"Model must be a torch.nn.Module, an ExportedProgram or a FloatGraph, "
                        f"not {type(model).__name__}")
    correct = 0
    try:
        with torch.no_grad():
            for start in range(0, len(x), batch_size):
                out = fn(torch.from_numpy(x[start:start + batch_size]))
                correct += int((out.argmax(dim=1).numpy() == y[start:start + batch_size]).sum())
    finally:
        if was_training:
            model.train()
    return correct / len(x)


def plot_learning_curves(curves: dict, path) -> None:
    """Training loss and float test accuracy per epoch, one line per run (``curves``:
    ``{label: history}`` with the ``history`` rows of :func:`train`), as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(9, 3.6))
    for i, (label, rows) in enumerate(curves.items()):
        epochs = [r["epoch"] for r in rows]
        loss_ax.plot(epochs, [r["loss"] for r in rows], color=f"C{i}", label=label)
        acc_ax.plot(epochs, [100 * r["test_accuracy"] for r in rows], color=f"C{i}",
                    label=label)
    loss_ax.set_yscale("log")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("training loss")
    acc_ax.set_xlabel("epoch")
    acc_ax.set_ylabel("test accuracy (%)")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Learning curves")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
