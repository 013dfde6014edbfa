"""Helpers shared by the streaming ECG stages (`ecg.py`, `rpeak.py`): sample checking and
validated state restore.

Glossary: L samples.
"""

from __future__ import annotations

import numpy as np

from .errors import InputError

F64 = np.float64


def _samples(x: np.ndarray, what: str) -> np.ndarray:
    """float64 (L,) from a (L,) or (L, 1) float array of finite samples (NaN or Inf would
    stay in the recursive filters' state for good: refused, naming the first)."""
    x = np.asarray(x)
    if x.ndim == 2 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 1 or not np.issubdtype(x.dtype, np.floating):
        raise InputError(f"{what}: expected float samples of shape (L,) or (L, 1), got "
                         f"{x.dtype} {x.shape}")
    bad = ~np.isfinite(x)
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(f"{what}: sample {i} of the chunk is {x[i]} ({int(bad.sum())} "
                         f"non-finite sample(s)); ECG samples must be finite")
    return x.astype(F64, copy=False)


def _check_state(state: dict, like: dict, what: str) -> dict:
    if not isinstance(state, dict) or set(state) != set(like):
        got = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise InputError(f"{what}.restore: expected keys {sorted(like)}, got {got}")
    out = {}
    for k, ref in like.items():
        v = np.asarray(state[k])
        if v.dtype != ref.dtype or (v.shape != ref.shape and k not in _VAR_SHAPES) or (
                v.ndim != np.ndim(ref)):
            raise InputError(f"{what}.restore: {k} must be {ref.dtype} {ref.shape}, got "
                             f"{v.dtype} {v.shape}")
        if v.dtype.kind == "f" and not np.all(np.isfinite(v)):
            raise InputError(f"{what}.restore: {k} holds NaN or Inf")
        out[k] = v.copy()
    return out


_VAR_SHAPES = {"queue", "noise", "pending", "ring", "at", "decided"}  # state arrays with a variable first axis
