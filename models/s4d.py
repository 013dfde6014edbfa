"""The S4D layer: diagonal state-space model, convolution mode (training) and step mode.

Glossary: B batch, L sequence length, H channels, P = N/2 complex modes.

Continuous parameters per channel h and mode p: A = -exp(log_A_re) + i*A_im, B = 1, C complex,
D real, Delta = exp(log_dt). Zero-order hold (DESIGN section 3):
    A_bar = exp(Delta*A),  B_bar = (A_bar - 1)/A * B
    x[k+1] = A_bar*x[k] + B_bar*u[k],  y[k] = 2Re(C x[k+1]) + D u[k]
Convolution mode: y = K * u + D u with K[l] = 2Re(C B_bar A_bar^l). Step mode uses the real
form of the same recurrence: s = [Re x; Im x] and the output row C~ = C A_bar,
y[k] = 2Re(C~ x[k]) + (2Re(C B_bar) + D) u[k].
"""

from __future__ import annotations

import math

import torch
from torch import nn


def init_A(H: int, P: int, init: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(log_A_re, A_im) of shape (H, P): S4D-Lin or S4D-Inv."""
    n = torch.arange(P, dtype=torch.float32)  # (P,)
    if init == "lin":
        im = math.pi * n
    elif init == "inv":
        N = 2 * P
        im = (N / math.pi) * (N / (2 * n + 1) - 1)
    else:
        raise ValueError(f"init must be 'lin' or 'inv', got {init!r}")
    log_re = torch.full((H, P), math.log(0.5))  # (H, P)
    return log_re, im.expand(H, P).clone()  # (H, P) (H, P)


class S4D(nn.Module):
    """One S4D layer of H independent channels with P complex modes each."""

    def __init__(self, H: int, P: int, init: str = "lin", dt_min: float = 1e-3,
                 dt_max: float = 1e-1, seed: int | None = None):
        super().__init__()
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        self.H, self.P = H, P
        log_dt = torch.rand(H, generator=g) * (math.log(dt_max) - math.log(dt_min)) \
            + math.log(dt_min)  # (H,)
        log_re, im = init_A(H, P, init)
        self.log_dt = nn.Parameter(log_dt)
        self.log_A_re = nn.Parameter(log_re)
        self.A_im = nn.Parameter(im)
        self.C = nn.Parameter(torch.randn(H, P, 2, generator=g) * math.sqrt(0.5))  # (H, P, 2)
        self.D = nn.Parameter(torch.randn(H, generator=g))  # (H,)

    def dt(self) -> torch.Tensor:
        return torch.exp(self.log_dt)  # (H,)

    def continuous_A(self) -> torch.Tensor:
        return torch.complex(-torch.exp(self.log_A_re), self.A_im)  # (H, P)

    def discretize(self, dt: torch.Tensor | None = None):
        """Complex (A_bar, B_bar) of shape (H, P) by zero-order hold."""
        dt = self.dt() if dt is None else dt  # (H,)
        A = self.continuous_A()  # (H, P)
        A_bar = torch.exp(dt[:, None] * A)  # (H, P)
        B_bar = (A_bar - 1) / A  # (H, P)
        return A_bar, B_bar

    def c_complex(self) -> torch.Tensor:
        return torch.view_as_complex(self.C.contiguous())  # (H, P)

    def kernel(self, L: int) -> torch.Tensor:
        """K[h, l] = 2Re(sum_p C B_bar A_bar^l), shape (H, L)."""
        A_bar, B_bar = self.discretize()
        dtA = self.dt()[:, None] * self.continuous_A()  # (H, P)
        pos = torch.arange(L, dtype=torch.float32)  # (L,)
        V = torch.exp(torch.einsum("hp,l->hpl", dtA, pos.to(dtA.dtype)))  # (H, P, L)
        CB = self.c_complex() * B_bar  # (H, P)
        return 2 * torch.einsum("hp,hpl->hl", CB, V).real  # (H, L)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """Convolution mode: u (B, L, H) -> y (B, L, H), causal, by FFT."""
        Bsz, L, H = u.shape
        k = self.kernel(L)  # (H, L)
        n = 2 * L
        uf = torch.fft.rfft(u.transpose(1, 2), n=n)  # (B, H, n/2+1)
        kf = torch.fft.rfft(k, n=n)  # (H, n/2+1)
        y = torch.fft.irfft(uf * kf, n=n)[..., :L]  # (B, H, L)
        return y.transpose(1, 2) + u * self.D  # (B, L, H)

    def step_matrices(self, dt: torch.Tensor | None = None):
        """Real-form step tensors: A (H,2,P), B (H,2,P), C row (H,2P), D~ (H,)."""
        A_bar, B_bar = self.discretize(dt)
        C = self.c_complex()  # (H, P)
        Ct = C * A_bar  # (H, P)  output row acts on the old state
        A = torch.stack([A_bar.real, A_bar.imag], dim=1)  # (H, 2, P)
        Bm = torch.stack([B_bar.real, B_bar.imag], dim=1)  # (H, 2, P)
        Crow = torch.cat([2 * Ct.real, -2 * Ct.imag], dim=-1)  # (H, 2P)
        Dt = 2 * (C * B_bar).real.sum(-1) + self.D  # (H,)
        return A, Bm, Crow, Dt

    def step(self, u: torch.Tensor, s: torch.Tensor, mats=None):
        """Float step: u (B, H), s (B, H, 2P) -> y (B, H), s_new (B, H, 2P)."""
        A, Bm, Crow, Dt = self.step_matrices() if mats is None else mats
        P = s.shape[-1] // 2
        sr, si = s[..., :P], s[..., P:]  # (B, H, P)
        nr = A[:, 0] * sr - A[:, 1] * si + Bm[:, 0] * u[..., None]  # (B, H, P)
        ni = A[:, 1] * sr + A[:, 0] * si + Bm[:, 1] * u[..., None]  # (B, H, P)
        y = torch.einsum("bhn,hn->bh", s, Crow) + Dt * u  # (B, H)
        return y, torch.cat([nr, ni], dim=-1)

    def forward_recurrent(self, u: torch.Tensor, return_states: bool = False):
        """Step mode over a sequence: u (B, L, H) -> y (B, L, H) [, states (B, L, H, 2P)].

        states[:, k] is the state before step k (the one the output row reads).
        """
        Bsz, L, H = u.shape
        mats = self.step_matrices()
        s = u.new_zeros(Bsz, H, 2 * self.P)  # (B, H, 2P)
        ys, states = [], []
        for u_t in u.unbind(1):
            states.append(s)
            y, s = self.step(u_t, s, mats)
            ys.append(y)
        y = torch.stack(ys, dim=1)  # (B, L, H)
        return (y, torch.stack(states, dim=1)) if return_states else y

    @torch.no_grad()
    def mode_scores(self) -> torch.Tensor:
        """Importance of each mode: its H2 norm |C B_bar| / sqrt(1 - |A_bar|^2), (H, P)."""
        A_bar, B_bar = self.discretize()
        energy = (self.c_complex() * B_bar).abs() ** 2 / (1 - A_bar.abs() ** 2).clamp_min(1e-12)
        return energy.sqrt()

    @torch.no_grad()
    def keep_modes(self, idx: torch.Tensor) -> None:
        """Physically keep the modes idx (H, P') of each channel; the rest are removed."""
        for name in ("log_A_re", "A_im"):
            p = getattr(self, name)
            setattr(self, name, nn.Parameter(torch.gather(p, 1, idx)))
        C = torch.gather(self.C, 1, idx[..., None].expand(-1, -1, 2))
        self.C = nn.Parameter(C)
        self.P = idx.shape[1]
