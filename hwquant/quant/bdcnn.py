"""Post-training Binarized-DCNN quantization (``--method bdcnn``): every conv/linear layer's
weights decomposed into ``K`` binary bases (:func:`hwquant.bdcnn.decompose`), no retraining.

Per layer: the exhaustive alternating decomposition of every output neuron's weights (a conv
neuron's whole filter), the coefficients rounded to ``coef_bits``-bit fixed point with one
power-of-two scale per layer (:func:`hwquant.bdcnn.quantize_coefficients`), then the exact
M-step once more for the rounded coefficients; the IR stores the integer signed sums ``W =
sum_a C_a M_a`` and ``C`` (:class:`hwquant.ir.BdcnnData`). Activations (the network input too)
are ``Q``-bit with a power-of-two step calibrated offline and their format's minimum as the
range's offset: the static range of ``docs/arithmetic.md``. With the paper's per-sample range
(``range_mode="sample"``) the maps between layers are :data:`SAMPLE_MAP_BITS`-bit (calibrated
the same way) and every bdcnn layer quantizes its whole input map to ``Q`` bits per sample
(:func:`hwquant.golden.bdcnn.sample_codes`). BatchNorm is folded into the weights before the
decomposition.
"""

from __future__ import annotations

import numpy as np

from .. import ir
from ..bdcnn import (
    DecompositionError,
    decompose,
    nearest_patterns,
    quantize_coefficients,
    sign_patterns,
)
from .fixed import QuantizationError, build_network

__all__ = ["quantize_bdcnn", "decompose_layer", "DEFAULT_COEF_BITS", "DEFAULT_QBITS",
           "DEFAULT_BASIS", "QBITS_RANGE", "COEF_BITS_RANGE"]

DEFAULT_BASIS = 6
DEFAULT_QBITS = 6
#: From the measured curve on the digits default at K = Q = 6 (float 99.11 %): 3 bits 86.22 %,
#: 4 bits 98.89 %, 5 bits 99.33 %, 6 bits 99.56 %, 8 bits 99.11 % (golden, test split): from
#: 5 bits on within the noise of float; 8 keeps a margin for wider layers at 3 % of the
#: stored bits (K * 8 per neuron against D * K).
DEFAULT_COEF_BITS = 8
QBITS_RANGE = (2, 8)
#: Width of the maps between layers with the per-sample range (each layer re-quantizes its
#: input map to Q bits itself).
SAMPLE_MAP_BITS = 8
COEF_BITS_RANGE = (2, 16)


def decompose_layer(name, weight, *, basis, qbits, coef_bits, restarts, seed,
                    log=None, range_mode="static") -> dict:
    """The IR weight fields of one layer: integer sums, width, fraction, kind data."""
    w = np.asarray(weight, dtype=np.float64)
    rows = w.reshape(len(w), -1)

    def progress(done, total):
        if log is not None:
            log(f"{name}: decomposed {done}/{total} restarts")

    try:
        dec = decompose(rows, basis, restarts=restarts, seed=seed, name=name, progress=progress)
    except DecompositionError as exc:
        raise QuantizationError(str(exc)) from None
    c, frac = quantize_coefficients(dec.coefficients, coef_bits)
    if not c.any():
        raise QuantizationError(f"Layer '{name}': every coefficient rounds to 0 at "
                                f"{coef_bits} bits")
    idx = nearest_patterns(rows, c * 2.0 ** -frac)
    values = c @ sign_patterns(basis).T
    ints = np.take_along_axis(values, idx, axis=1)
    bits = max(2, ir.signed_bits_for(int(min(ints.min(), 0)), int(max(ints.max(), 0))))
    if log is not None:
        rel = float(((rows - ints * 2.0 ** -frac) ** 2).sum() / max((rows ** 2).sum(), 1e-300))
        log(f"{name}: K={basis}, {dec.iterations} iterations, {dec.seconds:.1f} s, relative "
            f"error {rel:.4f} with {coef_bits}-bit coefficients")
    data = ir.BdcnnData(basis=basis, qbits=qbits, coef_bits=coef_bits,
                        coefficients=tuple(map(tuple, c.tolist())), range=range_mode)
    return {"weight": ints.reshape(w.shape), "weight_bits": bits, "weight_frac": int(frac),
            "encoding": "bdcnn", "kind_data": data}


def quantize_bdcnn(graph, x_cal, *, basis, qbits, coef_bits, restarts=10, seed=0,
                   name="network", metadata=None, calib_percentile=None, log=None,
                   range_mode="static"):
    """Binarized-DCNN post-training quantization of a float graph; returns an IR network."""
    def weights(node):
        return decompose_layer(node.name, node.weight, basis=basis, qbits=qbits,
                               coef_bits=coef_bits, restarts=restarts, seed=seed, log=log,
                               range_mode=range_mode)

    meta = {"method": "bdcnn", "basis": basis, "qbits": qbits, "coef_bits": coef_bits,
            "range": range_mode, **(metadata or {})}
    abits = qbits if range_mode == "static" else SAMPLE_MAP_BITS
    return build_network(graph, x_cal, abits=abits, weight_quantizer=weights, name=name,
                         metadata=meta, calib_percentile=calib_percentile)
