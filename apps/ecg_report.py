"""AAMI EC57-style report of a streaming ECG bundle over the records of a data split.

    python -m qs4d.apps.ecg_report models/zoo/ecg-qat4 --data data/ecg --split test

Every record of the split (splits.json of `qs4d data ecg`, or RECORDS) streams through the same
path as `qs4d ecg` (BeatStream: causal front end, online R-peak detector, the model); beat
events are matched to the reference annotations: detection within 50 ms, classification
within 150 ms. Prints per-class sensitivity and positive predictivity and the confusion matrix,
summed over records.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from qs4d.runtime.ecg import AAMI_CLASSES, BeatStream
from qs4d.runtime.ecg_metrics import class_report, detection_stats
from qs4d.runtime.stream import load

from . import ecg_io
from .ecg import FeatureSteps


def split_names(data: Path, split: str) -> list[str]:
    sf = data / "splits.json"
    if sf.exists():
        return list(json.loads(sf.read_text())[split])
    return (data / "RECORDS").read_text().split()


def evaluate(bundle: str, data: Path, split: str, backend: str = "onnx") -> dict:
    model = load(bundle, backend=backend)
    fs = model.spec.frontend.sample_rate
    cls, det, n_beats, seconds = None, None, 0, 0.0
    t0 = time.process_time()
    for name in split_names(data, split):
        rec = ecg_io.conform(ecg_io.read_wfdb(data / name), fs)
        bs = BeatStream(FeatureSteps(model), model.spec.frontend, labels=model.labels)
        events = bs.accept(rec.signal)
        t = np.array([e.sample for e in events], np.int64)  # (m,)
        lab = np.array([model.labels.index(e.label) for e in events], np.int64)  # (m,)
        ref_lab = np.array([AAMI_CLASSES.index(c) for c in rec.ref_labels], np.int64)  # (n,)
        c = class_report(rec.ref_samples, ref_lab, t, lab, fs)
        d = detection_stats(rec.ref_samples, t, fs)
        cls, det = (c, d) if cls is None else (cls + c, det + d)
        n_beats += len(rec.ref_samples)
        seconds += len(rec.signal) / fs
    cpu = time.process_time() - t0
    return {"report": cls, "detection": det, "beats": n_beats, "seconds": seconds, "cpu": cpu}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m qs4d.apps.ecg_report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle")
    p.add_argument("--data", type=Path, default=Path("data/ecg"))
    p.add_argument("--split", default="test")
    p.add_argument("--backend", default="onnx", choices=("onnx", "imssa", "numpy"))
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    r = evaluate(args.bundle, args.data, args.split, args.backend)
    rep, det = r["report"], r["detection"]
    print(f"{args.bundle} on {args.data} [{args.split}]: {r['beats']} beats, "
          f"{r['seconds'] / 60:.1f} min of signal, backend {args.backend}")
    print(f"R-peak detection (50 ms): Se {100 * det.se:.2f}%  +P {100 * det.ppv:.2f}%")
    print(f"beat classification (150 ms): accuracy {100 * rep.accuracy:.2f}%")
    print(rep.table())
    print(f"CPU {r['cpu']:.1f} s for {r['seconds']:.0f} s of signal "
          f"({r['seconds'] / max(r['cpu'], 1e-9):.0f}x real time)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
