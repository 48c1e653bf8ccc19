"""Shared fixtures. Session-scoped, so the digits set is loaded and the default CNN trained
once per test run; tests must not mutate what these return."""

from dataclasses import dataclass

import pytest


def pytest_collection_modifyitems(config, items):
    """Run the modules with the most Verilator (``sim``) and Yosys (``synth``) tests first.

    ``make test`` hands whole modules to the xdist workers in collection order; with the
    long simulation and synthesis modules last (alphabetically), one worker was left with
    them while the other had finished. Longest first leaves only short modules for the end.
    Within a module the order is unchanged, and the order does not change what a test
    checks."""
    weight, first = {}, {}
    for index, item in enumerate(items):
        module = item.nodeid.split("::", 1)[0]
        first.setdefault(module, index)
        heavy = any(item.get_closest_marker(name) for name in ("sim", "synth"))
        weight[module] = weight.get(module, 0) + int(heavy)
    items.sort(key=lambda item: (-weight[m := item.nodeid.split("::", 1)[0]], first[m]))


@dataclass(frozen=True)
class TrainedModel:
    """The default CNN trained on digits (``model`` is left in eval mode: do not train it)."""

    model: object
    accuracy: float
    seconds: float


@pytest.fixture(scope="session")
def digits():
    """The bundled digits :class:`hwquant.data.Dataset` (1347 train / 450 test, (1, 8, 8))."""
    from hwquant.data import load_dataset

    return load_dataset("digits")


@pytest.fixture(scope="session")
def trained_default(digits):
    """The default CNN trained with the default settings (seed 0): a :class:`TrainedModel`."""
    import time

    from hwquant.train import default_model, train

    model = default_model(digits.input_shape, digits.num_classes, seed=0)
    start = time.perf_counter()
    accuracy = train(model, digits, seed=0, progress=False)
    return TrainedModel(model=model, accuracy=accuracy, seconds=time.perf_counter() - start)


@pytest.fixture(scope="session")
def trained_default_pt2(trained_default, digits, tmp_path_factory):
    """Path of ``trained_default`` exported with :func:`hwquant.train.export_model`."""
    from hwquant.train import export_model

    path = tmp_path_factory.mktemp("trained_default") / "digits_cnn.pt2"
    export_model(trained_default.model, digits.x_test[:2], path)
    return path
