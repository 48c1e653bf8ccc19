"""Computation reuse of one layer: how often the same (weight, activation) pair is multiplied.

The statistic of Iuchi and Tsumura's study of kernel templating and computation reuse (its
tables 2 and 3): over every multiplication a conv (or linear) layer performs for one input
image, the number of distinct ordered pairs ``(weight code, input code)`` and the histogram
of their repeat counts in the bins 1-5, 6-10, 11-50, 51-100, 101-500, 501-1000, 1001-5000,
5001-10000 and more than 10000, averaged over images drawn at random (seeded, without
replacement) from the test split; the *reuse fraction* is distinct / total. Padding and stride
are those of the model (a padded tap is a multiplication by the code of 0.0); zero inputs
count.

Codes per precision:

* ``float32``: the exact float32 values (``-0.0`` counted as ``+0.0``);
* ``float16``: both operands cast to IEEE binary16 (round to nearest even);
* ``fixed8``: weights signed 8-bit with one power-of-two scale per layer,
  ``2**f``, ``f`` the largest integer with ``max|w| * 2**f <= 127.5``, code
  ``sat(RHU(w * 2**f), -128, 127)``; inputs 8-bit with one scale per tensor over the images
  counted: ``sat(RHU(x * 255 / max x), 0, 255)`` for non-negative inputs (digits ``k/16``
  and 8-bit images ``k/255`` map to distinct codes per ``k``), ``sat(RHU(x * 127 / max|x|),
  -128, 127)`` otherwise;
* a ``.hwq`` network: its own integer weights and the golden model's integer activations
  (one precision, ``hwq``).

With ``templates=T`` the first ``T`` kernels of the layer are replaced by the HLAC templates
``0 .. T-1`` (``+-3/sqrt(fan_in)``), the other kernels kept: the "with templates" columns.

Vectorised: per image one array of ``OC * fan_in * positions`` packed int64 keys
``weight_id * n_inputs + input_id`` and one ``np.unique`` (777,600 keys for a 32x3x3x3 conv
over a 32x32x3 image take tens of milliseconds).
"""

from __future__ import annotations

import numpy as np

from .errors import HwquantError

__all__ = ["BINS", "PRECISIONS", "ReuseError", "pair_counts", "reuse_histogram",
           "layer_reuse", "markdown_table"]

#: Repeat-count bins ``(lo, hi)`` (``hi`` None: no upper end).
BINS = ((1, 5), (6, 10), (11, 50), (51, 100), (101, 500), (501, 1000), (1001, 5000),
        (5001, 10000), (10001, None))

#: Precisions of a float model.
PRECISIONS = ("float32", "float16", "fixed8")


class ReuseError(HwquantError, ValueError):
    """Bad options for the reuse analysis (layer, precision, images)."""


def bin_label(lo, hi) -> str:
    return f"{lo}-{hi}" if hi is not None else f">{lo - 1}"


def _ids(values):
    """Dense ids of the distinct values of an array (and how many there are)."""
    uniq, inv = np.unique(np.asarray(values).ravel(), return_inverse=True)
    return inv.reshape(np.shape(values)).astype(np.int64), len(uniq)


def pair_counts(weight, x, *, stride=(1, 1), padding=(0, 0), pad_value=0) -> np.ndarray:
    """Repeat count of every distinct ``(weight, input)`` pair of one image.

    ``weight`` is ``(OC, C, KH, KW)`` (conv) or ``(OC, F)`` (linear) and ``x`` one input
    ``(C, H, W)`` or ``(F,)``, both already as codes (equal codes are equal operands). Returns
    the counts (their sum is the number of multiplications)."""
    w = np.asarray(weight)
    x = np.asarray(x)
    if w.ndim == 2:  # linear: every weight meets its one input
        wid, _ = _ids(w)
        xid, nx = _ids(x)
        keys = wid * nx + xid[None, :]
    else:
        oc, c, kh, kw = w.shape
        (sh, sw), (ph, pw) = stride, padding
        xp = np.pad(x, ((0, 0), (ph, ph), (pw, pw)), constant_values=pad_value)
        ho = (xp.shape[1] - kh) // sh + 1
        wo = (xp.shape[2] - kw) // sw + 1
        xid, nx = _ids(xp)
        wid, _ = _ids(w)
        # windows: (C, KH, KW, HO, WO) input ids seen by each kernel element
        win = np.empty((c, kh, kw, ho, wo), dtype=np.int64)
        for p in range(kh):
            for q in range(kw):
                win[:, p, q] = xid[:, p:p + sh * (ho - 1) + 1:sh, q:q + sw * (wo - 1) + 1:sw]
        keys = wid.reshape(oc, -1, 1) * nx + win.reshape(1, c * kh * kw, ho * wo)
    _, counts = np.unique(keys.ravel(), return_counts=True)
    return counts


def reuse_histogram(counts) -> dict:
    """Distinct pairs, total multiplications, fraction and the binned histogram of ``counts``."""
    counts = np.asarray(counts)
    hist = [int(((counts >= lo) & (counts <= (hi if hi is not None else counts.max(initial=0))
                                   )).sum()) for lo, hi in BINS]
    total = int(counts.sum())
    return {"distinct": len(counts), "total": total, "fraction": len(counts) / total,
            "histogram": hist}


def _codes_float(w, xs, precision):
    if precision == "float32":
        return np.asarray(w, np.float32) + np.float32(0), np.asarray(xs, np.float32) + \
            np.float32(0)
    return np.asarray(w, np.float16) + np.float16(0), np.asarray(xs, np.float16) + np.float16(0)


def _codes_fixed8(w, xs):
    w = np.asarray(w, dtype=np.float64)
    wmax = float(np.abs(w).max())
    f = int(np.floor(np.log2(127.5 / wmax))) if wmax > 0 else 0
    while wmax * 2.0 ** (f + 1) <= 127.5:
        f += 1
    while wmax * 2.0 ** f > 127.5:
        f -= 1
    cw = np.clip(np.floor(w * 2.0 ** f + 0.5), -128, 127).astype(np.int64)
    xs = np.asarray(xs, dtype=np.float64)
    if xs.min() >= 0:
        top = float(xs.max()) or 1.0
        cx = np.clip(np.floor(xs * (255 / top) + 0.5), 0, 255)
    else:
        top = float(np.abs(xs).max())
        cx = np.clip(np.floor(xs * (127 / top) + 0.5), -128, 127)
    return cw, cx.astype(np.int64)


def _average(rows) -> dict:
    out = {"distinct": float(np.mean([r["distinct"] for r in rows])),
           "total": float(np.mean([r["total"] for r in rows])),
           "histogram": [float(v) for v in np.mean([r["histogram"] for r in rows], axis=0)]}
    out["fraction"] = out["distinct"] / out["total"]
    out["images"] = len(rows)
    return out


def layer_reuse(weight, inputs, *, precisions, stride=(1, 1), padding=(0, 0),
                integer=False) -> dict:
    """Averaged :func:`reuse_histogram` of a layer per precision over the ``inputs`` (a batch
    of the layer's input tensors). ``integer``: ``weight`` and ``inputs`` are the network's
    own integer codes (a ``.hwq``), counted as they are under the name ``hwq``."""
    out = {}
    for prec in (["hwq"] if integer else precisions):
        if prec == "hwq":
            cw, cx = np.asarray(weight), np.asarray(inputs)
        elif prec == "fixed8":
            cw, cx = _codes_fixed8(weight, inputs)
        else:
            cw, cx = _codes_float(weight, inputs, prec)
        zero = cx.dtype.type(0)
        rows = [reuse_histogram(pair_counts(cw, x, stride=stride, padding=padding,
                                            pad_value=zero)) for x in cx]
        out[prec] = _average(rows)
    return out


def markdown_table(columns: dict) -> str:
    """The table of the study's layout: one row per bin, then the distinct pairs, the
    multiplications and the reuse fraction; ``columns`` maps a heading to an averaged
    histogram."""
    heads = list(columns)
    lines = ["| count bin | " + " | ".join(heads) + " |",
             "|---|" + "---:|" * len(heads)]
    for k, (lo, hi) in enumerate(BINS):
        lines.append(f"| {bin_label(lo, hi)} | "
                     + " | ".join(f"{columns[h]['histogram'][k]:.1f}" for h in heads) + " |")
    lines.append("| total distinct | " + " | ".join(f"{columns[h]['distinct']:.1f}"
                                                    for h in heads) + " |")
    lines.append("| multiplications | " + " | ".join(f"{columns[h]['total']:.0f}"
                                                     for h in heads) + " |")
    lines.append("| distinct / total | " + " | ".join(f"{columns[h]['fraction']:.2%}"
                                                      for h in heads) + " |")
    return "\n".join(lines)


def parse_precisions(text) -> list:
    names = [t.strip() for t in str(text).split(",") if t.strip()]
    bad = [n for n in names if n not in PRECISIONS]
    if bad or not names:
        raise ReuseError(f"--precision {bad[0] if bad else text!r} is not one of "
                         f"{', '.join(PRECISIONS)}")
    return list(dict.fromkeys(names))


def _pick_layer(layers, spec, what):
    """``(index, layer)`` among weight layers by name or index (default the first conv)."""
    names = [layer.name for layer in layers]
    if spec is None:
        convs = [i for i, layer in enumerate(layers) if _is_conv(layer)]
        i = convs[0] if convs else 0
        return layers[i]
    if spec in names:
        return layers[names.index(spec)]
    try:
        i = int(spec)
    except ValueError:
        i = None
    if i is not None and 0 <= i < len(layers):
        return layers[i]
    raise ReuseError(f"--layer {spec} is not a weight layer of the {what} (by name or index "
                     f"0..{len(layers) - 1}: {', '.join(names)})")


def _is_conv(layer):
    return getattr(layer, "op", None) == "conv2d" or type(layer).__name__ == "Conv2d"


def analyse(path, dataset, *, layer=None, images=10, precisions=PRECISIONS, templates=0,
            seed=0) -> dict:
    """The reuse report of ``path`` (``.pt2`` model or ``.hwq`` network) on ``images`` test
    images of ``dataset``: per precision the averaged histogram, with templates substituted
    when ``templates > 0``; ``markdown`` holds the table."""
    from .templates import template_kernel

    n = len(dataset.x_test)
    images = min(images, n)
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(n, size=images, replace=False))
    x = dataset.x_test[idx]
    is_hwq = str(path).endswith(".hwq")
    if is_hwq:
        from . import golden, hwq
        from .simulate import quantize_input

        if templates:
            raise ReuseError("--templates substitutes float kernels: it needs a MODEL.pt2, "
                             "not a .hwq network")
        net = hwq.load(path)
        chosen = _pick_layer(list(net.weight_layers), layer, "network")
        acts = golden.run(net, quantize_input(net, x))
        inputs = chosen.in_format.value(acts[chosen.inputs[0]])
        weight = chosen.weight
        geo = {}
        if _is_conv(chosen):
            geo = {"stride": chosen.stride, "padding": chosen.padding}
        cols = {"hwq": layer_reuse(weight, inputs, precisions=(), integer=True, **geo)["hwq"]}
    else:
        from .frontend import load_model

        graph = load_model(path)
        chosen = _pick_layer([nd for nd in graph.nodes if nd.op in ("conv2d", "linear")],
                             layer, "model")
        inputs = graph.run(x)[chosen.inputs[0]]
        weight = np.asarray(chosen.weight)
        geo = {"stride": chosen.stride, "padding": chosen.padding} if _is_conv(chosen) else {}
        cols = {}
        res = layer_reuse(weight, inputs, precisions=precisions, **geo)
        suffix = " (as given)" if templates else ""
        cols.update({f"{p}{suffix}": v for p, v in res.items()})
        if templates:
            if not _is_conv(chosen) or weight.shape[2:] != (3, 3):
                raise ReuseError(f"Layer '{chosen.name}': templates need a 3x3 conv layer")
            if templates > min(weight.shape[0], 25):
                raise ReuseError(f"Layer '{chosen.name}': --templates {templates} is more than "
                                 f"{min(weight.shape[0], 25)} (its output channels, at most "
                                 f"the 25 HLAC templates)")
            tw = weight.copy()
            for k in range(templates):
                tw[k] = template_kernel(k, weight.shape[1])
            res = layer_reuse(tw, inputs, precisions=precisions, **geo)
            cols.update({f"{p} ({templates} templates)": v for p, v in res.items()})
    return {"model": str(path), "layer": chosen.name, "images": int(images),
            "image_indices": idx.tolist(), "bins": [bin_label(*b) for b in BINS],
            "columns": cols, "markdown": markdown_table(cols)}
