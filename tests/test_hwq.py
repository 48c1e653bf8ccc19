"""The ``.hwq`` file (:mod:`hwquant.hwq`): exact round trips, clear errors for anything that is
not a current ``.hwq`` file, atomic saves."""

import dataclasses
import io
import json
import os
import re

import numpy as np
import pytest
from netbuilders import assert_same, rich_network

from hwquant import hwq, ir
from hwquant.errors import HwqFormatError

S5 = ir.ActFormat(5, True, -1)  # the output format of rich_network's c2


def rewrite(data, edit_header=None, drop=(), add=None):
    """Re-pack a ``.hwq`` archive with its header JSON edited and arrays dropped/added."""
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files if k not in drop}
    if edit_header is not None and "header" in arrays:
        header = json.loads(str(arrays["header"]))
        edit_header(header)
        arrays["header"] = np.array(json.dumps(header))
    arrays.update(add or {})
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


@pytest.fixture(scope="module")
def net():
    return rich_network()


@pytest.fixture(scope="module")
def data(net):
    return hwq.dumps(net)


def test_round_trip_bytes(net, data):
    back = hwq.loads(data)
    assert_same(back, net)
    assert back.metadata == net.metadata  # not part of Network.__eq__; compared explicitly
    # The arrays come back frozen, like any IR array.
    assert not back.layer("c1").weight.flags.writeable


def test_round_trip_file(net, tmp_path):
    path = tmp_path / "sub" / "net.hwq"
    hwq.save(net, path)
    assert_same(hwq.load(path), net)
    assert_same(hwq.load(str(path)), net)
    assert os.listdir(path.parent) == ["net.hwq"]


def test_round_trip_is_stable(net, data):
    once = hwq.loads(data)
    assert_same(hwq.loads(hwq.dumps(once)), net)


def test_save_overwrites(net, tmp_path):
    path = tmp_path / "net.hwq"
    path.write_bytes(b"old contents")
    hwq.save(net, path)
    assert_same(hwq.load(path), net)


def test_no_pickle(data):
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        assert all(npz[k].dtype != object for k in npz.files)
        assert npz["header"].dtype.kind == "U"


# -- not a (current) .hwq file ----------------------------------------------------------------

UNREADABLE = r"^<bytes> is not a readable \.hwq file \(corrupt or truncated: .*\)$"


@pytest.mark.parametrize("cut", [0, 1, 10, 100, 0.5, -22, -1])
def test_truncated(data, cut):
    n = int(len(data) * cut) if isinstance(cut, float) else cut % len(data)
    with pytest.raises(HwqFormatError, match=UNREADABLE):
        hwq.loads(data[:n])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_bytes(seed):
    blob = np.random.default_rng(seed).integers(0, 256, 2000, dtype=np.uint8).tobytes()
    with pytest.raises(HwqFormatError, match=UNREADABLE):
        hwq.loads(blob)


def test_corrupt_bytes_never_escape_as_other_errors(net, data):
    """Every single-byte corruption either loads the same network (bytes the zip format
    does not check, such as timestamps) or raises HwqFormatError: never zlib, zipfile or
    NumPy internals."""
    failures = 0
    for i in range(0, len(data), 3):
        corrupt = bytearray(data)
        corrupt[i] ^= 0xFF
        try:
            back = hwq.loads(bytes(corrupt))
        except HwqFormatError:
            failures += 1
        else:
            assert_same(back, net, f"network after corrupting byte {i}")
    assert failures > len(data) // 6


def test_wrong_magic(data):
    bad = rewrite(data, lambda h: h.update(magic="not-hwquant"))
    with pytest.raises(HwqFormatError, match=r"^<bytes> is not a hwquant network file$"):
        hwq.loads(bad)


def test_header_not_an_object(data):
    bad = rewrite(data, add={"header": np.array("[1, 2]")})
    with pytest.raises(HwqFormatError, match=r"^<bytes> is not a hwquant network file$"):
        hwq.loads(bad)


@pytest.mark.parametrize("version", [3, 0, "2", None, True])
def test_other_version(data, version):
    bad = rewrite(data, lambda h: h.update(version=version))
    with pytest.raises(HwqFormatError, match=rf"^<bytes> has format version "
                                             rf"{re.escape(repr(version))}, but this hwquant "
                                             rf"reads versions 1 to 2; upgrade hwquant or "
                                             rf"re-run quantize$"):
        hwq.loads(bad)


def test_writes_the_current_version(data):
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        header = json.loads(str(npz["header"]))
    assert header["version"] == hwq.FORMAT_VERSION == 2
    c2 = next(d for d in header["layers"] if d["name"] == "c2")
    assert c2["epilogue"] == {"type": "Thresholds",
                              "fields": {"thresholds": {"array": "c2.epilogue.thresholds"},
                                         "direction": {"array": "c2.epilogue.direction"}}}


def as_version_1(data):
    """The same network as a version-1 file (``requant`` objects, ``null`` for logits),
    and ``sign_scales`` only for TTQ layers, as hwquant wrote it before epilogues and kind data
    were typed."""
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    header = json.loads(str(arrays.pop("header")))
    header["version"] = 1
    for d in header["layers"]:
        if "epilogue" not in d:
            continue
        data = d.pop("kind_data")
        if data["type"] == "Pow2Data" and data["fields"]["sign_scales"] != [1, 1]:
            d["sign_scales"] = data["fields"]["sign_scales"]
        ep = d.pop("epilogue")
        if ep["type"] == "Logits":
            d["requant"] = None
            continue
        assert ep["type"] == "Requant"
        key = f"{d['name']}.multiplier"
        arrays[key] = arrays.pop(ep["fields"]["multiplier"]["array"])
        d["requant"] = {"multiplier": key, **{k: ep["fields"][k] for k in ("shift", "lo", "hi")}}
    buf = io.BytesIO()
    np.savez_compressed(buf, header=np.array(json.dumps(header)), **arrays)
    return buf.getvalue()


def v1_network():
    """The rich network with only the epilogues version 1 could hold."""
    net = rich_network()
    net = net.replace_layer("c2", epilogue=ir.Requant(np.ones(4), -1, S5.lo, S5.hi))
    return net.replace_layer("fc2", epilogue=ir.Logits())


def test_reads_version_1():
    net = v1_network()
    old = as_version_1(hwq.dumps(net))
    back = hwq.loads(old)
    assert_same(back, net)
    assert isinstance(back.output.epilogue, ir.Logits) and back.output.requant is None
    assert back.layer("c1").requant is back.layer("c1").epilogue
    assert_same(hwq.loads(hwq.dumps(back)), net)  # and writes it as version 2


def test_unknown_epilogue_type(data):
    def edit(h):
        h["layers"][0]["epilogue"]["type"] = "Softmax"

    with pytest.raises(HwqFormatError, match=r"^<bytes> describes an invalid network: "
                                             r"Layer 'c1': unknown epilogue type 'Softmax'$"):
        hwq.loads(rewrite(data, edit))


def test_unknown_epilogue_field(data):
    def edit(h):
        h["layers"][0]["epilogue"]["fields"]["offset"] = 3

    with pytest.raises(HwqFormatError, match=r"^<bytes> describes an invalid network: .*"
                                             r"Layer 'c1': Requant has no field 'offset'$"):
        hwq.loads(rewrite(data, edit))


def test_missing_header(data):
    bad = rewrite(data, drop=("header",))
    with pytest.raises(HwqFormatError, match=r"^<bytes> has no hwquant header; "
                                             r"is it a \.hwq file\?$"):
        hwq.loads(bad)


def test_corrupt_header_json(data):
    bad = rewrite(data, add={"header": np.array('{"magic": "hwquant-ir", ')})
    with pytest.raises(HwqFormatError, match=r"^<bytes> has a corrupt header: "):
        hwq.loads(bad)


def test_pickled_array_is_refused(data):
    bad = rewrite(data, add={"evil": np.array([{"a": 1}], dtype=object)})
    with pytest.raises(HwqFormatError, match=UNREADABLE):
        hwq.loads(bad)


def test_missing_array(data):
    bad = rewrite(data, drop=("c1.weight",))
    with pytest.raises(HwqFormatError, match=r"^<bytes> describes an invalid network: "
                                             r"Layer 'c1': array 'c1\.weight' is missing$"):
        hwq.loads(bad)


def test_invalid_network(data):
    def edit(h):
        h["layers"][0]["weight_bits"] = 2  # the weights need 4 bits

    with pytest.raises(HwqFormatError, match=r"^<bytes> describes an invalid network: "
                                             r"Layer 'c1': weights exceed 2-bit range$"):
        hwq.loads(rewrite(data, edit))


def test_unknown_layer_type(data):
    def edit(h):
        h["layers"][1]["type"] = "Conv3d"

    with pytest.raises(HwqFormatError, match=r"^<bytes> describes an invalid network: "
                                             r"unknown layer type 'Conv3d'$"):
        hwq.loads(rewrite(data, edit))


def test_source_is_named(tmp_path, data):
    path = tmp_path / "broken.hwq"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(HwqFormatError, match=rf"^{re.escape(str(path))} is not a readable "
                                             rf"\.hwq file"):
        hwq.load(path)
    with pytest.raises(HwqFormatError, match=r"^model\.hwq is not a hwquant network file$"):
        hwq.loads(rewrite(data, lambda h: h.pop("magic")), source="model.hwq")


def test_missing_file(tmp_path):
    path = tmp_path / "nope.hwq"
    with pytest.raises(HwqFormatError, match=rf"^No such \.hwq file: {re.escape(str(path))}$"):
        hwq.load(path)


# -- atomic save ------------------------------------------------------------------------------

def test_save_failure_leaves_no_file(net, tmp_path, monkeypatch):
    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(hwq.os, "replace", fail)
    path = tmp_path / "net.hwq"
    with pytest.raises(OSError, match=r"^disk full$"):
        hwq.save(net, path)
    assert os.listdir(tmp_path) == []


def test_save_failure_keeps_previous_file(net, tmp_path, monkeypatch):
    path = tmp_path / "net.hwq"
    hwq.save(net, path)
    before = path.read_bytes()
    other = dataclasses.replace(net, name="other")

    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(hwq.os, "replace", fail)
    with pytest.raises(KeyboardInterrupt):
        hwq.save(other, path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["net.hwq"]


def test_unserialisable_metadata_leaves_no_file(net, tmp_path):
    bad = dataclasses.replace(net, metadata={"when": object()})
    with pytest.raises(TypeError, match=r"is not JSON serializable$"):
        hwq.save(bad, tmp_path / "net.hwq")
    assert os.listdir(tmp_path) == []


def test_round_trip_pow2_sign_scales(net):
    """pow2 layers keep their encoding, code width and sign scales (TTQ's P and N)."""
    fc = net.layers[-1]
    w = np.where(np.arange(fc.weight.size).reshape(fc.weight.shape) % 3 == 0, 3,
                 np.where(np.arange(fc.weight.size).reshape(fc.weight.shape) % 3 == 1, -10, 0))
    pow2 = net.replace_layer(fc.name, weight=w, weight_bits=3, encoding="pow2",
                             kind_data=ir.Pow2Data((3, 5)))
    back = hwq.loads(hwq.dumps(pow2))
    assert_same(pow2, back)
    assert back.layers[-1].kind_data == ir.Pow2Data((3, 5)) and back.layers[-1].encoding == "pow2"
    # Version 1 stored TTQ scales as a plain ``sign_scales`` entry.
    old = as_version_1(hwq.dumps(v1_network().replace_layer(
        fc.name, weight=w, weight_bits=3, encoding="pow2", kind_data=ir.Pow2Data((3, 5)))))
    back = hwq.loads(old)
    assert back.layers[-1].kind_data == ir.Pow2Data((3, 5))


@dataclasses.dataclass(frozen=True, eq=False)
class DemoData:
    """Kind data of a made-up encoding: every field shape the generic serialiser handles."""

    coefficients: np.ndarray
    planes: tuple = ((1, 2), (3,))
    masks: tuple = ()
    label: str = "demo"
    exact: bool = True
    offset: object = None

    def check(self, layer):
        if self.coefficients.shape != (layer.out_channels,):
            raise ValueError(f"Layer '{layer.name}': one coefficient per channel")


def test_new_kind_data_needs_nothing_in_hwq(net, monkeypatch):
    """A kind registered in ``ir.KIND_DATA`` round-trips with no code in ``hwq``: ints, strings,
    bools, None, nested tuples and arrays (also inside tuples)."""
    monkeypatch.setitem(ir.KIND_DATA, "demo", DemoData)
    data = DemoData(np.array([3, -1, 2], dtype=np.int64),
                    masks=(np.array([[1, 0], [0, 1]], dtype=np.int64), (np.arange(3), 7)))
    demo = net.replace_layer("fc2", encoding="demo", kind_data=data)
    blob = hwq.dumps(demo)
    back = hwq.loads(blob)
    assert_same(back, demo)
    with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
        assert {"fc2.kind_data.coefficients", "fc2.kind_data.masks.0",
                "fc2.kind_data.masks.1.0"} <= set(npz.files)


def test_unknown_kind_data_type(data):
    def edit(h):
        h["layers"][0]["kind_data"]["type"] = "MaskData"

    with pytest.raises(HwqFormatError, match=r"^<bytes> describes an invalid network: "
                                             r"Layer 'c1': unknown kind data type 'MaskData'$"):
        hwq.loads(rewrite(data, edit))


def test_unserialisable_kind_data(net, monkeypatch):
    monkeypatch.setitem(ir.KIND_DATA, "demo", DemoData)
    bad = net.replace_layer("fc2", encoding="demo",
                            kind_data=DemoData(np.zeros(3, dtype=np.int64), offset=0.5))
    with pytest.raises(TypeError, match=r"^Cannot serialise float value of "
                                        r"fc2\.kind_data\.offset in a \.hwq file$"):
        hwq.dumps(bad)
