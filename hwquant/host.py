"""The host link: the byte format a board top (:class:`hwquant.hw.board_top.BoardTop`) speaks
over its UART (8 data bits, no parity, one stop bit).

Request: one image, as the network's input stream carries it (pixel after pixel in raster
order, or the one beat of a vector input), each beat's lanes in order, lane 0 first; each lane
is its integer code in ``ceil(bits / 8)`` bytes, little-endian two's complement (the hardware
keeps the low ``bits`` bits).

Reply: the class index in ``ceil(cls_bits / 8)`` bytes (little-endian), then, when the top
was built with logits, every logit in ``ceil(bits / 8)`` bytes, little-endian two's complement
(sign-extended).

The host sends an image and waits for its reply before sending the next (stop-and-wait): the
board buffers one whole image, so no byte is ever dropped.

:func:`run_board` is the host side (``hwquant run``): it sends test images over a serial port
(pyserial) and checks the replies against the golden model and the labels.
"""

import time
from dataclasses import dataclass

import numpy as np

from . import ir
from .errors import HwquantError, ToolFailedError, VerificationFailed

__all__ = ["DEFAULT_BAUD", "LinkFormat", "run_board"]

#: Baud rate of the host link unless told otherwise.
DEFAULT_BAUD = 115200


def _nbytes(bits: int) -> int:
    return max(1, (bits + 7) // 8)


@dataclass(frozen=True)
class LinkFormat:
    """Byte counts and codecs of the host link of one network.

    Attributes
    ----------
    lanes : int
        Values per input beat (channels of a pixel, or the length of a vector input).
    beats : int
        Input beats per image.
    in_bits, in_signed : int, bool
        Input code format.
    lane_bytes : int
        Bytes per input value.
    classes, cls_bits, cls_bytes : int
        Number of classes, width of the class index and its bytes in the reply.
    logit_bits, logit_bytes : int
        Width of a logit and its bytes in the reply.
    logits : bool
        Whether the reply carries the logits.
    """

    lanes: int
    beats: int
    in_bits: int
    in_signed: bool
    lane_bytes: int
    classes: int
    cls_bits: int
    cls_bytes: int
    logit_bits: int
    logit_bytes: int
    logits: bool

    @classmethod
    def of(cls, net: ir.Network, *, logits: bool = False) -> "LinkFormat":
        shape = net.input_shape
        beats = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        out = net.output
        cls_bits = max(1, (out.out_channels - 1).bit_length())
        return cls(lanes=shape[0], beats=beats, in_bits=net.input_format.bits,
                   in_signed=net.input_format.signed,
                   lane_bytes=_nbytes(net.input_format.bits), classes=out.out_channels,
                   cls_bits=cls_bits, cls_bytes=_nbytes(cls_bits),
                   logit_bits=out.out_format.bits, logit_bytes=_nbytes(out.out_format.bits),
                   logits=logits)

    @property
    def beat_bytes(self) -> int:
        """Bytes per input beat."""
        return self.lanes * self.lane_bytes

    @property
    def image_bytes(self) -> int:
        """Bytes of one request."""
        return self.beats * self.beat_bytes

    @property
    def reply_bytes(self) -> int:
        """Bytes of one reply."""
        return self.cls_bytes + (self.classes * self.logit_bytes if self.logits else 0)

    def encode_image(self, image) -> bytes:
        """The request for one integer image of the network's input shape ``(C, ...)``."""
        x = np.asarray(image, dtype=np.int64)
        if x.shape[0] != self.lanes or x.size != self.lanes * self.beats:
            raise ValueError(f"Image of shape {x.shape} does not match the network input "
                             f"({self.lanes} lanes x {self.beats} beats)")
        beats = x.reshape(self.lanes, self.beats).T  # beat-major, lane 0 first
        out = bytearray()
        for value in beats.reshape(-1):
            out += int(value).to_bytes(self.lane_bytes, "little", signed=True)
        return bytes(out)

    def decode_image(self, data: bytes) -> np.ndarray:
        """The integer image of a request (what the board's receive path reconstructs): shape
        ``(lanes, beats)``, each code the low ``in_bits`` bits read in the input format."""
        if len(data) != self.image_bytes:
            raise ValueError(f"A request has {self.image_bytes} bytes, not {len(data)}")
        step, mask = self.lane_bytes, (1 << self.in_bits) - 1
        codes = np.array([int.from_bytes(data[i:i + step], "little") & mask
                          for i in range(0, len(data), step)], dtype=np.int64)
        if self.in_signed:
            codes = np.where(codes >> (self.in_bits - 1), codes - (1 << self.in_bits), codes)
        return codes.reshape(self.beats, self.lanes).T

    def encode_reply(self, cls_index: int, logits=None) -> bytes:
        """A reply as the board sends it (for a simulated device)."""
        out = bytearray(int(cls_index).to_bytes(self.cls_bytes, "little"))
        if self.logits:
            for value in np.asarray(logits, dtype=np.int64).reshape(-1):
                out += int(value).to_bytes(self.logit_bytes, "little", signed=True)
        return bytes(out)

    def decode_reply(self, data: bytes):
        """``(class index, logits or None)`` of one reply."""
        if len(data) != self.reply_bytes:
            raise ValueError(f"A reply has {self.reply_bytes} bytes, not {len(data)}")
        cls_index = int.from_bytes(data[:self.cls_bytes], "little")
        if not self.logits:
            return cls_index, None
        step = self.logit_bytes
        logits = [int.from_bytes(data[self.cls_bytes + i * step:self.cls_bytes + (i + 1) * step],
                                 "little", signed=True) for i in range(self.classes)]
        return cls_index, logits


def _open_port(port, baud, timeout):
    import serial

    try:
        return serial.serial_for_url(port, baudrate=baud, bytesize=8, parity="N", stopbits=1,
                                     timeout=timeout, write_timeout=timeout)
    except (serial.SerialException, ValueError) as error:
        raise HwquantError(f"Cannot open serial port {port!r} at {baud} baud: {error}") from None


def _read_exactly(link, count, deadline):
    data = bytearray()
    while len(data) < count and time.monotonic() < deadline:
        data += link.read(count - len(data))
    return bytes(data)


def run_board(build_dir, port, *, images: int = 100, seed: int = 0, baud: int = DEFAULT_BAUD,
              logits: bool = False, timeout: float = 5.0, progress=None) -> dict:
    """Classify ``images`` test images on a board running ``build_dir``'s design over the UART
    at ``port``, one image at a time (stop-and-wait), and compare with the golden model.

    Returns a report: ``images``, ``accuracy`` (board classes against the labels) and
    ``golden_accuracy`` when the images have labels, ``mismatches`` (images whose class or
    logits differ from the golden model's), ``images_per_s`` and ``seconds`` (wall clock,
    the link included), ``bytes_per_image`` (request and reply), ``port``, ``baud``.

    Raises
    ------
    HwquantError
        Not a build directory, a bad argument, or the port cannot be opened.
    ToolFailedError
        The board did not answer within ``timeout`` seconds.
    VerificationFailed
        A reply differs from the golden model (the report is attached as ``.report``).
    """
    from . import golden
    from .compile import load_build
    from .simulate import held_out_set

    step = progress or (lambda msg: None)
    if isinstance(images, bool) or not isinstance(images, int) or images < 1:
        raise HwquantError(f"Number of images must be a positive integer, not {images!r}")
    if not timeout > 0:
        raise HwquantError(f"Timeout must be a positive number of seconds, not {timeout!r}")
    net, _ = load_build(build_dir)
    link = LinkFormat.of(net, logits=logits)
    x, labels, _ = held_out_set(net, images, seed)
    want_cls = golden.predict(net, x)
    want_logits = golden.run(net, x)[net.output.name].reshape(len(x), -1)
    got_cls, mismatches = [], 0
    step(f"sending {len(x)} images to {port} at {baud} baud ({link.image_bytes} bytes each, "
         f"{link.reply_bytes} back)")
    with _open_port(port, baud, min(timeout, 0.5)) as serial_link:
        serial_link.reset_input_buffer()
        started = time.monotonic()
        for i, image in enumerate(x):
            serial_link.write(link.encode_image(image))
            serial_link.flush()
            reply = _read_exactly(serial_link, link.reply_bytes, time.monotonic() + timeout)
            if len(reply) < link.reply_bytes:
                raise ToolFailedError(
                    f"The board on {port} did not answer image {i} within {timeout:g} s (got "
                    f"{len(reply)} of {link.reply_bytes} bytes); check the port, the baud "
                    f"rate ({baud}) and that the board runs the design of {build_dir}")
            cls_index, board_logits = link.decode_reply(reply)
            got_cls.append(cls_index)
            if cls_index != want_cls[i] or (logits and list(board_logits) != list(
                    want_logits[i])):
                mismatches += 1
        seconds = time.monotonic() - started
    got = np.array(got_cls)
    report = {"build_dir": str(build_dir), "port": port, "baud": baud, "logits": logits,
              "images": len(x), "mismatches": mismatches, "seconds": round(seconds, 4),
              "images_per_s": len(x) / seconds if seconds > 0 else None,
              "bytes_per_image": {"request": link.image_bytes, "reply": link.reply_bytes},
              "accuracy": None, "golden_accuracy": None}
    if labels is not None:
        report["accuracy"] = float(np.mean(got == labels))
        report["golden_accuracy"] = float(np.mean(want_cls == labels))
    if mismatches:
        error = VerificationFailed(f"{mismatches} of {len(x)} board replies differ from the "
                                   f"golden model")
        error.report = report
        raise error
    return report
