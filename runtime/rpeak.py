"""Online R-peak detection for the streaming ECG pipeline (DESIGN section 6), numpy and scipy
only. `BeatStream` (`ecg.py`) runs it on the raw samples beside the model's front end.

Glossary: L samples in a chunk or record (at fs), c candidates.

Every stage is a recursive filter run sample by sample with its state carried, a fixed-length
sliding max, or per-candidate logic in time order, so any cut of a record into chunks gives
the same detections as one call on the whole record.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy.ndimage import maximum_filter1d
from scipy.signal import butter, group_delay, lfilter, sos2tf, sosfilt, sosfilt_zi

from .ecg_common import F64, _check_state, _samples

log = logging.getLogger(__name__)


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
            "t_last": np.array(-1.0),  # sample at which the detector's state last changed
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
        return [r for r, _ in self.process_timed(chunk)]

    def process_timed(self, chunk: np.ndarray) -> list[tuple[int, int]]:
        """Append samples (L,) (mV); return (R peak, decision sample) of each beat decided by
        now. The decision sample is the index of the sample whose arrival decided the beat
        when the record is fed one sample at a time, so it is the same for any cut into chunks
        (what a rhythm feature may depend on: it never exceeds the last sample seen)."""
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
        out: list[tuple[int, int]] = []
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
            # decided when its confirmation window is complete, or at the end of the first
            # 2 s (thresholds initialized), whichever is later
            s["t_last"] = np.array(max(c[0] + self.after, self.init_len - 1.0))
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
        out.append((int(c[2]), int(s["t_last"])))

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
            # fed sample by sample, the search-back fires at the first sample >= the trigger
            # at which a candidate qualifies: the trigger, or the last change of state after it
            s["t_last"] = np.array(max(sc[8], float(s["t_last"])))
            best = ok[np.argmax(ok[:, 1])]
            rest = nz[nz[:, 2] - best[2] > self.refr]
            self._accept(best, out, 0.25)
            sc[9] += 1
            s["noise"] = rest


def _sliding_max(x: np.ndarray, w: int) -> np.ndarray:
    """max(x[k: k + w]) for every k in [0, len(x) - w]: (len(x) - w + 1,), in O(len(x))."""
    return maximum_filter1d(x, w, origin=-(w // 2))[: len(x) - w + 1]


def decision_samples(beats: list, wait: int) -> np.ndarray:
    """The sample at which each detected beat's class is read when BeatStream waits for the
    next beat (FrontendConfig.beat_wait_s > 0, wait = its samples): beats are (R peak, decision
    sample) in decision order (the detector's `process_timed`). Beat i is read at the decision
    sample of the first later-decided beat whose R peak follows its own, if that comes before
    R_i + wait, else at R_i + wait; never before its own decision sample. (n,) int64."""
    r = np.asarray([b[0] for b in beats], np.int64)  # (n,)
    t = np.asarray([b[1] for b in beats], np.int64)  # (n,)
    out = r + wait
    for i in range(len(r)):
        later = np.flatnonzero(r[i + 1:] > r[i])
        if len(later) and t[i + 1 + later[0]] < r[i] + wait:
            out[i] = t[i + 1 + later[0]]
    return np.maximum(out, t)
