"""The flow steps shared by the CLI commands and the demo."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from .errors import HwquantError

__all__ = ["quantize_model", "METHODS"]

#: Quantization methods ``quantize`` accepts.
METHODS = ("fixed",)


def quantize_model(model_path, ds, dataset_info, *, method, wbits, abits, calib, seed):
    """Load ``model_path``, quantize it, measure float and golden accuracy; returns
    ``(network, report)``. Shared by ``quantize`` and ``demo``."""
    from . import golden
    from .data import calibration_split
    from .frontend import load_model
    from .quant.fixed import quantize_fixed
    from .simulate import quantize_input

    if method not in METHODS:
        raise HwquantError(f"Quantization method must be one of {', '.join(METHODS)}, "
                           f"not {method!r}")
    graph = load_model(model_path)
    if tuple(graph.input_shape) != tuple(ds.x_test.shape[1:]):
        raise HwquantError(f"Model input shape {tuple(graph.input_shape)} does not match the "
                           f"dataset's {tuple(ds.x_test.shape[1:])}")
    x_cal = calibration_split(ds, n=calib, seed=seed)
    # The float graph's reference forward (checked against torch by the front-end tests)
    # runs any batch size, also for programs exported with a static batch.
    logits = graph.run(ds.x_test)[graph.nodes[-1].name]
    float_acc = float((np.argmax(logits.reshape(len(logits), -1), axis=1) == ds.y_test).mean())
    net = quantize_fixed(graph, x_cal, wbits=wbits, abits=abits,
                         name=Path(model_path).stem.replace("-", "_") or "network",
                         metadata={"dataset": dataset_info, "model": os.path.abspath(model_path)})
    pred = golden.predict(net, quantize_input(net, ds.x_test))
    q_acc = float((pred == ds.y_test).mean())
    meta = dict(net.metadata, accuracy={"float": float_acc, "quantized": q_acc})
    net = dataclasses.replace(net, metadata=meta)
    report = {"method": method, "wbits": wbits, "abits": abits,
              "accuracy": {"float": float_acc, "quantized": q_acc},
              "layers": [{"name": layer.name, "kind": type(layer).__name__.lower(),
                          "out_format": layer.out_format.to_json()} for layer in net.layers]}
    return net, report
