"""What the microphone path does to the acceptance test's digits, offline.

    QS4D_MIC_SAVE=DIR pytest tests/test_mic.py -k acceptance   # records DIR/
    python scripts/mic_report.py BUNDLE DIR

DIR holds `played.wav` (the ten Asterisk digits, 8 kHz, digital silence between them),
`captured.wav` (what the microphone source delivered, 16 kHz) and `detections.txt`. For each
digit (in the played WAV: non-zero samples less than 0.3 s apart, in the test's order) it prints
the normalized correlation of the captured audio with the played audio resampled offline
(`scipy.signal.resample_poly`, 8 to 16 kHz, as the data builder does), the captured level in
frequency bands relative to the offline one, and the highest smoothed posterior of the
digit's own class (the apps' detector smoothing: mean logits over 1 s) offline and captured,
and the lowest and highest of the captured one when the capture starts 0, 20, ..., 140
samples later: where a live run's frames fall within the audio is not fixed from run to run,
so a digit whose lowest value is below the 0.8 threshold can be missed by some runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy.io import wavfile
from scipy.signal import correlate, resample_poly

from qs4d.apps.detect import APP_SMOOTH_MS, softmax
from qs4d.runtime.stream import load

ORDER = [3, 8, 0, 5, 1, 9, 6, 2, 7, 4]  # tests/test_mic.py: digits_wav
PHASES = range(0, 160, 20)  # capture start offsets (samples; one step is 160)
BANDS = [(0, 1000), (1000, 2000), (2000, 3000), (3000, 3800), (3800, 4200), (4200, 8000)]


def smoothed(model, x: np.ndarray) -> np.ndarray:
    """(T, K) softmax of the logits averaged over the last APP_SMOOTH_MS (zeros before)."""
    lg = model.stream().accept(x)  # (T, K)
    w = int(round(APP_SMOOTH_MS / model.spec.frontend.hop_ms))
    cs = np.cumsum(np.vstack([np.zeros((w, lg.shape[1])), lg]), 0)  # (w + T, K)
    return softmax((cs[w:] - cs[:-w]) / w)


def band_db(a: np.ndarray, b: np.ndarray) -> list[float]:
    """Energy of a relative to b per band (dB), Hann-windowed spectra at 16 kHz."""
    f = np.fft.rfftfreq(len(a), 1 / 16000)
    pa, pb = (np.abs(np.fft.rfft(v * np.hanning(len(v)))) ** 2 for v in (a, b))
    return [float(10 * np.log10((pa[(f >= lo) & (f < hi)].sum() + 1e-12)
                                / (pb[(f >= lo) & (f < hi)].sum() + 1e-12))) for lo, hi in BANDS]


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__)
        return 2
    model, d = load(argv[0], backend="onnx"), Path(argv[1])
    sr, played = wavfile.read(d / "played.wav")
    offline = resample_poly(played.astype(np.float64) / 32768, 16000 // sr, 1)  # (L,)
    cap = wavfile.read(d / "captured.wav")[1].astype(np.float64) / 32768
    nz = np.flatnonzero(played)  # a digit: non-zero samples less than 0.3 s apart
    cut = np.flatnonzero(np.diff(nz) > 0.3 * sr)
    runs = list(zip(nz[np.r_[0, cut + 1]], nz[np.r_[cut, len(nz) - 1]] + 1))
    if len(runs) != len(ORDER):
        raise SystemExit(f"{d / 'played.wav'}: {len(runs)} digits, expected {len(ORDER)}")
    first = offline[runs[0][0] * 2: runs[0][1] * 2]
    lag = int(np.argmax(correlate(cap, first, "valid", method="fft"))) - runs[0][0] * 2
    p_off, p_cap = smoothed(model, offline.astype(np.float32)), smoothed(model, cap.astype(
        np.float32))
    hop = model.spec.frontend.hop_samples  # samples per step
    phases = [smoothed(model, cap[o:].astype(np.float32)) for o in PHASES]
    print(f"{model}\ncaptured = offline delayed by {lag / 16000 * 1000:.1f} ms; detections "
          f"live: {(d / 'detections.txt').read_text().strip()}")
    print("digit   ncc  " + " ".join(f"{lo}-{hi}Hz".rjust(10) for lo, hi in BANDS)
          + "   p offline / captured (min-max over frame phases)")
    for k, (a, b) in zip(ORDER, runs):
        a2, b2 = 2 * a, 2 * b
        seg, cseg = offline[a2:b2], cap[a2 + lag:b2 + lag]
        ncc = float(np.dot(seg, cseg) / np.sqrt(np.dot(seg, seg) * np.dot(cseg, cseg)))
        s0, s1 = a2 // hop, b2 // hop + 100  # the word and the second after it
        po = p_off[s0:s1, k].max()
        pc = p_cap[max(0, s0 + lag // hop):s1 + lag // hop, k].max()
        pp = [p[max(0, s0 + lag // hop):s1 + lag // hop, k].max() for p in phases]
        print(f"{model.labels[k]:<6} {ncc:5.2f}  " + " ".join(f"{v:10.1f}" for v in
                                                           band_db(cseg, seg))
              + f"   {po:.2f} / {pc:.2f} ({min(pp):.2f}-{max(pp):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
