"""From a trained torch model to a float graph: the quantizer's input.

A :class:`FloatGraph` is the model as hwquant sees it: layers from a short list (``conv2d``,
``linear``, ``maxpool2d``, ``avgpool2d``, ``flatten``, ``add``), BatchNorm folded into the
preceding convolution or linear layer, ReLU fused into its producer, float64 weights, and a NumPy
reference forward pass (:meth:`FloatGraph.run`) that matches the torch model.

Models come in as :mod:`torch.export` programs (``.pt2``). :func:`from_exported` walks the ATen
graph that torch 2.13 emits for eval-mode modules (``aten.conv2d``, ``aten.batch_norm``,
``aten.relu``, ``aten.max_pool2d``, ``aten.avg_pool2d``, ``aten.adaptive_avg_pool2d``,
``aten.mean.dim``, ``aten.flatten.using_ints``, ``aten.view``/``reshape``, ``aten.linear``,
``aten.add.Tensor`` and no-ops such as ``aten.dropout``); anything else raises
:class:`hwquant.errors.UnsupportedLayerError` naming the layer, the offending parameter and what
is supported.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass

import numpy as np

from .errors import UnsupportedLayerError
from .golden.network import im2col

__all__ = [
    "FloatNode",
    "FloatGraph",
    "OPS",
    "SUPPORTED_OPERATIONS",
    "from_exported",
    "from_module",
    "load_model",
]

#: The layer kinds of a :class:`FloatGraph`.
OPS = ("conv2d", "linear", "maxpool2d", "avgpool2d", "flatten", "add")

#: What the frontend accepts, as listed in its error messages.
SUPPORTED_OPERATIONS = (
    "conv2d", "convolution", "linear", "batch_norm", "relu", "max_pool2d", "avg_pool2d",
    "adaptive_avg_pool2d", "mean.dim (global average)", "flatten/view/reshape (flatten only)",
    "add.Tensor", "dropout/clone/alias/detach (no-ops)",
)


def _freeze(arr):
    if arr is None:
        return None
    arr = np.array(arr, dtype=np.float64, copy=True)
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class FloatNode:
    """One layer of a :class:`FloatGraph`.

    Parameters
    ----------
    name : str
        Unique identifier, from the module path (``"conv1"``, ``"features_0"``) for conv2d and
        linear, ``<op><index>`` (``"maxpool2d0"``) for the others.
    op : str
        One of :data:`OPS`.
    inputs : tuple of str
        Producer names; ``"input"`` is the graph input. ``add`` has two.
    in_shape, out_shape : tuple
        ``(C, H, W)`` or ``(N,)``, without the batch axis.
    relu : bool
        A ReLU follows and was fused into this node (conv2d, linear, add, avgpool2d).
    weight, bias : numpy.ndarray or None
        float64, BatchNorm folded in: conv ``(OC, IC, KH, KW)``, linear ``(OUT, IN)``; bias
        ``(OC,)`` (zeros if the layer had none).
    kernel, stride, padding : tuple or None
        Pairs, for conv2d and the pools.
    """

    name: str
    op: str
    inputs: tuple
    in_shape: tuple
    out_shape: tuple
    relu: bool = False
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    kernel: tuple | None = None
    stride: tuple | None = None
    padding: tuple | None = None

    def __post_init__(self):
        if self.op not in OPS:
            raise ValueError(f"Layer '{self.name}': op must be one of {', '.join(OPS)}, "
                             f"not {self.op!r}")
        object.__setattr__(self, "weight", _freeze(self.weight))
        object.__setattr__(self, "bias", _freeze(self.bias))
        for what in ("inputs", "in_shape", "out_shape"):
            object.__setattr__(self, what, tuple(getattr(self, what)))

    def __repr__(self):
        extra = "".join(f", {k}={getattr(self, k)}" for k in ("kernel", "stride", "padding")
                        if getattr(self, k) is not None)
        return (f"FloatNode({self.name!r}, {self.op!r}, inputs={self.inputs}, "
                f"{self.in_shape} -> {self.out_shape}{', relu' if self.relu else ''}{extra})")


def _run_node(node, args):
    x = args[0]
    if node.op == "conv2d":
        cols = im2col(x, node.kernel, node.stride, node.padding)
        n, oh, ow = cols.shape[:3]
        w = node.weight.reshape(len(node.weight), -1)
        y = (cols.reshape(n * oh * ow, -1) @ w.T + node.bias).reshape(n, oh, ow, -1)
        y = y.transpose(0, 3, 1, 2)
    elif node.op == "linear":
        y = x @ node.weight.T + node.bias
    elif node.op == "maxpool2d":
        cols = im2col(x, node.kernel, node.stride, node.padding, -np.inf)
        y = cols.max(axis=(4, 5)).transpose(0, 3, 1, 2)
    elif node.op == "avgpool2d":  # padding counts as zeros (count_include_pad=True)
        cols = im2col(x, node.kernel, node.stride, node.padding, 0.0)
        y = cols.mean(axis=(4, 5)).transpose(0, 3, 1, 2)
    elif node.op == "flatten":
        y = x.reshape(len(x), -1)
    else:  # add
        y = args[0] + args[1]
    return np.maximum(y, 0.0) if node.relu else y


@dataclass(frozen=True)
class FloatGraph:
    """A float model in hwquant's layer vocabulary, nodes in topological order.

    The last node is the output (the logits). :meth:`run` is the float64 reference.
    """

    input_shape: tuple
    nodes: tuple

    def __post_init__(self):
        object.__setattr__(self, "input_shape", tuple(int(v) for v in self.input_shape))
        object.__setattr__(self, "nodes", tuple(self.nodes))
        if not self.nodes:
            raise ValueError("Float graph has no layers")
        seen = {"input": self.input_shape}
        for node in self.nodes:
            if node.name in seen:
                raise ValueError(f"Layer name {node.name!r} is used twice (or is reserved)")
            for src in node.inputs:
                if src not in seen:
                    raise ValueError(f"Layer '{node.name}' reads {src!r}, which is not "
                                     f"defined before it")
                if seen[src] != node.in_shape:
                    raise ValueError(f"Layer '{node.name}': input shape {node.in_shape} does "
                                     f"not match producer shape {seen[src]}")
            seen[node.name] = node.out_shape

    @property
    def output(self) -> FloatNode:
        return self.nodes[-1]

    def node(self, name: str) -> FloatNode:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(f"Float graph has no layer named {name!r}")

    def consumers(self, name: str) -> tuple:
        return tuple(node for node in self.nodes if name in node.inputs)

    def run(self, x) -> dict:
        """Float64 forward pass; every node's output by name, plus ``"input"`` (batch first).

        Raises
        ------
        ValueError
            If ``x`` is not a batch of inputs of shape ``(N, *input_shape)``.
        """
        x = np.asarray(x, dtype=np.float64)
        if x.shape[1:] != self.input_shape or x.ndim != len(self.input_shape) + 1:
            raise ValueError(f"Input batch must have shape "
                             f"(N, {', '.join(map(str, self.input_shape))}), not {x.shape}")
        values = {"input": x}
        for node in self.nodes:
            values[node.name] = _run_node(node, [values[s] for s in node.inputs])
        return values

    def __repr__(self):
        body = "".join(f"\n  {node!r}," for node in self.nodes)
        return f"FloatGraph(input_shape={self.input_shape}, nodes=({body}\n))"


def from_module(module, example_input) -> FloatGraph:
    """Export ``module`` (:func:`hwquant.train.export_program`: eval mode, dynamic batch axis)
    and convert it with :func:`from_exported`."""
    from .train import export_program

    return from_exported(export_program(module, example_input))


def load_model(path) -> FloatGraph:
    """Load a ``.pt2`` file (:func:`hwquant.train.load_exported`) and convert it
    (:func:`from_exported`)."""
    from .train import load_exported

    return from_exported(load_exported(path))


def from_exported(ep) -> FloatGraph:
    """Convert a :class:`torch.export.ExportedProgram` into a :class:`FloatGraph`.

    BatchNorm is folded into the conv/linear before it (``w' = w·γ/σ``,
    ``b' = (b − μ)·γ/σ + β``, ``σ = sqrt(var + eps)``); ReLU is fused into its producer
    (through max pools and flattens, which commute with it).

    Raises
    ------
    UnsupportedLayerError
        For an operation or parameter hwquant cannot map; the message names the layer, the ATen
        operation, the parameter and what is supported.
    """
    walker = _Walker(ep)
    walker.walk()
    return FloatGraph(input_shape=walker.input_shape,
                      nodes=tuple(FloatNode(**spec) for spec in walker.live_specs()))


# -- the ATen graph walk ------------------------------------------------------------------------

_FUSABLE = ("conv2d", "linear", "add", "avgpool2d")  # ReLU fuses into these
_RELU_COMMUTES = ("maxpool2d", "flatten")  # relu(f(x)) == f(relu(x))
_NOOPS = ("aten.dropout.default", "aten.feature_dropout.default", "aten.alpha_dropout.default",
          "aten.feature_alpha_dropout.default", "aten.clone.default", "aten.alias.default",
          "aten.detach.default")
_RESHAPES = ("aten.flatten.using_ints", "aten.view.default", "aten.reshape.default",
             "aten._unsafe_view.default", "aten.squeeze.default", "aten.squeeze.dim",
             "aten.squeeze.dims")


def _bind(fx):
    """Arguments of an ATen call by schema name, defaults filled in."""
    out = {}
    for i, arg in enumerate(fx.target._schema.arguments):
        if i < len(fx.args):
            out[arg.name] = fx.args[i]
        elif arg.name in fx.kwargs:
            out[arg.name] = fx.kwargs[arg.name]
        else:
            out[arg.name] = arg.default_value if arg.has_default_value() else None
    return out


def _pair(value, default=None):
    if isinstance(value, (list, tuple)):
        if len(value) == 0 and default is not None:
            return tuple(default)
        value = tuple(int(v) for v in value)
        return value * 2 if len(value) == 1 else value
    return (int(value), int(value))


def _val(fx):
    val = fx.meta.get("val")
    return val[0] if isinstance(val, (tuple, list)) else val


def _shape(fx):
    return tuple(int(d) for d in _val(fx).shape[1:])


class _Walker:
    """Turns ``ep.graph`` into node specs: one pass converts ATen calls (BatchNorm and ReLU as
    pseudo-nodes), a second folds BatchNorm and fuses ReLU, a third drops dead nodes."""

    def __init__(self, ep):
        import torch

        self.torch = torch
        self.ep = ep
        self.params = {}  # placeholder name -> (state-dict key, float64 array)
        for spec in ep.graph_signature.input_specs:
            if spec.kind.name in ("PARAMETER", "BUFFER", "CONSTANT_TENSOR"):
                src = ep.state_dict if spec.target in ep.state_dict else ep.constants
                value = src[spec.target].detach().to(torch.float64).numpy()
                self.params[spec.arg.name] = (spec.target, value)
        self.values = {}  # fx node -> spec name (or "input")
        self.specs = {}  # name -> spec dict, in topological order
        self.alias = {}  # removed pseudo-node -> the node that now carries its value
        self.names = {"input"}
        self.counters = {}
        self.shapes = {}
        self.output = None
        self.input_shape = None

    # -- helpers --------------------------------------------------------------------------------
    def fail(self, fx, name, message):
        raise UnsupportedLayerError(f"Layer '{name}' ({fx.target}): {message}")

    def new_name(self, op, path=None):
        if path is None:
            index = self.counters.get(op, 0)
            self.counters[op] = index + 1
            base = f"{op}{index}"
        else:
            base = re.sub(r"[^0-9A-Za-z_]", "_", path)
            if not base.isidentifier() or keyword.iskeyword(base):
                base = f"{op}_{base}" if base else op
        name, n = base, 1
        while name in self.names:
            name, n = f"{base}_{n}", n + 1
        self.names.add(name)
        return name

    def module_path(self, fx, key=None):
        """Module path from a parameter key (``features.0.weight``) or the module stack."""
        if key is not None:
            return key.rsplit(".", 1)[0] if "." in key else key
        stack = fx.meta.get("nn_module_stack") or {}
        return list(stack.values())[-1][0] if stack else ""

    def act(self, fx, name, arg, what="input"):
        if getattr(arg, "name", None) in self.params:
            self.fail(fx, name, f"{what} must be an activation, not the model parameter "
                                f"'{self.params[arg.name][0]}'")
        if arg not in self.values:
            self.fail(fx, name, f"{what} must be an activation tensor, not {arg!r}")
        return self.values[arg]

    def param(self, fx, name, arg, what):
        if arg is None:
            return None
        if getattr(arg, "name", None) not in self.params:
            self.fail(fx, name, f"{what} must be a parameter or buffer of the model, not a "
                                f"computed tensor")
        return self.params[arg.name][1]

    def add_spec(self, fx, name, op, inputs, in_shape, out_shape, **fields):
        spec = {"name": name, "op": op, "inputs": tuple(inputs), "in_shape": in_shape,
                "out_shape": out_shape, "relu": False, "weight": None, "bias": None,
                "kernel": None, "stride": None, "padding": None, "_fx": fx}
        spec.update(fields)
        self.specs[name] = spec
        self.shapes[name] = out_shape
        return name

    def resolve(self, name):
        while name in self.alias:
            name = self.alias[name]
        return name

    def consumers(self, name):
        out = [s["name"] for s in self.specs.values()
               if name in (self.resolve(i) for i in s["inputs"])]
        return out + (["<output>"] if self.resolve(self.output) == name else [])

    # -- pass 1: ATen calls -> specs ------------------------------------------------------------
    def walk(self):
        torch = self.torch
        user_inputs = [fx for fx in self.ep.graph.nodes if fx.op == "placeholder"
                       and fx.name not in self.params and isinstance(_val(fx), torch.Tensor)]
        if len(user_inputs) != 1:
            raise UnsupportedLayerError(f"Model must take exactly one tensor input, not "
                                        f"{len(user_inputs)}")
        x = user_inputs[0]
        if _val(x).ndim not in (2, 4):
            raise UnsupportedLayerError(f"Model input must have shape (N, C, H, W) or (N, F), "
                                        f"not (N, {', '.join(map(str, _shape(x)))})")
        self.input_shape = _shape(x)
        self.values[x] = "input"
        self.shapes["input"] = self.input_shape
        for fx in self.ep.graph.nodes:
            if fx.op == "output":
                outs = fx.args[0] if isinstance(fx.args[0], (tuple, list)) else (fx.args[0],)
                if len(outs) != 1:
                    raise UnsupportedLayerError(f"Model must have exactly one output, not "
                                                f"{len(outs)}")
                if outs[0] not in self.values:
                    raise UnsupportedLayerError(f"Model output must be a tensor computed from "
                                                f"the input, not {outs[0]!r}")
                self.output = self.values[outs[0]]
            elif fx.op == "call_function":
                val = fx.meta.get("val")
                if not isinstance(val, (torch.Tensor, tuple, list)):
                    continue  # shape arithmetic (aten.sym_size.int) and assertions
                self.visit(fx)
            elif fx.op != "placeholder":
                raise UnsupportedLayerError(f"Operation '{fx.name}' ({fx.op} {fx.target}) is "
                                            f"not supported; supported operations are "
                                            f"{', '.join(SUPPORTED_OPERATIONS)}")
        if self.output == "input":
            raise UnsupportedLayerError("Model computes nothing: its output is its input")
        self.fuse()

    def visit(self, fx):
        target = "getitem" if getattr(fx.target, "__name__", "") == "getitem" else str(fx.target)
        if target in _NOOPS:
            a = _bind(fx)
            if a.get("train"):
                self.fail(fx, fx.name, "train must be False (export the model in eval mode)")
            self.values[fx] = self.act(fx, fx.name, fx.args[0])
        elif target == "getitem":
            if fx.args[0] not in self.values or fx.args[1] != 0:
                self.fail(fx, fx.name, f"only the first output of {fx.args[0].target} is "
                                       f"supported, not output {fx.args[1]}")
            self.values[fx] = self.values[fx.args[0]]
        elif target in _RESHAPES:
            self.reshape(fx)
        else:
            handler = _HANDLERS.get(target.rsplit(".", 1)[0] if target not in _HANDLERS
                                    else target)
            if handler is None:
                path = self.module_path(fx)
                where = f" in module '{path}'" if path else ""
                raise UnsupportedLayerError(
                    f"Operation '{fx.name}' ({target}){where} is not supported; supported "
                    f"operations are {', '.join(SUPPORTED_OPERATIONS)}")
            handler(self, fx, _bind(fx))

    def conv(self, fx, a):
        weight = a["weight"]
        key = self.params.get(getattr(weight, "name", None), (None,))[0]
        name = self.new_name("conv2d", self.module_path(fx, key))
        x = self.act(fx, name, a["input"])
        w = self.param(fx, name, weight, "weight")
        b = self.param(fx, name, a["bias"], "bias")
        if len(self.shapes[x]) != 3:
            self.fail(fx, name, f"input must be a (C, H, W) feature map, not shape "
                                f"{self.shapes[x]}")
        if a.get("transposed"):
            self.fail(fx, name, "transposed must be False (transposed convolution is not "
                                "supported)")
        if int(a["groups"]) != 1:
            self.fail(fx, name, f"groups must be 1, not {a['groups']}")
        if _pair(a["dilation"]) != (1, 1):
            self.fail(fx, name, f"dilation must be (1, 1), not {_pair(a['dilation'])}")
        kernel = tuple(int(k) for k in w.shape[2:])
        stride, padding = _pair(a["stride"]), a["padding"]
        if padding == "valid":
            padding = (0, 0)
        elif padding == "same":
            if stride != (1, 1) or kernel[0] % 2 == 0 or kernel[1] % 2 == 0:
                self.fail(fx, name, f"padding 'same' is only supported with stride 1 and odd "
                                    f"kernels, not stride {stride} and kernel {kernel}")
            padding = (kernel[0] // 2, kernel[1] // 2)
        else:
            padding = _pair(padding)
        bias = np.zeros(len(w)) if b is None else b
        self.values[fx] = self.add_spec(fx, name, "conv2d", (x,), self.shapes[x], _shape(fx),
                                        weight=w, bias=bias, kernel=kernel, stride=stride,
                                        padding=padding)

    def linear(self, fx, a):
        weight = a["weight"]
        key = self.params.get(getattr(weight, "name", None), (None,))[0]
        name = self.new_name("linear", self.module_path(fx, key))
        x = self.act(fx, name, a["input"])
        w = self.param(fx, name, weight, "weight")
        b = self.param(fx, name, a["bias"], "bias")
        if len(self.shapes[x]) != 1:
            self.fail(fx, name, f"input must be a vector (flatten it first), not shape "
                                f"{self.shapes[x]}")
        bias = np.zeros(len(w)) if b is None else b
        self.values[fx] = self.add_spec(fx, name, "linear", (x,), self.shapes[x], _shape(fx),
                                        weight=w, bias=bias)

    def batch_norm(self, fx, a):
        keyed = a["weight"] if a["weight"] is not None else a["running_mean"]
        key = self.params.get(getattr(keyed, "name", None), (None,))[0]
        label = self.new_name("batch_norm", self.module_path(fx, key))
        x = self.act(fx, label, a["input"])
        if a.get("training"):
            self.fail(fx, label, "training must be False (export the model in eval mode)")
        if a["running_mean"] is None or a["running_var"] is None:
            self.fail(fx, label, "running statistics are required "
                                 "(track_running_stats must be True)")
        stats = {k: self.param(fx, label, a[k], k)
                 for k in ("weight", "bias", "running_mean", "running_var")}
        stats["eps"] = float(a["eps"])
        self.values[fx] = self.add_spec(fx, "%" + label, "batch_norm", (x,), self.shapes[x],
                                        self.shapes[x], label=label, stats=stats)

    def relu(self, fx, a):
        x = self.act(fx, fx.name, a["self"])
        self.values[fx] = self.add_spec(fx, "%" + fx.name, "relu", (x,), self.shapes[x],
                                        self.shapes[x], label=fx.name)

    def pool(self, fx, a, op, kernel=None, stride=None, padding=(0, 0), out_shape=None):
        name = self.new_name(op)
        x = self.act(fx, name, a["self"])
        if len(self.shapes[x]) != 3:
            self.fail(fx, name, f"input must be a (C, H, W) feature map, not shape "
                                f"{self.shapes[x]}")
        if kernel is None:
            kernel = _pair(a["kernel_size"])
            stride, padding = _pair(a["stride"], kernel), _pair(a["padding"])
            if a.get("ceil_mode"):
                self.fail(fx, name, "ceil_mode must be False, not True")
            if op == "maxpool2d" and _pair(a["dilation"]) != (1, 1):
                self.fail(fx, name, f"dilation must be (1, 1), not {_pair(a['dilation'])}")
            if op == "avgpool2d" and a["divisor_override"] is not None:
                self.fail(fx, name, f"divisor_override must be None, not "
                                    f"{a['divisor_override']}")
            if op == "avgpool2d" and not a["count_include_pad"] and padding != (0, 0):
                self.fail(fx, name, f"count_include_pad must be True when padding is used, "
                                    f"not False with padding {padding}")
            if 2 * padding[0] > kernel[0] or 2 * padding[1] > kernel[1]:
                self.fail(fx, name, f"padding must be at most half the kernel {kernel}, not "
                                    f"{padding}")
        return self.add_spec(fx, name, op, (x,), self.shapes[x], out_shape or _shape(fx),
                             kernel=kernel, stride=stride, padding=padding)

    def max_pool(self, fx, a):
        self.values[fx] = self.pool(fx, a, "maxpool2d")

    def avg_pool(self, fx, a):
        self.values[fx] = self.pool(fx, a, "avgpool2d")

    def adaptive_avg_pool(self, fx, a):
        x = self.values.get(a["self"])
        shape = self.shapes.get(x, ())
        out = _pair(a["output_size"])
        if len(shape) != 3 or shape[1] % out[0] or shape[2] % out[1]:
            self.fail(fx, fx.name, f"output_size must divide the input size "
                                   f"{shape[1:] if len(shape) == 3 else shape}, not {out}")
        kernel = (shape[1] // out[0], shape[2] // out[1])
        if kernel == (1, 1):
            self.values[fx] = x
        else:
            self.values[fx] = self.pool(fx, a, "avgpool2d", kernel, kernel)

    def mean(self, fx, a):
        x = self.values.get(a["self"])
        shape = self.shapes.get(x, ())
        dims = sorted(int(d) % (len(shape) + 1) for d in (a["dim"] or ()))
        if len(shape) != 3 or dims != [2, 3] or a.get("dtype") is not None:
            self.fail(fx, fx.name, f"only the global average over dims (2, 3) of a (C, H, W) "
                                   f"feature map is supported, not dims {a['dim']} of shape "
                                   f"{shape}")
        pooled = self.pool(fx, a, "avgpool2d", shape[1:], shape[1:], out_shape=(shape[0], 1, 1))
        if a["keepdim"]:
            self.values[fx] = pooled
        else:
            self.values[fx] = self.add_spec(fx, self.new_name("flatten"), "flatten", (pooled,),
                                            (shape[0], 1, 1), (shape[0],))

    def reshape(self, fx):
        src = fx.args[0]
        x = self.act(fx, fx.name, src)
        in_val, out_val = _val(src), _val(fx)
        if out_val.ndim == 0 or str(out_val.shape[0]) != str(in_val.shape[0]):
            shapes = [tuple(str(d) for d in v.shape) for v in (in_val, out_val)]
            self.fail(fx, fx.name, f"the batch axis must be kept, not reshaped: "
                                   f"{shapes[0]} to {shapes[1]}".replace("'", ""))
        in_shape, out_shape = self.shapes[x], _shape(fx)
        if out_shape == in_shape:
            self.values[fx] = x
        elif len(in_shape) == 3 and out_shape == (int(np.prod(in_shape)),):
            self.values[fx] = self.add_spec(fx, self.new_name("flatten"), "flatten", (x,),
                                            in_shape, out_shape)
        else:
            self.fail(fx, fx.name, f"only a flatten of (C, H, W) to (C*H*W,) is supported, "
                                   f"not a reshape of {in_shape} to {out_shape}")

    def add(self, fx, a):
        name = self.new_name("add")
        if a.get("alpha", 1) != 1:
            self.fail(fx, name, f"alpha must be 1, not {a['alpha']}")
        lhs = self.act(fx, name, a["self"], "first operand")
        rhs = self.act(fx, name, a["other"], "second operand")
        if self.shapes[lhs] != self.shapes[rhs]:
            self.fail(fx, name, f"operands must have the same shape, not {self.shapes[lhs]} and "
                                f"{self.shapes[rhs]} (broadcasting is not supported)")
        self.values[fx] = self.add_spec(fx, name, "add", (lhs, rhs), self.shapes[lhs],
                                        _shape(fx))

    # -- pass 2: fold BatchNorm, fuse ReLU --------------------------------------------------------
    def fuse(self):
        for key in list(self.specs):
            spec = self.specs[key]
            if spec["op"] == "batch_norm":
                self.fold_batch_norm(spec)
            elif spec["op"] == "relu":
                self.fuse_relu(spec)

    def fold_batch_norm(self, bn):
        fx, label = bn["_fx"], bn["label"]
        src = self.resolve(bn["inputs"][0])
        prod = self.specs.get(src)
        if prod is None or prod["op"] not in ("conv2d", "linear") or prod["relu"] \
                or self.consumers(src) != [bn["name"]]:
            what = "the model input" if prod is None else \
                f"{prod['op']}{' + relu' if prod['relu'] else ''} '{src}'"
            self.fail(fx, label, f"BatchNorm must directly follow a conv2d or linear layer "
                                 f"that has no other consumers, not {what}")
        s = bn["stats"]
        n = len(prod["weight"])
        gamma = np.ones(n) if s["weight"] is None else s["weight"]
        beta = np.zeros(n) if s["bias"] is None else s["bias"]
        scale = gamma / np.sqrt(s["running_var"] + s["eps"])
        prod["weight"] = prod["weight"] * scale.reshape((n,) + (1,) * (prod["weight"].ndim - 1))
        prod["bias"] = (prod["bias"] - s["running_mean"]) * scale + beta
        del self.specs[bn["name"]]
        self.alias[bn["name"]] = src

    def fuse_relu(self, relu):
        fx, label = relu["_fx"], relu["label"]
        top = self.resolve(relu["inputs"][0])
        user, cur = relu["name"], top
        while True:
            prod = self.specs.get(cur)
            if prod is None:
                self.fail(fx, label, "ReLU on the model input cannot be fused; ReLU must follow "
                                     "a conv2d, linear, add or avgpool2d layer")
            if self.consumers(cur) != [user]:
                self.fail(fx, label, f"ReLU cannot be fused into {prod['op']} '{cur}', which "
                                     f"has other consumers")
            if prod["op"] in _FUSABLE:
                prod["relu"] = True
                break
            if prod["op"] not in _RELU_COMMUTES:
                self.fail(fx, label, f"ReLU must follow a conv2d, linear, add or avgpool2d "
                                     f"layer, not {prod['op']} '{cur}'")
            user, cur = cur, self.resolve(prod["inputs"][0])
        del self.specs[relu["name"]]
        self.alias[relu["name"]] = top

    # -- pass 3: live nodes -------------------------------------------------------------------------
    def live_specs(self):
        live = {self.resolve(self.output)}
        for spec in reversed(list(self.specs.values())):
            if spec["name"] in live:
                live.update(self.resolve(i) for i in spec["inputs"])
        out = []
        for spec in self.specs.values():
            if spec["name"] in live:
                fields = {k: v for k, v in spec.items()
                          if not k.startswith("_") and k not in ("label", "stats")}
                fields["inputs"] = tuple(self.resolve(i) for i in spec["inputs"])
                out.append(fields)
        return out


_HANDLERS = {
    "aten.conv2d": _Walker.conv,
    "aten.convolution": _Walker.conv,
    "aten.linear": _Walker.linear,
    "aten.batch_norm": _Walker.batch_norm,
    "aten._native_batch_norm_legit_no_training": _Walker.batch_norm,
    "aten.relu": _Walker.relu,
    "aten.relu_": _Walker.relu,
    "aten.max_pool2d": _Walker.max_pool,
    "aten.max_pool2d_with_indices": _Walker.max_pool,
    "aten.avg_pool2d": _Walker.avg_pool,
    "aten.adaptive_avg_pool2d": _Walker.adaptive_avg_pool,
    "aten._adaptive_avg_pool2d": _Walker.adaptive_avg_pool,
    "aten.mean.dim": _Walker.mean,
    "aten.add.Tensor": _Walker.add,
    "aten.add_.Tensor": _Walker.add,
}
