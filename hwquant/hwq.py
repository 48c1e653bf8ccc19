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
import tempfile
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


def _value_from_json(value, arrays):
    if isinstance(value, list):
        return tuple(_value_from_json(v, arrays) for v in value)
    if isinstance(value, dict):
        if set(value) != {"array"}:
            raise HwqFormatError(f"Unknown value {value!r} in .hwq file")
        return arrays[value["array"]]
    return value


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
        raise HwqFormatError(f"Unknown {what} type {kind!r} in .hwq file")
    fields = {k: _value_from_json(v, arrays) for k, v in d["fields"].items()}
    return known[d["type"]](**fields)


def _requant_to_json(rq, arrays, key):
    if rq is None:
        return None
    arrays[key] = rq.multiplier
    return {"multiplier": key, "shift": rq.shift, "lo": rq.lo, "hi": rq.hi}


def _requant_from_json(d, arrays):
    if d is None:
        return None
    return ir.Requant(multiplier=arrays[d["multiplier"]], shift=int(d["shift"]), lo=int(d["lo"]),
                      hi=int(d["hi"]))


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
        return ir.Logits() if d["requant"] is None else _requant_from_json(d["requant"], arrays)
    return _record_from_json(d["epilogue"], arrays, ir.EPILOGUES, "epilogue")


def _kind_data_from_json(d, arrays, version):
    if version == 1:
        scales = d.get("sign_scales")
        return None if scales is None else ir.Pow2Data(tuple(int(v) for v in scales))
    if d.get("kind_data") is None:
        return None
    return _record_from_json(d["kind_data"], arrays, tuple(ir.KIND_DATA.values()), "kind data")


def _layer_from_json(d, arrays, version):
    kind = d["type"]
    common = {"name": d["name"], "inputs": tuple(d["inputs"])}
    fmt = ir.ActFormat.from_json
    if kind in ("Conv2d", "Linear"):
        common.update(in_format=fmt(d["in_format"]), out_format=fmt(d["out_format"]),
                      weight=arrays[d["weight"]], bias=arrays[d["bias"]],
                      weight_bits=int(d["weight_bits"]), weight_frac=int(d["weight_frac"]),
                      encoding=d["encoding"], fold=ir.Fold(*map(int, d["fold"])),
                      epilogue=_epilogue_from_json(d, arrays, version),
                      kind_data=_kind_data_from_json(d, arrays, version))
        if kind == "Conv2d":
            return ir.Conv2d(in_shape=tuple(d["in_shape"]), stride=tuple(d["stride"]),
                             padding=tuple(d["padding"]), **common)
        return ir.Linear(**common)
    if kind in ("MaxPool2d", "AvgPool2d"):
        common.update(in_shape=tuple(d["in_shape"]), kernel=tuple(d["kernel"]),
                      stride=tuple(d["stride"]), padding=tuple(d["padding"]),
                      in_format=fmt(d["in_format"]))
        if kind == "AvgPool2d":
            return ir.AvgPool2d(out_format=fmt(d["out_format"]),
                                requant=_requant_from_json(d["requant"], arrays), **common)
        return ir.MaxPool2d(**common)
    if kind == "Flatten":
        return ir.Flatten(in_shape=tuple(d["in_shape"]), in_format=fmt(d["in_format"]), **common)
    if kind == "Add":
        return ir.Add(in_shape=tuple(d["in_shape"]), out_format=fmt(d["out_format"]),
                      in_formats=tuple(fmt(f) for f in d["in_formats"]), relu=bool(d["relu"]),
                      **common)
    raise HwqFormatError(f"Unknown layer type {kind!r} in .hwq file")


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
    buf = io.BytesIO()
    np.savez_compressed(buf, header=np.array(json.dumps(header, sort_keys=True)),
                        **{k: np.asarray(v, dtype=np.int64) for k, v in arrays.items()})
    return buf.getvalue()


def loads(data: bytes, *, source: str = "<bytes>") -> ir.Network:
    """Parse the bytes of a ``.hwq`` file; raise :class:`HwqFormatError` if they are not one."""
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
        layers = tuple(_layer_from_json(d, arrays, version) for d in header["layers"])
        return ir.Network(name=header["name"], input_shape=tuple(header["input_shape"]),
                          input_format=ir.ActFormat.from_json(header["input_format"]),
                          layers=layers, metadata=header.get("metadata", {}))
    except HwqFormatError:
        raise
    except (KeyError, TypeError, ValueError) as e:
        raise HwqFormatError(f"{source} describes an invalid network: {e}") from None


def save(net: ir.Network, path) -> None:
    """Write ``net`` to ``path`` atomically (no half-written file on failure)."""
    path = os.fspath(path)
    data = dumps(net)
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".hwq-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def load(path) -> ir.Network:
    """Read a ``.hwq`` file."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise HwqFormatError(f"No such .hwq file: {path}") from None
    return loads(data, source=path)
