"""Kernel templates: the 25 HLAC 3x3 masks, templated first conv layers, and their recognition.

The 25 masks are those of higher-order local auto-correlation (Otsu and Kurita, "A new scheme
for practical flexible and intelligent vision systems", IAPR MVA 1988): the 3x3 binary
patterns of order N <= 2 (the centre plus up to two displacements inside the 3x3
neighbourhood) modulo translation, 1 of order 0, 4 of order 1 and 20 of order 2, in the usual
order (:data:`HLAC_MASKS`; template ``k`` below is ``HLAC_MASKS[k]``, 0-based).

A *template kernel* (Iuchi and Tsumura, kernel templating and computation reuse for CNNs)
carries ``+a`` on the cells of a mask and ``-a`` off it, the same 2-D pattern on every input
channel: ``w = a * (2 * mask - 1)``, with ``a = 3 / sqrt(fan_in)`` (three standard
deviations of the LeCun-normal initialisation) when training fixes it. Its output is
``a * (2 * sum_on x - sum x)``: one window sum shared by every template channel, 0-2 additions
per template, and ``a`` folds into the requantization (``docs/arithmetic.md``, "Template
kernels").

Training (:func:`fix_templates`): the first ``T`` kernels of the first conv layer are set to
templates ``0 .. T-1`` and excluded from every update (their gradient is zeroed before each
optimizer step and their values are restored after it, so neither weight decay nor momentum
moves them: they stay bit-identical). Recognition (:func:`find_templates`): the channels of a
float or integer kernel tensor that are template kernels, with their template index and sign
(a BatchNorm with a negative gamma folded into the kernel flips ``+a``/``-a``).

Pure Python and NumPy except :func:`fix_templates` (torch, imported lazily).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from .errors import HwquantError

__all__ = ["HLAC_MASKS", "HLAC_ORDERS", "TemplateError", "masks", "template_kernel",
           "template_value", "translation_classes", "fix_templates", "TemplateFreeze",
           "find_templates", "first_conv"]

#: The 25 HLAC masks, rows top to bottom, ``1`` = on ("black"), in the canonical order.
HLAC_MASKS = (
    "000/010/000",
    "000/011/000", "001/010/000", "010/010/000", "100/010/000",
    "000/111/000", "001/010/100", "010/010/010", "100/010/001",
    "001/110/000", "010/010/100", "100/010/010", "000/110/001",
    "000/011/100", "001/010/010", "010/010/001", "100/011/000",
    "010/110/000", "100/010/100", "000/110/010", "000/010/101",
    "000/011/010", "001/010/001", "010/011/000", "101/010/000",
)

#: Order (number of displacements) of each mask: its on cells minus one.
HLAC_ORDERS = tuple(m.count("1") - 1 for m in HLAC_MASKS)


class TemplateError(HwquantError, ValueError):
    """Templates asked for a layer that cannot take them (too many, not 3x3, no conv)."""


def masks() -> np.ndarray:
    """The 25 masks as a ``(25, 3, 3)`` int64 array of 0/1."""
    return np.array([[[int(c) for c in row] for row in m.split("/")] for m in HLAC_MASKS],
                    dtype=np.int64)


def _cells(mask) -> frozenset:
    return frozenset((int(r) - 1, int(c) - 1) for r, c in zip(*np.nonzero(mask), strict=True))


def _canonical(cells) -> frozenset:
    """The translation class of a set of cells: the set moved to touch the origin."""
    r0 = min(r for r, _ in cells)
    c0 = min(c for _, c in cells)
    return frozenset((r - r0, c - c0) for r, c in cells)


def translation_classes() -> set:
    """Every translation class of a 3x3 pattern of order <= 2 that contains the centre (an
    exhaustive enumeration: the centre plus 0-2 of the other 8 cells)."""
    others = [(r, c) for r in (-1, 0, 1) for c in (-1, 0, 1) if (r, c) != (0, 0)]
    classes = set()
    for n in range(3):
        for extra in itertools.combinations(others, n):
            classes.add(_canonical({(0, 0), *extra}))
    return classes


def mask_class(mask) -> frozenset:
    """The translation class of one mask (see :func:`translation_classes`)."""
    return _canonical(_cells(mask))


def template_value(fan_in: int) -> float:
    """``a = 3 / sqrt(fan_in)``: the magnitude of a trained template kernel."""
    return 3.0 / math.sqrt(fan_in)


def template_kernel(index: int, in_channels: int, a: float | None = None) -> np.ndarray:
    """Template ``index`` (0-based) as a ``(in_channels, 3, 3)`` float kernel:
    ``+a`` on the mask, ``-a`` off it, the same pattern on every input channel
    (``a = 3 / sqrt(9 * in_channels)`` by default)."""
    if not 0 <= index < len(HLAC_MASKS):
        raise TemplateError(f"Template index must be in 0..{len(HLAC_MASKS) - 1}, not {index}")
    a = template_value(9 * in_channels) if a is None else a
    pattern = a * (2.0 * masks()[index] - 1.0)
    return np.broadcast_to(pattern, (in_channels, 3, 3)).copy()


def first_conv(model):
    """``(name, module)`` of the first ``torch.nn.Conv2d`` of ``model`` in module order."""
    from torch import nn

    for name, mod in model.named_modules():
        if isinstance(mod, nn.Conv2d):
            return name, mod
    raise TemplateError(f"Templates need a conv layer; model {type(model).__name__} has none")


@dataclass
class TemplateFreeze:
    """The template kernels fixed in a model's first conv layer, and how to keep them fixed.

    ``mask_grads()`` zeroes their gradient (call after ``backward``), ``restore()`` writes
    their values back (call after every optimizer step: weight decay and momentum act on the
    parameter even with a zero gradient)."""

    layer: str
    count: int
    weight: object  # the conv's weight parameter
    values: object  # a copy of its template kernels (T, C, 3, 3)
    params_before: int
    params_after: int
    conv_weights_before: int
    conv_weights_after: int

    def mask_grads(self) -> None:
        if self.weight.grad is not None:
            self.weight.grad[:self.count] = 0

    def restore(self) -> None:
        import torch

        with torch.no_grad():
            self.weight[:self.count] = self.values

    def to_json(self) -> dict:
        return {"layer": self.layer, "templates": self.count,
                "template_names": [HLAC_MASKS[k] for k in range(self.count)],
                "trainable_parameters": {"before": self.params_before,
                                         "after": self.params_after},
                "conv_weights": {"before": self.conv_weights_before,
                                 "after": self.conv_weights_after}}


def fix_templates(model, count: int) -> TemplateFreeze:
    """Set the first ``count`` kernels of ``model``'s first conv layer to templates
    ``0 .. count-1`` (``+-3/sqrt(fan_in)``) and return the :class:`TemplateFreeze` that
    keeps them fixed while training.

    Raises :class:`TemplateError` (naming the layer and the allowed values) for a ``count``
    beyond the layer's output channels or the 25 templates, or a kernel that is not 3x3."""
    import torch

    name, conv = first_conv(model)
    oc, ic, kh, kw = conv.weight.shape
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise TemplateError(f"--templates must be a non-negative integer, not {count!r}")
    if (kh, kw) != (3, 3):
        raise TemplateError(f"Layer '{name}': templates need a 3x3 kernel, not {kh}x{kw}")
    if conv.groups != 1:
        raise TemplateError(f"Layer '{name}': templates need groups=1, not {conv.groups}")
    limit = min(oc, len(HLAC_MASKS))
    if count > limit:
        raise TemplateError(f"Layer '{name}': --templates {count} is more than its {oc} output "
                            f"channels" if count > oc else
                            f"Layer '{name}': --templates {count} is more than the "
                            f"{len(HLAC_MASKS)} HLAC templates (allowed: 0..{limit})")
    before = sum(p.numel() for p in model.parameters() if p.requires_grad)
    kernels = np.stack([template_kernel(k, ic) for k in range(count)]) if count else \
        np.zeros((0, ic, 3, 3))
    values = torch.tensor(kernels, dtype=conv.weight.dtype)
    freeze = TemplateFreeze(layer=name, count=count, weight=conv.weight, values=values,
                            params_before=before, params_after=before - values.numel(),
                            conv_weights_before=conv.weight.numel(),
                            conv_weights_after=conv.weight.numel() - values.numel())
    freeze.restore()
    return freeze


def find_templates(weight) -> tuple:
    """The template kernels among the output channels of a conv weight ``(OC, IC, 3, 3)``.

    A channel is a template kernel when its weights take exactly the two values ``+v`` and
    ``-v`` (``v > 0``), the same 2-D pattern on every input channel, and the cells holding
    ``+v`` (sign ``+1``) or those holding ``-v`` (sign ``-1``) form an HLAC mask. Returns
    ``(ids, signs, scales)``: per channel the 0-based template index or ``-1``, the sign
    (``+1`` for non-templates), and ``v`` (``0.0`` for non-templates); the channel equals
    ``sign * v * (2 * mask - 1)`` exactly. A kernel that is not 3x3 has no templates."""
    w = np.asarray(weight)
    oc = w.shape[0]
    ids, signs, scales = [-1] * oc, [1] * oc, [0.0] * oc
    if w.ndim != 4 or w.shape[2:] != (3, 3):
        return tuple(ids), tuple(signs), tuple(scales)
    table = {m.tobytes(): k for k, m in enumerate(masks())}
    for c in range(oc):
        plane = w[c, 0]
        if not np.all(w[c] == plane):
            continue
        v = float(np.abs(plane).max())
        if not v > 0 or not np.all(np.abs(plane) == v):
            continue
        for sign in (1, -1):
            key = (sign * plane > 0).astype(np.int64).tobytes()
            if key in table:
                ids[c], signs[c], scales[c] = table[key], sign, v
                break
    return tuple(ids), tuple(signs), tuple(scales)
