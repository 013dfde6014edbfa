"""Speaker and channel augmentation of log-mel features, drawn fresh for every training batch.

Glossary: B clips in a batch, T frames, F mel bands.

The cached features hold a fixed set of waveform augmentations (`data/augment.py`). What they
cannot vary per epoch, and what separates the synthetic training voices from a real speaker, is
timbre: the vocal tract's formant positions and the spectral colour of voice, room and channel.
Two cheap transforms on the log-mel frames vary both for every clip of every batch:

- warp (VTLP, Jaitly & Hinton 2013): the spectrum is read at f / a for a factor a uniform in
  [1 - warp, 1 + warp], which moves every formant by the factor a (a longer or shorter vocal
  tract). Each band's centre frequency is mapped to the source frequency, and the log energy
  there is interpolated linearly between the neighbouring bands;
- eq: a smooth random gain curve, sum_k g_k cos(pi k (f + 0.5) / F) for k = 1..3 with
  g_k ~ N(0, (eq_db / sqrt(3))^2) dB, added in the log domain (a microphone, a room, a voice
  brighter or darker than the training voices). eq_db is the curve's RMS over k.

Both act on the un-normalized log-mel (natural log of power), so the task passes its
per-feature mean and std and gets normalized features back.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from qs4d.runtime.frontend import hz_to_mel, mel_to_hz
from qs4d.runtime.spec import FrontendConfig

DB_TO_LOG_POWER = math.log(10.0) / 10.0  # 1 dB of power in natural-log units


def band_centres(fe: FrontendConfig) -> np.ndarray:
    """(F,) centre frequency in Hz of each mel band of the front end."""
    edges = mel_to_hz(np.linspace(hz_to_mel(np.array(fe.f_min)), hz_to_mel(np.array(fe.f_max)),
                                  fe.n_mels + 2))  # (F + 2,)
    return np.asarray(edges[1:-1], dtype=np.float64)


class FeatureAugment:
    """`aug(x, gen)`: normalized features (B, T, F) -> augmented normalized features (B, T, F)."""

    def __init__(self, fe: FrontendConfig, mean: np.ndarray, std: np.ndarray, warp: float,
                 eq_db: float):
        if not 0.0 <= warp < 0.5:
            raise ValueError(f"FeatureAugment: warp must be in [0, 0.5), got {warp}")
        if eq_db < 0:
            raise ValueError(f"FeatureAugment: eq_db must be >= 0, got {eq_db}")
        F = fe.n_mels
        if np.shape(mean) != (F,) or np.shape(std) != (F,):
            raise ValueError(f"FeatureAugment: mean and std must have shape ({F},), got "
                             f"{np.shape(mean)} and {np.shape(std)}")
        self.warp, self.eq_db = float(warp), float(eq_db)
        self.centres = torch.tensor(band_centres(fe), dtype=torch.float32)  # (F,)
        self.mean = torch.tensor(np.asarray(mean), dtype=torch.float32)  # (F,)
        self.std = torch.tensor(np.asarray(std), dtype=torch.float32)  # (F,)
        k = torch.arange(1, 4, dtype=torch.float32)  # (3,)
        f = torch.arange(F, dtype=torch.float32) + 0.5  # (F,)
        self.basis = torch.cos(math.pi * k[:, None] * f[None, :] / F)  # (3, F)

    def warp_index(self, a: torch.Tensor) -> torch.Tensor:
        """(B, F) fractional band index at which each band reads, for warp factors a (B,)."""
        src = self.centres[None, :] / a[:, None]  # (B, F) Hz
        c = self.centres
        i = torch.searchsorted(c, src.contiguous()).clamp(1, len(c) - 1)  # (B, F)
        lo, hi = c[i - 1], c[i]
        frac = ((src - lo) / (hi - lo)).clamp(0.0, 1.0)
        return ((i - 1).to(torch.float32) + frac).clamp(0.0, len(c) - 1.0)  # (B, F)

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        B, T, F = x.shape
        if not (self.warp or self.eq_db):
            return x
        z = x * self.std + self.mean  # (B, T, F) log power
        if self.warp:
            a = 1.0 + self.warp * (2.0 * torch.rand(B, generator=gen) - 1.0)  # (B,)
            pos = self.warp_index(a)  # (B, F)
            i0 = pos.floor().long().clamp(0, F - 2)  # (B, F)
            w = (pos - i0.to(pos.dtype))[:, None, :]  # (B, 1, F)
            lo = torch.gather(z, 2, i0[:, None, :].expand(B, T, F))  # (B, T, F)
            hi = torch.gather(z, 2, (i0 + 1)[:, None, :].expand(B, T, F))  # (B, T, F)
            z = lo + w * (hi - lo)
        if self.eq_db:
            g = torch.randn(B, 3, generator=gen) * (self.eq_db / math.sqrt(3.0))  # (B, 3) dB
            z = z + (DB_TO_LOG_POWER * g @ self.basis)[:, None, :]  # (B, T, F)
        return (z - self.mean) / self.std
