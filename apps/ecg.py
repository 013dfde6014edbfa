"""`qs4d ecg BUNDLE`: streaming ECG beat detection and classification.

    qs4d ecg models/zoo/ecg-qat4 --record208 [--realtime] [--plot strip.png]
    qs4d ecg BUNDLE --wfdb mitdb/208            # evaluated against 208.atr when it exists
    qs4d ecg BUNDLE --csv ecg.csv [--fs 360]    # one column (mV) or time,mV
    cat samples.txt | qs4d ecg BUNDLE --stdin --fs 360

The signal goes through runtime.ecg.BeatStream in chunks (100 ms at real-time pace, 60 s as
fast as possible from a file): the causal front end, the online R-peak detector and the model,
one step per (decimated) sample; the numpy backend runs each chunk's steps as one layer-major
pass (runtime/chunked.py), onnx steps its graph once per sample. Each beat event is printed
with its time, AAMI class and posterior, then a rhythm summary (heart rate, beats per class,
pattern hints), an EC57-style evaluation when reference annotations exist, and the CPU load:
process CPU time / signal duration (the share of one core the stream needs at real-time pace)
and, with --fast, the speed in multiples of real time.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from qs4d.runtime.backends import BACKENDS
from qs4d.runtime.cliargs import (
    ArgParser,
    float_in,
    nonneg_float,
    nonneg_int,
    positive_float,
    positive_int,
)
from qs4d.runtime.ecg import AAMI_CLASSES, BeatStream
from qs4d.runtime.ecg_metrics import class_report, detection_stats
from qs4d.runtime.errors import UsageError
from qs4d.runtime.spec import MAX_SAMPLE_RATE
from qs4d.runtime.stream import load

from . import ecg_io
from .plot import plot_file
from .rhythm import analyze, report


class FeatureSteps:
    """A model stepped on front-end features (T, F) -> logits (T, K); BeatStream runs the
    ECG front end itself, so it needs the model without the Stream's own front end
    (`Stream.run_features`: the numpy backend runs whole chunks layer-major)."""

    def __init__(self, model):
        self.stream = model.stream()
        self.steps = 0

    def accept(self, feats: np.ndarray) -> np.ndarray:
        out = self.stream.run_features(feats)  # (T, K)
        self.steps += len(out)
        return out


PACED_CHUNK_MS = 100.0  # real-time pace: a beat is decided at most this much later
FAST_CHUNK_MS = 60000.0  # as fast as possible: long chunks, little per-chunk overhead


def _chunk_ms(args) -> float:
    return args.chunk_ms or (PACED_CHUNK_MS if args.realtime or args.stdin else FAST_CHUNK_MS)


def _record(args, fs: int):
    """(Record or None, chunk iterator) for the chosen source."""
    if args.stdin:
        return None, ecg_io.text_chunks(sys.stdin, args.fs or fs, _chunk_ms(args) / 1000.0)
    if args.wfdb:
        rec = ecg_io.read_wfdb(args.wfdb)
    elif args.csv:
        rec = ecg_io.read_csv(args.csv, args.fs)
    else:
        rec = ecg_io.record208()
    rec = ecg_io.conform(rec, fs)
    if args.seconds:
        n = int(round(args.seconds * fs))
        keep = None if rec.ref_samples is None else rec.ref_samples < n
        rec = ecg_io.Record(rec.name, rec.signal[:n], fs,
                            None if keep is None else rec.ref_samples[keep],
                            None if keep is None else rec.ref_labels[keep])
    return rec, ecg_io.chunks(rec.signal, fs, _chunk_ms(args) / 1000.0, args.realtime)


def _evaluate(rec, det_t: np.ndarray, det_lab: list, fs: int, classes: tuple) -> str:
    det = np.rint(det_t * fs).astype(np.int64)
    idx = {c: i for i, c in enumerate(classes)}
    ref_ok = np.array([lab in idx for lab in rec.ref_labels], bool)
    det_ok = np.array([lab in idx for lab in det_lab], bool)
    lines = [f"R-peak detection (50 ms): {detection_stats(rec.ref_samples, det, fs)}"]
    rep = class_report(rec.ref_samples[ref_ok],
                       np.array([idx[x] for x in rec.ref_labels[ref_ok]], np.int64),
                       det[det_ok],
                       np.array([idx[x] for x, ok in zip(det_lab, det_ok) if ok], np.int64),
                       fs, classes=classes)
    lines.append(rep.table())
    return "\n".join(lines)


def _plot_start(times: np.ndarray, labels: list, duration: float, seconds: float = 10.0) -> float:
    """Start of the 10-s window with the most non-N beats (the earliest such window)."""
    if duration <= seconds or not len(times):
        return 0.0
    ab = np.array([t for t, lab in zip(times, labels) if lab != "N"])
    if not len(ab):
        return 0.0
    starts = np.clip(ab - 1.0, 0.0, duration - seconds)
    counts = [int(((ab >= s) & (ab < s + seconds)).sum()) for s in starts]
    return float(starts[int(np.argmax(counts))])


def build_parser() -> argparse.ArgumentParser:
    p = ArgParser(prog="qs4d ecg", description=__doc__,
                  formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", nargs="?", help="bundle directory with an ecg front end "
                   "(default: the package's models/zoo/ecg-qat4)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--record208", action="store_true", help="bundled MIT-BIH 208 excerpt "
                     "(the default)")
    src.add_argument("--wfdb", metavar="PATH", help="WFDB record (PATH.hea, PATH.dat[, .atr])")
    src.add_argument("--csv", metavar="FILE", help="CSV: mV, or time (s), mV")
    src.add_argument("--stdin", action="store_true", help="text, one mV value per line")
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--realtime", action="store_true", help="stream at real-time pace")
    pace.add_argument("--fast", action="store_true", help="as fast as possible (the default)")
    p.add_argument("--fs", type=positive_int, help="rate of --csv (one column) or --stdin samples")
    p.add_argument("--seconds", type=positive_float, help="use only the first S seconds")
    p.add_argument("--chunk-ms", type=float_in(0.01, 3.6e6), help=f"signal per chunk (default "
                   f"{PACED_CHUNK_MS:g} at --realtime and from --stdin, {FAST_CHUNK_MS:g} as "
                   f"fast as possible from a file)")
    p.add_argument("--backend", choices=BACKENDS, help="default: numpy as fast as possible "
                   "from a file (whole chunks layer-major, runtime/chunked.py), onnx at "
                   "real-time pace and from --stdin (one graph call per sample); integer "
                   "bundles give bit-identical events on both")
    p.add_argument("--plot", metavar="PNG", type=plot_file, help="write a 10-s strip with beats by class (the plot extra)")
    p.add_argument("--plot-start", type=nonneg_float, help="strip start (s); default: most ectopy")
    p.add_argument("--quiet", action="store_true", help="no line per beat")
    p.add_argument("--print-limit", type=nonneg_int, help="print at most N beat lines")
    return p


def default_backend(args) -> str:
    """The backend `qs4d ecg` uses when --backend is not given (see its help)."""
    if args.backend:
        return args.backend
    return "onnx" if args.realtime or args.stdin else "numpy"


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    args.backend = default_backend(args)
    if args.fs is not None and args.fs > MAX_SAMPLE_RATE:
        raise UsageError(f"argument --fs: at most {MAX_SAMPLE_RATE} Hz, got {args.fs}")
    if not args.bundle:
        from .zoo import default_bundle

        args.bundle = default_bundle("ecg")
        if args.bundle is None:
            raise UsageError("a BUNDLE is required (the package's zoo has no ecg-qat4)")
    model = load(args.bundle, backend=args.backend)
    fe = model.spec.frontend
    if fe.kind != "ecg":
        print(f"qs4d ecg: {args.bundle} has a {fe.kind!r} front end; this app needs 'ecg'",
              file=sys.stderr)
        return 2
    fs, labels = fe.sample_rate, tuple(model.labels)
    rec, source = _record(args, fs)  # an unreadable file is an InputError (exit 1)
    steps = FeatureSteps(model)
    beats = BeatStream(steps, fe, labels=labels)
    name = rec.name if rec is not None else "stdin"
    print(f"{model!r}\nsignal: {name}, {fs} Hz, "
          f"{'real-time pace' if args.realtime else 'as fast as possible'}")
    times, labs, kept = [], [], []
    t0, c0, end_s = time.perf_counter(), time.process_time(), 0.0
    for chunk in source:
        for ev in beats.accept(chunk.samples):
            times.append(ev.time_s)
            labs.append(ev.label)
            if not args.quiet and (args.print_limit is None or len(times) <= args.print_limit):
                print(f"{ev.time_s:9.3f} s  {ev.label}  p={ev.confidence:4.2f}  "
                      f"(+{chunk.end_s - ev.time_s:.2f} s)")
        if rec is None and args.plot:  # only a plot needs the signal back (no growth else)
            kept.append(chunk.samples)
        end_s = chunk.end_s
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if not args.quiet and args.print_limit is not None and len(times) > args.print_limit:
        print(f"... {len(times) - args.print_limit} more beats")
    t = np.asarray(times)
    classes = labels if set(labels) <= set(AAMI_CLASSES) else AAMI_CLASSES
    print(report(analyze(t, labs, classes=tuple(labels))))
    if rec is not None and rec.ref_samples is not None:
        print(_evaluate(rec, t, labs, fs, classes))
    elif rec is not None:
        print("evaluation: the record has no beat annotations")
    if end_s > 0:
        # at real-time pace (or paced by stdin's producer) this is the share of one core the
        # stream needs; as fast as possible in long chunks it is less (per-chunk overhead)
        paced = args.realtime or args.stdin
        how = "at real-time pace" if paced else \
            f"as fast as possible in {_chunk_ms(args) / 1000:g}-s chunks"
        line = (f"CPU: {cpu:.3f} s for {end_s:.1f} s of signal = {100 * cpu / end_s:.2f}% of "
                f"one core {how}; {steps.steps} model steps")
        if not args.realtime and wall > 0:
            line += f"; {end_s / wall:.0f}x real time ({wall:.2f} s wall)"
        print(line)
    if args.plot:
        from .plot import ecg_strip

        x = rec.signal if rec is not None else np.concatenate(kept) if kept else np.zeros(0)
        start = args.plot_start if args.plot_start is not None else _plot_start(t, labs, end_s)
        path = ecg_strip(args.plot, x, fs, start, list(zip(times, labs)),
                         f"{name[:60]}  {args.backend}  {start:.1f}-{start + 10:.1f} s")
        print(f"wrote {path}")
    return 0
