"""What ONNX Runtime's Python `InferenceSession.run` adds to one streaming step, side by side
with the session's binding that the `onnx` backend calls (see `runtime/backends.py`).

    python scripts/run_overhead.py [BUNDLE] [--steps 1000] [--repeats 7]

Prints the median step time of each way (medians over repeats of per-step medians), both
graphs of an integer bundle, and their ratio. Batch 1, one thread, the bundle's own
session options.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from qs4d.runtime.stream import load


def step_us(run, names: list, ex, x: np.ndarray) -> float:
    """Median microseconds of `run(names, feeds, None)` over the steps of x (T, 1, F)."""
    st = ex.init_state(1)
    ts = []
    for xt in x:
        feeds = dict(zip(ex.in_names, st))
        feeds["x"] = xt
        t0 = time.perf_counter_ns()
        _, *st = run(names, feeds, None)
        ts.append(time.perf_counter_ns() - t0)
    return float(np.median(ts)) / 1e3


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bundle", nargs="?", default="models/zoo/kws-qat4")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=7)
    a = p.parse_args(argv)
    graphs = {"integer": False, "float": True}
    runs = {}
    for name, fl in graphs.items():
        ex = load(a.bundle, backend="onnx", threads=1, float_graph=fl).executor
        runs[f"{name} InferenceSession.run"] = (ex, lambda n, f, o, ex=ex: ex.sess.run(n, f, o))
        runs[f"{name} binding"] = (ex, ex._run)
    F = next(iter(runs.values()))[0].spec.model.d_input
    x = np.random.default_rng(0).standard_normal((a.steps, 1, F)).astype(np.float32)
    med: dict = {k: [] for k in runs}
    for _ in range(a.repeats):
        for k, (ex, run) in runs.items():
            med[k].append(step_us(run, ex.out_names, ex, x))
    for k, v in med.items():
        print(f"{k:32s} {np.median(v):7.1f} us")
    for name in graphs:
        a_, b_ = np.median(med[f"{name} InferenceSession.run"]), np.median(med[f"{name} binding"])
        print(f"{name}: InferenceSession.run adds {a_ - b_:.1f} us per step ({a_ / b_:.3f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
