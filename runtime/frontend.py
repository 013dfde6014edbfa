"""The streaming log-mel front end (DESIGN section 6): audio samples -> one feature row per hop.

numpy only: this module ships with the runtime, and the training code calls `LogMel.frames`
on whole clips, so a model is trained on exactly the features the device computes.

Glossary: L samples in a chunk or clip, W window length (samples), S hop (samples),
T frames, K FFT bins (n_fft // 2 + 1), F mel bands (n_mels), J filter taps per band.

Per frame t (causal, no centering; frame t covers samples [t*S, t*S + W)):
    power[k] = |rfft(hann(W) * x[t*S : t*S+W], n_fft)[k]|^2        periodic Hann, no scaling
    mel[f]   = sum_k fb[f, k] * power[k]                              Slaney filterbank
    out[f]   = (log(max(mel[f], log_floor)) - norm_mean[f]) / norm_std[f]   (norm optional)

The filterbank is Slaney-style, the same as librosa's default (`htk=False, norm="slaney"`):
mel scale linear below 1 kHz and logarithmic above, triangles from f_min to f_max, each scaled
by 2 / (its width in Hz) so every band has the same area.

Bit-exact streaming: every frame is computed from its own W samples by operations whose
result for one row never depends on the other rows (elementwise math, a 1-D FFT per row, a
fixed-length sum per band), in float64, and rounded to float32 once at the end. So any cut of
a signal into chunks yields the same bits as `frames` on the whole signal.
"""

from __future__ import annotations

import numpy as np

from .errors import InputError
from .spec import FrontendConfig, SpecError

F64 = np.float64
F32 = np.float32


def hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney mel scale: 3 mels per 200 Hz up to 1 kHz, then 27 mels per factor 6.4."""
    hz = np.asarray(hz, dtype=F64)
    lin = hz / (200.0 / 3.0)
    log = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log, lin)


def mel_to_hz(mel: np.ndarray) -> np.ndarray:
    """Inverse of `hz_to_mel`."""
    mel = np.asarray(mel, dtype=F64)
    lin = mel * (200.0 / 3.0)
    log = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0))
    return np.where(mel >= 15.0, log, lin)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float,
                   f_max: float) -> np.ndarray:
    """Slaney-normalized triangular filters, (F, K) float64."""
    if not 0.0 <= f_min < f_max <= sample_rate / 2:
        raise SpecError(f"mel filterbank: need 0 <= f_min < f_max <= sample_rate/2 = "
                        f"{sample_rate / 2}, got f_min={f_min}, f_max={f_max}")
    bins = np.arange(n_fft // 2 + 1) * (sample_rate / n_fft)  # (K,)
    edges = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))  # (F+2,)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]  # (F, 1) each
    rise = (bins[None, :] - lo) / (mid - lo)  # (F, K)
    fall = (hi - bins[None, :]) / (hi - mid)  # (F, K)
    tri = np.maximum(0.0, np.minimum(rise, fall))  # (F, K)
    return tri * (2.0 / (hi - lo))  # (F, K)


def _sparse_bands(fb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each band's nonzero taps as (F, J) bin indices and (F, J) weights (zero padded)."""
    F, K = fb.shape
    nz = [np.flatnonzero(row) for row in fb]
    J = max(1, max(len(n) for n in nz))
    idx = np.zeros((F, J), dtype=np.intp)  # (F, J)
    w = np.zeros((F, J), dtype=F64)  # (F, J)
    for f, n in enumerate(nz):
        if len(n):
            idx[f, : len(n)] = np.arange(n[0], n[0] + len(n))
            w[f, : len(n)] = fb[f, n[0]: n[0] + len(n)]
    return idx, w


def _as_samples(x: np.ndarray, what: str) -> np.ndarray:
    """Float64 samples from a 1-D float or int16 array (int16 scaled by 1/32768, exactly)."""
    x = np.asarray(x)
    if x.ndim != 1:
        raise InputError(f"{what}: expected a 1-D array of samples, got shape {x.shape}")
    if x.dtype == np.int16:
        return x.astype(F64) / 32768.0
    if not np.issubdtype(x.dtype, np.floating):
        raise InputError(f"{what}: expected float or int16 samples, got dtype {x.dtype}")
    return x.astype(F64, copy=False)


class LogMel:
    """Streaming log-mel features of one audio source.

    `process(chunk)` buffers the samples that do not yet complete a window and returns the
    frames that became complete; `frames(signal)` computes a whole clip in one call and equals
    streaming the same signal through a fresh object in any chunks.
    """

    def __init__(self, cfg: FrontendConfig):
        if cfg.kind != "logmel":
            raise SpecError(f"LogMel: FrontendConfig.kind must be 'logmel', got {cfg.kind!r}")
        self.cfg = cfg
        self.win, self.hop = cfg.win_samples, cfg.hop_samples  # W, S
        if not 1 <= self.hop <= self.win:
            raise SpecError(f"LogMel: need 1 <= hop <= window samples, got hop={self.hop}, "
                            f"window={self.win}")
        if cfg.n_fft < self.win:
            raise SpecError(f"FrontendConfig.n_fft: must be >= window length {self.win}, "
                            f"got {cfg.n_fft}")
        self.n_mels = cfg.n_mels  # F
        n = np.arange(self.win)
        self.window = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / self.win)  # (W,) periodic Hann
        self.fb = mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.f_min, cfg.f_max)
        self._idx, self._w = _sparse_bands(self.fb)  # (F, J), (F, J)
        self._mean, self._std = self._norm(cfg)
        self.reset()

    @staticmethod
    def _norm(cfg: FrontendConfig) -> tuple[np.ndarray | None, np.ndarray | None]:
        if not cfg.norm_mean and not cfg.norm_std:
            return None, None
        mean = np.asarray(cfg.norm_mean, dtype=F64)  # (F,)
        std = np.asarray(cfg.norm_std, dtype=F64)  # (F,)
        if mean.shape != (cfg.n_mels,) or std.shape != (cfg.n_mels,):
            raise SpecError(f"FrontendConfig.norm_mean/norm_std: need {cfg.n_mels} values each, "
                            f"got {mean.shape[0]} and {std.shape[0]}")
        if not np.all(std > 0):
            raise SpecError(f"FrontendConfig.norm_std: every value must be > 0, got min "
                            f"{std.min()}")
        return mean, std

    def n_frames(self, n_samples: int) -> int:
        """Frames that `n_samples` samples complete (from a fresh stream)."""
        return 0 if n_samples < self.win else 1 + (n_samples - self.win) // self.hop

    def _compute(self, x: np.ndarray) -> np.ndarray:
        """All complete frames of float64 samples x (L,) -> (T, F) float32."""
        T = self.n_frames(len(x))
        if T == 0:
            return np.zeros((0, self.n_mels), dtype=F32)
        view = np.lib.stride_tricks.sliding_window_view(x, self.win)[:: self.hop][:T]  # (T, W)
        spec = np.fft.rfft(view * self.window, n=self.cfg.n_fft, axis=-1)  # (T, K)
        power = spec.real ** 2 + spec.imag ** 2  # (T, K)
        mel = (power[:, self._idx] * self._w).sum(axis=-1)  # (T, F)
        out = np.log(np.maximum(mel, self.cfg.log_floor))  # (T, F)
        if self._mean is not None:
            out = (out - self._mean) / self._std  # (T, F)
        return out.astype(F32)

    def frames(self, signal: np.ndarray) -> np.ndarray:
        """Features of a whole clip (L,) -> (T, F) float32; the stream state is untouched."""
        return self._compute(_as_samples(signal, "LogMel.frames"))

    def process(self, chunk: np.ndarray) -> np.ndarray:
        """Append a chunk (L,) of samples; return the (T, F) float32 frames it completed."""
        x = np.concatenate([self._buf, _as_samples(chunk, "LogMel.process")])  # (L',)
        out = self._compute(x)  # (T, F)
        self._buf = x[len(out) * self.hop:].copy()
        self._emitted += len(out)
        return out

    def reset(self) -> None:
        """Forget buffered samples; the next sample starts frame 0."""
        self._buf = np.zeros(0, dtype=F64)
        self._emitted = 0

    def state(self) -> dict:
        """The stream's whole mutable state as plain numpy arrays and ints."""
        return {"buffer": self._buf.copy(), "emitted": int(self._emitted)}

    def restore(self, state: dict) -> None:
        """Resume from a `state()`; checks keys, shape and dtype."""
        if not isinstance(state, dict) or set(state) != {"buffer", "emitted"}:
            got = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise InputError(f"LogMel.restore: expected keys ['buffer', 'emitted'], got {got}")
        buf, emitted = np.asarray(state["buffer"]), np.asarray(state["emitted"])
        if buf.ndim != 1 or buf.dtype != F64 or len(buf) >= self.win:
            raise InputError(f"LogMel.restore: buffer must be float64 of shape (n,) with n < "
                             f"{self.win}, got {buf.dtype} {buf.shape}")
        if not np.all(np.isfinite(buf)):
            raise InputError("LogMel.restore: buffer holds NaN or Inf")
        if emitted.shape != () or emitted.dtype.kind not in "iu" or int(emitted) < 0:
            raise InputError(f"LogMel.restore: emitted must be an integer >= 0, got "
                             f"{emitted.dtype}{emitted.shape}")
        self._buf = buf.copy()
        self._emitted = int(emitted)
