"""Network-flow helpers of the tests that run models through the command line (quantize ->
compile -> ``hwquant sim``): small data sets saved as ``.npz`` splits, the one full-batch
training loop of the tests' own models, their static-batch export, the "unseen" model no
other test's shapes match, and the quantize -> compile -> sim round trip."""

import json

import numpy as np
import torch
from torch import nn

from hwquant import golden, hwq
from hwquant.cli import main
from hwquant.golden.exact import int64_only
from hwquant.quant.fakequant import FakeQuantNetwork
from hwquant.simulate import quantize_input

__all__ = ["save_split", "train_full_batch", "export", "UnseenCnn", "make_unseen",
           "quantize_compile_sim", "quantize_bdcnn", "assert_integer_faces_agree"]


def save_split(path, x, y, n_train, **extra):
    """Save ``(x, y)`` as a ``--data`` ``.npz``: the first ``n_train`` samples the training
    split, the rest the test split (``extra`` arrays stored as well); returns ``path``."""
    np.savez(path, x_train=x[:n_train], y_train=y[:n_train], x_test=x[n_train:],
             y_test=y[n_train:], **extra)
    return path


def train_full_batch(model, x, y, *, epochs, lr=1e-2, weight_decay=0.0, freeze=None):
    """Train ``model`` with Adam on all of ``(x, y)`` as one batch (cross-entropy), ``epochs``
    steps; ``freeze`` (:func:`hwquant.templates.fix_templates`) keeps its weights fixed.
    Returns ``model`` in eval mode. Seed torch before building the model."""
    opt = torch.optim.Adam(model.parameters(), lr, weight_decay=weight_decay)
    xt, yt = torch.tensor(x), torch.tensor(y)
    for _ in range(epochs):
        opt.zero_grad()
        nn.functional.cross_entropy(model(xt), yt).backward()
        if freeze is not None:
            freeze.mask_grads()
        opt.step()
        if freeze is not None:
            freeze.restore()
    model.eval()
    return model


def export(model, example, path):
    """Export ``model`` with :func:`torch.export.export` on the batch ``example`` (static
    batch size) and save it to ``path``; returns ``path``."""
    torch.export.save(torch.export.export(model, (torch.tensor(example),)), path)
    return path


class UnseenCnn(nn.Module):
    """Shapes no other test uses: 3 channels, 5x5 kernel with stride 2 and padding 2, no bias
    + BatchNorm, 3x3 conv without padding, average pooling, 12 output channels."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 12, 5, stride=2, padding=2, bias=False)
        self.bn = nn.BatchNorm2d(12)
        self.conv = nn.Conv2d(12, 6, 3)
        self.pool = nn.AvgPool2d(2)
        self.head = nn.Linear(6 * 2 * 2, 4)

    def forward(self, x):
        x = torch.relu(self.bn(self.stem(x)))
        x = self.pool(torch.relu(self.conv(x)))
        return self.head(torch.flatten(x, 1))


def make_unseen(tmp_path):
    """Train :class:`UnseenCnn` on random signed 3-channel data; returns ``(model.pt2,
    data.npz)``."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(160, 3, 12, 12)).astype(np.float32)
    y = (x[:, 0, :6].mean(axis=(1, 2)) > 0).astype(np.int64) * 2 + \
        (x[:, 1, :, :6].mean(axis=(1, 2)) > 0).astype(np.int64)
    data = save_split(tmp_path / "data.npz", x, y, 120)
    torch.manual_seed(0)
    model = train_full_batch(UnseenCnn(), x[:120], y[:120], epochs=40)
    return export(model, x[:2], tmp_path / "unseen.pt2"), data


def quantize_compile_sim(model, tmp_path, quant_args, fold, vectors=8, data=None,
                         compile_args=()):
    """``hwquant quantize`` (``quant_args``) -> ``compile --fold fold`` (and
    ``compile_args``) -> ``sim`` (random stalls) of ``model``: bit-exact, every stream
    complete, cycles within 5 % of the model. Returns ``(quantize report, network)``."""
    data_args = ["--data", str(data)] if data else []
    q, s = tmp_path / "q.json", tmp_path / "s.json"
    assert main(["quantize", str(model), *quant_args, *data_args, "--quiet",
                 "-o", str(tmp_path / "n.hwq"), "--json", str(q)]) == 0
    assert main(["compile", str(tmp_path / "n.hwq"), "--fold", fold, *compile_args,
                 "-o", str(tmp_path / "build")]) == 0
    assert main(["sim", str(tmp_path / "build"), "--vectors", str(vectors), "--seed", "5",
                 "--stall", "0.3", "--json", str(s)]) == 0
    res = json.loads(s.read_text())
    assert res["passed"] and res["mismatches"] == 0 and res["vectors"] == vectors
    for name, stream in res["streams"].items():
        assert stream["received"] == stream["expected"] > 0, name
    assert abs(res["cycle_error"]) <= 0.05, res
    return json.loads(q.read_text()), hwq.load(tmp_path / "n.hwq")


def quantize_bdcnn(model, tmp_path, *args):
    """``hwquant quantize --method bdcnn`` of ``model`` with ``args`` into ``tmp_path``;
    returns ``(exit code, n.hwq, q.json)``."""
    out, rep = tmp_path / "n.hwq", tmp_path / "q.json"
    code = main(["quantize", str(model), "--method", "bdcnn", *args, "--quiet",
                 "-o", str(out), "--json", str(rep)])
    return code, out, rep


def assert_integer_faces_agree(net, x):
    """The golden model, its int64-only path and the fake-quant network give the same
    integers at every layer of ``net`` on the real inputs ``x`` (quantized to the input
    format); returns the golden outputs (``{layer name: array}``)."""
    x_int = quantize_input(net, np.asarray(x))
    gold = golden.run(net, x_int)
    with int64_only():
        ref = golden.run(net, x_int)
    fq = FakeQuantNetwork(net).integer_outputs(x_int)
    for name in gold:
        np.testing.assert_array_equal(fq[name], gold[name], err_msg=name)
        np.testing.assert_array_equal(ref[name], gold[name], err_msg=name)
    return gold
