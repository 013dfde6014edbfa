"""Streaming ECG (DESIGN section 6): causal front end and beat events; the online R-peak
detector is `rpeak.py`.

numpy and scipy only: this module ships with the runtime, and the training code
(`qs4d.models.data.ecg_data`) runs `EcgFrontend` on whole records, so a model is trained on
exactly the features the device computes.

Glossary: L samples in a chunk or record (at fs), T feature rows (at fs / decimate),
F features (1), K classes, k decimation factor.

Front end, per sample (all causal, state carried across chunks):
    y = sosfilt(butter(2, band_hz, "bandpass"), x)            zi starts at steady state of x[0]
    y = sosfilt(butter(4, 0.8 * fs / (2k)), y); keep sample n if n % k == k - 1     (k > 1)
    feature = (y - norm_mean) / norm_std                       (norm optional)
Normalization convention: features are the band-passed signal in millivolts (gain 1 / mV),
so a typical QRS is about 1; `norm_mean` / `norm_std` of the FrontendConfig, if given, are
applied after it. Feature row j ends at raw sample j*k + k - 1.

Every stage is a recursive filter run sample by sample with its state carried, a fixed-length
sliding max, or per-candidate logic in time order, so any cut of a record into chunks gives
the same bits as one call on the whole record.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy.signal import butter, sosfilt, sosfilt_zi

from .ecg_common import F64, _check_state, _samples
from .errors import InputError
from .rpeak import RPeakDetector
from .spec import FrontendConfig, SpecError

log = logging.getLogger(__name__)

AAMI_CLASSES = ("N", "S", "V", "F", "Q")
F32 = np.float32


def ecg_frontend_config(fs: int = 360, decimate: int = 1,
                        band_hz: tuple = (0.5, 40.0)) -> FrontendConfig:
    """The house ECG front end: band-pass 0.5-40 Hz in mV, optional decimation."""
    return FrontendConfig(kind="ecg", sample_rate=fs, band_hz=tuple(band_hz), decimate=decimate)




RHYTHM_FEATURES = 9  # latest beat's prematurity, the previous one's, shape distance, size, its
# long-term prematurity; the previous beat's shape distance, size and long-term prematurity;
# the time since the latest beat
RR_HISTORY = 8  # RR intervals whose median is a beat's reference rhythm
RR_LONG = 64  # RR intervals whose mean is a beat's long-term reference (pauses included)
PREMATURITY_RANGE = (-0.9, 2.0)
BEAT_HALF_S = 0.1  # a beat's shape: the band-passed signal within +-0.1 s of its R peak
TEMPLATE_RATE = 0.1  # the patient's template: running mean of beats at normal timing
NORMAL_TIMING = 0.1  # |prematurity| <= this: a beat that may update the template
LOOKBACK_S = 4.0  # samples a beat's shape may reach back from its decision sample
DECISION_DELAY_S = 0.25  # beat_wait_s = 0: a beat's class is read this long after its R peak
MAX_DECISION_DELAY_S = 0.3  # (training windows and BeatStream read these two, nothing else)
ELAPSED_MAX = 4.0  # the time since the latest beat, in reference RR intervals, is clipped here


class EcgFrontend:
    """Causal band-pass, optional decimation and normalization of one ECG source.

    With `cfg.rhythm` = 5, the front end also runs the online R-peak detector and appends five
    features of the latest beat the detector has decided by that row's last sample (with 2 or
    4, the first two or four):
    - p, its prematurity RR / median(previous 8 RR) - 1 (clipped to [-0.9, 2]; p < 0: early,
      p > 0: after a pause), and the previous beat's p;
    - d, how far its shape is from the patient's own template: RMS(seg - template) /
      RMS(template), clipped to [0, 3], where seg is the band-passed signal within 0.1 s of
      its R peak (mean removed; only samples up to the decision sample) and the template the
      running mean (rate 0.1) of earlier beats at normal timing (|p| <= 0.1);
    - a, its size against the template's: max|seg| / max|template| - 1, clipped to [-1, 3];
    - q, its long-term prematurity RR / mean(previous 64 RR) - 1 (clipped as p). The median of
      8 follows a rhythm of frequent ectopics or pauses, so that an ectopic beat among many
      looks on time; the mean over a minute, pauses and all, keeps it early.
    With `cfg.rhythm` = 9, also the beat before it's d, a and q, and e, the time from the
    latest beat's R peak to the row's last sample in units of the median of the last 8 RR
    (1 s before there is one), clipped to [0, 4]: it tells a row read when the next beat is
    decided (e small; p is then the following RR of the beat being classified, and the
    "previous" features are that beat's) from a row read after a pause (e large).
    A patient's bundle-branch-block beats then look like their template, an ectopic beat does
    not. Values are 0 until there is a beat (and a template). Rows only see beats decided by
    their own last sample (the detector's decision sample), so the features are causal and
    the same for any cut into chunks. `peaks` holds the R peaks the latest `process` call
    decided.
    """

    def __init__(self, cfg: FrontendConfig):
        if cfg.kind != "ecg":
            raise SpecError(f"EcgFrontend: FrontendConfig.kind must be 'ecg', got {cfg.kind!r}")
        fs, k = cfg.sample_rate, cfg.decimate
        lo, hi = cfg.band_hz
        if not 0 < lo < hi < fs / 2:
            raise SpecError(f"FrontendConfig.band_hz: need 0 < low < high < fs/2 = {fs / 2}, "
                            f"got {cfg.band_hz}")
        self.cfg, self.k = cfg, k
        self.F = 1 + cfg.rhythm  # rhythm: 0, 2 (prematurity), 4 (and shape), 5 (and long-term),
        # 9 (and the previous beat's, and the elapsed time)
        self.sos = butter(2, [lo, hi], "bandpass", fs=fs, output="sos")
        if k > 1:
            aa = butter(4, 0.8 * fs / (2 * k), "lowpass", fs=fs, output="sos")
            self.sos = np.concatenate([self.sos, aa])
        self.mean = np.asarray(cfg.norm_mean or (0.0,), F64)  # (1,) or (F,)
        self.std = np.asarray(cfg.norm_std or (1.0,), F64)  # (1,) or (F,)
        shapes = {(1,), (self.F,)}
        if (self.mean.shape not in shapes or self.std.shape not in shapes
                or not np.all(self.std > 0)):
            raise SpecError(f"FrontendConfig.norm_mean/norm_std: 1 or {self.F} values each "
                            f"(std > 0), got {cfg.norm_mean}, {cfg.norm_std}")
        self.detector = RPeakDetector(fs) if cfg.rhythm else None
        self.half = int(round(BEAT_HALF_S * fs))  # samples each side of R
        self.lookback = int(round(LOOKBACK_S * fs))
        self.peaks: list[int] = []
        self.timed: list[tuple[int, int]] = []
        self.reset()

    def reset(self) -> None:
        self._zi = np.zeros((len(self.sos), 2))  # (sections, 2)
        self._n = np.int64(0)  # samples seen
        self._started = False
        self.peaks, self.timed = [], []
        if self.detector is not None:
            self.detector.reset()
            self._rhythm = {"last_r": np.int64(-1), "rr": np.zeros(RR_HISTORY),
                            "rr_long": np.zeros(RR_LONG), "cur": np.zeros(RHYTHM_FEATURES),
                            "buf": np.zeros(self.lookback),  # band-passed [n - lookback, n)
                            "tpl": np.zeros(2 * self.half + 1), "has_tpl": np.bool_(False)}

    def _shape(self, full: np.ndarray, start: int, r: int, t: int) -> tuple:
        """(d, a, segment (2h + 1,)) of the beat at R sample r decided at sample t, from full
        (the band-passed signal from global sample `start` on); updates nothing."""
        st, h = self._rhythm, self.half
        lo = max(r - h, t - self.lookback + 1, 0, start)  # the samples it may use
        hi = max(min(r + h, t), lo)
        seg = full[lo - start: hi - start + 1]
        seg = np.pad(seg, (lo - (r - h), (r + h) - hi), mode="edge")  # (2h + 1,)
        seg = seg - seg.mean()
        if not st["has_tpl"]:
            return 0.0, 0.0, seg
        tpl = st["tpl"]
        ref = max(float(np.sqrt(np.mean(tpl * tpl))), 0.01)
        d = float(np.sqrt(np.mean((seg - tpl) ** 2))) / ref
        a = float(np.abs(seg).max()) / max(float(np.abs(tpl).max()), 0.01) - 1.0
        return float(np.clip(d, 0.0, 3.0)), float(np.clip(a, -1.0, 3.0)), seg

    def _rhythm_rows(self, beats: list, rows_at: np.ndarray, y: np.ndarray,
                     n0: int) -> np.ndarray:
        """Rhythm features (T, 9) of the rows ending at samples rows_at (T,), given the beats
        (R, decision sample) decided in this chunk and its band-passed samples y (L,) from
        global sample n0; updates the rhythm state."""
        st = self._rhythm
        start = n0 - self.lookback
        full = np.concatenate([st["buf"], y])  # global samples [start, n0 + L)
        ts, vals = [], [st["cur"].copy()]  # vals[0]: the features before this chunk's beats
        last, ref = [int(st["last_r"])], [_rr_ref(st["rr"], self.cfg.sample_rate)]
        for r, t in beats:
            p = q = 0.0
            if st["last_r"] >= 0:
                rr = float(r - st["last_r"])
                hist = st["rr"][st["rr"] > 0]
                if len(hist):
                    p = float(np.clip(rr / np.median(hist) - 1.0, *PREMATURITY_RANGE))
                    long = st["rr_long"][st["rr_long"] > 0]
                    q = float(np.clip(rr / np.mean(long) - 1.0, *PREMATURITY_RANGE))
                st["rr"] = np.concatenate([st["rr"][1:], [rr]])
                st["rr_long"] = np.concatenate([st["rr_long"][1:], [rr]])
            st["last_r"] = np.int64(r)
            d, a, seg = self._shape(full, start, r, t)
            if not st["has_tpl"]:
                st["tpl"], st["has_tpl"] = seg, np.bool_(True)
            elif abs(p) <= NORMAL_TIMING:
                st["tpl"] = (1 - TEMPLATE_RATE) * st["tpl"] + TEMPLATE_RATE * seg
            ts.append(t)
            c = st["cur"]
            vals.append(np.array([p, c[0], d, a, q, c[2], c[3], c[4], 0.0]))
            st["cur"] = vals[-1]
            last.append(int(r))
            ref.append(_rr_ref(st["rr"], self.cfg.sample_rate))
        st["buf"] = full[-self.lookback:].copy()
        idx = np.searchsorted(np.asarray(ts, np.int64), rows_at, side="right")  # (T,)
        out = np.asarray(vals)[idx]  # (T, 9)
        lr, rf = np.asarray(last, F64)[idx], np.asarray(ref, F64)[idx]  # (T,), (T,)
        out[:, 8] = np.where(lr >= 0, np.clip((rows_at - lr) / rf, 0.0, ELAPSED_MAX), 0.0)
        return out

    def process(self, chunk: np.ndarray) -> np.ndarray:
        """Samples (L,) in mV -> features (T, F) float32, T = rows completed by this chunk."""
        x = _samples(chunk, "EcgFrontend.process")  # (L,)
        self.peaks = []
        if not len(x):
            return np.zeros((0, self.F), F32)
        if not self._started:
            self._zi = sosfilt_zi(self.sos) * x[0]
            self._started = True
        y, self._zi = sosfilt(self.sos, x, zi=self._zi)  # (L,)
        n = self._n + np.arange(len(x))  # (L,) global sample index
        keep = n % self.k == self.k - 1  # (L,)
        feats = y[keep][:, None]  # (T, 1)
        if self.detector is not None:
            beats = self.detector.process_timed(x)
            self.peaks, self.timed = [r for r, _ in beats], beats
            rows = self._rhythm_rows(beats, n[keep], y, int(self._n))[:, :self.cfg.rhythm]
            feats = np.concatenate([feats, rows], axis=1)  # (T, 1 + rhythm)
        self._n += len(x)
        return ((feats - self.mean) / self.std).astype(F32)  # (T, F)

    def features(self, signal: np.ndarray) -> np.ndarray:
        """Features (T, F) of a whole record from a fresh state; this stream is untouched."""
        return EcgFrontend(self.cfg).process(signal)

    def state(self) -> dict:
        out = {"zi": self._zi.copy(), "n": np.int64(self._n), "started": np.bool_(self._started)}
        if self.detector is not None:
            out.update({f"detector.{k}": v for k, v in self.detector.state().items()})
            out.update({f"rhythm.{k}": np.array(v, copy=True) for k, v in self._rhythm.items()})
        return out

    def restore(self, state: dict) -> None:
        if not isinstance(state, dict):
            raise ValueError(f"EcgFrontend.restore: expected a dict, got {type(state).__name__}")
        own = {k: v for k, v in state.items() if not k.startswith("detector.")}
        like = {k: v for k, v in self.state().items() if not k.startswith("detector.")}
        s = _check_state(own, like, "EcgFrontend")
        if self.detector is not None:
            self.detector.restore({k[len("detector."):]: v for k, v in state.items()
                                   if k.startswith("detector.")})
            self._rhythm = {"last_r": np.int64(s["rhythm.last_r"]), "rr": s["rhythm.rr"],
                            "rr_long": s["rhythm.rr_long"], "cur": s["rhythm.cur"],
                            "buf": s["rhythm.buf"],
                            "tpl": s["rhythm.tpl"], "has_tpl": np.bool_(s["rhythm.has_tpl"])}
        elif len(own) != len(state):
            raise ValueError("EcgFrontend.restore: detector state given to a front end "
                             "without rhythm features")
        self._zi, self._n, self._started = s["zi"], np.int64(s["n"]), bool(s["started"])


def _rr_ref(rr: np.ndarray, fs: int) -> float:
    """The reference RR (samples) of the elapsed-time feature: median of the last 8 RR, or
    1 s before there is one."""
    hist = rr[rr > 0]
    return float(np.median(hist)) if len(hist) else float(fs)


@dataclass(frozen=True)
class BeatEvent:
    """One classified beat: its R peak (sample, seconds) and the model's posterior."""

    time_s: float
    sample: int
    label: str
    confidence: float
    probs: np.ndarray  # (K,) float32 softmax of the logits row read at R + decision delay


def softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, F64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(F32)


class BeatStream:
    """Front end + R-peak detector + a step model -> one `BeatEvent` per detected beat.

    `model.accept(features (T, F)) -> logits (T_out, K)` returns one row per completed model
    step, step j being feature row j. A beat at sample r is classified by the row of feature
    j = s // k, and its event is emitted as soon as that row exists:
    - `frontend.beat_wait_s` = 0: s = r + delay, delay = round(decision_delay_s * fs), i.e. at
      most decision_delay_s + (k - 1) / fs after the R peak (beats found late by search-back,
      or in the detector's first 2 s, as soon as they are found);
    - `frontend.beat_wait_s` > 0: s is the sample at which the detector decides the next beat
      (so the row's rhythm features hold the beat's following RR interval), at most
      beat_wait_s after the R peak: `rpeak.decision_samples`, which training uses too.
    The model's own stream state is its owner's to save; `state()` covers the rest.
    """

    def __init__(self, model, frontend: FrontendConfig, labels: tuple = AAMI_CLASSES,
                 decision_delay_s: float = DECISION_DELAY_S, search_back: bool = True):
        if not 0.0 <= decision_delay_s <= MAX_DECISION_DELAY_S:
            raise ValueError(f"BeatStream: decision_delay_s must be in [0, "
                             f"{MAX_DECISION_DELAY_S}], got "
                             f"{decision_delay_s}")
        self.model, self.labels = model, tuple(labels)
        self.frontend = EcgFrontend(frontend)
        self._shared = self.frontend.detector is not None and search_back
        self.detector = (self.frontend.detector if self._shared
                         else RPeakDetector(frontend.sample_rate, search_back=search_back))
        self.fs, self.k = frontend.sample_rate, frontend.decimate
        self.delay = int(round(decision_delay_s * self.fs))
        self.wait = int(round(float(getattr(frontend, "beat_wait_s", 0.0)) * self.fs))
        if self.wait and not self._shared:
            raise ValueError("BeatStream: waiting for the next beat (beat_wait_s > 0) needs the "
                             "front end's own detector, with search-back")
        self.keep = int(np.ceil(8.0 * self.fs / self.k))  # logits rows kept for late beats
        self.reset()

    def reset(self) -> None:
        self.frontend.reset()
        self.detector.reset()
        self._pending = np.zeros(0, np.int64)  # (b,) R samples waiting for their logits row
        self._at = np.zeros(0, np.int64)  # (b,) with beat_wait_s: the sample each is read at
        # (-1: not known yet); _decided (b,) the sample at which the detector decided each
        self._decided = np.zeros(0, np.int64)
        self._seen = np.int64(0)  # samples received
        self._ring = np.zeros((0, len(self.labels)), F32)  # (<= keep, K) latest logits rows
        self._rows = np.int64(0)  # logits rows received

    def accept(self, chunk: np.ndarray) -> list[BeatEvent]:
        """Samples (L,) in mV -> the beat events that became decidable."""
        x = _samples(chunk, "BeatStream.accept")  # (L,)
        feats = self.frontend.process(x)  # (T, 1)
        # a rhythm front end runs the same detector: use its beats rather than a second copy
        peaks = self.frontend.peaks if self._shared else self.detector.process(x)
        ring = self._ring  # (R, K) rows [self._rows - R, self._rows)
        if len(feats):
            logits = np.asarray(self.model.accept(feats), F32)  # (T_out, K)
            if logits.ndim != 2 or logits.shape[1] != len(self.labels):
                raise ValueError(f"BeatStream: model returned logits of shape {logits.shape}, "
                                 f"expected (T, {len(self.labels)})")
            ring = np.concatenate([ring, logits])  # (R + T_out, K)
            self._rows += len(logits)
        self._ring = ring[-self.keep:]
        self._seen += len(x)
        if self.wait:
            rows = self._next_beat_rows()  # (b,) -1: not known yet
            ready = (rows >= 0) & (rows < self._rows)
        else:
            self._pending = np.concatenate([self._pending, np.asarray(peaks, np.int64)])
            rows = (self._pending + self.delay) // self.k  # (b,) logits row of each beat
            ready = rows < self._rows
        r_ready = self._pending[ready]  # (e,) R samples
        idx = rows[ready] - self._rows + len(ring)  # (e,) their rows in the ring
        for r in r_ready[idx < 0]:
            log.warning("BeatStream: beat at sample %d found after its logits row left the "
                        "%d-row buffer; dropped", r, self.keep)
        r_ready, idx = r_ready[idx >= 0], idx[idx >= 0]
        probs = softmax(ring[idx])  # (e, K), all at once
        best = np.argmax(probs, axis=1)  # (e,)
        events = [BeatEvent(time_s=float(r) / self.fs, sample=int(r), label=self.labels[c],
                            confidence=float(p[c]), probs=p)
                  for r, c, p in zip(r_ready.tolist(), best.tolist(), probs)]
        self._pending = self._pending[~ready]
        if self.wait:
            self._at, self._decided = self._at[~ready], self._decided[~ready]
        return events

    def _next_beat_rows(self) -> np.ndarray:
        """With beat_wait_s: add this chunk's detected beats to the pending ones, settle the
        sample each pending beat is read at (`rpeak.decision_samples`, streamed) and return their
        logits rows (b,), -1 where not known yet."""
        for r, t in self.frontend.timed:  # in decision order
            open_ = (self._at < 0) & (self._pending < r)
            self._at[open_] = np.minimum(t, self._pending[open_] + self.wait)
            self._pending = np.append(self._pending, np.int64(r))
            self._at = np.append(self._at, np.int64(-1))
            self._decided = np.append(self._decided, np.int64(t))
        late = (self._at < 0) & (self._pending + self.wait <= self._seen - 1)
        self._at[late] = self._pending[late] + self.wait
        at = np.where(self._at >= 0, np.maximum(self._at, self._decided), -1)
        return np.where(at >= 0, at // self.k, -1)

    def state(self) -> dict:
        out = {f"frontend.{k}": v for k, v in self.frontend.state().items()}
        out.update({f"detector.{k}": v for k, v in self.detector.state().items()})
        out.update({"pending": self._pending.copy(), "ring": self._ring.copy(),
                    "rows": np.int64(self._rows), "at": self._at.copy(),
                    "decided": self._decided.copy(), "seen": np.int64(self._seen)})
        return out

    def restore(self, state: dict) -> None:
        if not isinstance(state, dict):
            raise ValueError(f"BeatStream.restore: expected a dict, got {type(state).__name__}")
        part = lambda p: {k[len(p):]: v for k, v in state.items() if k.startswith(p)}  # noqa: E731
        own = {k: v for k, v in state.items() if "." not in k}
        s = _check_state(own, {"pending": self._pending, "ring": self._ring,
                               "rows": np.int64(0), "at": self._at, "decided": self._decided,
                               "seen": np.int64(0)}, "BeatStream")
        if not len(s["at"]) == len(s["decided"]) == (len(s["pending"]) if self.wait else 0):
            raise InputError("BeatStream.restore: at and decided must have one entry per "
                             "pending beat (none without beat_wait_s)")
        self.frontend.restore(part("frontend."))
        self.detector.restore(part("detector."))
        self._pending, self._ring, self._rows = s["pending"], s["ring"], np.int64(s["rows"])
        self._at, self._decided, self._seen = s["at"], s["decided"], np.int64(s["seen"])
