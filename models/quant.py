"""Torch fake quantization, integer-exact: the same float32 operations as `qs4d.runtime.quant`.

Every quantized tensor is carried as integer-valued codes (a float tensor holding exact
integers) plus its scale. Forward values equal the numpy integer reference bit for bit;
gradients pass straight through rounding (STE) and clipping zeroes them outside the range,
which gives the LSQ gradient for learned scales.

Accumulators of code products are computed in float32 when the bound says every partial sum
is an exact float32 integer (< 2^24), else in float64, then cast to float32 (round to nearest
even, as numpy's int -> float32 cast), then multiplied by the float32 combined scale.
"""

from __future__ import annotations

import torch
from torch import nn

from qs4d.runtime.quant import qrange
from qs4d.runtime.spec import QuantSpec

EXACT_F32 = 2**24


class _RoundSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return torch.round(x)  # half to even

    @staticmethod
    def backward(ctx, g):
        return g


def round_ste(x: torch.Tensor) -> torch.Tensor:
    return _RoundSTE.apply(x)


def quantize_codes(x: torch.Tensor, scale: torch.Tensor, qmin: int, qmax: int) -> torch.Tensor:
    """clip(rint(x / scale)) with STE; float32 true division (scale expanded, never a scalar)."""
    s = scale.to(torch.float32).expand_as(x) if scale.dim() == 0 else scale
    return torch.clamp(round_ste(x.to(torch.float32) / s), qmin, qmax)


def multiplier(s_in: torch.Tensor, s_w, s_out: torch.Tensor) -> torch.Tensor:
    """float32(float32(s_in * s_w) / s_out), as runtime.quant.multiplier."""
    s_w = torch.as_tensor(s_w, dtype=torch.float32)
    return (s_in.to(torch.float32) * s_w) / s_out.to(torch.float32)


def requantize(terms, qmin: int, qmax: int) -> torch.Tensor:
    """clip(rint(sum_i float32(acc_i) * m_i)) over [(acc_i, m_i)], summed in order, with STE."""
    total = None
    for acc, m in terms:
        t = acc.to(torch.float32) * m
        total = t if total is None else total + t
    return torch.clamp(round_ste(total), qmin, qmax)


def acc_dtype(bound: float) -> torch.dtype:
    """float32 if every partial sum of code products is exact in float32, else float64."""
    return torch.float32 if bound < EXACT_F32 else torch.float64


def int_linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, bound: float):
    """Exact integer x @ w.T + b on codes, returned as float32 or float64 integers."""
    dt = acc_dtype(bound)
    acc = x.to(dt) @ w.to(dt).t()
    return acc if b is None else acc + b.to(dt)


class Quantizer(nn.Module):
    """A symmetric quantizer of one tensor point: its scale is calibrated, then learned (LSQ,
    in the log domain).

    `channels` > 1 and spec.per_channel give one scale per channel along `axis`.
    """

    def __init__(self, spec: QuantSpec, channels: int = 1, axis: int = 0, learn: bool = True):
        super().__init__()
        if not spec.enabled:
            raise ValueError("Quantizer needs bits > 0")
        self.spec, self.axis = spec, axis
        self.qmin, self.qmax = qrange(spec.bits, spec.narrow)
        shape = (channels,) if spec.per_channel else ()
        self.raw = nn.Parameter(torch.zeros(shape), requires_grad=learn)  # log(scale)

    @property
    def per_channel(self) -> bool:
        return self.raw.dim() == 1

    def scale(self) -> torch.Tensor:
        """The scale exp(raw) > 0 used in forward and exported; the same float32 value in both.

        Learned in the log domain, so an optimizer step changes it by a relative amount.
        """
        return torch.exp(self.raw)

    def scale_for(self, x: torch.Tensor) -> torch.Tensor:
        """The scale reshaped to broadcast along `axis` of x."""
        s = self.scale()
        if not self.per_channel:
            return s
        shape = [1] * x.dim()
        shape[self.axis % x.dim()] = -1
        return s.reshape(shape)

    def codes(self, x: torch.Tensor) -> torch.Tensor:
        return quantize_codes(x, self.scale_for(x), self.qmin, self.qmax)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Fake quantization: dequantized codes."""
        return self.codes(x) * self.scale_for(x)

    @torch.no_grad()
    def calibrate(self, x: torch.Tensor, method: str = "max", percentile: float = 99.99) -> None:
        """Set the scale from data: max |x|, a percentile of |x|, or the MSE-optimal clip."""
        x = x.detach().to(torch.float32)
        if self.per_channel:
            x = x.movedim(self.axis % x.dim(), 0).reshape(self.raw.shape[0], -1)  # (C, n)
        else:
            x = x.reshape(1, -1)  # (1, n)
        a = x.abs()
        if method == "max":
            r = a.amax(dim=1)
        elif method == "percentile":
            r = torch.quantile(a[:, :: max(1, a.shape[1] // 100000)], percentile / 100, dim=1)
        elif method == "mse":
            r = self._mse_range(x)
        else:
            raise ValueError(f"calibration method must be max, percentile or mse, got {method!r}")
        if self.spec.ternary and method != "mse":
            r = 1.4 * a.mean(dim=1) * self.qmax  # TWN: threshold 0.7 mean|w| = scale / 2
        s = (r / self.qmax).clamp_min(1e-8)
        self.raw.copy_(torch.log(s if self.per_channel else s[0]))

    def _mse_range(self, x: torch.Tensor) -> torch.Tensor:
        """Per row, the clipping range among 100 candidates that minimizes the squared error."""
        amax = x.abs().amax(dim=1).clamp_min(1e-8)  # (C,)
        best, best_err = amax.clone(), torch.full_like(amax, float("inf"))
        for frac in torch.linspace(0.05, 1.0, 100):
            r = amax * frac
            s = (r / self.qmax)[:, None]
            err = ((torch.clamp(torch.round(x / s), self.qmin, self.qmax) * s - x) ** 2).mean(1)
            better = err < best_err
            best, best_err = torch.where(better, r, best), torch.where(better, err, best_err)
        return best


def lut_apply(codes: torch.Tensor, table: torch.Tensor, qmin: int,
              surrogate: torch.Tensor) -> torch.Tensor:
    """Lookup-table nonlinearity on codes with a smooth surrogate for the gradient.

    Forward: exactly table[codes - qmin]. Backward: d surrogate / d input.
    """
    exact = table[(codes.detach() - qmin).long()]
    return round_ste(surrogate + (exact - surrogate).detach())
