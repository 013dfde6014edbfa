"""Rebuild the demo WAVs of apps/data/ and their truth files digits.json and commands.json
(see README.md).

    .venv/bin/python apps/data/make_wavs.py

Needs the Debian packages asterisk-core-sounds-en-wav and espeak-ng (scripts/sysdeps.sh).
Deterministic for given package versions: fixed word order, gaps and noise seed.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np
from scipy.io import wavfile
from scipy.signal import resample_poly

HERE = Path(__file__).resolve().parent
ALLISON = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
NAMES = "zero one two three four five six seven eight nine".split()
ALLISON_ORDER = [4, 7, 1, 9, 0, 3, 8, 2, 6, 5]
ESPEAK_TEXT = "please call five one nine"
ESPEAK_KEYWORDS = ["five", "one", "nine"]
COMMANDS = ["yes", "go", "left", "stop", "down", "no", "right", "up", "off", "on"]
COMMAND_VOICES = ["en-us", "en-us+f3", "en-gb+m3"]  # espeak-ng voices, in turn


def trim(x: np.ndarray, rate: int, floor_db: float = -30.0, pad_s: float = 0.03) -> np.ndarray:
    """Cut leading and trailing silence (10-ms frames below floor_db of the peak frame)."""
    n = rate // 100
    frames = x[: len(x) // n * n].reshape(-1, n)
    db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    on = np.flatnonzero(db > db.max() + floor_db)
    pad = int(pad_s * rate)
    return x[max(0, on[0] * n - pad): min(len(x), (on[-1] + 1) * n + pad)]


def pink(n: int, rng: np.random.Generator) -> np.ndarray:
    """Pink (1/f power) noise of unit RMS."""
    f = np.fft.rfftfreq(n)
    spec = (rng.standard_normal(len(f)) + 1j * rng.standard_normal(len(f))) / np.sqrt(
        np.maximum(f, f[1]))
    x = np.fft.irfft(spec, n)
    return x / np.sqrt(np.mean(x**2))


def add_noise(x: np.ndarray, speech_rms: float, snr_db: float, noise: np.ndarray) -> np.ndarray:
    return x + noise * speech_rms / 10 ** (snr_db / 20)


def to_int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 32767), -32768, 32767).astype(np.int16)


def allison(rng: np.random.Generator) -> dict:
    rate, gap = 8000, 0.45
    parts, keys, t = [], [], 0.25
    silence = lambda s: np.zeros(int(round(s * rate)), np.float32)  # noqa: E731
    parts.append(silence(t))
    words = ["number", "is"] + [f"digits/{d}" for d in ALLISON_ORDER]
    for w in words:
        sr, x = wavfile.read(ALLISON / f"{w}.wav")
        assert sr == rate, (w, sr)
        x = trim(x.astype(np.float32) / 32768.0, rate)
        if w.startswith("digits/"):
            keys.append({"label": NAMES[int(w[-1])], "start_s": round(t, 3),
                         "end_s": round(t + len(x) / rate, 3)})
        parts += [x, silence(gap if w != "number" else 0.12)]
        t += len(x) / rate + (gap if w != "number" else 0.12)
    y = np.concatenate(parts)
    rms = float(np.sqrt(np.mean(np.concatenate(parts[1::2]) ** 2)))
    y = add_noise(y, rms, 20.0, pink(len(y), rng))
    name = "digits_allison_8k.wav"
    wavfile.write(HERE / name, rate, to_int16(y))
    return {"file": name, "rate": rate, "text": "number is " + " ".join(
        NAMES[d] for d in ALLISON_ORDER), "keywords": keys, "noise": "pink, 20 dB SNR",
        "source": "asterisk-core-sounds-en-wav (en_US_f_Allison: number, is, digits/0-9)",
        "licence": "CC-BY-SA-3.0, Allison Smith / Digium"}


def espeak(rng: np.random.Generator) -> dict:
    rate = 16000
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "e.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "140", "-w", str(out), ESPEAK_TEXT],
                       check=True)
        sr, x = wavfile.read(out)
    f = Fraction(rate, int(sr))  # espeak-ng writes 22050 Hz
    x = resample_poly(x.astype(np.float64) / 32768.0, f.numerator, f.denominator)
    x = trim(x, rate)
    pad = np.zeros(int(0.3 * rate))
    y = np.concatenate([pad, x, pad])
    rms = float(np.sqrt(np.mean(x**2)))
    y = add_noise(y, rms, 20.0, rng.standard_normal(len(y)))
    name = "sentence_espeak_16k.wav"
    wavfile.write(HERE / name, rate, to_int16(y))
    return {"file": name, "rate": rate, "text": ESPEAK_TEXT,
            "keywords": [{"label": w} for w in ESPEAK_KEYWORDS], "noise": "white, 20 dB SNR",
            "source": "espeak-ng -v en-us -s 140 (synthesized)",
            "licence": "synthesized by espeak-ng (GPL-3.0-or-later program); no third-party "
                       "recording"}


def say(text: str, voice: str, rate: int) -> np.ndarray:
    """espeak-ng's rendering of text, at rate, float in [-1, 1)."""
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "e.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", "130", "-w", str(out), text],
                       check=True)
        sr, x = wavfile.read(out)
    f = Fraction(rate, int(sr))
    return resample_poly(x.astype(np.float64) / 32768.0, f.numerator, f.denominator)


def commands(rng: np.random.Generator) -> dict:
    """The ten Speech Commands keywords (the sc12 task), one word each 1.2 s, three voices."""
    rate, gap = 16000, 1.2
    parts, keys, t = [np.zeros(int(0.25 * rate))], [], 0.25
    for i, w in enumerate(COMMANDS):
        x = trim(say(w, COMMAND_VOICES[i % len(COMMAND_VOICES)], rate), rate)
        keys.append({"label": w, "start_s": round(t, 3), "end_s": round(t + len(x) / rate, 3)})
        parts += [x, np.zeros(int(gap * rate))]
        t += len(x) / rate + gap
    y = np.concatenate(parts)
    rms = float(np.sqrt(np.mean(np.concatenate(parts[1::2]) ** 2)))
    y = add_noise(y, rms, 20.0, rng.standard_normal(len(y)))
    name = "commands_espeak_16k.wav"
    wavfile.write(HERE / name, rate, to_int16(y))
    return {"file": name, "rate": rate, "text": " ".join(COMMANDS), "keywords": keys,
            "noise": "white, 20 dB SNR",
            "source": f"espeak-ng -s 130, voices {', '.join(COMMAND_VOICES)} (synthesized)",
            "licence": "synthesized by espeak-ng (GPL-3.0-or-later program); no third-party "
                       "recording"}


def main() -> None:
    rng = np.random.default_rng(2024)
    truth = [allison(rng), espeak(rng)]
    (HERE / "digits.json").write_text(json.dumps(truth, indent=1) + "\n")
    cmd = [commands(np.random.default_rng(2025))]
    (HERE / "commands.json").write_text(json.dumps(cmd, indent=1) + "\n")
    for t in truth + cmd:
        size = (HERE / t["file"]).stat().st_size
        print(f"{t['file']}: {size / 1024:.0f} KiB, {t['text']!r}")


if __name__ == "__main__":
    main()
