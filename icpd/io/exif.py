"""The EXIF orientation of JPEG files: read from the bytes, applied to the pixels as viewers do.

Cameras and phones store pixels as the sensor read them and record in EXIF tag 0x0112 how to
turn them upright; every image viewer applies it. ``cv2.imdecode(..., IMREAD_UNCHANGED)`` does
not, so an icpd user would segment a sideways picture of what they saw upright (and a mask drawn
on the upright picture would not match). No dependency: a JPEG APP1 segment is parsed by hand.
"""

from __future__ import annotations

import struct

import numpy as np

# orientation value -> what it does, as a note says it
ORIENTATION_TEXT = {
    2: "mirrored left-right", 3: "rotated 180 degrees", 4: "mirrored top-bottom",
    5: "transposed (mirrored and rotated 90 degrees)", 6: "rotated 90 degrees clockwise",
    7: "transversed (mirrored and rotated 90 degrees)", 8: "rotated 90 degrees counter-clockwise",
}


def jpeg_orientation(data: bytes) -> int:
    """EXIF orientation 1..8 of a JPEG file's bytes; 1 (as stored) when absent or unreadable."""
    if data[:2] != b"\xff\xd8":
        return 1
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no EXIF before the pixels
            return 1
        length = struct.unpack(">H", data[pos + 2:pos + 4])[0]
        segment = data[pos + 4:pos + 2 + length]
        if marker == 0xE1 and segment[:6] == b"Exif\x00\x00":
            return _tiff_orientation(segment[6:])
        pos += 2 + length
    return 1


def _tiff_orientation(tiff: bytes) -> int:
    try:
        order = {b"II": "<", b"MM": ">"}[tiff[:2]]
        (ifd,) = struct.unpack(order + "I", tiff[4:8])
        (count,) = struct.unpack(order + "H", tiff[ifd:ifd + 2])
        for i in range(count):
            entry = tiff[ifd + 2 + 12 * i:ifd + 14 + 12 * i]
            tag, kind = struct.unpack(order + "HH", entry[:4])
            if tag == 0x0112 and kind == 3:  # SHORT
                (value,) = struct.unpack(order + "H", entry[8:10])
                return value if 1 <= value <= 8 else 1
    except (KeyError, struct.error):
        pass
    return 1


def apply_orientation(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Turn (H, W) or (H, W, C) pixels upright for EXIF ``orientation`` (returns a view)."""
    if orientation == 2:
        return arr[:, ::-1]
    if orientation == 3:
        return arr[::-1, ::-1]
    if orientation == 4:
        return arr[::-1]
    if orientation == 5:
        return arr.swapaxes(0, 1)
    if orientation == 6:
        return np.rot90(arr, k=-1)
    if orientation == 7:
        return arr.swapaxes(0, 1)[::-1, ::-1]
    if orientation == 8:
        return np.rot90(arr, k=1)
    return arr
