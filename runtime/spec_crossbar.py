"""The memristive crossbar's configuration (`CrossbarConfig`): mapping, device physics and
converters of the IMSSA simulator. Re-exported by `spec`.
"""

from __future__ import annotations

from dataclasses import dataclass

from .spec_base import SpecError, _Config

READ_NOISE_MODELS = ("span", "relative")


@dataclass(frozen=True)
class CrossbarConfig(_Config):
    """Memristive crossbar mapping and the IMSSA simulator's non-idealities.

    Conductances in microsiemens. sigma_prog is relative to the conductance range
    (g_max - g_min); sigma_read too with read_noise "span", and relative to each device's own
    conductance G with read_noise "relative" (sigma_G / G, the usual device figure). Bits of
    0 mean ideal (unbounded precision); levels of 0 mean as many
    programmable levels as each block's integer codes need (an exact mapping). weight_bits:
    a float bundle has no codes; its crossbar holds its weights rounded per output channel to
    codes of this many bits (post-training quantization; integer bundles keep their own codes).
    """

    g_min: float = 1.0
    g_max: float = 40.0
    levels: int = 0
    array_rows: int = 128
    array_cols: int = 128
    dac_bits: int = 0
    adc_bits: int = 0
    sigma_prog: float = 0.0
    sigma_read: float = 0.0
    read_noise: str = "span"  # "span": sigma_read (g_max - g_min); "relative": sigma_read G
    drift_nu: float = 0.0
    drift_t0: float = 1.0
    step_seconds: float = 0.01
    seed: int = 0
    layers: tuple = ("s4d",)  # which layers run on crossbars: "s4d", "mix", "enc", "dec"
    weight_bits: int = 8  # codes programmed from a float bundle's weights (runtime/program.py)

    def __post_init__(self):
        if not 0 <= self.g_min < self.g_max:
            raise SpecError(f"CrossbarConfig.g_min/g_max: need 0 <= g_min < g_max, got "
                            f"{self.g_min}, {self.g_max}")
        if self.levels == 1 or self.levels < 0:
            raise SpecError(f"CrossbarConfig.levels: 0 (exact) or >= 2, got {self.levels}")
        if min(self.array_rows, self.array_cols) < 2:
            raise SpecError("CrossbarConfig.array_rows/array_cols: must be >= 2")
        for name in ("sigma_prog", "sigma_read", "drift_nu"):
            if getattr(self, name) < 0:
                raise SpecError(f"CrossbarConfig.{name}: must be >= 0, got {getattr(self, name)}")
        if self.read_noise not in READ_NOISE_MODELS:
            raise SpecError(f"CrossbarConfig.read_noise: one of {list(READ_NOISE_MODELS)}, got "
                            f"{self.read_noise!r}")
        if not self.drift_t0 > 0:
            raise SpecError(f"CrossbarConfig.drift_t0: must be > 0 seconds, got {self.drift_t0}")
        if not isinstance(self.weight_bits, int) or not 2 <= self.weight_bits <= 16:
            raise SpecError(f"CrossbarConfig.weight_bits: 2..16, got {self.weight_bits!r}")
        bad = sorted(set(self.layers) - {"s4d", "mix", "enc", "dec"})
        if bad:
            raise SpecError(f"CrossbarConfig.layers: unknown layer kinds {bad}")

    @property
    def ideal(self) -> bool:
        return (self.dac_bits == 0 and self.adc_bits == 0 and self.sigma_prog == 0
                and self.sigma_read == 0 and self.drift_nu == 0)
