"""Streaming ECG (DESIGN section 6): causal front end, online R-peak detection, beat events.

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
from scipy.ndimage import maximum_filter1d
from scipy.signal import butter, group_delay, lfilter, sos2tf, sosfilt, sosfilt_zi

from .spec import FrontendConfig, SpecError

log = logging.getLogger(__name__)

AAMI_CLASSES = ("N", "S", "V", "F", "Q")
F32, F64 = np.float32, np.float64


def ecg_frontend_config(fs: int = 360, decimate: int = 1,
                        band_hz: tuple = (0.5, 40.0)) -> FrontendConfig:
    """The house ECG front end: band-pass 0.5-40 Hz in mV, optional decimation."""
    return FrontendConfig(kind="ecg", sample_rate=fs, band_hz=tuple(band_hz), decimate=decimate)


def _samples(x: np.ndarray, what: str) -> np.ndarray:
    """float64 (L,) from a (L,) or (L, 1) float array."""
    x = np.asarray(x)
    if x.ndim == 2 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 1 or not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{what}: expected float samples of shape (L,) or (L, 1), got "
                         f"{x.dtype} {x.shape}")
    return x.astype(F64, copy=False)


def _check_state(state: dict, like: dict, what: str) -> dict:
    if not isinstance(state, dict) or set(state) != set(like):
        got = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{what}.restore: expected keys {sorted(like)}, got {got}")
    out = {}
    for k, ref in like.items():
        v = np.asarray(state[k])
        if v.dtype != ref.dtype or (v.shape != ref.shape and k not in _VAR_SHAPES):
            raise ValueError(f"{what}.restore: {k} must be {ref.dtype} {ref.shape}, got "
                             f"{v.dtype} {v.shape}")
        out[k] = v.copy()
    return out


_VAR_SHAPES = {"queue", "noise", "pending", "ring"}  # state arrays with a variable first axis


class EcgFrontend:
    """Causal band-pass, optional decimation and normalization of one ECG source."""

    def __init__(self, cfg: FrontendConfig):
        if cfg.kind != "ecg":
            raise SpecError(f"EcgFrontend: FrontendConfig.kind must be 'ecg', got {cfg.kind!r}")
        fs, k = cfg.sample_rate, cfg.decimate
        lo, hi = cfg.band_hz
        if not 0 < lo < hi < fs / 2:
            raise SpecError(f"FrontendConfig.band_hz: need 0 < low < high < fs/2 = {fs / 2}, "
                            f"got {cfg.band_hz}")
        self.cfg, self.k = cfg, k
        self.sos = butter(2, [lo, hi], "bandpass", fs=fs, output="sos")
        if k > 1:
            aa = butter(4, 0.8 * fs / (2 * k), "lowpass", fs=fs, output="sos")
            self.sos = np.concatenate([self.sos, aa])
        self.mean = np.asarray(cfg.norm_mean or (0.0,), F64)  # (F,)
        self.std = np.asarray(cfg.norm_std or (1.0,), F64)  # (F,)
        if self.mean.shape != (1,) or self.std.shape != (1,) or not self.std[0] > 0:
            raise SpecError(f"FrontendConfig.norm_mean/norm_std: one value each (std > 0), got "
                            f"{cfg.norm_mean}, {cfg.norm_std}")
        self.reset()

    def reset(self) -> None:
        self._zi = np.zeros((len(self.sos), 2))  # (sections, 2)
        self._n = np.int64(0)  # samples seen
        self._started = False

    def process(self, chunk: np.ndarray) -> np.ndarray:
        """Samples (L,) in mV -> features (T, 1) float32, T = rows completed by this chunk."""
        x = _samples(chunk, "EcgFrontend.process")  # (L,)
        if not len(x):
            return np.zeros((0, 1), F32)
        if not self._started:
            self._zi = sosfilt_zi(self.sos) * x[0]
            self._started = True
        y, self._zi = sosfilt(self.sos, x, zi=self._zi)  # (L,)
        n = self._n + np.arange(len(x))  # (L,) global sample index
        y = y[n % self.k == self.k - 1]  # (T,)
        self._n += len(x)
        return ((y[:, None] - self.mean) / self.std).astype(F32)  # (T, 1)

    def features(self, signal: np.ndarray) -> np.ndarray:
        """Features (T, 1) of a whole record from a fresh state; this stream is untouched."""
        return EcgFrontend(self.cfg).process(signal)

    def state(self) -> dict:
        return {"zi": self._zi.copy(), "n": np.int64(self._n), "started": np.bool_(self._started)}

    def restore(self, state: dict) -> None:
        s = _check_state(state, self.state(), "EcgFrontend")
        self._zi, self._n, self._started = s["zi"], np.int64(s["n"]), bool(s["started"])


class RPeakDetector:
    """Online Pan-Tompkins R-peak detection at fs, with bounded delay.

    QRS band-pass 5-15 Hz -> 5-point derivative -> square -> 150 ms moving-window integral
    (MWI). A sample of the MWI is a candidate when it exceeds the previous 200 ms and is not
    exceeded in the next `confirm_s`; it is decided at that moment (the detection delay):
    QRS if above THR1 = NPK + 0.25 (SPK - NPK), outside the 200 ms refractory period, and,
    within 360 ms of the last QRS, with a slope at least half of that QRS's (else a T wave).
    SPK and NPK are running estimates of signal and noise peaks (initialized on the first 2 s).
    Search-back: when no QRS came within 1.66 mean RR, the largest noise candidate above
    THR1 / 2 is taken. Delay: a QRS is reported `confirm_s` after its MWI peak, about
    110-170 ms after the R peak; only search-back beats (`n_search_back`) and beats in the
    first 2 s (reported at 2 s, once the thresholds are initialized) come later.
    A QRS is reported at the extremum of |x - median over the window| in the window
    [MWI peak - 220 ms, MWI peak - 20 ms], x the 40 Hz low-passed signal, shifted back by that
    filter's group delay. A causal 5-sample median filter before everything removes pacing
    spikes.
    """

    def __init__(self, fs: float = 360.0, search_back: bool = True, confirm_s: float = 0.03):
        if not fs >= 100:
            raise ValueError(f"RPeakDetector: fs must be >= 100 Hz, got {fs}")
        self.fs, self.search_back = float(fs), search_back
        r = lambda s: int(round(s * fs))  # noqa: E731
        self.sos_qrs = butter(2, [5.0, 15.0], "bandpass", fs=fs, output="sos")
        self.sos_ref = butter(2, 40.0, "lowpass", fs=fs, output="sos")
        self.b_der = np.array([2.0, 1.0, 0.0, -1.0, -2.0]) * (fs / 8.0)
        self.w_mwi = r(0.15)
        self.b_mwi = np.full(self.w_mwi, 1.0 / self.w_mwi)
        self.before, self.after = r(0.2), r(confirm_s)  # candidate: max over [i-before, i+after]
        self.refr, self.t_wave, self.init_len = r(0.2), r(0.36), r(2.0)
        self.win = (r(0.22), r(0.02))  # R searched in [i - win[0], i - win[1]] of the MWI peak
        b, a = sos2tf(self.sos_ref)
        self.delay = 2 + int(round(float(group_delay((b, a), [12.0], fs=fs)[1][0])))
        self.hist = self.before + self.after + self.win[0] + 1
        self.reset()

    def reset(self) -> None:
        z = lambda n: np.zeros(n)  # noqa: E731
        self._s = {
            "zi_qrs": z((len(self.sos_qrs), 2)), "zi_ref": z((len(self.sos_ref), 2)),
            "raw": z(4), "zi_der": z(4), "zi_mwi": z(self.w_mwi - 1),
            "hist": z((3, self.hist)),  # rows: MWI, reference signal, |derivative|
            "init": z(self.init_len), "queue": z((0, 4)), "noise": z((0, 4)),
            "rr": z(8),  # last RR intervals (samples); 0 = none yet
            # n, next_eval, started, initialized, spk, npk, last_r, last_slope, t_trig, n_late
            "scal": np.array([0, 0, 0, 0, 0, 0, -1e9, 0, -1, 0], F64),
        }

    @property
    def n_search_back(self) -> int:
        """Beats found by search-back so far (reported late)."""
        return int(self._s["scal"][9])

    def state(self) -> dict:
        return {k: v.copy() for k, v in self._s.items()}

    def restore(self, state: dict) -> None:
        self._s = _check_state(state, self._s, "RPeakDetector")

    def _filter(self, x: np.ndarray) -> np.ndarray:
        """(3, L): MWI, 40 Hz low-passed reference and |derivative| of samples x (L,)."""
        s = self._s
        if not s["scal"][2]:
            s["raw"][:] = x[0]
            s["zi_qrs"] = sosfilt_zi(self.sos_qrs) * x[0]
            s["zi_ref"] = sosfilt_zi(self.sos_ref) * x[0]
            s["scal"][2] = 1
        # causal median of 5 (2 samples delay): removes pacing spikes, keeps the QRS
        raw = np.concatenate([s["raw"], x])  # (4 + L,)
        s["raw"] = raw[-4:].copy()
        win = np.lib.stride_tricks.sliding_window_view(raw, 5)  # (L, 5)
        x = np.partition(win, 2, axis=1)[:, 2]  # (L,) the middle one: np.median's value
        q, s["zi_qrs"] = sosfilt(self.sos_qrs, x, zi=s["zi_qrs"])  # (L,)
        ref, s["zi_ref"] = sosfilt(self.sos_ref, x, zi=s["zi_ref"])  # (L,)
        d, s["zi_der"] = lfilter(self.b_der, [1.0], q, zi=s["zi_der"])  # (L,)
        m, s["zi_mwi"] = lfilter(self.b_mwi, [1.0], d * d, zi=s["zi_mwi"])  # (L,)
        return np.stack([m, ref, np.abs(d)])  # (3, L)

    def _candidates(self, buf: np.ndarray, n0: int) -> np.ndarray:
        """New candidates (c, 4) [mwi index, peak, R sample, slope]; buf covers [n0-hist, n)."""
        s, (a, b) = self._s, (self.before, self.after)
        n = n0 + buf.shape[1] - self.hist
        lo, hi = int(s["scal"][1]), n - b  # global positions evaluated now: [lo, hi)
        s["scal"][1] = max(lo, hi)
        if hi <= lo:
            return np.zeros((0, 4))
        m, off = buf[0], n0 - self.hist  # off: global index of buf[:, 0]
        j = np.arange(lo, hi) - off  # (c,) buffer positions
        left = _sliding_max(m[j[0] - a: j[-1]], a)  # (c,) max over [j-a, j-1]
        right = _sliding_max(m[j[0] + 1: j[-1] + b + 1], b)  # (c,) max over [j+1, j+b]
        j = j[(m[j] > left) & (m[j] >= right) & (m[j] > 0)]
        if not len(j):
            return np.zeros((0, 4))
        w = buf[1, j[:, None] + np.arange(-self.win[0], -self.win[1] + 1)]  # (c, window)
        w = w - np.median(w, axis=1, keepdims=True)  # baseline of each window
        r = j - self.win[0] + np.argmax(np.abs(w), axis=1) + off - self.delay  # (c,)
        slope = buf[2, j[:, None] + np.arange(-self.w_mwi, 1)].max(axis=1)  # (c,)
        return np.stack([j + off, m[j], r, slope], axis=1).astype(F64)  # (c, 4)

    def process(self, chunk: np.ndarray) -> list[int]:
        """Append samples (L,) (mV); return the R peaks (sample indices) decided by now."""
        x = _samples(chunk, "RPeakDetector.process")  # (L,)
        if not len(x):
            return []
        s = self._s
        n0 = int(s["scal"][0])
        buf = np.concatenate([s["hist"], self._filter(x)], axis=1)  # (3, hist + L)
        s["hist"] = buf[:, -self.hist:].copy()
        s["scal"][0] = n = n0 + len(x)
        if n0 < self.init_len:
            take = x[: self.init_len - n0]
            s["init"][n0: n0 + len(take)] = buf[0, self.hist: self.hist + len(take)]
        cands = self._candidates(buf, n0)  # (c, 4)
        out: list[int] = []
        if not s["scal"][3]:
            s["queue"] = np.concatenate([s["queue"], cands])
            if n < self.init_len:
                return out
            s["scal"][3] = 1
            s["scal"][4] = s["init"].max() / 3.0
            s["scal"][5] = s["init"].mean() / 2.0
            cands, s["queue"] = s["queue"], np.zeros((0, 4))
        for c in cands:
            self._run_search_back(c[0] + self.after, out)
            self._decide(c, out)
        self._run_search_back(n - 1, out)
        return out

    def _rr_mean(self) -> float:
        rr = self._s["rr"]
        rr = rr[rr > 0]
        return float(np.add.reduce(rr) / len(rr)) if len(rr) else self.fs  # = rr.mean()

    def _accept(self, c: np.ndarray, out: list, rate: float) -> None:
        s, sc = self._s, self._s["scal"]
        if sc[6] > -1e8:
            rr = s["rr"]
            rr[:-1] = rr[1:].copy()
            rr[-1] = c[2] - sc[6]
        sc[4] = rate * c[1] + (1 - rate) * sc[4]
        sc[6], sc[7] = c[2], c[3]
        sc[8] = np.ceil(c[2] + 1.66 * self._rr_mean()) if self.search_back else -1
        s["noise"] = np.zeros((0, 4))
        out.append(int(c[2]))

    def _decide(self, c: np.ndarray, out: list) -> None:
        """Classify candidate c = [mwi index, peak, R sample, slope] as QRS or noise."""
        s, sc = self._s, self._s["scal"]
        thr1 = sc[5] + 0.25 * (sc[4] - sc[5])
        since = c[2] - sc[6]
        qrs = c[1] > thr1 and since > self.refr
        if qrs and since < self.t_wave and c[3] < 0.5 * sc[7]:
            qrs = False  # T wave
        if qrs:
            self._accept(c, out, 0.125)
            return
        sc[5] = 0.125 * c[1] + 0.875 * sc[5]
        if since > self.refr:  # a search-back candidate (the latest 64 are enough)
            s["noise"] = np.concatenate([s["noise"], c[None]])[-64:]

    def _run_search_back(self, now: float, out: list) -> None:
        """Search back once the trigger time (1.66 mean RR after the last QRS) has passed."""
        s, sc = self._s, self._s["scal"]
        while 0 <= sc[8] <= now:  # stays armed until a candidate qualifies
            thr2 = 0.5 * (sc[5] + 0.25 * (sc[4] - sc[5]))
            nz = s["noise"]  # every noise candidate decided since the last QRS
            ok = nz[nz[:, 1] > thr2]
            if not len(ok):
                return
            best = ok[np.argmax(ok[:, 1])]
            rest = nz[nz[:, 2] - best[2] > self.refr]
            self._accept(best, out, 0.25)
            sc[9] += 1
            s["noise"] = rest


def _sliding_max(x: np.ndarray, w: int) -> np.ndarray:
    """max(x[k: k + w]) for every k in [0, len(x) - w]: (len(x) - w + 1,), in O(len(x))."""
    return maximum_filter1d(x, w, origin=-(w // 2))[: len(x) - w + 1]


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
    j = (r + delay) // k, delay = round(decision_delay_s * fs); its event is emitted as soon as
    that row exists, i.e. at most decision_delay_s + (k - 1) / fs after the R peak (beats found
    late by search-back, or in the detector's first 2 s, as soon as they are found).
    The model's own stream state is its owner's to save; `state()` covers the rest.
    """

    def __init__(self, model, frontend: FrontendConfig, labels: tuple = AAMI_CLASSES,
                 decision_delay_s: float = 0.25, search_back: bool = True):
        if not 0.0 <= decision_delay_s <= 0.3:
            raise ValueError(f"BeatStream: decision_delay_s must be in [0, 0.3], got "
                             f"{decision_delay_s}")
        self.model, self.labels = model, tuple(labels)
        self.frontend = EcgFrontend(frontend)
        self.detector = RPeakDetector(frontend.sample_rate, search_back=search_back)
        self.fs, self.k = frontend.sample_rate, frontend.decimate
        self.delay = int(round(decision_delay_s * self.fs))
        self.keep = int(np.ceil(8.0 * self.fs / self.k))  # logits rows kept for late beats
        self.reset()

    def reset(self) -> None:
        self.frontend.reset()
        self.detector.reset()
        self._pending = np.zeros(0, np.int64)  # (b,) R samples waiting for their logits row
        self._ring = np.zeros((0, len(self.labels)), F32)  # (<= keep, K) latest logits rows
        self._rows = np.int64(0)  # logits rows received

    def accept(self, chunk: np.ndarray) -> list[BeatEvent]:
        """Samples (L,) in mV -> the beat events that became decidable."""
        x = _samples(chunk, "BeatStream.accept")  # (L,)
        feats = self.frontend.process(x)  # (T, 1)
        peaks = self.detector.process(x)
        ring = self._ring  # (R, K) rows [self._rows - R, self._rows)
        if len(feats):
            logits = np.asarray(self.model.accept(feats), F32)  # (T_out, K)
            if logits.ndim != 2 or logits.shape[1] != len(self.labels):
                raise ValueError(f"BeatStream: model returned logits of shape {logits.shape}, "
                                 f"expected (T, {len(self.labels)})")
            ring = np.concatenate([ring, logits])  # (R + T_out, K)
            self._rows += len(logits)
        self._ring = ring[-self.keep:]
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
        return events

    def state(self) -> dict:
        out = {f"frontend.{k}": v for k, v in self.frontend.state().items()}
        out.update({f"detector.{k}": v for k, v in self.detector.state().items()})
        out.update({"pending": self._pending.copy(), "ring": self._ring.copy(),
                    "rows": np.int64(self._rows)})
        return out

    def restore(self, state: dict) -> None:
        if not isinstance(state, dict):
            raise ValueError(f"BeatStream.restore: expected a dict, got {type(state).__name__}")
        part = lambda p: {k[len(p):]: v for k, v in state.items() if k.startswith(p)}  # noqa: E731
        own = {k: v for k, v in state.items() if "." not in k}
        s = _check_state(own, {"pending": self._pending, "ring": self._ring,
                               "rows": np.int64(0)}, "BeatStream")
        self.frontend.restore(part("frontend."))
        self.detector.restore(part("detector."))
        self._pending, self._ring, self._rows = s["pending"], s["ring"], np.int64(s["rows"])
