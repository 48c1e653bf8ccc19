"""The one bit-order definition (:mod:`hwquant.layout`): lane packing, tensor <-> beats, and
the weight orders that make a window lane match the golden model's receptive field."""

import re

import numpy as np
import pytest
from amaranth.hdl import signed, unsigned
from amaranth.lib import data

from hwquant import golden
from hwquant.layout import (
    batch_to_beats,
    beats_to_tensor,
    conv_weight_matrix,
    flatten_weight_matrix,
    pack_fields_array,
    pack_lanes,
    pack_lanes_array,
    packed_to_ints,
    tensor_to_beats,
    unpack_lanes,
)


def lane_range(bits, is_signed):
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if is_signed else (0, (1 << bits) - 1)


def random_lanes(rng, bits, is_signed, lanes):
    lo, hi = lane_range(bits, is_signed)
    # Python ints: numpy's integers() cannot draw above int64 bounds, so draw per lane.
    vals = [int(rng.integers(lo, hi, endpoint=True)) for _ in range(lanes)]
    vals[0], vals[-1] = lo, hi  # the extremes of the format in the first and last lane
    return np.array(vals, dtype=np.int64)


CASES = [(bits, s, lanes) for bits in (1, 2, 3, 7, 8, 13, 32, 48) for s in (False, True)
         for lanes in (1, 3, 11)]


@pytest.mark.parametrize("bits, is_signed, lanes", CASES)
def test_pack_unpack_round_trip(bits, is_signed, lanes):
    rng = np.random.default_rng(bits * 100 + lanes * 2 + is_signed)
    for _ in range(20):
        vals = random_lanes(rng, bits, is_signed, lanes)
        word = pack_lanes(vals, bits)
        # Independent definition: lane i at bits [i*bits, (i+1)*bits), two's complement.
        assert word == sum((int(v) % (1 << bits)) << (i * bits) for i, v in enumerate(vals))
        assert 0 <= word < 1 << (bits * lanes)
        np.testing.assert_array_equal(unpack_lanes(word, bits, lanes, is_signed), vals)


@pytest.mark.parametrize("bits, is_signed, lanes", [(4, True, 3), (8, False, 9), (13, True, 7),
                                                    (48, True, 3), (1, False, 70), (1, True, 5)])
def test_pack_matches_amaranth_array_layout(bits, is_signed, lanes):
    """The hardware's ``data.ArrayLayout`` puts lane 0 in the LSBs exactly like layout.py."""
    rng = np.random.default_rng(bits + lanes)
    layout = data.ArrayLayout(signed(bits) if is_signed else unsigned(bits), lanes)
    for _ in range(10):
        vals = random_lanes(rng, bits, is_signed, lanes)
        word = pack_lanes(vals, bits)
        assert layout.const(vals.tolist()).as_bits() == word
        view = layout.from_bits(word)
        assert [view[i] for i in range(lanes)] == vals.tolist()


def test_pack_lane_zero_in_lsbs():
    assert pack_lanes([1, 0], 4) == 0x01
    assert pack_lanes([0, 1], 4) == 0x10
    assert pack_lanes([-1], 4) == 0xF
    assert pack_lanes([-8, 7], 4) == 0x78
    assert pack_lanes(np.array([[1, 2], [3, 4]]), 8) == 0x04030201  # raveled in C order
    np.testing.assert_array_equal(unpack_lanes(0x78, 4, 2, True), [-8, 7])
    np.testing.assert_array_equal(unpack_lanes(0x78, 4, 2, False), [8, 7])
    assert pack_lanes([], 8) == 0


def test_pack_wide_words_beyond_64_bits():
    vals = [-(1 << 47), (1 << 47) - 1, -1, 0, 12345]
    word = pack_lanes(vals, 48)
    assert word.bit_length() > 64
    assert word >> (48 * 4) == 12345
    np.testing.assert_array_equal(unpack_lanes(word, 48, 5, True), vals)


@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 2, 5), (4, 5, 2), (1, 8, 8)])
def test_tensor_to_beats_raster_order(shape):
    c, h, w = shape
    x = np.random.default_rng(sum(shape)).integers(-100, 100, shape)
    beats = tensor_to_beats(x)
    assert beats.shape == (h * w, c)
    for y in range(h):
        for xx in range(w):
            np.testing.assert_array_equal(beats[y * w + xx], x[:, y, xx])
    np.testing.assert_array_equal(beats_to_tensor(beats, shape), x)


def test_vector_is_one_beat():
    v = np.arange(7) - 3
    np.testing.assert_array_equal(tensor_to_beats(v), v[None, :])
    np.testing.assert_array_equal(beats_to_tensor(tensor_to_beats(v), (7,)), v)


@pytest.mark.parametrize("shape", [(2, 3), (1, 2, 3, 4), ()])
def test_tensor_to_beats_rejects_other_ranks(shape):
    with pytest.raises(ValueError, match=rf"^Tensors must be \(C, H, W\) or \(N,\), "
                                         rf"not shape {re.escape(str(shape))}$"):
        tensor_to_beats(np.zeros(shape))


def window_lanes(x, kernel, stride, padding, pad_value=0):
    """Windows of ``x`` (N, C, H, W) as ``(N, OH, OW, KH*KW*C)`` in window-lane order
    ``(kh*KW + kw)*C + c``, built from the golden im2col."""
    cols = golden.im2col(x, kernel, stride, padding, pad_value)  # (N, OH, OW, C, KH, KW)
    n, oh, ow = cols.shape[:3]
    return cols.transpose(0, 1, 2, 4, 5, 3).reshape(n, oh, ow, -1)


@pytest.mark.parametrize("seed", range(6))
def test_conv_weight_matrix_matches_im2col(seed):
    rng = np.random.default_rng(seed)
    oc, c = rng.integers(1, 5, 2)
    kh, kw = rng.integers(1, 4, 2)
    h, w = kh + rng.integers(0, 4), kw + rng.integers(0, 4)
    stride, padding = tuple(rng.integers(1, 3, 2)), tuple(rng.integers(0, 2, 2))
    weight = rng.integers(-8, 8, (oc, c, kh, kw))
    x = rng.integers(-50, 50, (2, c, h, w))
    wm = conv_weight_matrix(weight)
    assert wm.shape == (oc, kh * kw * c)
    for o in range(oc):
        for i in range(kh):
            for j in range(kw):
                for ch in range(c):
                    assert wm[o, (i * kw + j) * c + ch] == weight[o, ch, i, j]
    # Lane-order windows times lane-order weights == torch-order im2col times torch weights.
    cols = golden.im2col(x, (kh, kw), stride, padding)
    torch_order = cols.reshape(*cols.shape[:3], -1) @ weight.reshape(oc, -1).T
    lane_order = window_lanes(x, (kh, kw), stride, padding) @ wm.T
    np.testing.assert_array_equal(lane_order, torch_order)


@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 2, 2), (2, 3, 4), (5, 1, 3)])
def test_flatten_weight_matrix_matches_torch_flatten(shape):
    c, h, w = shape
    rng = np.random.default_rng(sum(shape))
    weight = rng.integers(-8, 8, (4, c * h * w))
    x = rng.integers(-50, 50, (3, c, h, w))
    expected = x.reshape(3, -1) @ weight.T  # torch flatten: channel-major
    # The hardware sees one full-map window whose lanes are (h, w, c) ordered.
    lanes = window_lanes(x, (h, w), (1, 1), (0, 0))[:, 0, 0]
    np.testing.assert_array_equal(lanes @ flatten_weight_matrix(weight, shape).T, expected)
    # The same window is the raster beat sequence concatenated.
    for n in range(3):
        np.testing.assert_array_equal(lanes[n], tensor_to_beats(x[n]).ravel())


# -- vectorised packing: the same words as pack_lanes, from whole arrays ---------------------


@pytest.mark.parametrize("bits, is_signed, lanes", CASES + [(64, True, 3),
                                                            (70, True, 3), (5, True, 40)])
def test_pack_lanes_array_equals_pack_lanes(bits, is_signed, lanes):
    rng = np.random.default_rng(bits * 7 + lanes + is_signed)
    rows = np.stack([random_lanes(rng, bits, is_signed, lanes)
                     for _ in range(30)]) if bits <= 64 else \
        rng.integers(-(1 << 62), 1 << 62, (30, lanes))
    packed = pack_lanes_array(rows, bits)
    assert packed.dtype == np.uint8 and packed.shape == (30, max(1, -(-bits * lanes // 8)))
    assert packed_to_ints(packed) == [pack_lanes(row, bits) for row in rows]
    # The leading axes are kept: a batch of beats packs like its flattened rows.
    np.testing.assert_array_equal(pack_lanes_array(rows.reshape(5, 6, lanes), bits),
                                  packed.reshape(5, 6, -1))


def test_pack_fields_array_mixed_widths():
    rng = np.random.default_rng(3)
    cls = rng.integers(0, 10, 50)
    logits = rng.integers(-(1 << 19), 1 << 19, (50, 10))
    packed = pack_fields_array([cls] + [logits[:, i] for i in range(10)], [4] + [20] * 10)
    assert packed_to_ints(packed) == [int(c) | (pack_lanes(row, 20) << 4)
                                      for c, row in zip(cls, logits)]
    assert packed_to_ints(pack_fields_array([], [])) == [0]
    with pytest.raises(ValueError, match="^Fields need one non-negative width each$"):
        pack_fields_array([cls], [4, 5])


def test_packed_to_ints_little_endian():
    assert packed_to_ints(np.array([[0x01, 0x02], [0xFF, 0x00]], dtype=np.uint8)) == \
        [0x0201, 0xFF]
    wide = np.arange(1, 11, dtype=np.uint8)[None, :]
    assert packed_to_ints(wide) == [int.from_bytes(bytes(range(1, 11)), "little")]


@pytest.mark.parametrize("shape, lanes", [((3, 4, 2, 5), None), ((3, 4, 2, 5), 2),
                                          ((2, 6), None), ((2, 6), 3)])
def test_batch_to_beats_concatenates_tensor_to_beats(shape, lanes):
    x = np.random.default_rng(1).integers(-9, 9, shape)
    np.testing.assert_array_equal(batch_to_beats(x, lanes),
                                  np.concatenate([tensor_to_beats(t, lanes) for t in x]))
    with pytest.raises(ValueError, match=r"^Batches must be \(N, C, H, W\) or \(N, F\)"):
        batch_to_beats(np.zeros((2, 3, 4)))
