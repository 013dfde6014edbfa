"""The S4D classifier: encoder, blocks (S4D -> GELU -> Linear -> [BatchNorm] -> GLU, residual),
decoder; per-step logits, pooled over the sequence for training.

Glossary: B batch, L sequence length, F input features, H width, P modes, K classes.

Three forwards of one model:
- `forward(x)`: float, convolution mode (fast pre-training);
- `forward(x, recurrent=True)`: float, step mode (same function, used for calibration);
- `qmodel.forward_quant(model, x)`: recurrent QAT, integer-exact (see qmodel.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as Fn
from torch import nn

from qs4d.runtime.spec import ModelConfig

from .s4d import S4D


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, P: int, seed: int | None = None):
        super().__init__()
        H = cfg.d_model
        self.s4d = S4D(H, P, cfg.init, cfg.dt_min, cfg.dt_max, seed=seed)
        self.norm = nn.BatchNorm1d(2 * H) if cfg.norm == "batch" else None
        self.mix = nn.Linear(H, 2 * H)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, u: torch.Tensor, recurrent: bool = False, trace: dict | None = None,
                prefix: str = "", noise=None) -> torch.Tensor:
        """u (B, L, H) -> (B, L, H)."""
        if recurrent:
            y, states = self.s4d.forward_recurrent(u, return_states=True)  # (B, L, H)
        else:
            y, states = self.s4d(u), None  # (B, L, H)
        g = self.drop(Fn.gelu(y))  # (B, L, H)
        w = self.mix.weight if noise is None else noise(self.mix.weight)
        z = Fn.linear(g, w, self.mix.bias)  # (B, L, 2H)
        if self.norm is not None:
            z = self.norm(z.transpose(1, 2)).transpose(1, 2)  # (B, L, 2H)
        o = Fn.glu(z, dim=-1)  # (B, L, H)
        r = u + self.drop(o)  # (B, L, H)
        if trace is not None:
            trace.update({f"{prefix}state": states, f"{prefix}y": y, f"{prefix}gelu": g,
                          f"{prefix}z": z, f"{prefix}glu": o, f"{prefix}res": r})
        return r

    @torch.no_grad()
    def fold_norm(self) -> None:
        """Fold eval-mode BatchNorm into the mixing layer's rows: diag(a) W, a (b - mu) + beta.

        Per output row, so per-channel weight scales absorb it without loss of range.
        """
        if self.norm is None:
            return
        bn = self.norm
        a = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (2H,)
        self.mix.weight.mul_(a[:, None])
        self.mix.bias.copy_(a * (self.mix.bias - bn.running_mean) + bn.bias)
        self.norm = None


class S4DClassifier(nn.Module):
    def __init__(self, cfg: ModelConfig, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.cfg = cfg
        self.enc = nn.Linear(cfg.d_input, cfg.d_model)
        self.blocks = nn.ModuleList(
            Block(cfg, P, seed=seed * 1000 + i) for i, P in enumerate(cfg.layer_modes))
        self.dec = nn.Linear(cfg.d_model, cfg.n_classes)
        self.noise_std = 0.0  # relative Gaussian noise (noise-aware training)
        self.noise_kind = "weight"  # TrainConfig.noise_kind: "weight" or "read"
        self.noise_in_eval = False
        self.quant = None  # set by qmodel.attach_quant

    # -- noise-aware training --------------------------------------------------------------
    def noise_active(self) -> bool:
        return self.noise_std > 0 and (self.training or self.noise_in_eval)

    def noisy(self, w: torch.Tensor) -> torch.Tensor:
        """w + N(0, (sigma * max|w|)^2) when weight noise is active; no gradient through it."""
        if not self.noise_active() or self.noise_kind != "weight":
            return w
        return w + torch.randn_like(w) * (self.noise_std * w.detach().abs().max())

    def read_noise_active(self) -> bool:
        return self.noise_active() and self.noise_kind == "read"

    def read_noisy(self, acc: torch.Tensor, var) -> torch.Tensor:
        """acc + N(0, sigma^2 var) when read noise is active, fresh per element: the current of
        a crossbar row whose devices each read G (1 + N(0, sigma)), var = sum w^2 x^2 over
        the row's products (imssa's read_noise "relative", without the g_min floor). `var` is
        a tensor or a callable giving it (computed only when the noise is on); no gradient."""
        if not self.read_noise_active():
            return acc
        v = (var() if callable(var) else var).detach()
        return acc + torch.randn_like(acc) * (self.noise_std * v.clamp_min(0).sqrt())

    # -- forwards ------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, recurrent: bool = False,
                trace: dict | None = None) -> torch.Tensor:
        """x (B, L, F) -> per-step logits (B, L, K); float path."""
        if self.quant is not None:
            from .qmodel import forward_quant

            return forward_quant(self, x)
        noise = self.noisy if self.noise_active() else None
        h = self.enc(x) if noise is None else Fn.linear(x, noise(self.enc.weight), self.enc.bias)
        if trace is not None:
            trace.update({"in": x, "enc_out": h})
        for i, blk in enumerate(self.blocks):
            h = blk(h, recurrent=recurrent, trace=trace, prefix=f"l{i}_", noise=noise)
        w = self.dec.weight if noise is None else noise(self.dec.weight)
        return Fn.linear(h, w, self.dec.bias)  # (B, L, K)

    def pool(self, logits: torch.Tensor) -> torch.Tensor:
        """Sequence-level logits (B, K) from per-step logits (B, L, K)."""
        return logits.mean(1) if self.cfg.pooling == "mean" else logits[:, -1]

    def fold_norms(self) -> None:
        for blk in self.blocks:
            blk.fold_norm()

    def n_params(self) -> int:
        skip = ("raw",)
        return sum(p.numel() for n, p in self.named_parameters() if n.split(".")[-1] not in skip)

    @torch.no_grad()
    def prune_modes(self, keep: int | list[int]) -> dict:
        """Keep the `keep` most important modes per channel in every layer (or per layer).

        Modes are removed physically (the parameters shrink) and cfg.modes is updated.
        Returns the state sizes before and after.
        """
        keeps = [keep] * len(self.blocks) if isinstance(keep, int) else list(keep)
        before = [blk.s4d.P for blk in self.blocks]
        for blk, k in zip(self.blocks, keeps):
            k = max(1, min(k, blk.s4d.P))
            idx = torch.topk(blk.s4d.mode_scores(), k, dim=1).indices.sort(dim=1).values
            blk.s4d.keep_modes(idx)
        after = [blk.s4d.P for blk in self.blocks]
        self.cfg = self.cfg.replace(modes=tuple(after))
        return {"modes_before": before, "modes_after": after}
