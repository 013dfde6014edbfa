"""AAMI EC57-style inter-patient report of a streaming ECG bundle over the records of a WFDB
folder.

    qs4d ecg-report models/zoo/ecg-qat4 --data ../shared/data/mitdb --split DS2 --json r.json

Records: `--records 100,103` names them; else `--split` picks them: a `qs4d data ecg` folder's
splits.json (train, validation, test); in an MIT-BIH folder the inter-patient lists DS1 and
DS2 and the training splits train / validation (DS1) and test (= DS2); `all` takes the
folder's RECORDS file, or every `.hea` in it. Each record is read on lead MLII (else its first
lead), resampled to the model's rate, and streams through the same path as `qs4d ecg`
(BeatStream: causal front end, online R-peak detector, the model); the model steps the
records of a process as one batch of streams, which gives the same events, faster. Beat
events are matched to
the reference annotations (AAMI classes N, S, V, F, Q): classification within 150 ms (EC57),
R-peak detection within 150 ms (EC57) and within 50 ms (strict). Prints per-class
sensitivity (Se) and positive predictivity (+P), the accuracy over matched beats and the
confusion matrix, summed over records; `--json` writes the same with a per-record breakdown.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from qs4d.runtime.ecg import AAMI_CLASSES, BeatStream, EcgFrontend
from qs4d.runtime.ecg_metrics import class_report, detection_stats, match_beats
from qs4d.runtime.mitbih import SPLITS as MITBIH_SPLITS
from qs4d.runtime.stream import load

from . import ecg_io
from .ecg import FeatureSteps


def folder_records(data: Path) -> list[str]:
    """The RECORDS file's names, else every .hea's."""
    listing = data / "RECORDS"
    if listing.exists():
        return listing.read_text().split()
    names = sorted(p.stem for p in data.glob("*.hea"))
    if not names:
        raise FileNotFoundError(f"{data}: no RECORDS file and no .hea headers")
    return names


def split_names(data: Path, split: str) -> list[str]:
    """Record names of `split` in the WFDB folder `data` (see the module docstring)."""
    sf = data / "splits.json"
    if split == "all":
        return folder_records(data)
    if sf.exists():
        meta = json.loads(sf.read_text())
        if split not in meta or not isinstance(meta[split], list):
            raise ValueError(f"{sf}: no split {split!r}")
        return list(meta[split])
    if split in MITBIH_SPLITS:
        names = list(MITBIH_SPLITS[split])
        have = set(folder_records(data))
        missing = [n for n in names if n not in have]
        if missing:
            raise FileNotFoundError(f"{data}: MIT-BIH split {split} needs records {missing}")
        return names
    raise ValueError(f"{data}: no splits.json; --split is one of all, "
                     f"{', '.join(MITBIH_SPLITS)}")


class Replay:
    """A step model that hands out logits computed beforehand, row by row in order (the
    records of a split are run as one batch of streams, then each through its BeatStream)."""

    def __init__(self, logits: np.ndarray):
        self.logits, self.row = logits, 0  # (T, K)

    def accept(self, feats: np.ndarray) -> np.ndarray:
        out = self.logits[self.row: self.row + len(feats)]
        self.row += len(feats)
        return out


def _score(name: str, rec, events: list, labels: tuple, fs: int) -> dict:
    t = np.array([e.sample for e in events], np.int64)  # (m,)
    lab = np.array([labels.index(e.label) for e in events], np.int64)  # (m,)
    ref_lab = np.array([AAMI_CLASSES.index(c) for c in rec.ref_labels], np.int64)  # (n,)
    pairs = match_beats(rec.ref_samples, t, int(round(0.15 * fs)))  # (P, 2) as class_report
    ref_of_event = np.full(len(t), -1, np.int64)  # (m,) matched reference class, -1: extra
    ref_of_event[pairs[:, 1]] = ref_lab[pairs[:, 0]]
    probs = np.array([e.probs for e in events], np.float32).reshape(len(t), len(labels))
    return {"name": name, "report": class_report(rec.ref_samples, ref_lab, t, lab, fs),
            "events": {"probs": probs, "ref": ref_of_event},
            "detection": detection_stats(rec.ref_samples, t, fs, tol_s=0.15),
            "detection_50ms": detection_stats(rec.ref_samples, t, fs, tol_s=0.05),
            "beats": len(rec.ref_samples), "seconds": len(rec.signal) / fs}


def _read(path: Path, fs: int):
    rec = ecg_io.conform(ecg_io.read_wfdb(path), fs)
    if rec.ref_samples is None:
        raise FileNotFoundError(f"{path}: no .atr beat annotations to score against")
    return rec


def evaluate_records(bundle: str, paths: list, backend: str = "onnx",
                     rows_per_call: int = 9000) -> list[dict]:
    """Stream the records through the bundle as one batch of streams (B = records; the model
    steps all of them at once, the recurrent state of each its own), then each record's
    logits through its BeatStream (front end, online detector, decision rows). The same
    events as streaming each record alone (bit for bit on integer bundles)."""
    model = load(bundle, backend=backend)
    spec = model.spec
    fs = spec.frontend.sample_rate
    recs = [_read(p, fs) for p in paths]
    feats = [EcgFrontend(spec.frontend).features(r.signal) for r in recs]  # (T_i, F)
    T = max(len(f) for f in feats)
    x = np.zeros((len(recs), T, feats[0].shape[1]), np.float32)  # (B, T, F) zero-padded
    for i, f in enumerate(feats):
        x[i, :len(f)] = f
    stream = model.stream(batch=len(recs))
    logits = np.concatenate([stream.run_features(x[:, a: a + rows_per_call])
                             for a in range(0, T, rows_per_call)], axis=1)  # (B, T, K)
    out = []
    for p, rec, f, lg in zip(paths, recs, feats, logits):
        bs = BeatStream(Replay(lg[:len(f)]), spec.frontend, labels=model.labels)
        out.append(_score(Path(p).name, rec, bs.accept(rec.signal), model.labels, fs))
    return out


def evaluate_record(bundle: str, path: Path, backend: str = "onnx") -> dict:
    """Stream one record through the bundle, as `qs4d ecg` does; its reports and counts."""
    model = load(bundle, backend=backend)
    fs = model.spec.frontend.sample_rate
    rec = _read(path, fs)
    bs = BeatStream(FeatureSteps(model), model.spec.frontend, labels=model.labels)
    return _score(path.name, rec, bs.accept(rec.signal), model.labels, fs)


def _batch(job: tuple) -> list:
    return evaluate_records(*job)


def evaluate(bundle: str, data: Path, names: list[str], backend: str = "onnx",
             jobs: int = 1) -> dict:
    """Every record of `names` in `data` through the bundle (in `jobs` processes, each
    stepping its share of the records as one batch); summed and per-record results."""
    t0 = time.time()
    parts = [[data / n for n in names[j::jobs]] for j in range(jobs) if names[j::jobs]]
    if len(parts) > 1:
        with ProcessPoolExecutor(len(parts)) as ex:
            done = list(ex.map(_batch, [(bundle, p, backend) for p in parts]))
    else:
        done = [evaluate_records(bundle, parts[0], backend)]
    by_name = {r["name"]: r for d in done for r in d}
    per = [by_name[Path(n).name] for n in names]
    total = lambda k: sum((r[k] for r in per[1:]), per[0][k])  # noqa: E731
    return {"records": per, "report": total("report"), "detection": total("detection"),
            "detection_50ms": total("detection_50ms"),
            "beats": sum(r["beats"] for r in per), "seconds": sum(r["seconds"] for r in per),
            "wall": time.time() - t0}


def to_json(r: dict, bundle: str, data: Path, split: str, backend: str) -> dict:
    return {"bundle": str(bundle), "data": str(data), "split": split, "backend": backend,
            "records": [x["name"] for x in r["records"]], "n_beats": r["beats"],
            "hours": r["seconds"] / 3600, **r["report"].to_dict(),
            "detection": r["detection"].to_dict(),
            "detection_50ms": r["detection_50ms"].to_dict(),
            "per_record": {x["name"]: {"accuracy": 100 * x["report"].accuracy,
                                       "beats": x["beats"],
                                       "confusion": x["report"].confusion.tolist()}
                           for x in r["records"]}}


DATA_NOTE = ("MIT-BIH Arrhythmia Database (ODC-By 1.0; Moody and Mark, IEEE EMB Mag 20(3), "
             "2001; PhysioNet, Goldberger et al., Circulation 101(23), 2000)")


def markdown(j: dict, command: str) -> str:
    """A model card section from the report's JSON: the AAMI table and the detection."""
    def f(v):
        return "-" if v is None else f"{v:.1f}"

    rows = "\n".join(f"| {c} | {j['beats'][c]} | {f(j['se'][c])} | {f(j['ppv'][c])} |"
                     for c in j["classes"])
    conf = "\n".join(f"| {c} | " + " | ".join(str(v) for v in row) + f" | {m} |"
                     for c, row, m in zip(j["classes"], j["confusion"], j["missed"]))
    d, d50 = j["detection"], j["detection_50ms"]
    return f"""## Real patients: {j['split']} ({len(j['records'])} records, {j['n_beats']} beats, {j['hours']:.1f} h)

Data: {DATA_NOTE}, records {', '.join(j['records'])}; streamed through the runtime
(`{j['backend']}` backend: causal front end, online R-peak detector, the model), scored as AAMI
EC57 (classification within 150 ms). Command:

```
{command}
```

Accuracy {j['accuracy']:.2f}% of matched beats. R-peak detection: Se {d['se']:.2f}%, +P {d['ppv']:.2f}%
within 150 ms (Se {d50['se']:.2f}%, +P {d50['ppv']:.2f}% within 50 ms).

| class | beats | Se % | +P % |
|---|---|---|---|
{rows}

Confusion (rows: reference, columns: the model's label; `missed`: beats not detected):

| ref \\ model | {' | '.join(j['classes'])} | missed |
|---|{'---|' * (len(j['classes']) + 1)}
{conf}
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="qs4d ecg-report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle")
    p.add_argument("--data", type=Path, required=True, help="WFDB folder with .atr annotations")
    p.add_argument("--split", default="test",
                   help="all, a splits.json split, or MIT-BIH DS1 / DS2 / train / validation / "
                        "test (default test)")
    p.add_argument("--records", default="", help="comma-separated record names (overrides "
                                                 "--split)")
    p.add_argument("--backend", default="onnx", choices=("onnx", "imssa", "numpy"))
    p.add_argument("--jobs", type=int, default=1, help="records evaluated in parallel")
    p.add_argument("--json", type=Path, help="write the report as JSON here")
    p.add_argument("--markdown", type=Path, help="write the report as a model card section")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if args.jobs < 1:
        p.error(f"--jobs must be >= 1, got {args.jobs}")
    names = args.records.split(",") if args.records else split_names(args.data, args.split)
    split = "records" if args.records else args.split
    r = evaluate(args.bundle, args.data, names, args.backend, args.jobs)
    rep, det, det50 = r["report"], r["detection"], r["detection_50ms"]
    print(f"{args.bundle} on {args.data} [{split}: {len(names)} records]: {r['beats']} beats, "
          f"{r['seconds'] / 3600:.2f} h of signal, backend {args.backend}")
    print(f"R-peak detection (150 ms): Se {100 * det.se:.2f}%  +P {100 * det.ppv:.2f}%   "
          f"(50 ms: Se {100 * det50.se:.2f}%  +P {100 * det50.ppv:.2f}%)")
    print(f"beat classification (150 ms): accuracy {100 * rep.accuracy:.2f}%")
    print(rep.table())
    print(f"{r['wall']:.0f} s wall for {r['seconds']:.0f} s of signal "
          f"({r['seconds'] / max(r['wall'], 1e-9):.0f}x real time, {args.jobs} jobs)")
    j = to_json(r, args.bundle, args.data, split, args.backend)
    if args.json:
        args.json.write_text(json.dumps(j, indent=1) + "\n")
        print(f"wrote {args.json}")
    if args.markdown:
        cmd = "qs4d ecg-report " + " ".join(sys.argv[1:] if argv is None else argv)
        args.markdown.write_text(markdown(j, cmd))
        print(f"wrote {args.markdown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
