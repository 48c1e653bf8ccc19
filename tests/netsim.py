"""Whole networks (:class:`hwquant.hw.network.NetworkTop`) in the Amaranth Python simulator
against the golden model: the network-level RTL check shared by the network tests."""

import numpy as np
from streamsim import simulate_stream

from hwquant import golden
from hwquant.compile import plan_build
from hwquant.hw.network import NetworkTop
from hwquant.vectors import expected_words, input_words

__all__ = ["check_network"]


def check_network(net, *, n, seed, stalls, fifo_depth="auto", plan=None):
    """Simulate ``net`` (planned with ``fifo_depth``, or the given ``plan``) on ``n`` random
    inputs; every output word against the golden model. Returns the cycles taken."""
    fmt = net.input_format
    rng = np.random.default_rng(seed + 7)
    x = rng.integers(fmt.lo, fmt.hi, (n, *net.input_shape), endpoint=True)
    gold = golden.run(net, x)
    expected = expected_words(net, gold)["o_stream"]
    if plan is None:
        plan, _ = plan_build(net, fifo_depth)
    dut = NetworkTop(plan)
    out, cycles = simulate_stream(dut, input_words(net, x), len(expected), seed=seed,
                                  valid_gap=stalls, ready_stall=stalls)
    assert None not in out, "extra output beat"
    out_fmt, classes = net.output.out_format, net.output.out_channels
    cls_bits = max(1, (classes - 1).bit_length())
    got_cls = np.array([w & ((1 << cls_bits) - 1) for w in out])
    got_logits = np.array([[((w >> (cls_bits + i * out_fmt.bits)) & ((1 << out_fmt.bits) - 1))
                            for i in range(classes)] for w in out])
    got_logits = np.where(got_logits >> (out_fmt.bits - 1), got_logits - (1 << out_fmt.bits),
                          got_logits)
    np.testing.assert_array_equal(got_logits, gold[net.output.name].reshape(n, -1))
    np.testing.assert_array_equal(got_cls, golden.predict(net, x))
    assert out == expected  # and the packed words themselves
    return cycles
