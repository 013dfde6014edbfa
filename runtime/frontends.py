"""Front ends by kind: raw samples -> one model step's features. Each has
`process(chunk) -> (T_out, F)`, `reset()`, `state() -> dict`, `restore(dict)`."""

from __future__ import annotations

import numpy as np

from .errors import InputError
from .spec import Spec


class Identity:
    """Each input row is one step's features (F = d_input), optionally normalized."""

    def __init__(self, spec: Spec):
        self.F = spec.model.d_input
        fe = spec.frontend
        self.mean = np.asarray(fe.norm_mean, np.float32) if fe.norm_mean else None
        self.std = np.asarray(fe.norm_std, np.float32) if fe.norm_std else None

    def process(self, chunk: np.ndarray) -> np.ndarray:
        a = np.asarray(chunk, np.float32)
        if a.ndim == 1:
            a = a[:, None]  # (T, 1)
        if a.ndim != 2 or a.shape[1] != self.F:
            raise InputError(f"chunk shape {np.shape(chunk)}: expected (T, {self.F})"
                             + (" or (T,)" if self.F == 1 else ""))
        if self.mean is not None:
            a = (a - self.mean) / self.std
        return a

    def reset(self) -> None:
        pass

    def state(self) -> dict:
        return {}

    def restore(self, state: dict) -> None:
        if state:
            raise InputError(f"Identity front end has no state, got keys {sorted(state)}")


def make_frontend(spec: Spec):
    kind = spec.frontend.kind
    if kind == "identity":
        return Identity(spec)
    if kind == "logmel":
        from .frontend import LogMel

        return LogMel(spec.frontend)
    if kind == "ecg":
        from .ecg import EcgFrontend

        return EcgFrontend(spec.frontend)
    raise ValueError(f"unknown front end kind {kind!r}")
