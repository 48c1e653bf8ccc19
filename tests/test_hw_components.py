# amaranth: UnusedElaboratable=no
"""Output and FIFO components in the Amaranth Python simulator against the golden model, with random
valid gaps and ready stalls (Amaranth-style equivalence: same inputs, every output compared).

Shapes are small and beats few: the Python simulator is slow, and breadth matters more here
than size (the cocotb tests cover whole networks on the emitted Verilog).
"""

import os
import sys

import numpy as np
import pytest

from hwquant import golden, ir
from hwquant.hw.fifo import StreamFifo
from hwquant.hw.output import ArgMax
from hwquant.layout import pack_lanes, tensor_to_beats, unpack_lanes

sys.path.insert(0, os.path.dirname(__file__))
from streamsim import simulate_stream

STALLS = [(0.0, 0.0), (0.4, 0.4)]
STALL_IDS = ["no_stalls", "stalls"]


def run(dut, in_beats, in_bits, n_out, out_bits, out_lanes, out_signed, *, seed, stalls):
    """Simulate ``dut`` on integer beats; return the output beats as an int array, checking
    that exactly ``n_out`` beats came out."""
    words = [pack_lanes(beat, in_bits) for beat in in_beats]
    out, cycles = simulate_stream(dut, words, n_out, seed=seed, valid_gap=stalls[0],
                                  ready_stall=stalls[1])
    assert None not in out, f"{out.count(None)} extra beat(s) after the expected {n_out}"
    assert len(out) == n_out
    beats = np.array([unpack_lanes(w, out_bits, out_lanes, out_signed) for w in out])
    return beats.reshape(n_out, out_lanes), cycles


def window_lanes(x, kernel, stride, padding, pad_value=0):
    """Golden windows of ``x`` (N, C, H, W) as ``(N*OH*OW, KH*KW*C)`` in window-lane order."""
    cols = golden.im2col(x, kernel, stride, padding, pad_value)  # (N, OH, OW, C, KH, KW)
    return cols.transpose(0, 1, 2, 4, 5, 3).reshape(-1, kernel[0] * kernel[1] * x.shape[1])


def map_beats(x):
    """Pixel beats of a batch of maps, map after map."""
    return np.concatenate([tensor_to_beats(img) for img in x])


def random_map(rng, fmt, shape, n):
    x = rng.integers(fmt.lo, fmt.hi, (n, *shape), endpoint=True)
    x.flat[0], x.flat[-1] = fmt.lo, fmt.hi
    return x


# -- ArgMax and FIFO ---------------------------------------------------------------------------

@pytest.mark.parametrize("stalls", STALLS, ids=STALL_IDS)
@pytest.mark.parametrize("classes, bits, is_signed", [(2, 3, True), (5, 4, True), (10, 6, True),
                                                       (3, 2, False)])
def test_argmax(classes, bits, is_signed, stalls):
    fmt = ir.ActFormat(bits, is_signed, 0)
    rng = np.random.default_rng(classes)
    # Values from a narrow range: many ties, which go to the lowest index.
    logits = rng.integers(fmt.lo, min(fmt.lo + 2, fmt.hi), (24, classes), endpoint=True)
    logits[0], logits[1], logits[2] = fmt.lo, fmt.hi, fmt.lo
    logits[2, -1] = fmt.hi
    cls_bits = max(1, (classes - 1).bit_length())
    words = [pack_lanes(row, bits) for row in logits]
    out, _ = simulate_stream(ArgMax(fmt, classes), words, len(words), seed=classes,
                             valid_gap=stalls[0], ready_stall=stalls[1])
    assert None not in out
    cls = np.array([w & ((1 << cls_bits) - 1) for w in out])
    back = np.array([unpack_lanes(w >> cls_bits, bits, classes, is_signed) for w in out])
    np.testing.assert_array_equal(back, logits)
    np.testing.assert_array_equal(cls, np.argmax(logits, axis=1))
    assert cls[0] == 0 and cls[2] == classes - 1


@pytest.mark.parametrize("stalls", STALLS, ids=STALL_IDS)
@pytest.mark.parametrize("depth", [1, 2, 5])
def test_stream_fifo(depth, stalls):
    fmt = ir.ActFormat(3, True, 0)
    rng = np.random.default_rng(depth)
    beats = rng.integers(fmt.lo, fmt.hi, (30, 4), endpoint=True)
    got, _ = run(StreamFifo(fmt, 4, depth), beats, 3, len(beats), 3, 4, True, seed=depth,
                 stalls=stalls)
    np.testing.assert_array_equal(got, beats)


def test_stream_fifo_rejects_depth_zero():
    with pytest.raises(ValueError, match=r"^FIFO depth must be a positive integer, not 0$"):
        StreamFifo(ir.ActFormat(3, True, 0), 4, 0)
