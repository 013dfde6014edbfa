"""`qs4d.load(...) -> Model`, `Model.stream() -> Stream` (DESIGN section 5).

A Model is immutable and shareable; a Stream holds all mutable state of one source (or of a
batch of B sources advancing together): the front end's buffers and the recurrent state.
`accept(chunk)` takes any chunk length, buffers the remainder and returns the logits of every
completed step; the result never depends on how the input was cut into chunks.

A chunk of T > 1 steps runs through the executor's chunk runner when it has one
(`runtime/chunked.py`: the numpy backend, layer-major over the chunk; bit-exact for integer
bundles, equal to float rounding for float bundles), else step by step.

Glossary: B batch/streams, T samples or steps in a chunk, F features, K classes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import safe_io
from .backends import BACKENDS, make_executor
from .bundle import Bundle, BundleError, load_bundle
from .chunked import chunk_executor
from .errors import InputError
from .frontends import make_frontend
from .quant import qrange
from .spec import SPEC_FILE, CrossbarConfig, Spec, SpecError

MAX_STATE_BYTES = 1 << 30  # a saved state file, as its arrays declare it
# Backends whose states are interchangeable: an integer bundle's numpy and onnx executors
# keep the same integer codes (bit-exact); any other pair computes other numbers.
SHARED_STATES = {"numpy", "onnx"}


class Model:
    def __init__(self, bundle: Bundle, backend: str, executor, chunked: bool = True):
        self.bundle, self.backend, self.executor = bundle, backend, executor
        self.chunk = chunk_executor(executor) if chunked else None  # (B,T,F), state -> ...

    @property
    def spec(self) -> Spec:
        return self.bundle.spec

    @property
    def labels(self) -> tuple:
        return self.spec.labels or tuple(str(k) for k in range(self.spec.model.n_classes))

    def stream(self, batch: int | None = None) -> Stream:
        """A new stream; batch=None takes (T[, C]) chunks, batch=B takes (B, T[, C])."""
        return Stream(self, batch)

    def __repr__(self) -> str:
        m = self.spec.model
        return (f"Model({self.spec.name or self.bundle.path.name!r}, backend={self.backend!r}, "
                f"H={m.d_model}, layers={m.n_layers}, modes={m.layer_modes}, K={m.n_classes})")


def load(path: str | Path, backend: str = "onnx", crossbar: CrossbarConfig | None = None,
         threads: int = 1, float_graph: bool = False, chunked: bool = True) -> Model:
    """Load a bundle for one backend: "onnx" | "imssa" | "numpy". chunked=False makes
    `Stream.accept` step the executor once per step even where a chunk runner exists."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    bundle = load_bundle(path)
    try:  # the front end's own checks (filterbank, filters), at load rather than at stream()
        make_frontend(bundle.spec)
    except SpecError as e:
        raise BundleError(f"{bundle.path / SPEC_FILE}: {e}") from None
    return Model(bundle, backend, make_executor(bundle, backend, crossbar, threads, float_graph),
                 chunked)


class Stream:
    def __init__(self, model: Model, batch: int | None):
        if batch is not None and (not isinstance(batch, (int, np.integer))
                                  or isinstance(batch, bool) or batch < 1):
            raise InputError(f"batch must be an integer >= 1 (or None), got {batch!r}")
        self.model, self.batch = model, None if batch is None else int(batch)
        self.B = self.batch or 1
        self.reset()

    def reset(self) -> None:
        self.frontends = [make_frontend(self.model.spec) for _ in range(self.B)]
        self.rec = self.model.executor.init_state(self.B)
        self.steps = 0

    def _check(self, chunk) -> np.ndarray:
        a = np.asarray(chunk)
        if a.dtype.kind not in "fiu":
            raise TypeError(f"chunk dtype {a.dtype}: expected float or integer samples")
        a = _finite32(a, "chunk") if a.dtype.kind == "f" else a
        if self.batch is None:
            a = a[None]
        if a.ndim < 2 or a.shape[0] != self.B:
            want = "(T[, C])" if self.batch is None else f"({self.B}, T[, C])"
            raise InputError(f"chunk shape {np.shape(chunk)}: expected {want}")
        return a

    def features(self, chunk) -> np.ndarray:
        """Front end only: (B, T_out, F) features of the completed steps."""
        a = self._check(chunk)
        feats = [fe.process(a[b]) for b, fe in enumerate(self.frontends)]
        return np.stack(feats).astype(np.float32)  # (B, T_out, F)

    def accept(self, chunk) -> np.ndarray:
        """Logits (T_out, K), or (B, T_out, K) for a batch, of every completed step. A chunk
        that is refused (InputError) leaves the whole stream, front ends included, as it was."""
        saved = [fe.state() for fe in self.frontends]
        try:
            out = self._steps(self.features(chunk))  # (B, T_out, K)
        except InputError:
            for fe, st in zip(self.frontends, saved):
                fe.restore(st)
            raise
        return out if self.batch is not None else out[0]

    def run_features(self, feats) -> np.ndarray:
        """The model alone on front-end features (T, F), or (B, T, F) for a batch: logits
        (T, K) or (B, T, K), one row per feature row; the stream's front end is bypassed."""
        f = np.asarray(feats)
        if f.dtype.kind not in "fiu":
            raise TypeError(f"features dtype {f.dtype}: expected float or integer values")
        f = _finite32(f, "features")
        f = f[None] if self.batch is None else f
        F = self.model.spec.model.d_input
        if f.ndim != 3 or f.shape[0] != self.B or f.shape[2] != F:
            want = f"(T, {F})" if self.batch is None else f"({self.B}, T, {F})"
            raise InputError(f"features of shape {np.shape(feats)}: expected {want}")
        out = self._steps(f)
        return out if self.batch is not None else out[0]

    def _steps(self, feats: np.ndarray) -> np.ndarray:
        """Features (B, T, F) -> logits (B, T, K), advancing the recurrent state. Logits that
        are not finite (a float model overflowing on input far out of its range) are refused
        and the stream keeps its state."""
        B, T, _ = feats.shape
        ex, rec = self.model.executor, self.rec
        if T > 1 and self.model.chunk is not None:
            out, rec = self.model.chunk(feats, rec)
        else:
            out = np.empty((B, T, self.model.spec.model.n_classes), np.float32)  # (B, T, K)
            for t in range(T):
                out[:, t], rec = ex(feats[:, t], rec)
        if not np.isfinite(out).all():
            raise InputError(f"the model's outputs overflowed (input of magnitude up to "
                             f"{float(np.abs(feats).max()):.3g}, far outside its range); the "
                             f"stream keeps its state from before this chunk")
        self.rec, self.steps = rec, self.steps + T
        return out

    def state(self) -> dict:
        """All mutable state as a flat dict of numpy arrays (savable with np.savez), with the
        model's digest and the backend that made it. Integer state codes are saved as int32
        whatever the executor keeps (the 8-bit ONNX graph keeps int8), so a state restores
        into the numpy and onnx backends of the same integer model alike."""
        d = {"steps": np.asarray(self.steps, np.int64), "batch": np.asarray(self.B, np.int64),
             "model": np.asarray(self.model.bundle.digest),
             "backend": np.asarray(self.model.backend)}
        for i, s in enumerate(self.rec):
            d[f"rec.{i}"] = np.array(s, dtype=np.int32 if s.dtype.kind == "i" else s.dtype)
        for b, fe in enumerate(self.frontends):
            for k, v in fe.state().items():
                d[f"fe.{b}.{k}"] = np.array(v, copy=True)
        return d

    def restore(self, d: dict) -> None:
        """Continue from a `state()` of this model (its digest) and batch size, made by this
        backend (or, for an integer model, by its numpy or onnx backend). Everything is
        checked before anything changes: a refused state leaves the stream as it was."""
        if not isinstance(d, dict):
            raise InputError(f"state: expected a dict of arrays, got {type(d).__name__}")
        batch = _scalar_int(d, "batch")
        if batch != self.B:
            raise InputError(f"state is of batch {batch}, stream has {self.B}")
        steps = _scalar_int(d, "steps")
        if steps < 0:
            raise InputError(f"state: steps must be >= 0, got {steps}")
        fresh = self.model.executor.init_state(self.B)
        rec = []
        lo, hi = self._state_range()
        for i, s0 in enumerate(fresh):
            if f"rec.{i}" not in d:
                raise InputError(f"state: missing rec.{i}")
            s = np.asarray(d[f"rec.{i}"])
            codes = s0.dtype.kind == "i"  # integer codes, of any integer width
            if s.shape != s0.shape or (s.dtype.kind != "i" if codes else s.dtype != s0.dtype):
                want = "int32" if codes else s0.dtype
                raise InputError(f"state rec.{i}: {s.dtype}{s.shape}, expected {want}{s0.shape}")
            if s.dtype.kind == "f" and not np.all(np.isfinite(s)):
                raise InputError(f"state rec.{i}: NaN or Inf")
            if codes and s.size and (s.min() < lo or s.max() > hi):
                raise InputError(f"state rec.{i}: codes outside the state range [{lo}, {hi}]")
            rec.append(s.astype(s0.dtype))  # a copy
        self._check_origin(d)
        known = {"steps", "batch", "model", "backend"} | {f"rec.{i}" for i in range(len(fresh))}
        fe_keys = {k for k in d if k.startswith("fe.")}
        extra = sorted(set(d) - known - fe_keys)
        if extra:
            raise InputError(f"state: unexpected key(s) {extra[:8]}")
        frontends = [make_frontend(self.model.spec) for _ in range(self.B)]
        for b, fe in enumerate(frontends):
            prefix = f"fe.{b}."
            own = {k for k in fe_keys if k.startswith(prefix)}
            try:
                fe.restore({k[len(prefix):]: d[k] for k in own})
            except (ValueError, TypeError, KeyError) as e:
                raise InputError(f"state fe.{b}: {e}") from None
            fe_keys -= own
        if fe_keys:
            raise InputError(f"state: front-end keys of no stream of this batch "
                             f"{sorted(fe_keys)[:8]}")
        self.frontends, self.rec, self.steps = frontends, rec, steps

    def _check_origin(self, d: dict) -> None:
        """The state's model digest and backend against this stream's."""
        got = {k: str(np.asarray(d[k])) if k in d and np.asarray(d[k]).dtype.kind == "U"
               else None for k in ("model", "backend")}
        if got["model"] is None or got["backend"] is None:
            raise InputError("state: no model digest or backend recorded (saved by an older "
                             "qs4d, or not a qs4d state)")
        if got["model"] != self.model.bundle.digest:
            raise InputError(f"state: made by another model (digest {got['model'][:12]}, this "
                             f"bundle's is {self.model.bundle.digest[:12]})")
        mine, theirs = self.model.backend, got["backend"]
        shared = self.model.spec.quant.integer and {mine, theirs} <= SHARED_STATES
        if theirs != mine and not shared:
            raise InputError(f"state: made by the {theirs!r} backend; this stream runs "
                             f"{mine!r}, which computes other numbers")

    def _state_range(self) -> tuple[int, int]:
        q = self.model.spec.quant.state
        return qrange(q.bits, q.narrow) if q.enabled else (-(2**31), 2**31 - 1)

    def save(self, path: str | Path) -> None:
        np.savez(path, **self.state())

    def load(self, path: str | Path) -> None:
        """Restore a state saved with `save` (read without unpickling, sizes capped)."""
        self.restore(safe_io.read_npz(Path(path), InputError, max_bytes=MAX_STATE_BYTES,
                                      kinds="biufU"))


def _finite32(a: np.ndarray, what: str) -> np.ndarray:
    """float32 of float values, refusing NaN, Inf and magnitudes beyond float32."""
    if not np.all(np.isfinite(a)):
        raise InputError(f"{what} contains NaN or Inf")
    with np.errstate(over="ignore"):
        f = a.astype(np.float32)
    if not np.all(np.isfinite(f)):
        raise InputError(f"{what}: values beyond the float32 range (NaN or Inf as float32)")
    return f


def _scalar_int(d: dict, key: str) -> int:
    if key not in d:
        raise InputError(f"state: missing {key!r}")
    v = np.asarray(d[key])
    if v.shape != () or v.dtype.kind not in "iu":
        raise InputError(f"state: {key} must be an integer scalar, got {v.dtype}{v.shape}")
    return int(v)
