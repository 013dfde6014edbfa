"""The apps' figures, drawn on apps.png.Canvas: a 10-s ECG strip with beats coloured by class,
and bar charts (linear or log axis) for the profiler.

Glossary: L samples, n beats, M bars.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .png import Canvas

BLACK, GREY, LIGHT = (20, 20, 20), (120, 120, 120), (225, 225, 225)
CLASS_COLORS = {"N": (60, 100, 170), "S": (235, 140, 0), "V": (205, 30, 30),
                "F": (140, 60, 175), "Q": (40, 145, 60)}
PALETTE = [(60, 100, 170), (205, 30, 30), (235, 140, 0), (40, 145, 60), (140, 60, 175),
           (90, 90, 90), (0, 150, 160)]


def nice_ticks(lo: float, hi: float, n: int = 5) -> np.ndarray:
    """About n round tick values covering [lo, hi]."""
    if not hi > lo:
        return np.array([lo])
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = min((s * mag for s in (1, 2, 5, 10) if s * mag >= raw), default=10 * mag)
    first = math.ceil(lo / step) * step
    return np.arange(first, hi + step * 1e-9, step)


def fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1000 or abs(v) < 0.01:
        return f"{v:.0e}".replace("e+0", "E").replace("e-0", "E-").replace("e+", "E")
    return f"{v:g}"


class Box:
    """A plot area inside a canvas mapping data (x, y) to pixels; y may be log10."""

    def __init__(self, c: Canvas, left, top, right, bottom, x_range, y_range, log_y=False):
        self.c, self.l, self.t, self.r, self.b = c, left, top, right, bottom
        self.x0, self.x1 = x_range
        self.log = log_y
        f = np.log10 if log_y else (lambda v: v)
        self.y0, self.y1 = f(y_range[0]), f(y_range[1])
        self._f = f

    def px(self, x):
        return self.l + (np.asarray(x, np.float64) - self.x0) / (self.x1 - self.x0) * (self.r - self.l)

    def py(self, y):
        y = self._f(np.maximum(np.asarray(y, np.float64), 1e-300) if self.log else
                    np.asarray(y, np.float64))
        return self.b - (y - self.y0) / (self.y1 - self.y0) * (self.b - self.t)

    def frame(self, x_ticks=None, y_ticks=None, x_label="", y_label="", title="") -> None:
        c = self.c
        for v in [] if y_ticks is None else y_ticks:
            y = float(self.py(v))
            c.line(self.l, y, self.r, y, LIGHT)
            c.text(self.l - 6, y - 5, fmt(float(v)), GREY, anchor="right")
        for v in [] if x_ticks is None else x_ticks:
            x = float(self.px(v))
            c.line(x, self.t, x, self.b, LIGHT)
            c.text(x, self.b + 6, fmt(float(v)), GREY, anchor="center")
        c.line(self.l, self.b, self.r, self.b, BLACK)
        c.line(self.l, self.t, self.l, self.b, BLACK)
        if x_label:
            c.text((self.l + self.r) / 2, self.b + 22, x_label, BLACK, anchor="center")
        if y_label:
            c.text(self.l, self.t - 16, y_label, BLACK)
        if title:
            c.text(self.l, self.t - 32, title, BLACK)


def ecg_strip(path: str | Path, x: np.ndarray, fs: float, start_s: float, beats: list,
              title: str, seconds: float = 10.0) -> Path:
    """PNG of x (L,) mV over [start_s, start_s + seconds) with beats [(time_s, label)]."""
    a, b = int(round(start_s * fs)), int(round((start_s + seconds) * fs))
    seg = np.asarray(x[a:b], np.float64)  # (l,)
    if not len(seg):
        raise ValueError(f"ecg_strip: no samples in [{start_s}, {start_s + seconds}) s")
    t = start_s + np.arange(len(seg)) / fs  # (l,)
    lo, hi = np.percentile(seg, [0.2, 99.8])
    pad = 0.15 * max(hi - lo, 0.1)
    c = Canvas(1400, 460)
    box = Box(c, 70, 70, 1380, 400, (start_s, start_s + seconds), (lo - pad, hi + pad))
    box.frame(nice_ticks(start_s, start_s + seconds, 10), nice_ticks(lo - pad, hi + pad, 5),
              "TIME (S)", "MV", title)
    c.polyline(box.px(t), box.py(seg), BLACK)
    shown: dict = {}
    for bt, lab in beats:
        if not start_s <= bt < start_s + seconds:
            continue
        color = CLASS_COLORS.get(lab, GREY)
        i = min(max(int(round((bt - start_s) * fs)), 0), len(seg) - 1)
        c.dot(box.px(bt), box.py(seg[i]), 5, color)
        c.text(box.px(bt), box.t + 4, lab, color, anchor="center")
        shown[lab] = shown.get(lab, 0) + 1
    x0 = 1380
    for lab in reversed(list(CLASS_COLORS)):
        w = c.text(x0, 24, f"{lab} {shown.get(lab, 0)}", BLACK, anchor="right")
        c.rect(x0 - w - 16, 24, x0 - w - 6, 33, CLASS_COLORS[lab])
        x0 -= w + 30
    return c.save(path)


def bars(c: Canvas, box_xy: tuple, names: list, values: list, title: str, unit: str,
         log: bool = False, whiskers: list | None = None) -> None:
    """A bar chart in box (left, top, right, bottom); whiskers (M,) upper marks, e.g. p99."""
    l, t, r, b = box_xy
    vals = np.asarray(values, np.float64)  # (M,)
    tops = vals if whiskers is None else np.maximum(vals, np.asarray(whiskers, np.float64))
    if log:
        pos = tops[tops > 0]
        lo = 10 ** math.floor(math.log10(vals[vals > 0].min())) if (vals > 0).any() else 1.0
        hi = 10 ** math.ceil(math.log10(pos.max() * 1.01)) if len(pos) else 10.0
        ticks = 10.0 ** np.arange(math.log10(lo), math.log10(hi) + 0.5)
        box = Box(c, l, t, r, b, (0, len(vals)), (lo, hi), log_y=True)
        base = lo
    else:
        hi = float(tops.max()) * 1.1 if len(tops) and tops.max() > 0 else 1.0
        ticks = nice_ticks(0.0, hi, 5)
        box = Box(c, l, t, r, b, (0, len(vals)), (0.0, hi))
        base = 0.0
    box.frame(None, ticks, "", unit, title)
    for i, (name, v) in enumerate(zip(names, vals)):
        color = PALETTE[i % len(PALETTE)]
        x0, x1 = box.px(i + 0.15), box.px(i + 0.85)
        if v > 0:
            c.rect(x0, box.py(v), x1, box.py(base), color)
        if whiskers is not None and whiskers[i] > 0:
            xm, yw = (x0 + x1) / 2, box.py(whiskers[i])
            c.line(xm, box.py(v), xm, yw, BLACK)
            c.line(xm - 6, yw, xm + 6, yw, BLACK)
        c.text((x0 + x1) / 2, b + 8, name, BLACK, anchor="center")
        c.text((x0 + x1) / 2, box.py(v) - 14, f"{float(v):.3g}", BLACK, anchor="center")
