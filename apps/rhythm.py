"""Rhythm summary of a sequence of classified beats (numpy only): heart rate, beats per AAMI
class, and pattern hints (bigeminy, trigeminy, couplets, runs). Hints, not a diagnosis.

Glossary: n beats.

Patterns on the label string (one letter per beat, AAMI classes N S V F Q):
    ventricular bigeminy   (NV){3,}     three or more normal-PVC pairs in a row
    ventricular trigeminy  (NNV){3,}
    ventricular couplet    VV, not part of a longer run
    ventricular run        V{3,} (called tachycardia when its rate is >= 100 bpm)
    supraventricular run   S{3,}
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

PATTERNS = (
    ("ventricular bigeminy", r"(?:NV){3,}"),
    ("ventricular trigeminy", r"(?:NNV){3,}"),
    ("ventricular couplet", r"(?<!V)VV(?!V)"),
    ("ventricular run", r"V{3,}"),
    ("supraventricular run", r"S{3,}"),
)


@dataclass(frozen=True)
class Episode:
    kind: str
    start: int  # index of its first beat
    beats: int
    rate_bpm: float  # mean rate over the episode (nan for a single interval or less)


@dataclass(frozen=True)
class Rhythm:
    beats: int
    duration_s: float
    mean_hr: float  # 60 / median RR, bpm
    min_hr: float  # over 10-beat windows
    max_hr: float
    counts: dict  # class -> beats
    episodes: list  # Episode, in order of start


def _rate(t: np.ndarray) -> float:
    return float(60.0 * (len(t) - 1) / (t[-1] - t[0])) if len(t) > 1 and t[-1] > t[0] else np.nan


def analyze(times_s: np.ndarray, labels: list, classes: tuple = ("N", "S", "V", "F", "Q"),
            window: int = 10) -> Rhythm:
    """Rhythm of beats at times_s (n,) seconds with labels (n,) one-letter classes."""
    t = np.asarray(times_s, np.float64)  # (n,)
    if len(t) != len(labels):
        raise ValueError(f"analyze: {len(t)} times and {len(labels)} labels")
    rr = np.diff(t)  # (n-1,)
    mean_hr = float(60.0 / np.median(rr)) if len(rr) and np.median(rr) > 0 else np.nan
    if len(t) > window:
        span = t[window:] - t[:-window]  # (n-window,) duration of `window` intervals
        hr = 60.0 * window / span[span > 0]
        lo, hi = (float(hr.min()), float(hr.max())) if len(hr) else (np.nan, np.nan)
    else:
        lo = hi = _rate(t)
    counts = {c: int(sum(1 for x in labels if x == c)) for c in classes}
    s = "".join(x if len(x) == 1 else "?" for x in labels)
    eps = []
    for kind, pat in PATTERNS:
        for m in re.finditer(pat, s):
            a, b = m.start(), m.end()
            name = kind
            if kind == "ventricular run" and _rate(t[a:b]) >= 100:
                name = "ventricular tachycardia"
            eps.append(Episode(name, a, b - a, _rate(t[a:b])))
    eps.sort(key=lambda e: e.start)
    dur = float(t[-1] - t[0]) if len(t) > 1 else 0.0
    return Rhythm(len(t), dur, mean_hr, lo, hi, counts, eps)


def report(r: Rhythm) -> str:
    """Plain-text summary: rates, counts per class, and episodes grouped by kind."""
    lines = [f"beats {r.beats} over {r.duration_s:.1f} s; heart rate {r.mean_hr:.0f} bpm "
             f"(10-beat range {r.min_hr:.0f}-{r.max_hr:.0f})"]
    tot = max(1, r.beats)
    lines.append("per class: " + ", ".join(f"{c} {n} ({100 * n / tot:.1f}%)"
                                           for c, n in r.counts.items()))
    kinds: dict = {}
    for e in r.episodes:
        kinds.setdefault(e.kind, []).append(e)
    if not kinds:
        lines.append("patterns: none found")
    for kind, es in kinds.items():
        longest = max(es, key=lambda e: e.beats)
        lines.append(f"hint: {kind}: {len(es)} episode(s), {sum(e.beats for e in es)} beats, "
                     f"longest {longest.beats} beats from beat {longest.start}")
    return "\n".join(lines)
