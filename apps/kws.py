"""`qs4d kws BUNDLE`: streaming keyword spotting from WAV files, a microphone or stdin.

    qs4d kws models/zoo/kws-qat4 --wav apps/data/digits_allison.wav          # real-time pace
    qs4d kws models/zoo/kws-qat4 --wav a.wav b.wav --fast --backend imssa
    qs4d kws models/zoo/kws-qat4 --mic [--device N] [--seconds 30]
    qs4d kws --list-devices
    sox in.mp3 -t raw -r 16000 -e signed -b 16 -c 1 - | qs4d kws BUNDLE --stdin

Every source goes through the same `Stream` in chunks; posteriors are smoothed and a keyword
fires once per utterance above the threshold (apps/detect.py). Each detection is printed with
its audio time, keyword, smoothed posterior and latency: the wall-clock delay from the moment
the audio chunk that triggered it was available to the print. On a terminal a live line shows
the input level and the top posterior.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from qs4d.runtime.backends import BACKENDS
from qs4d.runtime.cliargs import (
    ArgParser,
    float_in,
    nonneg_float,
    positive_float,
    positive_int,
)
from qs4d.runtime.errors import UsageError
from qs4d.runtime.spec import MAX_SAMPLE_RATE
from qs4d.runtime.stream import load

from .detect import (
    APP_SMOOTH,
    APP_SMOOTH_MS,
    APP_THRESHOLD,
    SMOOTH_MODES,
    Detector,
    DetectorConfig,
)
from .sources import RawSource, WavSource

MAX_WINDOW_MS = 60000.0  # smoothing, hold and chunk durations (the detector keeps a window)


@dataclass
class RunStats:
    source: str
    detections: list = field(default_factory=list)  # (time_s, label, confidence, latency_s)
    audio_s: float = 0.0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    steps: int = 0
    overflows: int = 0


class LiveLine:
    """One terminal line, redrawn at most 10 times a second: level and top posterior."""

    def __init__(self, out, enabled: bool):
        self.out, self.enabled, self._next, self._shown = out, enabled, 0.0, False

    def update(self, samples: np.ndarray, label: str, prob: float) -> None:
        now = time.perf_counter()
        if not self.enabled or now < self._next:
            return
        self._next = now + 0.1
        rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if len(samples) else 0.0
        db = 20 * np.log10(max(rms, 1e-5))
        bar = "#" * int(np.clip((db + 60) / 3, 0, 20))
        self.out.write(f"\r\x1b[K level {db:6.1f} dBFS [{bar:<20}]  top {label:<10} {prob:4.2f}")
        self.out.flush()
        self._shown = True

    def clear(self) -> None:
        if self._shown:
            self.out.write("\r\x1b[K")
            self._shown = False


def step_end_s(spec, step: int) -> float:
    """Audio time (s) at the last sample of model step `step`'s front-end frame."""
    fe = spec.frontend
    return (fe.win_samples + step * fe.hop_samples) / fe.sample_rate


def run(model, source, detector: Detector, out=sys.stdout, live: bool = False,
        prefix: str = "") -> RunStats:
    """Stream one source through a fresh Stream and the detector; print each detection."""
    stream = model.stream()
    detector.reset()
    view = LiveLine(out, live)
    st = RunStats(source=source.name)
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        for chunk in source:
            logits = stream.accept(chunk.samples)  # (T, K)
            dets, sm = detector.update(logits)
            for d in dets:
                latency = time.perf_counter() - chunk.wall
                t = step_end_s(model.spec, d.step)
                view.clear()
                print(f"{prefix}{t:8.2f} s  {d.label:<10} p={d.confidence:4.2f}  "
                      f"latency {1e3 * latency:6.1f} ms", file=out, flush=True)
                st.detections.append((t, d.label, d.confidence, latency))
            if len(sm):
                k = int(np.argmax(sm[-1]))
                view.update(chunk.samples, detector.labels[k], float(sm[-1, k]))
            st.audio_s = chunk.end_s
    except KeyboardInterrupt:
        pass
    finally:
        view.clear()
    st.wall_s, st.cpu_s = time.perf_counter() - t0, time.process_time() - c0
    st.steps, st.overflows = stream.steps, getattr(source, "overflows", 0)
    st.overflows += getattr(source, "dropped_blocks", 0)
    return st


def summary(st: RunStats, fast: bool) -> str:
    lat = [d[3] for d in st.detections]
    parts = [f"{st.source}: {len(st.detections)} detection(s) in {st.audio_s:.1f} s of audio, "
             f"{st.steps} steps"]
    if st.audio_s > 0:
        parts.append(f"CPU {st.cpu_s:.2f} s = {100 * st.cpu_s / st.audio_s:.1f}% of one core "
                     f"at real-time pace")
        if fast and st.wall_s > 0:
            parts.append(f"{st.audio_s / st.wall_s:.1f}x real time")
    if lat:
        parts.append(f"latency median {1e3 * float(np.median(lat)):.1f} ms, "
                     f"max {1e3 * max(lat):.1f} ms")
    parts.append(f"input overflows {st.overflows}")
    return "; ".join(parts)


def build_parser() -> argparse.ArgumentParser:
    p = ArgParser(prog="qs4d kws", description=__doc__,
                  formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", nargs="?", help="bundle directory with a logmel front end "
                   "(default: the package's models/zoo/sc12-qat4)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--wav", nargs="+", metavar="FILE", help="WAV files (any rate/channels)")
    src.add_argument("--mic", action="store_true", help="live microphone")
    src.add_argument("--stdin", action="store_true", help="raw int16 mono on stdin")
    p.add_argument("--device", help="input device index or name (see --list-devices)")
    p.add_argument("--device-rate", type=positive_int, help="force the capture rate of --mic")
    p.add_argument("--list-devices", action="store_true", help="list input devices and exit")
    p.add_argument("--rate", type=positive_int, default=16000, help="sample rate of --stdin")
    p.add_argument("--seconds", type=positive_float, help="stop --mic after this much audio")
    p.add_argument("--fast", action="store_true", help="WAV as fast as possible")
    p.add_argument("--backend", choices=BACKENDS, default="onnx")
    p.add_argument("--threshold", type=positive_float, default=None,
                   help="detector threshold (default: the bundle's detector_threshold, chosen "
                        f"on validation speakers, else {APP_THRESHOLD})")
    p.add_argument("--smooth-ms", type=float_in(0, MAX_WINDOW_MS), default=APP_SMOOTH_MS)
    p.add_argument("--smooth", choices=SMOOTH_MODES, default=APP_SMOOTH,
                   help="average posteriors or logits over the window (apps/detect.py)")
    p.add_argument("--hold-ms", type=float_in(0, MAX_WINDOW_MS), default=0.0,
                   help="after a crossing, fire the best keyword of this span (peak picking)")
    p.add_argument("--refractory-ms", type=nonneg_float, default=800.0)
    p.add_argument("--chunk-ms", type=float_in(0.01, MAX_WINDOW_MS), default=100.0, help="audio per chunk")
    p.add_argument("--no-live", action="store_true", help="no live level line on a terminal")
    return p


def bundle_threshold(metrics: dict) -> float:
    """The detector threshold a bundle ships with (metrics.detector_threshold, set by `qs4d
    export --threshold`), else the apps' default."""
    t = metrics.get("detector_threshold")
    if isinstance(t, (int, float)) and not isinstance(t, bool) and 0.0 < t < 1.0:
        return float(t)
    return APP_THRESHOLD


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.list_devices:
        from .mic import list_devices

        print(list_devices())
        return 0
    if not args.bundle:
        from .zoo import default_bundle

        args.bundle = default_bundle("kws")
        if args.bundle is None:
            print("qs4d kws: a BUNDLE is required (the package's zoo has no sc12-qat4)",
                  file=sys.stderr)
            return 2
    if not (args.wav or args.mic or args.stdin):
        print("qs4d kws: choose a source: --wav FILE..., --mic or --stdin", file=sys.stderr)
        return 2
    if args.rate > MAX_SAMPLE_RATE or (args.device_rate or 0) > MAX_SAMPLE_RATE:
        raise UsageError(f"--rate/--device-rate: at most {MAX_SAMPLE_RATE} Hz")
    model = load(args.bundle, backend=args.backend)
    fe = model.spec.frontend
    if fe.kind != "logmel":
        print(f"qs4d kws: {args.bundle} has a {fe.kind!r} front end; keyword spotting needs "
              f"'logmel'", file=sys.stderr)
        return 2
    threshold = args.threshold
    if threshold is None:
        threshold = bundle_threshold(model.spec.metrics)
    try:
        cfg = DetectorConfig.from_ms(fe.hop_ms, threshold, args.smooth_ms,
                                     args.refractory_ms, smooth=args.smooth, hold_ms=args.hold_ms)
    except ValueError as e:
        raise UsageError(str(e)) from None
    detector = Detector(model.labels, cfg)
    rate = fe.sample_rate
    if args.wav:
        sources = [WavSource(f, rate, args.chunk_ms, realtime=not args.fast) for f in args.wav]
    elif args.mic:
        from .mic import MicSource, parse_device

        sources = [MicSource(rate, parse_device(args.device), args.chunk_ms, args.seconds,
                             args.device_rate)]
    else:
        sources = [RawSource(sys.stdin.buffer, args.rate, rate, args.chunk_ms)]
    live = sys.stdout.isatty() and not args.no_live
    print(f"{model!r}; threshold {cfg.threshold}, {cfg.smooth} smoothing {cfg.smooth_steps} steps, "
          f"refractory {cfg.refractory_steps} steps")
    for src in sources:
        prefix = f"{src.name}  " if len(sources) > 1 else ""
        st = run(model, src, detector, sys.stdout, live, prefix)
        print(summary(st, args.fast or args.stdin))
    return 0
