"""Learning tasks: tensors for training and evaluation, with their front end and labels.

Glossary: n examples, L sequence length, F features.

A task is `Task(train, val, test, labels, frontend, extra)`; each split is (X (n, L, F) float32,
y (n,) int64). `extra` holds further evaluation splits by name (for example the real-speaker
split of keyword spotting).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from qs4d.runtime.spec import FrontendConfig, TrainConfig


@dataclass
class Task:
    train: tuple
    val: tuple
    test: tuple
    labels: tuple
    frontend: FrontendConfig
    extra: dict = field(default_factory=dict)
    augment: Callable | None = None  # (X batch, torch.Generator) -> X batch, training only
    score_test: bool = True  # False: training never scores the test split (a report does)

    @property
    def d_input(self) -> int:
        return int(self.train[0].shape[-1])


def toy_sines(n: int, L: int = 64, K: int = 10, noise: float = 0.6, seed: int = 0):
    """Noisy sines: class k has frequency 2 + k cycles per L samples, random phase and gain."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, n)  # (n,)
    freq = (2.0 + y + rng.uniform(-0.25, 0.25, n)) / L  # (n,)
    phase = rng.uniform(0, 2 * np.pi, n)  # (n,)
    gain = rng.uniform(0.5, 1.5, n)  # (n,)
    t = np.arange(L)  # (L,)
    x = gain[:, None] * np.sin(2 * np.pi * freq[:, None] * t + phase[:, None])  # (n, L)
    x = x + noise * rng.standard_normal((n, L))  # (n, L)
    return torch.tensor(x[..., None], dtype=torch.float32), torch.tensor(y, dtype=torch.int64)


def toy_task(cfg: TrainConfig) -> Task:
    n = cfg.max_train or 4000
    labels = tuple(f"f{2 + k}" for k in range(10))
    return Task(train=toy_sines(n, seed=cfg.seed), val=toy_sines(1000, seed=cfg.seed + 101),
                test=toy_sines(1000, seed=cfg.seed + 202), labels=labels,
                frontend=FrontendConfig(kind="identity", sample_rate=64))


def load_task(cfg: TrainConfig) -> Task:
    if cfg.task == "toy":
        return toy_task(cfg)
    if cfg.task == "kws":
        from .kws_task import kws_task

        return kws_task(cfg)
    if cfg.task in ("sc12", "digits"):
        from .real_kws_task import real_kws_task

        return real_kws_task(cfg)
    if cfg.task == "ecg":
        from .ecg_task import ecg_task

        return ecg_task(cfg)
    raise ValueError(f"unknown task {cfg.task!r}")
