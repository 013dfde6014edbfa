"""`qs4d data ecg --out DIR [--seed S] [--subjects N] [--minutes M]`: a simulated ECG data set;
`qs4d data ecg --mitdb DIR [--download]`: check (or fetch) the real MIT-BIH Arrhythmia Database.

Writes one WFDB record per simulated subject (`simNNN.hea` / `.dat`, lead MLII, format 212,
200 ADC units per mV, 360 Hz) with a beat annotation file `.atr` in MIT-BIH symbols
(N, A, V, F, /) and rhythm changes as '+' annotations with MIT-BIH notes ((N, (B, (T, (SVTA,
(VT, (P); then `RECORDS` (every record) and `splits.json`: an inter-patient split (a subject
is in exactly one of train / validation / test), stratified by subject profile so that every
split sees every kind of arrhythmia, with the beat counts per class and split.

The same layout as the MIT-BIH Arrhythmia Database, so `wfdb_io.read_record` and
`ecg_data` read both.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from qs4d.runtime.ecg import AAMI_CLASSES

from .ecg_sim import FS, PROFILES, RHYTHMS, SimRecord, Subject, make_cohort, simulate

SPLITS = ("train", "validation", "test")
SPLIT_FILE = "splits.json"
ADC_GAIN = 200.0  # ADC units per mV, as MIT-BIH


def assign_splits(subjects: list[Subject], seed: int, val: float = 0.15,
                  test: float = 0.25) -> dict[str, list[int]]:
    """Subject indices per split, stratified by profile (>= 1 per split when a profile has 3)."""
    rng = np.random.default_rng([seed, 7])
    out: dict[str, list[int]] = {s: [] for s in SPLITS}
    for prof in PROFILES:
        idx = [s.index for s in subjects if s.profile == prof]
        idx = [idx[i] for i in rng.permutation(len(idx))]
        m = len(idx)
        n_test = max(1, int(round(test * m))) if m >= 2 else 0
        n_val = max(1, int(round(val * m))) if m >= 3 else 0
        out["test"] += idx[:n_test]
        out["validation"] += idx[n_test: n_test + n_val]
        out["train"] += idx[n_test + n_val:]
    return {k: sorted(v) for k, v in out.items()}


def record_name(i: int) -> str:
    return f"sim{i:03d}"


def write_record(rec: SimRecord, name: str, out: Path) -> None:
    """One WFDB record (header, format-212 signal, 'atr' annotations) in `out`."""
    import wfdb

    s = rec.subject
    x = np.clip(rec.signal.astype(np.float64), -10.2, 10.2)[:, None]  # (L, 1) 212 range
    wfdb.wrsamp(name, fs=rec.fs, units=["mV"], sig_name=["MLII"], p_signal=x, fmt=["212"],
                adc_gain=[ADC_GAIN], baseline=[0], write_dir=str(out),
                comments=[f"qs4d ecg_sim subject {s.index} seed {s.seed} profile {s.profile}",
                          f"sinus rate {60 / s.rr0:.1f} bpm"])
    sample, symbol, aux = [], [], []
    prev = -1
    for r, sym, code in zip(rec.r_peaks, rec.symbols, rec.rhythm):
        if code != prev and r > 0:  # rhythm change, one sample before its first beat
            sample.append(int(r) - 1)
            symbol.append("+")
            aux.append(RHYTHMS[code])
            prev = code
        sample.append(int(r))
        symbol.append(sym)
        aux.append("")
    wfdb.wrann(name, "atr", np.array(sample, np.int64), symbol=symbol, aux_note=aux,
               fs=rec.fs, write_dir=str(out))


def build(out: Path, seed: int, n_subjects: int, minutes: float) -> dict:
    """Simulate and write the whole data set; returns the contents of splits.json."""
    out.mkdir(parents=True, exist_ok=True)
    subjects = make_cohort(n_subjects, seed)
    split_of = {i: k for k, v in assign_splits(subjects, seed).items() for i in v}
    counts = {k: np.zeros(len(AAMI_CLASSES), np.int64) for k in SPLITS}
    bar = tqdm(subjects, "ecg records", disable=None)  # quiet when stderr is not a terminal
    for s in bar:
        rec = simulate(s, minutes, FS)
        write_record(rec, record_name(s.index), out)
        counts[split_of[s.index]] += np.bincount(rec.labels, minlength=len(AAMI_CLASSES))
        bar.set_postfix(record=record_name(s.index), refresh=False)
    names = [record_name(s.index) for s in subjects]
    (out / "RECORDS").write_text("\n".join(names) + "\n")
    meta = {
        **{k: [record_name(i) for i in sorted(i for i, v in split_of.items() if v == k)]
           for k in SPLITS},
        "profiles": {record_name(s.index): s.profile for s in subjects},
        "counts": {k: dict(zip(AAMI_CLASSES, map(int, v))) for k, v in counts.items()},
        "classes": list(AAMI_CLASSES), "fs": FS, "seed": seed, "minutes": minutes,
        "generator": "qs4d.models.data.ecg_sim",
    }
    (out / SPLIT_FILE).write_text(json.dumps(meta, indent=1) + "\n")
    return meta


def summary(meta: dict) -> str:
    """Beats per class and split, as a plain-text table."""
    rows = [f"{'split':<12}{'records':>8}" + "".join(f"{c:>8}" for c in AAMI_CLASSES)
            + f"{'total':>9}"]
    tot = np.zeros(len(AAMI_CLASSES), np.int64)
    for k in SPLITS:
        c = np.array([meta["counts"][k][a] for a in AAMI_CLASSES])
        tot += c
        rows.append(f"{k:<12}{len(meta[k]):>8}" + "".join(f"{v:>8d}" for v in c) + f"{c.sum():>9d}")
    share = "".join(f"{100 * v / max(1, tot.sum()):>7.1f}%" for v in tot)
    rows.append(f"{'all':<12}{sum(len(meta[k]) for k in SPLITS):>8}" + share + f"{tot.sum():>9d}")
    return "\n".join(rows)


def mitdb_counts(data: Path) -> dict:
    """{split: {class: beats}} of an MIT-BIH folder's training splits (annotations only)."""
    import wfdb

    from qs4d.runtime.mitbih import AAMI_OF_SYMBOL, mitbih_split

    counts = {}
    for split in SPLITS:
        c = dict.fromkeys(AAMI_CLASSES, 0)
        for name in mitbih_split(split):
            for sym in wfdb.rdann(str(data / name), "atr").symbol:
                if sym in AAMI_OF_SYMBOL:
                    c[AAMI_OF_SYMBOL[sym]] += 1
        counts[split] = c
    return counts


def check_mitdb(data: Path, download: bool) -> dict:
    """Make sure `data` holds every DS1 and DS2 record (downloading them from PhysioNet with
    wfdb when asked); the split metadata with beat counts, as `summary` prints it."""
    from qs4d.runtime.mitbih import DS1, DS2, mitbih_split

    need = [n for n in DS1 + DS2 if not all((data / f"{n}.{e}").exists()
                                            for e in ("hea", "dat", "atr"))]
    if need and download:
        import wfdb

        data.mkdir(parents=True, exist_ok=True)
        wfdb.dl_database("mitdb", str(data), records=need)
        need = [n for n in need if not (data / f"{n}.atr").exists()]
    if need:
        raise FileNotFoundError(f"{data}: MIT-BIH records missing: {need} (give --download to "
                                f"fetch them from PhysioNet)")
    meta = {k: list(mitbih_split(k)) for k in SPLITS}
    meta["counts"] = mitdb_counts(data)
    return meta


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="qs4d data ecg", description=__doc__.splitlines()[0])
    ap.add_argument("--mitdb", type=Path, help="an MIT-BIH Arrhythmia Database folder: check it "
                    "and print its inter-patient training splits (read in place, nothing is "
                    "written)")
    ap.add_argument("--download", action="store_true", help="with --mitdb: fetch missing "
                    "records from PhysioNet (needs a network)")
    ap.add_argument("--out", type=Path, help="output directory of a simulated data set")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--subjects", type=int, default=48, help="simulated subjects (records)")
    ap.add_argument("--minutes", type=float, default=30.0, help="minutes per record")
    a = ap.parse_args(argv)
    if a.mitdb is not None:
        meta = check_mitdb(a.mitdb, a.download)
        print(summary(meta))
        print(f"{a.mitdb}: train and validation are DS1 (validation: records "
              f"{', '.join(meta['validation'])}), test is DS2; train with train.data = "
              f"\"{a.mitdb}\" (models/recipes/ecg-mitdb.toml)")
        return 0
    if a.out is None:
        ap.error("give --out DIR (a simulated data set) or --mitdb DIR (real records)")
    if a.subjects < 1 or not a.minutes > 0:
        ap.error(f"need --subjects >= 1 and --minutes > 0, got {a.subjects}, {a.minutes}")
    t0 = time.time()
    meta = build(a.out, a.seed, a.subjects, a.minutes)
    print(summary(meta))
    print(f"wrote {a.subjects} records to {a.out} in {time.time() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
