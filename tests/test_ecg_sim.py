"""The ECG simulator: determinism, labels, rhythm and morphology, noise, cohort and splits."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from qs4d.models.data import ecg_sim as es
from qs4d.models.data.ecg_build import assign_splits

N, S, V, F, Q = range(5)


def quiet(subj: es.Subject) -> es.Subject:
    """The same subject without any noise."""
    return dataclasses.replace(subj, noise=(0.0, 0.0, 0.0, 50.0, 0.0))


def subject_of(profile: str, seed: int = 3) -> es.Subject:
    return next(s for s in es.make_cohort(40, seed) if s.profile == profile)


@pytest.fixture(scope="module")
def cohort_records():
    return [es.simulate(s, 3.0) for s in es.make_cohort(48, seed=11)]


def test_deterministic_for_a_seed():
    a = es.simulate(es.make_cohort(5, seed=4)[2], 0.5)
    b = es.simulate(es.make_cohort(5, seed=4)[2], 0.5)
    c = es.simulate(es.make_cohort(5, seed=5)[2], 0.5)
    assert np.array_equal(a.signal, b.signal) and np.array_equal(a.r_peaks, b.r_peaks)
    assert np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.signal[:1000], c.signal[:1000])


def test_record_shapes_and_ranges():
    r = es.simulate(subject_of("ventricular"), 1.0)
    assert r.signal.dtype == np.float32 and r.signal.shape == (360 * 60,)
    assert np.isfinite(r.signal).all() and np.abs(r.signal).max() <= 10.0
    assert r.r_peaks.shape == r.labels.shape == r.rhythm.shape
    assert np.all(np.diff(r.r_peaks) >= int(0.25 * 360))
    assert set(r.symbols) <= set(es.SYMBOLS)
    assert 40 <= len(r.r_peaks) <= 130


def test_templates_are_well_formed():
    for s in es.make_cohort(48, seed=6):
        for w in (s.n_wave, s.q_wave, *s.v_waves):
            assert np.all(w[:, 2] > 0) and set(w[:, 3]) <= {0, 1, 2, 3}
            assert np.all(w[w[:, 3] == es.KIND_T, 1] > 0.2)  # T after the QRS
            assert np.all(w[w[:, 3] != es.KIND_T, 1] < 0.06)


def test_cohort_profiles_follow_weights():
    counts = {p: 0 for p in es.PROFILES}
    for s in es.make_cohort(48, seed=0):
        counts[s.profile] += 1
    want = {p: w * 48 for p, w in zip(es.PROFILES, es.PROFILE_WEIGHTS)}
    assert all(abs(counts[p] - want[p]) < 1 for p in es.PROFILES), counts
    with pytest.raises(ValueError, match="profile"):
        es.make_subject(0, "athlete", 0)


def test_class_mix_has_enough_arrhythmia(cohort_records):
    counts = sum(np.bincount(r.labels, minlength=5) for r in cohort_records)
    frac = counts / counts.sum()
    assert 0.6 < frac[N] < 0.8, frac
    assert frac[S] > 0.06 and frac[V] > 0.07 and frac[F] > 0.025 and frac[Q] > 0.015, frac


def _rr_context(r: es.SimRecord):
    """(label, RR before / local NN, RR before + after / local NN) of isolated beats."""
    rr = np.diff(r.r_peaks).astype(float)  # (n-1,)
    lab = r.labels
    out = []
    for i in range(2, len(lab) - 2):
        if lab[i - 1] == N and lab[i + 1] == N and lab[i - 2] == N:
            nn = rr[i - 2]  # the N-N interval just before
            out.append((lab[i], rr[i - 1] / nn, (rr[i - 1] + rr[i]) / nn))
    return np.array(out)


def test_premature_beats_and_pauses(cohort_records):
    ctx = np.concatenate([_rr_context(r) for r in cohort_records])
    lab, pre, pair = ctx[:, 0], ctx[:, 1], ctx[:, 2]
    assert np.all(pre[lab == S] < 0.9) and np.all(pre[lab == V] < 0.85)
    assert np.median(pre[lab == N]) == pytest.approx(1.0, abs=0.03)
    assert np.all(pre[lab == F] > 0.8) and np.median(pre[lab == F]) > 0.9  # at sinus timing
    assert np.median(pre[lab == V]) < 0.75
    # V: full compensatory pause; S resets the sinus node (less than compensatory)
    assert np.median(pair[lab == V]) == pytest.approx(2.0, abs=0.06)
    assert np.median(pair[lab == S]) < np.median(pair[lab == V]) - 0.1


def _qrs_width(x: np.ndarray, r: int, fs: int = 360) -> float:
    """Seconds for which |x - local baseline| stays above half the QRS extremum around r."""
    seg = x[r - int(0.12 * fs): r + int(0.12 * fs)]
    seg = np.abs(seg - np.median(seg))
    return float((seg > 0.5 * seg.max()).sum()) / fs


def test_v_wider_than_n_and_no_p_wave():
    subj = quiet(subject_of("ventricular"))
    r = es.simulate(subj, 2.0)
    w = {k: np.median([_qrs_width(r.signal, p) for p, l in zip(r.r_peaks, r.labels) if l == k])
         for k in (N, V)}
    assert w[V] > 1.8 * w[N], w
    assert not (subj.v_waves[0][:, 3] == es.KIND_P).any()
    assert (subj.n_wave[:, 3] == es.KIND_P).sum() == 1


def test_v_t_wave_discordant():
    for s in es.make_cohort(30, seed=8):
        for tmpl in s.v_waves:
            main, t = tmpl[0, 0], tmpl[tmpl[:, 3] == es.KIND_T, 0]
            assert np.all(np.sign(t) == -np.sign(main)) or np.all(np.abs(t) < 0.1 * abs(main))


def test_s_has_ectopic_p_wave_and_narrow_qrs():
    subj = subject_of("atrial")
    rng = np.random.default_rng(0)
    w = es._beat_waves(subj, rng, np.array([1.0, 3.0]), np.array([N, S]))  # (2 * 6, 4)
    n, s = w[:6], w[6:]
    p_n, p_s = n[n[:, 3] == es.KIND_P][0], s[s[:, 3] == es.KIND_P][0]
    assert p_s[0] == pytest.approx(subj.s_p[0] * p_n[0], rel=0.3)
    assert p_s[1] - 3.0 == pytest.approx(subj.s_p[1])
    qrs = lambda b: b[b[:, 3] == es.KIND_QRS, 2]  # noqa: E731
    assert np.array_equal(qrs(n), qrs(s))  # same conduction: narrow QRS


def test_paced_beats_carry_a_spike():
    r = es.simulate(quiet(subject_of("paced")), 2.0)
    d = np.abs(np.diff(r.signal))
    for k, big in ((Q, True), (N, False)):
        idx = r.r_peaks[r.labels == k]
        assert len(idx) > 5
        slew = np.array([d[p - int(0.1 * 360): p].max() for p in idx])
        assert np.all(slew > 0.3) if big else np.all(slew < 0.3)
    others = [s for s in es.make_cohort(40, 3) if s.profile != "paced"]
    assert all(len(s.q_wave) == 0 and s.pace_rr == 0 for s in others)


def test_noise_levels_per_subject():
    subj = subject_of("normal")
    clean = es.simulate(quiet(subj), 1.0).signal
    noisy = es.simulate(dataclasses.replace(subj, noise=(0.2, 0.03, 0.05, 60.0, 1.0)), 1.0).signal
    resid = noisy.astype(float) - clean
    spec = np.abs(np.fft.rfft(resid))
    f = np.fft.rfftfreq(len(resid), 1 / 360)
    mains = spec[np.abs(f - 60.0) < 0.2].max()
    assert mains > 10 * np.median(spec[(f > 45) & (f < 100)])
    assert 0.05 < resid.std() < 1.0
    assert np.abs(resid).max() < 3.0


def test_splits_are_inter_patient_and_stratified():
    subjects = es.make_cohort(48, seed=2)
    sp = assign_splits(subjects, seed=2)
    ids = sp["train"] + sp["validation"] + sp["test"]
    assert sorted(ids) == list(range(48))  # every subject in exactly one split
    prof = {s.index: s.profile for s in subjects}
    for name, members in sp.items():
        assert {prof[i] for i in members} == set(es.PROFILES), name
    assert len(sp["train"]) > len(sp["test"]) > len(sp["validation"])
