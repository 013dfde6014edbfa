"""The figures, drawn with matplotlib (the `plot` extra): a 10-s ECG strip with beats coloured
by class, the profiler's bar charts, and the figure helpers the sweep plots share.

matplotlib is imported inside the functions that draw, so the apps import without it; a
figure asked for without it is a `UsageError` naming the extra. Figures are rendered by the
Agg canvas directly (no pyplot: no global figure list, no backend switch in the caller).

Glossary: L samples, n beats, M bars.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import numpy as np

from qs4d.runtime.cliargs import output_file
from qs4d.runtime.errors import UsageError

MISSING = "needs matplotlib, the `plot` extra (pip install 'qs4d[plot]')"
CLASS_COLORS = {"N": "tab:blue", "S": "tab:orange", "V": "tab:red", "F": "tab:purple",
                "Q": "tab:green"}
DPI = 100


def have_matplotlib() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def require(what: str) -> None:
    """UsageError "WHAT needs matplotlib ..." unless matplotlib is importable."""
    if not have_matplotlib():
        raise UsageError(f"{what} {MISSING}")


def plot_file(text: str) -> str:
    """argparse type of a --plot PNG: its folder exists and matplotlib is importable."""
    path = output_file(text)
    if not have_matplotlib():
        raise argparse.ArgumentTypeError(f"a plot {MISSING}")
    return path


def figure(width_px: int, height_px: int):
    """A matplotlib Figure of that many pixels on an Agg canvas, laid out by constrained
    layout (labels, titles and legends kept inside)."""
    require("plotting")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig, path: str | Path) -> Path:
    """Write fig as PNG (whatever the file name's suffix) and return the path."""
    path = Path(path)
    fig.savefig(path, format="png", dpi=DPI)
    return path


def ecg_strip(path: str | Path, x: np.ndarray, fs: float, start_s: float, beats: list,
              title: str, seconds: float = 10.0) -> Path:
    """PNG (1400 x 460) of x (L,) mV over [start_s, start_s + seconds) with beats
    [(time_s, label)] marked on the trace and lettered above it, counted in the legend."""
    a, b = int(round(start_s * fs)), int(round((start_s + seconds) * fs))
    seg = np.asarray(x[a:b], np.float64)  # (l,)
    if not len(seg):
        raise ValueError(f"ecg_strip: no samples in [{start_s}, {start_s + seconds}) s")
    t = start_s + np.arange(len(seg)) / fs  # (l,)
    lo, hi = np.percentile(seg, [0.2, 99.8])
    pad = 0.15 * max(hi - lo, 0.1)
    fig = figure(1400, 460)
    ax = fig.add_subplot()
    ax.plot(t, seg, color="0.1", lw=0.8)
    shown = [(bt, lab) for bt, lab in beats if start_s <= bt < start_s + seconds]
    top = hi + 0.6 * pad
    for lab in dict.fromkeys([lab for _, lab in shown]):
        bt = np.array([u for u, v in shown if v == lab])  # (n,)
        i = np.clip(np.round((bt - start_s) * fs).astype(int), 0, len(seg) - 1)  # (n,)
        color = CLASS_COLORS.get(lab, "0.5")
        ax.plot(bt, seg[i], "o", ms=5, color=color, label=f"{lab} ({len(bt)})")
        for u in bt:
            ax.text(u, top, lab, color=color, ha="center", va="center", fontsize=9)
    ax.set_xlim(start_s, start_s + seconds)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("mV")
    ax.set_title(title, loc="left")
    ax.grid(alpha=0.3)
    if shown:
        ax.legend(loc="lower right", ncol=len(CLASS_COLORS), fontsize=9, title="beats by class",
                  title_fontsize=9)
    return save(fig, path)


def bars(ax, names: list, values: list, title: str, unit: str, log: bool = False,
         whiskers: list | None = None) -> None:
    """A bar chart of values (M,) on ax, each bar labelled with its value; whiskers (M,)
    upper marks, e.g. p99."""
    vals = np.asarray(values, np.float64)  # (M,)
    err = None
    if whiskers is not None:
        err = np.stack([np.zeros_like(vals), np.maximum(np.asarray(whiskers) - vals, 0)])  # (2, M)
    colors = [f"C{i % 10}" for i in range(len(vals))]
    drawn = ax.bar(names, vals, color=colors, yerr=err, capsize=6 if err is not None else 0)
    ax.bar_label(drawn, fmt="%.3g", fontsize=8, padding=2)
    if log:
        ax.set_yscale("log")
    ax.set_ylabel(unit)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3, which="both" if log else "major")
    ax.tick_params(axis="x", labelrotation=20)


def profile_plot(path: str | Path, latency_us: dict, energy_nj: dict) -> Path:
    """PNG (1400 x 520): step latency per backend {name: (median, p99)} in microseconds and
    energy per step per target {name: nJ}, both on log axes."""
    fig = figure(1400, 520)
    left, right = fig.subplots(1, 2)
    names = list(latency_us)
    bars(left, names, [latency_us[n][0] for n in names],
         "step latency, batch 1, one thread (median; whisker p99)", "µs per step", log=True,
         whiskers=[latency_us[n][1] for n in names])
    bars(right, list(energy_nj), list(energy_nj.values()), "energy per step (estimate)",
         "nJ per step", log=True)
    return save(fig, path)
