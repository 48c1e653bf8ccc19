"""Integer-exact NumPy inference of a :class:`hwquant.ir.Network`: the definition of correct.

Tensors carry a leading batch axis: feature maps are ``(N, C, H, W)``, vectors ``(N, F)``.
Every value is int64. Weight products may run on float BLAS, but only where
:mod:`hwquant.golden.exact` proves the float result equal to the int64 one.
"""

from __future__ import annotations

import numpy as np

from .. import ir
from ..kinds import golden_dot
from .arith import add_requantize, avg_requantize
from .epilogue import apply as apply_epilogue
from .exact import single_threaded_blas

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


def run_layer(layer, args):
    """Apply one IR layer to its integer operand(s) (a list of arrays with batch axis)."""
    x = args[0]
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
        if (kh, kw) == (sh, sw) and ph == pw == 0 and h % kh == 0 and w % kw == 0:
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
    for start in range(0, max(len(x), 1), batch_size):
        values = {ir.INPUT: x[start:start + batch_size]}
        for layer in net.layers:
            values[layer.name] = run_layer(layer, [values[s] for s in layer.inputs])
            fmt = layer.out_format
            out = values[layer.name]
            if out.size and (out.min() < fmt.lo or out.max() > fmt.hi):
                raise AssertionError(f"Layer '{layer.name}': output leaves its format {fmt}")
        parts.append(values)
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def predict(net, x, *, batch_size: int = 1024):
    """Class index per image: argmax of the logits, ties to the lowest index."""
    logits = run(net, x, batch_size=batch_size)[net.output.name]
    return np.argmax(logits.reshape(len(logits), -1), axis=1)

