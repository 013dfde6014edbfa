"""AAMI EC57-style evaluation of beat detection and classification (numpy only).

Detected beats are matched one to one with reference beats within a tolerance (EC57: 150 ms;
50 ms is the usual tolerance for detection figures), closest pairs first. Then:

    detection:  Se = TP / (TP + FN)      +P = TP / (TP + FP)
    per class c (rows: reference class, columns: algorithm label, matched beats only):
        Se_c = C[c, c] / (reference beats of class c, matched or missed)
        +P_c = C[c, c] / (detections labelled c, matched or extra)
    accuracy = trace(C) / matched beats

Glossary: n reference beats, m detected beats, K classes, P matched pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .ecg import AAMI_CLASSES


def match_beats(ref: np.ndarray, det: np.ndarray, tol: int) -> np.ndarray:
    """One-to-one matches (P, 2) [ref index, det index] with |ref - det| <= tol samples.

    Closest pairs are taken first (ties: earlier reference beat). ref (n,), det (m,).
    """
    ref = np.asarray(ref, np.int64)  # (n,)
    det = np.asarray(det, np.int64)  # (m,)
    if tol < 0:
        raise ValueError(f"match_beats: tol must be >= 0 samples, got {tol}")
    if not len(ref) or not len(det):
        return np.zeros((0, 2), np.int64)
    order = np.argsort(det, kind="stable")  # (m,)
    ds = det[order]  # (m,) sorted
    lo = np.searchsorted(ds, ref - tol, side="left")  # (n,)
    hi = np.searchsorted(ds, ref + tol, side="right")  # (n,)
    ri = np.repeat(np.arange(len(ref)), hi - lo)  # (c,) candidate pairs
    di = np.concatenate([np.arange(a, b) for a, b in zip(lo, hi)]) if len(ri) else ri  # (c,)
    dist = np.abs(ds[di] - ref[ri])  # (c,)
    pairs = []
    used_r, used_d = np.zeros(len(ref), bool), np.zeros(len(det), bool)
    for k in np.lexsort((ri, dist)):
        r, d = ri[k], di[k]
        if not used_r[r] and not used_d[d]:
            used_r[r] = used_d[d] = True
            pairs.append((r, order[d]))
    pairs.sort()
    return np.array(pairs, np.int64).reshape(-1, 2)  # (P, 2)


@dataclass(frozen=True)
class DetectionStats:
    tp: int
    fn: int
    fp: int

    @property
    def se(self) -> float:
        return self.tp / max(1, self.tp + self.fn)

    @property
    def ppv(self) -> float:
        return self.tp / max(1, self.tp + self.fp)

    def __add__(self, o: DetectionStats) -> DetectionStats:
        return DetectionStats(self.tp + o.tp, self.fn + o.fn, self.fp + o.fp)

    def __str__(self) -> str:
        return (f"TP {self.tp}  FN {self.fn}  FP {self.fp}  Se {100 * self.se:.2f}%  "
                f"+P {100 * self.ppv:.2f}%")

    def to_dict(self) -> dict:
        return {"tp": self.tp, "fn": self.fn, "fp": self.fp, "se": 100 * self.se,
                "ppv": 100 * self.ppv}


def detection_stats(ref: np.ndarray, det: np.ndarray, fs: float,
                    tol_s: float = 0.05) -> DetectionStats:
    """R-peak detection counts of det (m,) against ref (n,) within tol_s seconds."""
    pairs = match_beats(ref, det, int(round(tol_s * fs)))
    return DetectionStats(tp=len(pairs), fn=len(ref) - len(pairs), fp=len(det) - len(pairs))


@dataclass(frozen=True)
class ClassReport:
    """confusion (K, K): rows reference, columns algorithm, matched beats only."""

    classes: tuple
    confusion: np.ndarray  # (K, K) int64
    missed: np.ndarray  # (K,) reference beats of each class with no detection
    extra: np.ndarray  # (K,) detections of each label with no reference beat

    def __add__(self, o: ClassReport) -> ClassReport:
        return ClassReport(self.classes, self.confusion + o.confusion, self.missed + o.missed,
                           self.extra + o.extra)

    @property
    def se(self) -> np.ndarray:
        """(K,) per-class sensitivity; NaN where the class has no reference beat."""
        tot = self.confusion.sum(axis=1) + self.missed  # (K,)
        return np.where(tot > 0, np.diag(self.confusion) / np.maximum(tot, 1), np.nan)

    @property
    def ppv(self) -> np.ndarray:
        """(K,) per-class positive predictivity; NaN where nothing was labelled so."""
        tot = self.confusion.sum(axis=0) + self.extra  # (K,)
        return np.where(tot > 0, np.diag(self.confusion) / np.maximum(tot, 1), np.nan)

    @property
    def accuracy(self) -> float:
        return float(np.trace(self.confusion) / max(1, self.confusion.sum()))

    def table(self) -> str:
        """Plain-text confusion matrix and per-class Se / +P."""
        K = len(self.classes)
        head = "ref\\alg " + "".join(f"{c:>8}" for c in self.classes) + f"{'missed':>8}"
        rows = [head]
        for i, c in enumerate(self.classes):
            rows.append(f"{c:<8}" + "".join(f"{v:>8d}" for v in self.confusion[i])
                        + f"{self.missed[i]:>8d}")
        rows.append(f"{'extra':<8}" + "".join(f"{v:>8d}" for v in self.extra))
        rows.append("")
        rows.append(f"{'class':<8}{'Se %':>8}{'+P %':>8}{'beats':>8}")
        tot = self.confusion.sum(axis=1) + self.missed
        for i in range(K):
            rows.append(f"{self.classes[i]:<8}{100 * self.se[i]:>8.2f}{100 * self.ppv[i]:>8.2f}"
                        f"{tot[i]:>8d}")
        rows.append(f"accuracy {100 * self.accuracy:.2f}% of {self.confusion.sum()} matched beats")
        return "\n".join(rows)

    def to_dict(self) -> dict:
        """Per-class Se / +P (%, null where undefined), accuracy and the counts, for JSON."""
        pct = lambda v: None if np.isnan(v) else round(100 * float(v), 4)  # noqa: E731
        return {"classes": list(self.classes), "accuracy": 100 * self.accuracy,
                "se": {c: pct(v) for c, v in zip(self.classes, self.se)},
                "ppv": {c: pct(v) for c, v in zip(self.classes, self.ppv)},
                "beats": {c: int(v) for c, v in zip(
                    self.classes, self.confusion.sum(axis=1) + self.missed)},
                "confusion": self.confusion.tolist(), "missed": self.missed.tolist(),
                "extra": self.extra.tolist()}


def class_report(ref: np.ndarray, ref_labels: np.ndarray, det: np.ndarray,
                 det_labels: np.ndarray, fs: float, tol_s: float = 0.15,
                 classes: tuple = AAMI_CLASSES) -> ClassReport:
    """EC57-style class report; labels are class indices (n,), (m,) into `classes`."""
    K = len(classes)
    ref_labels = np.asarray(ref_labels, np.int64)  # (n,)
    det_labels = np.asarray(det_labels, np.int64)  # (m,)
    for name, lab, pos in (("ref_labels", ref_labels, ref), ("det_labels", det_labels, det)):
        if lab.shape != np.shape(pos):
            raise ValueError(f"class_report: {name} has shape {lab.shape}, beats {np.shape(pos)}")
        if len(lab) and (lab.min() < 0 or lab.max() >= K):
            raise ValueError(f"class_report: {name} must be in 0..{K - 1}, got "
                             f"{lab.min()}..{lab.max()}")
    pairs = match_beats(ref, det, int(round(tol_s * fs)))  # (P, 2)
    conf = np.zeros((K, K), np.int64)
    np.add.at(conf, (ref_labels[pairs[:, 0]], det_labels[pairs[:, 1]]), 1)
    hit_r = np.zeros(len(ref_labels), bool)
    hit_r[pairs[:, 0]] = True
    hit_d = np.zeros(len(det_labels), bool)
    hit_d[pairs[:, 1]] = True
    return ClassReport(tuple(classes), conf, np.bincount(ref_labels[~hit_r], minlength=K),
                       np.bincount(det_labels[~hit_d], minlength=K))
