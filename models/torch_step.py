"""A PyTorch eager streaming step of a bundle's float weights: the reference against which
`qs4d profile --torch` times the integer and float ONNX steps.

It computes what `runtime.reference.FloatStep` computes (an integer bundle is dequantized
first), in torch float32 eager mode, one step at a time, the state kept as torch tensors
between calls. Only `qs4d profile --torch` imports it, lazily: the apps never import torch.

Glossary: B batch/streams, F features, H width, P modes, K classes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as Fn

from qs4d.runtime.bundle import load_bundle
from qs4d.runtime.reference import dequantize_weights
from qs4d.runtime.spec import Spec, layer_key


class TorchStep:
    """`init_state(batch) -> list`, `__call__(x (B, F) numpy, state) -> (logits (B, K), state)`."""

    def __init__(self, spec: Spec, weights: dict, threads: int = 1):
        torch.set_num_threads(threads)
        self.spec = spec
        self.w = {k: torch.from_numpy(np.asarray(v, np.float32).copy()) for k, v in weights.items()}
        # per layer, looked up once: A (H,2,P), B (H,2,P), C (H,2P), D (H,), mixing W, b
        self.layers = [tuple(self.w[layer_key(i, n)] for n in ("A", "B", "C", "D", "mix.w", "mix.b"))
                       for i in range(spec.model.n_layers)]

    @classmethod
    def from_bundle(cls, path: str | Path, threads: int = 1) -> TorchStep:
        b = load_bundle(path)
        w = dequantize_weights(b.spec, b.weights) if b.spec.quant.integer else b.weights
        return cls(b.spec, w, threads)

    def init_state(self, batch: int) -> list:
        H = self.spec.model.d_model
        return [torch.zeros(batch, H, 2 * P) for P in self.spec.model.layer_modes]

    @torch.no_grad()
    def __call__(self, x: np.ndarray, state: list) -> tuple[np.ndarray, list]:
        w = self.w
        h = Fn.linear(torch.from_numpy(np.asarray(x, np.float32)), w["enc.w"], w["enc.b"])  # (B, H)
        new_state = []
        for s, (A, Bm, C, D, mix_w, mix_b) in zip(state, self.layers):
            P = s.shape[-1] // 2
            u = h  # (B, H)
            sr, si = s[..., :P], s[..., P:]  # (B, H, P)
            nr = A[:, 0] * sr - A[:, 1] * si + Bm[:, 0] * u[..., None]  # (B, H, P)
            ni = A[:, 1] * sr + A[:, 0] * si + Bm[:, 1] * u[..., None]  # (B, H, P)
            y = torch.einsum("bhn,hn->bh", s, C) + D * u  # (B, H)
            new_state.append(torch.cat([nr, ni], dim=-1))
            z = Fn.linear(Fn.gelu(y), mix_w, mix_b)  # (B, 2H)
            h = u + Fn.glu(z, dim=-1)  # (B, H)
        logits = Fn.linear(h, w["dec.w"], w["dec.b"])  # (B, K)
        return logits.numpy(), new_state


def _requant(terms, lo: int, hi: int) -> torch.Tensor:
    """clip(rint(sum_i float32(acc_i) * m_i)) as int64 (`runtime.quant.requantize`)."""
    total = None
    for acc, m in terms:
        t = acc.to(torch.float32) * m
        total = t if total is None else total + t
    return torch.clamp(torch.round(total), lo, hi).to(torch.int64)  # round: half to even


class TorchIntStep:
    """The integer model's own step in PyTorch eager: what `runtime.reference.IntegerStep`
    computes (int64 accumulators, float32 requantization, lookup tables), on torch tensors,
    bit for bit. It is the PyTorch eager step of the same model that the integer ONNX step
    runs, for `qs4d profile --torch`."""

    def __init__(self, spec: Spec, weights: dict, threads: int = 1):
        from qs4d.runtime.quant import multiplier, qrange
        from qs4d.runtime.reference import sig_scale

        if not spec.quant.integer:
            raise ValueError("TorchIntStep needs an integer bundle")
        torch.set_num_threads(threads)
        self.spec = spec
        q = spec.quant
        self.act, self.adc, self.st = (qrange(g.bits, g.narrow) for g in (q.act, q.adc, q.state))
        w = {k: np.asarray(v) for k, v in weights.items()}
        t = lambda a: torch.from_numpy(np.ascontiguousarray(  # noqa: E731
            a.astype(np.float32) if a.dtype.kind == "f" else a.astype(np.int64)))
        self.w = {k: t(v) for k, v in w.items()}
        f32 = lambda a: torch.from_numpy(np.asarray(a, np.float32).copy())  # noqa: E731
        pc = lambda m: f32(m)[:, None] if np.ndim(m) == 1 else f32(m)  # noqa: E731
        k = lambda i, n: w[layer_key(i, n)]  # noqa: E731
        self.m_enc = f32(multiplier(w["in.scale"], w["enc.w.scale"], w["enc.out.scale"]))
        self.layers, s_u = [], w["enc.out.scale"]
        for i in range(spec.model.n_layers):
            s_x, s_y, s_r = k(i, "state.scale"), k(i, "y.scale"), k(i, "res.scale")
            s_g, s_z, s_o = k(i, "gelu.scale"), k(i, "mix.out.scale"), k(i, "glu.scale")
            A, Bm = self.w[layer_key(i, "A")], self.w[layer_key(i, "B")]
            self.layers.append(dict(
                Ar=A[:, 0], Ai=A[:, 1], B=torch.cat([Bm[:, 0], Bm[:, 1]], -1),
                C=self.w[layer_key(i, "C")], D=self.w[layer_key(i, "D")],
                gelu=self.w[layer_key(i, "gelu.table")], sig=self.w[layer_key(i, "sig.table")],
                mix_wt=self.w[layer_key(i, "mix.w")].T.contiguous(),
                mix_b=self.w[layer_key(i, "mix.b")],
                m_a=pc(multiplier(k(i, "A.scale"), s_x, s_x)),
                m_b=pc(multiplier(s_u, k(i, "B.scale"), s_x)),
                m_c=f32(multiplier(k(i, "C.scale"), s_x, s_y)),
                m_d=f32(multiplier(s_u, k(i, "D.scale"), s_y)),
                m_z=f32(multiplier(s_g, k(i, "mix.w.scale"), s_z)),
                m_o=f32(multiplier(s_z, sig_scale(self.act[1]), s_o)),
                m_ur=f32(multiplier(s_u, 1.0, s_r)), m_or=f32(multiplier(s_o, 1.0, s_r))))
            s_u = s_r
        self.m_dec = f32(np.asarray(s_u, np.float32) * w["dec.w.scale"])
        self.enc_wt = self.w["enc.w"].T.contiguous()
        self.dec_wt = self.w["dec.w"].T.contiguous()

    @classmethod
    def from_bundle(cls, path: str | Path, threads: int = 1) -> TorchIntStep:
        b = load_bundle(path)
        return cls(b.spec, b.weights, threads)

    def init_state(self, batch: int) -> list:
        H = self.spec.model.d_model
        return [torch.zeros(batch, H, 2 * P, dtype=torch.int64)
                for P in self.spec.model.layer_modes]

    @torch.no_grad()
    def __call__(self, x: np.ndarray, state: list) -> tuple[np.ndarray, list]:
        """Every per-layer tensor and multiplier is looked up once, in __init__."""
        w, (amin, amax), (cmin, cmax), (smin, smax) = self.w, self.act, self.adc, self.st
        xt = torch.from_numpy(np.asarray(x, np.float32))
        xq = torch.clamp(torch.round(xt / w["in.scale"]), amin, amax).to(torch.int64)  # (B, F)
        h = _requant([(xq @ self.enc_wt + w["enc.b"], self.m_enc)], amin, amax)  # (B, H)
        new_state = []
        for s, L in zip(state, self.layers):
            P = s.shape[-1] // 2
            sr, si = s[..., :P], s[..., P:]  # (B, H, P)
            acc_a = torch.cat([L["Ar"] * sr - L["Ai"] * si, L["Ai"] * sr + L["Ar"] * si], -1)
            acc_b = L["B"] * h[..., None]  # (B, H, 2P)
            new_state.append(_requant([(acc_a, L["m_a"]), (acc_b, L["m_b"])], smin, smax))
            acc_c = (s * L["C"]).sum(-1)  # (B, H)
            y = _requant([(acc_c, L["m_c"]), (L["D"] * h, L["m_d"])], cmin, cmax)  # (B, H)
            g = L["gelu"][y - cmin]  # (B, H)
            z = _requant([(g @ L["mix_wt"] + L["mix_b"], L["m_z"])], amin, amax)  # (B, 2H)
            H = z.shape[-1] // 2
            sig = L["sig"][z[:, H:] - amin]  # (B, H)
            o = _requant([(z[:, :H] * sig, L["m_o"])], amin, amax)  # (B, H)
            h = _requant([(h, L["m_ur"]), (o, L["m_or"])], amin, amax)  # (B, H)
        logits = (h @ self.dec_wt + w["dec.b"]).to(torch.float32) * self.m_dec  # (B, K)
        return logits.numpy(), new_state
