"""Beat windows for training a streaming ECG beat classifier.

A record is run once, from its first sample, through the runtime's `EcgFrontend` (causal
band-pass, optional decimation, normalization: the device's exact features). For a beat with
R peak at sample r, its window is the L feature rows that end at the row the runtime reads:

    j_end = (r + round(decision_delay_s * fs)) // k            (BeatStream's row for the beat)
    window = features[j_end - L + 1 : j_end + 1, :]            L = round((context_s +
                                                                  decision_delay_s) * fs / k)

so the window sees `context_s` (default 2.5 s: the previous RR intervals) before the R peak
and `decision_delay_s` (default 0.25 s, at most 0.3 s) after it. Beats whose window would
start before the record or end after it are skipped.

With `frontend.beat_wait_s` > 0 (the runtime reads a beat when the detector decides the next
one), the window ends where BeatStream reads: the front end's own detector runs over the
record, each annotated beat is matched to the detected R peak within 150 ms (beats the
detector misses get no event at runtime and no window), and

    j_end = decision_samples(detected beats, wait)[match] // k       L = round((context_s +
                                                                         beat_wait_s) * fs / k) Labels are AAMI class indices in the
order N, S, V, F, Q. Features are band-passed millivolts (gain 1 per mV, a typical QRS is
about 1) unless the FrontendConfig carries norm_mean / norm_std, applied identically by the
runtime.

Glossary: n beats, L window length (feature rows), T feature rows of a record, k decimation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qs4d.runtime.ecg import (
    DECISION_DELAY_S,
    MAX_DECISION_DELAY_S,
    EcgFrontend,
    ecg_frontend_config,
)
from qs4d.runtime.rpeak import decision_samples
from qs4d.runtime.spec import FrontendConfig

from .wfdb_io import FS, mitbih_split, read_record, record_names

SPLIT_FILE = "splits.json"


@dataclass(frozen=True)
class WindowConfig:
    frontend: FrontendConfig = field(default_factory=ecg_frontend_config)
    context_s: float = 2.5
    decision_delay_s: float = DECISION_DELAY_S

    def __post_init__(self):
        if self.frontend.kind != "ecg":
            raise ValueError(f"WindowConfig.frontend.kind must be 'ecg', got "
                             f"{self.frontend.kind!r}")
        if not 0.0 <= self.decision_delay_s <= MAX_DECISION_DELAY_S:
            raise ValueError(f"WindowConfig.decision_delay_s must be in [0, "
                             f"{MAX_DECISION_DELAY_S}], got "
                             f"{self.decision_delay_s}")
        if not self.context_s > 0:
            raise ValueError(f"WindowConfig.context_s must be > 0, got {self.context_s}")

    @property
    def length(self) -> int:
        """L, feature rows per window."""
        fs, k = self.frontend.sample_rate, self.frontend.decimate
        after = self.frontend.beat_wait_s or self.decision_delay_s
        return int(round((self.context_s + after) * fs / k))


MATCH_S = 0.15  # an annotated beat's detected R peak lies within this of it


def beat_windows(features: np.ndarray, r_peaks: np.ndarray, cfg: WindowConfig,
                 detected: list | None = None):
    """Window end rows (n',) and kept beat indices (n',) of r_peaks (n,) in features (T, F).
    With beat_wait_s, `detected` is the front end's detector output over the record: (R peak,
    decision sample) in decision order."""
    fs, k = cfg.frontend.sample_rate, cfg.frontend.decimate
    r_peaks = np.asarray(r_peaks, np.int64)
    if cfg.frontend.beat_wait_s:
        at = decision_samples(detected or [], int(round(cfg.frontend.beat_wait_s * fs)))
        det = np.asarray([r for r, _ in detected or []], np.int64)  # (m,) in decision order
        order = np.argsort(det, kind="stable")
        pos = np.clip(np.searchsorted(det[order], r_peaks), 1, max(len(det) - 1, 1))  # (n,)
        end = np.full(len(r_peaks), -1, np.int64)
        if len(det):
            cand = order[np.stack([pos - 1, np.minimum(pos, len(det) - 1)])]  # (2, n)
            near = cand[np.argmin(np.abs(det[cand] - r_peaks), axis=0), np.arange(len(r_peaks))]
            hit = np.abs(det[near] - r_peaks) <= round(MATCH_S * fs)  # (n,)
            end[hit] = at[near[hit]] // k
    else:
        end = (r_peaks + int(round(cfg.decision_delay_s * fs))) // k  # (n,)
    keep = np.flatnonzero((end - cfg.length + 1 >= 0) & (end < len(features)))  # (n',)
    return end[keep], keep


@dataclass
class BeatWindows:
    """Windows of many records, cut lazily from each record's features."""

    cfg: WindowConfig
    names: list  # record names
    features: list  # per record (T_i, F) float32
    record: np.ndarray  # (n,) int64 index into names
    end: np.ndarray  # (n,) int64 last feature row of each window
    y: np.ndarray  # (n,) int64 AAMI class index
    r_peak: np.ndarray  # (n,) int64 R sample of each beat

    def __len__(self) -> int:
        return len(self.y)

    def x(self, idx: np.ndarray | None = None) -> np.ndarray:
        """Windows (n, L, F) float32 of the beats `idx` (all beats when None)."""
        idx = np.arange(len(self.y)) if idx is None else np.asarray(idx, np.int64)
        L = self.cfg.length
        F = self.features[0].shape[1] if self.features else 1
        out = np.empty((len(idx), L, F), np.float32)  # (n, L, F)
        for i, b in enumerate(idx):
            e = self.end[b]
            out[i] = self.features[self.record[b]][e - L + 1: e + 1]
        return out

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """X (n, L, F) float32, y (n,) int64, record id (n,) int64 index into `names`."""
        return self.x(), self.y.copy(), self.record.copy()

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.y, minlength=5)


def windows_from_arrays(items: list, cfg: WindowConfig) -> BeatWindows:
    """Windows of records given as (name, signal (L,) mV at fs, r_peaks (n,), labels (n,))."""
    names, feats, rec, end, y, rp = [], [], [], [], [], []
    for i, (name, signal, r_peaks, labels) in enumerate(items):
        fe = EcgFrontend(cfg.frontend)
        f = fe.process(signal)  # (T, F)
        e, keep = beat_windows(f, r_peaks, cfg, fe.timed)
        names.append(name)
        feats.append(f)
        rec.append(np.full(len(e), i, np.int64))
        end.append(e)
        y.append(np.asarray(labels, np.int64)[keep])
        rp.append(np.asarray(r_peaks, np.int64)[keep])
    cat = lambda a: np.concatenate(a) if a else np.zeros(0, np.int64)  # noqa: E731
    return BeatWindows(cfg, names, feats, cat(rec), cat(end), cat(y), cat(rp))


def split_records(data_dir: str | Path, split: str) -> list[str]:
    """Record names of `split`: from data_dir/splits.json (train / validation / test) or,
    for an MIT-BIH folder without one, de Chazal's 'DS1' / 'DS2', and 'train' (DS1 less its
    patient-held-out 'validation' records) and 'test' (DS2)."""
    d = Path(data_dir)
    sf = d / SPLIT_FILE
    if sf.exists():
        meta = json.loads(sf.read_text())
        if split not in meta or not isinstance(meta[split], list):
            raise ValueError(f"{sf}: no split {split!r}; have train, validation, test")
        return list(meta[split])
    names = mitbih_split(split)
    have = set(record_names(d))
    missing = [n for n in names if n not in have]
    if missing:
        raise FileNotFoundError(f"{d}: MIT-BIH split {split!r} needs records {missing} "
                                f"(train and validation are DS1, test is DS2)")
    return list(names)


def is_mitbih(data_dir: str | Path) -> bool:
    """True for an MIT-BIH folder (no splits.json): its test split is DS2, which only a
    shipped model's report scores."""
    return not (Path(data_dir) / SPLIT_FILE).exists()


def split_items(data_dir: str | Path, split: str, lead: str = "MLII") -> list:
    """(name, signal (L,) mV at 360 Hz, r_peaks (n,), labels (n,)) of every record of split."""
    items = []
    for name in split_records(data_dir, split):
        r = read_record(Path(data_dir) / name, lead=lead, fs=FS)
        items.append((name, r.signal, r.r_peaks, r.labels))
    return items


def load_split(data_dir: str | Path, split: str, cfg: WindowConfig | None = None,
               lead: str = "MLII") -> BeatWindows:
    """Beat windows of every record of `split` in a WFDB folder (simulated or MIT-BIH)."""
    cfg = cfg or WindowConfig()
    if cfg.frontend.sample_rate != FS:
        raise ValueError(f"load_split: records are read at {FS} Hz; the front end says "
                         f"{cfg.frontend.sample_rate}")
    return windows_from_arrays(split_items(data_dir, split, lead), cfg)


def noisy_copy(signal: np.ndarray, noise: dict, rng: np.random.Generator,
               snr_db: tuple = (3.0, 24.0), gain: tuple = (0.5, 2.0),
               wander_mv: float = 0.5, knot_s: float = 30.0) -> np.ndarray:
    """signal (L,) mV with real noise added and its gain and baseline changed.

    One noise channel of `noise` (read_noise), from a random offset (looped), at an SNR
    (against the signal's RMS) that moves linearly between random values in snr_db every
    knot_s seconds; a log-uniform gain; a slow baseline swing (0.05-0.3 Hz, up to wander_mv).
    """
    L = len(signal)
    keys = sorted(noise)
    nz = noise[keys[rng.integers(len(keys))]]  # (M,)
    idx = (rng.integers(len(nz)) + np.arange(L)) % len(nz)
    n = nz[idx].astype(np.float64)
    n -= n.mean()
    knots = int(np.ceil(L / (knot_s * FS))) + 1
    snr = np.interp(np.arange(L), np.linspace(0, L - 1, knots), rng.uniform(*snr_db, knots))
    p_sig = np.var(signal)
    scale = np.sqrt(p_sig / max(np.var(n), 1e-12) * 10.0 ** (-snr / 10.0))  # (L,)
    t = np.arange(L) / FS
    wander = rng.uniform(0, wander_mv) * np.sin(2 * np.pi * rng.uniform(0.05, 0.3) * t
                                          + rng.uniform(0, 2 * np.pi))
    g = np.exp(rng.uniform(np.log(gain[0]), np.log(gain[1])))
    return (g * (signal + scale * n + wander)).astype(np.float32)
