"""Waveform augmentation for keyword spotting, numpy + scipy only, driven by a numpy Generator.

Every random choice is drawn from the `np.random.Generator` the caller passes, so the same
generator state gives the same output (the data loader seeds one per clip and epoch).

Glossary: L samples in a clip, N samples in a WSOLA frame, SR sample rate (16 kHz).
SNR is 10*log10(sum(x^2) / sum(noise^2)) over the whole clip, the noise as added.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from scipy.signal import resample_poly

COLORS = {"white": 0.0, "pink": 1.0, "brown": 2.0}  # power spectrum ~ 1 / f^alpha


def colored_noise(n: int, color: str, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean noise of unit RMS with power spectrum ~ 1/f^alpha; (n,) float64."""
    if color not in COLORS:
        raise ValueError(f"colored_noise: color must be one of {sorted(COLORS)}, got {color!r}")
    spec = np.fft.rfft(rng.standard_normal(n))  # (n//2 + 1,)
    f = np.arange(len(spec), dtype=np.float64)  # (n//2 + 1,)
    f[0] = 1.0
    spec = spec / f ** (COLORS[color] / 2)
    spec[0] = 0.0
    x = np.fft.irfft(spec, n)  # (n,)
    return x / max(np.sqrt(np.mean(x**2)), 1e-12)


def fit_length(x: np.ndarray, n: int) -> np.ndarray:
    """Crop or zero-pad the end to exactly n samples."""
    return x[:n] if len(x) >= n else np.pad(x, (0, n - len(x)))


def time_shift(x: np.ndarray, shift: int) -> np.ndarray:
    """Delay by `shift` samples (advance if negative), zero filled; same length."""
    out = np.zeros_like(x)  # (L,)
    if shift >= 0:
        out[shift:] = x[: len(x) - shift]
    else:
        out[: len(x) + shift] = x[-shift:]
    return out


def gain(x: np.ndarray, db: float) -> np.ndarray:
    return x * 10 ** (db / 20)


def snr_db(signal: np.ndarray, noise: np.ndarray) -> float:
    """10*log10 of the power ratio of two equally long arrays."""
    return float(10 * np.log10(np.sum(signal**2) / max(np.sum(noise**2), 1e-30)))


def mix_at_snr(x: np.ndarray, noise: np.ndarray, snr: float) -> np.ndarray:
    """x + noise scaled so that snr_db(x, added noise) == snr exactly; x unchanged if silent."""
    if noise.shape != x.shape:
        raise ValueError(f"mix_at_snr: noise shape {noise.shape} != signal shape {x.shape}")
    px, pn = np.sum(x**2), np.sum(noise**2)
    if px == 0 or pn == 0:
        return x.copy()
    return x + noise * np.sqrt(px / (pn * 10 ** (snr / 10)))


def noise_segment(noises: list[np.ndarray], rng: np.random.Generator, n: int) -> np.ndarray:
    """A random n-sample stretch of a random background noise (tiled if it is shorter)."""
    if not noises:
        raise ValueError("noise_segment: no background noise arrays given")
    src = noises[int(rng.integers(len(noises)))]
    if len(src) == 0:
        raise ValueError("noise_segment: a background noise array is empty")
    if len(src) < n:
        src = np.tile(src, -(-n // len(src)))
    start = int(rng.integers(len(src) - n + 1))
    return np.asarray(src[start:start + n], dtype=np.float64)


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Polyphase resampling (scipy.signal.resample_poly) from sr_in to sr_out Hz."""
    if sr_in == sr_out:
        return np.asarray(x, dtype=np.float64)
    g = int(np.gcd(sr_in, sr_out))
    return resample_poly(np.asarray(x, dtype=np.float64), sr_out // g, sr_in // g)


def trim_silence(x: np.ndarray, sr: int, top_db: float = 40.0) -> np.ndarray:
    """Cut leading/trailing silence: keep 10-ms frames within top_db of the loudest, +20 ms."""
    hop = max(1, sr // 100)
    n = len(x) // hop
    if n == 0:
        return x[:0]
    rms = np.sqrt((np.asarray(x[: n * hop], dtype=np.float64).reshape(n, hop) ** 2).mean(1))
    if rms.max() <= 0:
        return x[:0]
    on = np.flatnonzero(rms > rms.max() * 10 ** (-top_db / 20))  # (frames above,)
    return x[max(0, (on[0] - 2) * hop): min(len(x), (on[-1] + 3) * hop)]


def _ratio(factor: float) -> Fraction:
    if not 0.5 <= factor <= 2.0:
        raise ValueError(f"resampling factor must be in [0.5, 2], got {factor}")
    return Fraction(factor).limit_denominator(64)


def speed(x: np.ndarray, factor: float) -> np.ndarray:
    """Play `factor` times faster: length / factor, pitch * factor (like `sox speed`)."""
    r = _ratio(factor)
    return resample_poly(x, r.denominator, r.numerator)  # (~L / factor,)


def time_stretch(x: np.ndarray, rate: float, sr: int = 16000) -> np.ndarray:
    """WSOLA: length / rate at the same pitch (30-ms Hann frames, +-7.5 ms alignment)."""
    N = int(0.03 * sr)
    hs, tol = N // 2, N // 4
    n_out = int(round(len(x) / rate))
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N) / N)  # (N,) periodic Hann
    xp = np.pad(np.asarray(x, dtype=np.float64), (tol, N + 2 * tol + int(hs * rate) + hs))
    out, norm = np.zeros(n_out + N), np.zeros(n_out + N)  # (L' + N,)
    prev = tol
    for k in range(-(-n_out // hs)):
        a = int(round(k * hs * rate)) + tol
        pos = a
        if k:
            natural = xp[prev + hs: prev + hs + N]  # (N,)
            cands = np.lib.stride_tricks.sliding_window_view(xp[a - tol: a + tol + N], N)
            pos = a - tol + int(np.argmax(cands @ natural))  # cands: (2*tol + 1, N)
        out[k * hs: k * hs + N] += xp[pos: pos + N] * win
        norm[k * hs: k * hs + N] += win
        prev = pos
    return out[:n_out] / np.maximum(norm[:n_out], 1e-3)  # (L / rate,)


def pitch_shift(x: np.ndarray, semitones: float, sr: int = 16000) -> np.ndarray:
    """Shift pitch by resampling, then WSOLA back to the original length."""
    f = 2 ** (semitones / 12)
    y = speed(x, f)  # (~L / f,)
    return fit_length(time_stretch(y, len(y) / len(x), sr), len(x))  # (L,)


def band_limit(x: np.ndarray, sr: int = 16000, cutoff: float = 4000.0) -> np.ndarray:
    """Telephone band: down to 2*cutoff Hz and back up (polyphase anti-alias filter)."""
    if not 0 < 2 * cutoff < sr:
        raise ValueError(f"band_limit: need 0 < 2*cutoff < sr={sr}, got cutoff={cutoff}")
    r = Fraction(int(2 * cutoff), sr)
    low = resample_poly(x, r.numerator, r.denominator)
    return fit_length(resample_poly(low, r.denominator, r.numerator), len(x))  # (L,)


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of each augmentation (applied in this order)."""

    p_speed: float = 0.3
    speed: tuple = (0.9, 1.1)
    p_pitch: float = 0.3
    semitones: tuple = (-2.0, 2.0)
    shift_ms: float = 100.0  # uniform in [-shift_ms, +shift_ms]
    gain_db: tuple = (-6.0, 6.0)
    p_noise: float = 0.8
    snr_db: tuple = (0.0, 20.0)
    p_band: float = 0.5  # 4-kHz telephone band, like the real 8-kHz recordings
    band_cutoff: tuple = (4000.0, 4000.0)  # its cutoff (Hz), uniform in [lo, hi], 50-Hz steps


class Augmenter:
    """`aug(x, rng)`: a clip (L,) -> an augmented clip (L,) float32."""

    def __init__(self, cfg: AugmentConfig, noises: list[np.ndarray] | None = None,
                 sample_rate: int = 16000):
        if cfg.p_noise > 0 and not noises:
            raise ValueError("Augmenter: p_noise > 0 needs background noise arrays")
        self.cfg, self.noises, self.sr = cfg, list(noises or []), sample_rate

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        c, L = self.cfg, len(x)
        y = np.asarray(x, dtype=np.float64)  # (L,)
        if rng.random() < c.p_speed:
            y = fit_length(speed(y, rng.uniform(*c.speed)), L)
        if rng.random() < c.p_pitch:
            y = pitch_shift(y, rng.uniform(*c.semitones), self.sr)
        max_shift = int(c.shift_ms * self.sr / 1000)
        y = time_shift(y, int(rng.integers(-max_shift, max_shift + 1)))
        y = gain(y, rng.uniform(*c.gain_db))
        if rng.random() < c.p_noise:
            y = mix_at_snr(y, noise_segment(self.noises, rng, L), rng.uniform(*c.snr_db))
        if rng.random() < c.p_band:
            lo, hi = c.band_cutoff  # a fixed cutoff draws nothing (the default's stream)
            cut = lo if lo == hi else 50.0 * round(rng.uniform(lo, hi) / 50.0)
            y = band_limit(y, self.sr, cut)
        return np.clip(y, -1.0, 1.0).astype(np.float32)
