"""Time the 8-bit integer step graph of a bundle against its fallbacks, side by side:
int16 against int32 state accumulators (export/onnx_int8.py I16_BOUND) and the float32 C s
path against the int32 one (F32_EXACT), with the float graph beside them.

    python scripts/graph_variants.py [BUNDLE] [--steps 1000] [--repeats 7]

Every variant is first checked bit for bit against the numpy integer reference (200 steps,
2 streams). Times are raw `run` calls (batch 1, one thread, zero inputs), medians of
per-repeat medians, variants interleaved within each repeat.
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

VARIANTS = {"int16 acc, float32 C s (export)": {},
            "int32 acc": {"I16_BOUND": 0},
            "int32 C s": {"F32_EXACT": 0},
            "int32 acc, int32 C s": {"I16_BOUND": 0, "F32_EXACT": 0}}


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


def median_us(sess, steps: int) -> float:
    feeds = {}
    for i in sess.get_inputs():
        dt = {"tensor(int8)": np.int8, "tensor(float)": np.float32}[i.type]
        feeds[i.name] = np.zeros([1 if isinstance(d, str) else d for d in i.shape], dt)
    names = [o.name for o in sess.get_outputs()]
    ts = []
    for _ in range(steps):
        t0 = time.perf_counter_ns()
        sess.run(names, feeds)
        ts.append(time.perf_counter_ns() - t0)
    return float(np.median(ts)) / 1e3


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bundle", nargs="?", default="models/zoo/kws-qat4")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=7)
    a = p.parse_args(argv)
    b = load_bundle(a.bundle)
    if not onnx_int8.eligible(b.spec):
        print(f"{a.bundle}: not an 8-bit bundle; the int8 graph does not apply", file=sys.stderr)
        return 2
    new = lambda m: ort.InferenceSession(m, session_options(1),  # noqa: E731
                                         providers=["CPUExecutionProvider"])
    sess = {name: new(build(b, patch)) for name, patch in VARIANTS.items()}
    for name, s in sess.items():
        if not exact(s, b):
            print(f"{name}: differs from the numpy integer reference", file=sys.stderr)
            return 1
    sess["float graph"] = new(b.file(ONNX_FLOAT_FILE).read_bytes())
    med: dict = {k: [] for k in sess}
    for _ in range(a.repeats):
        for k, s in sess.items():
            med[k].append(median_us(s, a.steps))
    base = np.median(med[next(iter(VARIANTS))])
    for k, v in med.items():
        print(f"{k:34s} {np.median(v):7.1f} us  ({np.median(v) / base:.3f}x the export's)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
