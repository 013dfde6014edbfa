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
        for i, s in enumerate(state):
            k = lambda n, i=i: w[layer_key(i, n)]  # noqa: E731
            P = s.shape[-1] // 2
            A, Bm, C, D = k("A"), k("B"), k("C"), k("D")  # (H,2,P) (H,2,P) (H,2P) (H,)
            u = h  # (B, H)
            sr, si = s[..., :P], s[..., P:]  # (B, H, P)
            nr = A[:, 0] * sr - A[:, 1] * si + Bm[:, 0] * u[..., None]  # (B, H, P)
            ni = A[:, 1] * sr + A[:, 0] * si + Bm[:, 1] * u[..., None]  # (B, H, P)
            y = torch.einsum("bhn,hn->bh", s, C) + D * u  # (B, H)
            new_state.append(torch.cat([nr, ni], dim=-1))
            z = Fn.linear(Fn.gelu(y), k("mix.w"), k("mix.b"))  # (B, 2H)
            h = u + Fn.glu(z, dim=-1)  # (B, H)
        logits = Fn.linear(h, w["dec.w"], w["dec.b"])  # (B, K)
        return logits.numpy(), new_state
