"""Real ECG shipped with the runtime (numpy only; nothing is unpickled).

`data/record208.npz`: MIT-BIH Arrhythmia Database record 208, lead MLII, the first 5 minutes
at 360 Hz in mV, no beat labels (ODC-By 1.0; see data/README.md for attribution and origin).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

DATA_DIR = Path(__file__).resolve().parent / "data"
RECORD208 = DATA_DIR / "record208.npz"


def load_record208() -> tuple[np.ndarray, int]:
    """(signal (L,) float32 mV, fs) of the MIT-BIH record 208 excerpt; L = 108000, fs = 360."""
    with np.load(RECORD208, allow_pickle=False) as z:
        signal = np.asarray(z["signal"], dtype=np.float32)  # (L,)
        fs = int(z["fs"])
    if signal.ndim != 1 or not np.isfinite(signal).all():
        raise ValueError(f"{RECORD208}: signal must be finite with shape (L,), got {signal.shape}")
    return signal, fs


def record208_source() -> str:
    """The excerpt's origin and licence text, as stored in the file."""
    with np.load(RECORD208, allow_pickle=False) as z:
        return f"{z['source']}\nLicence: {z['licence']}"
