"""hwquant: quantized CNNs to bit-exact FPGA hardware.

The public API, imported lazily so that ``import hwquant.golden`` stays free of torch and
Amaranth::

    import hwquant
    graph = hwquant.from_module(model, example_input)        # or hwquant.load_model("m.pt2")
    net = hwquant.quantize_fixed(graph, x_calibration, wbits=8, abits=8)
    # or INQ / ternary with a schedule (retrains on dataset.x_train):
    opts = hwquant.QuantOptions(method="inq", wbits=4, schedule="incremental")
    net, history = hwquant.quantize_graph(graph, dataset, x_calibration, opts)
    hwquant.save(net, "net.hwq")
    hwquant.compile_network(net, "build", fold="auto")
    report = hwquant.simulate_build("build", vectors=16)
    estimate = hwquant.estimate_build("build", family="ice40", synth=True)
"""

import importlib

__all__ = [
    "ir", "golden", "hwq", "load", "save", "load_model", "from_module", "load_dataset",
    "quantize_fixed", "quantize_graph", "QuantOptions", "FakeQuantNetwork", "apply_folding", "compile_network", "simulate_build",
    "estimate_build", "HwquantError",
]

_LAZY = {
    "load": ("hwquant.hwq", "load"),
    "save": ("hwquant.hwq", "save"),
    "load_model": ("hwquant.frontend", "load_model"),
    "from_module": ("hwquant.frontend", "from_module"),
    "load_dataset": ("hwquant.data", "load_dataset"),
    "quantize_fixed": ("hwquant.quant.fixed", "quantize_fixed"),
    "quantize_graph": ("hwquant.quant.methods", "quantize_graph"),
    "QuantOptions": ("hwquant.quant.options", "QuantOptions"),
    "FakeQuantNetwork": ("hwquant.quant.fakequant", "FakeQuantNetwork"),
    "apply_folding": ("hwquant.fold", "apply_folding"),
    "compile_network": ("hwquant.compile", "compile_network"),
    "simulate_build": ("hwquant.simulate", "simulate_build"),
    "estimate_build": ("hwquant.estimate.report", "estimate_build"),
    "HwquantError": ("hwquant.errors", "HwquantError"),
}


def __getattr__(name):
    if name in ("ir", "golden", "hwq"):
        return importlib.import_module(f"hwquant.{name}")
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'hwquant' has no attribute {name!r}")
