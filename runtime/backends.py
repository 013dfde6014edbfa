"""Executors of one streaming step: `numpy` (reference), `onnx` (ONNX Runtime), `imssa`
(simulated crossbar). Each has `init_state(batch) -> list` and
`__call__(x (B, F) float32, state) -> (logits (B, K) float32, new_state)`.

Glossary: B batch/streams, F features, K classes.
"""

from __future__ import annotations

import numpy as np

from .bundle import Bundle, BundleError
from .chunked import chunk_executor
from .reference import FloatStep, IntegerStep, dequantize_weights
from .spec import (
    CROSSBAR_DIR,
    ONNX_FILE,
    ONNX_FLOAT_FILE,
    ONNX_SPEC_KEY,
    CrossbarConfig,
    Spec,
    SpecError,
)

BACKENDS = ("onnx", "imssa", "numpy")
# The onnx backend's load-time check against the numpy reference (OnnxStep._check_against):
# streams x steps; docs/errors.md gives what it catches and costs.
CHECK_LANES, CHECK_STEPS = 8, 128
# state input type of a step graph -> state arrays: int8 codes (the 8-bit integer graph),
# int32 codes (other integer graphs), float32 (float graphs)
STATE_DTYPES = {"tensor(int8)": np.int8, "tensor(int32)": np.int32, "tensor(float)": np.float32}


def session_options(threads: int = 1):
    """ONNX Runtime options that make one small step fast: one thread, no spinning,
    sequential execution, all graph optimizations but the rewriting of quantize/dequantize
    patterns into ONNX Runtime's own quantized kernels (they round differently; the integer
    graph avoids those patterns, this keeps it so)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.disable_quant_qdq", "1")
    so.log_severity_level = 4  # errors reach the caller as exceptions
    return so


def session_runner(sess):
    """`run(output_names, feeds, run_options)` of an InferenceSession without the checks that
    `InferenceSession.run` makes on every call (that the feed names every input, graph capture,
    OrtValue ownership: 3-4 us of a 75 us step, `python scripts/step_timing.py`): the
    session's binding where it has one, else the public `run`. For callers that feed every
    input of the graph, as OnnxStep does (its inputs are checked once, at load)."""
    core = getattr(sess, "_sess", None)
    if core is not None and hasattr(core, "run"):
        return core.run
    return lambda names, feeds, options: sess.run(names, feeds, options)


class OnnxStep:
    """ONNX Runtime on CPU over `step.onnx` (integer) or `step_float.onnx`."""

    def __init__(self, bundle: Bundle, float_graph: bool = False, threads: int = 1):
        import onnxruntime as ort

        name = ONNX_FLOAT_FILE if float_graph or not bundle.spec.quant.integer else ONNX_FILE
        path = bundle.file(name)
        try:
            self.sess = ort.InferenceSession(path.read_bytes(), session_options(threads),
                                             providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise BundleError(f"{path}: ONNX Runtime refused the graph ({e})") from e
        self.spec = bundle.spec
        self.n_layers = bundle.spec.model.n_layers
        ins = {i.name: i for i in self.sess.get_inputs()}
        want = {"x"} | {f"state_{i}" for i in range(self.n_layers)}
        if set(ins) != want:
            raise BundleError(f"{path}: graph inputs {sorted(ins)}, expected {sorted(want)}")
        self.state_dtype = STATE_DTYPES.get(ins["state_0"].type, np.float32)
        self.out_names = ["y"] + [f"new_state_{i}" for i in range(self.n_layers)]
        self.in_names = [f"state_{i}" for i in range(self.n_layers)]
        self._run = session_runner(self.sess)
        self._check_against(bundle, path, float_graph)

    def _check_against(self, bundle: Bundle, path, float_graph: bool,
                       steps: int = CHECK_STEPS) -> None:
        """Refuse a graph whose spec or arithmetic disagrees with spec.json and weights.npz:
        `check_inputs` (seeded, CHECK_LANES streams from silence to saturation) must give the
        numpy reference's logits at every step and its final state (bit for bit when
        integer). An altered constant of the graph (manifest re-hashed) changes them."""
        meta = self.sess.get_modelmeta().custom_metadata_map.get(ONNX_SPEC_KEY)
        try:
            same = meta is not None and Spec.from_json(meta).to_dict() == bundle.spec.to_dict()
        except SpecError:
            same = False
        if not same:
            raise BundleError(f"{path}: metadata {ONNX_SPEC_KEY!r} differs from spec.json")
        ref = make_executor(bundle, "numpy", float_graph=float_graph)
        exact = self.state_dtype != np.float32
        xs = check_inputs(bundle.spec.model.d_input, steps, extreme=exact)  # (B, T, F)
        # integer: bit-exact either way; the chunk runner is the faster reference for narrow
        # models (ecg-qat4, H = 32: 0.03 s against 0.11 s), the step loop for wide ones
        # (kws-qat4, kws-pruned, H = 64: 0.5-0.7 s against 1.2-1.5 s, 8 x 128 steps). float:
        # the step loop (the chunk runner rounds differently)
        run = chunk_executor(ref) if exact and bundle.spec.model.d_model <= 32 else None
        if run is None:
            run = lambda x, s: _step_all(ref, x, s)  # noqa: E731
        y_ref, s_ref = run(xs, ref.init_state(len(xs)))
        try:
            y, s_onnx = _step_all(self, xs, self.init_state(len(xs)))
        except Exception as e:  # onnxruntime raises its own exception types
            raise BundleError(f"{path}: ONNX Runtime failed to run the graph ({e})") from e
        for what, a, b in [("logits", y, y_ref)] + [
                (f"state {i}", s1, s2) for i, (s1, s2) in enumerate(zip(s_onnx, s_ref))]:
            a, b = np.asarray(a), np.asarray(b)
            if exact:
                bad = a.shape != b.shape or not np.array_equal(a.astype(np.int64),
                                                               b.astype(np.int64))
            else:
                tol = 1e-5 * (1 + float(np.abs(b).max()))
                bad = a.shape != b.shape or not np.allclose(a, b, rtol=1e-4, atol=tol)
            if bad:
                diff = np.abs(a.astype(np.float64) - b).max() if a.shape == b.shape else "shape"
                raise BundleError(f"{path}: the graph disagrees with weights.npz ({what}, "
                                  f"max |diff| {diff})")

    def init_state(self, batch: int) -> list:
        H = self.spec.model.d_model
        return [np.zeros((batch, H, 2 * P), self.state_dtype) for P in self.spec.model.layer_modes]

    def __call__(self, x: np.ndarray, state: list):
        feeds = dict(zip(self.in_names, state))
        feeds["x"] = np.ascontiguousarray(x, dtype=np.float32)
        y, *new_state = self._run(self.out_names, feeds, None)
        return y, new_state


def check_inputs(F: int, steps: int, extreme: bool = True) -> np.ndarray:
    """(CHECK_LANES, steps, F) seeded load-check inputs: Gaussian features at scales from
    near-silence to far beyond any quantizer's range (extreme; else up to 4), with runs of
    zeros and (extreme) steps of +-saturation, so that an integer graph's check visits the
    codes' extremes as well as the middle. Float graphs agree with the reference only to
    rounding, which inputs far out of range amplify: they get the moderate lanes."""
    rng = np.random.default_rng(0)
    scales = np.geomspace(0.3, 30.0 if extreme else 3.0, CHECK_LANES)[:, None, None]  # (B,1,1)
    x = rng.standard_normal((CHECK_LANES, steps, F)) * scales  # (B, T, F)
    x[:, steps // 4: steps // 4 + 8] = 0.0
    if extreme:
        x[-1, steps // 2: steps // 2 + 4] = 1e4
        x[-2, steps // 2: steps // 2 + 4] = -1e4
    return x.astype(np.float32)


def _step_all(ex, xs: np.ndarray, state: list):
    """Step an executor over (B, T, F): logits (B, T, K) and the final state."""
    out = []
    for t in range(xs.shape[1]):
        y, state = ex(xs[:, t], state)
        out.append(y)
    return np.stack(out, axis=1), state


def make_executor(bundle: Bundle, backend: str, crossbar: CrossbarConfig | None = None,
                  threads: int = 1, float_graph: bool = False):
    spec, w = bundle.spec, bundle.weights
    if backend == "numpy":
        if spec.quant.integer and not float_graph:
            return IntegerStep(spec, w)
        return FloatStep(spec, dequantize_weights(spec, w) if spec.quant.integer else w)
    if backend == "onnx":
        return OnnxStep(bundle, float_graph=float_graph, threads=threads)
    if backend == "imssa":
        from .crossbar_io import CrossbarError, load_crossbar
        from .errors import Qs4dError
        from .imssa import ImssaStep

        tables = load_crossbar(bundle.path, spec)
        cfg = crossbar if crossbar is not None else tables.config
        try:
            return ImssaStep(spec, w, tables, cfg)
        except (TypeError, KeyError, IndexError, AttributeError, ZeroDivisionError,
                OverflowError, ValueError) as e:
            if isinstance(e, Qs4dError):
                raise
            # the tables passed their checks, but a field the simulator reads is malformed
            raise CrossbarError(f"{bundle.path / CROSSBAR_DIR}: cannot be simulated "
                                f"({type(e).__name__}: {e})") from None
    raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
