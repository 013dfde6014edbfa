"""Keyword decisions from per-step logits (numpy only): smoothed posteriors, a threshold, one
detection per utterance, and a refractory period.

Glossary: T steps in a chunk, K classes, W smoothing window (steps).

Per step t, with p[t] = softmax(logits[t]) (K,), the smoothed posterior is either
    smooth[t] = (p[t-W+1] + ... + p[t]) / W                     smooth = "posterior", or
    smooth[t] = softmax((logits[t-W+1] + ... + logits[t]) / W)  smooth = "logits"
(steps before the first count as zeros). "logits" is the decision the classifiers were trained
with: softmax of the mean of the per-step logits over a clip (`pooling = "mean"`), here over the
last W steps; single steps of such a model are weak evidence, and averaging their posteriors
(each already squashed by its own softmax) loses most of it.
    a keyword k fires at t when
        smooth[t, k] >= threshold,  k is not a filler class (_unknown_, _silence_),
        k is armed (its smoothed posterior fell below release * threshold since it last fired),
        and t - (step of the last detection of any keyword) >= refractory.
    When several keywords qualify, the one with the highest smoothed posterior fires.
With hold_steps = D > 0 a crossing at t opens a decision instead: over steps t..t+D the
keyword with the highest smoothed posterior above the threshold is kept, and it fires at t+D
(peak picking: a word's onset can favour another keyword that shares it, "th-" of "three" and
"two"; the word's own score peaks later). The latency grows by D steps.
A word held longer than the refractory period still fires once: it stays disarmed until its
posterior drops. The state (window history, arming, last detection) carries across chunks, so
the decisions never depend on how the logits were cut.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FILLERS = ("_unknown_", "_silence_")
SMOOTH_MODES = ("posterior", "logits")
# The apps' detector (qs4d kws, the microphone test), chosen with `python -m qs4d.apps.kws_bench`
# on the validation split and music track of data/kws, checked on the test split (docs/apps.md):
# against posterior averaging over 300 ms at 0.7 it finds more keywords at the same or fewer
# false alarms.
APP_SMOOTH, APP_SMOOTH_MS, APP_THRESHOLD = "logits", 1000.0, 0.8


@dataclass(frozen=True)
class DetectorConfig:
    threshold: float = 0.7
    smooth_steps: int = 30  # W
    refractory_steps: int = 80
    release: float = 0.5  # re-arm below release * threshold
    fillers: tuple = FILLERS
    smooth: str = "posterior"  # average "posterior"s or "logits" over the window
    hold_steps: int = 0  # D: decide on the best keyword over D steps after a crossing

    def __post_init__(self):
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"DetectorConfig.threshold: must be in (0, 1], got {self.threshold}")
        if self.smooth_steps < 1:
            raise ValueError(f"DetectorConfig.smooth_steps: must be >= 1, got {self.smooth_steps}")
        if self.refractory_steps < 0:
            raise ValueError(f"DetectorConfig.refractory_steps: must be >= 0, got "
                             f"{self.refractory_steps}")
        if not 0.0 <= self.release <= 1.0:
            raise ValueError(f"DetectorConfig.release: must be in [0, 1], got {self.release}")
        if self.hold_steps < 0:
            raise ValueError(f"DetectorConfig.hold_steps: must be >= 0, got {self.hold_steps}")
        if self.smooth not in SMOOTH_MODES:
            raise ValueError(f"DetectorConfig.smooth: one of {SMOOTH_MODES}, got {self.smooth!r}")

    @classmethod
    def from_ms(cls, hop_ms: float, threshold: float = APP_THRESHOLD,
                smooth_ms: float = APP_SMOOTH_MS, refractory_ms: float = 800.0,
                release: float = 0.5, smooth: str = APP_SMOOTH,
                hold_ms: float = 0.0) -> DetectorConfig:
        """Window and refractory period given in milliseconds of a front end's hop; the
        defaults are the apps' (APP_*)."""
        if hop_ms <= 0:
            raise ValueError(f"hop_ms must be > 0, got {hop_ms}")
        return cls(threshold=threshold, smooth_steps=max(1, int(round(smooth_ms / hop_ms))),
                   refractory_steps=max(0, int(round(refractory_ms / hop_ms))), release=release,
                   smooth=smooth, hold_steps=max(0, int(round(hold_ms / hop_ms))))


@dataclass(frozen=True)
class Detection:
    step: int  # model step that fired, counted from the stream's start
    label: str
    confidence: float  # smoothed posterior of the label at that step


def softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


class Detector:
    """Streaming keyword detector over logits rows (T, K) of one stream."""

    def __init__(self, labels: tuple, cfg: DetectorConfig = DetectorConfig()):
        self.labels, self.cfg = tuple(labels), cfg
        self.K = len(self.labels)
        if self.K < 1:
            raise ValueError("Detector: need at least one label")
        self.keywords = np.array([lab not in cfg.fillers for lab in self.labels])  # (K,)
        self.reset()

    def reset(self) -> None:
        W = self.cfg.smooth_steps
        self._hist = np.zeros((W - 1, self.K))  # (W-1, K) the last posteriors (or logits)
        self._armed = np.ones(self.K, bool)  # (K,)
        self._last = None  # step of the last detection
        self._pending = None  # (k, confidence, deadline step) of an open decision
        self.steps = 0

    def smooth(self, logits: np.ndarray) -> np.ndarray:
        """Smoothed posteriors (T, K) of new logits rows; advances the window."""
        z = np.asarray(logits)
        if z.ndim != 2 or z.shape[1] != self.K:
            raise ValueError(f"Detector: logits of shape {z.shape}, expected (T, {self.K})")
        W, by_logits = self.cfg.smooth_steps, self.cfg.smooth == "logits"
        if not len(z):  # a chunk that completed no step: nothing to smooth, window unchanged
            return np.zeros((0, self.K))
        new = np.asarray(z, np.float64) if by_logits else softmax(z)  # (T, K)
        p = np.concatenate([self._hist, new])  # (W-1+T, K)
        win = np.lib.stride_tricks.sliding_window_view(p, W, axis=0)  # (T, K, W)
        out = win.sum(axis=-1) / W  # (T, K) each row summed alone: chunking never matters
        self._hist = p[len(p) - (W - 1):] if W > 1 else p[:0]
        return softmax(out) if by_logits else out

    def update(self, logits: np.ndarray) -> tuple[list[Detection], np.ndarray]:
        """Detections among new logits rows (T, K), and their smoothed posteriors (T, K)."""
        sm = self.smooth(logits)  # (T, K)
        cfg, out = self.cfg, []
        for t, row in enumerate(sm):
            step = self.steps + t
            self._armed |= row < cfg.release * cfg.threshold
            if self._pending is not None:  # an open decision: keep the best keyword
                k, conf, deadline = self._pending
                best = int(np.argmax(np.where(self.keywords, row, -1.0)))
                if row[best] >= cfg.threshold and row[best] > conf:
                    k, conf = best, float(row[best])
                self._pending = (k, conf, deadline)
                if step >= deadline:
                    out.append(self._fire(k, conf, step))
                continue
            ok = self.keywords & self._armed & (row >= cfg.threshold)  # (K,)
            if not ok.any():
                continue
            if self._last is not None and step - self._last < cfg.refractory_steps:
                continue
            k = int(np.argmax(np.where(ok, row, -1.0)))
            if cfg.hold_steps:
                self._pending = (k, float(row[k]), step + cfg.hold_steps)
                continue
            out.append(self._fire(k, float(row[k]), step))
        self.steps += len(sm)
        return out, sm

    def _fire(self, k: int, conf: float, step: int) -> Detection:
        self._armed[k] = False
        self._last, self._pending = step, None
        return Detection(step=step, label=self.labels[k], confidence=conf)
