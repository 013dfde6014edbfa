"""Streaming keyword-spotting benchmark: hits, substitutions and false alarms of the detector
on a long stream, for a grid of detector settings (numpy + onnxruntime only).

    python -m qs4d.apps.kws_bench models/zoo/kws-qat4 --data data/kws --split validation \\
        --music /usr/share/asterisk/moh/reno_project-system.wav \\
        --smooth posterior logits --smooth-ms 300 700 1000 --threshold 0.6 0.7 0.8 --hold-ms 0 300

The clips of one split of a data set built by `qs4d data kws` (the Speech Commands layout:
`validation`, `testing` = the synthetic held-out voices, `real` = the real-speaker clips) are
played back to back, each 1-s clip followed by `--gap-s` of digital silence, through one
`Stream`; the logits are computed once and every detector setting runs on them. A detection
belongs to the clip that was playing, or whose gap was, when it fired. Per setting:

- hit %: keyword clips with a detection of their keyword;
- sub %: keyword clips with detections, none of them right;
- FA %: detections per `_unknown_` or `_silence_` clip;
- music FA/h: detections per hour over each `--music` file, played whole.

Choose settings on `validation` (and a validation music track) and report them on `testing`
and `real`: the Allison digits of the microphone test are in `real` only.

Glossary: T steps, K classes.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

from qs4d.runtime.stream import load

from .detect import SMOOTH_MODES, Detector, DetectorConfig
from .sources import read_wav_as

LISTS = {"validation": "validation_list.txt", "testing": "testing_list.txt",
         "real": "real_test_list.txt"}


def split_clips(root: Path, split: str, labels: tuple) -> list[tuple[Path, str]]:
    """(path, label) of every clip of a split; `testing` leaves out the real-speaker clips.
    A word folder that is not a label is `_unknown_`."""
    if split not in LISTS:
        raise ValueError(f"split must be one of {sorted(LISTS)}, got {split!r}")
    rel = [ln.strip() for ln in (root / LISTS[split]).read_text().splitlines() if ln.strip()]
    if split == "testing" and (root / LISTS["real"]).exists():
        real = set((root / LISTS["real"]).read_text().split())
        rel = [r for r in rel if r not in real]
    out = []
    for r in rel:
        word = r.split("/")[0]
        out.append((root / r, word if word in labels else "_unknown_"))
    return out


def stream_logits(model, audio: np.ndarray, chunk: int = 16000) -> np.ndarray:
    """(T, K) logits of one stream over the whole audio."""
    s = model.stream()
    return np.concatenate([s.accept(audio[a:a + chunk]) for a in range(0, len(audio), chunk)])


def clip_stream(clips: list, rate: int, gap_s: float) -> tuple[np.ndarray, np.ndarray]:
    """The clips back to back with gaps: audio (n,) float32 and each clip's start sample."""
    parts, starts, pos = [], [], 0
    gap = np.zeros(int(gap_s * rate), np.float32)
    for path, _ in clips:
        x = read_wav_as(path, rate)  # (L,)
        starts.append(pos)
        parts += [x, gap]
        pos += len(x) + len(gap)
    return np.concatenate(parts), np.asarray(starts)


def score(dets: list, clips: list, starts_step: np.ndarray, keywords: set) -> dict:
    """hit, sub and FA percentages of detections (step, label) against the clips."""
    got: list = [[] for _ in clips]
    for d in dets:
        i = int(np.searchsorted(starts_step, d.step, side="right")) - 1
        if i >= 0:
            got[i].append(d.label)
    kw = [i for i, (_, lab) in enumerate(clips) if lab in keywords]
    other = [i for i, (_, lab) in enumerate(clips) if lab not in keywords]
    hit = sum(clips[i][1] in got[i] for i in kw)
    sub = sum(bool(got[i]) and clips[i][1] not in got[i] for i in kw)
    fa = sum(len(got[i]) for i in other)
    return {"hit": 100.0 * hit / max(1, len(kw)), "sub": 100.0 * sub / max(1, len(kw)),
            "fa": 100.0 * fa / max(1, len(other)), "n_kw": len(kw), "n_other": len(other)}


def run_detector(cfg: DetectorConfig, labels: tuple, logits: np.ndarray) -> list:
    return Detector(labels, cfg).update(logits)[0]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m qs4d.apps.kws_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle")
    p.add_argument("--data", default="data/kws", help="data set built by `qs4d data kws`")
    p.add_argument("--split", default="validation", choices=sorted(LISTS))
    p.add_argument("--music", nargs="*", default=[], help="WAVs played whole for false alarms")
    p.add_argument("--backend", default="onnx", choices=("onnx", "numpy", "imssa"))
    p.add_argument("--gap-s", type=float, default=1.0)
    p.add_argument("--smooth", nargs="+", default=["posterior"], choices=SMOOTH_MODES)
    p.add_argument("--smooth-ms", nargs="+", type=float, default=[300.0])
    p.add_argument("--threshold", nargs="+", type=float, default=[0.7])
    p.add_argument("--hold-ms", nargs="+", type=float, default=[0.0])
    p.add_argument("--refractory-ms", type=float, default=800.0)
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    model = load(a.bundle, backend=a.backend)
    fe, labels = model.spec.frontend, model.labels
    keywords = {lab for lab in labels if not lab.startswith("_")}
    clips = split_clips(Path(a.data), a.split, labels)
    if not clips:
        print(f"kws_bench: no clips in split {a.split!r} of {a.data}", file=sys.stderr)
        return 2
    audio, starts = clip_stream(clips, fe.sample_rate, a.gap_s)
    hop = fe.hop_samples
    logits = stream_logits(model, audio)
    music = [(Path(m).name, stream_logits(model, read_wav_as(m, fe.sample_rate)))
             for m in a.music]
    hours = sum(len(z) for _, z in music) * fe.hop_ms / 3.6e6
    print(f"{model!r}; {a.split}: {len(clips)} clips, {len(audio) / fe.sample_rate / 60:.1f} "
          f"min of audio" + (f"; music {hours * 60:.1f} min" if music else ""))
    print(f"{'smooth':>9} {'ms':>5} {'thr':>4} {'hold':>5} {'hit %':>6} {'sub %':>6} "
          f"{'FA %':>6} {'music FA/h':>10}")
    for smooth, sms, thr, hold in itertools.product(a.smooth, a.smooth_ms, a.threshold,
                                                    a.hold_ms):
        cfg = DetectorConfig.from_ms(fe.hop_ms, thr, sms, a.refractory_ms, smooth=smooth,
                                     hold_ms=hold)
        r = score(run_detector(cfg, labels, logits), clips, starts // hop, keywords)
        n_music = sum(len(run_detector(cfg, labels, z)) for _, z in music)
        mus = f"{n_music / hours:10.1f}" if music else f"{'-':>10}"
        print(f"{smooth:>9} {sms:5.0f} {thr:4.2f} {hold:5.0f} {r['hit']:6.1f} {r['sub']:6.1f} "
              f"{r['fa']:6.1f} {mus}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
