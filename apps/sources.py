"""Audio sources for the apps: WAV file, raw int16 on stdin (the microphone is in mic.py).

Every source yields `Chunk`s of float32 mono samples at the model's rate, whatever the file's
or device's rate and channel count, and counts input overflows; the app feeds every chunk to
the same `Stream`.

Glossary: L samples in a chunk, C channels, J taps per polyphase branch.
"""

from __future__ import annotations

import math
import struct
import time
import warnings
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from scipy.io import wavfile
from scipy.signal import firwin, resample_poly

from qs4d.runtime.errors import InputError
from qs4d.runtime.spec import MAX_SAMPLE_RATE


@dataclass(frozen=True)
class Chunk:
    samples: np.ndarray  # (L,) float32 at the source's output rate
    end_s: float  # audio time at the chunk's last sample, seconds since the source started
    wall: float  # time.perf_counter() when the chunk's last sample became available


def to_float_mono(x: np.ndarray) -> np.ndarray:
    """(L,) or (L, C) samples of any WAV dtype -> (L,) float32 in [-1, 1], channels averaged."""
    x = np.asarray(x)
    if x.dtype == np.uint8:
        y = (x.astype(np.float32) - 128.0) / 128.0
    elif x.dtype.kind == "i":
        y = x.astype(np.float32) / float(2 ** (8 * x.dtype.itemsize - 1))
    elif x.dtype.kind == "f":
        with np.errstate(over="ignore", invalid="ignore"):
            y = x.astype(np.float32)
    else:
        raise ValueError(f"unsupported sample dtype {x.dtype}")
    if y.ndim == 2:
        with np.errstate(over="ignore", invalid="ignore"):
            y = y.mean(axis=1)
    if y.ndim != 1:
        raise ValueError(f"expected samples of shape (L,) or (L, C), got {x.shape}")
    return y


# A float WAV's full scale is +-1; beyond this peak the file is not audio at float scale
# (integer samples stored as float, or garbage), and would be heard as a deafening shout.
MAX_FLOAT_PEAK = 4.0


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """(samples (L,) float32 mono, rate) of a WAV file; an unreadable file, a rate of 0 or
    beyond MAX_SAMPLE_RATE, and float samples that are not finite or peak beyond
    MAX_FLOAT_PEAK are InputErrors naming the file."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", wavfile.WavFileWarning)
            rate, x = wavfile.read(str(path))
    except FileNotFoundError as e:
        raise InputError(f"{path}: no such file") from e
    except (ValueError, OSError, EOFError, struct.error, TypeError, IndexError, KeyError,
            MemoryError, ArithmeticError) as e:  # a header field of 0 divides by zero
        raise InputError(f"{path}: cannot read as WAV ({type(e).__name__}: {e})") from None
    if not 1 <= int(rate) <= MAX_SAMPLE_RATE:
        raise InputError(f"{path}: sample rate {rate} Hz, expected 1..{MAX_SAMPLE_RATE}")
    try:
        y = to_float_mono(x)
    except ValueError as e:
        raise InputError(f"{path}: {e}") from None
    if x.dtype.kind == "f" and len(y):
        if not np.isfinite(y).all():
            i = int(np.argmax(~np.isfinite(y)))
            raise InputError(f"{path}: sample {i} is {y[i]} (float samples must be finite)")
        peak = float(np.abs(y).max())
        if peak > MAX_FLOAT_PEAK:
            raise InputError(f"{path}: float samples peak at {peak:.3g}, but their full scale "
                             f"is 1 (at most {MAX_FLOAT_PEAK:g} accepted): normalize the file")
    return y, int(rate)


def resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Whole-signal resampling with scipy.signal.resample_poly (no delay)."""
    if rate_in == rate_out:
        return np.asarray(x, np.float32)
    f = Fraction(rate_out, rate_in)
    return resample_poly(x, f.numerator, f.denominator).astype(np.float32)


def read_wav_as(path: str | Path, rate: int) -> np.ndarray:
    """(L,) float32 mono samples of a WAV file at `rate` Hz."""
    x, r = read_wav(path)
    return resample(x, r, rate)


class StreamResampler:
    """Polyphase FIR resampling of a stream, chunk by chunk, with carried history.

    The filter is resample_poly's (Kaiser window, beta 5, cutoff at the lower Nyquist rate),
    run causally: output m = sum_j h[p + j*up] * x[n0 - j], with n0 = (m*down) // up and
    p = (m*down) % up. The result does not depend on how the input is cut; it equals
    upfirdn on the whole signal, delayed by (len(h) - 1) / 2 / up input samples.
    """

    def __init__(self, rate_in: int, rate_out: int):
        f = Fraction(int(rate_out), int(rate_in))
        self.up, self.down = f.numerator, f.denominator
        m = max(self.up, self.down)
        h = (firwin(2 * 10 * m + 1, 1.0 / m, window=("kaiser", 5.0)) * self.up if m > 1
             else np.ones(1))  # equal rates: a pass-through
        self.J = math.ceil(len(h) / self.up)
        h = np.concatenate([h, np.zeros(self.J * self.up - len(h))])
        self.branches = h.reshape(self.J, self.up).T.copy()  # (up, J): branch p, tap j
        self.delay_s = (len(h) - 1) / 2 / self.up / rate_in
        self.reset()

    def reset(self) -> None:
        self._hist = np.zeros(self.J - 1)  # the last J-1 input samples
        self._n_in = 0  # input samples seen
        self._m = 0  # next output index

    def process(self, x: np.ndarray) -> np.ndarray:
        """Input chunk (L,) -> the output samples it completes, float32."""
        x = np.asarray(x, np.float64)
        if self.up == self.down:
            return x.astype(np.float32)
        buf = np.concatenate([self._hist, x])  # buf[i] = input sample n_in - (J-1) + i
        n_total = self._n_in + len(x)
        m_end = -(-n_total * self.up // self.down)  # outputs with m*down < n_total*up
        m = np.arange(self._m, m_end)  # (M,)
        n0 = m * self.down // self.up  # (M,) newest input sample of each output
        p = m * self.down % self.up  # (M,)
        idx = (n0 - self._n_in + self.J - 1)[:, None] - np.arange(self.J)[None, :]  # (M, J)
        y = (buf[idx] * self.branches[p]).sum(axis=1)  # (M,)
        self._hist = buf[len(buf) - (self.J - 1):] if self.J > 1 else buf[:0]
        self._n_in, self._m = n_total, m_end
        return y.astype(np.float32)


class WavSource:
    """A WAV file as chunks at `rate`, at real-time pace (default) or as fast as possible."""

    def __init__(self, path: str | Path, rate: int = 16000, chunk_ms: float = 100.0,
                 realtime: bool = True):
        self.samples = read_wav_as(path, rate)  # (L,)
        self.name, self.rate, self.realtime = Path(path).name, rate, realtime
        self.chunk = max(1, int(round(rate * chunk_ms / 1000.0)))
        self.overflows = 0

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.rate

    def __iter__(self):
        return paced_chunks(self.samples, self.rate, self.chunk, self.realtime)


class RawSource:
    """Raw little-endian int16 mono from a binary file object (stdin) at rate_in, resampled
    to `rate`. Paced by the producer: a chunk is yielded as soon as it has been read."""

    def __init__(self, fileobj, rate_in: int = 16000, rate: int = 16000, chunk_ms: float = 100.0,
                 name: str = "stdin"):
        self.f, self.name, self.rate = fileobj, name, rate
        self.resampler = StreamResampler(rate_in, rate)
        self.chunk_bytes = 2 * max(1, int(round(rate_in * chunk_ms / 1000.0)))
        self.overflows = 0

    def __iter__(self):
        n_out, tail = 0, b""
        while True:
            data = self.f.read(self.chunk_bytes)
            if not data:
                return
            data = tail + data
            cut = len(data) - len(data) % 2
            data, tail = data[:cut], data[cut:]
            x = np.frombuffer(data, "<i2").astype(np.float32) / 32768.0  # (L,)
            y = self.resampler.process(x)
            n_out += len(y)
            yield Chunk(y, n_out / self.rate, time.perf_counter())


def paced_chunks(x: np.ndarray, rate: int, n: int, realtime: bool):
    """Chunks of n samples of a whole signal; at real-time pace each is yielded when its last
    sample would have been acquired, else at once (Chunk.t_ready = when it became available)."""
    t0 = time.perf_counter()
    for a in range(0, len(x), n):
        piece = x[a: a + n]
        end_s = (a + len(piece)) / rate
        if realtime:
            delay = t0 + end_s - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            yield Chunk(piece, end_s, t0 + end_s)
        else:
            yield Chunk(piece, end_s, time.perf_counter())
