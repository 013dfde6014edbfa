"""Read WFDB records with beat annotations (MIT-BIH layout) into AAMI-labelled arrays.

`wfdb` is an optional extra (`pip install 'qs4d[ecg]'`) and is imported inside the functions
that need it. A record is read on one lead (MLII by default), in millivolts, resampled to
360 Hz when it was recorded at another rate; its beat annotations are mapped to the five AAMI
classes and every non-beat annotation (rhythm '+', noise '~', comments ...) is dropped.

Inter-patient split of the MIT-BIH Arrhythmia Database (de Chazal, O'Dwyer and Reilly 2004):
DS1 for training, DS2 for testing, 22 records each; the paced records 102, 104, 107 and 217
are in neither.

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

log = logging.getLogger(__name__)

FS = 360
# MIT-BIH beat symbol -> AAMI class (EC57).
AAMI_OF_SYMBOL = {
    **dict.fromkeys("NLRej", "N"),
    **dict.fromkeys("aAJS", "S"),
    **dict.fromkeys("VE", "V"),
    "F": "F",
    **dict.fromkeys("/fQ", "Q"),
}
DS1 = ("101", "106", "108", "109", "112", "114", "115", "116", "118", "119", "122", "124",
       "201", "203", "205", "207", "208", "209", "215", "220", "223", "230")
DS2 = ("100", "103", "105", "111", "113", "117", "121", "123", "200", "202", "210", "212",
       "213", "214", "219", "221", "222", "228", "231", "232", "233", "234")
PACED = ("102", "104", "107", "217")
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


def mitbih_split(split: str) -> tuple:
    """De Chazal's inter-patient record lists: 'DS1' (train) or 'DS2' (test)."""
    splits = {"DS1": DS1, "DS2": DS2}
    if split not in splits:
        raise ValueError(f"mitbih_split: 'DS1' or 'DS2', got {split!r}")
    return splits[split]
