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
"""

from dataclasses import dataclass

import numpy as np

from . import ir

__all__ = ["LinkFormat"]


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
