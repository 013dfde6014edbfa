"""ECG speed benchmark: `qs4d ecg` on the record 208 excerpt, side by side in one run.

    python -m qs4d.apps.ecg_bench [--bundles models/zoo/ecg-float,...] [--backends numpy,onnx]
        [--chunks 0.1,10,60] [--repeats 5] [--realtime-s 10] [--out ecg-speed.txt]

For every bundle x backend x chunk length the whole pipeline of `qs4d ecg --fast` runs on the
5-minute excerpt (300 s, 360 Hz): BeatStream = causal front end + online R-peak detector +
the model through `FeatureSteps` (numpy: whole chunks, `runtime/chunked.py`; onnx: one graph
run per 90-Hz step). All runs are interleaved repeat by repeat, so background load hits them
alike; reported are medians over the repeats of
    x real time (wall) = signal seconds / wall seconds
    x real time (CPU)  = signal seconds / process CPU seconds (less sensitive to other jobs)
with a breakdown: the front end and R-peak detector alone (a model that returns zeros) and
the model alone on precomputed features (model = the rest). Then each bundle x backend
streams `--realtime-s` seconds at real-time pace in 100-ms chunks and its CPU share of one
core is measured (process CPU time / signal time). Beat counts are printed as a check that
every configuration finds the same beats and classes.
"""

from __future__ import annotations

import os

# numpy's BLAS gets one thread before numpy loads, as under `qs4d ecg` (qs4d/cli.py)
for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from functools import partial  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from qs4d.runtime.ecg import BeatStream, EcgFrontend  # noqa: E402
from qs4d.runtime.records import load_record208  # noqa: E402
from qs4d.runtime.stream import load  # noqa: E402

from .ecg import FeatureSteps  # noqa: E402

DEFAULT_BUNDLES = "models/zoo/ecg-float,models/zoo/ecg-qat4,models/zoo/ecg-ternary"


class _Zeros:
    """A model that costs nothing: isolates the front end and the R-peak detector."""

    def __init__(self, k: int):
        self.k = k

    def accept(self, feats: np.ndarray) -> np.ndarray:
        return np.zeros((len(feats), self.k), np.float32)


def _timed(fn) -> tuple[float, float, object]:
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w0, time.process_time() - c0, out


def pipeline(model, x: np.ndarray, n: int) -> list:
    """BeatStream over x in chunks of n samples: the beat events (as `qs4d ecg --fast`)."""
    bs = BeatStream(FeatureSteps(model), model.spec.frontend, labels=model.labels)
    return [e for i in range(0, len(x), n) for e in bs.accept(x[i: i + n])]


def frontend_only(model, x: np.ndarray, n: int) -> int:
    bs = BeatStream(_Zeros(len(model.labels)), model.spec.frontend, labels=model.labels)
    return sum(len(bs.accept(x[i: i + n])) for i in range(0, len(x), n))


def model_only(model, feats: np.ndarray, rows: int) -> int:
    fs = FeatureSteps(model)
    for i in range(0, len(feats), rows):
        fs.accept(feats[i: i + rows])
    return fs.steps


def paced_cpu(model, x: np.ndarray, fs: int, seconds: float, chunk_s: float = 0.1) -> float:
    """CPU share of one core streaming `seconds` of x at real-time pace."""
    n = int(round(chunk_s * fs))
    x = x[: int(round(seconds * fs))]
    bs = BeatStream(FeatureSteps(model), model.spec.frontend, labels=model.labels)
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(0, len(x), n):
        due = t0 + (i + n) / fs
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        bs.accept(x[i: i + n])
    return (time.process_time() - c0) / (len(x) / fs)


def run(bundles: list, backends: list, chunks_s: list, repeats: int, realtime_s: float,
        seconds: float | None = None, log=print) -> dict:
    x, fs = load_record208()
    x = np.asarray(x, np.float64)[: None if seconds is None else int(round(seconds * fs))]
    dur = len(x) / fs
    models = {(b, be): load(b, backend=be) for b in bundles for be in backends}
    feats = {b: EcgFrontend(models[b, backends[0]].spec.frontend).process(x) for b in bundles}
    k = {b: models[b, backends[0]].spec.frontend.decimate for b in bundles}
    cases = [(b, be, c) for b in bundles for be in backends for c in chunks_s]
    res: dict = {c: {"wall": [], "cpu": [], "fe_wall": [], "fe_cpu": [], "m_wall": [],
                     "m_cpu": []} for c in cases}
    beats: dict = {}
    for r in range(repeats):
        for case in cases:
            b, be, c = case
            m, n = models[b, be], int(round(c * fs))
            wall, cpu, ev = _timed(partial(pipeline, m, x, n))
            res[case]["wall"].append(wall)
            res[case]["cpu"].append(cpu)
            beats[case] = Counter(e.label for e in ev)
            wall, cpu, _ = _timed(partial(frontend_only, m, x, n))
            res[case]["fe_wall"].append(wall)
            res[case]["fe_cpu"].append(cpu)
            wall, cpu, _ = _timed(partial(model_only, m, feats[b], max(1, n // k[b])))
            res[case]["m_wall"].append(wall)
            res[case]["m_cpu"].append(cpu)
        log(f"  repeat {r + 1}/{repeats} done")
    paced = {}
    if realtime_s > 0:
        for b in bundles:
            for be in backends:
                paced[b, be] = paced_cpu(models[b, be], x, fs, realtime_s)
    med = {case: {key: float(np.median(v)) for key, v in d.items()} for case, d in res.items()}
    return {"duration_s": dur, "steps": len(feats[bundles[0]]), "median": med, "beats": beats,
            "paced": paced, "repeats": repeats, "realtime_s": realtime_s}


def report(r: dict, argv: list) -> str:
    dur = r["duration_s"]
    lines = [
        "ECG speed: `qs4d ecg BUNDLE --record208 --fast` pipeline (front end + R-peak detector"
        " + model),",
        f"record 208 excerpt, {dur:.0f} s at 360 Hz, {r['steps']} model steps; medians "
        f"over {r['repeats']} interleaved repeats.",
        "command: python -m qs4d.apps.ecg_bench " + " ".join(argv),
        f"host: {platform.machine()}, {os.cpu_count()} CPUs, load average at the end "
        f"{os.getloadavg()[0]:.1f} (other jobs inflate wall times; the CPU column is the "
        "process's own CPU time)",
        "",
        f"{'bundle':<13}{'backend':<8}{'chunk':>7}{'x real time':>13}{'x RT (CPU)':>12}"
        f"{'wall s':>9}{'fe+det ms':>11}{'model ms':>10}{'us/step':>9}  beats",
    ]
    for (b, be, c), m in r["median"].items():
        cnt = r["beats"][b, be, c]
        beats = f"{sum(cnt.values())} " + " ".join(f"{k}{cnt[k]}" for k in "NSVFQ" if cnt[k])
        lines.append(
            f"{Path(b).name:<13}{be:<8}{c:>6g}s{dur / m['wall']:>13.0f}{dur / m['cpu']:>12.0f}"
            f"{m['wall']:>9.3f}{1e3 * m['fe_cpu']:>11.1f}{1e3 * m['m_cpu']:>10.1f}"
            f"{1e6 * m['m_cpu'] / r['steps']:>9.1f}  {beats}")
    lines.append("")
    lines.append("fe+det ms, model ms: CPU time of the front end + R-peak detector alone and of "
                 "the model alone on precomputed features; us/step = model ms / steps.")
    if r["paced"]:
        lines.append("")
        lines.append(f"CPU share of one core at real-time pace ({r['realtime_s']:g} s streamed "
                     "in 100-ms chunks, paced):")
        for (b, be), share in r["paced"].items():
            lines.append(f"  {Path(b).name:<13}{be:<8}{100 * share:6.2f}%")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m qs4d.apps.ecg_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundles", default=DEFAULT_BUNDLES)
    p.add_argument("--backends", default="numpy,onnx")
    p.add_argument("--chunks", default="0.1,10,60", help="chunk lengths in seconds")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--realtime-s", type=float, default=10.0,
                   help="seconds streamed at real-time pace per bundle x backend (0: skip)")
    p.add_argument("--seconds", type=float, help="use only the first S seconds of the excerpt")
    p.add_argument("--out", metavar="TXT", help="also write the report here")
    args = p.parse_args(argv)
    bundles = [b for b in args.bundles.split(",") if b]
    backends = [b for b in args.backends.split(",") if b]
    chunks = [float(c) for c in args.chunks.split(",") if c]
    if args.repeats < 1 or not bundles or not backends or not chunks:
        print("ecg_bench: need bundles, backends, chunks and repeats >= 1", file=sys.stderr)
        return 2
    r = run(bundles, backends, chunks, args.repeats, args.realtime_s, args.seconds,
            log=lambda s: print(s, file=sys.stderr))
    text = report(r, argv)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
