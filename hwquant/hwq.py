"""The ``.hwq`` file: a versioned, single-file serialisation of a :class:`hwquant.ir.Network`.

Layout: a NumPy ``.npz`` archive (a zip) holding ``header`` (a JSON string: magic, version,
network description with array references) and one int64 array per weight, bias and array
field. No pickle anywhere. A corrupt, truncated or future-version file raises
:class:`hwquant.errors.HwqFormatError` with a message that says which.

Typed records inside a layer (its epilogue and its kind data) are written generically from their dataclass
fields as ``{"type": class name, "fields": {...}}``: ints, bools, strings and ``None`` as JSON,
tuples (nested) as lists, int64 arrays as ``{"array": key}`` references into the archive. A new
record type needs no code here, only an entry in its IR registry.

Versions: 2 (written) stores ``epilogue`` and ``kind_data`` records; 1 (still read) stored
``requant`` (an object, or ``null`` for logits) and, for TTQ layers, ``sign_scales``.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import tokenize
import zipfile
import zlib

import numpy as np

from . import ir
from .errors import HwqFormatError

__all__ = ["save", "load", "dumps", "loads", "FORMAT_VERSION", "READ_VERSIONS", "MAGIC"]

MAGIC = "hwquant-ir"
FORMAT_VERSION = 2
#: Versions :func:`loads` accepts (older ones are converted on reading).
READ_VERSIONS = (1, 2)
#: Timestamp of every archive member (the zip format's earliest), for reproducible files.
_EPOCH = (1980, 1, 1, 0, 0, 0)
#: How a zip archive (a ``.hwq`` file is one) begins: a member, or the end of an empty one.
_ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")


def _value_to_json(value, arrays, key):
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, np.ndarray) and value.dtype.kind in "iu":
        arrays[key] = value
        return {"array": key}
    if isinstance(value, tuple):
        return [_value_to_json(v, arrays, f"{key}.{i}") for i, v in enumerate(value)]
    raise TypeError(f"Cannot serialise {type(value).__name__} value of {key} in a .hwq file")


class _Invalid(Exception):
    """A field of the header has the wrong type or refers to a missing array."""


def _array(arrays, key):
    """The archive array ``key``: it must exist and hold integers (the file stores int64)."""
    if not isinstance(key, str):
        raise _Invalid(f"array reference must be a string, not {key!r}")
    if key not in arrays:
        raise _Invalid(f"array {key!r} is missing")
    arr = arrays[key]
    if arr.dtype.kind not in "iu":
        raise _Invalid(f"array {key!r} must hold integers, not {arr.dtype}")
    if arr.dtype.kind == "u" and arr.size and arr.max() > np.iinfo(np.int64).max:
        raise _Invalid(f"array {key!r} holds values beyond 64-bit signed integers")
    return arr


def _value_from_json(value, arrays):
    if isinstance(value, list):
        return tuple(_value_from_json(v, arrays) for v in value)
    if isinstance(value, dict):
        if set(value) != {"array"}:
            raise _Invalid(f"unknown value {value!r}")
        return _array(arrays, value["array"])
    if value is None or isinstance(value, (bool, int, str)):
        return value
    raise _Invalid(f"value {value!r} is not an integer, bool, string, list or array")


def _obj(d, what):
    if not isinstance(d, dict):
        raise _Invalid(f"{what} must be an object, not {d!r}")
    return d


def _int(value, what):
    if type(value) is not int:
        raise _Invalid(f"{what} must be an integer, not {value!r}")
    return value


def _ints(value, what, n=None):
    if not isinstance(value, list) or any(type(v) is not int for v in value) \
            or (n is not None and len(value) != n):
        count = f"{n} " if n is not None else ""
        raise _Invalid(f"{what} must be a list of {count}integers, not {value!r}")
    return tuple(value)


def _str(value, what):
    if not isinstance(value, str):
        raise _Invalid(f"{what} must be a string, not {value!r}")
    return value


def _bool(value, what):
    if not isinstance(value, bool):
        raise _Invalid(f"{what} must be true or false, not {value!r}")
    return value


def _fmt(d, what):
    d = _obj(d, what)
    unknown = sorted(set(d) - {"bits", "signed", "frac", "bipolar"})
    if unknown:
        raise _Invalid(f"{what} has unknown field {unknown[0]!r}")
    for key in ("bits", "signed", "frac"):
        if key not in d:
            raise _Invalid(f"{what} has no field {key!r}")
    return ir.ActFormat(bits=_int(d["bits"], f"{what} bits"),
                        signed=_bool(d["signed"], f"{what} signed"),
                        frac=_int(d["frac"], f"{what} frac"),
                        bipolar=_bool(d.get("bipolar", False), f"{what} bipolar"))


def _record_to_json(record, arrays, key):
    """A frozen dataclass as ``{"type": ..., "fields": ...}``; its arrays stored under ``key``."""
    return {"type": type(record).__name__,
            "fields": {f.name: _value_to_json(getattr(record, f.name), arrays, f"{key}.{f.name}")
                       for f in dataclasses.fields(record)}}


def _record_from_json(d, arrays, types, what):
    known = {t.__name__: t for t in types}
    if not isinstance(d, dict) or d.get("type") not in known \
            or not isinstance(d.get("fields"), dict):
        kind = d.get("type") if isinstance(d, dict) else d
        raise _Invalid(f"unknown {what} type {kind!r}")
    unknown = set(d) - {"type", "fields"}
    if unknown:
        raise _Invalid(f"{what} record has unknown entry {min(unknown)!r}")
    fields = {k: _value_from_json(v, arrays) for k, v in d["fields"].items()}
    names = {f.name for f in dataclasses.fields(known[d["type"]])}
    extra = sorted(set(fields) - names)
    if extra:
        raise _Invalid(f"{d['type']} has no field {extra[0]!r}")
    return known[d["type"]](**fields)


def _requant_to_json(rq, arrays, key):
    if rq is None:
        return None
    arrays[key] = rq.multiplier
    return {"multiplier": key, "shift": rq.shift, "lo": rq.lo, "hi": rq.hi}


def _requant_from_json(d, arrays):
    if d is None:
        return None
    d = _need(_obj(d, "requant"), ("multiplier", "shift", "lo", "hi"), "requant")
    return ir.Requant(multiplier=_array(arrays, d["multiplier"]),
                      shift=_int(d["shift"], "requant shift"), lo=_int(d["lo"], "requant lo"),
                      hi=_int(d["hi"], "requant hi"))


def _need(d, keys, what):
    for key in keys:
        if key not in d:
            raise _Invalid(f"{what} has no field {key!r}")
    return d


def _layer_to_json(layer, arrays):
    d = {"type": type(layer).__name__, "name": layer.name, "inputs": list(layer.inputs)}
    if isinstance(layer, (ir.Conv2d, ir.Linear)):
        arrays[f"{layer.name}.weight"] = layer.weight
        arrays[f"{layer.name}.bias"] = layer.bias
        d.update(in_format=layer.in_format.to_json(), out_format=layer.out_format.to_json(),
                 weight=f"{layer.name}.weight", bias=f"{layer.name}.bias",
                 weight_bits=layer.weight_bits, weight_frac=layer.weight_frac,
                 encoding=layer.encoding, fold=[layer.fold.pe, layer.fold.simd],
                 epilogue=_record_to_json(layer.epilogue, arrays, f"{layer.name}.epilogue"))
        d["kind_data"] = _record_to_json(layer.kind_data, arrays, f"{layer.name}.kind_data")
        if layer.fold.engine != "plain":
            d["engine"] = layer.fold.engine
        if layer.fold.stages:
            d["engine_stages"] = layer.fold.stages
        if not layer.fold.lane_pairs:
            d["memo_lane_pairs"] = False
        if isinstance(layer, ir.Conv2d):
            d.update(in_shape=list(layer.in_shape), stride=list(layer.stride),
                     padding=list(layer.padding))
    elif isinstance(layer, (ir.MaxPool2d, ir.AvgPool2d)):
        d.update(in_shape=list(layer.in_shape), kernel=list(layer.kernel),
                 stride=list(layer.stride), padding=list(layer.padding),
                 in_format=layer.in_format.to_json())
        if isinstance(layer, ir.AvgPool2d):
            d.update(out_format=layer.out_format.to_json(),
                     requant=_requant_to_json(layer.requant, arrays, f"{layer.name}.multiplier"))
    elif isinstance(layer, ir.Flatten):
        d.update(in_shape=list(layer.in_shape), in_format=layer.in_format.to_json())
    elif isinstance(layer, ir.Add):
        d.update(in_shape=list(layer.in_shape), out_format=layer.out_format.to_json(),
                 in_formats=[f.to_json() for f in layer.in_formats], relu=layer.relu)
    else:
        raise TypeError(f"Cannot serialise layer type {type(layer).__name__}")
    return d


def _epilogue_from_json(d, arrays, version):
    if version == 1:
        _need(d, ("requant",), "layer")
        return ir.Logits() if d["requant"] is None else _requant_from_json(d["requant"], arrays)
    _need(d, ("epilogue",), "layer")
    return _record_from_json(d["epilogue"], arrays, ir.EPILOGUES, "epilogue")


def _kind_data_from_json(d, arrays, version):
    if version == 1:
        scales = d.get("sign_scales")
        return None if scales is None else ir.Pow2Data(_ints(scales, "sign_scales", 2))
    if d.get("kind_data") is None:
        return None
    return _record_from_json(d["kind_data"], arrays, tuple(ir.KIND_DATA.values()), "kind data")


#: Fields of each layer type in the header (besides ``type``, ``name``, ``inputs``).
_WEIGHT_KEYS = {"in_format", "out_format", "weight", "bias", "weight_bits", "weight_frac",
                "encoding", "fold"}
_LAYER_KEYS = {
    "Conv2d": _WEIGHT_KEYS | {"in_shape", "stride", "padding"},
    "Linear": _WEIGHT_KEYS,
    "MaxPool2d": {"in_shape", "kernel", "stride", "padding", "in_format"},
    "AvgPool2d": {"in_shape", "kernel", "stride", "padding", "in_format", "out_format",
                  "requant"},
    "Flatten": {"in_shape", "in_format"},
    "Add": {"in_shape", "out_format", "in_formats", "relu"},
}
#: Fields that only a version (of a weight layer) has.
_VERSION_KEYS = {1: ({"requant"}, {"sign_scales"}), 2: ({"epilogue"},
                                                       {"kind_data", "engine", "engine_stages",
                                                        "memo_lane_pairs"})}


def _layer_from_json(d, arrays, version):
    d = _obj(d, "layer")
    kind = d.get("type")
    if kind not in _LAYER_KEYS:
        raise _Invalid(f"unknown layer type {kind!r}")
    name = _str(d.get("name"), "layer name")
    required = _LAYER_KEYS[kind] | {"type", "name", "inputs"}
    optional = set()
    if kind in ("Conv2d", "Linear"):
        needed, maybe = _VERSION_KEYS[version]
        required, optional = required | needed, maybe
    try:
        unknown = sorted(set(d) - required - optional)
        if unknown:
            raise _Invalid(f"unknown field {unknown[0]!r}")
        missing = sorted(required - set(d))
        if missing:
            raise _Invalid(f"no field {missing[0]!r}")
        return _build_layer(kind, name, d, arrays, version)
    except (_Invalid, TypeError, ValueError) as e:
        msg = str(e)
        raise _Invalid(msg if msg.startswith(f"Layer '{name}'") else
                       f"Layer '{name}': {msg}") from None


def _build_layer(kind, name, d, arrays, version):
    inputs = d["inputs"]
    if not isinstance(inputs, list) or not all(isinstance(v, str) for v in inputs):
        raise _Invalid(f"inputs must be a list of layer names, not {inputs!r}")
    common = {"name": name, "inputs": tuple(inputs)}
    if kind in ("Conv2d", "Linear"):
        common.update(in_format=_fmt(d["in_format"], "in_format"),
                      out_format=_fmt(d["out_format"], "out_format"),
                      weight=_array(arrays, d["weight"]), bias=_array(arrays, d["bias"]),
                      weight_bits=_int(d["weight_bits"], "weight_bits"),
                      weight_frac=_int(d["weight_frac"], "weight_frac"),
                      encoding=_str(d["encoding"], "encoding"),
                      fold=ir.Fold(*_ints(d["fold"], "fold", 2),
                                   engine=_str(d.get("engine", "plain"), "engine"),
                                   stages=_int(d.get("engine_stages", 0), "engine_stages"),
                                   lane_pairs=_bool(d.get("memo_lane_pairs", True),
                                                    "memo_lane_pairs")),
                      epilogue=_epilogue_from_json(d, arrays, version),
                      kind_data=_kind_data_from_json(d, arrays, version))
        if kind == "Conv2d":
            return ir.Conv2d(in_shape=_ints(d["in_shape"], "in_shape", 3),
                             stride=_ints(d["stride"], "stride", 2),
                             padding=_ints(d["padding"], "padding", 2), **common)
        return ir.Linear(**common)
    if kind in ("MaxPool2d", "AvgPool2d"):
        common.update(in_shape=_ints(d["in_shape"], "in_shape", 3),
                      kernel=_ints(d["kernel"], "kernel", 2),
                      stride=_ints(d["stride"], "stride", 2),
                      padding=_ints(d["padding"], "padding", 2),
                      in_format=_fmt(d["in_format"], "in_format"))
        if kind == "AvgPool2d":
            if d["requant"] is None:
                raise _Invalid("average pooling needs a requant")
            return ir.AvgPool2d(out_format=_fmt(d["out_format"], "out_format"),
                                requant=_requant_from_json(d["requant"], arrays), **common)
        return ir.MaxPool2d(**common)
    if kind == "Flatten":
        return ir.Flatten(in_shape=_ints(d["in_shape"], "in_shape"),
                          in_format=_fmt(d["in_format"], "in_format"), **common)
    formats = d["in_formats"]
    if not isinstance(formats, list):
        raise _Invalid(f"in_formats must be a list, not {formats!r}")
    return ir.Add(in_shape=_ints(d["in_shape"], "in_shape"),
                  out_format=_fmt(d["out_format"], "out_format"),
                  in_formats=tuple(_fmt(f, "in_formats") for f in formats),
                  relu=_bool(d["relu"], "relu"), **common)


def dumps(net: ir.Network) -> bytes:
    """Serialise ``net`` to the bytes of a ``.hwq`` file."""
    arrays = {}
    header = {
        "magic": MAGIC,
        "version": FORMAT_VERSION,
        "name": net.name,
        "input_shape": list(net.input_shape),
        "input_format": net.input_format.to_json(),
        "layers": [_layer_to_json(layer, arrays) for layer in net.layers],
        "metadata": net.metadata,
    }
    members = {"header": np.array(json.dumps(header, sort_keys=True))}
    members.update((k, np.asarray(v, dtype=np.int64)) for k, v in sorted(arrays.items()))
    # The archive np.savez_compressed writes, but with fixed member timestamps: the same
    # network always gives the same bytes.
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key, arr in members.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, arr, allow_pickle=False)
    return buf.getvalue()


def loads(data: bytes, *, source: str = "<bytes>") -> ir.Network:
    """Parse the bytes of a ``.hwq`` file; raise :class:`HwqFormatError` if they are not one."""
    if not bytes(data[:4]) in _ZIP_SIGNATURES:
        what = "empty" if not data else "not a zip archive"
        raise HwqFormatError(f"{source} is not a readable .hwq file (corrupt or truncated: "
                             f"{what})")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    # Corrupt bytes surface from zipfile, zlib and NumPy's .npy header parser in many types.
    except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, KeyError,
            NotImplementedError, RuntimeError, SyntaxError, tokenize.TokenError) as e:
        raise HwqFormatError(f"{source} is not a readable .hwq file (corrupt or truncated: "
                             f"{e})") from None
    if "header" not in arrays:
        raise HwqFormatError(f"{source} has no hwquant header; is it a .hwq file?")
    try:
        header = json.loads(str(arrays.pop("header")))
    except json.JSONDecodeError as e:
        raise HwqFormatError(f"{source} has a corrupt header: {e}") from None
    if not isinstance(header, dict) or header.get("magic") != MAGIC:
        raise HwqFormatError(f"{source} is not a hwquant network file")
    version = header.get("version")
    if type(version) is not int or version not in READ_VERSIONS:
        raise HwqFormatError(f"{source} has format version {version!r}, but this hwquant reads "
                             f"versions {READ_VERSIONS[0]} to {READ_VERSIONS[-1]}; upgrade "
                             f"hwquant or re-run quantize")
    try:
        _need(header, ("name", "input_shape", "input_format", "layers"), "the header")
        if not isinstance(header["layers"], list):
            raise _Invalid(f"layers must be a list, not {header['layers']!r}")
        metadata = header.get("metadata", {})
        if not isinstance(metadata, dict):
            raise _Invalid(f"metadata must be an object, not {metadata!r}")
        layers = tuple(_layer_from_json(d, arrays, version) for d in header["layers"])
        return ir.Network(name=_str(header["name"], "network name"),
                          input_shape=_ints(header["input_shape"], "input_shape"),
                          input_format=_fmt(header["input_format"], "input_format"),
                          layers=layers, metadata=metadata)
    except HwqFormatError:
        raise
    except (_Invalid, KeyError, TypeError, ValueError) as e:
        raise HwqFormatError(f"{source} describes an invalid network: {e}") from None


def save(net: ir.Network, path) -> None:
    """Write ``net`` to ``path`` atomically (no half-written file on failure), with the mode
    the user's umask gives."""
    from .paths import write_bytes

    write_bytes(path, dumps(net), what="network file")


def load(path) -> ir.Network:
    """Read a ``.hwq`` file."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise HwqFormatError(f"No such .hwq file: {path}") from None
    return loads(data, source=path)
