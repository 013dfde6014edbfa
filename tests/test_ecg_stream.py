"""Streaming ECG runtime: front end, R-peak detector, beat stream, EC57 metrics, record 208."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.signal import lfilter, sosfilt

from qs4d.models.data import ecg_sim as es
from qs4d.models.data.ecg_data import WindowConfig, windows_from_arrays
from qs4d.runtime.ecg import BeatStream, EcgFrontend, ecg_frontend_config
from qs4d.runtime.ecg_metrics import class_report, detection_stats, match_beats
from qs4d.runtime.records import load_record208
from qs4d.runtime.rpeak import RPeakDetector, _sliding_max
from qs4d.runtime.spec import FrontendConfig, SpecError

FS = 360


@pytest.fixture(scope="module")
def rec():
    """A ventricular subject, 40 s: V, F and warm-up beats in one short record."""
    subj = next(s for s in es.make_cohort(12, seed=99) if s.profile == "fusion")
    return es.simulate(subj, 40 / 60)


def cut(x: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    """x cut into chunks of the given sizes (cycled), covering all of x."""
    out, i, k = [], 0, 0
    while i < len(x):
        out.append(x[i: i + sizes[k % len(sizes)]])
        i += sizes[k % len(sizes)]
        k += 1
    return out


class FakeModel:
    """A causal toy step model: logits row t from feature t and a carried moving average."""

    def __init__(self):
        self.zi = np.zeros(1)

    def accept(self, feats: np.ndarray) -> np.ndarray:
        f = feats[:, 0].astype(np.float64)  # (T,)
        ema, self.zi = lfilter([0.1], [1.0, -0.9], f, zi=self.zi)  # (T,)
        return np.stack([f, ema, -f, 2 * ema, 0 * f], axis=1).astype(np.float32)  # (T, 5)


class ProbeModel:
    """logits row t = [feature t, 0, 0, 0, 0]: the event reveals the feature it was read at."""

    def accept(self, feats: np.ndarray) -> np.ndarray:
        return np.concatenate([feats, np.zeros((len(feats), 4), np.float32)], axis=1)


# ---------------------------------------------------------------------------------------------
# front end

def test_frontend_passband_stopband_and_decimation():
    t = np.arange(20 * FS) / FS
    fe = EcgFrontend(ecg_frontend_config())
    y = fe.process(np.sin(2 * np.pi * 10 * t))[:, 0]  # (T,)
    assert y.dtype == np.float32 and np.abs(y[-5 * FS:]).max() == pytest.approx(1.0, abs=0.05)
    drift = EcgFrontend(ecg_frontend_config()).process(1.0 + np.sin(2 * np.pi * 0.05 * t))
    assert np.abs(drift).max() < 0.15  # DC and baseline wander removed, no start-up step
    fe4 = EcgFrontend(ecg_frontend_config(decimate=4))
    x = np.sin(2 * np.pi * 150 * t)
    y4 = fe4.process(x)
    assert y4.shape == (len(t) // 4, 1) and np.abs(y4[FS:]).max() < 0.02  # anti-aliased
    ref = sosfilt(fe4.sos, x)[3::4]  # row j ends at sample 4j + 3 (x[0] = 0: zero state)
    assert np.allclose(y4[:, 0], ref, atol=1e-6)


def test_frontend_normalization_and_errors():
    cfg = FrontendConfig(kind="ecg", sample_rate=FS, norm_mean=(0.5,), norm_std=(2.0,))
    x = np.random.default_rng(0).standard_normal(1000)
    plain = EcgFrontend(ecg_frontend_config()).process(x)
    assert np.allclose(EcgFrontend(cfg).process(x), (plain - 0.5) / 2.0, atol=1e-6)
    with pytest.raises(SpecError, match="kind"):
        EcgFrontend(FrontendConfig(kind="logmel"))
    with pytest.raises(SpecError, match="band_hz"):
        EcgFrontend(ecg_frontend_config(band_hz=(0.5, 200.0)))
    with pytest.raises(SpecError, match="norm"):
        EcgFrontend(FrontendConfig(kind="ecg", sample_rate=FS, norm_mean=(0.0, 1.0),
                                   norm_std=(1.0, 1.0)))
    with pytest.raises(ValueError, match="shape"):
        EcgFrontend(ecg_frontend_config()).process(np.zeros((10, 2)))


@settings(max_examples=25, deadline=None)
@given(sizes=st.lists(st.integers(1, 900), min_size=1, max_size=8), k=st.sampled_from([1, 3]))
def test_frontend_chunk_invariance(rec, sizes, k):
    x = rec.signal[: 12 * FS]
    whole = EcgFrontend(ecg_frontend_config(decimate=k)).process(x)
    fe = EcgFrontend(ecg_frontend_config(decimate=k))
    parts = np.concatenate([fe.process(c) for c in cut(x, sizes)])
    assert np.array_equal(parts, whole)


def test_frontend_state_carry(rec):
    x = rec.signal[: 10 * FS]
    cfg = ecg_frontend_config(decimate=2)
    whole = EcgFrontend(cfg).process(x)
    a = EcgFrontend(cfg)
    first = a.process(x[:1234])
    b = EcgFrontend(cfg)
    b.restore(a.state())
    assert np.array_equal(np.concatenate([first, b.process(x[1234:])]), whole)
    a.reset()
    assert np.array_equal(a.process(x), whole)
    with pytest.raises(ValueError, match="keys"):
        b.restore({"zi": a.state()["zi"]})


# ---------------------------------------------------------------------------------------------
# R-peak detector

def test_rpeak_detection_on_held_out_subjects():
    """Acceptance: Se and +P >= 99.5 % within 50 ms on subjects no tuning has seen."""
    total = None
    for subj in es.make_cohort(32, seed=31337):
        r = es.simulate(subj, 3.0)
        peaks = RPeakDetector(FS).process(r.signal)
        st_ = detection_stats(r.r_peaks, np.array(peaks), FS, tol_s=0.05)
        total = st_ if total is None else total + st_
    print(f"\nR-peak detection, 32 held-out simulated subjects x 3 min: {total}")
    assert total.tp > 6000
    assert total.se >= 0.995 and total.ppv >= 0.995, str(total)


@pytest.mark.parametrize("w", [1, 2, 7, 11, 72])
def test_sliding_max_equals_the_window_max(w):
    x = np.random.default_rng(w).standard_normal(300)
    x[100:140] = x[99]  # plateaus: ties
    ref = np.lib.stride_tricks.sliding_window_view(x, w).max(axis=1)
    np.testing.assert_array_equal(_sliding_max(x, w), ref)
    np.testing.assert_array_equal(_sliding_max(x[:w], w), x[:w].max(keepdims=True))


def test_rpeak_delay_is_bounded(rec):
    det = RPeakDetector(FS)
    step = 4  # 11 ms chunks
    delays = []
    for i, c in enumerate(cut(rec.signal, [step])):
        now = i * step + len(c) - 1  # last sample seen
        delays += [(now - p) / FS for p in det.process(c) if p > 2 * FS]
    delays = np.array(delays)
    assert len(delays) > 30 and delays.min() >= 0
    late = (delays > 0.2 + step / FS).sum()
    assert late <= det.n_search_back, (np.sort(delays)[-5:], det.n_search_back)
    assert np.median(delays) < 0.19


@settings(max_examples=20, deadline=None)
@given(sizes=st.lists(st.integers(1, 3000), min_size=1, max_size=6))
def test_rpeak_chunk_invariance(rec, sizes):
    x = rec.signal[: 20 * FS]
    whole = RPeakDetector(FS).process(x)
    det = RPeakDetector(FS)
    parts = [p for c in cut(x, sizes) for p in det.process(c)]
    assert parts == whole and len(whole) > 15


@pytest.mark.parametrize("split", [300, 5000])  # before and after the 2 s initialization
def test_rpeak_state_restore(rec, split):
    x = rec.signal
    whole = RPeakDetector(FS).process(x)
    a = RPeakDetector(FS)
    first = a.process(x[:split])
    b = RPeakDetector(FS)
    b.restore(a.state())
    assert first + b.process(x[split:]) == whole


def test_rpeaks_on_record208():
    x, fs = load_record208()
    assert fs == 360 and x.shape == (5 * 60 * 360,) and x.dtype == np.float32
    assert np.isfinite(x).all() and 0.2 < np.std(x) < 2.0
    peaks = np.array(RPeakDetector(fs).process(x))
    rate = len(peaks) / 5.0  # beats per minute
    rr = np.diff(peaks) / fs
    print(f"\nrecord 208 (5 min): {len(peaks)} R peaks, {rate:.1f}/min, median RR {np.median(rr):.3f} s")
    assert 80 <= rate <= 115  # record 208 averages about 98 beats per minute
    assert 0.45 < np.median(rr) < 0.75 and rr.min() >= 0.2


# ---------------------------------------------------------------------------------------------
# beat stream

def run_stream(x: np.ndarray, sizes: list[int], k: int = 1, model=None):
    bs = BeatStream(model or FakeModel(), ecg_frontend_config(decimate=k))
    events, when, seen = [], [], 0
    for c in cut(x, sizes):
        got = bs.accept(c)
        seen += len(c)
        events += got
        when += [seen - 1] * len(got)  # the last sample seen when the event came out
    return events, np.array(when)


@settings(max_examples=15, deadline=None)
@given(sizes=st.lists(st.integers(1, 2500), min_size=1, max_size=6), k=st.sampled_from([1, 2]))
def test_beat_stream_chunk_invariance(rec, sizes, k):
    x = rec.signal[: 15 * FS]
    whole, _ = run_stream(x, [len(x)], k)
    parts, _ = run_stream(x, sizes, k)
    assert len(whole) > 10
    assert [(e.sample, e.label) for e in parts] == [(e.sample, e.label) for e in whole]
    assert all(np.array_equal(a.probs, b.probs) for a, b in zip(parts, whole))


def test_beat_events_and_latency(rec):
    x = rec.signal
    events, when = run_stream(x, [9])
    peaks = RPeakDetector(FS).process(x)
    assert [e.sample for e in events] == [p for p in peaks if p + 90 < len(x)]
    for e in events:
        assert e.probs.shape == (5,) and e.probs.sum() == pytest.approx(1.0, abs=1e-5)
        assert e.label == "NSVFQ"[int(np.argmax(e.probs))] and e.confidence == e.probs.max()
        assert e.time_s == pytest.approx(e.sample / FS)
    lag = (when - np.array([e.sample for e in events])) / FS
    warm = np.array([e.sample for e in events]) > 2 * FS
    assert np.all(lag[warm] <= 0.3), np.sort(lag[warm])[-3:]


def test_beat_stream_state_restore(rec):
    x = rec.signal[: 20 * FS]
    model = FakeModel()
    whole, _ = run_stream(x, [len(x)])
    a = BeatStream(model, ecg_frontend_config())
    first = a.accept(x[:4321])
    b = BeatStream(model, ecg_frontend_config())  # the model object carries its own state
    b.restore(a.state())
    rest = b.accept(x[4321:])
    assert [e.sample for e in first + rest] == [e.sample for e in whole]
    assert all(np.array_equal(p.probs, q.probs) for p, q in zip(first + rest, whole))


@pytest.mark.parametrize("k", [1, 2])
def test_training_windows_end_where_the_stream_reads(rec, k):
    """ecg_data's last window row is exactly the feature row BeatStream classifies a beat by."""
    x = rec.signal
    events, _ = run_stream(x, [1000], k, model=ProbeModel())
    peaks = np.array([e.sample for e in events])
    read = np.array([np.log(e.probs[0] / e.probs[1]) for e in events])  # = feature row value
    w = windows_from_arrays([("r", x, peaks, np.zeros(len(peaks)))],
                            WindowConfig(ecg_frontend_config(decimate=k)))
    X, y, rid = w.arrays()
    assert X.shape == (len(w), round(2.75 * FS / k), 1) and X.dtype == np.float32
    assert len(X) > 30 and np.allclose(X[:, -1, 0], read[np.searchsorted(peaks, w.r_peak)],
                                       atol=1e-4)
    with pytest.raises(ValueError, match="decision_delay_s"):
        WindowConfig(decision_delay_s=0.4)


def test_beat_stream_rejects_bad_model_and_delay():
    class Bad:
        def accept(self, feats):
            return np.zeros((len(feats), 3), np.float32)

    with pytest.raises(ValueError, match="decision_delay_s"):
        BeatStream(FakeModel(), ecg_frontend_config(), decision_delay_s=0.5)
    with pytest.raises(ValueError, match=r"\(T, 5\)"):
        BeatStream(Bad(), ecg_frontend_config()).accept(np.zeros(100))


# ---------------------------------------------------------------------------------------------
# EC57 metrics, import hygiene

def test_match_beats_one_to_one_closest_first():
    pairs = match_beats([100, 200, 300], [105, 195, 210, 400], tol=18)
    assert pairs.tolist() == [[0, 0], [1, 1]]
    rng = np.random.default_rng(0)
    ref = np.sort(rng.choice(100000, 300, replace=False))
    det = np.sort(rng.choice(100000, 280, replace=False))
    p = match_beats(ref, det, 40)
    assert len(set(p[:, 0])) == len(p) == len(set(p[:, 1]))
    assert np.all(np.abs(ref[p[:, 0]] - det[p[:, 1]]) <= 40)
    with pytest.raises(ValueError, match="tol"):
        match_beats(ref, det, -1)


def test_class_report_counts():
    ref = np.array([100, 500, 900, 1300, 1700])
    det = np.array([102, 498, 905, 1500, 1699])
    rep = class_report(ref, [0, 2, 2, 1, 0], det, [0, 2, 0, 3, 1], FS)
    assert rep.confusion[0, 0] == 1 and rep.confusion[2, 2] == 1 and rep.confusion[2, 0] == 1
    assert rep.confusion[0, 1] == 1 and rep.missed[1] == 1 and rep.extra[3] == 1
    assert rep.se[2] == 0.5 and rep.ppv[0] == 0.5 and rep.accuracy == 0.5
    assert np.isnan(rep.se[3]) and np.isnan(rep.ppv[4])
    table = rep.table()
    assert "missed" in table and "accuracy 50.00%" in table
    with pytest.raises(ValueError, match="det_labels"):
        class_report(ref, [0] * 5, det, [0, 1, 2, 3, 9], FS)


def test_runtime_ecg_imports_neither_torch_nor_wfdb():
    code = ("import sys, qs4d.runtime.ecg, qs4d.runtime.ecg_metrics, qs4d.runtime.records, "
            "qs4d.models.data.wfdb_io; "
            "bad = [m for m in ('torch', 'wfdb') if m in sys.modules]; "
            "sys.exit(f'imported {bad}' if bad else 0)")
    subprocess.run([sys.executable, "-c", code], check=True)
