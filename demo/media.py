"""Sample media made in plain Python, for the self-test and the browser test.

Nothing is downloaded: a WAV tune from the :mod:`wave` module, a PNG picture (a
hand-written encoder: ``zlib`` and ``struct``) and an SVG badge (text).
"""

from __future__ import annotations

import math
import struct
import wave
import zlib
from array import array
from io import BytesIO

# A C major arpeggio, up and down: A4 = 440 Hz, twelve-tone equal temperament.
NOTES = [0, 4, 7, 12, 7, 4]


def wav_tune(seconds: float = 4.0, rate: int = 44100, channels: int = 1) -> bytes:
    """A WAV file (16-bit PCM) that plays an arpeggio of quarter-second notes.

    Its size is ``44 + seconds * rate * channels * 2`` bytes: 4 s of 44.1 kHz mono is
    352,844 bytes, more than one GridFS chunk (255 KiB).
    """
    note_frames = rate // 4
    total_frames = int(seconds * rate)
    # One buffer per note, faded in and out so that the notes do not click.
    tones: list[array[int]] = []
    for step in NOTES:
        frequency = 261.63 * 2 ** (step / 12)
        fade = min(note_frames // 10, 400)
        samples = array("h")
        for i in range(note_frames):
            envelope = min(1.0, i / fade, (note_frames - i) / fade)
            value = int(12000 * envelope * math.sin(2 * math.pi * frequency * i / rate))
            samples.extend([value] * channels)
        tones.append(samples)
    frames = array("h")
    note = 0
    while len(frames) < total_frames * channels:
        frames.extend(tones[note % len(tones)])
        note += 1
    del frames[total_frames * channels :]
    out = BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(frames.tobytes())  # little-endian on every platform Motor runs on
    return out.getvalue()


def png_picture(width: int = 240, height: int = 160) -> bytes:
    """A PNG (8-bit RGB) with a colour gradient and a white circle."""
    rows = []
    for y in range(height):
        row = bytearray([0])  # filter type 0 (None) for every row
        for x in range(width):
            inside = (x - width / 2) ** 2 + (y - height / 2) ** 2 < (height / 4) ** 2
            if inside:
                row += b"\xff\xff\xff"
            else:
                row += bytes([40 + 200 * x // width, 60 + 150 * y // height, 160])
        rows.append(bytes(row))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"".join(rows), 9))
        + chunk(b"IEND", b"")
    )


def svg_badge(text: str = "Motor") -> bytes:
    """A small SVG image with ``text`` on it (``text`` is escaped)."""
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="200" height="80" viewBox="0 0 200 80">'
        '<rect width="200" height="80" rx="12" fill="#13aa52"/>'
        '<text x="100" y="52" font-family="sans-serif" font-size="32" fill="white" '
        f'text-anchor="middle">{escaped}</text></svg>\n'
    ).encode()
