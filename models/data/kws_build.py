"""`qs4d data kws --out DIR`: a digit keyword-spotting set in the Google Speech Commands layout.

espeak-ng voices (accent x variant x speed x pitch) speak the ten digits and ~45 other words;
flite's voices (CMU kal, awb, rms, slt: diphone and statistical voices built from recordings of
real speakers) speak them too, at random speed and pitch, all in train: without a second,
more natural synthesizer, a model learns "human voice => _unknown_" (every human recording
it trains on is a foreign-language `_unknown_` word); festival's voices (the CMU ARCTIC slt HTS
voice, the kal and ked diphone voices) are optional (--festival-per-word: they did not move
the real-speaker digits, docs/data-kws.md), and so are SVOX Pico's two female voices and the
English MBROLA diphone voices (--pico-per-word, --mbrola-per-word; Debian non-free), and Piper's
neural voice en_US-joe-medium (--piper-per-word; pip, `kws_piper.py`), and Kokoro-82M in blends
of its five Japanese voices' timbres speaking English phonemes (--kokoro-per-word; pip,
`kws_kokoro.py`);
Asterisk prompts (8 kHz, one human speaker per package) give real `_unknown_` words and the
real-speaker test digits; music on hold and white/pink/brown noise give `_background_noise_/`
and `_silence_/`. Clips are 16 kHz mono int16, 1 s, the word at a seeded random place.
Splits are speaker independent: an espeak voice takes its variant's split (variants dealt from
the seed), each Asterisk speaker sits in one split, and Allison Smith (English, also the Spanish
package) is the real-speaker test set (`testing_list.txt` and `real_test_list.txt` only).

Glossary: L samples, SR 16 kHz output rate. Same seed and flags -> byte-identical output.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
import time
from collections import Counter
from itertools import product
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from scipy.io import wavfile
from tqdm import tqdm

from .augment import COLORS, colored_noise, resample
from .kws_kokoro import KOKORO_SHIFT, KOKORO_SPEED, homophones, kokoro_voices
from .kws_piper import PIPER_LENGTH, PIPER_NOISE, PIPER_NOISE_W, PIPER_SHIFT, piper_voices
from .kws_render import (
    CLIP,
    FESTIVAL_F0,
    FLITE_F0,
    FLITE_F0_MALE,
    PICO_PITCH,
    PICO_SPEED,
    SR,
    Clip,
    deal_variants,
    espeak_voices,
    festival_voices,
    flite_voices,
    mbrola_voices,
    pico_voices,
    render,
    to_int16,
)
from .kws_sources import (
    ASTERISK,
    CC_BY_SA,
    GENERATED,
    GPL,
    SPEAKERS,
    TTS_LICENCE,
    short_prompts,
    write_readme,
)

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
UNKNOWN_WORDS = (  # Speech Commands words, then words close to a digit (no homophones)
    "yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "bed", "bird", "cat",
    "dog", "happy", "house", "marvin", "sheila", "tree", "wow", "learn", "follow", "forward",
    "backward", "visual", "for", "sex", "hero", "fine", "nice", "wine", "ten", "fight", "free",
    "gate", "heaven", "wait", "sticks", "done", "new", "zoo", "fork", "native", "throw", "hello")

ESPEAK_SPEED = (110, 231)  # words per minute, [lo, hi) (espeak-ng and MBROLA through it)
ESPEAK_PITCH = (15, 86)  # espeak-ng pitch 0..99, [lo, hi)


# --- Planning: every random choice is made here, in one process, in a fixed order.

def plan_espeak(words: dict[str, int], accents: list[str], variant_split: dict[str, str],
                rng: np.random.Generator) -> list[Clip]:
    """n clips of each word, each a random voice (accent x variant), speed, pitch, place."""
    variants = sorted(variant_split)
    clips, seen = [], {}
    for word, n in words.items():
        for _ in range(n):
            acc, var = accents[rng.integers(len(accents))], variants[rng.integers(len(variants))]
            speed, pitch = int(rng.integers(*ESPEAK_SPEED)), int(rng.integers(*ESPEAK_PITCH))
            u, peak = float(rng.random()), float(rng.uniform(-20.0, -1.0))
            voice = f"{acc}+{var}"
            k = seen[(word, voice)] = seen.get((word, voice), -1) + 1
            clips.append(Clip(rel=f"{word}/espeak-{voice}_nohash_{k}.wav",
                              split=variant_split[var], source=f"espeak-ng {voice} -s {speed} "
                              f"-p {pitch} '{word}'", licence=GPL, text=word,
                              voice=voice, speed=speed, pitch=pitch, u=u, peak_db=peak))
    return clips


def plan_tts(engine: str, words: dict[str, int], voices: list[str],
             rng: np.random.Generator) -> list[Clip]:
    """flite, festival, pico, mbrola, piper or kokoro: n clips of each word, each a random
    voice, speed (or duration stretch), pitch (piper: noise and playback-rate shift; kokoro: a
    blend of two voices and a playback-rate shift) and place, all in train."""
    clips, seen = [], {}
    if engine == "kokoro":
        same = homophones([w for w in words if w not in DIGITS], DIGITS)
        words = {w: n for w, n in words.items() if w not in same}
    for word, n in words.items():
        for _ in range(n):
            voice = voices[rng.integers(len(voices))]
            stretch, f0, speed, pitch, noise = 1.0, 0.0, 175, 50, ()
            if engine == "kokoro":
                other = voices[rng.integers(len(voices))]
                weight, speed_k = float(rng.random()), float(rng.uniform(*KOKORO_SPEED))
                stretch = 1.0 / speed_k
                noise = (weight, float(rng.uniform(*KOKORO_SHIFT)))
                voice = f"{voice}+{other}"
                how = (f"kokoro {weight:.3f} {voice.replace('+', ' + (1 - w) ')} "
                       f"speed={speed_k:.3f} shift={noise[1]:.3f}")
            elif engine == "piper":
                stretch = float(rng.uniform(*PIPER_LENGTH))
                noise = (float(rng.uniform(*PIPER_NOISE)), float(rng.uniform(*PIPER_NOISE_W)),
                         float(rng.uniform(*PIPER_SHIFT)), int(rng.integers(2**63)))
                how = (f"piper {voice} length_scale={stretch:.3f} noise_scale={noise[0]:.3f} "
                       f"noise_w={noise[1]:.3f} shift={noise[2]:.3f} seed={noise[3]}")
            elif engine in ("pico", "mbrola"):
                sp, pt = (PICO_SPEED, PICO_PITCH) if engine == "pico" else (ESPEAK_SPEED,
                                                                             ESPEAK_PITCH)
                speed, pitch = int(rng.integers(*sp)), int(rng.integers(*pt))
                how = (f"pico2wave -l {voice} <speed level={speed}><pitch level={pitch}>"
                       if engine == "pico" else f"espeak-ng -v mb-{voice} -s {speed} -p {pitch}")
            elif engine == "flite":
                stretch = float(rng.uniform(0.75, 1.35))
                f0 = float(rng.uniform(*FLITE_F0.get(voice, FLITE_F0_MALE)))
                how = f"flite -voice {voice} duration_stretch={stretch:.3f} " \
                      f"int_f0_target_mean={f0:.1f}"
            else:
                stretch = float(rng.uniform(0.75, 1.35))
                rf0 = FESTIVAL_F0[voice]
                f0 = float(rng.uniform(*rf0)) if rf0 else 0.0
                stretch = stretch if rf0 else 1.0
                how = f"festival voice_{voice} Duration_Stretch={stretch:.3f}" + \
                      (f" target_f0_mean={f0:.1f}" if f0 else "")
            u, peak = float(rng.random()), float(rng.uniform(-20.0, -1.0))
            k = seen[(word, voice)] = seen.get((word, voice), -1) + 1
            clips.append(Clip(rel=f"{word}/{engine}-{voice}_nohash_{k}.wav", split="train",
                              source=f"{how} '{word}'", licence=TTS_LICENCE[engine],
                              text=word, engine=engine, voice=voice, stretch=stretch, f0=f0,
                              speed=speed, pitch=pitch, u=u, peak_db=peak, noise=noise))
    return clips


def plan_recordings(limit: int, real_copies: int, real_unknown: int,
                    rng: np.random.Generator) -> list[Clip]:
    """Asterisk prompts: real test digits, and short words of every speaker as `_unknown_`."""
    clips: list[Clip] = []
    for spk in SPEAKERS:
        if not spk.path.is_dir():
            continue
        files = short_prompts(spk, limit)
        if spk.real:
            files = [files[i] for i in sorted(rng.permutation(len(files))[:real_unknown])]
        for k, f in enumerate(files):
            clips.append(Clip(rel=f"_unknown_/ast-{spk.tag}_nohash_{k}.wav", split=spk.split,
                              source=f"{spk.package}:{f.relative_to(spk.path)}",
                              licence=spk.licence, real=spk.real, wav=str(f),
                              u=float(rng.random())))
        for (d, word), c in product(enumerate(DIGITS) if spk.digits else [], range(real_copies)):
            clips.append(Clip(rel=f"{word}/ast-{spk.tag}_nohash_{c}.wav", split="testing",
                              source=f"{spk.package}:digits/{d}.wav", licence=spk.licence,
                              real=True, wav=str(spk.path / "digits" / f"{d}.wav"),
                              u=float(rng.random())))
    return clips


def noise_sources(seconds: float, rng: np.random.Generator) -> dict[str, list]:
    """Per split, (name, samples, licence, real): fresh white/pink/brown noise, and the music
    tracks dealt one to testing, one to validation, the rest to train."""
    out: dict[str, list] = {"train": [], "validation": [], "testing": []}
    for split in out:
        n = int(seconds * SR) if split == "train" else min(int(seconds * SR), 30 * SR)
        for color in COLORS:
            name = f"{color}_noise" if split == "train" else f"{color}-{split}"
            out[split].append((name, 0.1 * colored_noise(n, color, rng), GENERATED, False))
    moh = sorted((ASTERISK / "moh").glob("*.wav"))
    for i, k in enumerate(rng.permutation(len(moh))):
        split = ("testing", "validation")[i] if len(moh) >= 3 and i < 2 else "train"
        sr, raw = wavfile.read(moh[k])
        x = resample(raw[: int(seconds * sr)] / 32768.0, sr, SR)  # (L,)
        out[split].append((f"moh-{moh[k].stem}", x, CC_BY_SA, split == "testing"))
    return out


def write_noise(out: Path, n_silence: int, seconds: float, rng: np.random.Generator) -> list[Clip]:
    """`_background_noise_/` (the train noise) and `_silence_/` clips cut at -65..-35 dBFS."""
    sources, clips, seen = noise_sources(seconds, rng), [], {}
    for name, x, lic, _ in sources["train"]:
        rel = f"_background_noise_/{name}.wav"
        wavfile.write(out / rel, SR, to_int16(x))
        clips.append(Clip(rel=rel, split="background", source=name, licence=lic))
    k = round(0.1 * n_silence)
    for split, m in (("train", n_silence - 2 * k), ("validation", k), ("testing", k)):
        for _ in range(m):
            name, x, lic, real = sources[split][int(rng.integers(len(sources[split])))]
            start, db = int(rng.integers(len(x) - CLIP + 1)), float(rng.uniform(-65, -35))
            seg = x[start:start + CLIP]  # (CLIP,)
            seg = seg * (10 ** (db / 20) / max(np.sqrt(np.mean(seg**2)), 1e-12))
            i = seen[name] = seen.get(name, -1) + 1
            rel = f"_silence_/{name}_nohash_{i}.wav"
            wavfile.write(out / rel, SR, to_int16(seg))
            clips.append(Clip(rel=rel, split=split, licence=lic, real=real,
                              source=f"{name}[{start}:{start + CLIP}] at {db:.1f} dBFS RMS"))
    return clips


# --- Running, writing the lists, the CLI.

FESTIVAL_BATCH = 24  # festival clips per festival process


def run_pool(clips: list[Clip], out: Path, workers: int, quiet: bool) -> int:
    """Render all clips with a small process pool (festival clips sorted by voice, in batches);
    returns how many were center-cropped."""
    fest = sorted((c for c in clips if c.engine == "festival" and c.text),
                  key=lambda c: (c.voice, c.rel))
    jobs = [([c], str(out)) for c in clips if not (c.engine == "festival" and c.text)]
    jobs = [(fest[i:i + FESTIVAL_BATCH], str(out))
            for i in range(0, len(fest), FESTIVAL_BATCH)] + jobs  # slow batches first
    cut = 0
    with get_context("spawn").Pool(workers) as pool, tqdm(
            total=len(clips), desc="clips", disable=True if quiet else None) as bar:
        for res in pool.imap_unordered(render, jobs, chunksize=1):
            cut += sum(truncated for _, truncated in res)
            bar.update(len(res))
    return cut


def write_lists(out: Path, clips: list[Clip]) -> None:
    """The three list files (sorted, relative paths) and sources.csv."""
    for name, keep in (("validation_list.txt", lambda c: c.split == "validation"),
                       ("testing_list.txt", lambda c: c.split == "testing"),
                       ("real_test_list.txt", lambda c: c.real)):
        (out / name).write_text("".join(sorted(c.rel + "\n" for c in clips if keep(c))))
    with open(out / "sources.csv", "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["path", "split", "real", "licence", "source"])
        w.writerows([c.rel, c.split, int(c.real), c.licence, c.source]
                     for c in sorted(clips, key=lambda c: c.rel))


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="qs4d data kws", description=__doc__.split("\n")[0])
    add = lambda flag, default, doc: p.add_argument(  # noqa: E731
        flag, type=type(default), default=default, help=f"{doc} (default {default})")
    p.add_argument("--out", required=True, type=Path, help="output directory (replaced)")
    add("--seed", 0, "random seed: same seed, same bytes")
    add("--per-word", 400, "espeak clips per digit")
    add("--per-unknown", 60, "espeak clips per other word")
    add("--flite-per-word", 150, "flite clips per digit (0: no flite)")
    add("--flite-per-unknown", 20, "flite clips per other word")
    add("--festival-per-word", 0, "festival clips per digit (e.g. 150; 0: no festival)")
    add("--festival-per-unknown", 0, "festival clips per other word (e.g. 20)")
    add("--pico-per-word", 0, "SVOX Pico clips per digit (e.g. 150; non-free libttspico-utils)")
    add("--pico-per-unknown", 0, "SVOX Pico clips per other word (e.g. 20)")
    add("--mbrola-per-word", 0, "MBROLA clips per digit (e.g. 150; non-free mbrola-us1 ...)")
    add("--mbrola-per-unknown", 0, "MBROLA clips per other word (e.g. 20)")
    add("--piper-per-word", 0, "Piper clips per digit (e.g. 400; pip install -e .[voices])")
    add("--piper-per-unknown", 0, "Piper clips per other word (e.g. 40)")
    add("--kokoro-per-word", 0, "Kokoro clips per digit (e.g. 250; pip install -e .[voices])")
    add("--kokoro-per-unknown", 0, "Kokoro clips per other word (e.g. 25)")
    add("--silence", 400, "_silence_ clips")
    add("--limit", 0, "quick run: at most this many prompts per Asterisk speaker and espeak "
        "variants; 0 means all")
    add("--real-copies", 3, "placements of each real test digit recording")
    add("--real-unknown", 30, "real-speaker test words per language of the test speaker")
    add("--noise-seconds", 180.0, "length of each background noise (music is cut to it)")
    add("--workers", 2, "synthesis processes")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    a = p.parse_args(argv)
    bad = [k for k, v in vars(a).items() if isinstance(v, (int, float)) and v < 0]
    if bad or a.workers < 1 or a.noise_seconds < 1:
        p.error(f"need counts >= 0, --workers >= 1, --noise-seconds >= 1; got "
                f"{ {k: vars(a)[k] for k in bad} or (a.workers, a.noise_seconds)}")
    return a


def build(a: argparse.Namespace, argv: list[str]) -> dict[str, int]:
    """Plan and write the whole data set; returns file counts per folder."""
    if a.out.exists() and any(a.out.iterdir()) and not (a.out / "real_test_list.txt").exists():
        raise FileExistsError(f"--out {a.out}: not empty and not a kws build; refusing to "
                              "replace it")
    accents, variants = espeak_voices(a.limit)
    rng = np.random.default_rng(a.seed)
    variant_split = deal_variants(variants, rng)
    words = {w: a.per_word for w in DIGITS} | {w: a.per_unknown for w in UNKNOWN_WORDS}
    clips = plan_espeak(words, accents, variant_split, rng)
    clips += plan_recordings(a.limit, a.real_copies, a.real_unknown, rng)
    if a.flite_per_word or a.flite_per_unknown:
        fwords = ({w: a.flite_per_word for w in DIGITS}
                  | {w: a.flite_per_unknown for w in UNKNOWN_WORDS})
        clips += plan_tts("flite", fwords, flite_voices(), rng)
    # each optional engine draws from its own random stream: adding one changes no other file
    for stream, (engine, voices) in enumerate((("festival", festival_voices),
                                               ("pico", pico_voices),
                                               ("mbrola", mbrola_voices),
                                               ("piper", piper_voices),
                                               ("kokoro", kokoro_voices)), start=2):
        per_word, per_unknown = (getattr(a, f"{engine}_per_{k}") for k in ("word", "unknown"))
        if per_word or per_unknown:
            words = ({w: per_word for w in DIGITS} | {w: per_unknown for w in UNKNOWN_WORDS})
            clips += plan_tts(engine, words, voices(), np.random.default_rng([a.seed, stream]))
    shutil.rmtree(a.out, ignore_errors=True)
    for d in {c.rel.split("/")[0] for c in clips} | {"_silence_", "_background_noise_"}:
        (a.out / d).mkdir(parents=True)
    cut = run_pool(clips, a.out, a.workers, a.quiet)
    clips += write_noise(a.out, a.silence, a.noise_seconds, rng)
    write_lists(a.out, clips)
    write_readme(a.out, clips, accents, variant_split, argv)
    counts = Counter(c.rel.split("/")[0] for c in clips)
    return dict(sorted(counts.items())) | {"(center-cropped)": cut}


def main(argv: list[str]) -> int:
    a = parse_args(argv)
    for tool, needed in (("espeak-ng", True), ("flite", a.flite_per_word or a.flite_per_unknown),
                         ("festival", a.festival_per_word or a.festival_per_unknown),
                         ("pico2wave", a.pico_per_word or a.pico_per_unknown),
                         ("mbrola", a.mbrola_per_word or a.mbrola_per_unknown)):
        if needed and shutil.which(tool) is None:
            print(f"qs4d data kws: {tool} is not installed (run scripts/sysdeps.sh"
                  f"{' --non-free' if tool in ('pico2wave', 'mbrola') else ''})",
                  file=sys.stderr)
            return 3
    for engine, voices in (("piper", piper_voices), ("kokoro", kokoro_voices)):
        if getattr(a, f"{engine}_per_word") or getattr(a, f"{engine}_per_unknown"):
            try:
                voices()
            except RuntimeError as e:
                print(f"qs4d data kws: {e}", file=sys.stderr)
                return 3
    t0 = time.time()
    counts = build(a, argv)
    print(f"wrote {a.out} in {time.time() - t0:.1f} s ({a.workers} workers)")
    for k, v in counts.items():
        print(f"  {k:<20} {v}")
    return 0
