"""The numpy reference executor: one streaming step of the whole model, float or integer.

A plain loop, slow and obviously right; the `onnx` backend must equal `IntegerStep` bit for
bit and the `imssa` backend in ideal mode must equal `FloatStep` on dequantized weights.

Glossary: B batch/streams, F input features, H width, P modes, K classes.
Per layer the state is s = [Re x; Im x] of shape (B, H, 2P) (int32 codes or float32).

One S4D step of channel h (DESIGN section 3), with s the state before the step:
    s'[re] = Ar*s[re] - Ai*s[im] + Br*u        s'[im] = Ai*s[re] + Ar*s[im] + Bi*u
    y      = C . s + D*u                         (C is the real row [2Re(C A), -2Im(C A)])
Block: y -> GELU -> Linear(H, 2H) -> GLU -> + u (residual).
"""

from __future__ import annotations

import numpy as np
from scipy.special import erf

from .quant import F32, lookup, multiplier, qrange, quantize, requantize
from .spec import Spec, layer_key


def gelu(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return (0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))).astype(F32)


def sigmoid(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return (1.0 / (1.0 + np.exp(-x))).astype(F32)


def rotate(Ar, Ai, sr, si):
    """Complex multiply A * s in real form: (Ar*sr - Ai*si, Ai*sr + Ar*si)."""
    return Ar * sr - Ai * si, Ai * sr + Ar * si


class FloatStep:
    """Float32 step over float weights (a float bundle, or an integer bundle dequantized)."""

    def __init__(self, spec: Spec, w: dict):
        self.spec = spec
        self.w = {k: np.asarray(v, dtype=F32) for k, v in w.items()}

    def init_state(self, batch: int) -> list:
        H = self.spec.model.d_model
        return [np.zeros((batch, H, 2 * P), F32) for P in self.spec.model.layer_modes]

    def __call__(self, x: np.ndarray, state: list) -> tuple[np.ndarray, list]:
        w = self.w
        x = np.asarray(x, dtype=F32)  # (B, F)
        h = x @ w["enc.w"].T + w["enc.b"]  # (B, H)
        new_state = []
        for i, s in enumerate(state):
            k = lambda n, i=i: w[layer_key(i, n)]  # noqa: E731
            P = s.shape[-1] // 2
            A, Bm, C, D = k("A"), k("B"), k("C"), k("D")  # (H,2,P) (H,2,P) (H,2P) (H,)
            u = h  # (B, H)
            sr, si = s[..., :P], s[..., P:]  # (B, H, P)
            ar, ai = rotate(A[:, 0], A[:, 1], sr, si)  # (B, H, P)
            nr = ar + Bm[:, 0] * u[..., None]  # (B, H, P)
            ni = ai + Bm[:, 1] * u[..., None]  # (B, H, P)
            y = np.einsum("bhn,hn->bh", s, C) + D * u  # (B, H)
            new_state.append(np.concatenate([nr, ni], axis=-1).astype(F32))
            g = gelu(y)  # (B, H)
            z = g @ k("mix.w").T + k("mix.b")  # (B, 2H)
            H = z.shape[-1] // 2
            o = z[:, :H] * sigmoid(z[:, H:])  # (B, H)
            h = (u + o).astype(F32)  # (B, H)
        logits = h @ w["dec.w"].T + w["dec.b"]  # (B, K)
        return logits.astype(F32), new_state


class IntegerStep:
    """Integer step: int64 accumulators, float32 requantization, lookup-table nonlinearities."""

    def __init__(self, spec: Spec, w: dict):
        if not spec.quant.integer:
            raise ValueError("IntegerStep needs an integer spec (every group quantized)")
        self.spec = spec
        self.w = {k: (np.asarray(v, dtype=F32) if np.asarray(v).dtype.kind == "f"
                      else np.asarray(v, dtype=np.int64)) for k, v in w.items()}
        q = spec.quant
        self.act = qrange(q.act.bits, q.act.narrow)
        self.adc = qrange(q.adc.bits, q.adc.narrow)
        self.st = qrange(q.state.bits, q.state.narrow)

    def init_state(self, batch: int) -> list:
        H = self.spec.model.d_model
        return [np.zeros((batch, H, 2 * P), np.int32) for P in self.spec.model.layer_modes]

    def linear(self, prefix: str, x: np.ndarray, s_x) -> np.ndarray:
        """Integer accumulator of x @ W.T + b (int64) and its scale s_x * s_w."""
        w = self.w
        return x @ w[f"{prefix}.w"].T + w[f"{prefix}.b"]

    def __call__(self, x: np.ndarray, state: list) -> tuple[np.ndarray, list]:
        w, (amin, amax) = self.w, self.act
        s_in = w["in.scale"]
        xq = quantize(x, s_in, amin, amax).astype(np.int64)  # (B, F)
        acc = self.linear("enc", xq, s_in)  # (B, H)
        s_h = w["enc.out.scale"]
        h = requantize([(acc, multiplier(s_in, w["enc.w.scale"], s_h))], amin, amax)  # (B, H)
        new_state = []
        for i, s in enumerate(state):
            h, s_h, s_new = self.layer(i, h.astype(np.int64), s_h, s.astype(np.int64))
            new_state.append(s_new)
        acc = self.linear("dec", h.astype(np.int64), s_h)  # (B, K)
        logits = acc.astype(F32) * (np.asarray(s_h, F32) * w["dec.w.scale"])  # (B, K)
        return logits.astype(F32), new_state

    def layer(self, i: int, u: np.ndarray, s_u, s: np.ndarray):
        """One block; u (B, H) act codes at scale s_u, s (B, H, 2P) state codes."""
        k = lambda n: self.w[layer_key(i, n)]  # noqa: E731
        (amin, amax), (cmin, cmax), (smin, smax) = self.act, self.adc, self.st
        P = s.shape[-1] // 2
        A, Bm, C, D = k("A"), k("B"), k("C"), k("D")  # (H,2,P) (H,2,P) (H,2P) (H,)
        s_x, s_y = k("state.scale"), k("y.scale")
        # state update: two accumulators, requantized together
        sr, si = s[..., :P], s[..., P:]  # (B, H, P)
        accr, acci = rotate(A[:, 0], A[:, 1], sr, si)  # (B, H, P)
        acc_a = np.concatenate([accr, acci], axis=-1)  # (B, H, 2P)
        acc_b = np.concatenate([Bm[:, 0], Bm[:, 1]], axis=-1) * u[..., None]  # (B, H, 2P)
        m_a = _per_channel(multiplier(k("A.scale"), s_x, s_x))
        m_b = _per_channel(multiplier(s_u, k("B.scale"), s_x))
        s_new = requantize([(acc_a, m_a), (acc_b, m_b)], smin, smax)  # (B, H, 2P)
        # output row from the old state (one read of the (2P+1) x (2P+1) matrix)
        acc_c = np.einsum("bhn,hn->bh", s, C)  # (B, H)
        acc_d = D * u  # (B, H)
        y = requantize([(acc_c, multiplier(k("C.scale"), s_x, s_y)),
                        (acc_d, multiplier(s_u, k("D.scale"), s_y))], cmin, cmax)  # (B, H)
        g = lookup(k("gelu.table"), y, cmin).astype(np.int64)  # (B, H)
        s_g = k("gelu.scale")
        acc = self.linear(layer_key(i, "mix"), g, s_g)  # (B, 2H)
        s_z = k("mix.out.scale")
        z = requantize([(acc, multiplier(s_g, k("mix.w.scale"), s_z))], amin, amax)  # (B, 2H)
        H = z.shape[-1] // 2
        sig = lookup(k("sig.table"), z[:, H:], amin).astype(np.int64)  # (B, H)
        s_o, s_r = k("glu.scale"), k("res.scale")
        o = requantize([(z[:, :H].astype(np.int64) * sig,
                         multiplier(s_z, sig_scale(amax), s_o))], amin, amax)  # (B, H)
        r = requantize([(u, multiplier(s_u, 1.0, s_r)),
                        (o, multiplier(s_o, 1.0, s_r))], amin, amax)  # (B, H)
        return r, s_r, s_new


def sig_scale(qmax: int) -> np.float32:
    """Scale of sigmoid output codes in [0, qmax]: 1 / qmax."""
    return (F32(1.0) / F32(qmax)).astype(F32)


def _per_channel(m: np.ndarray) -> np.ndarray:
    """A per-tensor () or per-channel (H,) multiplier, broadcast over (B, H, 2P)."""
    m = np.asarray(m, dtype=F32)
    return m[:, None] if m.ndim == 1 else m


def dequantize_weights(spec: Spec, w: dict) -> dict:
    """Float weights equal to an integer bundle's dequantized tensors (for FloatStep / imssa)."""
    out: dict = {}
    for prefix in ["enc", "dec"] + [layer_key(i, "mix") for i in range(spec.model.n_layers)]:
        s_w = np.asarray(w[f"{prefix}.w.scale"], F32)
        out[f"{prefix}.w"] = w[f"{prefix}.w"].astype(F32) * (s_w[:, None] if s_w.ndim else s_w)
        s_in = _input_scale(spec, w, prefix)
        out[f"{prefix}.b"] = w[f"{prefix}.b"].astype(F32) * (np.asarray(s_in, F32) * s_w)
    for i in range(spec.model.n_layers):
        for name in ("A", "B", "C", "D"):
            key = layer_key(i, name)
            s = np.asarray(w[key + ".scale"], F32)
            shape = (-1,) + (1,) * (w[key].ndim - 1) if s.ndim else ()
            out[key] = w[key].astype(F32) * s.reshape(shape)
    return out


def _input_scale(spec: Spec, w: dict, prefix: str):
    """Scale of the codes that enter the linear layer `prefix`."""
    if prefix == "enc":
        return w["in.scale"]
    if prefix == "dec":
        return w[layer_key(spec.model.n_layers - 1, "res.scale")]
    i = int(prefix[1:].split(".")[0])
    return w[layer_key(i, "gelu.scale")]
