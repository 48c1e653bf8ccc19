"""Torch fake-quantization of an IR network, exact to the golden model.

Every tensor is float64 holding values on the integer grid of its format (``X * 2**-frac``);
float64 represents those sums exactly while they stay below 2**53, so rounding with
``floor(v * 2**f + 1/2)`` and clamping reproduces the integer arithmetic of
``docs/arithmetic.md`` bit for bit (``tests/test_fakequant.py`` proves it against
:mod:`hwquant.golden`). Rounding uses a straight-through estimator, so the same module serves
quantization-aware retraining: pass float ``weights`` and they are fake-quantized on the fly.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .. import ir

__all__ = ["FakeQuantNetwork", "fake_quantize", "fake_quantize_clipped"]


def fake_quantize(x: torch.Tensor, frac: int, lo: int, hi: int) -> torch.Tensor:
    """``sat(RHU(x * 2**frac), lo, hi) * 2**-frac`` with a straight-through gradient."""
    scale = math.ldexp(1.0, frac)
    q = torch.clamp(torch.floor(x * scale + 0.5), lo, hi) / scale
    return x + (q - x).detach()


def fake_quantize_clipped(x: torch.Tensor, frac: int, lo: int, hi: int) -> torch.Tensor:
    """The values of :func:`fake_quantize`, with a clipped straight-through gradient: 1 where
    ``x`` lies inside the representable range ``[lo, hi] * 2**-frac``, 0 where it saturates.

    The activation quantizer of quantization-aware retraining: a saturated activation gets no
    gradient, as in the hardware it no longer depends on its input.
    """
    scale = math.ldexp(1.0, frac)
    q = torch.clamp(torch.floor(x * scale + 0.5), lo, hi) / scale
    inside = ((x >= lo / scale) & (x <= hi / scale)).to(x.dtype)
    return q.detach() + (x - x.detach()) * inside


def _requant(acc_real, layer, acc_frac):
    """Epilogue ``sat(rshift_rhu((ACC + B) * M, sh), lo, hi)`` on real values."""
    rq = layer.requant
    shape = (1, -1) + (1,) * (acc_real.dim() - 2)
    m = torch.tensor(rq.multiplier, dtype=torch.float64).reshape(shape)
    t = acc_real * math.ldexp(1.0, acc_frac) * m  # (ACC + B) * M, an integer
    return _shift_to_format(t, rq, layer.out_format.frac)


def _shift_to_format(t, rq, frac):
    """Integer-valued ``t`` -> ``sat(rshift_rhu(t, shift), lo, hi) * 2**-frac``."""
    # fake_quantize(t, -shift) is sat(RHU(t * 2**-shift)) * 2**shift.
    return fake_quantize(t, -rq.shift, rq.lo, rq.hi) * math.ldexp(1.0, -rq.shift - frac)


def _real_value(code, fmt):
    """Real value of integer codes ``code`` in format ``fmt`` (``2*code - 1`` if bipolar)."""
    if fmt.bipolar:
        return 2.0 * code - 1.0
    return code * math.ldexp(1.0, -fmt.frac)


class FakeQuantNetwork(torch.nn.Module):
    """float64 torch forward of ``net`` (same layers, formats and rounding as the IR).

    Parameters
    ----------
    net : :class:`hwquant.ir.Network`
    weights : dict of layer name -> float tensor, optional
        Float (shadow) weights to fake-quantize with the layer's ``weight_frac``/``weight_bits``
        on every forward (fixed kind). Layers without an entry use their IR integer weights.
    """

    def __init__(self, net: ir.Network, weights: dict | None = None):
        super().__init__()
        self.net = net
        self.shadow = torch.nn.ParameterDict({
            name: torch.nn.Parameter(torch.as_tensor(np.asarray(w), dtype=torch.float64))
            for name, w in (weights or {}).items()})

    def _weight(self, layer):
        wf = layer.weight_frac
        if layer.name in self.shadow:
            hi = (1 << (layer.weight_bits - 1)) - 1
            return fake_quantize(self.shadow[layer.name], wf, -hi - 1, hi)
        return torch.tensor(layer.weight, dtype=torch.float64) * math.ldexp(1.0, -wf)

    def forward(self, x: torch.Tensor) -> dict:
        """Real-valued outputs of every layer (and ``"input"``) for a real input batch."""
        fmt = self.net.input_format
        x = x.to(torch.float64)
        if fmt.bipolar:  # Sign with Sign(0) = +1, straight-through gradient
            first = x + (torch.where(x >= 0, 1.0, -1.0).to(x) - x).detach()
        else:
            first = fake_quantize(x, fmt.frac, fmt.lo, fmt.hi)
        values = {ir.INPUT: first}
        for layer in self.net.layers:
            args = [values[s] for s in layer.inputs]
            values[layer.name] = self._layer(layer, args)
        return values

    @staticmethod
    def _epilogue(layer, acc):
        """The layer's epilogue on the real value ``acc`` of ``ACC + B``."""
        ep, acc_frac = layer.epilogue, layer.acc_frac
        if isinstance(ep, ir.Requant):
            return _requant(acc, layer, acc_frac)
        shape = (1, -1) + (1,) * (acc.dim() - 2)
        if isinstance(ep, ir.Logits):
            if ep.scale is None:
                return acc
            return acc * torch.tensor(ep.scale, dtype=torch.float64).reshape(shape)
        if isinstance(ep, ir.Thresholds):  # a step function: no gradient flows through it
            t = acc * math.ldexp(1.0, acc_frac)  # ACC + B, an integer
            d = torch.tensor(ep.direction, dtype=torch.float64).reshape(shape)
            thr = torch.tensor(ep.thresholds, dtype=torch.float64)
            thr = thr.reshape(thr.shape[0], *shape[2:], thr.shape[1]) if acc.dim() > 2 else thr
            passed = (d * t).unsqueeze(-1) >= d.unsqueeze(-1) * thr
            code = layer.out_format.lo + passed.sum(dim=-1).to(torch.float64)
            return _real_value(code, layer.out_format)
        raise TypeError(f"Layer '{layer.name}': no fake-quant epilogue for "
                        f"{type(ep).__name__}")

    @staticmethod
    def _sample_acc(layer, x):
        """``ACC`` (integer-valued) of a ``bdcnn`` layer with the per-sample range, written
        with exact divisions (``docs/arithmetic.md``; the golden model uses the reciprocal):
        ``q = floor((2 (X - m) L + R) / 2R)``, ``ACC = m * Rin + floor((2 R P + L) / 2L)``."""
        top = float((1 << layer.kind_data.qbits) - 1)
        v = x * math.ldexp(1.0, layer.in_format.frac)  # the integer codes
        flat = v.flatten(1)
        shape = (-1,) + (1,) * (v.dim() - 1)
        m = flat.min(dim=1).values.reshape(shape)
        r = flat.max(dim=1).values.reshape(shape) - m
        q = torch.where(r > 0, torch.floor((2 * (v - m) * top + r) / (2 * r.clamp(min=1))),
                        torch.zeros_like(v))
        w = torch.tensor(layer.weight, dtype=torch.float64)
        if isinstance(layer, ir.Conv2d):
            def apply(a):
                return F.conv2d(a, w, stride=layer.stride, padding=layer.padding)
        else:
            def apply(a):
                return F.linear(a, w)
        p = apply(q)
        inside = apply(torch.ones_like(v[:1]))
        m, r = m.reshape((-1,) + (1,) * (p.dim() - 1)), r.reshape((-1,) + (1,) * (p.dim() - 1))
        return m * inside + torch.floor((2 * r * p + top) / (2 * top))

    def _layer(self, layer, args):
        x = args[0]
        if isinstance(layer, (ir.Conv2d, ir.Linear)) and getattr(
                layer.kind_data, "range", None) == "sample":
            acc = self._sample_acc(layer, x) + torch.tensor(layer.bias, dtype=torch.float64
                                                            ).reshape(1, -1, *(1,) * (x.dim() - 2))
            return self._epilogue(layer, acc * math.ldexp(1.0, -layer.acc_frac))
        if isinstance(layer, (ir.Conv2d, ir.Linear)):
            acc_frac = layer.acc_frac
            b = torch.tensor(layer.bias, dtype=torch.float64) * math.ldexp(1.0, -acc_frac)
            w = self._weight(layer)
            if isinstance(layer, ir.Conv2d):
                pad = layer.padding
                if layer.in_format.bipolar:  # padded positions hold code 0 = -1
                    (ph, pw), pad = pad, (0, 0)
                    x = F.pad(x, (pw, pw, ph, ph), value=-1.0)
                acc = F.conv2d(x, w, b, stride=layer.stride, padding=pad)
            else:
                acc = F.linear(x, w, b)
            return self._epilogue(layer, acc)
        if isinstance(layer, ir.MaxPool2d):
            # torch pads with -inf; the IR pads with fmt.lo. Equal: a window always holds at
            # least one real value (padding <= kernel / 2) and every real value is >= lo.
            return F.max_pool2d(x, layer.kernel, layer.stride, layer.padding)
        if isinstance(layer, ir.AvgPool2d):
            s = F.avg_pool2d(x, layer.kernel, layer.stride, layer.padding,
                             count_include_pad=True, divisor_override=1)
            rq = layer.requant
            t = s * math.ldexp(1.0, layer.in_format.frac) * int(rq.multiplier[0])
            return _shift_to_format(t, rq, layer.out_format.frac)
        if isinstance(layer, ir.Flatten):
            return torch.flatten(x, 1)
        if isinstance(layer, ir.Add):
            f = layer.out_format
            return fake_quantize(args[0] + args[1], f.frac, layer.lo, f.hi)
        raise TypeError(f"Unknown IR layer type {type(layer).__name__}")

    @torch.no_grad()
    def integer_outputs(self, x_int) -> dict:
        """Every layer's output as integers (``value * 2**frac``) for an integer input batch,
        for comparison with :func:`hwquant.golden.run`."""
        x = _real_value(torch.as_tensor(np.asarray(x_int), dtype=torch.float64),
                        self.net.input_format)
        out = {}
        for name, v in self.forward(x).items():
            fmt = self.net.format_of(name)
            code = (v + 1.0) / 2.0 if fmt.bipolar else v * math.ldexp(1.0, fmt.frac)
            out[name] = code.numpy().astype(np.int64)
        return out
