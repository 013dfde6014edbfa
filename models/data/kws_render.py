"""Rendering one clip of the keyword data builder (`kws_build.py`): the speech synthesizers
(espeak-ng, flite and festival, Debian packages; SVOX Pico and MBROLA, Debian non-free; Piper,
pip, in `kws_piper.py`) and their voice lists, how espeak voice variants are
dealt to the splits, and a word placed in a 1-s 16-kHz WAV.

Glossary: L samples, SR 16 kHz output rate.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.io import wavfile

from .augment import resample, trim_silence
from .kws_kokoro import speak_kokoro
from .kws_piper import speak_piper

SR = 16000
CLIP = SR  # samples in one 1-s clip

FLITE_F0 = {"slt": (140.0, 230.0)}  # int_f0_target_mean range (Hz) per voice; others below
FLITE_F0_MALE = (80.0, 150.0)
# festival: the HTS voice ignores Duration_Stretch and the intonation target (its speed and
# pitch vary only through training augmentation); the diphone voices take both
FESTIVAL_F0 = {"cmu_us_slt_arctic_hts": None, "kal_diphone": (85.0, 190.0),
               "ked_diphone": (85.0, 190.0)}
FESTIVAL_VOICES = Path("/usr/share/festival/voices")
# SVOX Pico (libttspico-utils): two female voices; markup levels, 100 = the voice's own
PICO_LANG = Path("/usr/share/pico/lang")
PICO_VOICES = ("en-US", "en-GB")
PICO_SPEED = (70, 141)  # <speed level>: above 100 is faster
PICO_PITCH = (65, 136)  # <pitch level>: 100 is about 170 Hz for en-US
# MBROLA English diphone voices (mbrola-us1: female; us2, us3: male; en1: British male), spoken
# through espeak-ng's mb-<voice> (its speed and pitch options apply)
MBROLA_DIR = Path("/usr/share/mbrola")
MBROLA_VOICES = ("us1", "us2", "us3", "en1")


def speak(text: str, voice: str, speed: int, pitch: int) -> tuple[int, np.ndarray]:
    """espeak-ng's (rate, int16 samples) of `text` (22.05 kHz)."""
    with tempfile.TemporaryDirectory() as tmp:
        wav = os.path.join(tmp, "w.wav")
        cmd = ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", wav, text]
        subprocess.run(cmd, capture_output=True, check=True)
        return wavfile.read(wav)


def speak_flite(text: str, voice: str, stretch: float, f0: float) -> tuple[int, np.ndarray]:
    """flite's (rate, int16 samples) of `text` (8 or 16 kHz, by voice)."""
    with tempfile.TemporaryDirectory() as tmp:
        wav = os.path.join(tmp, "w.wav")
        cmd = ["flite", "-voice", voice, "--setf", f"duration_stretch={stretch:.3f}"]
        cmd += ["--setf", f"int_f0_target_mean={f0:.1f}"] if f0 else []
        subprocess.run([*cmd, "-t", text, "-o", wav], capture_output=True, check=True)
        return wavfile.read(wav)


def speak_pico(text: str, voice: str, speed: int, pitch: int) -> tuple[int, np.ndarray]:
    """SVOX Pico's (rate, int16 samples) of `text` (16 kHz), at markup speed and pitch levels."""
    if not re.fullmatch(r"[A-Za-z' ]+", text):
        raise ValueError(f"pico text {text!r}: letters, apostrophes and spaces only")
    with tempfile.TemporaryDirectory() as tmp:
        wav = os.path.join(tmp, "w.wav")
        markup = f"<speed level='{speed}'><pitch level='{pitch}'>{text}</pitch></speed>"
        subprocess.run(["pico2wave", "-l", voice, "-w", wav, markup], capture_output=True,
                       check=True)
        return wavfile.read(wav)


def festival_script(clips: list, wav_dir: str) -> str:
    """A festival script rendering each clip's text to wav_dir/<i>.wav: one process for many
    clips (text2wave per clip spends ~1 s loading the voice). The voice is selected before
    every clip, so each clip's audio depends only on that clip."""
    lines = []
    for i, c in enumerate(clips):
        if not re.fullmatch(r"[A-Za-z' ]+", c.text) or c.voice not in FESTIVAL_F0:
            raise ValueError(f"festival clip {c.rel}: text {c.text!r}, voice {c.voice!r}")
        lines += [f"(voice_{c.voice})", f"(Parameter.set 'Duration_Stretch {c.stretch:.3f})"]
        if c.f0:
            lines.append(f"(set! int_lr_params '((target_f0_mean {c.f0:.1f}) (target_f0_std "
                         f"{0.15 * c.f0:.1f}) (model_f0_mean 170) (model_f0_std 34)))")
        wav = os.path.join(wav_dir, f"{i}.wav")
        lines.append(f'(utt.save.wave (utt.synth (Utterance Text "{c.text}")) "{wav}" \'riff)')
    return "\n".join(lines) + "\n"


def festival_voices() -> list[str]:
    """The English festival voices of FESTIVAL_F0 that are installed (Debian festvox-*)."""
    have = {p.name for p in FESTIVAL_VOICES.glob("*/*") if p.is_dir()}
    voices = [v for v in FESTIVAL_F0 if v in have]
    if not voices:
        raise RuntimeError(f"no festival voice of {sorted(FESTIVAL_F0)} under {FESTIVAL_VOICES}")
    return voices


def pico_voices() -> list[str]:
    """The English Pico voices whose language files are installed (libttspico-data)."""
    voices = [v for v in PICO_VOICES if (PICO_LANG / f"{v}_ta.bin").exists()]
    if not voices:
        raise RuntimeError(f"no pico voice of {PICO_VOICES} under {PICO_LANG}")
    return voices


def mbrola_voices() -> list[str]:
    """The English MBROLA voices that are installed (mbrola-us1 ...)."""
    voices = [v for v in MBROLA_VOICES if (MBROLA_DIR / v / v).exists()]
    if not voices:
        raise RuntimeError(f"no mbrola voice of {MBROLA_VOICES} under {MBROLA_DIR}")
    return voices


def espeak_voices(limit: int) -> tuple[list[str], list[str]]:
    """English accents of espeak-ng's own voices (mbrola ones need mbrola) and all variants."""
    run = lambda *a: subprocess.run(["espeak-ng", *a], capture_output=True, text=True,  # noqa: E731
                                    check=True).stdout
    rows = [ln.split() for ln in run("--voices=en").splitlines()[1:]]
    accents = sorted({r[1] for r in rows if len(r) > 4 and r[4].startswith("gmw/")})
    data = Path(run("--version").split("Data at:")[1].strip())
    variants = sorted(p.name for p in (data / "voices" / "!v").iterdir()
                      if re.fullmatch(r"[A-Za-z0-9_-]+", p.name))
    variants = variants[: max(3, limit)] if limit else variants
    if not accents or len(variants) < 3:
        raise RuntimeError(f"espeak-ng: need English voices and >= 3 variants, got {accents} "
                           f"and {variants}")
    return accents, variants


def flite_voices() -> list[str]:
    """flite's built-in full voices (`flite -lv`; awb_time only speaks the time)."""
    out = subprocess.run(["flite", "-lv"], capture_output=True, text=True, check=True).stdout
    voices = [v for v in out.split(":", 1)[-1].split() if v != "awb_time"]
    if not voices:
        raise RuntimeError(f"flite -lv lists no voices: {out!r}")
    return voices


def deal_variants(variants: list[str], rng: np.random.Generator) -> dict[str, str]:
    """Variant -> split: 10 % validation, 10 % testing (at least one each), the rest train."""
    order = [variants[i] for i in rng.permutation(len(variants))]
    k = max(1, round(0.1 * len(order))) if len(order) >= 3 else 0
    return {v: ("validation" if i < k else "testing" if i < 2 * k else "train")
            for i, v in enumerate(order)}


@dataclass(frozen=True)
class Clip:
    """One output WAV: where it goes, where it comes from, and how to render it."""

    rel: str  # path relative to the output directory
    split: str  # "train" | "validation" | "testing"
    source: str  # provenance for sources.csv
    licence: str
    real: bool = False  # listed in real_test_list.txt
    text: str = ""  # text to synthesize; "" for a recording
    engine: str = "espeak"  # "espeak", "flite", "festival", "pico", "mbrola", "piper", "kokoro"
    voice: str = ""  # espeak voice "accent+variant", kokoro blend "a+b", or a flite, festival,
    # pico, mbrola, piper voice
    speed: int = 175  # espeak and mbrola words per minute; pico speed level
    pitch: int = 50  # espeak and mbrola pitch 0..99; pico pitch level
    stretch: float = 1.0  # flite duration_stretch, festival Duration_Stretch, piper length_scale,
    # 1 / kokoro speed (> 1 is slower)
    f0: float = 0.0  # flite int_f0_target_mean, festival target_f0_mean, Hz (0: the voice's)
    wav: str = ""  # source recording (8 kHz Asterisk prompt)
    u: float = 0.0  # placement of the word in the second, in [0, 1)
    peak_db: float = 0.0  # peak level after placement (dBFS); 0 keeps a recording's level
    noise: tuple = ()  # piper (noise_scale, noise_w, playback-rate shift, noise seed); kokoro
    # (weight of the first voice, playback-rate shift)


def place(word: np.ndarray, u: float) -> tuple[np.ndarray, bool]:
    """Put a word (L,) into a 1-s clip at offset floor(u * slack); center-crop if too long."""
    if len(word) > CLIP:
        s = (len(word) - CLIP) // 2
        return word[s:s + CLIP].copy(), True
    out = np.zeros(CLIP)  # (CLIP,)
    off = int(u * (CLIP - len(word) + 1))
    out[off:off + len(word)] = word
    return out, False


def to_int16(x: np.ndarray) -> np.ndarray:  # float in [-1, 1) -> int16, saturating
    return np.clip(np.rint(x * 32768.0), -32768, 32767).astype(np.int16)


def finish(clip: Clip, sr: int, raw: np.ndarray, out: str) -> tuple[str, bool]:
    """Trim, resample, place and scale one synthesized or recorded word; write its WAV."""
    word = trim_silence(resample(raw / 32768.0, sr, SR), SR)  # (L,)
    x, truncated = place(word, clip.u)  # (CLIP,)
    if clip.peak_db and np.abs(x).max() > 0:
        x = x * (10 ** (clip.peak_db / 20) / np.abs(x).max())
    wavfile.write(os.path.join(out, clip.rel), SR, to_int16(x))
    return clip.rel, truncated


def render(job: tuple[list, str]) -> list[tuple[str, bool]]:
    """Write a batch of clips (festival clips share one festival process; others go one by
    one); returns (rel, truncated) per clip. Each clip depends only on itself, never on order
    or batching."""
    clips, out = job
    if clips and all(c.engine == "festival" and c.text for c in clips):
        with tempfile.TemporaryDirectory() as tmp:
            script = os.path.join(tmp, "run.scm")
            Path(script).write_text(festival_script(clips, tmp))
            subprocess.run(["festival", "-b", script], capture_output=True, check=True)
            return [finish(c, *wavfile.read(os.path.join(tmp, f"{i}.wav")), out)
                    for i, c in enumerate(clips)]
    done = []
    for clip in clips:
        if clip.text and clip.engine == "festival":
            done += render(([clip], out))
            continue
        if not clip.text:
            sr, raw = wavfile.read(clip.wav)
        elif clip.engine == "flite":
            sr, raw = speak_flite(clip.text, clip.voice, clip.stretch, clip.f0)
        elif clip.engine == "pico":
            sr, raw = speak_pico(clip.text, clip.voice, clip.speed, clip.pitch)
        elif clip.engine == "piper":
            sr, raw = speak_piper(clip.text, clip.voice, clip.stretch, *clip.noise)
        elif clip.engine == "kokoro":
            sr, raw = speak_kokoro(clip.text, tuple(clip.voice.split("+")), clip.noise[0],
                                   1.0 / clip.stretch, clip.noise[1])
        elif clip.engine == "mbrola":
            sr, raw = speak(clip.text, f"mb-{clip.voice}", clip.speed, clip.pitch)
        else:
            sr, raw = speak(clip.text, clip.voice, clip.speed, clip.pitch)
        done.append(finish(clip, sr, raw, out))
    return done
