"""Streaming keyword spotting on real speech: detection rate against false alarms per hour
(the wake-word metric), over a grid of detector thresholds. numpy, scipy, onnxruntime (and
matplotlib for --plot, the `plot` extra); no torch.

    qs4d kws-bench BUNDLE --data ../shared/data --split validation
    qs4d kws-bench BUNDLE --data ../shared/data --split testing \\
        --threshold 0.85 --plot out/sc12-testing.png --json out/sc12-testing.json

The stream: real keyword clips of the split's held-out speakers (Speech Commands speaker
groups, models/data/real_kws.py; for `digits` also the FSDD speakers the bundle's fold held
out: `--fold TEST[/VAL]`, TEST's clips in `testing`, VAL's in `validation`),
spliced in random order between real non-keyword speech (the same speakers' other Speech
Commands words, and whole Asterisk prompts, below), each followed by 1-3 s of gap, over real
background noise (the split's part of every Speech Commands noise recording, by time) at
NOISE_DBFS; speech is scaled to SPEECH_DBFS (RMS of its voiced part). The events are dealt
round-robin to `--streams` parallel streams, run through the bundle's own front end and
executor (`Stream`), and the detector of the apps (softmax of logits averaged over
`--smooth-ms`, refractory 800 ms, `qs4d.apps.detect`) runs on the logits at every threshold.

Scoring (`score`): a keyword event is detected when a detection of its label falls in
[onset, offset + TOLERANCE_S]; every other detection is a false alarm (a wrong keyword on a
keyword, a second detection of one, or any detection on non-keyword speech or noise). FA/h =
false alarms / hours of the stream outside the keyword windows.

Asterisk prompts (Debian asterisk-core-sounds-*-wav, asterisk-prompt-it-menardi-wav): only
prompts with more than 0.95 s of speech (never in a `qs4d data kws` build, which takes the
shorter ones), outside digits/ letters/ phonetic/ silence/ and without a keyword in their file
name; English is left out by default (its prompts say digits and words like "no", "on", "go",
and the packages carry no transcripts to filter them). Speakers by split (ASTERISK_SPLIT):
validation Menardi (it) and June (fr); testing Allison (es), Carlo (it) and the Russian voice.
Choose the threshold on `validation` (`--target-fa`: the lowest threshold whose FA/h is at most
the target), report it on `testing`.

Glossary: S parallel streams, T steps per stream, K classes.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qs4d.apps.detect import DetectorConfig, softmax
from qs4d.apps.plot import figure, require, save
from qs4d.models.data.augment import trim_silence
from qs4d.models.data.real_kws import (
    ASTERISK,
    ASTERISK_SPLIT,
    DIGITS,
    MLPERF_KEYWORDS,
    SR,
    asterisk_prompts,
    fsdd_clips,
    load_clip,
    load_noises,
    read_audio,
    resolve,
    sc_clips,
)
from qs4d.runtime.stream import load

MIN_SPEECH_S = 0.95
SPEECH_DBFS, NOISE_DBFS = (-28.0, -16.0), (-50.0, -38.0)
GAP_S = (1.0, 3.0)
TOLERANCE_S = 1.0  # a detection may come this long after the clip ends (1-s smoothing)
THRESHOLDS = tuple([k / 100 for k in range(30, 90, 5)] + [k / 100 for k in range(90, 100)]
                   + [0.995, 0.998])


@dataclass(frozen=True)
class Event:
    start: float  # seconds from the stream's start
    end: float
    label: str  # the keyword, or "" for non-keyword speech
    kind: str  # "keyword", "unknown" (Speech Commands other words), "prompt" (Asterisk)


# --- Detection (the apps' detector, fast over many thresholds)

def smooth_logits(logits: np.ndarray, steps: int) -> np.ndarray:
    """(T, K) softmax of the logits averaged over the last `steps` rows (zeros before the
    start): `Detector`'s "logits" smoothing, computed once for every threshold."""
    z = np.concatenate([np.zeros((steps - 1, logits.shape[1])), np.asarray(logits, np.float64)])
    c = np.cumsum(np.concatenate([np.zeros((1, z.shape[1])), z]), axis=0)  # (W-1+T+1, K)
    return softmax((c[steps:] - c[:-steps]) / steps)


def detect(sm: np.ndarray, keywords: np.ndarray, cfg: DetectorConfig) -> list[tuple[int, int]]:
    """(step, class) of every detection of `Detector` (hold_steps 0) on smoothed posteriors
    sm (T, K); keywords (K,) bool. Only steps where a keyword crosses the threshold are
    visited; a keyword re-arms when its posterior fell below release x threshold since it
    last fired."""
    if cfg.hold_steps:
        raise ValueError("detect: hold_steps is not supported here")
    thr = cfg.threshold
    kw = np.flatnonzero(keywords)
    low = {int(k): np.flatnonzero(sm[:, k] < cfg.release * thr) for k in kw}
    fired: dict = {}
    last, out = None, []
    for t in np.flatnonzero((sm[:, kw] >= thr).any(axis=1)):
        if last is not None and t - last < cfg.refractory_steps:
            continue
        best, conf = -1, -1.0
        for k in kw:
            v = sm[t, k]
            if v < thr or v <= conf:
                continue
            f = fired.get(int(k))
            if f is not None:
                lows = low[int(k)]
                i = np.searchsorted(lows, f, side="right")
                if i == len(lows) or lows[i] > t:
                    continue
            best, conf = int(k), float(v)
        if best >= 0:
            out.append((int(t), best))
            fired[best], last = int(t), int(t)
    return out


# --- Scoring

def score(detections: list, events: list, duration_s: float, hop_s: float,
          tolerance_s: float = TOLERANCE_S) -> dict:
    """Detection rate and false alarms of one or more streams.

    detections: per stream, [(step, label)]; events: per stream, [Event]; duration_s: the
    total length of all streams. Returns {"rate": % keywords detected, "n_kw", "hits",
    "fa": false alarms, "hours": hours outside keyword windows, "fa_per_hour",
    "fa_by_kind": {kind: false alarms on it, "noise" between events}}.
    """
    hits = fa = n_kw = 0
    kw_s = 0.0
    by_kind: dict = {"keyword": 0, "unknown": 0, "prompt": 0, "noise": 0}
    for dets, evs in zip(detections, events):
        kws = sorted((e for e in evs if e.kind == "keyword"), key=lambda e: e.start)
        starts = np.array([e.start for e in kws])
        windows = [(e.start, e.end + tolerance_s) for e in kws]
        kw_s += sum(b - a for a, b in windows)
        n_kw += len(kws)
        found = [False] * len(kws)
        others = sorted((e for e in evs if e.kind != "keyword"), key=lambda e: e.start)
        o_starts = np.array([e.start for e in others])
        for step, label in dets:
            t = step * hop_s
            i = int(np.searchsorted(starts, t, side="right")) - 1
            if i >= 0 and t <= windows[i][1]:
                if label == kws[i].label and not found[i]:
                    found[i], hits = True, hits + 1
                    continue
                fa, by_kind["keyword"] = fa + 1, by_kind["keyword"] + 1
                continue
            fa += 1
            j = int(np.searchsorted(o_starts, t, side="right")) - 1
            kind = others[j].kind if j >= 0 and t <= others[j].end + tolerance_s else "noise"
            by_kind[kind] += 1
    hours = max(duration_s - kw_s, 0.0) / 3600
    return {"rate": 100.0 * hits / max(1, n_kw), "n_kw": n_kw, "hits": hits, "fa": fa,
            "hours": hours, "fa_per_hour": fa / hours if hours > 0 else float("nan"),
            "fa_by_kind": by_kind}


def choose_threshold(rows: list, target_fa: float) -> dict | None:
    """The row (of `sweep`) with the highest detection rate at FA/h <= target_fa, the lowest
    threshold among equals; None when no threshold meets the target."""
    ok = [r for r in rows if r["fa_per_hour"] <= target_fa]
    return max(ok, key=lambda r: (r["rate"], -r["threshold"])) if ok else None


# --- The stream

def _speech_s(x: np.ndarray) -> float:
    return len(trim_silence(x, SR)) / SR


def _level(x: np.ndarray, dbfs: float) -> np.ndarray:
    """x scaled so that the RMS of its voiced part (trim_silence) is dbfs."""
    v = trim_silence(x, SR)
    rms = float(np.sqrt(np.mean(np.square(v if len(v) else x)))) or 1e-12
    return x * (10 ** (dbfs / 20) / rms)


def build_streams(items: list, noises: list, n_streams: int, seed: int) -> tuple:
    """items: [(audio (n,), label, kind)]. Returns (audio (S, L) float32, [[Event]] per
    stream): items shuffled, dealt round-robin, each after a gap of noise."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(items))
    lanes: list = [[] for _ in range(n_streams)]
    for j, i in enumerate(order):
        lanes[j % n_streams].append(items[i])
    parts, events = [], []
    for lane in lanes:
        pos, placed = 0, []
        for x, label, kind in lane:
            pos += int(rng.uniform(*GAP_S) * SR)
            placed.append((pos, _level(x, rng.uniform(*SPEECH_DBFS)), label, kind))
            pos += len(x)
        parts.append((pos + int(GAP_S[1] * SR), placed))
    L = max(n for n, _ in parts)
    audio = np.zeros((n_streams, L), np.float32)
    for s, (_, placed) in enumerate(parts):
        audio[s] = _noise_bed(noises, L, rng)
        evs = []
        for pos, x, label, kind in placed:
            audio[s, pos:pos + len(x)] += x
            evs.append(Event(pos / SR, (pos + len(x)) / SR, label, kind))
        events.append(evs)
    return np.clip(audio, -1, 1, out=audio), events


def _noise_bed(noises: list, n: int, rng: np.random.Generator) -> np.ndarray:
    """n samples of noise: 5-20-s pieces of random recordings, each at a random NOISE_DBFS."""
    out, pos = np.zeros(n), 0
    while pos < n:
        src = noises[int(rng.integers(len(noises)))]
        k = min(n - pos, int(rng.uniform(5, 20) * SR), len(src))
        a = int(rng.integers(len(src) - k + 1))
        piece = np.asarray(src[a:a + k], np.float64)
        rms = float(np.sqrt(np.mean(piece ** 2))) or 1e-12
        out[pos:pos + k] = piece * (10 ** (rng.uniform(*NOISE_DBFS) / 20) / rms)
        pos += k
    return out


def split_items(data: str, task: str, split: str, fold: str, asterisk: Path,
                english: bool, limit_prompts: int = 0) -> tuple[list, dict]:
    """The split's (audio, label, kind) items, and counts of what went in."""
    keywords = MLPERF_KEYWORDS if task == "sc12" else DIGITS
    sc = sc_clips(data)
    sc = sc.take((sc.splits == split) & (sc.words != "_silence_"))
    items = [(load_clip(sc, i), w if w in keywords else "", "keyword" if w in keywords
              else "unknown") for i, w in enumerate(sc.words)]
    if task == "digits" and fold:
        fs = fsdd_clips(data, fold)
        fs = fs.take(fs.splits == split)
        items += [(read_audio(p), w, "keyword") for p, w in zip(fs.paths, fs.words)]
    spk = ASTERISK_SPLIT[split] + (ASTERISK_SPLIT["english"] if english and split == "testing"
                                   else ())
    prompts = []
    for f in asterisk_prompts(asterisk, spk, keywords) if asterisk.is_dir() else []:
        x = read_audio(f)
        if _speech_s(x) > MIN_SPEECH_S:
            prompts.append((x, "", "prompt"))
        if limit_prompts and len(prompts) >= limit_prompts:
            break
    items += prompts
    counts = {"keyword clips": sum(k == "keyword" for _, _, k in items),
              "other words": sum(k == "unknown" for _, _, k in items),
              "prompts": len(prompts),
              "prompt hours": sum(len(x) for x, _, _ in prompts) / SR / 3600,
              "asterisk voices": list(spk) if asterisk.is_dir() else []}
    return items, counts


def sweep(logits: np.ndarray, labels: tuple, events: list, duration_s: float, hop_ms: float,
          thresholds, smooth_ms: float = 1000.0, refractory_ms: float = 800.0) -> list:
    """One `score` row per threshold (with "threshold"): logits (S, T, K)."""
    keywords = np.array([not lab.startswith("_") for lab in labels])
    cfg0 = DetectorConfig.from_ms(hop_ms, 0.5, smooth_ms, refractory_ms, smooth="logits")
    sms = [smooth_logits(z, cfg0.smooth_steps) for z in logits]
    rows = []
    for thr in thresholds:
        cfg = DetectorConfig.from_ms(hop_ms, float(thr), smooth_ms, refractory_ms,
                                     smooth="logits")
        dets = [[(t, labels[k]) for t, k in detect(sm, keywords, cfg)] for sm in sms]
        rows.append({"threshold": float(thr),
                     **score(dets, events, duration_s, hop_ms / 1000.0)})
    return rows


def plot(rows: list, path: Path, title: str, chosen: float | None) -> Path:
    """PNG (660 x 480) of the detection rate against FA/h over the thresholds."""
    fig = figure(660, 480)
    ax = fig.add_subplot()
    fa = [max(r["fa_per_hour"], 0.1) for r in rows]
    ax.plot(fa, [r["rate"] for r in rows], "o-", ms=3)
    for r, x in zip(rows, fa):
        if chosen is not None and r["threshold"] == chosen:
            ax.plot([x], [r["rate"]], "r*", ms=12, label=f"threshold {chosen:g}")
    ax.axvline(2.0, color="grey", ls=":", lw=1)
    ax.axhline(90.0, color="grey", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("false alarms per hour (0 drawn at 0.1)")
    ax.set_ylabel("keywords detected (%)")
    ax.set_title(title, fontsize=9)
    if chosen is not None:
        ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    return save(fig, path)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qs4d kws-bench",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle")
    p.add_argument("--data", default="../shared/data", help="real-data root (or a Speech "
                   "Commands tree; models/data/real_kws.py, resolve)")
    p.add_argument("--task", choices=("sc12", "digits"), help="default: from the bundle's labels")
    p.add_argument("--split", default="validation", choices=("validation", "testing"))
    p.add_argument("--fold", default="", help="digits: the bundle's train.fold, TEST or "
                   "TEST/VAL: the FSDD speaker TEST's clips join the testing keywords, VAL's "
                   "the validation ones")
    p.add_argument("--asterisk", default=str(ASTERISK), help="Asterisk sounds folder")
    p.add_argument("--english", action="store_true", help="testing: add the English prompts "
                   "(unfiltered: they say keywords)")
    p.add_argument("--limit-prompts", type=int, default=0, help="at most N prompts (tests)")
    p.add_argument("--backend", default="onnx", choices=("onnx", "numpy", "imssa"))
    p.add_argument("--streams", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smooth-ms", type=float, default=1000.0)
    p.add_argument("--threshold", type=float, nargs="*", default=None,
                   help="thresholds to score (default: a grid 0.30-0.998)")
    p.add_argument("--target-fa", type=float, default=2.0, help="FA/h the chosen threshold "
                   "may reach")
    p.add_argument("--plot", help="PNG of the curve (the plot extra: matplotlib)")
    p.add_argument("--json", help="write every row and the setup here")
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    if a.plot:
        require("--plot")  # before the benchmark runs, not after
    model = load(a.bundle, backend=a.backend)
    fe, labels = model.spec.frontend, tuple(model.labels)
    task = a.task or ("sc12" if "yes" in labels else "digits")
    keywords = MLPERF_KEYWORDS if task == "sc12" else DIGITS
    if not set(keywords) <= set(labels):
        print(f"kws_stream_bench: bundle labels {labels} lack the {task} keywords",
              file=sys.stderr)
        return 2
    if fe.sample_rate != SR:
        print(f"kws_stream_bench: the bundle's front end runs at {fe.sample_rate} Hz, need {SR}",
              file=sys.stderr)
        return 2
    where = resolve(a.data)
    items, counts = split_items(a.data, task, a.split, a.fold, Path(a.asterisk), a.english,
                                a.limit_prompts)
    noises = load_noises(where["noise"], a.split)
    audio, events = build_streams(items, noises, a.streams, a.seed)
    duration = audio.size / SR
    logits = model.stream(batch=a.streams).accept(audio)  # (S, T, K)
    thresholds = a.threshold or THRESHOLDS
    rows = sweep(logits, labels, events, duration, fe.hop_ms, thresholds, a.smooth_ms)
    chosen = choose_threshold(rows, a.target_fa)
    print(f"{model!r}; task {task}, {a.split}: {counts['keyword clips']} keyword clips, "
          f"{counts['other words']} other words, {counts['prompts']} Asterisk prompts "
          f"({counts['prompt hours']:.2f} h); {duration / 3600:.2f} h of audio in "
          f"{a.streams} streams")
    print(f"{'thr':>6} {'detected %':>10} {'FA':>5} {'FA/h':>7}  FA on: keyword/unknown/"
          "prompt/noise")
    for r in rows:
        k = r["fa_by_kind"]
        mark = " <" if chosen is not None and r is chosen else ""
        print(f"{r['threshold']:6.3f} {r['rate']:10.1f} {r['fa']:5d} {r['fa_per_hour']:7.2f}  "
              f"{k['keyword']}/{k['unknown']}/{k['prompt']}/{k['noise']}{mark}")
    if chosen is None:
        print(f"no threshold reaches <= {a.target_fa:g} FA/h")
    else:
        print(f"chosen (highest detection at <= {a.target_fa:g} FA/h): threshold "
              f"{chosen['threshold']:g}, {chosen['rate']:.1f} % at {chosen['fa_per_hour']:.2f} "
              f"FA/h" + (" (choose on validation only)" if a.split == "testing" else ""))
    if a.plot:
        title = f"{Path(a.bundle).name}, {task} {a.split}"
        plot(rows, Path(a.plot), title, chosen["threshold"] if chosen else None)
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps({"bundle": a.bundle, "task": task, "split": a.split,
                                            "fold": a.fold, "seed": a.seed, "counts": counts,
                                            "hours": duration / 3600, "rows": rows,
                                            "chosen": chosen}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
