"""Real keyword data: Google Speech Commands (v0.02, or its official 12-class test set), its
background noise, and the Free Spoken Digit Dataset (FSDD), with deterministic speaker-disjoint
splits. numpy + scipy only (no torch at import): the streaming benchmark uses it too.

Glossary: N clips in a listing, L samples per clip (16000), K classes.

Where the data lives (`../shared/data` from the project root, or a user's own copies):

- a Speech Commands tree: `<word>/<speaker>_nohash_<n>.wav`, in the 12-class test set also
  `_unknown_/<word>_<speaker>_nohash_<n>.wav` and `_silence_/<n>.wav`;
- its background noise: `_background_noise_/` inside a full tree, else a folder of WAVs
  (`speech_commands_noise/` beside `speech_commands_test/`);
- FSDD: `<digit>_<speaker>_<index>.wav`, 8 kHz, trimmed (read at 16 kHz by
  scipy.signal.resample_poly, centred in 1 s).

Splits (docs/data-kws.md, "Real speakers"):

- Speech Commands by speaker: a tree with `validation_list.txt` and `testing_list.txt` (the
  full v0.02 set) keeps its official split; otherwise (the 12-class test set, 197 speakers) a
  speaker goes to `testing` when h < 25, `validation` when 25 <= h < 40, else `train`, where h =
  int(sha1(SC_SALT + speaker)) mod 100. `_silence_/<n>.wav` clips (noise cuts, no speaker) are
  split by the same hash of "silence-<n>".
- Noise recordings by time: the first 60 % of every file is `train`, the next 15 %
  `validation`, the last 25 % `testing` (NOISE_SPLIT).
- FSDD leave one speaker out: the fold's speaker is `testing`, the other four `train`; a fold
  "TEST/VAL" also holds VAL out as `validation` (three train).
"""

from __future__ import annotations

import hashlib
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.io import wavfile

from .augment import resample, trim_silence
from .speech_commands import (
    BACKGROUND,
    DIGITS,
    MLPERF_KEYWORDS,
    SILENCE,
    UNKNOWN,
    ClassMap,
)

SR = 16000
SPLITS = ("train", "validation", "testing")
SC_SALT = "qs4d-sc-speakers-v1"
SC_PERCENT = (("testing", 25), ("validation", 15))  # the rest (60 %) is train
NOISE_SPLIT = (("train", 0.0, 0.60), ("validation", 0.60, 0.75), ("testing", 0.75, 1.0))
FSDD_SPEAKERS = ("george", "jackson", "lucas", "nicolas", "yweweler")
SC12 = ClassMap(MLPERF_KEYWORDS)  # MLPerf Tiny: yes ... go, _unknown_, _silence_
DIGITS12 = ClassMap(DIGITS)  # zero ... nine, _unknown_, _silence_
_FSDD_NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)$")


@dataclass
class Clips:
    """Parallel (N,) arrays describing clips of one or more sources.

    A clip is samples [offset, offset + L) of `path` read at 16 kHz (after resampling), times
    `gain`; a file shorter than L (FSDD) is trimmed of silence and centred in L samples.
    `word` is the spoken word (the folder for Speech Commands keywords, the file name's prefix
    in its `_unknown_/`), `_silence_` for noise cuts.
    """

    paths: np.ndarray  # (N,) str
    words: np.ndarray  # (N,) str
    speakers: np.ndarray  # (N,) str
    splits: np.ndarray  # (N,) str: train | validation | testing
    sources: np.ndarray  # (N,) str: sc | fsdd | synth | noise
    offsets: np.ndarray  # (N,) int64, in samples at 16 kHz
    gains: np.ndarray  # (N,) float32

    def __len__(self) -> int:
        return len(self.paths)

    def take(self, mask) -> Clips:
        return Clips(**{k: getattr(self, k)[mask] for k in COLUMNS})

    def select(self, split: str) -> Clips:
        if split not in SPLITS:
            raise ValueError(f"Clips.select: split must be one of {SPLITS}, got {split!r}")
        return self.take(self.splits == split)

    def labels(self, cmap: ClassMap) -> np.ndarray:
        """(N,) int64 class of every clip under a class map (-1: dropped by it)."""
        return np.array([cmap.index(w) for w in self.words], dtype=np.int64)

    def counts(self, cmap: ClassMap) -> dict:
        """{label name: clips} under a class map."""
        y = self.labels(cmap)
        n = np.bincount(y[y >= 0], minlength=len(cmap.labels))
        return {name: int(c) for name, c in zip(cmap.labels, n)}


COLUMNS = ("paths", "words", "speakers", "splits", "sources", "offsets", "gains")


def concat(*parts: Clips) -> Clips:
    return Clips(**{k: np.concatenate([getattr(p, k) for p in parts]) for k in COLUMNS})


def _clips(rows: list, source: str) -> Clips:
    """rows of (path, word, speaker, split[, offset, gain]) -> Clips."""
    rows = [r if len(r) == 6 else (*r, 0, 1.0) for r in rows]
    cols = list(zip(*rows)) if rows else [()] * 6
    return Clips(paths=np.array(cols[0], dtype=str), words=np.array(cols[1], dtype=str),
                 speakers=np.array(cols[2], dtype=str), splits=np.array(cols[3], dtype=str),
                 sources=np.full(len(rows), source, dtype=object).astype(str),
                 offsets=np.array(cols[4], dtype=np.int64),
                 gains=np.array(cols[5], dtype=np.float32))


# --- Speech Commands

def speaker_split(speaker: str, salt: str = SC_SALT) -> str:
    """A Speech Commands speaker's split by the salted hash (module docstring)."""
    h = int(hashlib.sha1((salt + speaker).encode()).hexdigest(), 16) % 100
    lo = 0
    for split, pct in SC_PERCENT:
        if lo <= h < lo + pct:
            return split
        lo += pct
    return "train"


def parse_sc_name(folder: str, stem: str) -> tuple[str, str]:
    """(word, speaker) of a Speech Commands file: `<folder>/<speaker>_nohash_<n>`, or in a
    `_unknown_/` folder `<word>_<speaker>_nohash_<n>`, or `_silence_/<n>`."""
    if folder == SILENCE:
        return SILENCE, f"silence-{stem}"
    head = stem.split("_nohash_")[0]
    if folder == UNKNOWN:
        word, _, speaker = head.rpartition("_")
        if not word:
            raise ValueError(f"{folder}/{stem}.wav: expected <word>_<speaker>_nohash_<n>")
        return word, speaker
    return folder, head


def load_speech_commands(root: str | Path, splits: str = "auto") -> Clips:
    """Every clip of a Speech Commands tree with its word, speaker and split.

    splits: "auto" uses the tree's validation/testing lists when it has both (the full
    v0.02 set), else the speaker hash; "hash" or "lists" force one.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"Speech Commands root {root} is not a directory")
    lists = [root / f"{n}_list.txt" for n in ("validation", "testing")]
    if splits not in ("auto", "hash", "lists"):
        raise ValueError(f"load_speech_commands: splits must be auto, hash or lists, got {splits!r}")
    use_lists = splits == "lists" or (splits == "auto" and all(p.exists() for p in lists))
    val, test = ((set(p.read_text().split()) for p in lists) if use_lists else (set(), set()))
    rows = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if folder.name.startswith(".") or folder.name == BACKGROUND:
            continue
        for f in sorted(folder.glob("*.wav")):
            word, speaker = parse_sc_name(folder.name, f.stem)
            if use_lists:
                rel = f"{folder.name}/{f.name}"
                split = "validation" if rel in val else "testing" if rel in test else "train"
            else:
                split = speaker_split(speaker)
            rows.append((str(f), word, speaker, split))
    return _clips(rows, "sc")


def noise_files(root: str | Path) -> list[Path]:
    """The background-noise WAVs: `root/_background_noise_/` when it exists, else root's own."""
    root = Path(root)
    d = root / BACKGROUND if (root / BACKGROUND).is_dir() else root
    files = sorted(d.glob("*.wav"))
    if not files:
        raise FileNotFoundError(f"no background-noise WAVs in {d}")
    return files


def noise_split(x: np.ndarray, split: str) -> np.ndarray:
    """The split's share of one noise recording (NOISE_SPLIT), by time."""
    for name, a, b in NOISE_SPLIT:
        if name == split:
            return x[int(a * len(x)):int(b * len(x))]
    raise ValueError(f"noise_split: split must be one of {SPLITS}, got {split!r}")


def load_noises(root: str | Path, split: str) -> list[np.ndarray]:
    """The split's part of every background-noise recording, float32 at 16 kHz."""
    return [noise_split(read_audio(p), split) for p in noise_files(root)]


def silence_cuts(root: str | Path, n_per_split: dict, seed: int,
                 max_gain: float = 1.0) -> Clips:
    """1-s `_silence_` clips cut at seeded offsets from each split's part of the noise."""
    rng = np.random.default_rng(seed)
    files = noise_files(root)
    lengths = [len(read_audio(p)) for p in files]
    rows = []
    for split, a, b in NOISE_SPLIT:
        for _ in range(int(n_per_split.get(split, 0))):
            k = int(rng.integers(len(files)))
            lo, hi = int(a * lengths[k]), int(b * lengths[k]) - SR
            rows.append((str(files[k]), SILENCE, f"noise-{files[k].stem}", split,
                         int(rng.integers(lo, max(lo + 1, hi + 1))),
                         float(rng.uniform(0.0, max_gain))))
    return _clips(rows, "noise")


# --- FSDD

def parse_fsdd_name(stem: str) -> tuple[str, str]:
    """(word, speaker) of an FSDD file `<digit>_<speaker>_<index>`."""
    m = _FSDD_NAME.match(stem)
    if not m:
        raise ValueError(f"{stem}.wav: expected <digit>_<speaker>_<index>.wav")
    return DIGITS[int(m.group(1))], m.group(2)


def parse_fold(fold: str) -> tuple[str, str]:
    """"TEST" or "TEST/VALIDATION": the FSDD speakers held out ("" for no validation one)."""
    test, _, val = fold.partition("/")
    return test, val


def load_fsdd(root: str | Path, fold: str) -> Clips:
    """Every FSDD clip: the fold's speaker is `testing`; with fold "TEST/VAL" the speaker VAL
    is `validation`; every other speaker `train`."""
    root = Path(root)
    files = sorted(root.glob("*.wav"))
    if not files:
        raise FileNotFoundError(f"no FSDD WAVs in {root}")
    rows = [(str(f), *parse_fsdd_name(f.stem)) for f in files]
    speakers = sorted({s for _, _, s in rows})
    test, val = parse_fold(fold)
    if test not in speakers or val and (val not in speakers or val == test):
        raise ValueError(f"FSDD fold {fold!r}: must be a speaker, or two distinct speakers "
                         f"TEST/VALIDATION, of {speakers}")
    split = {test: "testing", val: "validation"}
    return _clips([(p, w, s, split.get(s, "train")) for p, w, s in rows], "fsdd")


# --- Reading

def read_audio(path: str | Path) -> np.ndarray:
    """A whole mono WAV as float32 at 16 kHz (int16 scaled to [-1, 1); other rates resampled
    by scipy.signal.resample_poly)."""
    with warnings.catch_warnings():  # FSDD's files carry a LIST chunk scipy skips
        warnings.simplefilter("ignore", wavfile.WavFileWarning)
        sr, x = wavfile.read(path)
    if x.ndim != 1:
        raise ValueError(f"{path}: need mono, got shape {x.shape}")
    if x.dtype == np.int16:
        x = x.astype(np.float32) / 32768.0
    elif x.dtype != np.float32:
        raise ValueError(f"{path}: need int16 or float32 samples, got {x.dtype}")
    return x if sr == SR else resample(x, sr, SR).astype(np.float32)


def centre(x: np.ndarray, length: int = SR) -> np.ndarray:
    """x centred in `length` samples: zero-padded both sides, or its middle cut out."""
    if len(x) >= length:
        a = (len(x) - length) // 2
        return x[a:a + length]
    a = (length - len(x)) // 2
    return np.pad(x, (a, length - len(x) - a))


def load_clip(clips: Clips, i: int, length: int = SR) -> np.ndarray:
    """Clip i as float32 (length,) at 16 kHz (Clips docstring)."""
    return read_clip(clips.paths[i], clips.words[i], int(clips.offsets[i]),
                     float(clips.gains[i]), length)


def read_clip(path: str, word: str, offset: int = 0, gain: float = 1.0,
              length: int = SR) -> np.ndarray:
    """One clip from its row's fields: a `_silence_` cut of a long noise recording at
    `offset`, or the whole file (FSDD's, shorter: trimmed and centred), times `gain`."""
    x = read_audio(path)
    if word == SILENCE and len(x) > length:  # a cut of a long noise recording
        x = x[offset:offset + length]
    elif len(x) != length:  # FSDD: trimmed, variable length
        t = trim_silence(x, SR)
        x = centre(t if len(t) else x, length)
    x = np.asarray(x * gain, dtype=np.float32)
    return np.pad(x, (0, length - len(x))) if len(x) < length else x


# --- The tasks' listings

def check_disjoint(clips: Clips) -> None:
    """Raise if a speaker (other than noise cuts) has clips in two splits."""
    seen: dict = {}
    for s, split in zip(clips.speakers, clips.splits):
        if seen.setdefault(s, split) != split:
            raise ValueError(f"speaker {s!r} is in both {seen[s]!r} and {split!r}")


def resolve(root: str | Path) -> dict:
    """{"sc", "noise", "fsdd"}: the folders under a real-data root laid out as
    `../shared/data` (speech_commands_test/, speech_commands_noise/, fsdd/), or a Speech
    Commands tree itself (noise in its `_background_noise_/`, FSDD in a sibling `fsdd/`).
    A missing folder is None."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"real data root {root} is not a directory")
    if (root / "yes").is_dir():
        sc, noise, fsdd = root, root / BACKGROUND, root.parent / "fsdd"
    else:
        sc = next((root / n for n in ("speech_commands", "speech_commands_test")
                   if (root / n).is_dir()), None)
        noise = root / "speech_commands_noise"
        if sc is not None and (sc / BACKGROUND).is_dir():
            noise = sc / BACKGROUND
        fsdd = root / "fsdd"
    return {"sc": sc, "noise": noise if noise.is_dir() else None,
            "fsdd": fsdd if fsdd.is_dir() else None}


def sc_clips(root: str | Path, seed: int = 0) -> Clips:
    """The Speech Commands clips of a real-data root, with `_silence_` cut from the noise
    (about one keyword class's worth per split) when the tree has no `_silence_/`."""
    where = resolve(root)
    if where["sc"] is None:
        raise FileNotFoundError(f"{root}: no Speech Commands tree (speech_commands_test/)")
    clips = load_speech_commands(where["sc"])
    if not (clips.words == SILENCE).any() and where["noise"] is not None:
        kw = np.isin(clips.words, MLPERF_KEYWORDS)
        n = {s: int(kw[clips.splits == s].sum() / len(MLPERF_KEYWORDS)) for s in SPLITS}
        clips = concat(clips, silence_cuts(where["noise"], n, seed))
    check_disjoint(clips)
    return clips


def fsdd_clips(root: str | Path, fold: str) -> Clips:
    where = resolve(root)
    if where["fsdd"] is None:
        raise FileNotFoundError(f"{root}: no fsdd/ folder")
    return load_fsdd(where["fsdd"], fold)


# --- Asterisk prompts: hours of real running speech without the keywords

ASTERISK = Path("/usr/share/asterisk/sounds")  # Debian's asterisk-core-sounds-* packages
# The streaming benchmark's non-keyword speech by split; "english" is the training voice of
# `train.speech_negatives` (so it joins the benchmark's testing only with --english, and then
# not for a bundle trained on it).
ASTERISK_SPLIT = {"validation": ("it_IT_f_Menardi", "fr_CA_f_June"),
                  "testing": ("es_MX_f_Allison", "it_IT_m_Carlo", "ru_RU_f_IvrvoiceRU"),
                  "english": ("en_US_f_Allison",)}
SKIP_DIRS = ("digits", "letters", "phonetic", "silence")


def asterisk_prompts(root: Path, speakers: tuple, keywords: tuple) -> list[Path]:
    """The prompts of the given Asterisk voices outside digits/, letters/, phonetic/ and
    silence/ whose file name names no keyword."""
    out = []
    for spk in speakers:
        for f in sorted((Path(root) / spk).rglob("*.wav")):
            rel = f.relative_to(Path(root) / spk)
            if rel.parts[0] in SKIP_DIRS or set(re.split(r"[^a-z]+", f.stem.lower())) & set(
                    keywords):
                continue
            out.append(f)
    return out
