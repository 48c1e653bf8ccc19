"""Integer-exact NumPy inference of a :class:`hwquant.ir.Network`: the definition of correct.

Tensors carry a leading batch axis: feature maps are ``(N, C, H, W)``, vectors ``(N, F)``.
Every value is int64. Weight products may run on float BLAS, but only where
:mod:`hwquant.golden.exact` proves the float result equal to the int64 one.

Outside :func:`hwquant.golden.exact.int64_only` weight layers take a fast path with the same
results bit for bit: the windows are built once, directly in the float type the product bound
allows (no int64 window copy, no pass over the windows for the bound: the bound comes from
the input format, or from the layer input when the format's is too wide); the requantization
runs as four in-place int64 passes, ``acc * M + (B * M + 2**(shift-1))``, shift, clamp (the
same int64 ring arithmetic as the reference, so the same bits); the accumulator check reduces
per channel; and a layer's output range is not re-checked where it is implied (a clamp inside
the output format, a max pool or flatten of an input already in it).
"""

from __future__ import annotations

import numpy as np

from .. import ir
from ..epilogues import golden_epilogue
from ..kinds import golden_dot
from . import epilogue as _epilogues
from .arith import add_requantize, avg_requantize
from .epilogue import apply as apply_epilogue
from .exact import abs_max, exact_float, fast_enabled, single_threaded_blas

__all__ = ["run", "run_layer", "predict", "im2col", "check_input"]


def im2col(x, kernel, stride, padding, pad_value=0):
    """Sliding windows of ``x`` (N, C, H, W) as ``(N, OH, OW, C, KH, KW)``; padded positions
    hold ``pad_value`` (a code: weight layers pad with code 0, which is ``-1`` for a bipolar
    format, see :meth:`hwquant.ir.ActFormat.value`)."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    h, w = x.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=pad_value)
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))
    # win: (N, C, H', W', KH, KW) -> stride, crop, reorder
    win = win[:, :, ::sh, ::sw][:, :, :oh, :ow]
    return np.ascontiguousarray(win.transpose(0, 2, 3, 1, 4, 5))


def _epilogue(layer, acc, channel_axis):
    bias = np.expand_dims(layer.bias, tuple(range(1, acc.ndim - channel_axis)))
    return apply_epilogue(layer.epilogue, acc + bias, layer.out_format, channel_axis)


def _check_acc(layer, acc):
    """The hardware sizes accumulators from ``accumulator_range``; prove the bound holds."""
    lo, hi = ir.accumulator_range(layer)
    if acc.size and (np.any(acc < lo - layer.bias) or np.any(acc > hi - layer.bias)):
        raise AssertionError(f"Layer '{layer.name}': accumulator left its worst-case range")


def _windows(v, dtype, kernel, stride, padding, pad):
    """Windows of the values ``v`` (N, C, H, W) as ``(N*OH*OW, KH*KW*C)`` of ``dtype`` in
    window-lane order (lane ``(kh*KW + kw)*C + c``), built from a channels-last copy."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    n, c, h, w = v.shape
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    xp = np.full((n, h + 2 * ph, w + 2 * pw, c), pad, dtype=dtype)
    xp[:, ph:ph + h, pw:pw + w, :] = v.transpose(0, 2, 3, 1)
    if c >= 8:
        win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(1, 2))
        win = win[:, ::sh, ::sw][:, :oh, :ow].transpose(0, 1, 2, 4, 5, 3)
        return np.ascontiguousarray(win).reshape(n * oh * ow, -1)
    # Few channels: one strided copy per kernel offset moves longer runs.
    cols = np.empty((n, oh, ow, kh, kw, c), dtype=dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, :, i, j, :] = xp[:, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]
    return cols.reshape(n * oh * ow, -1)


def _fast_acc(layer, x):
    """``ACC`` (int64, ``(pixels, OC)``) of a weight layer with its windows built in the float
    type the product bound proves exact; ``None`` where the kind's dot takes no float windows
    or no float type is proven (the caller takes the reference path)."""
    dot = getattr(golden_dot(layer), "windows", None)
    if dot is None:
        return None
    fmt, w = layer.in_format, layer.weight_matrix()
    conv = isinstance(layer, ir.Conv2d)
    pad = int(fmt.value(0))
    # Every value is in the input format (checked on the input, and on every layer's output
    # unless implied), so its value range bounds |x|; the actual values when that is too wide.
    bound = max(abs(fmt.value_lo), abs(fmt.value_hi), abs(pad) if conv else 0)
    dtype = exact_float(w, bound)
    v = fmt.value(x)
    if dtype is not np.float32:
        tight = max(abs_max(v), abs(pad) if conv else 0)
        if exact_float(w, tight) is not None:
            bound, dtype = tight, exact_float(w, tight)
    if dtype is None:
        return None
    if not conv:
        return dot(layer, v.astype(dtype), x_abs_max=bound)
    cols = _windows(v, dtype, layer.kernel, layer.stride, layer.padding, pad)
    return dot(layer, cols, x_abs_max=bound, window_order=True)


def _fast_epilogue(layer, acc):
    """The epilogue on ``acc`` (int64 ``(pixels, OC)``, owned: modified in place), bit for bit
    :func:`_epilogue`'s; ``None`` for epilogues without a fused form."""
    ep = layer.epilogue
    face = golden_epilogue(ep)
    bias = np.asarray(layer.bias, dtype=np.int64)
    if face is _epilogues.requant:
        # sat(rshift_rhu((acc + B) * M, s), lo, hi) = sat((acc*M + (B*M + r)) >> s, lo, hi)
        # with r = 2**(s-1) (s > 0); for s <= 0 both are left shifts of the product. Equal
        # in the int64 ring, so equal bits wherever the reference is defined.
        m = np.asarray(ep.multiplier, dtype=np.int64)
        s = int(ep.shift)
        c = bias * m
        if s > 0:
            c = c + (np.int64(1) << np.int64(s - 1))
        elif s < 0:
            m, c = m << np.int64(-s), c << np.int64(-s)
        acc *= m
        acc += c
        if s > 0:
            acc >>= np.int64(s)
        return np.clip(acc, ep.lo, ep.hi, out=acc)
    if face is _epilogues.logits:
        acc += bias
        if ep.scale is not None:
            acc *= np.asarray(ep.scale, dtype=np.int64)
        return acc
    return None


def _output_implied(layer) -> bool:
    """Whether the fast path's output of ``layer`` lies in its format by construction."""
    fmt = layer.out_format
    if isinstance(layer, (ir.Conv2d, ir.Linear)):
        ep = layer.epilogue
        return golden_epilogue(ep) is _epilogues.requant and fmt.lo <= ep.lo and ep.hi <= fmt.hi
    if isinstance(layer, (ir.MaxPool2d, ir.Flatten)):
        # Values (and max-pool padding, code in_format.lo) of an input that passed its check.
        f = layer.in_format
        return (f.bipolar, f.signed) == (fmt.bipolar, fmt.signed) and \
            fmt.lo <= f.lo and f.hi <= fmt.hi
    return False


def _run_weight_fast(layer, x):
    """The fast path of a conv or linear layer; ``None`` where it does not apply."""
    acc = _fast_acc(layer, x)
    if acc is None:
        return None
    # No accumulator check here: ir.accumulator_range is the worst case over every input in
    # the layer's input format, and the input is in it (checked or implied); the reference
    # path checks it all the same.
    out = _fast_epilogue(layer, acc)
    if out is None:
        out = _epilogue(layer, acc, 1)
    if isinstance(layer, ir.Conv2d):
        n = x.shape[0]
        (kh, kw), (sh, sw), (ph, pw) = layer.kernel, layer.stride, layer.padding
        oh = (x.shape[2] + 2 * ph - kh) // sh + 1
        ow = (x.shape[3] + 2 * pw - kw) // sw + 1
        return out.reshape(n, oh, ow, -1).transpose(0, 3, 1, 2)
    return out


def _map_acc(layer, x):
    """``ACC`` of a kind whose arithmetic needs the whole input map (``bdcnn`` with the
    per-sample range: ``dot.map_acc``), or ``None``."""
    map_acc = getattr(golden_dot(layer), "map_acc", None)
    if map_acc is None:
        return None
    if isinstance(layer, ir.Conv2d):
        def windows(a):
            cols = im2col(a, layer.kernel, layer.stride, layer.padding, 0)
            return cols.reshape(-1, cols[0, 0, 0].size)
    else:
        def windows(a):
            return a.reshape(len(a), -1)
    return map_acc(layer, x, windows)


def run_layer(layer, args):
    """Apply one IR layer to its integer operand(s) (a list of arrays with batch axis)."""
    x = args[0]
    if isinstance(layer, (ir.Conv2d, ir.Linear)):
        acc = _map_acc(layer, x)
        if acc is not None:
            _check_acc(layer, acc)
            out = _epilogue(layer, acc, 1)
            if isinstance(layer, ir.Conv2d):
                n, oh, ow = len(x), *layer.out_shape[1:]
                return out.reshape(n, oh, ow, -1).transpose(0, 3, 1, 2)
            return out
    if isinstance(layer, (ir.Conv2d, ir.Linear)) and fast_enabled():
        out = _run_weight_fast(layer, x)
        if out is not None:
            return out
    if isinstance(layer, ir.Conv2d):
        # Padding inserts code 0 (value 0, or -1 for a bipolar input), then codes -> values.
        cols = layer.in_format.value(im2col(x, layer.kernel, layer.stride, layer.padding, 0))
        n, oh, ow = cols.shape[:3]
        acc = golden_dot(layer)(layer, cols.reshape(n * oh * ow, -1))
        _check_acc(layer, acc)
        # The epilogue is per channel and elementwise: apply it on the contiguous
        # (pixels, channels) accumulators, then lay the result out as (N, C, H, W).
        out = _epilogue(layer, acc, 1)
        return out.reshape(n, oh, ow, -1).transpose(0, 3, 1, 2)
    if isinstance(layer, ir.Linear):
        acc = golden_dot(layer)(layer, layer.in_format.value(x))
        _check_acc(layer, acc)
        return _epilogue(layer, acc, 1)
    if isinstance(layer, ir.MaxPool2d):
        (kh, kw), (sh, sw), (ph, pw) = layer.kernel, layer.stride, layer.padding
        n, c, h, w = x.shape
        tiles = (kh, kw) == (sh, sw) and ph == pw == 0 and h % kh == 0 and w % kw == 0
        if tiles and fast_enabled() and x.transpose(0, 2, 3, 1).flags.c_contiguous:
            # A channels-last map (a fast conv's output): pool it in place, same maxima.
            nhwc = x.transpose(0, 2, 3, 1).reshape(n, h // kh, kh, w // kw, kw, c)
            out = nhwc[:, :, 0, :, 0, :].copy()
            for i in range(kh):
                for j in range(kw):
                    if i or j:
                        np.maximum(out, nhwc[:, :, i, :, j, :], out=out)
            return out.transpose(0, 3, 1, 2)
        if tiles:
            # Non-overlapping windows that tile the map: the same maxima, without im2col.
            return x.reshape(n, c, h // kh, kh, w // kw, kw).max(axis=(3, 5))
        cols = im2col(x, layer.kernel, layer.stride, layer.padding, layer.in_format.lo)
        return cols.max(axis=(4, 5)).transpose(0, 3, 1, 2)
    if isinstance(layer, ir.AvgPool2d):
        cols = im2col(x, layer.kernel, layer.stride, layer.padding, 0)
        s = cols.sum(axis=(4, 5)).transpose(0, 3, 1, 2)
        rq = layer.requant
        return avg_requantize(s, rq.multiplier[0], rq.shift, rq.lo, rq.hi)
    if isinstance(layer, ir.Flatten):
        return x.reshape(x.shape[0], -1)
    if isinstance(layer, ir.Add):
        (fa, fb), f = layer.in_formats, layer.out_format
        return add_requantize(args[0], fa.frac, args[1], fb.frac, f.frac, layer.lo, f.hi)
    raise TypeError(f"Unknown IR layer type {type(layer).__name__}")


def check_input(net, x):
    """Validate an integer input batch against the network's input shape and format."""
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.integer):
        raise TypeError(f"Golden model input must be an integer array, not {x.dtype}")
    if x.shape[1:] != net.input_shape:
        raise ValueError(f"Input batch must have shape (N, {', '.join(map(str, net.input_shape))})"
                         f", not {x.shape}")
    fmt = net.input_format
    if x.size and (x.min() < fmt.lo or x.max() > fmt.hi):
        raise ValueError(f"Input values must lie in [{fmt.lo}, {fmt.hi}], "
                         f"not [{x.min()}, {x.max()}]")
    return x.astype(np.int64)


def run(net, x, *, batch_size: int = 1024) -> dict:
    """Run ``net`` on the integer batch ``x``; return every layer's integer output by name.

    The dict also holds ``"input"``. Processed in batches to bound memory.
    """
    x = check_input(net, x)
    with single_threaded_blas():
        return _run(net, x, batch_size)


def _run(net, x, batch_size):
    parts = []
    fast = fast_enabled()
    implied = {layer.name: fast and _output_implied(layer) for layer in net.layers}
    for start in range(0, max(len(x), 1), batch_size):
        values = {ir.INPUT: x[start:start + batch_size]}
        for layer in net.layers:
            values[layer.name] = run_layer(layer, [values[s] for s in layer.inputs])
            fmt = layer.out_format
            out = values[layer.name]
            if not implied[layer.name] and out.size and (out.min() < fmt.lo or
                                                          out.max() > fmt.hi):
                raise AssertionError(f"Layer '{layer.name}': output leaves its format {fmt}")
        parts.append(values)
    if len(parts) == 1:
        # One batch: its arrays as they are (channels-last buffers seen as (N, C, H, W)),
        # copied only where one shares memory with another (a flatten's view).
        out = {}
        for k, v in parts[0].items():
            if any(np.may_share_memory(v, o) for o in out.values()):
                v = v.copy()
            out[k] = v
        return out
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def predict(net, x, *, batch_size: int = 1024):
    """Class index per image: argmax of the logits, ties to the lowest index."""
    logits = run(net, x, batch_size=batch_size)[net.output.name]
    return np.argmax(logits.reshape(len(logits), -1), axis=1)

