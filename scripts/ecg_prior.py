"""Choose an ECG bundle's prior correction on the validation patients.

Training oversamples the rare beat classes (S, V, F, Q up to `train.oversample` times, at
most a quarter of the N count), so the model's posteriors carry the training prior, not the
patients'. Bayes' rule moves them back: logit_k += tau * (log prior_real_k - log prior_train_k), for a strength tau
in [0, 1.5]. This script streams the validation records (DS1's held-out patients, never DS2)
through the bundle once, scores every tau on a grid offline (the offset only moves logits), and
prints the tau with the best mean F1 of N, S and V and the `qs4d export --logit-bias` value.

    python scripts/ecg_prior.py BUNDLE --data ../shared/data/mitdb --recipe models/recipes/ecg-mitdb.toml
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from qs4d.apps.ecg_report import evaluate_records
from qs4d.models.config import load_recipe
from qs4d.models.data.ecg_build import mitdb_counts
from qs4d.runtime.ecg import AAMI_CLASSES


def train_prior_shift(data: Path, copies: int, times: int = 4) -> np.ndarray:
    """log prior_real - log prior_train (K,), from the train split's beat counts and the
    oversampling of `qs4d.models.ecg_task` (each record and its noisy copies)."""
    counts = np.array([mitdb_counts(data)["train"][c] for c in AAMI_CLASSES], np.float64)
    counts *= 1 + copies
    target = counts.max() // 4
    train = np.where((counts > 0) & (counts < target), np.minimum(target, times * counts), counts)
    ok = counts > 0
    out = np.zeros(len(counts))
    out[ok] = np.log(counts[ok] / counts[ok].sum()) - np.log(train[ok] / train[ok].sum())
    return out


def scores(events: list, missed: np.ndarray, bias: np.ndarray) -> dict:
    """Se, +P, F1 per class and accuracy of the events with logits shifted by bias (K,)."""
    K = len(bias)
    conf, extra = np.zeros((K, K), np.int64), np.zeros(K, np.int64)
    for ev in events:
        pred = np.argmax(np.log(np.maximum(ev["probs"], 1e-30)) + bias, axis=1)  # (m,)
        hit = ev["ref"] >= 0
        np.add.at(conf, (ev["ref"][hit], pred[hit]), 1)
        extra += np.bincount(pred[~hit], minlength=K)
    se = np.diag(conf) / np.maximum(conf.sum(1) + missed, 1)
    ppv = np.diag(conf) / np.maximum(conf.sum(0) + extra, 1)
    f1 = 2 * se * ppv / np.maximum(se + ppv, 1e-12)
    return {"se": se, "ppv": ppv, "f1": f1, "accuracy": np.trace(conf) / max(conf.sum(), 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle")
    p.add_argument("--data", type=Path, required=True, help="the MIT-BIH folder")
    p.add_argument("--recipe", required=True, help="the recipe that trained the bundle")
    p.add_argument("--split", default="validation", choices=("validation", "train"))
    p.add_argument("--json", type=Path, help="write the grid and the choice here")
    args = p.parse_args(argv)
    from qs4d.runtime.mitbih import mitbih_split

    tcfg = load_recipe(args.recipe, [])[0]
    d = train_prior_shift(args.data, tcfg.noise_copies, tcfg.oversample)
    res = evaluate_records(args.bundle, [args.data / n for n in mitbih_split(args.split)])
    events = [r["events"] for r in res]
    missed = sum(r["report"].missed for r in res)
    grid = []
    print(f"prior shift d = {dict(zip(AAMI_CLASSES, np.round(d, 3)))}")
    print(f"{'tau':>5} {'acc':>6} " + " ".join(f"{c + ' Se/+P':>13}" for c in "NSV")
          + f" {'mean F1':>8}")
    for tau in np.round(np.arange(0.0, 1.51, 0.1), 2):
        s = scores(events, missed, tau * d)
        mf1 = float(np.mean(s["f1"][:3]))
        grid.append({"tau": float(tau), "accuracy": 100 * s["accuracy"], "mean_f1_nsv": mf1,
                     "se": (100 * s["se"]).round(2).tolist(),
                     "ppv": (100 * s["ppv"]).round(2).tolist()})
        print(f"{tau:5.1f} {100 * s['accuracy']:6.2f} " + " ".join(
            f"{100 * s['se'][k]:6.1f}/{100 * s['ppv'][k]:5.1f}" for k in range(3))
            + f" {mf1:8.3f}")
    best = max(grid, key=lambda g: g["mean_f1_nsv"])
    bias = ",".join(f"{c}={best['tau'] * v:.4f}" for c, v in zip(AAMI_CLASSES, d))
    print(f"best tau {best['tau']} on {args.split}: qs4d export ... --logit-bias {bias}")
    if args.json:
        args.json.write_text(json.dumps({"bundle": args.bundle, "split": args.split,
                                         "shift": d.tolist(), "grid": grid, "tau": best["tau"],
                                         "logit_bias": bias}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
