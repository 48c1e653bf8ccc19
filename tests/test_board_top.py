# amaranth: UnusedElaboratable=no
"""The UART board top (:class:`hwquant.hw.board_top.BoardTop`) in Verilator through cocotb:
images sent bit by bit on the ``rx`` pin, replies read bit by bit off ``tx``, classes and
logits against the golden model; the host-link byte format; the baud divisor.

The cocotb testbench (:func:`board_link`) lives in this module too: the simulator imports it
by name and reads its job from ``HWQUANT_BOARD_TB``.
"""

import json
import os
import sys
import tempfile
import threading
import time
import tty
from pathlib import Path

import cocotb
import numpy as np
import pytest
from amaranth.back import verilog
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, First, Timer

from hwquant import golden, ir
from hwquant.compile import plan_build
from hwquant.host import LinkFormat
from hwquant.hw.board_top import BoardTop
from hwquant.hw.uart import baud_divisor
from hwquant.vectors import input_words

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))
from netbuilders import random_chain, vector_chain, weight_layer

JOB_ENV = "HWQUANT_BOARD_TB"
CLOCK_PS = 10_000


# -- the cocotb testbench (runs inside the simulator) ------------------------------------------

async def _send_byte(dut, byte, bit_ps):
    for level in (0, *((byte >> i) & 1 for i in range(8)), 1):
        dut.rx.value = level
        await Timer(bit_ps, unit="ps")


async def _receive_byte(dut, divisor):
    """One 8N1 frame off ``tx``, sampled at the middle of each bit; ``None`` on a bad frame."""
    await FallingEdge(dut.tx)
    await ClockCycles(dut.clk, divisor // 2)
    if int(dut.tx.value) != 0:
        return None
    byte = 0
    for i in range(8):
        await ClockCycles(dut.clk, divisor)
        byte |= int(dut.tx.value) << i
    await ClockCycles(dut.clk, divisor)
    return byte if int(dut.tx.value) == 1 else None


async def _receive(dut, divisor, count, timeout_cycles):
    got = []
    for _ in range(count):
        timeout = ClockCycles(dut.clk, timeout_cycles)
        task = cocotb.start_soon(_receive_byte(dut, divisor))
        done = await First(task, timeout)
        if done is timeout:
            task.cancel()
            return got, True
        got.append(task.result())
    return got, False


@cocotb.test()
async def board_link(dut):
    """Reset, then per image: send its bytes on rx (stop-and-wait), read the reply off tx."""
    job = json.loads(Path(os.environ[JOB_ENV]).read_text())
    divisor, reply_bytes = job["divisor"], job["reply_bytes"]
    dut.rx.value = 1
    dut.rst.value = 1
    cocotb.start_soon(Clock(dut.clk, CLOCK_PS, unit="ps").start())
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 5)
    if job.get("abandoned_bytes"):  # half an image, then a reset: it must leave no trace
        for byte in bytes.fromhex(job["abandoned_bytes"]):
            await _send_byte(dut, byte, job["bit_ps"])
        await ClockCycles(dut.clk, 2 * divisor)
        dut.rst.value = 1
        await ClockCycles(dut.clk, 2)
        dut.rst.value = 0
        await ClockCycles(dut.clk, 5)
    replies, timed_out, start = [], False, cocotb.utils.get_sim_time("ps")
    for image in job["images"]:
        receiver = cocotb.start_soon(_receive(dut, divisor, reply_bytes, job["timeout_cycles"]))
        for byte in bytes.fromhex(image):
            await _send_byte(dut, byte, job["bit_ps"])
        got, timed_out = await receiver
        replies.append(bytes(b if b is not None else 0 for b in got).hex())
        if timed_out or None in got:
            break
    cycles = (cocotb.utils.get_sim_time("ps") - start) // CLOCK_PS
    Path(job["result_path"]).write_text(json.dumps(
        {"replies": replies, "timed_out": timed_out, "cycles": cycles}))


@cocotb.test()
async def board_pty(dut):
    """The board top behind a pseudo-terminal: bytes the host writes to the slave side are sent
    bit by bit on rx, bytes read off tx are written back; until the host says it is done."""
    job = json.loads(Path(os.environ[JOB_ENV]).read_text())
    divisor, wanted = job["divisor"], job["reply_bytes"] * job["images"]
    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    Path(job["port_path"]).write_text(os.ttyname(slave))
    dut.rx.value = 1
    dut.rst.value = 1
    cocotb.start_soon(Clock(dut.clk, CLOCK_PS, unit="ps").start())
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    forwarded = []

    async def forward_tx():
        while len(forwarded) < wanted:
            byte = await _receive_byte(dut, divisor)
            forwarded.append(byte)
            os.write(master, bytes([0 if byte is None else byte]))

    cocotb.start_soon(forward_tx())
    deadline = time.monotonic() + job["wall_timeout_s"]
    done = Path(job["done_path"])
    while not done.exists() and time.monotonic() < deadline:
        try:
            data = os.read(master, 256)
        except (BlockingIOError, OSError):
            data = b""
        for byte in data:
            await _send_byte(dut, byte, divisor * CLOCK_PS)
        if not data:
            await ClockCycles(dut.clk, 10 * divisor)
    os.close(slave)
    os.close(master)
    Path(job["result_path"]).write_text(json.dumps({"forwarded": len(forwarded),
                                                    "bad_frames": forwarded.count(None)}))


# -- the pytest side ---------------------------------------------------------------------------

TOP = "board_top"


def _run_testbench(top, build_root, testcase, job):
    """Build ``top`` with Verilator (content-addressed: once per design) and run the cocotb
    test ``testcase`` of this module on ``job``; returns its result JSON."""
    from hwquant.sim import runner as sim_runner

    build_root = Path(build_root)
    build_root.mkdir(parents=True, exist_ok=True)
    path = build_root / f"{TOP}_{os.getpid()}_{time.monotonic_ns()}.v"
    path.write_text(verilog.convert(top, name=TOP, emit_src=False))
    build_dir = sim_runner.build(path, TOP, build_root=build_root)
    run_dir = Path(tempfile.mkdtemp(prefix="board-", dir=build_root))
    job = dict(job, divisor=top.divisor, reply_bytes=top.link.reply_bytes,
               result_path=str(run_dir / "result.json"))
    (run_dir / "job.json").write_text(json.dumps(job))
    extra = {JOB_ENV: str(run_dir / "job.json")}
    runner = sim_runner.make_runner(False, python_paths=[TESTS])
    with sim_runner.tool_environment(extra):
        runner.test(test_module="test_board_top", testcase=testcase, hdl_toplevel=TOP,
                    hdl_toplevel_lang="verilog", build_dir=build_dir, test_dir=run_dir,
                    results_xml=str(run_dir / "r.xml"), extra_env=extra,
                    log_file=run_dir / "sim.log")
    return json.loads(Path(job["result_path"]).read_text())


def simulate_link(top, images, build_root, *, bit_ps=None, timeout_cycles=20_000,
                  abandoned=b""):
    """Run :func:`board_link` on ``top`` with the ``images`` (after the ``abandoned`` bytes
    and a reset, if given); returns the testbench's result with the replies as ``bytes``."""
    result = _run_testbench(top, build_root, "board_link", {
        "bit_ps": bit_ps or top.divisor * CLOCK_PS, "timeout_cycles": timeout_cycles,
        "images": [top.link.encode_image(x).hex() for x in images],
        "abandoned_bytes": abandoned.hex()})
    result["replies"] = [bytes.fromhex(r) for r in result["replies"]]
    return result


def _images(net, n, seed):
    fmt = net.input_format
    rng = np.random.default_rng(seed)
    return rng.integers(fmt.lo, fmt.hi, (n, *net.input_shape), endpoint=True)


@pytest.fixture(scope="module")
def build_root(tmp_path_factory):
    return tmp_path_factory.mktemp("board_sim")


@pytest.mark.sim
@pytest.mark.parametrize("make_net, seed, divisor, logits", [
    (vector_chain, 1, 5, True),      # vector input, 9-bit logits: two bytes each
    (random_chain, 5, 6, False),     # conv chain, 2-lane signed pixels, class only
])
def test_board_top_classifies_over_uart(build_root, make_net, seed, divisor, logits):
    net = make_net(seed)
    plan, _ = plan_build(net, "auto")
    top = BoardTop(plan, divisor=divisor, logits=logits)
    x = _images(net, 5, seed)
    assert len(set(golden.predict(net, x))) > 1  # the classes tell the images apart
    # Part of an image, then a reset pulse on rst: the images after it come out right.
    abandoned = top.link.encode_image(x[1])[:top.link.image_bytes // 2 + 1]
    result = simulate_link(top, x, build_root, abandoned=abandoned)
    assert not result["timed_out"], result
    assert len(result["replies"]) == len(x)
    link = top.link
    decoded = [link.decode_reply(r) for r in result["replies"]]
    np.testing.assert_array_equal([cls for cls, _ in decoded], golden.predict(net, x))
    if logits:
        gold = golden.run(net, x)[net.output.name].reshape(len(x), -1)
        np.testing.assert_array_equal([lg for _, lg in decoded], gold)
    # Stop-and-wait over the link: about ten bits of divisor cycles per byte sent and received.
    per_image = (link.image_bytes + link.reply_bytes) * 10 * divisor
    assert per_image * len(x) <= result["cycles"] < 2 * per_image * len(x) + 2000


def _wide_input_net(seed=0):
    """linear -> linear on a vector of 10-bit signed codes: two bytes per lane on the link,
    7-bit logits (sign-extended to a byte)."""
    rng = np.random.default_rng(seed)
    fmt = ir.ActFormat(10, True, 1)
    fc1 = weight_layer(rng, "fc1", "input", (6,), fmt, 5)
    fc2 = weight_layer(rng, "fc2", "fc1", fc1.out_shape, fc1.out_format, 4, last=True)
    return ir.Network("wide_input", (6,), fmt, (fc1, fc2))


@pytest.mark.sim
def test_board_top_tolerates_a_host_two_percent_off(build_root):
    """Two-byte input lanes, with the host's bit time 2 % long and 2 % short: the receiver
    samples mid-bit, still right; 10 % short breaks the frames (the test sees it)."""
    net = _wide_input_net()
    x = _images(net, 4, 1)
    expected = golden.predict(net, x)
    gold = golden.run(net, x)[net.output.name].reshape(len(x), -1)
    assert len(set(expected)) > 1
    for factor in (0.98, 1.02, 0.9):
        top = BoardTop(plan_build(net, "auto")[0], divisor=8, logits=True)
        assert (top.link.lane_bytes, top.link.logit_bytes) == (2, 1)
        result = simulate_link(top, x, build_root, bit_ps=round(8 * CLOCK_PS * factor),
                               timeout_cycles=3000)
        got = [top.link.decode_reply(r) for r in result["replies"]
               if len(r) == top.link.reply_bytes]
        ok = (not result["timed_out"] and [c for c, _ in got] == list(expected)
              and [lg for _, lg in got] == gold.tolist())
        assert ok == (factor != 0.9), (factor, result, expected)


@pytest.mark.parametrize("make_net, seed", [(vector_chain, 1), (random_chain, 3),
                                            (random_chain, 4)])
def test_link_image_bytes_are_the_input_stream(make_net, seed):
    """One byte per lane code (for <= 8 bits), beat after beat: the same order as the input
    stream words of the network top."""
    net = make_net(seed)
    link = LinkFormat.of(net)
    x = _images(net, 2, seed)
    words = input_words(net, x)
    mask = (1 << link.in_bits) - 1
    for i in range(2):
        data = link.encode_image(x[i])
        assert len(data) == link.image_bytes
        codes = [b & mask for b in data]
        beats = words[i * link.beats:(i + 1) * link.beats]
        expect = [(w >> (lane * link.in_bits)) & mask for w in beats for lane in range(link.lanes)]
        assert codes == expect


def test_link_wide_values_take_several_bytes():
    net = vector_chain(1)
    link = LinkFormat.of(net, logits=True)
    assert (link.logit_bits, link.logit_bytes, link.reply_bytes) == (9, 2, 1 + 4 * 2)
    reply = link.encode_reply(3, [-200, 255, 0, -1])
    assert reply == bytes([3, 0x38, 0xFF, 0xFF, 0x00, 0, 0, 0xFF, 0xFF])
    assert link.decode_reply(reply) == (3, [-200, 255, 0, -1])
    with pytest.raises(ValueError, match=r"^A reply has 9 bytes, not 2$"):
        link.decode_reply(b"\x00\x01")
    with pytest.raises(ValueError, match=r"does not match the network input"):
        link.encode_image(np.zeros((7,), dtype=int))


def test_baud_divisor():
    assert baud_divisor(12e6, 115200) == 104
    assert baud_divisor(25e6, 115200) == 217
    assert baud_divisor(48e6, 1_000_000) == 48
    with pytest.raises(ValueError, match=r"too fast for a 12 MHz clock: at least 4 clock "
                                         r"cycles per bit"):
        baud_divisor(12e6, 4_000_000)
    with pytest.raises(ValueError, match=r"is 4\.2% off \(divisor 12\)"):
        baud_divisor(12e6, 960_000)


def test_board_top_rejects_a_short_divisor():
    with pytest.raises(ValueError, match=r"^UART divisor must be an integer >= 4"):
        BoardTop(vector_chain(1), divisor=3)
    top = BoardTop.for_clock(vector_chain(1), 12e6, 115200)
    assert top.divisor == 104
    assert "uart_rx" in verilog.convert(top, name=TOP, emit_src=False)


@pytest.mark.sim
def test_hwquant_run_against_the_verilated_board(build_root, tmp_path, capsys):
    """``hwquant run`` on a pseudo-terminal whose other side is the board top in Verilator."""
    from hwquant.cli import main
    from hwquant.compile import compile_network, load_build

    build = tmp_path / "build"
    compile_network(vector_chain(1), build)
    net, _ = load_build(build)
    top = BoardTop(plan_build(net, "auto")[0], divisor=5, logits=True)
    port_path, done_path = tmp_path / "port", tmp_path / "done"
    images, outcome = 6, {}

    def host():
        deadline = time.monotonic() + 120
        while not port_path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        try:
            outcome["rc"] = main(["run", str(build), "--port", port_path.read_text(),
                                  "--images", str(images), "--logits", "--timeout", "30",
                                  "--json", str(tmp_path / "run.json")])
        finally:
            done_path.write_text("done")

    thread = threading.Thread(target=host)
    thread.start()
    result = _run_testbench(top, build_root, "board_pty", {
        "images": images, "port_path": str(port_path), "done_path": str(done_path),
        "wall_timeout_s": 180})
    thread.join()
    assert outcome.get("rc") == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "run.json").read_text())
    assert (report["images"], report["mismatches"]) == (images, 0)
    assert result == {"forwarded": images * top.link.reply_bytes, "bad_frames": 0}
