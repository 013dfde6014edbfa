"""WFDB records: the reader (lead choice, AAMI mapping, resampling), the MIT-BIH splits and the
simulated data set builder, written and read back through wfdb."""

from __future__ import annotations

import json

import numpy as np
import pytest

from qs4d.models.data import ecg_sim as es
from qs4d.models.data import wfdb_io
from qs4d.models.data.ecg_data import WindowConfig, load_split, split_records

wfdb = pytest.importorskip("wfdb", reason="wfdb is an optional extra: pip install 'qs4d[ecg]'")

BEATS = list("NLRejaAJSVEF/fQ")
WANT = list("NNNNNSSSSVVFQQQ")


def write_two_lead(tmp_path, fs: int, n: int = 6000):
    """A record with leads V5 and MLII, one beat of every symbol and non-beat annotations."""
    t = np.arange(n) / fs
    beats = np.linspace(0.5, n / fs - 0.5, len(BEATS))
    mlii = sum(1.2 * np.exp(-0.5 * ((t - b) / 0.01) ** 2) for b in beats) + 0.1 * np.sin(t)
    v5 = -0.5 * mlii
    sig = np.stack([v5, mlii], axis=1)  # (L, 2)
    wfdb.wrsamp("rec1", fs=fs, units=["mV", "mV"], sig_name=["V5", "MLII"], p_signal=sig,
                fmt=["212", "212"], adc_gain=[200.0, 200.0], baseline=[0, 0],
                write_dir=str(tmp_path))
    samples = np.rint(beats * fs).astype(np.int64)
    ann_s = np.sort(np.concatenate([samples, samples[[2, 7]] - 3, [n - 10]]))
    ann_sym = []
    it = iter(BEATS)
    for s in ann_s:
        ann_sym.append(next(it) if s in samples else ("+" if s < n - 10 else "~"))
    aux = ["(N" if a == "+" else "" for a in ann_sym]
    wfdb.wrann("rec1", "atr", ann_s, symbol=ann_sym, aux_note=aux, fs=fs,
               write_dir=str(tmp_path))
    return mlii, samples


def test_read_record_picks_mlii_and_maps_aami(tmp_path):
    mlii, samples = write_two_lead(tmp_path, 360)
    r = wfdb_io.read_record(tmp_path / "rec1")
    assert r.lead == "MLII" and r.fs == 360 and r.signal.dtype == np.float32
    assert np.abs(r.signal - mlii).max() <= 0.5 / 200 + 1e-6  # half an ADC step
    assert r.symbols == tuple(BEATS) and np.array_equal(r.r_peaks, samples)
    assert ["NSVFQ"[k] for k in r.labels] == WANT
    v5 = wfdb_io.read_record(tmp_path / "rec1", lead="V5")
    assert np.allclose(v5.signal, -0.5 * mlii, atol=0.01)
    with pytest.raises(ValueError, match="V1.*'V5', 'MLII'"):
        wfdb_io.read_record(tmp_path / "rec1", lead="V1")


def test_read_record_resamples_to_360(tmp_path):
    mlii, samples = write_two_lead(tmp_path, 250, n=5000)
    r = wfdb_io.read_record(tmp_path / "rec1")
    assert r.fs == 360 and len(r.signal) == 5000 * 360 // 250
    assert np.array_equal(r.r_peaks, np.rint(samples * 360 / 250).astype(np.int64))
    for p in r.r_peaks:  # the annotations still sit on the peaks of the resampled signal
        assert abs(int(np.argmax(r.signal[p - 10: p + 11])) - 10) <= 1


def test_mitbih_splits():
    ds1, ds2 = set(wfdb_io.DS1), set(wfdb_io.DS2)
    assert len(ds1) == len(ds2) == 22 and not ds1 & ds2
    assert not (ds1 | ds2) & set(wfdb_io.PACED)
    all_mitdb = {str(n) for n in list(range(100, 125)) + list(range(200, 235))}
    assert ds1 | ds2 | set(wfdb_io.PACED) <= all_mitdb and len(ds1 | ds2 | set(wfdb_io.PACED)) == 48
    assert wfdb_io.mitbih_split("DS1") == wfdb_io.DS1
    with pytest.raises(ValueError, match="DS3"):
        wfdb_io.mitbih_split("DS3")


def test_build_data_set_and_read_it_back(tmp_path, capsys):
    from qs4d.cli import main

    out = tmp_path / "ecg"
    assert main(["data", "ecg", "--out", str(out), "--subjects", "12", "--minutes", "0.5",
                 "--seed", "3"]) == 0
    printed = capsys.readouterr().out
    assert "validation" in printed and "wrote 12 records" in printed
    names = (out / "RECORDS").read_text().split()
    meta = json.loads((out / "splits.json").read_text())
    parts = [meta[k] for k in ("train", "validation", "test")]
    assert sorted(sum(parts, [])) == sorted(names) and len(names) == 12  # one split each
    assert all(parts)
    subjects = es.make_cohort(12, seed=3)
    for subj in subjects[:3]:
        sim = es.simulate(subj, 0.5)
        r = wfdb_io.read_record(out / f"sim{subj.index:03d}")
        assert np.array_equal(r.r_peaks, sim.r_peaks) and np.array_equal(r.labels, sim.labels)
        assert np.abs(r.signal - sim.signal).max() <= 0.5 / 200 + 1e-6
    counts = sum(np.array(list(meta["counts"][k].values())) for k in ("train", "validation", "test"))
    sims = [es.simulate(s, 0.5) for s in subjects]
    assert np.array_equal(counts, sum(np.bincount(s.labels, minlength=5) for s in sims))
    assert split_records(out, "test") == meta["test"]
    w = load_split(out, "validation", WindowConfig())
    X, y, rid = w.arrays()
    assert X.shape == (len(y), 990, 1) and X.dtype == np.float32 and y.dtype == np.int64
    assert set(rid) <= set(range(len(meta["validation"]))) and len(y) > 20
    with pytest.raises(ValueError, match="holdout"):
        split_records(out, "holdout")


def test_split_records_of_an_mitbih_folder(tmp_path):
    for name in wfdb_io.DS1[:3]:
        (tmp_path / f"{name}.hea").write_text("")
    with pytest.raises(FileNotFoundError, match="split 'train'.*DS1"):
        split_records(tmp_path, "train")
    for name in wfdb_io.DS1:
        (tmp_path / f"{name}.hea").write_text("")
    assert split_records(tmp_path, "DS1") == list(wfdb_io.DS1)
    train, val = split_records(tmp_path, "train"), split_records(tmp_path, "validation")
    assert sorted(train + val) == sorted(wfdb_io.DS1) and not set(train) & set(val)
