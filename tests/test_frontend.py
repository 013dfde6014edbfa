"""runtime/frontend.py: filterbank, tone response, chunk invariance, state round trip."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qs4d.runtime.frontend import LogMel, hz_to_mel, mel_filterbank, mel_to_hz
from qs4d.runtime.spec import FrontendConfig, SpecError

CFG = FrontendConfig(kind="logmel")  # 16 kHz, 25 ms / 10 ms, n_fft 512, 40 mels, 20-8000 Hz
SIG = np.random.default_rng(7).standard_normal(4000) * 0.1  # (L,) a quarter second


def textbook_slaney(sr: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> np.ndarray:
    """Slaney's Auditory Toolbox filterbank, written from the formula with scalar loops."""
    def mel(f):
        return f / (200 / 3) if f < 1000 else 15 + np.log(f / 1000) * 27 / np.log(6.4)

    def hz(m):
        return m * 200 / 3 if m < 15 else 1000 * np.exp((m - 15) * np.log(6.4) / 27)

    m0, m1 = mel(f_min), mel(f_max)
    edges = [hz(m0 + (m1 - m0) * i / (n_mels + 1)) for i in range(n_mels + 2)]
    fb = np.zeros((n_mels, n_fft // 2 + 1))
    for b in range(n_mels):
        lo, c, hi = edges[b], edges[b + 1], edges[b + 2]
        for k in range(n_fft // 2 + 1):
            f = k * sr / n_fft
            if lo < f < hi:
                fb[b, k] = (f - lo) / (c - lo) if f <= c else (hi - f) / (hi - c)
        fb[b] *= 2 / (hi - lo)
    return fb


@pytest.mark.parametrize("n_mels,n_fft,f_min,f_max", [(40, 512, 20, 8000), (64, 400, 0, 7600),
                                                      (10, 1024, 300, 4000)])
def test_filterbank_equals_textbook(n_mels, n_fft, f_min, f_max):
    fb = mel_filterbank(16000, n_fft, n_mels, f_min, f_max)
    np.testing.assert_allclose(fb, textbook_slaney(16000, n_fft, n_mels, f_min, f_max),
                               rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("n_mels,n_fft,f_min,f_max", [(40, 512, 20, 8000), (64, 400, 0, 7600)])
def test_filterbank_equals_librosa(n_mels, n_fft, f_min, f_max):
    librosa = pytest.importorskip("librosa", reason="librosa (dev extra) not installed")
    ref = librosa.filters.mel(sr=16000, n_fft=n_fft, n_mels=n_mels, fmin=f_min, fmax=f_max,
                              htk=False, norm="slaney", dtype=np.float64)
    np.testing.assert_allclose(mel_filterbank(16000, n_fft, n_mels, f_min, f_max), ref,
                               rtol=1e-9, atol=1e-12)


def test_mel_scale_round_trip():
    hz = np.array([0.0, 20.0, 999.0, 1000.0, 1001.0, 4000.0, 8000.0])
    np.testing.assert_allclose(mel_to_hz(hz_to_mel(hz)), hz, rtol=1e-12, atol=1e-9)
    assert hz_to_mel(1000.0) == pytest.approx(15.0)


@pytest.mark.parametrize("freq", [150.0, 440.0, 1000.0, 2500.0, 6000.0])
def test_pure_tone_lights_its_band(freq):
    lm = LogMel(CFG)
    t = np.arange(16000) / 16000
    feats = lm.frames(0.5 * np.sin(2 * np.pi * freq * t))  # (T, F)
    band = int(np.argmax(feats.mean(axis=0)))
    centers = mel_to_hz(np.linspace(hz_to_mel(CFG.f_min), hz_to_mel(CFG.f_max),
                                    CFG.n_mels + 2))[1:-1]  # (F,)
    assert abs(band - int(np.argmin(abs(centers - freq)))) <= 1
    assert feats.mean(axis=0)[band] > np.median(feats.mean(axis=0)) + 5  # well above the rest


def test_frame_count_and_causality():
    lm = LogMel(CFG)
    assert (lm.win, lm.hop) == (400, 160)
    for n in (0, 399, 400, 559, 560, 4000):
        assert lm.frames(np.zeros(n)).shape == (lm.n_frames(n), 40)
    assert lm.n_frames(399) == 0 and lm.n_frames(400) == 1 and lm.n_frames(560) == 2
    base = lm.frames(SIG)
    x = SIG.copy()
    x[1000] += 1.0  # only frames whose window [t*160, t*160+400) holds sample 1000 may change
    changed = np.flatnonzero(np.any(lm.frames(x) != base, axis=1))
    allowed = [t for t in range(len(base)) if t * 160 <= 1000 < t * 160 + 400]
    assert set(changed) <= set(allowed) and len(changed) > 0


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 4000), max_size=12))
def test_any_chunking_is_bit_identical(cuts):
    lm = LogMel(CFG)
    whole = lm.frames(SIG)  # (T, F)
    bounds = [0, *sorted(cuts), len(SIG)]
    parts = [lm.process(SIG[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    streamed = np.concatenate(parts)
    assert streamed.dtype == np.float32 and streamed.shape == whole.shape
    assert np.array_equal(streamed, whole)


def test_state_restore_resumes_exactly():
    a = LogMel(CFG)
    first = a.process(SIG[:1234])
    saved = a.state()
    assert set(saved) == {"buffer", "emitted"} and saved["emitted"] == len(first)
    b = LogMel(CFG)
    b.restore(saved)
    rest_b = b.process(SIG[1234:])
    rest_a = a.process(SIG[1234:])
    assert np.array_equal(rest_a, rest_b)
    assert np.array_equal(np.concatenate([first, rest_b]), LogMel(CFG).frames(SIG))
    a.reset()
    assert np.array_equal(a.process(SIG), LogMel(CFG).frames(SIG))


def test_int16_input_and_normalization():
    pcm = (SIG * 8000).astype(np.int16)
    lm = LogMel(CFG)
    assert np.array_equal(lm.frames(pcm), lm.frames(pcm.astype(np.float64) / 32768.0))
    raw = lm.frames(SIG).astype(np.float64)
    mean, std = tuple(np.linspace(-5, 5, 40)), tuple(np.linspace(0.5, 2, 40))
    normed = LogMel(CFG.replace(norm_mean=mean, norm_std=std)).frames(SIG)
    np.testing.assert_allclose(normed, (raw - np.array(mean)) / np.array(std), atol=1e-5)


def test_log_floor():
    feats = LogMel(CFG).frames(np.zeros(1000))
    assert np.all(feats == np.float32(np.log(CFG.log_floor)))


@pytest.mark.parametrize("change,match", [({"kind": "identity"}, "kind"), ({"n_fft": 256}, "n_fft"),
                                          ({"f_max": 9000.0}, "f_max"),
                                          ({"norm_mean": (0.0,), "norm_std": (1.0,)}, "norm")])
def test_bad_configs_name_the_field(change, match):
    with pytest.raises(SpecError, match=match):
        LogMel(CFG.replace(**change))


def test_bad_inputs_name_the_problem():
    lm = LogMel(CFG)
    with pytest.raises(ValueError, match=r"shape \(2, 3\)"):
        lm.process(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="int32"):
        lm.frames(np.zeros(10, dtype=np.int32))
    with pytest.raises(ValueError, match="keys"):
        lm.restore({"buffer": np.zeros(3)})
    with pytest.raises(ValueError, match="float64"):
        lm.restore({"buffer": np.zeros(3, dtype=np.float32), "emitted": 0})


def test_frontend_imports_no_torch():
    code = ("import sys, qs4d.runtime.frontend; "
            "sys.exit(1 if any(m.split('.')[0] == 'torch' for m in sys.modules) else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
