"""PNG images without dependencies: a numpy RGB canvas with lines, rectangles, dots and bitmap
text, written as an 8-bit truecolor PNG with zlib and struct (PNG spec, ISO/IEC 15948).

Glossary: Hp, Wp image height and width in pixels.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from .font import render

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def encode_png(rgb: np.ndarray) -> bytes:
    """(Hp, Wp, 3) uint8 -> PNG bytes (colour type 2, bit depth 8, filter 0 on every row)."""
    a = np.asarray(rgb)
    if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8 or 0 in a.shape[:2]:
        raise ValueError(f"encode_png: expected a non-empty (H, W, 3) uint8 array, got "
                         f"{a.dtype} {a.shape}")
    h, w, _ = a.shape
    raw = np.concatenate([np.zeros((h, 1), np.uint8), a.reshape(h, 3 * w)], axis=1)  # (Hp, 1+3Wp)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (PNG_SIGNATURE + _chunk(b"IHDR", ihdr)
            + _chunk(b"IDAT", zlib.compress(raw.tobytes(), 9)) + _chunk(b"IEND", b""))


def write_png(path: str | Path, rgb: np.ndarray) -> Path:
    path = Path(path)
    path.write_bytes(encode_png(rgb))
    return path


class Canvas:
    """An RGB raster with (x right, y down) pixel coordinates; drawing clips at the edges."""

    def __init__(self, width: int, height: int, background=(255, 255, 255)):
        self.w, self.h = int(width), int(height)
        self.px = np.empty((self.h, self.w, 3), np.uint8)  # (Hp, Wp, 3)
        self.px[:] = background

    def _put(self, xs: np.ndarray, ys: np.ndarray, color) -> None:
        xs, ys = np.rint(xs).astype(np.int64), np.rint(ys).astype(np.int64)
        ok = (xs >= 0) & (xs < self.w) & (ys >= 0) & (ys < self.h)
        self.px[ys[ok], xs[ok]] = color

    def rect(self, x0, y0, x1, y1, color) -> None:
        """Filled rectangle with corners (x0, y0) and (x1, y1), inclusive."""
        xa, xb = sorted((int(round(x0)), int(round(x1))))
        ya, yb = sorted((int(round(y0)), int(round(y1))))
        xa, ya = max(xa, 0), max(ya, 0)
        xb, yb = min(xb, self.w - 1), min(yb, self.h - 1)
        if xa <= xb and ya <= yb:
            self.px[ya: yb + 1, xa: xb + 1] = color

    def polyline(self, xs, ys, color, width: int = 1) -> None:
        """Connected segments through points (xs[i], ys[i]); width in pixels (odd)."""
        xs, ys = np.asarray(xs, np.float64), np.asarray(ys, np.float64)
        if len(xs) == 1:
            self.dot(xs[0], ys[0], width / 2, color)
            return
        dx, dy = np.diff(xs), np.diff(ys)  # (S,)
        n = np.maximum(np.ceil(np.maximum(np.abs(dx), np.abs(dy))), 1).astype(np.int64)  # (S,)
        seg = np.repeat(np.arange(len(n)), n)  # (Q,) segment of each point
        frac = (np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)) / n[seg]  # (Q,)
        px = np.concatenate([xs[seg] + frac * dx[seg], xs[-1:]])
        py = np.concatenate([ys[seg] + frac * dy[seg], ys[-1:]])
        r = (width - 1) // 2
        for ox in range(-r, r + 1):
            for oy in range(-r, r + 1):
                self._put(px + ox, py + oy, color)

    def line(self, x0, y0, x1, y1, color, width: int = 1) -> None:
        self.polyline([x0, x1], [y0, y1], color, width)

    def dot(self, x, y, radius: float, color) -> None:
        r = int(np.ceil(radius))
        oy, ox = np.mgrid[-r: r + 1, -r: r + 1]
        keep = ox * ox + oy * oy <= radius * radius + 0.5
        self._put(x + ox[keep], y + oy[keep], color)

    def text(self, x, y, s: str, color, scale: int = 2, anchor: str = "left") -> int:
        """Draw s with its top at y; anchor left/center/right at x. Returns the width drawn."""
        bits = render(s)  # (5, w)
        w = bits.shape[1] * scale
        x0 = int(round(x - (w / 2 if anchor == "center" else w if anchor == "right" else 0)))
        ys, xs = np.nonzero(bits)
        for a in range(scale):
            for b in range(scale):
                self._put(x0 + xs * scale + b, int(round(y)) + ys * scale + a, color)
        return w

    def save(self, path: str | Path) -> Path:
        return write_png(path, self.px)
