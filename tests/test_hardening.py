"""Every bad path, file and interrupt: one clear line and exit 2 (130/143 for interrupts),
nothing half-written, outputs with the user's umask; every command with bad arguments."""

import gc
import io
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
import warnings
from argparse import Namespace

import numpy as np
import pytest
import torch
from torch import nn

from hwquant import cli, hwq
from hwquant.cli import main
from hwquant.compile import compile_network
from hwquant.train import export_model

sys.path.insert(0, os.path.dirname(__file__))
from netbuilders import tiny_net


def run(argv):
    """Exit status of ``hwquant argv``, usage errors included."""
    try:
        return main([str(a) for a in argv])
    except SystemExit as exc:
        return exc.code


def lines(capsys):
    return capsys.readouterr().err.strip().splitlines()


def repack(data, *, header=None, arrays=None):
    """A ``.hwq`` archive with its header JSON and arrays edited."""
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        members = {k: npz[k] for k in npz.files}
    h = json.loads(str(members["header"]))
    if header:
        header(h)
    members["header"] = np.array(json.dumps(h))
    if arrays:
        arrays(members)
    buf = io.BytesIO()
    np.savez_compressed(buf, **members)
    return buf.getvalue()


@pytest.fixture
def files(tmp_path):
    """A tiny network, a 3-logit model and 3- and 5-class data sets, a plain file, a dir."""
    hwq.save(tiny_net(), tmp_path / "tiny.hwq")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(32, 3))
    export_model(model.eval(), torch.zeros(2, 1, 6, 6), tmp_path / "m3.pt2")
    rng = np.random.default_rng(0)
    for classes in (3, 5):
        np.savez(tmp_path / f"d{classes}.npz", x_train=rng.random((24, 1, 6, 6)),
                 y_train=np.arange(24) % classes, x_test=rng.random((6, 1, 6, 6)),
                 y_test=np.arange(6) % classes)
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    return tmp_path


def snapshot(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


# -- 1. output paths, checked before any work --------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["compile", "tiny.hwq", "-o", "afile"],
     r"^error: The build directory .*afile is an existing file; name a directory$"),
    (["compile", "tiny.hwq", "-o", "afile/sub"],
     r"^error: Cannot create build directory .*afile/sub: .*afile is a file, not a directory$"),
    (["quantize", "m3.pt2", "--data", "d3.npz", "-o", "adir"],
     r"^error: The network file .*adir is an existing directory; name a file$"),
    (["compile", "tiny.hwq", "-o", "build", "--json", "adir"],
     r"^error: The JSON report .*adir is an existing directory; name a file$"),
    (["compile", "tiny.hwq", "-o", "build", "--json", "afile/r.json"],
     r"^error: Cannot create JSON report .*afile is a file, not a directory$"),
    (["quantize", "m3.pt2", "--data", "d3.npz", "-o", "m3.pt2"],
     (r"^error: The network file .*m3\.pt2 is also an input; writing it would destroy the "
     r"input; choose another path$")),
    (["quantize", "m3.pt2", "--data", "d3.npz", "-o", "d3.npz"], r"is also an input"),
    (["compile", "tiny.hwq", "-o", "build", "--json", "tiny.hwq"], r"is also an input"),
    (["compile", "tiny.hwq", "-o", "build", "--json", "build/compile.json"],
     (r"^error: The JSON report build/compile\.json is also written as another output of "
     r"this command; choose another path$")),
    (["compile", "tiny.hwq", "-o", "b", "--json", "b"], r"is an existing file|also written"),
    (["estimate", "tiny.hwq", "--json", "adir/../tiny.hwq"], r"is also the input tiny\.hwq"),
    (["train", "--data", "d3.npz", "--epochs", "1", "-o", "adir"],
     r"^error: The model file .*adir is an existing directory; name a file$"),
    (["compare", "m3.pt2", "--data", "d3.npz", "-o", "afile"], r"is an existing file"),
    (["compare", "sub/m.pt2", "--data", "d3.npz", "-o", "sub"],
     r"holds the input .*m\.pt2, which replacing the directory would delete"),
    (["demo", "-o", "afile/x"], r"afile is a file, not a directory"),
])
def test_bad_output_path_is_one_line_exit_2_and_nothing_is_written(argv, message, files,
                                                                   capsys, monkeypatch):
    monkeypatch.chdir(files)
    (files / "sub").mkdir()
    (files / "sub" / "compare.json").write_text("{}")
    (files / "sub" / "m.pt2").write_bytes((files / "m3.pt2").read_bytes())
    before = snapshot(files)
    t0 = time.monotonic()
    assert run(argv) == 2
    err = lines(capsys)
    assert len(err) == 1 and re.search(message, err[0]), err
    assert snapshot(files) == before
    assert time.monotonic() - t0 < 5  # refused before any work (training, compiling)


def test_recompiling_a_build_from_its_own_network(files, capsys):
    build = files / "build"
    assert main(["compile", str(files / "tiny.hwq"), "--fold", "min", "-o", str(build)]) == 0
    assert main(["compile", str(build / "network.hwq"), "--fold", "max", "-o", str(build)]) == 0
    assert json.loads((build / "compile.json").read_text())["layers"][0]["pe"] == 4


def test_outputs_get_the_umask_mode(files, capsys):
    old = os.umask(0o022)
    try:
        build, net, rep = files / "build", files / "n.hwq", files / "r.json"
        assert main(["compile", str(files / "tiny.hwq"), "--fold", "min", "-o", str(build),
                     "--json", str(rep)]) == 0
        hwq.save(tiny_net(), net)
        modes = {p.name: stat.S_IMODE(p.stat().st_mode)
                 for p in (build, build / "network.hwq", build / "network.v", net, rep)}
        os.umask(0o027)
        hwq.save(tiny_net(), net)
        modes["n.hwq, umask 027"] = stat.S_IMODE(net.stat().st_mode)
    finally:
        os.umask(old)
    assert modes == {"build": 0o755, "network.hwq": 0o644, "network.v": 0o644, "n.hwq": 0o644,
                     "r.json": 0o644, "n.hwq, umask 027": 0o640}


# -- 2. the model against its data, and .hwq contents -------------------------------------------

def test_logits_width_must_match_the_classes(files, capsys):
    out = files / "q.hwq"
    assert run(["quantize", files / "m3.pt2", "--data", files / "d5.npz", "--quiet",
                "-o", out]) == 2
    assert lines(capsys) == [("error: Model produces 3 logits, but the dataset has 5 classes "
                             "(labels 0..4); its last layer must have one output per class")]
    assert not out.exists()
    assert run(["quantize", files / "m3.pt2", "--data", files / "d3.npz", "--quiet",
                "-o", out]) == 0


def huge_logit_bias(tmp_path):
    path = tmp_path / "big.hwq"

    def edit(arrays):
        arrays["fc.bias"] = np.full(3, 2 ** 40, dtype=np.int64)

    path.write_bytes(repack(hwq.dumps(tiny_net()), arrays=edit))
    return path


def test_hardware_error_is_one_line_without_amaranth_warnings(files, capsys):
    assert run(["compile", huge_logit_bias(files), "-o", files / "b"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == ("error: Layer 'fc': logits need 42 bits, but the "
                                            "output format has 24")
    assert "UnusedElaboratable" not in err and "Traceback" not in err
    assert not (files / "b").exists()


def test_compile_validates_before_constructing_components(files):
    net = hwq.load(huge_logit_bias(files))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(ValueError, match=r"^Layer 'fc': logits need 42 bits, but the "
                                             r"output format has 24$"):
            compile_network(net, files / "b")
        gc.collect()
    assert [w for w in seen if "UnusedElaboratable" in type(w.message).__name__] == []


@pytest.mark.parametrize("edit, message", [
    (lambda a: a.update({"fc.weight": a["fc.weight"] + 0.7}),
     r"Layer 'fc': array 'fc\.weight' must hold integers, not float64$"),
    (lambda a: a.update({"conv1.bias": a["conv1.bias"].astype(bool)}),
     r"Layer 'conv1': array 'conv1\.bias' must hold integers, not bool$"),
])
def test_non_integer_arrays_are_refused(edit, message, files, capsys):
    path = files / "bad.hwq"
    path.write_bytes(repack(hwq.dumps(tiny_net()), arrays=edit))
    assert run(["compile", path, "-o", files / "b"]) == 2
    err = lines(capsys)
    assert len(err) == 1 and re.search(r"^error: .*bad\.hwq describes an invalid network: "
                                       + message, err[0]), err


@pytest.mark.parametrize("field, value, message", [
    ("weight_bits", 8.0, r"weight_bits must be an integer, not 8\.0"),
    ("weight_bits", "8", r"weight_bits must be an integer, not '8'"),
    ("in_shape", [1, 6.5, 6], r"in_shape must be a list of 3 integers"),
    ("fold", [1, True], r"fold must be a list of 2 integers"),
    ("encoding", ["fixed"], r"encoding must be a string"),
    ("in_format", {"bits": 8, "signed": 0, "frac": 7}, (r"in_format signed must be true or "
                                                       r"false, not 0")),
    ("extra", 1, r"unknown field 'extra'"),
])
def test_hwq_field_types_are_checked(field, value, message):
    def edit(h):
        h["layers"][0][field] = value

    with pytest.raises(hwq.HwqFormatError, match=r"^<bytes> describes an invalid network: "
                                                 r"Layer 'conv1': " + message):
        hwq.loads(repack(hwq.dumps(tiny_net()), header=edit))


# -- 3. interrupts -------------------------------------------------------------------------------

def test_interrupt_during_compile(files, capsys, monkeypatch):
    import hwquant.compile as comp

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(comp, "emit_verilog", interrupted)
    before = snapshot(files)
    assert run(["compile", files / "tiny.hwq", "-o", files / "b"]) == 130
    assert lines(capsys)[-1] == "interrupted"
    assert snapshot(files) == before


@pytest.mark.parametrize("partial", ["\rtrain big:   0%|", "\rtrain big: done\r", ""])
def test_interrupt_message_starts_its_own_line(partial, monkeypatch, capsys):
    """A signal that lands half-way through a progress bar's write: 'interrupted' still gets a
    line of its own (and no blank line is added when the output already ended one)."""
    def interrupted_mid_write(args):
        sys.stderr.write(partial)
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_check_paths", interrupted_mid_write)
    assert main(["boards"]) == cli.EXIT_INTERRUPTED
    err = capsys.readouterr().err
    assert err == partial + ("\n" if partial and partial[-1] not in "\r\n" else "") + \
        "interrupted\n"


@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_during_training(sig, status, files):
    """A real signal to a real process: one line, 128 + the signal number, no output left."""
    rng = np.random.default_rng(0)
    np.savez(files / "big.npz", x_train=rng.random((4000, 1, 8, 8)),
             y_train=np.arange(4000) % 10, x_test=rng.random((10, 1, 8, 8)),
             y_test=np.arange(10) % 10)
    before = snapshot(files)
    # A test worker may ignore SIGINT, and a child inherits an ignored signal: not ignored
    # while the child starts, as when a shell runs a command.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen([sys.executable, "-m", "hwquant.cli", "train", "--data",
                                 str(files / "big.npz"), "--epochs", "10000", "-o",
                                 str(files / "m.pt2")], stderr=subprocess.PIPE, cwd=files)
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        seen = b""
        while b"%|" not in seen and len(seen) < 4096:  # the progress bar: training runs
            seen += proc.stderr.read(1)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=180)  # generous: the suite loads both cores
        err = seen + err
    finally:
        proc.kill()
    assert proc.returncode == status
    assert err.decode().strip().splitlines()[-1] == "interrupted"
    assert "Traceback" not in err.decode()
    assert snapshot(files) == before


# -- 4. clamped options say so -------------------------------------------------------------------

def test_calib_above_the_training_set_says_so(files, capsys):
    assert run(["quantize", files / "m3.pt2", "--data", files / "d3.npz", "--calib", "5000",
                "--quiet", "-o", files / "q.hwq"]) == 0
    assert lines(capsys)[0] == ("note: --calib 5000 is more than the 24 training images; "
                                "calibrating on all 24")
    # Not for the default, which is "256 or all".
    assert run(["quantize", files / "m3.pt2", "--data", files / "d3.npz", "--quiet",
                "-o", files / "q.hwq"]) == 0
    assert not any(line.startswith("note:") for line in lines(capsys))


@pytest.mark.parametrize("command, report, note", [
    ("sim", {"vectors": 450}, True), ("sim", {"vectors": 16}, False),
    ("demo", {"sim": {"vectors": 450}}, True),
])
def test_vectors_above_the_test_set_say_so(command, report, note, capsys):
    cli._note_vectors(Namespace(command=command, vectors=1000 if note else 16), report)
    expected = ["note: --vectors 1000 is more than the 450 test images; simulated all 450"]
    assert lines(capsys) == (expected if note else [])


# -- 5. messages ----------------------------------------------------------------------------------

def test_text_files_are_not_called_pickled(files, capsys):
    (files / "notes.txt").write_text("x_train = [1, 2, 3]\n")
    assert run(["quantize", files / "m3.pt2", "--data", files / "notes.txt",
                "-o", files / "q.hwq"]) == 2
    assert run(["compile", files / "notes.txt", "-o", files / "b"]) == 2
    err = capsys.readouterr().err
    assert "pickle" not in err and len(err.strip().splitlines()) == 2
    assert "is not a .npz archive (it is not a zip archive)" in err
    assert "is not a readable .hwq file (corrupt or truncated: not a zip archive)" in err


# -- every command, bad arguments ---------------------------------------------------------------

BAD = {
    "train": [["-o"], ["--epochs", "0", "-o", "m.pt2"], ["--data", "nope.npz", "-o", "m.pt2"],
              ["--data", "afile", "-o", "m.pt2"], ["--data", "adir", "-o", "m.pt2"],
              ["--dataset", "mnist", "-o", "m.pt2"], ["-o", "adir"], ["-o", ""]],
    "quantize": [[], ["nope.pt2", "-o", "q.hwq"], ["afile", "-o", "q.hwq"],
                 ["adir", "-o", "q.hwq"], ["tiny.hwq", "-o", "q.hwq"],
                 ["m3.pt2", "--bits", "x", "-o", "q.hwq"],
                 ["m3.pt2", "--method", "nope", "-o", "q.hwq"],
                 ["m3.pt2", "--calib", "-3", "-o", "q.hwq"],
                 ["m3.pt2", "--lr", "fast", "-o", "q.hwq"],
                 ["m3.pt2", "--data", "d5.npz", "--quiet", "-o", "q.hwq"],
                 ["m3.pt2", "--quiet", "-o", "q.hwq"]],
    "compare": [["m3.pt2", "--methods", "x", "-o", "c"], ["m3.pt2", "--bits", "1", "-o", "c"],
                ["m3.pt2", "--schedules", "soon", "-o", "c"], ["nope.pt2", "-o", "c"],
                ["m3.pt2", "-o", "adir/../afile"]],
    "compile": [["tiny.hwq"], ["nope.hwq", "-o", "b"], ["afile", "-o", "b"],
                ["adir", "-o", "b"], ["m3.pt2", "-o", "b"],
                ["tiny.hwq", "--fold", "???", "-o", "b"],
                ["tiny.hwq", "--fold", "conv1=0:0", "-o", "b"],
                ["tiny.hwq", "--fold", "conv1=99999999999999999999:1", "-o", "b"],
                ["tiny.hwq", "--target-cycles", "0", "-o", "b"],
                ["tiny.hwq", "--fifo-depth", "-1", "-o", "b"],
                ["tiny.hwq", "--board", "../etc/passwd", "-o", "b"]],
    "sim": [["nope"], ["afile"], ["adir"], ["adir", "--vectors", "0"],
            ["adir", "--stall", "x"]],
    "estimate": [["nope"], ["afile"], ["adir"], ["adir", "--family", "asic"]],
    "demo": [["--epochs", "0"], ["-o", "afile"], ["--vectors", "x"],
             ["--board", "icebreakr", "-o", "d"], ["--family", "ecp5", "-o", "d"]],
}


@pytest.mark.parametrize("argv", [[cmd, *args] for cmd, cases in BAD.items() for args in cases],
                         ids=lambda argv: " ".join(argv) or "none")
def test_every_command_with_bad_arguments(argv, files, capsys, monkeypatch):
    monkeypatch.chdir(files)
    before = snapshot(files)
    assert run(argv) == 2
    err = lines(capsys)
    assert 1 <= len(err) <= 3 and err[-1].startswith("error: "), err
    assert "Traceback" not in "\n".join(err)
    assert snapshot(files) == before


def test_no_arguments_at_all(capsys):
    assert run([]) == 2
    assert len(lines(capsys)) == 1


@pytest.mark.parametrize("spec, message", [
    ("conv1=x", (r"^error: Engine stages must be auto, N or LAYER=N \(N a non-negative "
                 r"integer, comma-separated\), not 'conv1=x'$")),
    ("nope=1", (r"^error: Engine stages name layer 'nope', which is not a weight layer; weight "
                r"layers: conv1, fc$")),
    ("conv1=1", (r"^error: Layer 'conv1': engine stages must be 0 \(or auto\): its engine is "
                 r"no adder graph \(PE=1 SIMD=1, fixed, engine plain\); only fully unrolled "
                 r"constant-weight layers can be pipelined$")),
])
def test_bad_engine_stages_are_one_line_exit_2_and_nothing_is_written(spec, message, files,
                                                                      capsys):
    before = snapshot(files)
    assert run(["compile", files / "tiny.hwq", "--fold", "min", "--engine-stages", spec,
                "-o", files / "b"]) == 2
    err = lines(capsys)
    assert len(err) == 1 and re.search(message, err[0]), err
    assert snapshot(files) == before


def test_engine_stages_in_the_hwq_are_checked(files, capsys):
    def edit(h):
        h["layers"][-1]["engine_stages"] = -1

    path = files / "bad.hwq"
    path.write_bytes(repack(hwq.dumps(tiny_net()), header=edit))
    assert run(["compile", path, "-o", files / "b"]) == 2
    err = lines(capsys)
    assert len(err) == 1 and re.search(r"^error: .*bad\.hwq describes an invalid network: "
                                       r"Layer 'fc': Fold engine stages must be a non-negative "
                                       r"integer, not -1$", err[0]), err
