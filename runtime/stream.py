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

from .backends import BACKENDS, make_executor
from .bundle import Bundle, load_bundle
from .chunked import chunk_executor
from .frontends import make_frontend
from .quant import qrange
from .spec import CrossbarConfig, Spec


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
    return Model(bundle, backend, make_executor(bundle, backend, crossbar, threads, float_graph),
                 chunked)


class Stream:
    def __init__(self, model: Model, batch: int | None):
        if batch is not None and batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        self.model, self.batch = model, batch
        self.B = batch or 1
        self.reset()

    def reset(self) -> None:
        self.frontends = [make_frontend(self.model.spec) for _ in range(self.B)]
        self.rec = self.model.executor.init_state(self.B)
        self.steps = 0

    def _check(self, chunk) -> np.ndarray:
        a = np.asarray(chunk)
        if a.dtype.kind not in "fiu":
            raise TypeError(f"chunk dtype {a.dtype}: expected float or integer samples")
        a = a.astype(np.float32) if a.dtype.kind == "f" else a
        if self.batch is None:
            a = a[None]
        if a.ndim < 2 or a.shape[0] != self.B:
            want = "(T[, C])" if self.batch is None else f"({self.B}, T[, C])"
            raise ValueError(f"chunk shape {np.shape(chunk)}: expected {want}")
        if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
            raise ValueError("chunk contains NaN or Inf")
        return a

    def features(self, chunk) -> np.ndarray:
        """Front end only: (B, T_out, F) features of the completed steps."""
        a = self._check(chunk)
        feats = [fe.process(a[b]) for b, fe in enumerate(self.frontends)]
        return np.stack(feats).astype(np.float32)  # (B, T_out, F)

    def accept(self, chunk) -> np.ndarray:
        """Logits (T_out, K), or (B, T_out, K) for a batch, of every completed step."""
        out = self._steps(self.features(chunk))  # (B, T_out, K)
        return out if self.batch is not None else out[0]

    def run_features(self, feats) -> np.ndarray:
        """The model alone on front-end features (T, F), or (B, T, F) for a batch: logits
        (T, K) or (B, T, K), one row per feature row; the stream's front end is bypassed."""
        f = np.asarray(feats, np.float32)
        f = f[None] if self.batch is None else f
        F = self.model.spec.model.d_input
        if f.ndim != 3 or f.shape[0] != self.B or f.shape[2] != F:
            want = f"(T, {F})" if self.batch is None else f"({self.B}, T, {F})"
            raise ValueError(f"features of shape {np.shape(feats)}: expected {want}")
        out = self._steps(f)
        return out if self.batch is not None else out[0]

    def _steps(self, feats: np.ndarray) -> np.ndarray:
        """Features (B, T, F) -> logits (B, T, K), advancing the recurrent state."""
        B, T, _ = feats.shape
        ex, rec = self.model.executor, self.rec
        if T > 1 and self.model.chunk is not None:
            out, rec = self.model.chunk(feats, rec)
        else:
            out = np.empty((B, T, self.model.spec.model.n_classes), np.float32)  # (B, T, K)
            for t in range(T):
                out[:, t], rec = ex(feats[:, t], rec)
        self.rec, self.steps = rec, self.steps + T
        return out

    def state(self) -> dict:
        """All mutable state as a flat dict of numpy arrays (savable with np.savez). Integer
        state codes are saved as int32 whatever the executor keeps (the 8-bit ONNX graph keeps
        int8), so a state restores into any backend of the same integer model."""
        d = {"steps": np.asarray(self.steps, np.int64), "batch": np.asarray(self.B, np.int64)}
        for i, s in enumerate(self.rec):
            d[f"rec.{i}"] = np.array(s, dtype=np.int32 if s.dtype.kind == "i" else s.dtype)
        for b, fe in enumerate(self.frontends):
            for k, v in fe.state().items():
                d[f"fe.{b}.{k}"] = np.array(v, copy=True)
        return d

    def restore(self, d: dict) -> None:
        """Continue from a `state()` (of this model and batch size)."""
        if int(d.get("batch", -1)) != self.B:
            raise ValueError(f"state is of batch {int(d.get('batch', -1))}, stream has {self.B}")
        fresh = self.model.executor.init_state(self.B)
        rec = []
        lo, hi = self._state_range()
        for i, s0 in enumerate(fresh):
            if f"rec.{i}" not in d:
                raise ValueError(f"state: missing rec.{i}")
            s = np.asarray(d[f"rec.{i}"])
            codes = s0.dtype.kind == "i"  # integer codes, of any integer width
            if s.shape != s0.shape or (s.dtype.kind != "i" if codes else s.dtype != s0.dtype):
                want = "int32" if codes else s0.dtype
                raise ValueError(f"state rec.{i}: {s.dtype}{s.shape}, expected {want}{s0.shape}")
            if s.dtype.kind == "f" and not np.all(np.isfinite(s)):
                raise ValueError(f"state rec.{i}: NaN or Inf")
            if codes and s.size and (s.min() < lo or s.max() > hi):
                raise ValueError(f"state rec.{i}: codes outside the state range [{lo}, {hi}]")
            rec.append(s.astype(s0.dtype))  # a copy
        for b, fe in enumerate(self.frontends):
            prefix = f"fe.{b}."
            fe.restore({k[len(prefix):]: v for k, v in d.items() if k.startswith(prefix)})
        self.rec, self.steps = rec, int(d["steps"])

    def _state_range(self) -> tuple[int, int]:
        q = self.model.spec.quant.state
        return qrange(q.bits, q.narrow) if q.enabled else (-(2**31), 2**31 - 1)

    def save(self, path: str | Path) -> None:
        np.savez(path, **self.state())

    def load(self, path: str | Path) -> None:
        with np.load(path, allow_pickle=False) as z:
            self.restore({k: z[k] for k in z.files})
