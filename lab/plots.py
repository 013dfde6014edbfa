"""Line plots of sweep results as PNG, drawn with matplotlib (the `plot` extra) through the
figure helpers of qs4d.apps.plot; only the sweep report (the top layer) uses them.

Glossary: S series, M points of a series.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qs4d.apps.plot import figure, save


def line_plot(path: str | Path, series: dict, *, title: str, x_label: str, y_label: str,
              ref: float | None = None, ref_label: str = "", log_x: bool = False,
              y_range: tuple | None = None) -> Path:
    """PNG (1100 x 560) of series {label: (xs (M,), ys (M,))} as lines with dots, a dashed
    horizontal reference line at `ref`, a legend on the right; log_x: a log x axis."""
    pts = [(np.asarray(x, np.float64), np.asarray(y, np.float64)) for x, y in series.values()]
    if not pts or not any(len(x) for x, _ in pts):
        raise ValueError(f"line_plot {path}: no points to draw")
    fig = figure(1100, 560)
    ax = fig.add_subplot()
    for label, (x, y) in zip(series, pts):
        order = np.argsort(x)
        ax.plot(x[order], y[order], "o-", lw=2, ms=5, label=str(label))
    if ref is not None:
        ax.axhline(ref, color="0.45", ls="--", lw=1.2, label=ref_label or None)
    xs = np.unique(np.concatenate([x for x, _ in pts]))  # (sum M,) distinct
    if log_x:
        ax.set_xscale("log")
    elif len(xs) <= 12:  # few settings (bits, widths): tick exactly the values run
        ax.set_xticks(xs)
    if y_range is not None:
        ax.set_ylim(*y_range)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9)
    return save(fig, path)
