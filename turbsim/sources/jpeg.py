"""JPEG files checked without decoding: the frame size from the SOF header, completeness.

A JPEG (ITU-T T.81, Annex B) is a sequence of marker segments: SOI ``FF D8``; segments ``FF xx``
with a 2-byte big-endian length (APPn, DQT, DHT, SOFn ...); the first scan after SOS ``FF DA``;
EOI ``FF D9`` at the end. The frame size is in the SOFn segment (``FF C0`` .. ``FF CF`` but DHT
``C4``, JPG ``C8`` and DAC ``CC``): precision (1 byte), height (2), width (2). Only the segment
headers up to the first SOS are read (seeks over the segments' bodies), so a 10,000-image folder
is checked in seconds.

A file cut short (an interrupted copy or download) lacks the EOI marker. OpenCV decodes such a
file without an error (libjpeg fills the missing rows with grey and warns), so completeness is
checked here: the entropy-coded data after SOS never holds the bytes ``FF D9`` (a data byte
``FF`` is stuffed as ``FF 00``), so the file is complete when ``FF D9`` follows the first SOS.
The last 64 KiB are searched first; only a file with data after its EOI (some cameras append
their own blocks) is read further. The EXIF orientation is not read: turbsim uses the pixels as
stored (see :func:`turbsim.sources.cityscapes.read_image_rgb`).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import BinaryIO, NamedTuple

from turbsim.sources.cityscapes import CityscapesError

_SOI = b"\xff\xd8"
_EOI = b"\xff\xd9"
_SOS = 0xDA
#: SOFn markers: C0 .. CF except DHT (C4), JPG (C8) and DAC (CC).
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
#: Markers without a length: TEM, RST0 .. RST7 (SOI and EOI are handled apart).
_STANDALONE = frozenset([0x01, *range(0xD0, 0xD8)])
#: Bytes of the file's end searched first for EOI.
_TAIL_BYTES = 1 << 16
_CHUNK = 1 << 20


class JpegHeader(NamedTuple):
    """What the header of a JPEG says: frame size [px], components, and where the scan starts."""

    height: int
    width: int
    components: int
    scan_offset: int


def _error(path: Path, reason: str) -> CityscapesError:
    return CityscapesError(f"{path}: {reason}", path, reason)


def _read_exact(stream: BinaryIO, n: int, path: Path, what: str) -> bytes:
    data = stream.read(n)
    if len(data) < n:
        raise _error(path, f"truncated (ends inside the JPEG {what})")
    return data


def _parse(stream: BinaryIO, path: Path) -> JpegHeader:
    """Walk the marker segments from SOI to the first SOS (the stream is at offset 0)."""
    head = stream.read(2)
    if len(head) == 0:
        raise _error(path, "empty file (0 bytes)")
    if head != _SOI:
        raise _error(path, "not a JPEG file (no SOI marker)")
    frame: tuple[int, int, int] | None = None
    while True:
        byte = _read_exact(stream, 1, path, "header")
        if byte != b"\xff":
            raise _error(path, "corrupt JPEG header (a marker was expected)")
        marker = 0xFF
        while marker == 0xFF:  # fill bytes
            marker = _read_exact(stream, 1, path, "header")[0]
        if marker in _STANDALONE:
            continue
        if marker in (0xD8, 0xD9, 0x00):
            raise _error(path, f"corrupt JPEG header (marker FF{marker:02X} before the image)")
        (length,) = struct.unpack(">H", _read_exact(stream, 2, path, "header"))
        if length < 2:
            raise _error(path, f"corrupt JPEG header (segment FF{marker:02X} of length {length})")
        if marker in _SOF:
            body = _read_exact(stream, length - 2, path, "frame header")
            if len(body) < 6:
                raise _error(path, "corrupt JPEG frame header (too short)")
            height, width = struct.unpack(">HH", body[1:5])
            if height == 0 or width == 0:
                raise _error(path, f"unsupported JPEG (frame size {height}x{width} in its header)")
            frame = (height, width, body[5])
            continue
        if marker == _SOS:
            if frame is None:
                raise _error(path, "corrupt JPEG (a scan before the frame header)")
            stream.seek(length - 2, os.SEEK_CUR)
            return JpegHeader(*frame, stream.tell())
        stream.seek(length - 2, os.SEEK_CUR)


def _open(path: Path) -> BinaryIO:
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise _error(path, "missing") from None
    except IsADirectoryError:
        raise _error(path, "is a directory, not a JPEG file") from None
    except OSError as error:
        raise _error(path, f"unreadable ({error.strerror or error})") from None


def read_jpeg_header(path: Path | str) -> JpegHeader:
    """Parse a JPEG's segment headers up to its first scan, without decoding.

    Raises:
        CityscapesError: naming the file: missing, unreadable, empty, not a JPEG, a corrupt or
            truncated header, or a frame size of 0 (a DNL marker, not supported).
    """
    path = Path(path)
    with _open(path) as stream:
        try:
            return _parse(stream, path)
        except OSError as error:
            raise _error(path, f"unreadable ({error.strerror or error})") from None


def jpeg_size(path: Path | str) -> tuple[int, int]:
    """(height, width) [px] of a JPEG from its frame header, without decoding."""
    header = read_jpeg_header(path)
    return header.height, header.width


def _has_eoi(stream: BinaryIO, start: int, size: int) -> bool:
    """Whether ``FF D9`` occurs in the stream's bytes [start, size): the tail first."""
    tail_start = max(start, size - _TAIL_BYTES)
    stream.seek(tail_start)
    if _EOI in stream.read():
        return True
    stream.seek(start)
    carry = b""
    position = start
    while position < tail_start:
        block = stream.read(min(_CHUNK, tail_start - position))
        if not block:
            return False
        if _EOI in carry + block:
            return True
        position += len(block)
        carry = block[-1:]
    # the boundary between the body and the tail
    stream.seek(tail_start)
    return _EOI in carry + stream.read(1)


def check_jpeg(path: Path | str) -> JpegHeader:
    """The header of a JPEG that is present, readable and complete (ends its scans with EOI).

    Raises:
        CityscapesError: naming the file, for what :func:`read_jpeg_header` refuses, or
            ``truncated (no EOI marker after the image data)``.
    """
    path = Path(path)
    with _open(path) as stream:
        try:
            header = _parse(stream, path)
            size = stream.seek(0, os.SEEK_END)
            complete = _has_eoi(stream, header.scan_offset, size)
        except OSError as error:
            raise _error(path, f"unreadable ({error.strerror or error})") from None
    if not complete:
        raise _error(path, "truncated (no EOI marker after the image data)")
    return header
