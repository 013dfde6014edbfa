"""Long-run soak benchmark (issue 20; not a test): extreme input for many steps, and the ECG
app fed in real time for a long while, watching exactness, state and memory.

    python scripts/soak.py steps  [--bundle models/zoo/ecg-qat4] [--steps 10000000]
    python scripts/soak.py stdin  [--bundle models/zoo/ecg-qat4] [--seconds 3600]

`steps`: the model alone (`Stream.run_features`) on numpy (layer-major chunks) and onnx (one
graph call per step) side by side, in blocks of --block steps of extreme features: Gaussian at
scales from 1e-3 to 1e6, runs of zeros, +-3.4e38 (the float32 extremes) and alternating
saturation. Every block's logits must be equal bit for bit; the state codes must stay within
the state quantizer's range; the process's resident memory is sampled per block.

`stdin`: `qs4d ecg BUNDLE --stdin --quiet` in a child process, fed one text line per sample at
the model's rate in 100-ms chunks (real-time pace) from record 208 looped; the child's resident
memory (VmRSS) is sampled every --every seconds. Growth is the last sample minus the first
one taken after the warm-up minute (or after a tenth of the run when shorter).

Both print a summary line per block or sample and a final JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def rss_mb(pid: int | None = None) -> float:
    """Resident set size in MB of a process (this one by default), from /proc."""
    with open(f"/proc/{pid or 'self'}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def extreme_features(rng: np.random.Generator, T: int, F: int) -> np.ndarray:
    """(T, F) float32: Gaussian at a random scale per run of 64 steps, zeros, float32
    extremes, alternating saturation."""
    scales = 10.0 ** rng.uniform(-3, 6, size=(T + 63) // 64)  # per run of 64 steps
    x = rng.standard_normal((T, F)) * np.repeat(scales, 64)[:T, None]
    kind = rng.integers(0, 8, size=T)
    x[kind == 0] = 0.0
    x[kind == 1] = 3.4e38 * rng.choice([-1.0, 1.0], size=(int((kind == 1).sum()), F))
    x[kind == 2] = np.where(np.arange(int((kind == 2).sum()))[:, None] % 2, 1e6, -1e6)
    return x.astype(np.float32)


def soak_steps(args) -> dict:
    import qs4d
    from qs4d.runtime.quant import qrange

    np_model = qs4d.load(args.bundle, backend="numpy")
    onnx_model = qs4d.load(args.bundle, backend="onnx")
    spec = np_model.spec
    a, b = np_model.stream(), onnx_model.stream()
    q = spec.quant.state
    lo, hi = qrange(q.bits, q.narrow)
    rng = np.random.default_rng(args.seed)
    F = spec.model.d_input
    t0, rss0 = time.perf_counter(), rss_mb()
    out = {"bundle": str(args.bundle), "steps": 0, "mismatched_steps": 0, "state_min": 0,
           "state_max": 0, "state_range": [lo, hi], "rss_mb_start": round(rss0, 1)}
    rss = []
    while out["steps"] < args.steps:
        T = min(args.block, args.steps - out["steps"])
        x = extreme_features(rng, T, F)
        with np.errstate(all="ignore"):
            ya, yb = a.run_features(x), b.run_features(x)
        out["mismatched_steps"] += int((ya != yb).any(axis=1).sum())
        codes = [np.asarray(s, np.int64) for s in a.rec + b.rec]
        out["state_min"] = min(out["state_min"], min(int(c.min()) for c in codes))
        out["state_max"] = max(out["state_max"], max(int(c.max()) for c in codes))
        out["same_state"] = all(np.array_equal(u, v) for u, v in zip(a.rec, b.rec))
        out["steps"] += T
        rss.append(rss_mb())
        if out["steps"] % (args.block * args.report) == 0 or out["steps"] == args.steps:
            print(f"{out['steps']:>10} steps  mismatched {out['mismatched_steps']}  "
                  f"state codes {out['state_min']}..{out['state_max']} (range {lo}..{hi})  "
                  f"same state {out['same_state']}  RSS {rss[-1]:.1f} MB  "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)
    warm = rss[min(len(rss) - 1, max(1, len(rss) // 10))]
    out.update(rss_mb_after_warmup=round(warm, 1), rss_mb_end=round(rss[-1], 1),
               rss_mb_max=round(max(rss), 1), growth_mb=round(rss[-1] - warm, 2),
               wall_s=round(time.perf_counter() - t0, 1))
    return out


def soak_stdin(args) -> dict:
    from qs4d.runtime.records import load_record208
    from qs4d.runtime.stream import load

    fs = load(args.bundle, backend="numpy").spec.frontend.sample_rate
    x, rec_fs = load_record208()
    assert rec_fs == fs, (rec_fs, fs)
    lines = [f"{v:.3f}\n" for v in x]
    cmd = [sys.executable, "-m", "qs4d", "ecg", str(args.bundle), "--stdin", "--quiet",
           "--fs", str(fs)]
    child = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             cwd=ROOT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    n = fs // 10  # 100 ms per write
    t0, i, samples, nxt = time.perf_counter(), 0, [], 0.0
    warm_s = min(60.0, args.seconds / 10)
    while True:
        el = time.perf_counter() - t0
        if el >= args.seconds:
            break
        child.stdin.write("".join(lines[j % len(lines)] for j in range(i, i + n)))
        child.stdin.flush()
        i += n
        if el >= nxt:
            samples.append((round(el, 1), round(rss_mb(child.pid), 1)))
            print(f"{el:7.0f} s  child RSS {samples[-1][1]:.1f} MB", flush=True)
            nxt += args.every
        delay = t0 + i / fs - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    samples.append((round(time.perf_counter() - t0, 1), round(rss_mb(child.pid), 1)))
    child.stdin.close()
    report = child.stdout.read()
    child.wait()
    after = [r for t, r in samples if t >= warm_s] or [samples[-1][1]]
    beats = [ln for ln in report.splitlines() if "beats" in ln.lower()][:1]
    return {"bundle": str(args.bundle), "seconds": args.seconds, "samples_fed": i,
            "exit_code": child.returncode, "rss_mb_first": samples[0][1],
            "rss_mb_after_warmup": after[0], "rss_mb_end": samples[-1][1],
            "rss_mb_max": max(r for _, r in samples), "growth_mb": round(after[-1] - after[0], 2),
            "report": beats}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["steps", "stdin"])
    p.add_argument("--bundle", type=Path, default=ROOT / "models" / "zoo" / "ecg-qat4")
    p.add_argument("--steps", type=int, default=10_000_000)
    p.add_argument("--block", type=int, default=10_000, help="steps per block (steps mode)")
    p.add_argument("--report", type=int, default=10, help="blocks per progress line")
    p.add_argument("--seconds", type=float, default=3600.0, help="real-time run (stdin mode)")
    p.add_argument("--every", type=float, default=10.0, help="RSS sample period, seconds")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    res = soak_steps(args) if args.mode == "steps" else soak_stdin(args)
    print(json.dumps(res))
    ok = res.get("mismatched_steps", 0) == 0 and res.get("exit_code", 0) == 0 and \
        res.get("same_state", True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
