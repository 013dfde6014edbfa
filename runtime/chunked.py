"""Whole-chunk execution for the numpy backend: the model run layer-major over T steps.

`Stream.accept` steps the model once per feature row by default; for a chunk of T > 1 rows
the numpy executors have a faster equivalent here, chosen by `chunk_executor(executor)`:

- `FloatChunk` (float bundles, `FloatStep`): every pointwise and matrix part (encoder, GELU,
  mixing Linear, GLU, residual, decoder) is one vectorized op over the chunk, and each S4D
  layer's diagonal linear recurrence is solved exactly for the chunk by a blocked scan
  (below). Same model, different float rounding: it agrees with the step loop to ~1e-6
  relative (float32), not bit for bit, so a float stream's outputs depend on how the input
  was cut into chunks at the rounding level only.
- `IntegerChunk` (integer bundles, `IntegerStep`): the state is requantized every step, a
  nonlinear recurrence, so only the state update loops over time: six float32 ufuncs per step
  on exact integer codes, all layers at once (the layers are pipelined by blocks of steps);
  everything else, the S4D output row included, runs vectorized over a block. Bit for bit
  equal to `IntegerStep`, so chunking never changes a bit.

Blocked scan of one S4D layer (complex form, per channel h and mode p; s = [Re x; Im x]):
    x[t+1] = A x[t] + B u[t]            y[t] = Re(c x[t]) + D u[t]     c = C_re - i C_im
Cut the chunk into blocks of L steps, X_j the state at the start of block j. Inside a block
    y[jL+t] = Re(c A^t X_j) + sum_{i<=t} K[t-i] u[jL+i],  K[0] = D, K[m] = Re(sum_p c A^(m-1) B)
    X_{j+1} = A^L X_j + sum_{i<L} A^(L-1-i) B u[jL+i]
so one matrix product per layer gives every block's convolution (Toeplitz K) and its input
contribution to the next block state (Vandermonde A^(L-1-i) B), a loop over the T/L blocks
carries X_j, and a second product adds the initial-state terms Re(c A^t X_j). The final state
x[T] closes the chunk, so state carries across chunks and `Stream.state()` / `restore()`
work unchanged. Matrices are built once per model in float64 and applied in float32; the
block-to-block carry runs in complex128.

Glossary: B batch/streams, T steps in the chunk, F features, H width, P modes, K classes,
L block length, nb blocks.
"""

from __future__ import annotations

import numpy as np
from scipy.special import erf, expit

from .quant import F32, lookup, multiplier, quantize, requantize
from .reference import FloatStep, IntegerStep, _per_channel, sig_scale
from .spec import layer_key

F64, C128 = np.float64, np.complex128


def gelu32(x: np.ndarray) -> np.ndarray:
    """GELU in float32 (the step's float64 `gelu` to within float32 rounding)."""
    return x * (F32(0.5) + F32(0.5) * erf(x * F32(1 / np.sqrt(2))))


def chunk_executor(executor):
    """The chunk runner of a step executor, or None where there is none (onnx, imssa, or
    integer codes too wide for exact float32 arithmetic)."""
    if type(executor) is FloatStep:
        return FloatChunk(executor)
    if type(executor) is IntegerStep:
        try:
            return IntegerChunk(executor)
        except ValueError:
            return None
    return None


class _S4DBlocks:
    """The block matrices of one float S4D layer (see the module docstring)."""

    def __init__(self, A: np.ndarray, Bm: np.ndarray, C: np.ndarray, D: np.ndarray, L: int):
        P = A.shape[-1]
        a = A[:, 0].astype(F64) + 1j * A[:, 1].astype(F64)  # (H, P)
        b = Bm[:, 0].astype(F64) + 1j * Bm[:, 1].astype(F64)  # (H, P)
        c = C[:, :P].astype(F64) - 1j * C[:, P:].astype(F64)  # (H, P)
        H = a.shape[0]
        self.L, self.P = L, P
        self.pw = a[..., None] ** np.arange(L + 1)  # (H, P, L+1): A^t
        self.aL = self.pw[..., L].copy()  # (H, P)
        k = np.empty((H, L), F64)  # K[m]
        k[:, 0] = D
        k[:, 1:] = np.einsum("hp,hpm->hm", c * b, self.pw[..., : L - 1]).real
        i, t = np.meshgrid(np.arange(L), np.arange(L), indexing="ij")
        toe = np.where(t >= i, k[:, np.clip(t - i, 0, L - 1)], 0.0)  # (H, L, L) [i, t]
        w = self.pw[..., L - 1:: -1][..., :L] * b[..., None]  # (H, P, L): A^(L-1-i) B at i
        self.w = _interleave(w.transpose(0, 2, 1))  # (H, L, 2P) [Re, Im] pairs
        # one product per block: [convolution outputs (L) | input part of the next state]
        self.m_in = np.concatenate([toe, self.w], axis=2).astype(F32)  # (H, L, L + 2P)
        v = (c[..., None] * self.pw[..., :L]).transpose(0, 2, 1)  # (H, L, P): c A^t
        cv = np.stack([v.real, -v.imag], axis=-1).reshape(H, L, 2 * P)  # Re(c A^t x) rows
        self.m_x = cv.transpose(0, 2, 1).astype(F32)  # (H, 2P, L), rows interleaved

    def run(self, u: np.ndarray, T: int, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """u (B, H, Tp) float32 inputs, of which the first T count (Tp = T <= L or a multiple
        of L; the rest are causal padding), s (B, H, 2P) state -> y (B, H, Tp), new state."""
        Bn, H, Tp = u.shape
        L, P = self.L, self.P
        nb, Lb = (1, Tp) if Tp <= L else (Tp // L, L)
        ub = u.reshape(Bn, H, nb, Lb)  # (B, H, nb, Lb)
        x0 = s[..., :P].astype(F64) + 1j * s[..., P:].astype(F64)  # (B, H, P)
        if nb == 1:
            y = np.matmul(ub, self.m_in[:, :Lb, :Lb])  # (B, H, 1, Lb)
            xs = x0[:, :, None]  # (B, H, 1, P)
        else:
            r = np.matmul(ub, self.m_in)  # (B, H, nb, L + 2P)
            y = r[..., :L]  # (B, H, nb, L)
            z = r[..., L:].astype(F64).view(C128)  # (B, H, nb, P): input part of X_{j+1}
            xs = np.empty((Bn, H, nb, P), C128)  # X_j: the state at the start of block j
            xs[:, :, 0] = x0
            aL = self.aL
            for j in range(nb - 1):
                nxt = xs[:, :, j + 1]
                np.multiply(aL, xs[:, :, j], out=nxt)
                np.add(nxt, z[:, :, j], out=nxt)
        xr = xs.view(F64).astype(F32)  # (B, H, nb, 2P) [Re, Im] pairs
        y = y + np.matmul(xr, self.m_x[..., :Lb])  # (B, H, nb, Lb)
        # the state after step T: `rest` steps into the last block
        rest = T - (nb - 1) * Lb
        zt = np.einsum("bhi,hin->bhn", ub[:, :, nb - 1, :rest].astype(F64),
                       self.w[:, L - rest:]).view(C128)  # (B, H, P)
        xt = self.pw[..., rest] * xs[:, :, nb - 1] + zt  # (B, H, P)
        s_new = np.concatenate([xt.real, xt.imag], axis=-1).astype(F32)  # (B, H, 2P)
        return y.reshape(Bn, H, Tp), s_new


def _interleave(w: np.ndarray) -> np.ndarray:
    """Complex (..., P) -> real (..., 2P) as [Re, Im] pairs (the layout of a complex view)."""
    return np.stack([w.real, w.imag], axis=-1).reshape(*w.shape[:-1], 2 * w.shape[-1])


class FloatChunk:
    """Layer-major float execution of a `FloatStep` over a chunk (module docstring)."""

    def __init__(self, step: FloatStep, block: int = 64):
        if not 1 <= block <= 1024:  # the block matrices are H x L x (L + 2P)
            raise ValueError(f"FloatChunk: block must be in [1, 1024], got {block}")
        self.step, self.spec, self.w, self.block = step, step.spec, step.w, block
        k = lambda i, n: self.w[layer_key(i, n)]  # noqa: E731
        self.layers = [_S4DBlocks(k(i, "A"), k(i, "B"), k(i, "C"), k(i, "D"), block)
                       for i in range(self.spec.model.n_layers)]

    def init_state(self, batch: int) -> list:
        return self.step.init_state(batch)

    def __call__(self, x: np.ndarray, state: list) -> tuple[np.ndarray, list]:
        """x (B, T, F) float32 -> logits (B, T, K) float32, new state."""
        w, L = self.w, self.block
        x = np.asarray(x, F32)
        Bn, T, F = x.shape
        Tp = T if T <= L else -(-T // L) * L  # padded at the end: causal, cut off below
        xp = np.zeros((Bn, F, Tp), F32)
        xp[..., :T] = x.transpose(0, 2, 1)
        h = np.matmul(w["enc.w"], xp) + w["enc.b"][:, None]  # (B, H, Tp)
        new_state = []
        for i, (blk, s) in enumerate(zip(self.layers, state)):
            k = lambda n, i=i: w[layer_key(i, n)]  # noqa: E731
            y, s_new = blk.run(h, T, s)  # (B, H, Tp)
            new_state.append(s_new)
            g = gelu32(y)  # (B, H, Tp)
            z = np.matmul(k("mix.w"), g) + k("mix.b")[:, None]  # (B, 2H, Tp)
            H = z.shape[1] // 2
            h = h + z[:, :H] * expit(z[:, H:])  # (B, H, Tp)
        logits = np.matmul(w["dec.w"], h[..., :T]) + w["dec.b"][:, None]  # (B, K, T)
        return logits.transpose(0, 2, 1).astype(F32), new_state



EXACT_F32 = 2**24  # integers below this, and sums of them below it, are exact in float32


class _IntLinear:
    """x @ W.T + b on integer codes |x| <= x_max, exact: in float32 (BLAS) when every partial
    sum stays below 2^24, else float64 (below 2^53), else int64."""

    def __init__(self, W: np.ndarray, b: np.ndarray, x_max: float):
        bound = float(np.abs(W).sum(axis=1).max()) * x_max + float(np.abs(b).max(initial=0))
        self.dt = F32 if bound < EXACT_F32 else F64 if bound < 2**53 else np.int64
        self.wt, self.b = W.T.astype(self.dt), b.astype(self.dt)  # (in, out), (out,)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.matmul(x.astype(self.dt, copy=False), self.wt) + self.b


class IntegerChunk:
    """Integer execution of an `IntegerStep` over a chunk, bit for bit, layers pipelined.

    Codes are held as exact integers in float32: matrix products run in float32 (BLAS) when
    every partial sum stays below 2^24 (checked per call), else float64 or int64;
    requantization and lookup tables are the step's own functions on whole (B, T, H) arrays.
    Only the state update loops over time:
        acc = A * s                       complex64 [Re, Im] codes per mode: exact products
        s'  = clip(rint(acc * m_a + pre_b[t]))     the step's `requantize`, same float32 ops
    with pre_b = float32(B u) * m_b computed for a whole block of steps beforehand.

    The chunk is cut into blocks of `block` steps and the layers form a pipeline: in round r
    layer l runs block r - l, its input being layer l-1's output for that block from the
    previous round. So one loop over a block's steps updates every layer's state at once
    (the six ufuncs act on an (n_layers, B, H, 2P) stack; their cost is mostly per call),
    then each layer's output row and pointwise part run vectorized over its block. Layers
    with fewer modes are padded with zero modes (A = B = C = 0: they stay zero).
    """

    def __init__(self, step: IntegerStep, block: int = 128):
        self.step, self.spec, self.block, w = step, step.spec, block, step.w
        self.act, self.adc, self.st = step.act, step.adc, step.st
        s_max = max(abs(v) for v in self.st)
        nL, H = self.spec.model.n_layers, self.spec.model.d_model
        self.P = Pm = max(w[layer_key(i, "A")].shape[-1] for i in range(nL))
        self.A = np.zeros((nL, H, Pm), np.complex64)  # mode-wise A codes, zero padded
        self.m_a = np.zeros((nL, H, 2 * Pm), F32)  # multipliers per [Re, Im] code
        self.layers = []
        s_u = w["enc.out.scale"]  # scale of the codes entering layer 0
        for i in range(nL):
            k = lambda n, i=i: w[layer_key(i, n)]  # noqa: E731
            A, Bm, C = k("A"), k("B"), k("C")  # (H,2,P) (H,2,P) (H,2P)
            P = A.shape[-1]
            if 2 * np.abs(A).max() * s_max >= EXACT_F32:
                raise ValueError(f"IntegerChunk: layer {i}: A * state codes reach 2^24")
            s_x = k("state.scale")
            pad = lambda z, P=P: _interleave(np.pad(z, ((0, 0), (0, Pm - P))))  # noqa: E731
            self.A[i, :, :P] = A[:, 0] + 1j * A[:, 1]
            self.m_a[i] = _per_channel(multiplier(k("A.scale"), s_x, s_x))
            self.layers.append({
                "P": P, "s_u": s_u,
                "B": pad(Bm[:, 0] + 1j * Bm[:, 1]).astype(F32),  # (H, 2Pm) codes
                "C": pad(C[:, :P] + 1j * C[:, P:]).astype(F32),  # (H, 2Pm) codes
                "m_b": np.broadcast_to(_per_channel(multiplier(s_u, k("B.scale"), s_x)),
                                       (H, 2 * Pm)).astype(F32),
                "c_dt": F32 if np.abs(C).sum(axis=1).max() * s_max < EXACT_F32 else F64,
                "D": k("D"), "gelu": k("gelu.table"), "sig": k("sig.table").astype(np.int64),
                "mix": _IntLinear(k("mix.w"), k("mix.b"), np.abs(k("gelu.table")).max()),
                # the step's requantization multipliers, in its order
                "m_c": multiplier(k("C.scale"), s_x, k("y.scale")),
                "m_d": multiplier(s_u, k("D.scale"), k("y.scale")),
                "m_z": multiplier(k("gelu.scale"), k("mix.w.scale"), k("mix.out.scale")),
                "m_o": multiplier(k("mix.out.scale"), sig_scale(self.act[1]), k("glu.scale")),
                "m_ru": multiplier(s_u, 1.0, k("res.scale")),
                "m_ro": multiplier(k("glu.scale"), 1.0, k("res.scale")),
            })
            # float32(B u) * m_b for every input code u (up to 12 bits), as the step computes it
            lay, codes = self.layers[-1], np.arange(self.act[0], self.act[1] + 1, dtype=F32)
            lay["pre"] = lay["pre_off"] = None
            if len(codes) <= 4096:
                tab = codes[:, None] * lay["B"][:, None] * lay["m_b"][:, None]  # float32
                lay["pre"] = tab.reshape(-1, 2 * Pm)  # (H * R, 2Pm)
                lay["pre_off"] = np.arange(H) * len(codes) - self.act[0]  # row: h R + u - qmin
            s_u = k("res.scale")
        a_max = float(max(abs(v) for v in self.act))
        self.enc = _IntLinear(w["enc.w"], w["enc.b"], a_max)
        self.dec = _IntLinear(w["dec.w"], w["dec.b"], a_max)

    def init_state(self, batch: int) -> list:
        return self.step.init_state(batch)

    def __call__(self, x: np.ndarray, state: list) -> tuple[np.ndarray, list]:
        """x (B, T, F) float32 -> logits (B, T, K) float32, new state (bit-exact)."""
        w, (amin, amax) = self.step.w, self.act
        x = np.asarray(x, F32)
        Bn, T, _ = x.shape
        nL, H, Pm = len(self.layers), self.spec.model.d_model, self.P
        s_in, s_h = w["in.scale"], w["enc.out.scale"]
        xq = quantize(x, s_in, amin, amax)  # (B, T, F)
        h = requantize([(self.enc(xq), multiplier(s_in, w["enc.w.scale"], s_h))],
                       amin, amax)  # (B, T, H) codes entering layer 0
        Tb = max(1, min(self.block, T))
        spans = [(t0, min(T, t0 + Tb)) for t0 in range(0, T, Tb)]  # the blocks
        nb = len(spans)
        X = np.zeros((nL, Bn, H, Pm), np.complex64)  # each layer's state, mode-wise
        for i, s in enumerate(state):
            P = s.shape[-1] // 2
            X[i, ..., :P] = s[..., :P] + 1j * s[..., P:]
        S = np.empty((Tb + 1, nL, Bn, H, Pm), np.complex64)  # S[t]: states before step t
        pre = np.zeros((nL, Tb, Bn, H, 2 * Pm), F32)  # float32(B u) * m_b
        shape = (nL, Bn, H, 2 * Pm)
        const = {"A": np.ascontiguousarray(np.broadcast_to(self.A[:, None], X.shape)),
                 "m_a": np.ascontiguousarray(np.broadcast_to(self.m_a[:, None], shape)),
                 "lo": np.full(shape, self.st[0], F32), "hi": np.full(shape, self.st[1], F32)}
        acc, views = np.empty_like(X), {}
        inputs: list = [None] * nL  # each layer's next block, from the previous round
        outs = []  # the last layer's output codes per block
        for r in range(nb + nL - 1):
            a, b = max(0, r - nb + 1), min(nL, r + 1)  # layers active in this round
            lens, cur = {}, {}
            for i in range(a, b):
                t0, t1 = spans[r - i]
                u = h[:, t0:t1] if i == 0 else inputs[i]  # (B, n, H)
                cur[i], lens[i] = u, t1 - t0
                lay, p = self.layers[i], pre[i, : t1 - t0]  # p: (n, B, H, 2Pm)
                if lay["pre"] is not None:  # float32(B u) * m_b: a table row per code
                    np.take(lay["pre"], u.transpose(1, 0, 2) + lay["pre_off"], axis=0, out=p)
                else:
                    uf = u.transpose(1, 0, 2).astype(F32)[..., None]  # (n, B, H, 1)
                    np.multiply(uf, lay["B"], out=p)  # B u: exact integers
                    np.multiply(p, lay["m_b"], out=p)
            S[0, a:b] = X[a:b]
            self._scan(S, pre, const, acc, a, b, max(lens.values()), views)
            for i in range(a, b):
                n = lens[i]
                X[i] = S[n, i]
                y = self._block(i, cur[i], S.view(F32)[:n, i])  # (B, n, H)
                if i + 1 < nL:
                    inputs[i + 1] = y
                else:
                    outs.append(y)
        new_state = []
        for i, lay in enumerate(self.layers):
            P = lay["P"]
            new_state.append(np.concatenate([X[i, ..., :P].real, X[i, ..., :P].imag],
                                            axis=-1).astype(np.int32))  # (B, H, 2P)
        s_h = w[layer_key(nL - 1, "res.scale")]
        hq = np.concatenate(outs, axis=1) if outs else np.zeros((Bn, 0, H), np.int32)
        acc_d = self.dec(hq)  # (B, T, K)
        logits = acc_d.astype(F32) * (np.asarray(s_h, F32) * w["dec.w.scale"])
        return logits.astype(F32), new_state

    @staticmethod
    def _scan(S, pre, const, acc, a: int, b: int, n: int, views: dict) -> None:
        """n state updates of layers [a, b): S[t + 1, a:b] from S[t, a:b] and pre[a:b, t]."""
        if (a, b) not in views:  # per-step views, built once per layer range and call
            Sf = S.view(F32)
            views[a, b] = (list(S[:-1, a:b]), list(Sf[1:, a:b]),
                           list(pre[a:b].transpose(1, 0, 2, 3, 4)))
        s_now, s_next, pre_t = views[a, b]
        A, m_a, lo, hi = (const[k][a:b] for k in ("A", "m_a", "lo", "hi"))
        acc = acc[a:b]
        accf = acc.view(F32)
        mul, add, rint, fmax, fmin = np.multiply, np.add, np.rint, np.maximum, np.minimum
        for t in range(n):  # six ufuncs per step for all layers: keep it lean
            mul(A, s_now[t], out=acc)
            mul(accf, m_a, out=accf)
            add(accf, pre_t[t], out=accf)
            rint(accf, out=accf)
            fmax(accf, lo, out=accf)
            fmin(accf, hi, out=s_next[t])

    def _block(self, i: int, u: np.ndarray, Sf: np.ndarray) -> np.ndarray:
        """Layer i's output codes (B, n, H) from its input codes u (B, n, H) and the states
        before each step, Sf (n, B, H, 2Pm) [Re, Im] codes: the step's pointwise part."""
        lay = self.layers[i]
        (amin, amax), (cmin, cmax) = self.act, self.adc
        H = u.shape[-1]
        dt = lay["c_dt"]
        acc_c = np.einsum("tbhn,hn->bth", Sf.astype(dt, copy=False), lay["C"].astype(dt))
        y = requantize([(acc_c, lay["m_c"]), (lay["D"] * u, lay["m_d"])], cmin, cmax)
        g = lookup(lay["gelu"], y, cmin)  # (B, n, H)
        z = requantize([(lay["mix"](g), lay["m_z"])], amin, amax)  # (B, n, 2H)
        sig = lookup(lay["sig"], z[..., H:], amin)  # (B, n, H)
        o = requantize([(z[..., :H].astype(np.int64) * sig, lay["m_o"])], amin, amax)
        return requantize([(u, lay["m_ru"]), (o, lay["m_ro"])], amin, amax)  # (B, n, H)
