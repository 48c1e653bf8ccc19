"""Validation of the IR (:mod:`hwquant.ir`): every rule rejects its violation with a message
naming the layer, and valid networks are frozen."""

import dataclasses
import re

import numpy as np
import pytest

from hwquant import ir

U8 = ir.ActFormat(8, False, 4)
S8 = ir.ActFormat(8, True, 3)


def conv_layer(name="c1", inputs=("input",), *, in_shape=(1, 6, 6), in_format=U8, oc=4,
               kernel=(3, 3), padding=1, stride=1, weight=None, weight_bits=4, epilogue="auto",
               out_format=U8, fold=None, **extra):
    if weight is None:
        rng = np.random.default_rng(0)
        weight = rng.integers(-8, 8, (oc, in_shape[0], *kernel))
    if isinstance(epilogue, str):
        epilogue = ir.Requant(np.ones(len(weight), dtype=np.int64), 5, 0, out_format.hi)
    return ir.Conv2d(name=name, inputs=inputs, in_format=in_format, weight=weight,
                     weight_bits=weight_bits, weight_frac=3, bias=np.zeros(len(weight)),
                     epilogue=epilogue, out_format=out_format, fold=fold or ir.Fold(),
                     in_shape=in_shape,
                     stride=stride, padding=padding, **extra)


def logits_layer(name="fc", inputs=("flat",), *, fan_in=36, classes=10, in_format=U8):
    w = np.arange(classes * fan_in).reshape(classes, fan_in) % 15 - 7
    b = np.arange(classes) - 3
    lo, hi = ir.matrix_range(w, b, in_format)
    fmt = ir.ActFormat(ir.signed_bits_for(int(lo.min()), int(hi.max())), True,
                       in_format.frac + 2)
    return ir.Linear(name=name, inputs=inputs, in_format=in_format, weight=w, weight_bits=4,
                     weight_frac=2, bias=b, epilogue=ir.Logits(), out_format=fmt)


def small_layers():
    return [
        conv_layer(),
        ir.MaxPool2d("p1", ("c1",), (4, 6, 6), 2, 2, 0, U8),
        ir.Flatten("flat", ("p1",), (4, 3, 3), U8),
        logits_layer(),
    ]


def make_net(layers=None, *, input_shape=(1, 6, 6), input_format=U8):
    return ir.Network("small", input_shape, input_format,
                      tuple(small_layers() if layers is None else layers))


def test_small_network_is_valid():
    net = make_net()
    assert net.output.name == "fc"
    assert [layer.name for layer in net.weight_layers] == ["c1", "fc"]
    assert net.shape_of("input") == (1, 6, 6)
    assert net.shape_of("p1") == (4, 3, 3)
    assert net.format_of("fc").signed
    assert [layer.name for layer in net.consumers("c1")] == ["p1"]
    with pytest.raises(KeyError, match=r"^\"Network has no layer named 'nope'\"$"):
        net.layer("nope")


# -- network-level rules ---------------------------------------------------------------------

def test_empty_network():
    with pytest.raises(ValueError, match=r"^Network has no layers$"):
        make_net([])


def test_bad_input_shape():
    with pytest.raises(ValueError, match=r"^Network input shape must be \(C, H, W\) or \(N,\), "
                                         r"not \(6, 6\)$"):
        make_net(input_shape=(6, 6))


def test_shape_mismatch():
    layers = small_layers()
    layers[1] = ir.MaxPool2d("p1", ("c1",), (4, 8, 8), 2, 2, 0, U8)
    with pytest.raises(ValueError, match=r"^Layer 'p1': input shape \(4, 8, 8\) does not match "
                                         r"producer shape \(4, 6, 6\)$"):
        make_net(layers)


def test_linear_fan_in_mismatch():
    layers = small_layers()
    layers[3] = logits_layer(fan_in=35)
    with pytest.raises(ValueError, match=r"^Layer 'fc': input shape \(35,\) does not match "
                                         r"producer shape \(36,\)$"):
        make_net(layers)


def test_format_mismatch():
    layers = small_layers()
    layers[1] = ir.MaxPool2d("p1", ("c1",), (4, 6, 6), 2, 2, 0, S8)
    with pytest.raises(ValueError, match=r"^Layer 'p1': input format .* does not match "
                                         r"producer format .*$"):
        make_net(layers)


def test_unknown_producer():
    layers = small_layers()
    layers[1] = ir.MaxPool2d("p1", ("c9",), (4, 6, 6), 2, 2, 0, U8)
    with pytest.raises(ValueError, match=r"^Layer 'p1' reads 'c9', which is not defined "
                                         r"before it$"):
        make_net(layers)


def test_producer_defined_later():
    layers = small_layers()
    layers[0], layers[1] = layers[1], layers[0]
    with pytest.raises(ValueError, match=r"^Layer 'p1' reads 'c1', which is not defined "
                                         r"before it$"):
        make_net(layers)


def test_duplicate_names():
    layers = small_layers()
    layers[1] = ir.MaxPool2d("c1", ("c1",), (4, 6, 6), 2, 2, 0, U8)
    with pytest.raises(ValueError, match=r"^Layer name 'c1' is used twice \(or is reserved\)$"):
        make_net(layers)


def test_reserved_input_name():
    layers = small_layers()
    layers[0] = conv_layer(name="input")
    with pytest.raises(ValueError, match=r"^Layer name 'input' is used twice "
                                         r"\(or is reserved\)$"):
        make_net(layers)


@pytest.mark.parametrize("name", ["", "conv-1", "1conv", "a b"])
def test_name_must_be_identifier(name):
    layers = small_layers()
    layers[0] = conv_layer(name=name)
    with pytest.raises(ValueError, match=rf"^Layer name must be an identifier, "
                                         rf"not {re.escape(repr(name))}$"):
        make_net(layers)


def test_not_a_layer():
    with pytest.raises(TypeError, match=r"^Network layers must be IR layers, not dict$"):
        make_net([{"name": "c1"}])


@pytest.mark.parametrize("epilogue", [None, ir.Logits(), ir.Logits(np.ones(4))])
def test_logits_on_non_last_layer(epilogue):
    layers = small_layers()
    layers[0] = conv_layer(epilogue=epilogue)
    with pytest.raises(ValueError, match=r"^Layer 'c1': only the last layer may emit logits$"):
        make_net(layers)


def test_unused_layer():
    layers = small_layers()
    layers.insert(1, ir.MaxPool2d("dead", ("c1",), (4, 6, 6), 3, 3, 0, U8))
    with pytest.raises(ValueError, match=r"^Layer 'dead' output is never used$"):
        make_net(layers)


def test_single_input_layers_take_one_input():
    layers = small_layers()
    layers[1] = ir.MaxPool2d("p1", ("c1", "input"), (4, 6, 6), 2, 2, 0, U8)
    with pytest.raises(ValueError, match=r"^Layer 'p1' takes one input$"):
        make_net(layers)


def residual_layers(add_shape=(4, 6, 6), add_formats=(U8, U8)):
    c2 = conv_layer("c2", ("c1",), in_shape=(4, 6, 6))
    add = ir.Add("res", ("c1", "c2"), add_shape, add_formats, U8, relu=True)
    return [conv_layer(), c2, add,
            ir.MaxPool2d("p1", ("res",), (4, 6, 6), 2, 2, 0, U8), *small_layers()[2:]]


def test_residual_network_is_valid():
    net = make_net(residual_layers())
    assert [layer.name for layer in net.consumers("c1")] == ["c2", "res"]
    assert net.layer("res").fine_frac == 4
    assert net.layer("res").lo == 0


def test_add_shape_mismatch():
    with pytest.raises(ValueError, match=r"^Layer 'res': operand shapes \[\(4, 6, 6\), "
                                         r"\(4, 6, 6\)\] differ$"):
        make_net(residual_layers(add_shape=(4, 3, 3)))


def test_add_format_mismatch():
    with pytest.raises(ValueError, match=r"^Layer 'res': operand formats do not match their "
                                         r"producers$"):
        make_net(residual_layers(add_formats=(U8, S8)))


def test_add_takes_two_inputs():
    with pytest.raises(ValueError, match=r"^Layer 'res': add takes exactly two inputs$"):
        ir.Add("res", ("c1",), (4, 6, 6), (U8,), U8)


# -- layer-level rules -----------------------------------------------------------------------

def test_weights_outside_bit_range():
    w = np.zeros((4, 1, 3, 3), dtype=np.int64)
    w[2, 0, 1, 1] = 8
    with pytest.raises(ValueError, match=r"^Layer 'c1': weights exceed 4-bit range$"):
        conv_layer(weight=w)
    w[2, 0, 1, 1] = -9
    with pytest.raises(ValueError, match=r"^Layer 'c1': weights exceed 4-bit range$"):
        conv_layer(weight=w)
    w[2, 0, 1, 1] = -8  # the extremes themselves are legal
    w[1, 0, 0, 0] = 7
    conv_layer(weight=w)


@pytest.mark.parametrize("bits", [0, 33])
def test_weight_width_range(bits):
    with pytest.raises(ValueError, match=rf"^Layer 'c1': weight width must be in 1\.\.32, "
                                         rf"not {bits}$"):
        conv_layer(weight=np.zeros((4, 1, 3, 3)), weight_bits=bits)


def test_bad_encoding():
    with pytest.raises(ValueError, match=r"^Layer 'c1': weight encoding must be one of fixed, "
                                         r"pow2, binary, bitmask, template, bdcnn, "
                                         r"not 'ternary'$"):
        dataclasses.replace(conv_layer(), encoding="ternary")


@pytest.mark.parametrize("weights, bits, scales, message", [
    ([3, 0, 1, -2], 4, (1, 1), r"weight 3 is not 0, \+1\*2\^e or -1\*2\^e with e in 0\.\.3"),
    ([16, 0, 1, -2], 4, (1, 1), r"weight 16 is not"),
    ([2, 0, 1, -1], 2, (1, 1), r"weight 2 is not .* e in 0\.\.0 \(2-bit pow2 code\)"),
    ([3, -5, 0, 6], 3, (3, 5), None),
    ([3, 5, 0, 6], 3, (3, 5), r"weight 5 is not 0, \+3\*2\^e or -5\*2\^e"),
    ([1, 0, 1, 1], 9, (1, 1), r"pow2 weights need 2\.\.8 code bits, not 9"),
    ([1, 0, 1, 1], 2, (0, 1), r"sign_scales must be two integers in 1\.\.65535"),
])
def test_pow2_weights_are_checked(weights, bits, scales, message):
    def make():
        return conv_layer(weight=np.array(weights * 9).reshape(4, 1, 3, 3), weight_bits=bits,
                          encoding="pow2", kind_data=ir.Pow2Data(scales))
    if message is None:
        assert make().kind_data == ir.Pow2Data(scales)
    else:
        with pytest.raises(ValueError, match=rf"^Layer 'c1': {message}"):
            make()


def test_kind_data_matches_the_encoding():
    with pytest.raises(TypeError, match=r"^Layer 'c1': fixed weights take FixedData kind data, "
                                        r"not Pow2Data$"):
        dataclasses.replace(conv_layer(), kind_data=ir.Pow2Data((2, 1)))
    with pytest.raises(TypeError, match=r"^Layer 'c1': pow2 weights take Pow2Data kind data, "
                                        r"not FixedData$"):
        conv_layer(weight=np.ones((4, 1, 3, 3)), encoding="pow2", kind_data=ir.FixedData())


def test_kind_data_defaults_per_encoding():
    assert conv_layer().kind_data == ir.FixedData()
    layer = conv_layer(weight=np.ones((4, 1, 3, 3)), encoding="pow2")
    assert layer.kind_data == ir.Pow2Data((1, 1))
    assert set(ir.KIND_DATA) == set(ir.ENCODINGS)


@pytest.mark.parametrize("scales", [(1,), (1, 2, 3), (1.5, 2), (True, 1)], ids=str)
def test_sign_scales_are_two_integers(scales):
    with pytest.raises(TypeError, match=r"^Sign scales must be two integers, not "):
        ir.Pow2Data(scales)


def test_bias_shape():
    with pytest.raises(ValueError, match=r"^Layer 'c1': bias must have shape \(4,\), "
                                         r"not \(3,\)$"):
        dataclasses.replace(conv_layer(), bias=np.zeros(3))


def test_requant_multiplier_shape():
    rq = ir.Requant(np.ones(3), 5, 0, 255)
    with pytest.raises(ValueError, match=r"^Layer 'c1': requant multiplier must have one entry "
                                         r"per output channel$"):
        conv_layer(epilogue=rq)


def test_requant_empty_bounds():
    with pytest.raises(ValueError, match=r"^Requantization bounds are empty: lo=3 > hi=2$"):
        ir.Requant([1], 0, 3, 2)


@pytest.mark.parametrize("pe, simd, what, bad", [
    (0, 1, "PE", "0"), (1, 0, "SIMD", "0"), (-2, 1, "PE", "-2"), (True, 1, "PE", "True"),
    (1, 2.0, "SIMD", r"2\.0"),
])
def test_fold_must_be_positive(pe, simd, what, bad):
    with pytest.raises(ValueError, match=rf"^Fold {what} must be a positive integer, not {bad}$"):
        ir.Fold(pe, simd)


@pytest.mark.parametrize("fold", [ir.Fold(3, 1), ir.Fold(1, 4), ir.Fold(8, 9)])
def test_fold_must_divide(fold):
    with pytest.raises(ValueError, match=rf"^Layer 'c1': PE={fold.pe} must divide 4 output "
                                         rf"channels and SIMD={fold.simd} must divide fan-in 9$"):
        conv_layer(fold=fold)


@pytest.mark.parametrize("fold", [ir.Fold(1, 1), ir.Fold(2, 3), ir.Fold(4, 9), ir.Fold(4, 1)])
def test_fold_dividing(fold):
    assert conv_layer(fold=fold).fold == fold


def test_conv_weight_rank():
    with pytest.raises(ValueError, match=r"^Layer 'c1': conv weight must be 4-D "
                                         r"\(OC, IC, KH, KW\)$"):
        conv_layer(weight=np.zeros((4, 9)))


def test_conv_input_channels():
    with pytest.raises(ValueError, match=r"^Layer 'c1': input shape \(2, 6, 6\) does not match "
                                         r"weight input channels 1$"):
        conv_layer(in_shape=(2, 6, 6), weight=np.zeros((4, 1, 3, 3)))


def test_conv_kernel_does_not_fit():
    with pytest.raises(ValueError, match=r"^Layer 'c1': kernel \(3, 3\) does not fit input "
                                         r"\(2, 2\) with padding \(0, 0\)$"):
        conv_layer(in_shape=(1, 2, 2), padding=0)


def test_conv_stride_and_padding():
    with pytest.raises(ValueError, match=r"^Layer 'c1': stride must be >= 1 and padding >= 0$"):
        conv_layer(stride=0)
    with pytest.raises(ValueError, match=r"^Layer 'c1': stride must be >= 1 and padding >= 0$"):
        conv_layer(padding=(0, -1))
    with pytest.raises(TypeError, match=r"^Layer 'c1': stride must be an integer or a pair of "
                                        r"integers, not \(1, 2, 3\)$"):
        conv_layer(stride=(1, 2, 3))


def test_conv_geometry():
    c = conv_layer(in_shape=(1, 7, 5), kernel=(3, 1), stride=(2, 1), padding=(1, 0))
    assert c.kernel == (3, 1)
    assert c.out_shape == (4, 4, 5)
    assert c.fan_in == 3
    assert c.acc_frac == U8.frac + 3


def test_linear_weight_rank():
    with pytest.raises(ValueError, match=r"^Layer 'fc': linear weight must be 2-D "
                                         r"\(OUT, IN\)$"):
        ir.Linear("fc", ("flat",), U8, np.zeros((2, 3, 4)), 4, 0, np.zeros(2), None, S8)


def test_pool_padding_at_most_half_kernel():
    with pytest.raises(ValueError, match=r"^Layer 'p1': padding \(2, 1\) must be at most half "
                                         r"the kernel \(3, 3\)$"):
        ir.MaxPool2d("p1", ("c1",), (4, 6, 6), 3, 1, (2, 1), U8)


def test_pool_window_does_not_fit():
    with pytest.raises(ValueError, match=r"^Layer 'p1': window \(7, 7\) does not fit input "
                                         r"\(6, 6\)$"):
        ir.MaxPool2d("p1", ("c1",), (4, 6, 6), 7, 1, 0, U8)


def test_pool_kernel_positive():
    with pytest.raises(ValueError, match=r"^Layer 'p1': kernel and stride must be >= 1, "
                                         r"padding >= 0$"):
        ir.MaxPool2d("p1", ("c1",), (4, 6, 6), 2, 0, 0, U8)


def test_avgpool_needs_requant():
    with pytest.raises(ValueError, match=r"^Layer 'a1': average pooling needs out_format and "
                                         r"requant$"):
        ir.AvgPool2d("a1", ("c1",), (4, 6, 6), 2, 2, 0, U8)
    with pytest.raises(ValueError, match=r"^Layer 'a1': average pooling takes one multiplier$"):
        ir.AvgPool2d("a1", ("c1",), (4, 6, 6), 2, 2, 0, U8, out_format=U8,
                     requant=ir.Requant([1, 1], 2, 0, 255))


@pytest.mark.parametrize("bits", [0, 49, 2.0])
def test_act_format_width(bits):
    with pytest.raises(ValueError, match=rf"^Activation width must be an integer in 1\.\.48, "
                                         rf"not {re.escape(repr(bits))}$"):
        ir.ActFormat(bits, True, 0)


def test_act_format_frac_type():
    with pytest.raises(TypeError, match=r"^Activation fraction bits must be an integer, "
                                        r"not 1\.5$"):
        ir.ActFormat(8, True, 1.5)


@pytest.mark.parametrize("bits", [1, 2, 8, 48])
def test_act_format_range(bits):
    s, u = ir.ActFormat(bits, True, 0), ir.ActFormat(bits, False, 0)
    assert (s.lo, s.hi) == (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    assert (u.lo, u.hi) == (0, 2 ** bits - 1)
    assert ir.ActFormat.from_json(s.to_json()) == s


# -- immutability and helpers ----------------------------------------------------------------

def test_layers_are_frozen_and_copy_their_arrays():
    w = np.ones((4, 1, 3, 3), dtype=np.int64)
    c = conv_layer(weight=w)
    w[0, 0, 0, 0] = 5
    assert c.weight[0, 0, 0, 0] == 1
    with pytest.raises(ValueError, match=r"read-only"):
        c.weight[0, 0, 0, 0] = 2
    with pytest.raises(ValueError, match=r"read-only"):
        c.bias[0] = 2
    with pytest.raises(ValueError, match=r"read-only"):
        c.requant.multiplier[0] = 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.name = "c2"
    net = make_net()
    with pytest.raises(dataclasses.FrozenInstanceError):
        net.layers = ()


def test_replace_layer_validates_and_keeps_original():
    net = make_net()
    folded = net.replace_layer("c1", fold=ir.Fold(2, 3))
    assert folded.layer("c1").fold == ir.Fold(2, 3)
    assert net.layer("c1").fold == ir.Fold()
    with pytest.raises(ValueError, match=r"^Layer 'c1': PE=3 must divide"):
        net.replace_layer("c1", fold=ir.Fold(3, 1))


def test_signed_and_unsigned_bits_for_exhaustive():
    for lo in range(-70, 1):
        for hi in range(70):
            bits = ir.signed_bits_for(lo, hi)
            assert -(2 ** (bits - 1)) <= lo and hi <= 2 ** (bits - 1) - 1
            assert bits == 1 or not (-(2 ** (bits - 2)) <= lo and hi <= 2 ** (bits - 2) - 1)
    for hi in range(300):
        bits = ir.unsigned_bits_for(hi)
        assert hi < 2 ** bits and (bits == 1 or hi >= 2 ** (bits - 1))


def test_accumulator_range_is_attained():
    rng = np.random.default_rng(1)
    for fmt in (U8, S8, ir.ActFormat(3, True, 0), ir.ActFormat(1, False, 0)):
        w = rng.integers(-8, 8, (5, 7))
        b = rng.integers(-50, 50, 5)
        lo, hi = ir.matrix_range(w, b, fmt)
        # The extremes are attained by choosing each input at the end its weight favours.
        x_hi = np.where(w > 0, fmt.hi, fmt.lo)
        x_lo = np.where(w > 0, fmt.lo, fmt.hi)
        np.testing.assert_array_equal((w * x_hi).sum(axis=1) + b, hi)
        np.testing.assert_array_equal((w * x_lo).sum(axis=1) + b, lo)
        # And nothing random exceeds them.
        x = rng.integers(fmt.lo, fmt.hi + 1, (200, 7))
        acc = x @ w.T + b
        assert np.all(acc >= lo) and np.all(acc <= hi)


@pytest.mark.parametrize("shift", [65, -65, 10 ** 100])
def test_requant_shift_is_bounded(shift):
    with pytest.raises(ValueError, match=rf"^Requantization shift must be within \+-64, "
                                         rf"not {shift}$"):
        ir.Requant(np.ones(2), shift, 0, 15)


def test_requant_bounds_fit_the_widest_integer():
    with pytest.raises(ValueError, match=r"^Requantization bounds must fit 48 bits"):
        ir.Requant(np.ones(2), 4, 0, 1 << 48)
