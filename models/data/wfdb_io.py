"""Read WFDB records with beat annotations (MIT-BIH layout) into AAMI-labelled arrays.

`wfdb` is an optional extra (`pip install 'qs4d[ecg]'`) and is imported inside the functions
that need it. A record is read on one lead (MLII by default), in millivolts, resampled to
360 Hz when it was recorded at another rate; its beat annotations are mapped to the five AAMI
classes and every non-beat annotation (rhythm '+', noise '~', comments ...) is dropped.

The record lists (DS1, DS2, the validation part of DS1) are `qs4d.runtime.mitbih`'s.

Glossary: L samples, n beats.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

from qs4d.runtime.ecg import AAMI_CLASSES
from qs4d.runtime.mitbih import (  # noqa: F401  (re-exported: the data side's names)
    AAMI_OF_SYMBOL,
    DS1,
    DS1_TRAIN,
    DS1_VALIDATION,
    DS2,
    PACED,
    mitbih_split,
)

log = logging.getLogger(__name__)

FS = 360
LEAD_ALIASES = {"MLII": ("MLII", "ML2", "II")}


@dataclass(frozen=True)
class BeatRecord:
    """One lead of one record with its beats; signal (L,) float32 mV at fs."""

    name: str
    fs: int
    lead: str
    signal: np.ndarray  # (L,) float32 mV
    r_peaks: np.ndarray  # (n,) int64 sample of each beat annotation
    labels: np.ndarray  # (n,) int64 index into AAMI_CLASSES
    symbols: tuple  # (n,) the original beat symbols


def _pick_lead(sig_names: list[str], lead: str | int, where: str) -> int:
    if isinstance(lead, int):
        if not 0 <= lead < len(sig_names):
            raise ValueError(f"{where}: lead index {lead} out of range; leads {sig_names}")
        return lead
    for name in LEAD_ALIASES.get(lead, (lead,)):
        if name in sig_names:
            return sig_names.index(name)
    raise ValueError(f"{where}: no lead {lead!r}; the record has {sig_names}")


def resample(signal: np.ndarray, r_peaks: np.ndarray, fs_in: float, fs_out: int):
    """Polyphase resampling of signal (L,) and rescaling of sample indices (n,) to fs_out."""
    ratio = Fraction(fs_out) / Fraction(fs_in).limit_denominator(1000)
    y = resample_poly(np.asarray(signal, np.float64), ratio.numerator, ratio.denominator)  # (L',)
    r = np.rint(np.asarray(r_peaks, np.float64) * float(ratio)).astype(np.int64)  # (n,)
    return y.astype(np.float32), np.clip(r, 0, len(y) - 1)


def read_record(path: str | Path, lead: str | int = "MLII", fs: int = FS,
                annotator: str = "atr") -> BeatRecord:
    """Read `path` (a record path without extension) and its `annotator` file."""
    import wfdb

    path = Path(path)
    where = str(path)
    header = wfdb.rdheader(str(path))
    ch = _pick_lead(list(header.sig_name), lead, where)
    rec = wfdb.rdrecord(str(path), channels=[ch])
    x = np.asarray(rec.p_signal[:, 0], np.float64)  # (L,)
    if str(rec.units[0]).lower() in ("uv", "µv"):
        x = x / 1000.0
    elif str(rec.units[0]).lower() not in ("mv", ""):
        raise ValueError(f"{where}: lead {rec.sig_name[0]!r} is in {rec.units[0]!r}, expected mV")
    x = np.nan_to_num(x, nan=0.0)  # WFDB marks invalid samples as NaN
    ann = wfdb.rdann(str(path), annotator)
    sym = np.asarray(ann.symbol)
    beat = np.isin(sym, list(AAMI_OF_SYMBOL))
    r = np.asarray(ann.sample, np.int64)[beat]  # (n,)
    symbols = tuple(str(s) for s in sym[beat])
    labels = np.array([AAMI_CLASSES.index(AAMI_OF_SYMBOL[s]) for s in symbols], np.int64)
    if rec.fs != fs:
        log.info("%s: resampling %s Hz -> %s Hz", where, rec.fs, fs)
        x, r = resample(x, r, rec.fs, fs)
    return BeatRecord(name=path.name, fs=fs, lead=rec.sig_name[0],
                      signal=np.asarray(x, np.float32), r_peaks=r, labels=labels, symbols=symbols)


def record_names(data_dir: str | Path) -> list[str]:
    """Names listed in data_dir/RECORDS (one per line), else every *.hea in data_dir."""
    d = Path(data_dir)
    listing = d / "RECORDS"
    if listing.exists():
        return [s.strip() for s in listing.read_text().splitlines() if s.strip()]
    names = sorted(p.stem for p in d.glob("*.hea"))
    if not names:
        raise FileNotFoundError(f"{d}: no RECORDS file and no .hea headers")
    return names


def read_noise(data_dir: str | Path, fs: int = FS) -> dict:
    """Every channel of every WFDB record in data_dir (e.g. the MIT-BIH Noise Stress Test
    records bw, em, ma) in mV at fs: {"name:channel": (L,) float32}."""
    import wfdb

    out = {}
    for name in record_names(data_dir):
        rec = wfdb.rdrecord(str(Path(data_dir) / name))
        for c, lead in enumerate(rec.sig_name):
            x = np.nan_to_num(np.asarray(rec.p_signal[:, c], np.float64))
            if rec.fs != fs:
                x, _ = resample(x, np.zeros(0, np.int64), rec.fs, fs)
            out[f"{name}:{lead}"] = np.asarray(x, np.float32)
    return out
