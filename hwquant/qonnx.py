"""QONNX import: an already quantized model (Brevitas ``export_qonnx``, FINN, hls4ml) -> IR.

The model is read with qonnx's ``ModelWrapper``, cleaned up (``qonnx.util.cleanup``: shape
inference, constant folding, unique names) and given datatypes (``InferDataTypes``); then its
nodes are mapped onto :mod:`hwquant.ir`, keeping the trained integers:

* ``Quant`` on a weight initializer: the integer weights are qonnx's own ``int_quant`` of the
  float weights divided by the (per-tensor or per-output-channel) scale; they must be integers
  in the quantizer's range. ``BipolarQuant`` on a weight: weights ``-1``/``+1``, the
  ``binary`` kind.
* ``Quant`` on the model input: the network input format (bits, signed; ``2**-frac`` the
  scale, a scale that is not a power of two gets the nearest one, said in a note).
* ``Conv`` / ``Gemm`` / ``MatMul`` on a quantized tensor open a weight layer; what follows its
  accumulator up to the next activation quantizer (``BatchNormalization``, ``Relu``, in any
  order) is kept in float, and the quantizer (``Quant`` or ``BipolarQuant``) closes the layer:
  its epilogue is the per-channel integer :class:`~hwquant.ir.Thresholds` that reproduce
  ``Quant(act(BN(s_acc * A + b)))`` on the integer accumulator ``A`` exactly (FINN's
  MultiThreshold), found by bisection on ``A`` with qonnx's quantizer itself, so every
  rounding mode and every scale, power of two or not, is exact up to the float evaluation of
  the BatchNorm. Outputs wider than :data:`THRESHOLD_BITS` bits get a
  :class:`~hwquant.ir.Requant` instead (round half up; exact without BatchNorm at power-of-two
  scales but for ties, which ``Quant``'s default rounds half to even).
* A weight layer whose accumulator is the graph output is the logits layer: ``ACC + B`` with
  ``B = b / s_acc`` (rounded half up when not an integer), a per-class integer
  :class:`~hwquant.ir.Logits` scale when the classes' scales differ.
* ``MaxPool`` and ``Flatten``/``Reshape`` (to ``(N, C*H*W)``) of quantized tensors; ``Add``
  of two quantized tensors of power-of-two scales closed by a ``Quant`` (a residual add:
  exact when the ``Quant`` keeps the finer operand's scale, rounded half up otherwise).

Refused, one line each (:class:`QonnxImportError`): a file that is not ONNX, a node outside
:data:`SUPPORTED_OPS`, a nonzero zero point, weights that are not integers in range, a
padded convolution on bipolar activations (ONNX pads with 0, a bipolar map with ``-1``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np

from . import ir
from .errors import HwquantError, UnsupportedLayerError

__all__ = ["QonnxImportError", "SUPPORTED_OPS", "THRESHOLD_BITS", "import_qonnx",
           "load_qonnx", "onnx_logits", "compare_with_onnx", "EXTRA_MESSAGE"]

#: The line printed when the optional dependencies are missing.
EXTRA_MESSAGE = "QONNX import needs the qonnx extra: pip install 'hwquant[qonnx]'"

#: ONNX / QONNX operations the importer maps.
SUPPORTED_OPS = ("Quant", "BipolarQuant", "Conv", "Gemm", "MatMul", "BatchNormalization",
                 "Relu", "MaxPool", "Flatten", "Reshape", "Add")

#: Widest activation produced by a Thresholds epilogue (``2**bits - 1`` thresholds).
THRESHOLD_BITS = 4


class QonnxImportError(HwquantError, ValueError):
    """A QONNX model hwquant cannot import as it is."""


def _require():
    try:
        import onnx  # noqa: F401
        import qonnx  # noqa: F401
    except ImportError:
        raise QonnxImportError(EXTRA_MESSAGE) from None


def load_qonnx(path):
    """``path`` as a cleaned-up qonnx ``ModelWrapper`` with inferred shapes and datatypes.

    Raises :class:`QonnxImportError` when the qonnx extra is missing, the file does not exist
    or is not an ONNX model.
    """
    _require()
    import onnx
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.infer_datatypes import InferDataTypes
    from qonnx.transformation.infer_shapes import InferShapes
    from qonnx.util.cleanup import cleanup_model

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise QonnxImportError(f"No such ONNX file: {path}")
    try:
        proto = onnx.load(path)
    except Exception as e:  # noqa: BLE001 - protobuf DecodeError, truncated files, ...
        raise QonnxImportError(f"{path} is not an ONNX model ({type(e).__name__})") from None
    if not proto.graph.node:
        raise QonnxImportError(f"{path} is not an ONNX model with a graph (no nodes)")
    try:
        model = cleanup_model(ModelWrapper(proto))
        model = model.transform(InferShapes())
        model = model.transform(InferDataTypes())
    except Exception as e:  # noqa: BLE001 - whatever qonnx raises on a graph it cannot read
        raise QonnxImportError(f"{path}: qonnx could not read the graph: "
                               f"{type(e).__name__}: {e}") from None
    return model


def onnx_logits(model, x) -> np.ndarray:
    """qonnx ``execute_onnx`` of ``model`` (a ModelWrapper) on the float batch ``x``:
    ``(N, classes)`` float64. Exported graphs fix the batch at 1; the graph is run on a copy
    with the batch axis set to ``N`` (reshapes to ``-1``), or one image at a time if that
    copy does not run."""
    import copy

    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_shapes import InferShapes

    x = np.asarray(x, dtype=np.float32)
    iname, oname = model.graph.input[0].name, model.graph.output[0].name
    try:
        batch = copy.deepcopy(model)
        for node in batch.graph.node:
            if node.op_type == "Reshape":
                shape = batch.get_initializer(node.input[1])
                batch.set_initializer(node.input[1], np.array([-1, *shape[1:]], np.int64))
        batch.graph.input[0].type.tensor_type.shape.dim[0].dim_value = len(x)
        batch.graph.output[0].type.tensor_type.shape.dim[0].dim_value = len(x)
        del batch.graph.value_info[:]
        batch = batch.transform(InferShapes())
        out = execute_onnx(batch, {iname: x})[oname]
        return np.asarray(out, dtype=np.float64).reshape(len(x), -1)
    except Exception:  # noqa: BLE001 - the slow, always-valid path
        return np.stack([np.asarray(execute_onnx(model, {iname: img[None]})[oname],
                                    dtype=np.float64).reshape(-1) for img in x])


# -- values flowing through the graph ---------------------------------------------------------

@dataclass
class _Act:
    """A quantized activation tensor: an IR layer's output (or the input) whose integers
    ``X`` have real values ``value(X) * scale``."""

    layer: str
    fmt: ir.ActFormat
    scale: float
    shape: tuple


@dataclass
class _Pending:
    """A weight layer's accumulator, waiting for the quantizer that closes it: real value
    ``chain(s_acc[c] * A + bias[c])``."""

    node: str
    op: str  # conv2d | linear
    src: _Act
    weight: np.ndarray  # integers, (OC, IC, KH, KW) or (OUT, IN)
    weight_bits: int
    encoding: str
    w_scale: np.ndarray  # (OC,)
    bias: np.ndarray  # real, (OC,)
    shape: tuple
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)
    chain: list = field(default_factory=list)  # ("bn", g, b, mean, var, eps) | ("relu",)

    @property
    def s_acc(self):
        return self.src.scale * self.w_scale


@dataclass
class _PendingAdd:
    node: str
    lhs: _Act
    rhs: _Act
    shape: tuple
    relu: bool = False


@dataclass
class _Weight:
    """A quantized weight: integers, per-output-channel (or one) scale, width, kind."""

    node: str
    ints: np.ndarray
    scale: np.ndarray
    bits: int
    encoding: str


def _is_pow2(s) -> bool:
    s = np.asarray(s, dtype=np.float64)
    if not np.all(s > 0):
        return False
    m, _ = np.frexp(s)
    return bool(np.all(m == 0.5))


def _nominal_frac(scale) -> int:
    """``f`` with ``2**-f`` the power of two nearest to ``scale`` (the exact one if it is)."""
    return round(-math.log2(float(scale)))


def _pair(values, default):
    v = tuple(int(x) for x in values) if values else tuple(default)
    return v if len(v) == 2 else v * 2


class _Importer:
    def __init__(self, model, name):
        self.model = model
        self.name = name
        self.values = {}  # tensor name -> _Act | _Pending | _PendingAdd | _Weight | np.ndarray
        self.layers = []
        self.names = set()
        self.notes = []
        self.input_format = None
        self.input_shape = None
        self.stated = []  # where the import rounds (not exact by construction)
        from onnx import numpy_helper

        for init in model.graph.initializer:
            self.values[init.name] = np.asarray(numpy_helper.to_array(init))

    # -- helpers ------------------------------------------------------------------------
    def fail(self, node, msg):
        raise QonnxImportError(f"Node '{node.name}' ({node.op_type}): {msg}")

    def new_name(self, base):
        base = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in base) or "layer"
        if not base[0].isalpha():
            base = "n_" + base
        name, n = base, 1
        while name in self.names:
            name, n = f"{base}_{n}", n + 1
        self.names.add(name)
        return name

    def attrs(self, node):
        from onnx import helper

        out = {}
        for a in node.attribute:
            v = helper.get_attribute_value(a)
            out[a.name] = v.decode() if isinstance(v, bytes) else v
        return out

    def const(self, node, tensor, what):
        v = self.values.get(tensor)
        if not isinstance(v, np.ndarray):
            self.fail(node, f"{what} must be a constant initializer")
        return v

    def get(self, node, tensor, types, what="input"):
        v = self.values.get(tensor)
        if not isinstance(v, types):
            kinds = {_Act: "a quantized activation (the output of a Quant or BipolarQuant)",
                     _Pending: "a convolution or linear accumulator",
                     _Weight: "a quantized weight",
                     _PendingAdd: "a residual Add not yet quantized"}
            want = " or ".join(kinds.get(t, t.__name__) for t in
                               (types if isinstance(types, tuple) else (types,)))
            got = ("a float constant" if isinstance(v, np.ndarray) else
                   "an unquantized float tensor" if v is None else kinds.get(type(v), "?"))
            self.fail(node, f"{what} '{tensor}' must be {want}, not {got}")
        return v

    def shape(self, tensor):
        s = self.model.get_tensor_shape(tensor)
        return tuple(int(d) for d in s[1:]) if s is not None else None

    # -- the walk -----------------------------------------------------------------------
    def run(self):
        graph = self.model.graph
        if len(graph.input) != 1 or len(graph.output) != 1:
            raise QonnxImportError(f"The model must have one input and one output, not "
                                   f"{len(graph.input)} and {len(graph.output)}")
        self.graph_input = graph.input[0].name
        self.input_shape = self.shape(self.graph_input)
        if self.input_shape is None or len(self.input_shape) not in (1, 3):
            raise QonnxImportError(f"The model input must have shape (N, C, H, W) or (N, F), "
                                   f"not {self.model.get_tensor_shape(self.graph_input)}")
        for node in graph.node:
            if node.op_type not in SUPPORTED_OPS:
                raise UnsupportedLayerError(
                    f"Node '{node.name}': operation {node.op_type} is not supported; supported "
                    f"operations are {', '.join(SUPPORTED_OPS)}")
        for node in graph.node:
            getattr(self, "op_" + node.op_type)(node)
        out = self.values.get(graph.output[0].name)
        if not isinstance(out, _Pending):
            raise QonnxImportError("The model output must be the accumulator of its last "
                                   "Conv/Gemm/MatMul (the logits, not quantized again)")
        if out.chain:
            raise QonnxImportError(f"Node '{out.node}': the logits layer must not be followed "
                                   f"by BatchNormalization or Relu")
        self.close_logits(out)
        if self.input_format is None:
            raise QonnxImportError("The model input must be quantized by a Quant node")
        return ir.Network(name=self.name, input_shape=self.input_shape,
                          input_format=self.input_format, layers=tuple(self.layers))

    # -- quantizers ---------------------------------------------------------------------
    def quant_params(self, node):
        a = self.attrs(node)
        scale = self.const(node, node.input[1], "scale")
        zero = self.const(node, node.input[2], "zero point")
        bits = self.const(node, node.input[3], "bit width")
        if np.any(zero != 0):
            bad = float(np.asarray(zero).ravel()[np.flatnonzero(np.asarray(zero).ravel())[0]])
            self.fail(node, f"zero point {bad:g} is not supported (hwquant formats have real 0 "
                            f"= integer 0; quantize with zero point 0, e.g. Brevitas's "
                            f"symmetric Int/Uint quantizers)")
        if bits.size != 1 or float(bits) != int(bits) or not 1 <= int(bits) <= 16:
            self.fail(node, f"bit width must be an integer in 1..16, not {bits.ravel()[:3]}")
        if np.any(np.asarray(scale) <= 0) or not np.all(np.isfinite(scale)):
            self.fail(node, "scale must be positive and finite")
        return (np.asarray(scale, dtype=np.float64), int(bits), bool(a.get("signed", 1)),
                bool(a.get("narrow", 0)), a.get("rounding_mode", "ROUND"))

    def op_Quant(self, node):
        src = node.input[0]
        scale, bits, signed, narrow, rounding = self.quant_params(node)
        if isinstance(self.values.get(src), np.ndarray):  # a weight
            from qonnx.custom_op.general.intquant import int_quant, max_int, min_int

            w = self.values[src].astype(np.float64)
            ints = int_quant(w, scale, 0.0, np.float64(bits), signed, narrow, rounding) / scale
            r = np.round(ints)
            if not np.allclose(ints, r, rtol=0, atol=1e-6):
                self.fail(node, "weights divided by their scale are not integers")
            lo, hi = int(min_int(signed, narrow, bits)), int(max_int(signed, narrow, bits))
            if r.min() < lo or r.max() > hi:
                self.fail(node, f"integer weights {int(r.min())}..{int(r.max())} exceed the "
                                f"{bits}-bit range {lo}..{hi}")
            if not signed:
                bits += 1  # the IR's fixed weights are signed
            self.values[node.output[0]] = _Weight(node.name, r.astype(np.int64),
                                                  self.channel_scale(node, scale, w.shape),
                                                  bits, "fixed")
            return
        if bits == 1 and signed:  # qonnx: a signed 1-bit Quant is bipolar
            return self.activation(node, scale, ir.BIPOLAR, None)
        if bits == 1 and not signed:
            self.fail(node, "an unsigned 1-bit activation is not supported (use a bipolar "
                            "activation or 2 bits)")
        if scale.size != 1:
            self.fail(node, "activation scales must be one per tensor, not per channel")
        fmt = ir.ActFormat(bits, signed, _nominal_frac(scale.item()))
        self.activation(node, scale, fmt, (bits, signed, narrow, rounding))

    def op_BipolarQuant(self, node):
        src = node.input[0]
        scale = np.asarray(self.const(node, node.input[1], "scale"), dtype=np.float64)
        if np.any(scale <= 0):
            self.fail(node, "scale must be positive")
        if isinstance(self.values.get(src), np.ndarray):
            w = self.values[src]
            ints = np.where(w >= 0, 1, -1).astype(np.int64)
            self.values[node.output[0]] = _Weight(node.name, ints,
                                                  self.channel_scale(node, scale, w.shape), 1,
                                                  "binary")
            return
        if scale.size != 1:
            self.fail(node, "activation scales must be one per tensor, not per channel")
        self.activation(node, scale, ir.BIPOLAR, None)

    def channel_scale(self, node, scale, wshape):
        """A weight quantizer's scale as one value per output channel (axis 0 for Conv and
        Gemm-with-transB weights; MatMul weights are transposed when they are used)."""
        s = np.asarray(scale, dtype=np.float64)
        if s.size == 1:
            return np.full(wshape[0], float(s.ravel()[0]))
        if s.ndim == len(wshape) and s.shape[0] == wshape[0] \
                and all(d == 1 for d in s.shape[1:]):
            return s.reshape(-1)
        if len(wshape) == 2 and s.shape == (1, wshape[1]):  # MatMul (IN, OUT) per column
            return s.reshape(-1)
        self.fail(node, f"weight scale of shape {s.shape} is neither per tensor nor per output "
                        f"channel of weights {wshape}")

    def activation(self, node, scale, fmt, quant):
        """A quantizer on an activation: the input format, or the epilogue of the layer (or
        residual add) it closes."""
        src = node.input[0]
        s = float(np.asarray(scale).ravel()[0])
        v = self.values.get(src)
        shape = self.shape(node.output[0])
        if src == self.graph_input:
            if self.input_format is not None:
                self.fail(node, "the model input is quantized twice")
            if fmt.bipolar:
                self.fail(node, "a bipolar network input is not supported (quantize the "
                                "input to 2..16 bits)")
            if not _is_pow2(s):
                self.notes.append(f"input scale {s:.6g} is not a power of two: the input is "
                                  f"quantized on the grid 2^-{fmt.frac} (round half up) "
                                  f"instead")
                self.stated.append(f"input: quantized on the grid 2^-{fmt.frac}, round half up")
            self.input_format = fmt
            self.values[node.output[0]] = _Act(ir.INPUT, fmt, 2.0 ** -fmt.frac
                                               if not _is_pow2(s) else s, shape)
        elif isinstance(v, _Pending):
            self.values[node.output[0]] = self.close_layer(node, v, s, fmt, quant)
        elif isinstance(v, _PendingAdd):
            self.values[node.output[0]] = self.close_add(node, v, s, fmt, quant)
        elif isinstance(v, _Act):
            self.fail(node, f"'{src}' is quantized already (re-quantizing a quantized tensor is "
                            f"not supported)")
        else:
            self.fail(node, f"'{src}' must be the model input, a Conv/Gemm/MatMul accumulator "
                            f"(through BatchNormalization/Relu) or a residual Add")

    # -- weight layers ------------------------------------------------------------------
    def op_Conv(self, node):
        x = self.get(node, node.input[0], _Act)
        w = self.get(node, node.input[1], _Weight, "weight")
        a = self.attrs(node)
        if int(a.get("group", 1)) != 1:
            self.fail(node, f"group must be 1, not {a['group']}")
        if tuple(a.get("dilations", (1, 1))) != (1, 1):
            self.fail(node, f"dilations must be (1, 1), not {tuple(a['dilations'])}")
        if a.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
            self.fail(node, f"auto_pad {a['auto_pad']!r} is not supported (give pads)")
        pads = tuple(int(p) for p in a.get("pads", (0, 0, 0, 0)))
        if pads[:2] != pads[2:]:
            self.fail(node, f"pads must be symmetric (top = bottom, left = right), not {pads}")
        if x.fmt.bipolar and any(pads):
            self.fail(node, "a padded convolution of bipolar activations is not supported: "
                            "ONNX pads with 0, a bipolar map has no 0 (hwquant pads with -1); "
                            "use padding 0")
        if w.ints.ndim != 4 or len(x.shape) != 3 or w.ints.shape[1] != x.shape[0]:
            self.fail(node, f"weights {w.ints.shape} do not fit the input {x.shape}")
        bias = self.bias(node, 2, w.ints.shape[0], x.scale * w.scale)
        self.values[node.output[0]] = _Pending(
            node.name, "conv2d", x, w.ints, w.bits, w.encoding, w.scale, bias,
            self.shape(node.output[0]), _pair(a.get("strides"), (1, 1)), pads[:2])

    def op_Gemm(self, node):
        x = self.get(node, node.input[0], _Act)
        w = self.get(node, node.input[1], _Weight, "weight")
        a = self.attrs(node)
        if a.get("transA", 0) or float(a.get("alpha", 1.0)) != 1.0 \
                or float(a.get("beta", 1.0)) != 1.0:
            self.fail(node, "transA must be 0, alpha and beta 1")
        ints, scale = w.ints, w.scale
        if not a.get("transB", 0):
            ints = ints.T
        self.linear(node, x, w, ints, scale, 2)

    def op_MatMul(self, node):
        x = self.get(node, node.input[0], _Act)
        w = self.get(node, node.input[1], _Weight, "weight")
        self.linear(node, x, w, w.ints.T, w.scale, None)

    def linear(self, node, x, w, ints, scale, bias_input):
        if len(x.shape) != 1 or ints.ndim != 2 or ints.shape[1] != x.shape[0]:
            self.fail(node, f"weights {ints.shape} do not fit the input {x.shape} (flatten "
                            f"feature maps first)")
        if scale.shape != (ints.shape[0],):
            scale = np.full(ints.shape[0], float(scale.ravel()[0])) if np.all(
                scale == scale.ravel()[0]) else scale
        bias = self.bias(node, bias_input, ints.shape[0], x.scale * scale)
        self.values[node.output[0]] = _Pending(node.name, "linear", x, ints, w.bits,
                                               w.encoding, scale, bias,
                                               self.shape(node.output[0]))

    def bias(self, node, index, oc, s_acc):
        if index is None or len(node.input) <= index or not node.input[index]:
            return np.zeros(oc)
        v = self.values.get(node.input[index])
        if isinstance(v, _Weight):  # a quantized bias (Brevitas Int32Bias)
            b = v.ints * v.scale
        elif isinstance(v, np.ndarray):
            b = v.astype(np.float64)
        else:
            self.fail(node, "the bias must be a constant (or a quantized constant)")
        return np.broadcast_to(np.asarray(b, dtype=np.float64).reshape(-1), (oc,)).copy()

    def op_BatchNormalization(self, node):
        v = self.get(node, node.input[0], _Pending, "input")
        a = self.attrs(node)
        gamma, beta, mean, var = (self.const(node, t, n).astype(np.float64) for t, n in
                                  zip(node.input[1:5], ("scale", "bias", "mean", "var")))
        v.chain = v.chain + [("bn", gamma, beta, mean, var, float(a.get("epsilon", 1e-5)))]
        self.values[node.output[0]] = v

    def op_Relu(self, node):
        v = self.values.get(node.input[0])
        if isinstance(v, _Pending):
            v.chain = v.chain + [("relu",)]
        elif isinstance(v, _PendingAdd):
            v.relu = True
        elif isinstance(v, _Act) and not v.fmt.signed and not v.fmt.bipolar:
            pass  # the identity on unsigned integers
        else:
            self.get(node, node.input[0], (_Pending,), "input")
        self.values[node.output[0]] = v

    def evaluate(self, p, acc):
        """The real pre-quantizer value of accumulators ``acc`` (OC, K), as the ONNX graph
        computes it (float32, node by node)."""
        z = (acc.astype(np.float64) * p.s_acc[:, None] + p.bias[:, None]).astype(np.float32)
        for step in p.chain:
            if step[0] == "relu":
                z = np.maximum(z, np.float32(0))
            else:
                g, b, m, var = (np.asarray(s, dtype=np.float32)[:, None] for s in step[1:5])
                z = (z - m) / np.sqrt(var + np.float32(step[5])) * g + b
        return z

    def close_layer(self, node, p, s_out, fmt, quant):
        """The weight layer ``p`` closed by the quantizer ``node``: its IR layer."""
        from qonnx.custom_op.general.intquant import int_quant

        if fmt.bipolar:
            def q(z):  # BipolarQuant: +1 iff z >= 0; codes 1 / 0
                return (z >= 0).astype(np.int64)
        else:
            bits, signed, narrow, rounding = quant

            def q(z):
                return np.round(int_quant(z, np.float32(s_out), np.float32(0), np.float32(bits), signed,
                                          narrow, rounding) / np.float32(s_out)).astype(np.int64)
        name = self.new_name(p.node)
        in_fmt = p.src.fmt
        wmat = p.weight.reshape(len(p.weight), -1)
        acc_lo, acc_hi = ir.matrix_range(wmat, np.zeros(len(wmat), dtype=np.int64), in_fmt)
        if fmt.bipolar or fmt.bits <= THRESHOLD_BITS:
            epilogue = self.thresholds(p, q, fmt, acc_lo, acc_hi)
            bias = np.zeros(len(wmat), dtype=np.int64)
        else:
            bias, epilogue = self.requant(node, p, s_out, fmt, quant, acc_lo, acc_hi)
        layer = self.weight_layer(name, p, epilogue, bias, fmt)
        self.layers.append(layer)
        return _Act(name, fmt, s_out, p.shape)

    def thresholds(self, p, q, fmt, acc_lo, acc_hi):
        """Per-channel thresholds ``T[c, k]`` with ``q(f(A)) = lo + #{k : passed}``, for every
        integer ``A`` in the accumulator range: bisection on ``A`` for each output step."""
        oc = len(p.weight)
        levels = 1 if fmt.bipolar else fmt.hi - fmt.lo
        target = (1 if fmt.bipolar else fmt.lo) + np.arange(levels)[None, :] \
            + (0 if fmt.bipolar else 1)  # the code each threshold steps up to
        target = np.broadcast_to(target, (oc, levels))
        lo = np.broadcast_to(np.asarray(acc_lo, np.int64)[:, None], (oc, levels))
        hi = np.broadcast_to(np.asarray(acc_hi, np.int64)[:, None], (oc, levels))

        def code(a):
            return q(self.evaluate(p, a)).reshape(a.shape)

        f_lo = code(np.asarray(acc_lo)[:, None])[:, 0]
        f_hi = code(np.asarray(acc_hi)[:, None])[:, 0]
        direction = np.where(f_hi >= f_lo, 1, -1).astype(np.int64)
        d = direction[:, None]
        # Increasing channels: the least A with code(A) >= target (hi + 1: none);
        # decreasing: the largest (lo - 1: none). Bisection on [lo - 1, hi + 1].
        left, right = lo - 1, hi + 1
        for _ in range(64):
            if np.all(right - left <= 1):
                break
            mid = (left + right) // 2
            ok = code(np.clip(mid, lo, hi)) >= target
            # increasing: ok means the answer is <= mid; decreasing: >= mid
            right = np.where((d > 0) & ok, mid, right)
            left = np.where((d > 0) & ~ok, mid, left)
            left = np.where((d < 0) & ok, mid, left)
            right = np.where((d < 0) & ~ok, mid, right)
        thr = np.where(d > 0, right, left)
        return ir.Thresholds(np.sort(thr, axis=1), direction)

    def requant(self, node, p, s_out, fmt, quant, acc_lo, acc_hi):
        """A Requant for outputs wider than THRESHOLD_BITS: ``z = g * A + h`` (BatchNorm
        folded), ``M = RHU(g * 2**(f + k))``, ``B = RHU(h / g)`` (round half up)."""
        from .quant.binary import fold_requant

        relu = any(s[0] == "relu" for s in p.chain)
        if any(s[0] == "relu" for s in p.chain[:-1]) and p.chain[-1][0] != "relu":
            self.fail(node, "a Relu before a BatchNormalization needs an output of at most "
                            f"{THRESHOLD_BITS} bits")
        g, h = p.s_acc.copy(), p.bias.copy()
        for step in p.chain:
            if step[0] == "bn":
                _, gam, bet, m, var, eps = step
                k = gam / np.sqrt(var + eps)
                g, h = g * k, (h - m) * k + bet
        unit = 2.0 ** -fmt.frac / s_out  # the output grid 2^-f against the model's scale
        shift_only = not p.chain[:1] or all(s[0] == "relu" for s in p.chain)
        if shift_only and _is_pow2(g * unit) and np.all(g == g[0]) and np.all(h == 0):
            shift = -round(math.log2(g[0] * unit * 2.0 ** fmt.frac))
            self.stated.append(f"{node.name}: round half up at ties")
            return np.zeros(len(g), np.int64), ir.Requant(np.ones(len(g), np.int64), shift,
                                                          0 if relu else fmt.lo, fmt.hi)
        self.stated.append(f"{node.name}: requantization multiplier and bias rounded")
        return fold_requant(g * unit, h * unit, fmt, acc_lo, acc_hi, relu=relu)

    def weight_layer(self, name, p, epilogue, bias, fmt):
        f_w = _nominal_frac(float(p.w_scale.max()))
        common = {"name": name, "inputs": (p.src.layer,), "in_format": p.src.fmt,
                  "weight": p.weight, "weight_bits": p.weight_bits, "weight_frac": f_w,
                  "bias": bias, "epilogue": epilogue, "out_format": fmt,
                  "encoding": p.encoding}
        try:
            if p.op == "conv2d":
                return ir.Conv2d(**common, in_shape=p.src.shape, stride=p.stride,
                                 padding=p.padding)
            return ir.Linear(**common)
        except ValueError as e:
            raise QonnxImportError(f"Node '{p.node}': {e}") from None

    def close_logits(self, p):
        """The last layer: logits ``ACC + B`` at its accumulator scale."""
        s = p.s_acc
        name = self.new_name(p.node)
        if np.allclose(s, s[0], rtol=1e-12, atol=0):
            scale = None
            ref = float(s[0])
        else:
            scale = np.maximum(1, np.floor(s / s.max() * 2 ** 15 + 0.5)).astype(np.int64)
            ref = s
            self.stated.append(f"{p.node}: per-class logit scales rounded to 16 bits")
        b = p.bias / ref
        bias = np.floor(b + 0.5).astype(np.int64)
        if not np.allclose(b, bias, rtol=0, atol=1e-6):
            self.stated.append(f"{p.node}: bias rounded to the accumulator grid")
        wmat = p.weight.reshape(len(p.weight), -1)
        lo, hi = ir.matrix_range(wmat, bias, p.src.fmt)
        if scale is not None:
            lo, hi = np.minimum(lo * scale, 0), np.maximum(hi * scale, 0)
        fmt = ir.ActFormat(ir.signed_bits_for(int(min(lo.min(), 0)), int(max(hi.max(), 0))),
                           True, p.src.fmt.frac + _nominal_frac(float(p.w_scale.max())))
        self.layers.append(self.weight_layer(name, p, ir.Logits(scale), bias, fmt))
        self.logit_scale = s

    # -- the rest -----------------------------------------------------------------------
    def op_MaxPool(self, node):
        x = self.get(node, node.input[0], _Act)
        a = self.attrs(node)
        if a.get("ceil_mode", 0):
            self.fail(node, "ceil_mode must be 0")
        if tuple(a.get("dilations", (1, 1))) != (1, 1):
            self.fail(node, f"dilations must be (1, 1), not {tuple(a['dilations'])}")
        kernel = _pair(a.get("kernel_shape"), (1, 1))
        pads = tuple(int(p) for p in a.get("pads", (0, 0, 0, 0)))
        if pads[:2] != pads[2:]:
            self.fail(node, f"pads must be symmetric, not {pads}")
        name = self.new_name(node.name)
        try:
            layer = ir.MaxPool2d(name=name, inputs=(x.layer,), in_shape=x.shape, kernel=kernel,
                                 stride=_pair(a.get("strides"), kernel), padding=pads[:2],
                                 in_format=x.fmt)
        except ValueError as e:
            self.fail(node, str(e))
        self.layers.append(layer)
        self.values[node.output[0]] = _Act(name, x.fmt, x.scale, layer.out_shape)

    def reshape(self, node):
        x = self.get(node, node.input[0], _Act)
        out = self.shape(node.output[0])
        if out == x.shape:
            self.values[node.output[0]] = x
            return
        if len(x.shape) != 3 or out != (int(np.prod(x.shape)),):
            self.fail(node, f"only a flatten of (C, H, W) to (C*H*W,) is supported, not "
                            f"{x.shape} to {out}")
        name = self.new_name(node.name)
        self.layers.append(ir.Flatten(name=name, inputs=(x.layer,), in_shape=x.shape,
                                      in_format=x.fmt))
        self.values[node.output[0]] = _Act(name, x.fmt, x.scale, out)

    op_Flatten = reshape
    op_Reshape = reshape

    def op_Add(self, node):
        lhs = self.get(node, node.input[0], _Act, "first operand")
        rhs = self.get(node, node.input[1], _Act, "second operand")
        if lhs.shape != rhs.shape:
            self.fail(node, f"operands must have the same shape, not {lhs.shape} and "
                            f"{rhs.shape}")
        if not (_is_pow2(lhs.scale) and _is_pow2(rhs.scale)):
            self.fail(node, "a residual add needs power-of-two scales on both operands, not "
                            f"{lhs.scale:.6g} and {rhs.scale:.6g}")
        self.values[node.output[0]] = _PendingAdd(node.name, lhs, rhs, lhs.shape)

    def close_add(self, node, v, s_out, fmt, quant):
        if fmt.bipolar or not _is_pow2(s_out):
            self.fail(node, "a residual add must be quantized to a power-of-two scale")
        name = self.new_name(v.node)
        layer = ir.Add(name=name, inputs=(v.lhs.layer, v.rhs.layer), in_shape=v.shape,
                       in_formats=(v.lhs.fmt, v.rhs.fmt), out_format=fmt, relu=v.relu)
        if fmt.frac < layer.fine_frac:
            self.stated.append(f"{node.name}: residual add rounded half up")
        self.layers.append(layer)
        return _Act(name, fmt, s_out, v.shape)


def import_qonnx(path, *, name=None):
    """Read the QONNX model at ``path`` into an :class:`~hwquant.ir.Network`.

    Returns ``(network, info)``: ``info`` holds ``notes`` (one line each where the import
    could not keep the model's arithmetic as it is), ``stated`` (where it rounds), the
    ``logit_scale`` (real value of one logit unit per class) and the ``model`` (the cleaned
    ModelWrapper, for :func:`onnx_logits`).
    """
    model = load_qonnx(path)
    stem = os.path.splitext(os.path.basename(os.fspath(path)))[0]
    name = name or ("".join(ch if ch.isalnum() else "_" for ch in stem) or "network")
    if not name[0].isalpha():
        name = "n_" + name
    imp = _Importer(model, name)
    try:
        net = imp.run()
    except ValueError as e:
        if isinstance(e, HwquantError):
            raise
        raise QonnxImportError(str(e)) from None
    return net, {"notes": imp.notes, "stated": imp.stated, "logit_scale": imp.logit_scale,
                 "model": model}


def compare_with_onnx(net, info, ds) -> dict:
    """The golden model of ``net`` against qonnx ``execute_onnx`` of the imported model on the
    test split of ``ds``: both accuracies, the share of images with the same class, and
    whether the ONNX logits divided by the logit scale equal the golden integers on every
    image. Where the logits are equal the classes can still differ on images whose largest
    logit is tied (``tied_images``; ``differ_untied`` counts the other differences)."""
    from . import golden
    from .simulate import quantize_input

    ref = onnx_logits(info["model"], ds.x_test)
    out = golden.run(net, quantize_input(net, ds.x_test))[net.output.name]
    gold = np.asarray(out).reshape(len(ds.x_test), -1)
    rescaled = ref / np.asarray(info["logit_scale"])[None, :]
    exact = bool(np.array_equal(np.round(rescaled), gold)
                 and np.abs(rescaled - np.round(rescaled)).max() < 1e-3)
    tied = (gold == gold.max(axis=1, keepdims=True)).sum(axis=1) > 1
    differ = ref.argmax(1) != gold.argmax(1)
    return {"images": len(ds.x_test),
            "accuracy": {"onnx": float((ref.argmax(1) == ds.y_test).mean()),
                         "golden": float((gold.argmax(1) == ds.y_test).mean())},
            "agreement": float(1 - differ.mean()),
            # images whose largest golden logit is tied: the golden model (and the hardware)
            # take the lowest index, execute_onnx's float sums may break the tie either way
            "tied_images": int(tied.sum()),
            "differ_untied": int((differ & ~tied).sum()),
            "logits_exact": exact}
