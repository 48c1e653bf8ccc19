"""The flow steps shared by the CLI commands and the demo."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from .errors import HwquantError
from .quant.options import METHODS  # re-exported

__all__ = ["quantize_model", "check_logits", "float_accuracy", "golden_accuracy", "METHODS"]


def quantize_model(model_path, ds, dataset_info, *, method="fixed", wbits=8, abits=8, calib,
                   seed, options=None, log=None):
    """Load ``model_path``, quantize it, measure float and golden accuracy; returns
    ``(network, report)``. Shared by ``quantize``, ``compare`` and ``demo``.

    ``options`` (:class:`hwquant.quant.methods.QuantOptions`) selects method, bits, schedule
    and retraining; without it, ``method``/``wbits``/``abits`` with the method's defaults.
    """
    from .data import calibration_split
    from .frontend import load_model
    from .quant.methods import quantize_graph
    from .quant.options import QuantOptions, check_options

    opts = options or QuantOptions(method=method, wbits=wbits, abits=abits)
    check_options(opts)  # bad options fail before the model is even loaded
    graph = load_model(model_path)
    if tuple(graph.input_shape) != tuple(ds.x_test.shape[1:]):
        raise HwquantError(f"Model input shape {tuple(graph.input_shape)} does not match the "
                           f"dataset's {tuple(ds.x_test.shape[1:])}")
    check_logits(graph, ds)
    x_cal = calibration_split(ds, n=calib, seed=seed)
    float_acc = float_accuracy(graph, ds)
    net, history = quantize_graph(graph, ds, x_cal, opts,
                                  name=Path(model_path).stem.replace("-", "_") or "network",
                                  metadata={"dataset": dataset_info,
                                            "model": os.path.abspath(model_path)},
                                  log=log)
    q_acc = golden_accuracy(net, ds)
    meta = dict(net.metadata, accuracy={"float": float_acc, "quantized": q_acc})
    net = dataclasses.replace(net, metadata=meta)
    from .quant.report import layer_report

    report = {**opts.to_json(), "accuracy": {"float": float_acc, "quantized": q_acc},
              "history": history, "layer_report": layer_report(graph, net, x_cal),
              "layers": [{"name": layer.name, "kind": type(layer).__name__.lower(),
                          "encoding": getattr(layer, "encoding", None),
                          "out_format": layer.out_format.to_json()} for layer in net.layers]}
    return net, report


def check_logits(graph, ds) -> None:
    """Raise :class:`~hwquant.errors.HwquantError` unless the model's output (its logits)
    has one value per class of the dataset; an accuracy measured otherwise means nothing.
    A model without weight layers is left to the quantizer, which names that problem."""
    if not any(node.op in ("conv2d", "linear") for node in graph.nodes):
        return
    out = tuple(graph.nodes[-1].out_shape)
    width = int(np.prod(out))
    if width != ds.num_classes:
        shape = f"{width} logits" if len(out) == 1 else f"an output of shape {out}"
        raise HwquantError(f"Model produces {shape}, but the dataset has {ds.num_classes} "
                           f"classes (labels 0..{ds.num_classes - 1}); its last layer must "
                           f"have one output per class")


def float_accuracy(graph, ds) -> float:
    """Test accuracy of the float graph. Its reference forward (checked against torch by the
    front-end tests) runs any batch size, also for programs exported with a static batch."""
    logits = graph.run(ds.x_test)[graph.nodes[-1].name]
    return float((np.argmax(logits.reshape(len(logits), -1), axis=1) == ds.y_test).mean())


def golden_accuracy(net, ds) -> float:
    """Test accuracy of the integer golden model."""
    from . import golden
    from .simulate import quantize_input

    return float((golden.predict(net, quantize_input(net, ds.x_test)) == ds.y_test).mean())
