"""How much the following RR interval tells about S beats, before any model: a class-balanced
logistic regression on RR features alone (with their squares; numpy and scipy), leave-one-patient-out over the
22 DS1 patients of the MIT-BIH Arrhythmia Database (classes N, S, V; annotated R peaks; DS2 is
not read). Prints per-class Se and +P pooled over the held-out patients, once with the
preceding intervals only (RR / median of the previous 8, the beat before's, RR / mean of the
previous 64) and once with the following interval added (against the same references, and
against the preceding RR).

    python scripts/ecg_rr_check.py --data ../shared/data/mitdb
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_softmax

from qs4d.models.data.wfdb_io import DS1, read_record

CLASSES = ("N", "S", "V")


def features(rec, following: bool) -> tuple[np.ndarray, np.ndarray]:
    """Rows (n, 3 or 6) of RR features and labels (n,) of the beats with 65 before and 1 after."""
    rr = np.diff(rec.r_peaks.astype(np.float64))  # rr[i - 1]: the interval ending at beat i
    rows, ys = [], []
    for i in range(65, len(rec.r_peaks) - 1):
        pre, nxt = rr[i - 1], rr[i]
        med, mean = np.median(rr[i - 9: i - 1]), np.mean(rr[i - 65: i - 1])
        f = [pre / med - 1, rr[i - 2] / np.median(rr[i - 10: i - 2]) - 1, pre / mean - 1]
        if following:
            f += [nxt / med - 1, nxt / pre - 1, nxt / mean - 1]
        rows.append(np.clip(f, -0.9, 2.0))
        ys.append(rec.labels[i])
    return np.asarray(rows), np.asarray(ys)


def fit_predict(x: np.ndarray, y: np.ndarray, x_test: np.ndarray) -> np.ndarray:
    """Class-balanced multinomial logistic regression on [x, x^2, 1] (L-BFGS); predictions for
    x_test."""
    design = lambda a: np.concatenate([a, a * a, np.ones((len(a), 1))], 1)  # noqa: E731
    k = len(CLASSES)
    a = design(x)  # (n, D)
    w = (len(y) / (k * np.bincount(y, minlength=k)))[y]  # (n,) balanced weights
    onehot = np.eye(k)[y]  # (n, K)

    def loss(theta):
        z = a @ theta.reshape(a.shape[1], k)  # (n, K)
        lp = log_softmax(z, axis=1)
        grad = a.T @ (w[:, None] * (np.exp(lp) - onehot)) / w.sum()
        return -(w * (lp * onehot).sum(1)).sum() / w.sum(), grad.ravel()

    theta = minimize(loss, np.zeros(a.shape[1] * k), jac=True, method="L-BFGS-B",
                     options={"maxiter": 500}).x
    return (design(x_test) @ theta.reshape(a.shape[1], k)).argmax(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data/mitdb", help="MIT-BIH Arrhythmia folder")
    args = ap.parse_args()
    recs = {n: read_record(f"{args.data}/{n}") for n in DS1}
    for following in (False, True):
        data = {n: features(recs[n], following) for n in DS1}
        data = {n: (x[y < 3], y[y < 3]) for n, (x, y) in data.items()}  # N, S, V
        tp, fp, pos = (np.zeros(len(CLASSES)) for _ in range(3))
        for held in DS1:
            x = np.concatenate([data[n][0] for n in DS1 if n != held])
            y = np.concatenate([data[n][1] for n in DS1 if n != held])
            xh, yh = data[held]
            pred = fit_predict(x, y, xh)
            for c in range(len(CLASSES)):
                tp[c] += ((pred == c) & (yh == c)).sum()
                fp[c] += ((pred == c) & (yh != c)).sum()
                pos[c] += (yh == c).sum()
        name = "preceding and following RR" if following else "preceding RR only"
        print(f"{name:28s}" + "  ".join(
            f"{c} Se {100 * tp[i] / pos[i]:5.1f} +P {100 * tp[i] / max(tp[i] + fp[i], 1):5.1f}"
            for i, c in enumerate(CLASSES)) + f"   (beats {pos.astype(int).tolist()})")


if __name__ == "__main__":
    main()
