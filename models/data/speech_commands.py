"""Index and read a Google Speech Commands tree (v2, or one written by `qs4d data kws`).

numpy + scipy only (no torch at import): numpy-only evaluation code uses it too.

Layout: one folder per word of 16-kHz mono WAVs named `<speaker>_nohash_<n>.wav`;
`validation_list.txt` and `testing_list.txt` name held-out files relative to the root and
every other file is train; `_background_noise_/` holds long noise recordings. A build of
`qs4d data kws` adds `_silence_/` clips and `real_test_list.txt` (the real-speaker part of
testing, the split named "real" here). Where there is no `_silence_/` folder, silence clips
are cut from `_background_noise_` at seeded offsets and gains, as the TensorFlow recipe does.

Glossary: N clips in an index, L samples per clip (16000), K classes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.io import wavfile

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
UNKNOWN, SILENCE, BACKGROUND = "_unknown_", "_silence_", "_background_noise_"
SPLITS = ("train", "validation", "testing", "real")
SC_V2_WORDS = (
    "backward", "bed", "bird", "cat", "dog", "down", "eight", "five", "follow", "forward", "four",
    "go", "happy", "house", "learn", "left", "marvin", "nine", "no", "off", "on", "one", "right",
    "seven", "sheila", "six", "stop", "three", "tree", "two", "up", "visual", "wow", "yes", "zero")
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
MLPERF_KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")


@dataclass(frozen=True)
class ClassMap:
    """Folder name -> class index: keywords first, then `_unknown_` and `_silence_` if kept.

    A word that is not a keyword maps to `_unknown_` (or is dropped when unknown=False).
    """

    keywords: tuple
    unknown: bool = True
    silence: bool = True

    def __post_init__(self):
        bad = [k for k in self.keywords if k in (UNKNOWN, SILENCE, BACKGROUND)]
        if bad or len(set(self.keywords)) != len(self.keywords) or not self.keywords:
            raise ValueError(f"ClassMap.keywords: need distinct words, got {self.keywords}")

    @property
    def labels(self) -> tuple:
        return (tuple(self.keywords) + ((UNKNOWN,) if self.unknown else ())
                + ((SILENCE,) if self.silence else ()))

    def index(self, word: str) -> int:
        """Class of a folder name, or -1 if this mapping drops it."""
        labels = self.labels
        if word in self.keywords or word == SILENCE:
            return labels.index(word) if word in labels else -1
        return labels.index(UNKNOWN) if self.unknown else -1


DIGITS12 = ClassMap(DIGITS)  # the qs4d task: ten digits + _unknown_ + _silence_
MLPERF12 = ClassMap(MLPERF_KEYWORDS)  # MLPerf Tiny KWS on real Speech Commands
SC35 = ClassMap(SC_V2_WORDS, unknown=False, silence=False)  # every v2 word its own class


@dataclass
class KwsIndex:
    """Parallel (N,) arrays describing clips; `offsets`/`gains` cut silence from long noise."""

    root: Path
    labels_names: tuple
    paths: np.ndarray  # (N,) str, absolute
    words: np.ndarray  # (N,) str, folder name
    speakers: np.ndarray  # (N,) str, part before _nohash_
    splits: np.ndarray  # (N,) str: train | validation | testing
    real: np.ndarray  # (N,) bool: listed in real_test_list.txt
    labels: np.ndarray  # (N,) int64
    offsets: np.ndarray  # (N,) int64, first sample read
    gains: np.ndarray  # (N,) float32, applied after reading
    background: list = field(default_factory=list)  # paths of _background_noise_ WAVs

    def __len__(self) -> int:
        return len(self.paths)

    def take(self, mask: np.ndarray) -> KwsIndex:
        """The clips where mask (N,) is true (or at the given indices)."""
        a = {k: getattr(self, k)[mask] for k in ARRAYS}
        return KwsIndex(self.root, self.labels_names, background=list(self.background), **a)

    def select(self, split: str) -> KwsIndex:
        """One split; "real" is the real-speaker subset of testing."""
        if split not in SPLITS:
            raise ValueError(f"KwsIndex.select: split must be one of {SPLITS}, got {split!r}")
        return self.take(self.real if split == "real" else self.splits == split)

    @property
    def n_keywords(self) -> int:
        """Classes before `_unknown_`/`_silence_` (keywords always come first)."""
        return sum(1 for n in self.labels_names if n not in (UNKNOWN, SILENCE))

    def counts(self) -> dict:
        """{label name: clips}."""
        n = np.bincount(self.labels, minlength=len(self.labels_names))
        return {name: int(c) for name, c in zip(self.labels_names, n)}


ARRAYS = ("paths", "words", "speakers", "splits", "real", "labels", "offsets", "gains")


def read_list(root: Path, name: str) -> set:
    f = root / name
    return set(f.read_text().split()) if f.exists() else set()


def read_wav(path: str | Path, offset: int = 0, length: int | None = None) -> np.ndarray:
    """Samples [offset, offset+length) of a 16-kHz mono WAV as float32 in [-1, 1)."""
    sr, x = wavfile.read(path, mmap=True)
    if sr != SAMPLE_RATE or x.ndim != 1:
        raise ValueError(f"{path}: need {SAMPLE_RATE} Hz mono, got {sr} Hz shape {x.shape}")
    x = x[offset:] if length is None else x[offset:offset + length]
    if x.dtype == np.int16:
        return x.astype(np.float32) / 32768.0
    if x.dtype == np.float32:
        return np.array(x)
    raise ValueError(f"{path}: need int16 or float32 samples, got {x.dtype}")


def _scan(root: Path, cmap: ClassMap) -> dict:
    """Every labelled WAV under the word folders, with its split from the lists."""
    val, test, real = (read_list(root, f"{n}_list.txt") for n in ("validation", "testing",
                                                                    "real_test"))
    rows = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name != BACKGROUND):
        if folder.name.startswith(".") or cmap.index(folder.name) < 0:
            continue
        for f in sorted(folder.glob("*.wav")):
            rel = f"{folder.name}/{f.name}"
            split = "validation" if rel in val else "testing" if rel in test else "train"
            rows.append((str(f), folder.name, f.stem.split("_nohash_")[0], split, rel in real,
                         cmap.index(folder.name)))
    missing = sorted(real - test)
    if missing:
        raise ValueError(f"{root}/real_test_list.txt: {len(missing)} file(s) not in "
                         f"testing_list.txt, e.g. {missing[0]}")
    cols = list(zip(*rows)) if rows else [()] * 6
    return {"paths": np.array(cols[0], dtype=str), "words": np.array(cols[1], dtype=str),
            "speakers": np.array(cols[2], dtype=str), "splits": np.array(cols[3], dtype=str),
            "real": np.array(cols[4], dtype=bool), "labels": np.array(cols[5], dtype=np.int64),
            "offsets": np.zeros(len(rows), dtype=np.int64),
            "gains": np.ones(len(rows), dtype=np.float32)}


def _synth_silence(index: KwsIndex, ratio: float, max_gain: float,
                   rng: np.random.Generator) -> KwsIndex:
    """Add silence clips cut from background noise: per split, ratio x the mean keyword count."""
    if not index.background:
        raise ValueError(f"{index.root}: no {BACKGROUND} WAVs to cut silence from")
    lengths = [len(wavfile.read(p, mmap=True)[1]) for p in index.background]
    sil, n_kw = index.labels_names.index(SILENCE), index.n_keywords
    parts = [{k: getattr(index, k) for k in ARRAYS}]
    for split in SPLITS[:3]:
        kw = (index.labels < n_kw) & (index.splits == split)
        n = int(round(ratio * kw.sum() / max(n_kw, 1)))
        src = rng.integers(len(lengths), size=n)  # (n,)
        parts.append({
            "paths": np.array([index.background[s] for s in src], dtype=str),
            "words": np.full(n, SILENCE), "speakers": np.full(n, "noise"),
            "splits": np.full(n, split), "real": np.zeros(n, dtype=bool),
            "labels": np.full(n, sil, dtype=np.int64),
            "offsets": np.array([rng.integers(max(1, lengths[s] - SAMPLE_RATE + 1))
                                 for s in src], dtype=np.int64),
            "gains": rng.uniform(0.0, max_gain, size=n).astype(np.float32)})
    a = {k: np.concatenate([p[k] for p in parts]) for k in ARRAYS}
    return KwsIndex(index.root, index.labels_names, background=index.background, **a)


def _balance_unknown(index: KwsIndex, ratio: float, rng: np.random.Generator) -> KwsIndex:
    """Per split, keep at most ratio x the mean keyword count of `_unknown_` (real kept)."""
    unk, n_kw = index.labels_names.index(UNKNOWN), index.n_keywords
    keep = np.ones(len(index), dtype=bool)
    for split in SPLITS[:3]:
        in_split = index.splits == split
        cand = np.flatnonzero(in_split & (index.labels == unk) & ~index.real)
        cap = int(round(ratio * (in_split & (index.labels < n_kw)).sum() / max(n_kw, 1)))
        if len(cand) > cap:
            keep[rng.permutation(cand)[cap:]] = False
    return index.take(keep)


def load_index(root: str | Path, class_map: ClassMap = DIGITS12, *,
               balance_unknown: float | None = None, silence: str = "auto",
               silence_ratio: float = 1.0, silence_gain: float = 0.1,
               seed: int = 0) -> KwsIndex:
    """Index a Speech Commands tree under a class mapping.

    balance_unknown: keep at most this multiple of the mean keyword-class size of
    `_unknown_` per split (None keeps all). silence: "auto" cuts silence from background noise
    only when the tree has no `_silence_/` folder, "synth" always, "files" never.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"Speech Commands root {root} is not a directory")
    if silence not in ("auto", "synth", "files"):
        raise ValueError(f"load_index: silence must be auto, synth or files, got {silence!r}")
    rng = np.random.default_rng(seed)
    index = KwsIndex(root, class_map.labels, **_scan(root, class_map),
                     background=sorted(str(p) for p in (root / BACKGROUND).glob("*.wav")))
    has_files = (root / SILENCE).is_dir()
    if class_map.silence and (silence == "synth" or (silence == "auto" and not has_files)):
        index = index.take(index.words != SILENCE)
        index = _synth_silence(index, silence_ratio, silence_gain, rng)
    if balance_unknown is not None and class_map.unknown:
        index = _balance_unknown(index, balance_unknown, rng)
    log.info("%s: %d clips, %s", root, len(index), index.counts())
    return index


def load_clip(index: KwsIndex, i: int, length: int = SAMPLE_RATE) -> np.ndarray:
    """Clip i as float32 (length,): read, gain applied, zero-padded at the end if short."""
    x = read_wav(index.paths[i], int(index.offsets[i]), length) * index.gains[i]  # (<=L,)
    return np.pad(x, (0, length - len(x))) if len(x) < length else x


def load_background(index: KwsIndex) -> list[np.ndarray]:
    """Every `_background_noise_` recording as float32 (for augment.Augmenter)."""
    return [read_wav(p) for p in index.background]
