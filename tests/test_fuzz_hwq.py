"""Property tests of the ``.hwq`` reader and the CLI option parsers (hypothesis).

The reader never raises anything but :class:`hwquant.errors.HwqFormatError`: for byte flips,
truncations, header values of another type or out of range, arrays of another dtype or shape.
What it does accept is a valid network that re-serialises to the same bytes. Examples are
derandomized (the same on every run); the ``slow`` variants run ten times as many.
"""

import io
import json
import os
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwquant import cli, hwq
from hwquant.errors import HwqFormatError, HwquantError
from hwquant.fold import apply_folding

sys.path.insert(0, os.path.dirname(__file__))
from netbuilders import rich_network

FAST = settings(max_examples=100, deadline=None, derandomize=True, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(FAST, max_examples=1000)

NET = rich_network()
DATA = hwq.dumps(NET)


def members(data=DATA):
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return json.loads(str(arrays.pop("header"))), arrays


def pack(header, arrays):
    buf = io.BytesIO()
    np.savez_compressed(buf, header=np.array(json.dumps(header)), **arrays)
    return buf.getvalue()


def accepts_or_refuses(data):
    """The property: HwqFormatError, or a network whose bytes are a fixed point."""
    try:
        net = hwq.loads(data)
    except HwqFormatError:
        return None
    again = hwq.dumps(net)
    assert hwq.dumps(hwq.loads(again)) == again
    return again


def test_dumps_is_deterministic():
    assert hwq.dumps(rich_network()) == DATA == hwq.dumps(hwq.loads(DATA))


# -- bytes ---------------------------------------------------------------------------------------

flips = st.lists(st.tuples(st.integers(0, len(DATA) - 1), st.integers(1, 255)), min_size=1,
                 max_size=4)


def _flip(edits):
    blob = bytearray(DATA)
    for i, x in edits:
        blob[i] ^= x
    return bytes(blob)


def check_flips(edits):
    """A flipped file that still loads is the same network (the zip CRCs guard the data)."""
    again = accepts_or_refuses(_flip(edits))
    assert again is None or again == DATA


@FAST
@given(flips)
def test_byte_flips(edits):
    check_flips(edits)


@pytest.mark.slow
@SLOW
@given(flips)
def test_byte_flips_slow(edits):
    check_flips(edits)


@FAST
@given(st.integers(0, len(DATA) - 1))
def test_truncations(n):
    with pytest.raises(HwqFormatError):
        hwq.loads(DATA[:n])


# -- header values of another type, out of range -------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.integers(-3, 70)
    | st.floats(allow_nan=False) | st.text(max_size=6)
    | st.sampled_from(["c1", "input", "fixed", "pow2", "Requant", "c1.weight"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["bits", "signed", "frac", "array", "type", "fields", "x"]), inner,
        max_size=3),
    max_leaves=6)


def _paths(value, prefix=()):
    """Every (path, value) inside a JSON value."""
    yield prefix, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*prefix, i))


HEADER, ARRAYS = members()
PATHS = [p for p, _ in _paths(HEADER) if p and p[0] != "metadata"]


def _set(header, path, value):
    header = json.loads(json.dumps(header))
    node = header
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return header


def check_header_edits(edits):
    header = HEADER
    for path, value in edits:
        try:
            header = _set(header, path, value)
        except (KeyError, IndexError, TypeError):
            pass  # an earlier edit removed the path
    accepts_or_refuses(pack(header, ARRAYS))


header_edits = st.lists(st.tuples(st.sampled_from(PATHS), json_values), min_size=1,
                        max_size=3)


@FAST
@given(header_edits)
def test_header_edits(edits):
    check_header_edits(edits)


@pytest.mark.slow
@SLOW
@given(header_edits)
def test_header_edits_slow(edits):
    check_header_edits(edits)


@FAST
@given(st.sampled_from(PATHS))
def test_header_deletions(path):
    header = json.loads(json.dumps(HEADER))
    node = header
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    accepts_or_refuses(pack(header, ARRAYS))


# -- arrays of another dtype, shape or range -----------------------------------------------------

DTYPES = ["int8", "uint8", "int32", "uint64", "int64", "float64", "float32", "bool",
          "complex64", "U3", "S2", "datetime64[s]"]


@st.composite
def array_edits(draw):
    key = draw(st.sampled_from(sorted(ARRAYS)))
    old = ARRAYS[key]
    shape = draw(st.sampled_from([old.shape, (), (0,), (old.size,), (*old.shape, 1), (2, 2)]))
    dtype = draw(st.sampled_from(DTYPES))
    values = draw(st.sampled_from(["same", "big", "zeros", "random"]))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
    n = int(np.prod(shape))
    if values == "same" and n == old.size:
        arr = old.reshape(shape)
    elif values == "big":
        arr = np.full(shape, 2 ** 62 if dtype != "uint64" else 2 ** 64 - 1, dtype=np.uint64)
    elif values == "zeros":
        arr = np.zeros(shape)
    else:
        arr = rng.integers(-100, 100, shape)
    try:
        arr = arr.astype(dtype)
    except (TypeError, ValueError, OverflowError):
        arr = np.zeros(shape, dtype=dtype)
    return key, arr


@FAST
@given(st.lists(array_edits(), min_size=1, max_size=2))
def test_array_edits(edits):
    arrays = dict(ARRAYS)
    for key, arr in edits:
        arrays[key] = arr
    accepts_or_refuses(pack(HEADER, arrays))


# -- CLI option parsers --------------------------------------------------------------------------

PARSER = cli.build_parser()
TOKENS = st.sampled_from(["compile", "quantize", "train", "sim", "estimate", "demo", "compare",
                          "-o", "--fold", "--fifo-depth", "--bits", "--abits", "--portions",
                          "--methods", "--schedules", "--calib", "--lr", "--epochs",
                          "--vectors", "--json", "--data", "--dataset", "--board", "-h",
                          "0", "-1", "3", "1e9", "auto", "max", "x", "", "2,3", "a=1:2",
                          "0.5,1.0", "inq", "--quiet"]) | st.text(max_size=5)


@FAST
@given(st.lists(TOKENS, max_size=6))
def test_argument_parser_exits_2_with_one_line_or_parses(argv):
    """Random command lines: parsed, ``--help`` (exit 0), or one ``error:`` line and exit 2."""
    import contextlib

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            PARSER.parse_args(argv)
        except SystemExit as exc:
            assert exc.code in (0, 2)
            if exc.code == 2:
                text = err.getvalue().strip().splitlines()
                assert len(text) == 1 and text[0].startswith("error: "), text


@FAST
@given(st.text(max_size=12), st.sampled_from([cli._bits, cli._positive, cli._fifo_depth,
                                               cli._portions, cli._int_list,
                                               cli._choices(("fixed", "inq"))]))
def test_option_types_parse_or_say_why(text, parse):
    import argparse

    try:
        parse(text)
    except argparse.ArgumentTypeError as e:
        assert str(e) and "\n" not in str(e)


FOLD_NET = rich_network()
FOLD_WORDS = st.sampled_from(["c1", "c2", "fc1", "fc2", "mp", "nope", "=", ":", ",", "1", "2",
                              "3", "0", "-1", "16", "99999999999999999999", "max", "min",
                              "auto", " "])


@FAST
@given(st.lists(FOLD_WORDS, max_size=8).map("".join), st.none() | st.integers(-5, 10 ** 6))
def test_fold_specs(spec, target):
    """``--fold`` and ``--target-cycles``: a folded network or a HwquantError/ValueError."""
    try:
        net = apply_folding(FOLD_NET, spec, target_cycles=target)
    except (HwquantError, ValueError):
        return
    for layer in net.weight_layers:
        assert layer.out_channels % layer.fold.pe == 0 and layer.fan_in % layer.fold.simd == 0
