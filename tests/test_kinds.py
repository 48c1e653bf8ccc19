# amaranth: UnusedElaboratable=no
"""The registry of arithmetic kinds (:mod:`hwquant.kinds`) is complete, its faces agree, and
the golden model stays free of Amaranth and torch (directly and through its imports)."""

import ast
import dataclasses
import importlib
import inspect
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from amaranth.lib import wiring

from hwquant import ir, kinds

sys.path.insert(0, str(Path(__file__).parent))
from enginesim import all_inputs, simulate_engine

HWQUANT = Path(__file__).resolve().parent.parent / "hwquant"
FORBIDDEN = ("amaranth", "torch")


def test_every_encoding_has_a_kind():
    assert set(kinds.KINDS) == set(ir.ENCODINGS)
    for encoding, kind in kinds.KINDS.items():
        assert kind.encoding == encoding
        assert kind.golden == f"hwquant.golden.{encoding}"
        assert kind.hw == f"hwquant.hw.{encoding}"
        assert kind.estimate == f"hwquant.estimate.{encoding}"
        assert kind.description
        assert kind.data is ir.KIND_DATA[encoding]


@pytest.mark.parametrize("encoding", ir.ENCODINGS)
def test_kind_data_face(encoding):
    """Every kind has a frozen, default-constructible kind-data class that validates layers;
    its fields are what ``hwquant.hwq`` serialises generically."""
    cls = kinds.KINDS[encoding].data
    assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen
    assert list(inspect.signature(cls.check).parameters) == ["self", "layer"]
    default = cls()
    with pytest.raises(dataclasses.FrozenInstanceError):
        object.__new__(cls).__setattr__("x", 1)
    assert default == cls()


@pytest.mark.parametrize("encoding", ir.ENCODINGS)
def test_golden_face(encoding):
    dot = importlib.import_module(kinds.KINDS[encoding].golden).dot
    assert callable(dot)
    assert list(inspect.signature(dot).parameters) == ["layer", "cols"]


@pytest.mark.parametrize("encoding", ir.ENCODINGS)
def test_hw_face(encoding):
    module = importlib.import_module(kinds.KINDS[encoding].hw)
    assert issubclass(module.DotEngine, wiring.Component)
    for name in ("options", "encode_weights", "word_bits", "value_range"):
        assert callable(getattr(module.DotEngine, name)), name


@pytest.mark.parametrize("encoding", ir.ENCODINGS)
def test_engine_face(encoding):
    """Every kind names an MVU-level engine implementing the engine contract."""
    from hwquant.hw.engine import Engine

    module, cls = kinds.KINDS[encoding].engine.split(":")
    engine = getattr(importlib.import_module(module), cls)
    assert issubclass(engine, Engine)
    for name in ("parts_per_pe", "shared_count", "word_bits", "encode", "part_ranges",
                 "shared_ranges", "combine_ranges", "combine"):
        assert callable(getattr(engine, name)), name


@pytest.mark.parametrize("encoding", ir.ENCODINGS)
def test_estimate_face(encoding):
    name = kinds.KINDS[encoding].estimate
    module = pytest.importorskip(name, reason=f"{name} (the cost model) is not written yet")
    assert callable(module.resources)


#: Per encoding, a row of 4-bit weights none of which is free (zero or a positive power of
#: two for ``fixed``, zero for ``pow2``): every product needs real logic.
COSTLY_WEIGHTS = {
    "fixed": [3, -5, 7, -3, 5, 6, -7, 3, 5, -6, 7, 3],
    "pow2": [1, -2, 4, -8, 2, -1, 8, -4, 1, 2, -8, 4],
    "binary": [1, -1, -1, 1, 1, -1, 1, 1, -1, -1, 1, -1],
    "bitmask": [3, -5, 7, -3, 5, 6, -7, 3, 5, -6, 7, 3],
    "template": None,  # conv layers only: tests/test_template.py
    "bdcnn": [3, -5, 7, -3, 5, 1, -7, 3, 5, -1, 7, 3],  # signed sums of (4, 2, 1)
}

#: Kind data the rows of :data:`COSTLY_WEIGHTS` need beyond their kind's default.
COSTLY_KIND_DATA = {"bdcnn": ir.BdcnnData(basis=3, qbits=4, coef_bits=4,
                                          coefficients=((4, 2, 1),) * 3)}


def test_costly_weights_cover_every_encoding():
    assert set(COSTLY_WEIGHTS) == set(ir.ENCODINGS)


@pytest.mark.parametrize("encoding", ir.ENCODINGS)
@pytest.mark.parametrize("fold", [(3, 12), (1, 1), (3, 4)], ids=["unrolled", "serial", "both"])
def test_estimate_face_is_never_silently_zero(encoding, fold):
    """A layer whose products need real logic costs something on every family, and the cost
    model's cycles agree with the hardware plan."""
    name = kinds.KINDS[encoding].estimate
    module = pytest.importorskip(name, reason=f"{name} (the cost model) is not written yet")
    if COSTLY_WEIGHTS[encoding] is None:
        pytest.skip(f"{encoding} is a conv-only kind; its own tests cover this")
    from hwquant.estimate.resources import FAMILIES
    from hwquant.plan import plan_network

    fmt = ir.ActFormat(4, False, 0)
    w = np.array([COSTLY_WEIGHTS[encoding]] * 3)
    wbits = 1 if encoding == "binary" else 4
    fc = ir.Linear("fc", ("input",), fmt, w, wbits, 0, np.zeros(3), None,
                   ir.ActFormat(16, True, 0),
                   encoding=encoding, fold=ir.Fold(*fold),
                   kind_data=COSTLY_KIND_DATA.get(encoding))
    for family in FAMILIES:
        cost = module.resources(fc, family)
        assert cost.lut + cost.dsp > 0, family
    net = ir.Network("n", (12,), fmt, (fc,))
    assert plan_network(net).layer_cycles() == {"fc": module.cycles(fc)}


def test_lookups_by_layer():
    layer = types.SimpleNamespace(name="fc", encoding="fixed")
    assert kinds.kind_of(layer) is kinds.KINDS["fixed"]
    assert kinds.golden_dot(layer) is importlib.import_module("hwquant.golden.fixed").dot
    assert kinds.hw_dot_engine(layer) is importlib.import_module("hwquant.hw.fixed").DotEngine
    unknown = types.SimpleNamespace(name="fc", encoding="ternary")
    with pytest.raises(ValueError, match=r"^Layer 'fc': no arithmetic kind for encoding "
                                         r"'ternary'; known: fixed, pow2, binary, bitmask, template, "
                                         r"bdcnn$"):
        kinds.kind_of(unknown)


def _linear(weights, fmt):
    w = np.asarray(weights)
    return ir.Linear("fc", ("input",), fmt, w, 4, 0, np.zeros(len(w)), None,
                     ir.ActFormat(24, True, 0))


@pytest.mark.parametrize("fmt", [ir.ActFormat(3, True, 0), ir.ActFormat(3, False, 0)],
                         ids=["signed", "unsigned"])
@pytest.mark.parametrize("constant", [True, False], ids=["constant", "port"])
def test_hw_dot_engine_equals_golden_dot(fmt, constant):
    """The two faces of the fixed kind compute the same dot product: every input of three
    3-bit lanes, weights at the extremes and zero."""
    weights = [-8, 0, 7]
    layer = _linear([weights], fmt)
    engine_cls = kinds.hw_dot_engine(layer)
    dut = engine_cls(simd=3, x_format=fmt, weight_bits=4, weights=weights if constant else None)
    xs = all_inputs(fmt, 3)
    got = simulate_engine(dut, xs, None if constant else [weights])
    np.testing.assert_array_equal(got, kinds.golden_dot(layer)(layer, xs)[:, 0])
    lo, hi = engine_cls.value_range(weights if constant else None, simd=3, x_format=fmt,
                                    weight_bits=4)
    assert lo <= min(got) and max(got) <= hi


# -- the golden model imports neither Amaranth nor torch ------------------------------------

def _module_path(name):
    rel = Path(*name.split(".")[1:])
    pkg = HWQUANT / rel / "__init__.py"
    return pkg if pkg.exists() else HWQUANT / rel.with_suffix(".py")


def _imports(path, package, *, top_level_only):
    """Absolute names of the modules ``path`` imports (``package``: its package, for
    relative imports). With ``top_level_only``, imports inside functions are skipped."""
    tree = ast.parse(path.read_text(), str(path))
    nodes = []
    if top_level_only:
        todo = list(tree.body)
        while todo:  # module level, including inside if/try blocks, not inside defs
            node = todo.pop()
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            nodes.append(node)
            todo += [n for n in ast.iter_child_nodes(node) if isinstance(n, ast.stmt)]
    else:
        nodes = list(ast.walk(tree))
    names = []
    for node in nodes:
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
                names.append(mod)
                # "from . import ir" imports a submodule.
                names += [f"{mod}.{alias.name}" for alias in node.names
                          if _module_path(f"{mod}.{alias.name}").exists()]
            else:
                names.append(node.module)
    return names


def _package_of(name, path):
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


GOLDEN_FILES = sorted((HWQUANT / "golden").glob("*.py"))


@pytest.mark.parametrize("path", GOLDEN_FILES, ids=lambda p: p.name)
def test_golden_files_import_neither_amaranth_nor_torch(path):
    name = "hwquant.golden" + ("" if path.stem == "__init__" else f".{path.stem}")
    for mod in _imports(path, _package_of(name, path), top_level_only=False):
        assert mod.split(".")[0] not in FORBIDDEN, f"{path.name} imports {mod}"


def test_golden_import_closure_is_clean():
    """Everything ``hwquant.golden`` imports at module level, transitively (and the parent
    packages Python imports first), stays free of amaranth and torch."""
    todo, seen = ["hwquant.golden"] + [f"hwquant.golden.{p.stem}" for p in GOLDEN_FILES
                                       if p.stem != "__init__"], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        path = _module_path(name)
        for mod in _imports(path, _package_of(name, path), top_level_only=True):
            assert mod.split(".")[0] not in FORBIDDEN, f"{name} imports {mod}"
            if mod.split(".")[0] == "hwquant" and _module_path(mod).exists():
                todo.append(mod)
    assert {"hwquant.golden.network", "hwquant.kinds", "hwquant.ir"} <= seen


def _fresh_python(code):
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, cwd=HWQUANT.parent)
    return result.stdout.split()


def test_importing_golden_loads_neither_amaranth_nor_torch():
    out = _fresh_python("import hwquant.golden, sys; "
                        "print('amaranth' in sys.modules, 'torch' in sys.modules)")
    assert out == ["False", "False"]


def test_running_golden_loads_neither_amaranth_nor_torch():
    """Running a network pulls in the golden face of its kind lazily (hwquant.kinds): still
    no amaranth or torch."""
    code = """
import sys
import numpy as np
from hwquant import golden, ir
fmt = ir.ActFormat(4, False, 0)
fc = ir.Linear("fc", ("input",), fmt, np.ones((2, 3)), 2, 0, np.zeros(2), None,
               ir.ActFormat(8, True, 0))
net = ir.Network("n", (3,), fmt, (fc,))
print(golden.predict(net, np.array([[1, 2, 3]]))[0], 'hwquant.golden.fixed' in sys.modules)
print('amaranth' in sys.modules, 'torch' in sys.modules)
"""
    assert _fresh_python(code) == ["0", "True", "False", "False"]
