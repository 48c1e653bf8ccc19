"""``hwquant run`` (:func:`hwquant.host.run_board`) against a simulated device: a thread on the
master side of a pseudo-terminal that reads requests in the host-link format, rebuilds each
image as the board's receive path does and answers with the golden model's class (and logits).
"""

import json
import os
import sys
import threading
import tty

import numpy as np
import pytest

from hwquant import golden, ir
from hwquant.cli import main
from hwquant.compile import compile_network, load_build
from hwquant.host import LinkFormat

sys.path.insert(0, os.path.dirname(__file__))
from netbuilders import weight_layer


def _digits_net():
    """conv -> maxpool -> flatten -> linear on the 8x8 digits input, recorded as quantized on
    digits (random weights: the accuracy is low, but it is the board's)."""
    rng = np.random.default_rng(0)
    fmt = ir.ActFormat(5, False, 0)
    c1 = weight_layer(rng, "c1", "input", (1, 8, 8), fmt, 2, conv=((3, 3), (1, 1), (1, 1)))
    mp = ir.MaxPool2d("mp", ("c1",), c1.out_shape, 2, 2, 0, c1.out_format)
    flat = ir.Flatten("flat", ("mp",), mp.out_shape, mp.out_format)
    fc = weight_layer(rng, "fc", "flat", flat.out_shape, flat.out_format, 10, last=True)
    return ir.Network("digits_host", (1, 8, 8), fmt, (c1, mp, flat, fc),
                      metadata={"dataset": {"name": "digits"}})


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("host") / "build"
    compile_network(_digits_net(), path)
    return path


class SimulatedBoard:
    """The board as the host sees it, on a pseudo-terminal (``port`` is its slave side).

    ``wrong`` lists image indices answered with another class; ``silent_after`` stops
    answering after that many images."""

    def __init__(self, net, *, logits=False, wrong=(), silent_after=None):
        self.net, self.link = net, LinkFormat.of(net, logits=logits)
        self.wrong, self.silent_after = set(wrong), silent_after
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.port = os.ttyname(self.slave)
        self.served = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _read(self, count):
        data = b""
        while len(data) < count:
            try:
                chunk = os.read(self.master, count - len(data))
            except OSError:  # the pseudo-terminal was closed
                return None
            if not chunk:
                return None
            data += chunk
        return data

    def _serve(self):
        link = self.link
        while True:
            request = self._read(link.image_bytes)
            if request is None:
                return
            if self.silent_after is not None and self.served >= self.silent_after:
                continue
            x = link.decode_image(request).reshape(1, *self.net.input_shape)
            logits = golden.run(self.net, x)[self.net.output.name].reshape(-1)
            cls = int(golden.predict(self.net, x)[0])
            if self.served in self.wrong:
                cls = (cls + 1) % link.classes
            self.served += 1  # before the reply: the host may finish as soon as it reads it
            os.write(self.master, link.encode_reply(cls, logits))

    def close(self):
        os.close(self.slave)
        os.close(self.master)
        self.thread.join(timeout=5)


@pytest.fixture
def board(build_dir):
    boards = []

    def make(**kwargs):
        b = SimulatedBoard(load_build(build_dir)[0], **kwargs)
        boards.append(b)
        return b

    yield make
    for b in boards:
        b.close()


def test_link_decode_image_inverts_encode():
    net = _digits_net()
    link = LinkFormat.of(net)
    x = np.random.default_rng(1).integers(0, 31, (1, 8, 8), endpoint=True)
    data = link.encode_image(x)
    assert len(data) == link.image_bytes == 64
    np.testing.assert_array_equal(link.decode_image(data).reshape(1, 8, 8), x)


@pytest.mark.parametrize("logits", [False, True])
def test_run_against_simulated_board(build_dir, board, tmp_path, capsys, logits):
    device = board(logits=logits)
    out = tmp_path / "run.json"
    argv = ["run", str(build_dir), "--port", device.port, "--images", "24", "--json", str(out)]
    assert main(argv + (["--logits"] if logits else [])) == 0
    report = json.loads(out.read_text())
    assert device.served == report["images"] == 24
    assert report["mismatches"] == 0
    assert report["accuracy"] == report["golden_accuracy"]
    assert 0 <= report["accuracy"] <= 1 and report["images_per_s"] > 0
    assert report["bytes_per_image"] == {"request": 64, "reply": 1 + (20 if logits else 0)}
    assert "board agrees with the golden model on 24 images; accuracy" in capsys.readouterr().err


def test_run_reports_a_board_that_disagrees(build_dir, board, tmp_path, capsys):
    device = board(wrong=(3, 7))
    out = tmp_path / "run.json"
    assert main(["run", str(build_dir), "--port", device.port, "--images", "10",
                 "--json", str(out)]) == 1
    assert "error: 2 of 10 board replies differ from the golden model" in \
        capsys.readouterr().err
    assert json.loads(out.read_text())["mismatches"] == 2


def test_run_reports_a_silent_board(build_dir, board, capsys):
    device = board(silent_after=2)
    assert main(["run", str(build_dir), "--port", device.port, "--images", "5",
                 "--timeout", "0.3"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: The board on {device.port} did not answer image 2 "
                              f"within 0.3 s (got 0 of 1 bytes)")


def test_run_bad_input(build_dir, tmp_path, capsys):
    assert main(["run", str(build_dir), "--port", str(tmp_path / "nodev")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: Cannot open serial port '{tmp_path / 'nodev'}' at "
                              f"115200 baud: ")
    assert not any("Traceback" in line for line in err)
    assert main(["run", str(tmp_path), "--port", "/dev/null"]) == 2
    assert "is not a hwquant build directory" in capsys.readouterr().err
