"""A torch Dataset over a `speech_commands.KwsIndex`: clip -> augment -> log-mel frames.

The features come from `runtime.frontend.LogMel.frames`, the code the device runs, so training
and inference share one front end. Augmentation draws from a Generator seeded by
(seed, epoch, item), so a run is reproducible whatever the worker count or order.

Glossary: L samples per clip, T frames, F mel features.
"""

from __future__ import annotations

import numpy as np
import torch

from qs4d.runtime.frontend import LogMel
from qs4d.runtime.spec import FrontendConfig

from .augment import Augmenter
from .speech_commands import SAMPLE_RATE, KwsIndex, load_clip


class KwsDataset(torch.utils.data.Dataset):
    """`ds[i]` -> (features (T, F) float32 tensor, label int)."""

    def __init__(self, index: KwsIndex, frontend: FrontendConfig,
                 augment: Augmenter | None = None, seed: int = 0, length: int = SAMPLE_RATE):
        if frontend.sample_rate != SAMPLE_RATE:
            raise ValueError(f"KwsDataset: front end at {frontend.sample_rate} Hz, clips are "
                             f"{SAMPLE_RATE} Hz")
        self.index, self.augment, self.seed, self.length = index, augment, seed, length
        self.logmel = LogMel(frontend)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Draw new augmentations: call once per epoch before iterating."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.index)

    def waveform(self, i: int) -> np.ndarray:
        """Clip i after augmentation, (L,) float32."""
        x = load_clip(self.index, i, self.length)  # (L,)
        if self.augment is not None:
            x = self.augment(x, np.random.default_rng([self.seed, self.epoch, i]))  # (L,)
        return x

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        feats = self.logmel.frames(self.waveform(i))  # (T, F)
        return torch.from_numpy(feats), int(self.index.labels[i])
