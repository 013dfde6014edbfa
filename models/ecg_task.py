"""Streaming ECG beat classification as a training task: beat windows of a WFDB folder
(built by `qs4d data ecg`, or real MIT-BIH with DS1/DS2), cut from the runtime's own front-end
features, labelled with the AAMI classes N, S, V, F, Q.

Glossary: n beats, L window length (feature rows), K = 5 classes.

Each window ends at the row the streaming runtime reads for the beat (R + decision delay), so
`pooling = "last"` trains exactly the posterior the device reports. Minority classes are
oversampled in training (`train.oversample` times, to at most a quarter of the N count), and every training window gets
one augmented copy (gain and white noise on the ECG feature).

Real records (MIT-BIH): `train.data` is the database folder; training reads DS1 less its
patient-held-out validation records, validation those records, test DS2 (never used to choose
anything; training does not score it: `qs4d ecg-report` streams it for a shipped model). `train.noise_copies` noisy copies of every training record (real NSTDB noise from
`train.noise_data`, random SNR, gain and baseline) go through the front end as whole records,
so the detector's rhythm features see the noise too; `train.extra_data` adds the train split
of a simulated folder. `train.rhythm` gives the model the front end's rhythm features;
`train.beat_wait_s` reads each beat when the next one is decided (its following RR known).
"""

from __future__ import annotations

import numpy as np
import torch

from qs4d.runtime.ecg import ecg_frontend_config
from qs4d.runtime.spec import TrainConfig

from .data.ecg_data import WindowConfig, is_mitbih, noisy_copy, split_items, windows_from_arrays
from .data.wfdb_io import read_noise
from .tasks import Task

AAMI = ("N", "S", "V", "F", "Q")
DECIMATE = 4  # 360 Hz -> 90 Hz model steps
BEAT_WAIT_CONTEXT_S = 1.5  # with train.beat_wait_s: window = 1.5 s + beat_wait_s (it ends at the
# next beat, so it holds the beat, its preceding RR and most of the one before)


def window_config(rhythm: int = 0, beat_wait_s: float = 0.0) -> WindowConfig:
    fe = ecg_frontend_config(decimate=DECIMATE).replace(rhythm=rhythm, beat_wait_s=beat_wait_s)
    return WindowConfig(frontend=fe, context_s=BEAT_WAIT_CONTEXT_S if beat_wait_s else 2.5)


def _oversample(y: np.ndarray, rng: np.random.Generator, times: int = 4) -> np.ndarray:
    """Indices that repeat each minority class up to min(times x its count, N/4)."""
    counts = np.bincount(y, minlength=len(AAMI))
    target = counts.max() // 4
    idx = [np.arange(len(y))]
    for k, c in enumerate(counts):
        if 0 < c < target:
            extra = min(target, times * c) - c
            idx.append(rng.choice(np.flatnonzero(y == k), extra, replace=True))
    return np.concatenate(idx)


def augment(x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator) -> tuple:
    """The windows (n, L, F) plus one copy with a random gain (0.6-1.5x) and white noise
    (0-0.05 mV) on the ECG feature (0); rhythm features are copied unchanged."""
    n = len(x)
    gain = torch.from_numpy(rng.uniform(0.6, 1.5, (n, 1)).astype(np.float32))
    sigma = torch.from_numpy(rng.uniform(0.0, 0.05, (n, 1)).astype(np.float32))
    noise = torch.from_numpy(rng.standard_normal(x.shape[:2]).astype(np.float32))
    x2 = x.clone()
    x2[..., 0] = x[..., 0] * gain + sigma * noise
    return torch.cat([x, x2]), torch.cat([y, y])


def train_items(cfg: TrainConfig, rng: np.random.Generator) -> list:
    """The training records (name, signal, r_peaks, labels): the train split of train.data,
    train.noise_copies noisy copies of each, and the train split of train.extra_data."""
    items = split_items(cfg.data, "train")
    if cfg.noise_copies:
        noise = read_noise(cfg.noise_data)
        items += [(f"{name}+noise{c}", noisy_copy(sig, noise, rng), r, lab)
                  for c in range(cfg.noise_copies) for name, sig, r, lab in list(items)]
    if cfg.extra_data:
        items += split_items(cfg.extra_data, "train")
    return items


DATA_FIELDS = ("data", "noise_data", "noise_copies", "extra_data", "rhythm", "beat_wait_s",
               "seed", "oversample", "max_train")  # the TrainConfig fields a task depends on
_last: dict = {}  # the latest task built in this process, by DATA_FIELDS


def ecg_task(cfg: TrainConfig) -> Task:
    """The task of cfg; a process building the same data again (a sweep's runs, which differ
    in quantization only) gets the task it built last instead of reading every record anew."""
    key = tuple(getattr(cfg, f) for f in DATA_FIELDS)
    if key not in _last:
        _last.clear()
        _last[key] = _build(cfg)
    return _last[key]


def _build(cfg: TrainConfig) -> Task:
    if not cfg.data:
        raise ValueError("the ecg task needs train.data = a folder built by `qs4d data ecg`")
    wcfg = window_config(cfg.rhythm, cfg.beat_wait_s)
    rng = np.random.default_rng(cfg.seed)
    split = {s: windows_from_arrays(split_items(cfg.data, s), wcfg)
             for s in ("validation", "test")}
    split["train"] = windows_from_arrays(train_items(cfg, rng), wcfg)

    def tensors(bw, idx=None):
        x = bw.x(idx)  # (n, L, F)
        y = bw.y if idx is None else bw.y[idx]
        return torch.from_numpy(x), torch.from_numpy(np.asarray(y, np.int64))

    tr = split["train"]
    idx = _oversample(tr.y, rng, cfg.oversample)
    if cfg.max_train and cfg.max_train < len(idx):
        idx = rng.choice(idx, cfg.max_train, replace=False)
    x, y = tensors(tr, idx)
    return Task(train=augment(x, y, rng), val=tensors(split["validation"]),
                test=tensors(split["test"]), labels=AAMI, frontend=wcfg.frontend,
                score_test=not is_mitbih(cfg.data))
