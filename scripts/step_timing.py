"""Where the integer ONNX step's time goes, side by side on one bundle (batch 1, one thread):

- graphs: the 8-bit integer step graph against its fallbacks, int16 against int32 state
  accumulators (export/onnx_int8.py I16_BOUND) and the float32 C s path against the int32 one
  (F32_EXACT), with the float graph beside them. Every variant is first checked bit for bit
  against the numpy integer reference (200 steps, 2 streams); times are raw `run` calls on
  zero inputs.
- run: what ONNX Runtime's Python `InferenceSession.run` adds to a streaming step, against the
  session's binding that the `onnx` backend calls (`runtime/backends.py: session_runner`),
  for both graphs of the bundle, states fed back step to step.

    python scripts/step_timing.py [BUNDLE] [--only graphs|run] [--steps 1000] [--repeats 7]

Medians of per-repeat medians; the runners interleaved within each repeat.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import onnxruntime as ort

from qs4d.export import onnx_int8
from qs4d.runtime.backends import make_executor, session_options
from qs4d.runtime.bundle import load_bundle
from qs4d.runtime.spec import ONNX_FLOAT_FILE
from qs4d.runtime.stream import load

VARIANTS = {"int16 acc, float32 C s (export)": {},
            "int32 acc": {"I16_BOUND": 0},
            "int32 C s": {"F32_EXACT": 0},
            "int32 acc, int32 C s": {"I16_BOUND": 0, "F32_EXACT": 0}}


def timed(call, steps: int) -> float:
    """Median microseconds of call(step) over `steps` steps (call returns nothing timed)."""
    ts = []
    for t in range(steps):
        t0 = time.perf_counter_ns()
        call(t)
        ts.append(time.perf_counter_ns() - t0)
    return float(np.median(ts)) / 1e3


def interleaved(runners: dict, repeats: int, steps: int) -> dict:
    """name -> median over repeats of timed(make(), steps); make() returns a fresh call."""
    med: dict = {k: [] for k in runners}
    for _ in range(repeats):
        for k, make in runners.items():
            med[k].append(timed(make(), steps))
    return {k: float(np.median(v)) for k, v in med.items()}


def build(bundle, patch: dict) -> bytes:
    saved = {k: getattr(onnx_int8, k) for k in patch}
    try:
        for k, v in patch.items():
            setattr(onnx_int8, k, v)
        return onnx_int8.Int8Builder(bundle.spec, bundle.weights).build().SerializeToString()
    finally:
        for k, v in saved.items():
            setattr(onnx_int8, k, v)


def exact(sess, bundle, steps: int = 200) -> bool:
    ref = make_executor(bundle, "numpy")
    rng = np.random.default_rng(0)
    s_ref = ref.init_state(2)
    s = [np.zeros(a.shape, np.int8) for a in s_ref]
    names = ["y"] + [f"new_state_{i}" for i in range(len(s))]
    for _ in range(steps):
        x = (2 * rng.standard_normal((2, bundle.spec.model.d_input))).astype(np.float32)
        y_ref, s_ref = ref(x, s_ref)
        y, *s = sess.run(names, {"x": x, **{f"state_{i}": a for i, a in enumerate(s)}})
        if not (np.array_equal(y, y_ref) and all(map(np.array_equal, s, s_ref))):
            return False
    return True


def graph_runner(sess):
    feeds = {}
    for i in sess.get_inputs():
        dt = {"tensor(int8)": np.int8, "tensor(float)": np.float32}[i.type]
        feeds[i.name] = np.zeros([1 if isinstance(d, str) else d for d in i.shape], dt)
    names = [o.name for o in sess.get_outputs()]
    return lambda: (lambda t: sess.run(names, feeds))


def graphs(path: str, steps: int, repeats: int) -> int:
    b = load_bundle(path)
    if not onnx_int8.eligible(b.spec):
        print(f"{path}: not an 8-bit bundle; the int8 graph does not apply", file=sys.stderr)
        return 2
    new = lambda m: ort.InferenceSession(m, session_options(1),  # noqa: E731
                                         providers=["CPUExecutionProvider"])
    sess = {name: new(build(b, patch)) for name, patch in VARIANTS.items()}
    for name, s in sess.items():
        if not exact(s, b):
            print(f"{name}: differs from the numpy integer reference", file=sys.stderr)
            return 1
    sess["float graph"] = new(b.file(ONNX_FLOAT_FILE).read_bytes())
    med = interleaved({k: graph_runner(s) for k, s in sess.items()}, repeats, steps)
    base = med[next(iter(VARIANTS))]
    for k, v in med.items():
        print(f"{k:34s} {v:7.1f} us  ({v / base:.3f}x the export's)")
    return 0


def stream_runner(ex, run, x: np.ndarray):
    """A fresh stream of x (T, 1, F) through run(names, feeds, options), states fed back."""
    def make():
        st = [ex.init_state(1)]

        def step(t):
            feeds = dict(zip(ex.in_names, st[0]))
            feeds["x"] = x[t]
            _, *st[0] = run(ex.out_names, feeds, None)
        return step
    return make


def run_call(path: str, steps: int, repeats: int) -> int:
    runners, F = {}, None
    for name, fl in {"integer": False, "float": True}.items():
        ex = load(path, backend="onnx", threads=1, float_graph=fl).executor
        F = ex.spec.model.d_input
        x = np.random.default_rng(0).standard_normal((steps, 1, F)).astype(np.float32)
        runners[f"{name} InferenceSession.run"] = stream_runner(
            ex, lambda n, f, o, ex=ex: ex.sess.run(n, f, o), x)
        runners[f"{name} binding"] = stream_runner(ex, ex._run, x)
    med = interleaved(runners, repeats, steps)
    for k, v in med.items():
        print(f"{k:34s} {v:7.1f} us")
    for name in ("integer", "float"):
        a_, b_ = med[f"{name} InferenceSession.run"], med[f"{name} binding"]
        print(f"{name}: InferenceSession.run adds {a_ - b_:.1f} us per step ({a_ / b_:.3f}x)")
    return 0


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bundle", nargs="?", default="models/zoo/kws-qat4")
    p.add_argument("--only", choices=("graphs", "run"))
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=7)
    a = p.parse_args(argv)
    rc = 0
    if a.only in (None, "graphs"):
        rc = graphs(a.bundle, a.steps, a.repeats)
    if rc == 0 and a.only in (None, "run"):
        if a.only is None:
            print()
        rc = run_call(a.bundle, a.steps, a.repeats)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
