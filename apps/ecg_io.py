"""ECG signal sources for `qs4d ecg`: the bundled record 208 excerpt, WFDB records (with their
beat annotations when present), CSV files and text on stdin; chunked at real-time pace or as
fast as possible.

Glossary: L samples, n annotated beats.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qs4d.runtime.errors import InputError, UsageError
from qs4d.runtime.mitbih import AAMI_OF_SYMBOL
from qs4d.runtime.records import load_record208
from qs4d.runtime.spec import MAX_SAMPLE_RATE

from .sources import Chunk, paced_chunks, resample

MAX_MV = 1e6  # |sample| in mV; an ECG is a few mV, a saturated amplifier some hundreds


@dataclass(frozen=True)
class Record:
    name: str
    signal: np.ndarray  # (L,) float32, mV, at fs
    fs: int
    ref_samples: np.ndarray | None = None  # (n,) annotated beats (samples at fs)
    ref_labels: np.ndarray | None = None  # (n,) AAMI letters

    @property
    def duration_s(self) -> float:
        return len(self.signal) / self.fs


def record208() -> Record:
    x, fs = load_record208()
    return Record("mitdb-208 (first 5 min, MLII; a DS1 patient, in the ECG models' training set)", x, fs)


def read_wfdb(path: str | Path, lead: str = "MLII") -> Record:
    """A WFDB record (header path without extension); beats from PATH.atr when it exists."""
    import wfdb

    path = str(path)
    for ext in (".hea", ".dat"):
        if path.endswith(ext):
            path = path[: -len(ext)]
    try:
        rec = wfdb.rdrecord(path)
    except FileNotFoundError as e:
        raise InputError(f"{path}: no such WFDB record ({e.filename or path})") from None
    except (ValueError, IndexError, KeyError, TypeError, EOFError, AttributeError) as e:
        raise InputError(f"{path}: cannot read as a WFDB record ({type(e).__name__}: "
                         f"{e})") from None
    if rec.p_signal is None or not rec.fs or not 1 <= rec.fs <= MAX_SAMPLE_RATE:
        raise InputError(f"{path}: no physical signal or a rate of {rec.fs} Hz")
    names = list(rec.sig_name or [])
    ch = names.index(lead) if lead in names else 0
    x = np.asarray(rec.p_signal[:, ch], np.float32)  # (L,)
    if not np.isfinite(x).all():
        x = np.nan_to_num(x)
    ref = labels = None
    if Path(path + ".atr").exists():
        ann = wfdb.rdann(path, "atr")
        keep = [i for i, s in enumerate(ann.symbol) if s in AAMI_OF_SYMBOL]
        ref = np.asarray(ann.sample, np.int64)[keep]
        labels = np.asarray([AAMI_OF_SYMBOL[ann.symbol[i]] for i in keep])
    return Record(f"{Path(path).name} ({names[ch] if names else 'lead 0'})", x, int(rec.fs),
                  ref, labels)


def _parse_rows(lines: list[str]) -> np.ndarray:
    """Numeric rows of a CSV (comma, semicolon, tab or space separated); a header is skipped."""
    rows = []
    for i, line in enumerate(lines):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        parts = s.replace(";", ",").replace("\t", ",").replace(" ", ",").split(",")
        try:
            row = [float(p) for p in parts if p != ""]
        except ValueError:
            if rows:
                raise InputError(f"line {i + 1}: not numeric: {s[:60]!r}") from None
            continue  # a header
        if not all(math.isfinite(v) for v in row):
            raise InputError(f"line {i + 1}: not a finite number: {s[:60]!r} (ECG samples "
                             f"must be finite; fill or cut the gap first)")
        if rows and len(row) != len(rows[0]):
            raise InputError(f"line {i + 1}: {len(row)} columns, the lines before have "
                             f"{len(rows[0])}")
        rows.append(row)
    if not rows:
        raise InputError("no numeric rows")
    return np.asarray(rows, np.float64)  # (L, columns)


def read_csv(path: str | Path, fs: int | None) -> Record:
    """One column: samples in mV at fs. Two or more: time (s) and mV; fs from the times."""
    try:
        a = _parse_rows(Path(path).read_text(errors="replace").splitlines())
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror or e})") from None
    except InputError as e:
        raise InputError(f"{path}: {e}") from None
    if a.shape[1] == 1:
        if fs is None:
            raise UsageError(f"{path}: one column of samples; give its rate with --fs")
        return Record(Path(path).name, _mv(a[:, 0], path), int(fs))
    dt = np.diff(a[:, 0])
    if not len(dt) or not (dt > 0).all():
        raise InputError(f"{path}: first column must be increasing times in seconds")
    rate = int(round(1.0 / float(np.median(dt))))
    if not 1 <= rate <= MAX_SAMPLE_RATE:
        raise InputError(f"{path}: the times give {rate} Hz, expected 1..{MAX_SAMPLE_RATE}")
    return Record(Path(path).name, _mv(a[:, 1], path), rate)


def _mv(x: np.ndarray, where) -> np.ndarray:
    """float32 millivolts; values beyond float32 are refused, not made infinite."""
    if len(x) and np.abs(x).max() > MAX_MV:
        raise InputError(f"{where}: a sample of {np.abs(x).max():.3g} mV; ECG in millivolts "
                         f"stays within +-{MAX_MV:g}")
    return x.astype(np.float32)


def conform(rec: Record, fs: int) -> Record:
    """The record at the model's rate (resampled; annotation samples rescaled)."""
    if rec.fs == fs:
        return rec
    x = resample(rec.signal, rec.fs, fs)
    ref = None if rec.ref_samples is None else np.rint(rec.ref_samples * fs / rec.fs).astype(
        np.int64)
    return Record(f"{rec.name} @ {rec.fs}->{fs} Hz", x, fs, ref, rec.ref_labels)


def chunks(x: np.ndarray, fs: int, chunk_s: float, realtime: bool):
    """Chunks of a whole signal; at real-time pace each is yielded when its last sample would
    have been acquired."""
    return paced_chunks(x, fs, max(1, int(round(chunk_s * fs))), realtime)


def text_chunks(f, fs: int, chunk_s: float):
    """Samples in mV, one number per line (or the last of comma-separated values), from a
    text stream; paced by the producer. A line that is not a finite number is an InputError
    naming it."""
    n = max(1, int(round(chunk_s * fs)))
    buf: list[float] = []
    seen = 0
    for i, line in enumerate(f):
        s = line.strip()
        if not s:
            continue
        try:
            v = float(s.split(",")[-1])
        except ValueError:
            raise InputError(f"stdin line {i + 1}: not a number: {s[:60]!r}") from None
        if not math.isfinite(v) or abs(v) > MAX_MV:
            raise InputError(f"stdin line {i + 1}: {s[:60]!r} is not a finite sample within "
                             f"+-{MAX_MV:g} mV")
        buf.append(v)
        if len(buf) == n:
            seen += n
            yield Chunk(np.asarray(buf, np.float32), seen / fs, time.perf_counter())
            buf = []
    if buf:
        seen += len(buf)
        yield Chunk(np.asarray(buf, np.float32), seen / fs, time.perf_counter())
