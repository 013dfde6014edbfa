"""Keyword spotting on real speakers as training tasks (`train.task = "sc12"` or `"digits"`).

`train.data` is a real-data root laid out as `../shared/data` (speech_commands_test/,
speech_commands_noise/, fsdd/) or a Speech Commands tree (models/data/real_kws.py, `resolve`);
`train.synth`, when set, is a `qs4d data kws` build whose clips all join the training set
(synthetic voices and the Asterisk recordings; none of its speakers is a real test speaker).

- sc12 (MLPerf Tiny's 12 classes: yes no up down left right on off stop go `_unknown_`
  `_silence_`): train on the Speech Commands train speakers (plus train.synth); validation and
  test are the validation and testing speaker groups, as recorded (no rebalancing: the official
  test set's class mix). Extra: every fifth FSDD clip (500: 10 per digit and speaker) as
  `_unknown_` ("fsdd_unknown").
- digits (zero ... nine `_unknown_` `_silence_`): train on the FSDD speakers but `train.fold`,
  the Speech Commands train speakers (their digit clips from `_unknown_/`, every other word as
  `_unknown_`) and train.synth; test on FSDD's `train.fold` speaker (500 digit clips);
  validation is the Speech Commands validation speakers (digits, silence, `_unknown_` capped:
  90 clips), and with `train.fold = "TEST/VAL"` also FSDD's speaker VAL (not trained on).
  Extra: the Speech Commands testing speakers ("sc_test"; their digits alone: "sc_digits").

In train, `_unknown_` clips are capped at UNKNOWN_RATIO x the mean keyword-class size: real
ones take at least half the cap, synthetic ones the rest (seeded random subsets). Waveform augmentation
(N_AUG copies) mixes the training part of the real noise (first 60 % of each recording) and
the build's own background noise; `train.loud_noise_clips` adds loud cuts of the real training
noise as `_silence_`; `train.speech_negatives` adds 1-s cuts of running speech as `_unknown_`
(`speech_negative_features`).

Features (`LogMel.frames`, the device's code) are cached per source listing in
`$QS4D_CACHE` (default ~/.cache/qs4d), keyed by the front end, augmentation, seed and the
files' names and sizes: never inside the data folder, which may be read-only.

Glossary: n clips, T frames (98 per 1-s clip), F mel features.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import re
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from qs4d.runtime.frontend import LogMel
from qs4d.runtime.spec import FrontendConfig, TrainConfig

from .data.augment import AugmentConfig, Augmenter, noise_segment, trim_silence
from .data.real_kws import (
    ASTERISK,
    ASTERISK_SPLIT,
    DIGITS12,
    SC12,
    SR,
    Clips,
    asterisk_prompts,
    concat,
    fsdd_clips,
    load_noises,
    read_audio,
    read_clip,
    resolve,
    sc_clips,
)
from .data.speech_commands import BACKGROUND, DIGITS, SILENCE, UNKNOWN, load_index, read_wav
from .feat_aug import FeatureAugment
from .kws_task import N_AUG, _aug_key, _digest, augment_for, frontend_for, loud_clip
from .tasks import Task

log = logging.getLogger(__name__)
UNKNOWN_RATIO = 1.5  # train `_unknown_` <= this x the mean keyword-class size
CACHE_VERSION = 1


def cache_dir() -> Path:
    """Where feature caches go: $QS4D_CACHE, else ~/.cache/qs4d (never the data folder)."""
    d = Path(os.environ.get("QS4D_CACHE") or Path.home() / ".cache" / "qs4d")
    d.mkdir(parents=True, exist_ok=True)
    return d


def listing_id(clips: Clips) -> str:
    """A digest of a listing: every clip's folder/file name, size, offset, gain, word."""
    h = hashlib.sha256()
    for p, w, o, g in zip(clips.paths, clips.words, clips.offsets, clips.gains):
        f = Path(p)
        h.update(f"{f.parent.name}/{f.name}:{f.stat().st_size}:{o}:{g:.6g}:{w}\n".encode())
    return h.hexdigest()[:16]


# --- Features on two processes; the noise goes to each worker once (initializer).

_NOISES: list = []


def _init_worker(noises: list) -> None:
    global _NOISES
    _NOISES = noises


def _clip_features(job) -> np.ndarray:
    """(T, F) log-mel frames of one clip (its row's fields), clean or augmented."""
    row, seed, fe, aug = job
    x = read_clip(*row)  # (16000,)
    if aug is not None:
        x = Augmenter(aug, _NOISES)(x, np.random.default_rng(seed))
    return LogMel(fe).frames(x)


def _loud_features(job) -> np.ndarray:
    seed, fe = job
    return LogMel(fe).frames(loud_clip(seed, _NOISES))


def _pool(fn, jobs: list, noises: list, desc: str) -> np.ndarray:
    """(n, T, F) float32 of fn(job) for every job, in order, on 2 processes."""
    if not jobs:
        return np.zeros((0, 0, 0), np.float32)
    with ProcessPoolExecutor(max_workers=2, initializer=_init_worker,
                             initargs=(noises,)) as ex:
        out = list(tqdm(ex.map(fn, jobs, chunksize=32), desc, total=len(jobs), disable=None))
    return np.stack(out).astype(np.float32)


def source_features(clips: Clips, augment: np.ndarray, cfg: TrainConfig, noises: list,
                    noise_id: str, name: str) -> dict:
    """{"x": (n, T, F) clean features of every clip, "x_aug{k}": (n_aug, T, F) of the clips
    where `augment` (n,) is true}, cached in cache_dir()/NAME-KEY.npz."""
    fe, aug = frontend_for(cfg), augment_for(cfg)
    key = _digest({"frontend": fe.to_dict(), "n_aug": N_AUG, "seed": cfg.seed,
                   "aug": _aug_key(aug), "clips": listing_id(clips), "noise": noise_id,
                   "augment": hashlib.sha256(np.packbits(augment).tobytes()).hexdigest(),
                   "v": CACHE_VERSION})
    cache = cache_dir() / f"{name}-{key}.npz"
    if cache.exists():
        with np.load(cache, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    fields = [(str(p), str(w), int(o), float(g))
              for p, w, o, g in zip(clips.paths, clips.words, clips.offsets, clips.gains)]
    out = {"x": _pool(_clip_features, [(f, 0, fe, None) for f in fields], noises,
                      f"{name} features")}
    rows = np.flatnonzero(augment)
    for k in range(N_AUG):
        jobs = [(fields[i], (cfg.seed + 1 + k) * 1_000_003 + int(i), fe, aug) for i in rows]
        out[f"x_aug{k}"] = _pool(_clip_features, jobs, noises, f"{name} augment {k}")
    tmp = cache.with_name(cache.name + ".tmp.npz")
    np.savez(tmp, **out)
    tmp.replace(cache)
    return out


def loud_features(cfg: TrainConfig, noises: list, noise_id: str) -> np.ndarray:
    """(n, T, F): `cfg.loud_noise_clips` loud cuts of the training noise (`_silence_`)."""
    fe = frontend_for(cfg)
    key = _digest({"frontend": fe.to_dict(), "n": cfg.loud_noise_clips, "seed": cfg.seed,
                   "noise": noise_id, "p_band": AugmentConfig().p_band, "v": CACHE_VERSION})
    cache = cache_dir() / f"loud-{key}.npz"
    if cache.exists():
        with np.load(cache, allow_pickle=False) as z:
            return z["x"]
    jobs = [(cfg.seed * 1_000_003 + 777_777 + i, fe) for i in range(cfg.loud_noise_clips)]
    x = _pool(_loud_features, jobs, noises, "loud noise")
    np.savez(cache, x=x)
    return x


NEGATIVE_SPEECH_DBFS, NEGATIVE_NOISE_DBFS = (-30.0, -14.0), (-55.0, -35.0)


def _negative_features(job) -> np.ndarray:
    """(T, F) log-mel frames of one 1-s cut of a prompt's voiced stretch, its voiced RMS at a
    random level, over the training noise."""
    path, seed, fe = job
    rng = np.random.default_rng(seed)
    x = read_audio(path)  # (n,) 16 kHz
    v = trim_silence(x, SR)
    v = v if len(v) >= SR else np.pad(v, (0, SR - len(v)))
    start = int(rng.integers(0, len(v) - SR + 1))
    cut = v[start:start + SR]
    rms = max(float(np.sqrt(np.mean(np.square(v)))), 1e-6)
    cut = cut * (10 ** (rng.uniform(*NEGATIVE_SPEECH_DBFS) / 20) / rms)
    noise = noise_segment(_NOISES, rng, SR)
    nrms = max(float(np.sqrt(np.mean(noise ** 2))), 1e-12)
    cut = cut + noise * (10 ** (rng.uniform(*NEGATIVE_NOISE_DBFS) / 20) / nrms)
    return LogMel(fe).frames(np.clip(cut, -1.0, 1.0).astype(np.float32))


def speech_negative_features(cfg: TrainConfig, noises: list, noise_id: str,
                             keywords: tuple) -> np.ndarray:
    """(n, T, F): `cfg.speech_negatives` 1-s cuts of running speech, for `_unknown_`.

    A model trained on 1-s clips of isolated words has never heard speech that goes on, and a
    stream is mostly that: sentences between the keywords fire it. The cuts come from the long
    prompts of Asterisk's English voice (`ASTERISK_SPLIT["english"]`, Debian's
    asterisk-core-sounds-en-wav; none of the streaming benchmark's validation or testing
    voices), files naming a keyword and the digits/letters folders left out; a cut may still
    hold a keyword inside a sentence, which the benchmark also counts as a false alarm."""
    fe = frontend_for(cfg)
    prompts = asterisk_prompts(ASTERISK, ASTERISK_SPLIT["english"], keywords)
    if not prompts:
        raise FileNotFoundError(f"train.speech_negatives: no Asterisk English prompts under "
                                f"{ASTERISK / ASTERISK_SPLIT['english'][0]} (Debian package "
                                "asterisk-core-sounds-en-wav: scripts/sysdeps.sh)")
    key = _digest({"frontend": fe.to_dict(), "n": cfg.speech_negatives, "seed": cfg.seed,
                   "noise": noise_id, "prompts": [f"{p.name}:{p.stat().st_size}" for p in prompts],
                   "v": CACHE_VERSION})
    cache = cache_dir() / f"negative-{key}.npz"
    if cache.exists():
        with np.load(cache, allow_pickle=False) as z:
            return z["x"]
    rng = np.random.default_rng(cfg.seed + 4242)
    pick = rng.integers(0, len(prompts), cfg.speech_negatives)
    jobs = [(str(prompts[k]), cfg.seed * 1_000_003 + 555_555 + i, fe)
            for i, k in enumerate(pick)]
    x = _pool(_negative_features, jobs, noises, "speech negatives")
    np.savez(cache, x=x)
    return x


# --- The synthetic build

def _source_texts(root: Path) -> dict:
    """{relative path: prompt file stem} of the build's Asterisk clips (sources.csv)."""
    f = root / "sources.csv"
    if not f.exists():
        return {}
    with open(f, newline="") as fh:
        return {r["path"]: Path(r["source"].split(":")[-1]).stem
                for r in csv.DictReader(fh) if r["path"].startswith(f"{UNKNOWN}/")}


def synth_clips(root: str | Path, keywords: tuple) -> Clips:
    """Every clip of a `qs4d data kws` build, all in train. An Asterisk `_unknown_` clip whose
    prompt's file name holds one of `keywords` as a word (e.g. "no") is left out."""
    root = Path(root)
    index = load_index(root, SC12, silence="files")
    texts = _source_texts(root)
    keep = np.ones(len(index), bool)
    for i, (p, w) in enumerate(zip(index.paths, index.words)):
        if w == UNKNOWN:
            stem = texts.get(f"{UNKNOWN}/{Path(p).name}", "")
            keep[i] = not set(re.split(r"[^a-z]+", stem.lower())) & set(keywords)
    n = int(keep.sum())
    return Clips(paths=index.paths[keep], words=index.words[keep],
                 speakers=np.char.add("synth-", index.speakers[keep].astype(str)),
                 splits=np.full(n, "train"), sources=np.full(n, "synth"),
                 offsets=np.zeros(n, np.int64), gains=np.ones(n, np.float32))


# --- Assembling the task

def cap_unknown(y: np.ndarray, synthetic: np.ndarray, n_keywords: int, unk: int,
                seed: int) -> np.ndarray:
    """(n,) bool: every clip but the `_unknown_` ones beyond a cap of UNKNOWN_RATIO x the mean
    keyword-class size. Real `_unknown_` clips take at least half the cap (all of it when
    there are too few synthetic ones), synthetic ones (near-digit words, other voices) the
    rest; each a seeded random subset."""
    keep = np.ones(len(y), bool)
    cap = int(round(UNKNOWN_RATIO * (y < n_keywords).sum() / n_keywords))
    rng = np.random.default_rng(seed)
    real = rng.permutation(np.flatnonzero((y == unk) & ~synthetic))
    synth = rng.permutation(np.flatnonzero((y == unk) & synthetic))
    n_real = min(len(real), max(cap - cap // 2, cap - len(synth)))
    n_synth = min(len(synth), cap - n_real)
    keep[real[n_real:]] = False
    keep[synth[n_synth:]] = False
    return keep


def task_clips(cfg: TrainConfig) -> tuple[Clips, object, dict]:
    """(every clip the task uses, its class map, {split name: (n,) bool mask}) for sc12 or
    digits; also the folders (resolve)."""
    where = resolve(cfg.data)
    sc = sc_clips(cfg.data, cfg.seed)
    if cfg.task == "sc12":
        cmap, parts = SC12, [sc]
        if where["fsdd"] is not None:
            parts.append(fsdd_clips(cfg.data, "george"))  # all as `_unknown_`: any fold
    elif cfg.task == "digits":
        cmap, parts = DIGITS12, [sc, fsdd_clips(cfg.data, cfg.fold)]
    else:
        raise ValueError(f"real_kws_task: task must be sc12 or digits, got {cfg.task!r}")
    if cfg.synth:
        if not Path(cfg.synth).is_dir():
            raise FileNotFoundError(f"train.synth {cfg.synth}: not a directory (build it with "
                                    "`qs4d data kws`, docs/data-kws.md)")
        parts.append(synth_clips(cfg.synth, cmap.keywords))
    clips = concat(*parts)
    src, split, w = clips.sources, clips.splits, clips.words
    y = clips.labels(cmap)
    n_kw, unk = len(cmap.keywords), cmap.labels.index(UNKNOWN)
    if cfg.task == "sc12":
        fsdd = src == "fsdd"
        every5 = np.zeros(len(clips), bool)
        every5[np.flatnonzero(fsdd)[::5]] = True  # 500 clips: QAT evaluation is slow
        masks = {"train": (split == "train") & ~fsdd, "validation": (split == "validation") & ~fsdd,
                 "test": (split == "testing") & ~fsdd, "fsdd_unknown": every5}
    else:
        is_sc = src == "sc"
        val = is_sc & (split == "validation")
        val_keep = cap_unknown(y[val], np.ones(val.sum(), bool), n_kw, unk, cfg.seed + 5)
        val[np.flatnonzero(val)[~val_keep]] = False
        val |= (src == "fsdd") & (split == "validation")  # fold "TEST/VAL"
        masks = {"train": split == "train", "validation": val,
                 "test": (src == "fsdd") & (split == "testing"),
                 "sc_test": is_sc & (split == "testing"),
                 "sc_digits": is_sc & (split == "testing") & np.isin(w, DIGITS)}
    tr = np.flatnonzero(masks["train"])
    keep = cap_unknown(y[tr], src[tr] == "synth", n_kw, unk, cfg.seed)
    masks["train"] = np.zeros(len(clips), bool)
    masks["train"][tr[keep]] = True
    return clips, cmap, masks


def _noise(cfg: TrainConfig) -> tuple[list, str]:
    """The augmentation noise: the training part of the real noise, plus the build's own
    `_background_noise_` (its train noise) when train.synth is set; and its cache id."""
    where = resolve(cfg.data)
    if where["noise"] is None:
        raise FileNotFoundError(f"{cfg.data}: no background noise (speech_commands_noise/)")
    noises = load_noises(where["noise"], "train")
    files = sorted(where["noise"].glob("*.wav"))
    if cfg.synth:
        extra = sorted((Path(cfg.synth) / BACKGROUND).glob("*.wav"))
        noises += [read_wav(p) for p in extra]
        files += extra
    ident = _digest({"files": [f"{f.name}:{f.stat().st_size}" for f in files], "part": "train"})
    return noises, ident


def real_kws_task(cfg: TrainConfig) -> Task:
    if not cfg.data:
        raise ValueError(f"the {cfg.task} task needs train.data = the real-data root "
                         "(../shared/data: speech_commands_test/, speech_commands_noise/, fsdd/)")
    clips, cmap, masks = task_clips(cfg)
    noises, noise_id = _noise(cfg)
    y_all = clips.labels(cmap)
    x_all: np.ndarray | None = None  # (n, T, F) clean features of every clip
    aug_pos = np.full(len(clips), -1)  # row of each clip in the augmented arrays, -1: none
    aug: list = [[] for _ in range(N_AUG)]
    n_aug = 0
    for name in np.unique(clips.sources):
        rows = np.flatnonzero(clips.sources == name)
        sub = clips.take(rows)
        # augment what any task of this source may train on: FSDD and synth every clip (each
        # FSDD speaker is train in four folds), Speech Commands its train speakers
        augment = np.ones(len(sub), bool) if name != "sc" else sub.splits == "train"
        f = source_features(sub, augment, cfg, noises, noise_id, str(name))
        if x_all is None:
            x_all = np.zeros((len(clips),) + f["x"].shape[1:], np.float32)
        x_all[rows] = f["x"]
        aug_pos[rows[augment]] = n_aug + np.arange(int(augment.sum()))
        n_aug += int(augment.sum())
        for k in range(N_AUG):
            aug[k].append(f[f"x_aug{k}"])
    train = np.flatnonzero(masks["train"])
    if (aug_pos[train] < 0).any():
        raise AssertionError("real_kws_task: a training clip has no augmented features")
    xs, ys = [x_all[train]], [y_all[train]]
    for k in range(N_AUG):
        xs.append(np.concatenate(aug[k])[aug_pos[train]])
        ys.append(y_all[train])
    if cfg.loud_noise_clips:
        loud = loud_features(cfg, noises, noise_id)
        xs.append(loud)
        ys.append(np.full(len(loud), cmap.labels.index(SILENCE), np.int64))
    if cfg.speech_negatives:
        neg = speech_negative_features(cfg, noises, noise_id, cmap.keywords)
        xs.append(neg)
        ys.append(np.full(len(neg), cmap.labels.index(UNKNOWN), np.int64))
    x_train, y_train = np.concatenate(xs), np.concatenate(ys)
    mean = x_train.mean(axis=(0, 1))  # (F,)
    std = x_train.std(axis=(0, 1)) + 1e-3  # (F,)
    frontend: FrontendConfig = frontend_for(cfg).replace(
        norm_mean=tuple(float(v) for v in mean), norm_std=tuple(float(v) for v in std))
    m32, s32 = np.float32(mean), np.float32(std)
    norm = lambda x: torch.from_numpy(((x - m32) / s32).astype(np.float32))  # noqa: E731
    split = lambda m: (norm(x_all[m]), torch.from_numpy(y_all[m]))  # noqa: E731
    if cfg.max_train and cfg.max_train < len(x_train):
        keep = np.random.default_rng(cfg.seed).permutation(len(x_train))[:cfg.max_train]
        x_train, y_train = x_train[keep], y_train[keep]
    extra = {k: split(m) for k, m in masks.items() if k not in ("train", "validation", "test")}
    feat_aug = None
    if cfg.feat_warp or cfg.feat_eq_db:
        feat_aug = FeatureAugment(frontend, mean, std, cfg.feat_warp, cfg.feat_eq_db)
    log.info("%s: train %d (with %d augmented copies), validation %d, test %d clips",
             cfg.task, len(x_train), N_AUG, int(masks["validation"].sum()),
             int(masks["test"].sum()))
    return Task(train=(norm(x_train), torch.from_numpy(y_train)),
                val=split(masks["validation"]), test=split(masks["test"]), labels=cmap.labels,
                frontend=frontend, extra=extra, augment=feat_aug)
