"""Streaming ECG beat classification as a training task: beat windows of a WFDB folder
(built by `qs4d data ecg`, or real MIT-BIH with DS1/DS2), cut from the runtime's own front-end
features, labelled with the AAMI classes N, S, V, F, Q.

Glossary: n beats, L window length (feature rows), K = 5 classes.

Each window ends at the row the streaming runtime reads for the beat (R + decision delay), so
`pooling = "last"` trains exactly the posterior the device reports. Minority classes are
oversampled in training to at most a quarter of the N count, and every training window gets
one augmented copy (gain and noise).
"""

from __future__ import annotations

import numpy as np
import torch

from qs4d.runtime.ecg import ecg_frontend_config
from qs4d.runtime.spec import TrainConfig

from .data.ecg_data import WindowConfig, load_split
from .tasks import Task

AAMI = ("N", "S", "V", "F", "Q")
DECIMATE = 4  # 360 Hz -> 90 Hz model steps


def window_config() -> WindowConfig:
    return WindowConfig(frontend=ecg_frontend_config(decimate=DECIMATE))


def _oversample(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices that repeat each minority class up to min(4x, N/4) of its count."""
    counts = np.bincount(y, minlength=len(AAMI))
    target = counts.max() // 4
    idx = [np.arange(len(y))]
    for k, c in enumerate(counts):
        if 0 < c < target:
            extra = min(target, 4 * c) - c
            idx.append(rng.choice(np.flatnonzero(y == k), extra, replace=True))
    return np.concatenate(idx)


def augment(x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator) -> tuple:
    """The windows plus one copy with a random gain (0.6-1.5x) and white noise (0-0.05 mV)."""
    n = len(x)
    gain = torch.from_numpy(rng.uniform(0.6, 1.5, (n, 1, 1)).astype(np.float32))
    sigma = torch.from_numpy(rng.uniform(0.0, 0.05, (n, 1, 1)).astype(np.float32))
    noise = torch.from_numpy(rng.standard_normal(x.shape).astype(np.float32))
    return torch.cat([x, x * gain + sigma * noise]), torch.cat([y, y])


def ecg_task(cfg: TrainConfig) -> Task:
    if not cfg.data:
        raise ValueError("the ecg task needs train.data = a folder built by `qs4d data ecg`")
    wcfg = window_config()
    split = {s: load_split(cfg.data, s, wcfg) for s in ("train", "validation", "test")}
    rng = np.random.default_rng(cfg.seed)

    def tensors(bw, idx=None):
        x = bw.x(idx)[..., None]  # (n, L, 1)
        y = bw.y if idx is None else bw.y[idx]
        return torch.from_numpy(x), torch.from_numpy(np.asarray(y, np.int64))

    tr = split["train"]
    idx = _oversample(tr.y, rng)
    if cfg.max_train and cfg.max_train < len(idx):
        idx = rng.choice(idx, cfg.max_train, replace=False)
    x, y = tensors(tr, idx)
    return Task(train=augment(x, y, rng), val=tensors(split["validation"]),
                test=tensors(split["test"]), labels=AAMI, frontend=wcfg.frontend)
