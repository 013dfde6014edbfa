"""Keyword spotting as a training task: log-mel features of a Speech Commands-layout data set
(built by `qs4d data kws`), with augmented copies of the training clips, per-feature
normalization saved in the front-end config. `test` is the held-out synthetic voices; the
real-speaker split is evaluated apart, clean and at 20 dB and 10 dB SNR.

Glossary: n clips, T frames (98 per 1-s clip at a 10-ms hop), F mel features.

Features are computed once by `qs4d.runtime.frontend.LogMel.frames` (the code the device
runs) and cached next to the data set, keyed by the front-end config and augmentation seed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from qs4d.runtime.frontend import LogMel
from qs4d.runtime.spec import FrontendConfig, TrainConfig

from .data.augment import AugmentConfig, Augmenter, band_limit, mix_at_snr, noise_segment
from .data.speech_commands import DIGITS12, load_background, load_clip, load_index
from .feat_aug import FeatureAugment
from .tasks import Task

log = logging.getLogger(__name__)
FRONTEND = FrontendConfig(kind="logmel", sample_rate=16000, n_mels=40, win_ms=25.0,
                          hop_ms=10.0, n_fft=512, f_min=20.0, f_max=8000.0)
N_AUG = 2  # augmented copies of every training clip, besides the clean one
EVAL_SNRS = (20.0, 10.0)


def frontend_for(cfg: TrainConfig) -> FrontendConfig:
    """The task's log-mel front end, with `train.f_max` as its top edge when set."""
    return FRONTEND.replace(f_max=cfg.f_max) if cfg.f_max else FRONTEND


DEFAULT_AUG = AugmentConfig()


def augment_for(cfg: TrainConfig) -> AugmentConfig:
    """The waveform augmentation, with `train.band_cutoff_min` as the telephone band's lowest
    cutoff when set (a random channel: resamplers and codecs cut at different places)."""
    lo = cfg.band_cutoff_min
    return AugmentConfig(band_cutoff=(lo, 4000.0)) if lo else DEFAULT_AUG


def _aug_key(aug: AugmentConfig) -> dict:
    """The augmentation's part of a cache key; the default cutoff is left out, so the keys of
    the default features stay those from before the option existed."""
    d = dict(aug.__dict__)
    if d["band_cutoff"] == DEFAULT_AUG.band_cutoff:
        d.pop("band_cutoff")
    return d


def _features(job) -> np.ndarray:
    """(T, F) log-mel frames of one clip, optionally augmented or mixed with noise."""
    index, i, mode, seed, noises, fe, aug = job
    x = load_clip(index, i)  # (16000,)
    rng = np.random.default_rng(seed)
    if mode == "aug":
        x = Augmenter(aug, noises)(x, rng)
    elif mode.startswith("snr"):
        x = mix_at_snr(x, noise_segment(noises, rng, len(x)), float(mode[3:])).astype(np.float32)
    return LogMel(fe).frames(x)


def _pool_features(fn, jobs: list, desc: str) -> np.ndarray:
    """(n, T, F) float32: fn(job) for every job, in order, on 2 processes with a progress bar."""
    with ProcessPoolExecutor(max_workers=2) as ex:
        out = list(tqdm(ex.map(fn, jobs, chunksize=64), desc, total=len(jobs), disable=None))
    return np.stack(out).astype(np.float32)  # (n, T, F)


def _compute(index, mode: str, seed: int, noises, desc: str, fe: FrontendConfig,
             aug: AugmentConfig = DEFAULT_AUG) -> np.ndarray:
    jobs = [(index, i, mode, seed * 1_000_003 + i, noises, fe, aug)
            for i in range(len(index.paths))]
    return _pool_features(_features, jobs, desc)


def _digest(d: dict) -> str:
    """12 hex digits of a JSON-able dict: the name of a feature cache."""
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _data_id(root: Path) -> str:
    """A digest of the data set's WAV files (relative path and size of each) and list files,
    so a rebuilt or changed data set never reuses stale features."""
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.wav")):
        h.update(f"{f.relative_to(root).as_posix()}:{f.stat().st_size}\n".encode())
    for name in ("validation_list.txt", "testing_list.txt", "real_test_list.txt"):
        if (root / name).exists():
            h.update((root / name).read_bytes())
    return h.hexdigest()[:16]


def _cache_key(cfg: TrainConfig, root: Path) -> str:
    d = {"frontend": frontend_for(cfg).to_dict(), "n_aug": N_AUG, "seed": cfg.seed,
         "aug": _aug_key(augment_for(cfg)), "snrs": EVAL_SNRS, "data": _data_id(root), "v": 2}
    return _digest(d)


def build_features(root: Path, cfg: TrainConfig) -> dict:
    """All splits' features and labels, cached in ROOT/.features-KEY.npz."""
    cache = root / f".features-{_cache_key(cfg, root)}.npz"
    if cache.exists():
        with np.load(cache, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    index = load_index(root, DIGITS12, seed=cfg.seed)
    noises = load_background(index)
    fe = frontend_for(cfg)
    out: dict = {}
    for split in ("train", "validation", "testing", "real"):
        sub = index.select(split)
        out[f"y_{split}"] = np.asarray(sub.labels, np.int64)
        out[f"x_{split}"] = _compute(sub, "clean", cfg.seed, noises, f"features {split}", fe)
    train = index.select("train")
    for k in range(N_AUG):
        out[f"x_train_aug{k}"] = _compute(train, "aug", cfg.seed + 1 + k, noises,
                                          f"augment {k}", fe, augment_for(cfg))
    real = index.select("real")
    for snr in EVAL_SNRS:
        out[f"x_real_snr{snr:g}"] = _compute(real, f"snr{snr:g}", cfg.seed + 99, noises,
                                             f"real at {snr:g} dB", fe)
    np.savez(cache, **out)
    return out


LOUD_DBFS = (-45.0, -10.0)  # RMS range of the loud background clips (train.loud_noise_clips)


def loud_clip(seed: int, noises: list) -> np.ndarray:
    """(16000,) float32: 1 s of background noise scaled to an RMS level uniform in LOUD_DBFS,
    then band-limited to 4 kHz with the waveform augmentation's probability."""
    rng = np.random.default_rng(seed)
    x = noise_segment(noises, rng, FRONTEND.sample_rate)  # (16000,)
    rms = max(float(np.sqrt(np.mean(x ** 2))), 1e-12)
    x = x * 10 ** (rng.uniform(*LOUD_DBFS) / 20) / rms
    if rng.random() < AugmentConfig().p_band:
        x = band_limit(x, FRONTEND.sample_rate)
    return np.clip(x, -1.0, 1.0).astype(np.float32)


def _loud_clip(job) -> np.ndarray:
    """(T, F) log-mel frames of `loud_clip`."""
    seed, noises, fe = job
    return LogMel(fe).frames(loud_clip(seed, noises))


def loud_noise_features(root: Path, cfg: TrainConfig) -> np.ndarray:
    """(n, T, F) features of `cfg.loud_noise_clips` one-second cuts of the training background
    noises (music on hold, coloured noise) at LOUD_DBFS, for the `_silence_` class: the built
    `_silence_` clips are quiet (-65..-35 dBFS), so without these a model has never heard loud
    sound that is not speech, and music at a normal level fires keywords. Cached beside the
    data set."""
    fe = frontend_for(cfg)
    key = {"frontend": fe.to_dict(), "n": cfg.loud_noise_clips, "seed": cfg.seed,
           "dbfs": LOUD_DBFS, "p_band": AugmentConfig().p_band, "data": _data_id(root), "v": 1}
    cache = root / f".features-loud-{_digest(key)}.npz"
    if cache.exists():
        with np.load(cache, allow_pickle=False) as z:
            return z["x"]
    noises = load_background(load_index(root, DIGITS12, seed=cfg.seed))
    jobs = [(cfg.seed * 1_000_003 + 777_777 + i, noises, fe)
            for i in range(cfg.loud_noise_clips)]
    x = _pool_features(_loud_clip, jobs, "loud noise")  # (n, T, F)
    np.savez(cache, x=x)
    return x


def train_keep(speakers, exclude: tuple) -> np.ndarray:
    """(n,) bool: the training clips whose speaker name starts with none of `exclude`."""
    speakers = np.asarray(speakers, dtype=str)
    drop = np.zeros(len(speakers), dtype=bool)
    for prefix in exclude:
        drop |= np.char.startswith(speakers, prefix)
    return ~drop


def kws_task(cfg: TrainConfig) -> Task:
    if not cfg.data:
        raise ValueError("the kws task needs train.data = a data set built by `qs4d data kws`")
    f = build_features(Path(cfg.data), cfg)
    index = load_index(Path(cfg.data), DIGITS12, seed=cfg.seed)
    keep = train_keep(index.select("train").speakers, cfg.exclude_train)  # (n_train,)
    x_train = np.concatenate([f["x_train"][keep]]
                             + [f[f"x_train_aug{k}"][keep] for k in range(N_AUG)])
    y_train = np.concatenate([f["y_train"][keep]] * (N_AUG + 1))
    if cfg.loud_noise_clips:
        loud = loud_noise_features(Path(cfg.data), cfg)  # (n, T, F)
        x_train = np.concatenate([x_train, loud])
        y_train = np.concatenate([y_train, np.full(len(loud), DIGITS12.labels.index("_silence_"))])
    mean = x_train.mean(axis=(0, 1))  # (F,)
    std = x_train.std(axis=(0, 1)) + 1e-3  # (F,)
    frontend = frontend_for(cfg).replace(norm_mean=tuple(float(v) for v in mean),
                                         norm_std=tuple(float(v) for v in std))
    m32, s32 = np.float32(mean), np.float32(std)
    norm = lambda x: torch.from_numpy(((x - m32) / s32).astype(np.float32))  # noqa: E731
    lab = lambda y: torch.from_numpy(y)  # noqa: E731
    if cfg.max_train and cfg.max_train < len(x_train):
        keep = np.random.default_rng(cfg.seed).permutation(len(x_train))[:cfg.max_train]
        x_train, y_train = x_train[keep], y_train[keep]
    # the testing list holds the real-speaker clips too: report them apart from the synthetic
    real = index.select("testing").real  # (n,)
    synth = ~np.asarray(real, bool)
    extra = {"real": (norm(f["x_real"]), lab(f["y_real"])),
             "test_all": (norm(f["x_testing"]), lab(f["y_testing"]))}
    for snr in EVAL_SNRS:
        extra[f"real_snr{snr:g}"] = (norm(f[f"x_real_snr{snr:g}"]), lab(f["y_real"]))
    aug = None
    if cfg.feat_warp or cfg.feat_eq_db:
        aug = FeatureAugment(frontend, mean, std, cfg.feat_warp, cfg.feat_eq_db)
    return Task(train=(norm(x_train), lab(y_train)),
                val=(norm(f["x_validation"]), lab(f["y_validation"])),
                test=(norm(f["x_testing"][synth]), lab(f["y_testing"][synth])),
                labels=DIGITS12.labels, frontend=frontend, extra=extra, augment=aug)
