"""Label maps: resized without inventing values (nearest neighbour); palette PNGs read as their
indices without Pillow."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np


def resize_label(label: np.ndarray, size: int) -> np.ndarray:
    """Resize an ``(H, W)`` label or mask to ``(size, size)`` with nearest-neighbour (no new values)."""
    if label.shape[0] == size and label.shape[1] == size:
        return label
    return cv2.resize(label, (size, size), interpolation=cv2.INTER_NEAREST)


def read_palette_png(path: str | os.PathLike[str]) -> np.ndarray:
    """The palette indices of an 8-bit palette PNG, (H, W) uint8, without Pillow.

    OpenCV expands palettes to colours; label maps written as palette PNGs (``icpd infer``'s
    ``<stem>_labels.png``, PASCAL VOC) hold class ids in the indices. Reads every PNG row filter;
    interlaced files and bit depths other than 8 are refused (Pillow reads those).

    Raises:
        ValueError: not a PNG, not an 8-bit non-interlaced palette PNG, or a damaged file.
    """
    data = Path(path).read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path}: not a PNG file")
    pos, idat, header = 8, [], b""
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + size]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + size
    if len(header) != 13:
        raise ValueError(f"{path}: damaged PNG (no IHDR chunk)")
    w, h, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    if colour != 3 or depth != 8 or interlace:
        raise ValueError(f"{path}: reading palette indices without Pillow needs an 8-bit, non-interlaced palette PNG "
                         f"(this one: colour type {colour}, {depth}-bit, interlace {interlace}); pip install pillow")
    try:
        raw = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8)
    except zlib.error as e:
        raise ValueError(f"{path}: damaged PNG data ({e})") from None
    if raw.size != h * (w + 1):
        raise ValueError(f"{path}: damaged PNG data ({raw.size} bytes for {w}x{h} px)")
    rows = raw.reshape(h, w + 1)
    out = np.zeros((h, w), np.uint8)
    prev = np.zeros(w, np.uint8)
    for y in range(h):  # each row's filter undone against the row above (1 byte per pixel)
        kind, line = rows[y, 0], rows[y, 1:]
        if kind == 0:
            cur = line.copy()
        elif kind == 1:  # Sub: running sum along the row, modulo 256
            cur = np.cumsum(line, dtype=np.uint8)
        elif kind == 2:  # Up
            cur = line + prev
        elif kind in (3, 4):  # Average, Paeth: each byte needs the one decoded before it
            cur = _unfilter_sequential(int(kind), line, prev)
        else:
            raise ValueError(f"{path}: damaged PNG data (row filter {kind})")
        out[y] = prev = cur
    return out


def _unfilter_sequential(kind: int, line: np.ndarray, prev: np.ndarray) -> np.ndarray:
    """PNG's Average (3) and Paeth (4) filters, undone byte by byte (bpp = 1)."""
    cur = np.zeros_like(line)
    left = upleft = 0
    for x, (v, up) in enumerate(zip(line.tolist(), prev.tolist())):
        if kind == 3:
            value = v + (left + up) // 2
        else:
            p = left + up - upleft
            pa, pb, pc = abs(p - left), abs(p - up), abs(p - upleft)
            value = v + (left if pa <= pb and pa <= pc else up if pb <= pc else upleft)
        cur[x] = left = value & 0xFF
        upleft = up
    return cur
