"""Line plots of sweep results as PNG, drawn with the apps' dependency-free raster code
(qs4d.apps.png, qs4d.apps.plot: pure numpy + zlib). models/ importing apps/ is an exception
to DESIGN section 2 made for the figures only (matplotlib is not a dependency).

Glossary: S series, M points of a series.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from qs4d.apps.plot import BLACK, GREY, PALETTE, Box, fmt, nice_ticks
from qs4d.apps.png import Canvas

# the apps' palette and four more, so that up to 11 series keep distinct colours
COLORS = list(PALETTE) + [(20, 20, 20), (150, 100, 40), (230, 90, 170), (120, 180, 40)]


def _range(values: np.ndarray, log: bool) -> tuple:
    lo, hi = float(values.min()), float(values.max())
    if log:
        return 10 ** math.floor(math.log10(lo)), 10 ** math.ceil(math.log10(hi * 1.0001))
    pad = 0.05 * (hi - lo) if hi > lo else max(abs(hi) * 0.05, 1.0)
    return lo - pad, hi + pad


def _log_ticks(lo: float, hi: float) -> np.ndarray:
    """log10 of the 1-2-5 values in [10^lo, 10^hi] (the decades alone when that is many)."""
    decades = np.arange(math.floor(lo), math.ceil(hi) + 1)  # (D,)
    steps = (1, 2, 5) if len(decades) <= 4 else (1,)
    t = np.log10([m * 10.0 ** d for d in decades for m in steps])
    return t[(t >= lo) & (t <= hi)]


def line_plot(path: str | Path, series: dict, *, title: str, x_label: str, y_label: str,
              ref: float | None = None, ref_label: str = "", log_x: bool = False,
              y_range: tuple | None = None) -> Path:
    """PNG of series {label: (xs (M,), ys (M,))} as lines with dots, a dashed horizontal
    reference line at `ref`, a legend on the right; log_x plots log10(x)."""
    pts = [(np.asarray(x, np.float64), np.asarray(y, np.float64)) for x, y in series.values()]
    if not pts or not any(len(x) for x, _ in pts):
        raise ValueError(f"line_plot {path}: no points to draw")
    xs_all = np.concatenate([x for x, _ in pts])  # (sum M,)
    ys_all = np.concatenate([y for _, y in pts] + ([np.array([ref])] if ref is not None else []))
    fx = np.log10 if log_x else (lambda v: v)
    x0, x1 = _range(fx(xs_all), False)
    y0, y1 = y_range if y_range is not None else _range(ys_all, False)
    c = Canvas(1100, 560)
    box = Box(c, 80, 70, 800, 490, (x0, x1), (y0, y1))
    ticks = _log_ticks(x0, x1) if log_x else (
        np.unique(xs_all) if len(np.unique(xs_all)) <= 12 else nice_ticks(x0, x1, 8))
    box.frame(None, nice_ticks(y0, y1, 6), x_label, y_label, title)
    last = -1e9
    for t in ticks:  # x tick labels show the data's own values (10^t on a log axis)
        label, at = fmt(float(10 ** t if log_x else t)), float(box.px(t))
        if at - last >= 8 * len(label) + 8:  # skip a label that would overlap the last one
            c.text(at, box.b + 6, label, GREY, anchor="center")
            last = at
    if ref is not None:
        xs = np.arange(box.l, box.r, 12.0)
        for a in xs:
            c.line(a, float(box.py(ref)), min(a + 6, box.r), float(box.py(ref)), GREY)
    for k, (label, (x, y)) in enumerate(zip(series, pts)):
        color = COLORS[k % len(COLORS)]
        order = np.argsort(x)
        px, py = box.px(fx(x[order])), box.py(y[order])
        c.polyline(px, py, color, width=3)
        for a, b in zip(px, py):
            c.dot(a, b, 4, color)
        c.rect(820, 80 + 24 * k, 836, 94 + 24 * k, color)
        c.text(844, 82 + 24 * k, str(label), BLACK)
    if ref is not None and ref_label:
        k = len(series)
        c.line(820, 87 + 24 * k, 836, 87 + 24 * k, GREY)
        c.text(844, 82 + 24 * k, ref_label, GREY)
    return c.save(path)
