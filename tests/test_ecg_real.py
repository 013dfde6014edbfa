"""ECG on real patients: the detector's decision times, the rhythm front end, MIT-BIH splits,
real-noise augmentation, the inter-patient report. Tests that read `../shared/data` skip with
a reason when it is absent; none of them measures accuracy (that is the model cards' job)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from qs4d.models.data import ecg_sim as es
from qs4d.runtime import mitbih
from qs4d.runtime.ecg import BeatStream, EcgFrontend, ecg_frontend_config
from qs4d.runtime.rpeak import RPeakDetector
from qs4d.runtime.spec import FrontendConfig, SpecError, TrainConfig

FS = 360
ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
MITDB, NSTDB = DATA / "mitdb", DATA / "nstdb-noise"
needs_mitdb = pytest.mark.skipif(not (MITDB / "100.hea").exists(),
                                 reason=f"real MIT-BIH records not at {MITDB}")
needs_nstdb = pytest.mark.skipif(not (NSTDB / "em.hea").exists(),
                                 reason=f"MIT-BIH noise records not at {NSTDB}")


@pytest.fixture(scope="module")
def rec():
    """An atrial subject, 60 s: premature S beats among sinus beats."""
    subj = next(s for s in es.make_cohort(12, seed=5) if s.profile == "atrial")
    return es.simulate(subj, 1.0)


def chunks(x: np.ndarray, seed: int, top: int = 900) -> list:
    rng = np.random.default_rng(seed)
    out, i = [], 0
    while i < len(x):
        n = int(rng.integers(1, top))
        out.append(x[i: i + n])
        i += n
    return out


def test_detector_decision_times_are_the_same_for_any_chunking(rec):
    x = rec.signal[: 30 * FS]
    whole = RPeakDetector(FS).process_timed(x)
    one = RPeakDetector(FS)
    by_sample = [b for i in range(len(x)) for b in one.process_timed(x[i: i + 1])]
    parts = RPeakDetector(FS)
    by_chunk = [b for c in chunks(x, 0) for b in parts.process_timed(c)]
    assert whole == by_sample == by_chunk and len(whole) > 25
    r, t = np.array(whole).T
    assert np.all(t >= r) and np.all(np.diff(t) >= 0)
    late = r >= 2 * FS  # after the 2-s warm-up, every beat is decided within the 0.25-s delay
    assert np.all((t - r)[late] <= 0.25 * FS) and np.all(t[~late] >= 2 * FS - 1)
    assert [b for b, _ in whole] == RPeakDetector(FS).process(x)


def test_rhythm_front_end_is_chunk_exact_and_flags_premature_beats(rec):
    cfg = ecg_frontend_config(decimate=4).replace(rhythm=4)
    fe = EcgFrontend(cfg)
    whole = fe.features(rec.signal)
    assert whole.shape == (len(rec.signal) // 4, 5) and whole.dtype == np.float32
    plain = EcgFrontend(ecg_frontend_config(decimate=4)).features(rec.signal)
    assert np.array_equal(whole[:, :1], plain)  # the ECG feature is unchanged
    parts = np.concatenate([fe.process(c) for c in chunks(rec.signal, 1)])
    assert np.array_equal(parts, whole)
    # the prematurity read at each beat's decision row (R + 0.25 s): S beats come early
    rows = (rec.r_peaks + round(0.25 * FS)) // 4
    ok = (rows < len(whole)) & (rec.r_peaks > 5 * FS)
    p = whole[rows[ok], 1]
    lab = rec.labels[ok]
    assert (lab == 1).sum() >= 3 and np.median(p[lab == 1]) < -0.15 < np.median(p[lab == 0])
    assert np.all(whole[1:, 2][np.diff(whole[:, 1]) != 0] == whole[:-1, 1][
        np.diff(whole[:, 1]) != 0])  # the second feature is the previous beat's prematurity


def test_shape_distance_flags_ventricular_beats():
    """A ventricular subject: V beats are far from the patient's template, N beats close."""
    subj = next(s for s in es.make_cohort(12, seed=7) if s.profile == "ventricular")
    sim = es.simulate(subj, 1.0)
    f = EcgFrontend(ecg_frontend_config(decimate=4).replace(rhythm=4)).features(sim.signal)
    rows = (sim.r_peaks + round(0.25 * FS)) // 4
    ok = (rows < len(f)) & (sim.r_peaks > 5 * FS)
    d, lab = f[rows[ok], 3], sim.labels[ok]
    assert (lab == 2).sum() >= 5 and np.median(d[lab == 2]) > 2 * np.median(d[lab == 0])


def test_rhythm_front_end_state_round_trip(rec):
    cfg = ecg_frontend_config(decimate=4).replace(rhythm=4)
    a, b = EcgFrontend(cfg), EcgFrontend(cfg)
    x = rec.signal[: 20 * FS]
    a.process(x[: 7001])
    b.restore(a.state())
    assert np.array_equal(a.process(x[7001:]), b.process(x[7001:]))
    with pytest.raises(ValueError, match="rhythm.cur"):
        EcgFrontend(ecg_frontend_config(decimate=4)).restore(a.state())


def test_beat_stream_shares_the_rhythm_front_end_detector(rec):
    class Zeros:
        def accept(self, feats):
            return np.zeros((len(feats), 5), np.float32)

    rhythm = BeatStream(Zeros(), ecg_frontend_config(decimate=4).replace(rhythm=4))
    plain = BeatStream(Zeros(), ecg_frontend_config(decimate=4))
    ev_r = [e.sample for c in chunks(rec.signal, 2) for e in rhythm.accept(c)]
    ev_p = [e.sample for e in plain.accept(rec.signal)]
    assert ev_r == ev_p and rhythm.detector is rhythm.frontend.detector


def test_mitbih_splits_are_patient_disjoint():
    assert sorted(mitbih.DS1_TRAIN + mitbih.DS1_VALIDATION) == sorted(mitbih.DS1)
    assert not set(mitbih.DS1) & set(mitbih.DS2)
    assert not set(mitbih.PACED) & set(mitbih.DS1 + mitbih.DS2)
    assert len(mitbih.DS1) == len(mitbih.DS2) == 22
    assert mitbih.mitbih_split("test") == mitbih.DS2
    with pytest.raises(ValueError, match="DS3"):
        mitbih.mitbih_split("DS3")


def test_train_config_ecg_options_are_checked():
    TrainConfig(task="ecg", rhythm=4, noise_data="n", noise_copies=2)
    with pytest.raises(SpecError, match="rhythm.*ECG only"):
        TrainConfig(task="kws", rhythm=4)
    with pytest.raises(SpecError, match="noise_copies.*noise_data"):
        TrainConfig(task="ecg", noise_copies=1)
    with pytest.raises(SpecError, match="rhythm.*ECG front ends"):
        FrontendConfig(kind="identity", rhythm=2)
    with pytest.raises(SpecError, match=r"rhythm: one of \[0, 2, 4, 5, 9\]"):
        ecg_frontend_config().replace(rhythm=3)
    with pytest.raises(SpecError, match="oversample"):
        TrainConfig(task="ecg", oversample=0)
    assert ecg_frontend_config().replace(rhythm=True).rhythm == 2  # the first, flag format
    two = EcgFrontend(ecg_frontend_config(decimate=4).replace(rhythm=2))
    four = EcgFrontend(ecg_frontend_config(decimate=4).replace(rhythm=4))
    x = np.sin(np.arange(20 * FS) / FS * 2 * np.pi * 1.2) ** 15
    assert np.array_equal(two.features(x), four.features(x)[:, :3])
    five = EcgFrontend(ecg_frontend_config(decimate=4).replace(rhythm=5))
    assert np.array_equal(four.features(x), five.features(x)[:, :5])
    nine = EcgFrontend(ecg_frontend_config(decimate=4).replace(rhythm=9))
    assert np.array_equal(five.features(x), nine.features(x)[:, :6])
    with pytest.raises(SpecError, match="beat_wait_s.*rhythm features"):
        ecg_frontend_config().replace(beat_wait_s=1.0)
    with pytest.raises(SpecError, match=r"beat_wait_s: 0 or .*\[0.3, 4.0\]"):
        ecg_frontend_config().replace(rhythm=9, beat_wait_s=0.1)
    with pytest.raises(SpecError, match="beat_wait_s.*ECG only"):
        TrainConfig(task="kws", beat_wait_s=1.0)


def test_long_term_prematurity_keeps_frequent_ectopics_early():
    """Runs of three early beats (0.6 s) between pauses (1.6 s), as in a patient with frequent
    atrial ectopics: the median of the last 8 RR is the early RR itself, so p calls those beats
    on time; the mean of the last 64 RR (pauses included, 0.85 s) keeps them early. For a
    steady rhythm both are 0."""
    def features(rr_s):
        fe = EcgFrontend(ecg_frontend_config(decimate=4).replace(rhythm=5))
        r = np.cumsum(np.round(np.asarray(rr_s) * FS).astype(int))
        beats = [(int(b), int(b) + 50) for b in r]
        rows = np.array([t for _, t in beats])
        return fe._rhythm_rows(beats, rows, np.zeros(rows[-1] + 1), 0)  # (n, 5)

    f = features([1.6, 0.6, 0.6, 0.6] * 30)
    early = f[80:][np.arange(40) % 4 != 0]  # the 0.6-s beats after warm-up
    assert np.allclose(early[:, 0], 0.0) and np.allclose(early[:, 4], 0.6 / 0.85 - 1, atol=0.01)
    steady = features([0.8] * 40)
    assert np.allclose(steady[2:, [0, 4]], 0.0)


def test_oversample_repeats_minority_classes_up_to_its_factor():
    pytest.importorskip("torch")
    from qs4d.models.ecg_task import _oversample
    y = np.array([0] * 1000 + [1] * 10 + [2] * 100)
    rng = np.random.default_rng(0)
    for times, want_s in ((4, 40), (12, 120), (100, 250)):  # capped at N/4 = 250
        idx = _oversample(y, rng, times)
        assert (y[idx] == 1).sum() == want_s and (y[idx] == 0).sum() == 1000


@needs_mitdb
def test_mitdb_split_counts_match_the_published_totals():
    from qs4d.models.data.ecg_build import check_mitdb

    meta = check_mitdb(MITDB, download=False)
    c = meta["counts"]
    assert [c["test"][k] for k in "NSVFQ"] == [44259, 1837, 3221, 388, 7]  # DS2
    ds1 = [c["train"][k] + c["validation"][k] for k in "NSVFQ"]
    assert ds1 == [45866, 944, 3788, 415, 8]
    assert meta["validation"] == list(mitbih.DS1_VALIDATION)


@needs_mitdb
@needs_nstdb
def test_noisy_copy_is_deterministic_and_near_its_snr():
    from qs4d.models.data.ecg_data import noisy_copy
    from qs4d.models.data.wfdb_io import read_noise, read_record

    noise = read_noise(NSTDB)
    assert sorted(noise) == ["bw:noise1", "bw:noise2", "em:noise1", "em:noise2",
                             "ma:noise1", "ma:noise2"]
    x = read_record(MITDB / "100").signal[: 120 * FS]
    kw = dict(snr_db=(6.0, 6.0), gain=(1.0, 1.0), wander_mv=0.0)
    a = noisy_copy(x, noise, np.random.default_rng(3), **kw)
    b = noisy_copy(x, noise, np.random.default_rng(3), **kw)
    c = noisy_copy(x, noise, np.random.default_rng(4), **kw)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.shape == x.shape and a.dtype == np.float32
    snr = 10 * np.log10(np.var(x) / np.var(a - x))
    assert snr == pytest.approx(6.0, abs=0.1)


def _write_cut(wfdb, name: str, out: Path, fs_out: int = 250, seconds: int = 40) -> int:
    """The first seconds of an MIT-BIH record, lead MLII, as WFDB at fs_out; its beat count."""
    from scipy.signal import resample_poly

    rec = wfdb.rdrecord(str(MITDB / name), sampto=seconds * FS, channels=[0])
    ann = wfdb.rdann(str(MITDB / name), "atr", sampto=seconds * FS)
    x = resample_poly(rec.p_signal[:, 0], fs_out, FS)
    wfdb.wrsamp(f"cut{name}", fs=fs_out, units=["mV"], sig_name=["MLII"], p_signal=x[:, None],
                fmt=["16"], write_dir=str(out))
    keep = np.isin(ann.symbol, list(mitbih.AAMI_OF_SYMBOL))
    wfdb.wrann(f"cut{name}", "atr", np.rint(ann.sample[keep] * fs_out / FS).astype(np.int64),
               np.asarray(ann.symbol)[keep], write_dir=str(out))
    return int(keep.sum())


@needs_mitdb
def test_ecg_report_on_cut_real_records(tmp_path):
    """The first 40 s of records 100 and 232 written at 250 Hz (another rate): the report
    resamples, finds the beats, gives the batched streams the events of one stream per record,
    and writes its JSON."""
    wfdb = pytest.importorskip("wfdb")
    from qs4d.apps import ecg_report

    bundle = next((p for p in sorted((ROOT / "models" / "zoo").glob("ecg-*"))
                   if (p / "manifest.json").exists()), None)
    if bundle is None:
        pytest.skip("no ECG bundle in models/zoo")
    beats = sum(_write_cut(wfdb, n, tmp_path) for n in ("100", "232"))
    (tmp_path / "RECORDS").write_text("cut100\ncut232\n")
    assert ecg_report.split_names(tmp_path, "all") == ["cut100", "cut232"]
    out = tmp_path / "r.json"
    md = tmp_path / "r.md"
    assert ecg_report.main([str(bundle), "--data", str(tmp_path), "--split", "all",
                            "--json", str(out), "--markdown", str(md)]) == 0
    r = json.loads(out.read_text())
    card = md.read_text()
    assert "ODC-By" in card and f"{r['n_beats']} beats" in card
    assert f"| S | {r['beats']['S']} |" in card
    assert r["records"] == ["cut100", "cut232"] and r["n_beats"] == beats
    assert r["detection"]["se"] > 95 and r["detection"]["ppv"] > 95
    assert np.array(r["confusion"]).sum() == r["detection"]["tp"]  # both match within 150 ms
    assert set(r["se"]) == set("NSVFQ") and r["beats"]["N"] > 30 and r["beats"]["S"] > 10
    batched = ecg_report.evaluate_records(str(bundle), [tmp_path / "cut100", tmp_path / "cut232"])
    for b in batched:
        alone = ecg_report.evaluate_record(str(bundle), tmp_path / b["name"])
        assert np.array_equal(alone["report"].confusion, b["report"].confusion)
        assert alone["detection"] == b["detection"]


@needs_mitdb
def test_report_split_names_of_the_mitbih_folder():
    from qs4d.apps.ecg_report import split_names

    assert split_names(MITDB, "DS2") == list(mitbih.DS2)
    assert split_names(MITDB, "validation") == list(mitbih.DS1_VALIDATION)
    assert len(split_names(MITDB, "all")) == 48
    with pytest.raises(ValueError, match="DS1"):
        split_names(MITDB, "holdout")


@needs_nstdb
def test_ecg_task_with_rhythm_noise_copies_and_extra_data(tmp_path):
    """A simulated folder as train.data, NSTDB noise: every training record enters clean and
    as noisy copies, windows carry the three features, the extra folder adds its train split."""
    pytest.importorskip("torch")
    from qs4d.models.data.ecg_build import build
    from qs4d.models.ecg_task import ecg_task

    meta = build(tmp_path / "sim", seed=1, n_subjects=6, minutes=0.5)
    base = TrainConfig(task="ecg", data=str(tmp_path / "sim"), rhythm=4, seed=0)
    plain = ecg_task(base)
    noisy = ecg_task(base.replace(noise_data=str(NSTDB), noise_copies=2))
    extra = ecg_task(base.replace(extra_data=str(tmp_path / "sim")))
    assert plain.d_input == 5 and plain.frontend.rhythm
    n_train = sum(meta["counts"]["train"].values())
    # each window once clean and once gain/noise-augmented; oversampling adds minority windows
    assert len(plain.train[0]) >= 2 * (n_train - 40)
    assert len(noisy.train[0]) >= 2.9 * len(plain.train[0]) and len(extra.train[0]) > len(
        plain.train[0])
    assert np.array_equal(noisy.val[1], plain.val[1]) and np.array_equal(noisy.test[1],
                                                                         plain.test[1])
    x = noisy.train[0].numpy()
    assert np.isfinite(x).all() and np.abs(x[..., 1:3]).max() <= 2.0
    assert x[..., 3].min() >= 0 and x[..., 3].max() <= 3.0 and np.abs(x[..., 4]).max() <= 3.0


class RowIds:
    """A stand-in model whose logits row j carries j: probs[0] / probs[1] = j + 1."""

    def __init__(self):
        self.n = 0

    def accept(self, feats):
        out = np.zeros((len(feats), 5), np.float32)
        out[:, 0] = np.log1p(np.arange(self.n, self.n + len(feats)))
        self.n += len(feats)
        return out


def test_next_beat_decision_is_the_same_streamed_and_in_training(rec):
    """With beat_wait_s, each beat is read at the row where the detector decides the next beat
    (or beat_wait_s after it): streamed in random chunks, after a state round trip, and as the
    training windows cut them (`beat_windows`), the same rows; p of that row is the beat's
    following RR, p_prev its preceding one."""
    from qs4d.models.data.ecg_data import WindowConfig, windows_from_arrays
    from qs4d.runtime.rpeak import decision_samples

    cfg = ecg_frontend_config(decimate=4).replace(rhythm=9, beat_wait_s=1.0)
    fe = EcgFrontend(cfg)
    f = fe.process(rec.signal)  # (T, 10)
    at = decision_samples(fe.timed, FS)  # (m,)
    want = {int(r): int(a) // 4 for (r, _), a in zip(fe.timed, at)}
    r = np.asarray([b[0] for b in fe.timed])
    assert np.all(at >= [t for _, t in fe.timed]) and np.all(at <= np.maximum(
        r + FS, [t for _, t in fe.timed]))
    for seed in (0, 1):
        bs, events = BeatStream(RowIds(), cfg), []
        for i, c in enumerate(chunks(rec.signal, seed, top=3000)):
            if i == 5:  # a state round trip mid-record
                st = bs.state()
                bs = BeatStream(bs.model, cfg)
                bs.restore(st)
            events += bs.accept(c)
        got = {e.sample: int(round(e.probs[0] / e.probs[1])) - 1 for e in events}
        assert got and got == {k: v for k, v in want.items() if k in got}
        assert len(got) >= len(want) - 1  # at most the last beat still waits at the end
    # the row read for a beat with a following beat within 1 s holds that RR as p
    rr = np.diff(np.sort(r))
    j = [want[int(b)] for b in np.sort(r)[1:-1]]
    seen_p = f[j, 1]  # p of the row read for beat i: RR(i, i+1) / median - 1
    early = rr[1:] < 0.8 * np.median(rr)  # (beats whose next beat is early)
    assert np.all(seen_p[early] < 0) and np.all(f[j, 9][early] < 1.0)  # e: just after it
    # training cuts the window that ends at the same row
    wcfg = WindowConfig(frontend=cfg, context_s=1.5)
    bw = windows_from_arrays([("sim", rec.signal, rec.r_peaks, rec.labels)], wcfg)
    assert len(bw) >= len(rec.r_peaks) - 4
    for rp, end in zip(bw.r_peak, bw.end):
        near = min(want, key=lambda k: abs(k - rp))
        assert abs(near - rp) <= 0.15 * FS and end == want[near]
