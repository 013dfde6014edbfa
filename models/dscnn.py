"""The MLPerf Tiny keyword-spotting reference DS-CNN (Banbury et al., MLPerf Tiny v0.5,
`benchmark/training/keyword_spotting/keras_model.py`, model "ds_cnn"), as a peer baseline for
the S4D models: same data, features and splits, trained by the same loop.

Glossary: B batch, L frames (time), F features (mel bands), C filters, K classes.

    x (B, L, F) -> (B, 1, L, F)
    Conv C, 10x4, stride 2, 'same' padding (TensorFlow's: the odd extra pad goes after)
      -> BN -> ReLU -> Dropout 0.2
    4 x [ depthwise 3x3 'same' -> BN -> ReLU -> pointwise C -> BN -> ReLU ]
    Dropout 0.4 -> average pool -> Linear K       (logits; the reference's softmax is in the loss)

Pooling here is global (GlobalAveragePool in ONNX). The reference pools with pool_size =
(L/2, F/2) rounded down, which is the whole 49 x 20 map for the 98 x 40 input used here (at
its own 49 x 10 input, 24 x 5 of the 25 x 5 map).

Every convolution and the dense layer carry a bias (Keras' default). The reference reads
49 x 10 MFCC; here the input is the runtime's 40 log-mel bands x 98 frames (kws_task).
Parameters and MACs are counted from the modules, `reference_params` is the closed form.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as Fn
from torch import nn

from qs4d.runtime.spec_base import SpecError, _Config


@dataclass(frozen=True)
class DSCNNConfig(_Config):
    n_frames: int = 98  # L: 1 s at a 10-ms hop
    n_features: int = 40  # F
    n_classes: int = 12  # K
    filters: int = 64  # C
    kernel: tuple = (10, 4)  # first convolution, (time, frequency)
    stride: tuple = (2, 2)
    n_blocks: int = 4
    dropout_in: float = 0.2  # after the first convolution
    dropout_out: float = 0.4  # before the pooling

    def __post_init__(self):
        for name in ("n_frames", "n_features", "n_classes", "filters", "n_blocks"):
            if getattr(self, name) < 1:
                raise SpecError(f"DSCNNConfig.{name}: must be >= 1, got {getattr(self, name)}")
        for name in ("kernel", "stride"):
            v = getattr(self, name)
            if len(v) != 2 or not all(isinstance(k, int) and k >= 1 for k in v):
                raise SpecError(f"DSCNNConfig.{name}: two positive integers, got {v!r}")


def same_pad(size: int, k: int, s: int) -> tuple:
    """TensorFlow 'same' padding of one axis: (before, after), the odd one after."""
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


class DSBlock(nn.Module):
    def __init__(self, C: int):
        super().__init__()
        self.dw = nn.Conv2d(C, C, 3, padding=1, groups=C)
        self.bn_dw = nn.BatchNorm2d(C)
        self.pw = nn.Conv2d(C, C, 1)
        self.bn_pw = nn.BatchNorm2d(C)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = Fn.relu(self.bn_dw(self.dw(h)))  # (B, C, L', F')
        return Fn.relu(self.bn_pw(self.pw(h)))  # (B, C, L', F')


class DSCNN(nn.Module):
    """Trainer-compatible: forward gives (B, K) logits, `pool` is the identity, no quantizers."""

    quant = None

    def __init__(self, cfg: DSCNNConfig, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.cfg = cfg
        C = cfg.filters
        pl, pf = (same_pad(n, k, s) for n, k, s in
                  zip((cfg.n_frames, cfg.n_features), cfg.kernel, cfg.stride))
        if pl[0] == pl[1] and pf[0] == pf[1]:  # symmetric: the convolution pads (one ONNX op)
            self.pad, padding = nn.Identity(), (pl[0], pf[0])
        else:
            self.pad, padding = nn.ZeroPad2d((pf[0], pf[1], pl[0], pl[1])), (0, 0)
        self.conv = nn.Conv2d(1, C, cfg.kernel, stride=cfg.stride, padding=padding)
        self.bn = nn.BatchNorm2d(C)
        self.drop_in = nn.Dropout(cfg.dropout_in)
        self.blocks = nn.ModuleList(DSBlock(C) for _ in range(cfg.n_blocks))
        self.drop_out = nn.Dropout(cfg.dropout_out)
        self.fc = nn.Linear(C, cfg.n_classes)
        self.noise_std = 0.0  # the trainer sets it; no weight noise here

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, L, F) normalized log-mel frames -> logits (B, K)."""
        B, L, F = x.shape
        if (L, F) != (self.cfg.n_frames, self.cfg.n_features):
            raise ValueError(f"DSCNN: expected (B, {self.cfg.n_frames}, {self.cfg.n_features}) "
                             f"input, got {tuple(x.shape)}")
        h = self.drop_in(Fn.relu(self.bn(self.conv(self.pad(x[:, None])))))  # (B, C, L', F')
        for blk in self.blocks:
            h = blk(h)  # (B, C, L', F')
        h = Fn.adaptive_avg_pool2d(self.drop_out(h), 1).flatten(1)  # (B, C)
        return self.fc(h)  # (B, K)

    def pool(self, logits: torch.Tensor) -> torch.Tensor:
        return logits

    def n_params(self) -> int:
        """Trainable parameters (weights, biases, BN scale and shift)."""
        return sum(p.numel() for p in self.parameters())

    def n_params_total(self) -> int:
        """Plus the BN running statistics: what Keras' summary calls total parameters."""
        stats = sum(b.numel() for n, b in self.named_buffers() if n.endswith(("_mean", "_var")))
        return self.n_params() + stats

    @torch.no_grad()
    def macs(self) -> dict:
        """Multiply-accumulates of one inference (batch 1), per layer kind, counted with hooks
        on the convolutions and the dense layer (BN, ReLU and pooling are not counted)."""
        counts = {"conv": 0, "dw": 0, "pw": 0, "fc": 0}

        def hook(kind):
            def f(mod, inp, out):
                if isinstance(mod, nn.Linear):
                    counts[kind] += out.numel() * mod.in_features
                else:
                    kh, kw = mod.kernel_size
                    counts[kind] += out.numel() * (mod.in_channels // mod.groups) * kh * kw
            return f

        mods = [(self.conv, "conv"), (self.fc, "fc")]
        mods += [(m, k) for blk in self.blocks for m, k in ((blk.dw, "dw"), (blk.pw, "pw"))]
        handles = [m.register_forward_hook(hook(k)) for m, k in mods]
        was = self.training
        self.eval()
        try:
            self(torch.zeros(1, self.cfg.n_frames, self.cfg.n_features))
        finally:
            self.train(was)
            for h in handles:
                h.remove()
        counts["total"] = sum(counts.values())
        return counts

    @torch.no_grad()
    def folded(self) -> DSCNN:
        """An eval-mode copy with every BatchNorm folded into the convolution before it."""
        out = DSCNN(self.cfg)
        out.load_state_dict(self.state_dict())
        out.eval()
        pairs = [(out.conv, "bn", out)] + [(getattr(b, c), f"bn_{c}", b)
                                           for b in out.blocks for c in ("dw", "pw")]
        for conv, name, owner in pairs:
            bn = getattr(owner, name)
            a = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (C,)
            conv.weight.mul_(a[:, None, None, None])
            conv.bias.copy_(a * (conv.bias - bn.running_mean) + bn.bias)
            setattr(owner, name, nn.Identity())
        return out


def reference_params(K: int = 12, C: int = 64, kernel: tuple = (10, 4), n_blocks: int = 4,
                     bn_stats: bool = True) -> int:
    """Closed-form parameter count of the reference model (Keras summary; total with the BN
    moving statistics when bn_stats, else trainable only)."""
    bn = (4 if bn_stats else 2) * C
    first = kernel[0] * kernel[1] * C + C + bn
    block = (9 * C + C + bn) + (C * C + C + bn)
    return first + n_blocks * block + C * K + K
