"""The single source of truth for every config, quantizer and bundle key of qs4d.

`models/` and `export/` import these dataclasses instead of retyping a number; the runtime
reads a bundle's `spec.json` back into them with `Spec.from_dict`, which rejects unknown keys,
missing keys and foreign schema versions with an error that names the key.

Glossary: F input features, H width, N state size, P = N/2 complex modes, K classes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from .spec_base import SpecError, _check_keys, _coerce, _Config  # noqa: F401

SCHEMA_VERSION = 1

# Bundle file names (DESIGN section 4).
SPEC_FILE = "spec.json"
WEIGHTS_FILE = "weights.npz"
ONNX_FILE = "step.onnx"
ONNX_FLOAT_FILE = "step_float.onnx"
CROSSBAR_DIR = "crossbar"
MANIFEST_FILE = "manifest.json"
ONNX_SPEC_KEY = "qs4d.spec"  # metadata_props key carrying spec.json inside step.onnx

# Upper limits of the sizes a spec may declare: everything a bundle allocates follows from them
# (and from the caps on files in runtime/bundle.py), so a damaged spec cannot ask for gigabytes.
MODEL_LIMITS = {"d_input": 4096, "d_model": 4096, "d_state": 4096, "n_layers": 256,
                "n_classes": 4096}
MAX_SAMPLE_RATE = 384000  # Hz
MAX_N_FFT = 65536
MAX_N_MELS = 1024

# Tensor groups with their own bit width (DESIGN section 3).
GROUPS = ("weights", "A", "B", "C", "D", "dt", "state", "act", "adc")


@dataclass(frozen=True)
class ModelConfig(_Config):
    """Architecture of an S4D classifier (encoder, n_layers blocks, decoder)."""

    d_input: int = 1  # F
    d_model: int = 64  # H
    d_state: int = 64  # N (P = N/2 complex modes; conjugates implicit)
    n_layers: int = 4
    n_classes: int = 10  # K
    init: str = "lin"  # "lin" (S4D-Lin) or "inv" (S4D-Inv)
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    norm: str = "batch"  # "batch" (folded at export) or "none"
    pooling: str = "mean"  # sequence-level training target: "mean" or "last" of per-step logits
    dropout: float = 0.0
    modes: tuple = ()  # modes kept per layer after pruning; () means d_state // 2 everywhere

    def __post_init__(self):
        for name, top in MODEL_LIMITS.items():
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= top:
                raise SpecError(f"ModelConfig.{name}: an integer in 1..{top}, got {v!r}")
        if self.d_state % 2:
            raise SpecError(f"ModelConfig.d_state: must be even (P = N/2), got {self.d_state}")
        if self.init not in ("lin", "inv"):
            raise SpecError(f"ModelConfig.init: 'lin' or 'inv', got {self.init!r}")
        if self.norm not in ("batch", "none"):
            raise SpecError(f"ModelConfig.norm: 'batch' or 'none', got {self.norm!r}")
        if self.pooling not in ("mean", "last"):
            raise SpecError(f"ModelConfig.pooling: 'mean' or 'last', got {self.pooling!r}")
        if not 0 < self.dt_min <= self.dt_max:
            raise SpecError(f"ModelConfig.dt_min/dt_max: need 0 < dt_min <= dt_max, got "
                            f"{self.dt_min}, {self.dt_max}")
        if self.modes:
            if len(self.modes) != self.n_layers:
                raise SpecError(f"ModelConfig.modes: one entry per layer ({self.n_layers}), "
                                f"got {len(self.modes)}")
            for p in self.modes:
                if not isinstance(p, int) or not 1 <= p <= self.d_state // 2:
                    raise SpecError(f"ModelConfig.modes: each in 1..{self.d_state // 2}, got {p!r}")

    @property
    def layer_modes(self) -> tuple:
        """P per layer."""
        return tuple(self.modes) if self.modes else (self.d_state // 2,) * self.n_layers


@dataclass(frozen=True)
class QuantSpec(_Config):
    """One tensor group's quantizer: symmetric, zero point 0.

    bits=0 means float (not quantized). Ternary is bits=2 with narrow range {-1, 0, +1}.
    """

    bits: int = 0
    per_channel: bool = False
    narrow: bool = False  # qmin = -qmax; forced for ternary

    def __post_init__(self):
        if not isinstance(self.bits, int) or not (self.bits == 0 or 2 <= self.bits <= 24):
            raise SpecError(f"QuantSpec.bits: 0 (float) or 2..24, got {self.bits!r}")

    @property
    def enabled(self) -> bool:
        return self.bits > 0

    @property
    def ternary(self) -> bool:
        return self.bits == 2

    @property
    def qmax(self) -> int:
        return 2 ** (self.bits - 1) - 1

    @property
    def qmin(self) -> int:
        return -self.qmax if (self.narrow or self.ternary) else -(2 ** (self.bits - 1))


@dataclass(frozen=True)
class QuantConfig(_Config):
    """Bit width and granularity of every tensor group (DESIGN section 3).

    weights: encoder, decoder and mixing layers. A, B, C, D: the S4D step matrix blocks
    (A-bar, B-bar, the output row 2c(C A-bar), and 2Re(C B-bar) + D). dt: the step size Delta
    (a training-time group, baked into A-bar and B-bar at export). state: the recurrent state.
    act: activations between layers (= DAC input). adc: S4D layer outputs (= ADC output).
    """

    weights: QuantSpec = field(default_factory=QuantSpec)
    A: QuantSpec = field(default_factory=QuantSpec)
    B: QuantSpec = field(default_factory=QuantSpec)
    C: QuantSpec = field(default_factory=QuantSpec)
    D: QuantSpec = field(default_factory=QuantSpec)
    dt: QuantSpec = field(default_factory=QuantSpec)
    state: QuantSpec = field(default_factory=QuantSpec)
    act: QuantSpec = field(default_factory=QuantSpec)
    adc: QuantSpec = field(default_factory=QuantSpec)
    learn_scales: bool = True  # LSQ-style learned scales; False keeps calibrated scales

    @classmethod
    def from_dict(cls, d: dict, where: str | None = None) -> QuantConfig:
        where = where or "QuantConfig"
        _check_keys(cls, d, where)
        kw: dict[str, Any] = {}
        for g in GROUPS:
            if g in d:
                kw[g] = QuantSpec.from_dict(d[g], f"{where}.{g}")
        if "learn_scales" in d:
            kw["learn_scales"] = _coerce(d["learn_scales"], True, f"{where}.learn_scales")
        return cls(**kw)

    def __post_init__(self):
        for g in ("state", "act", "adc"):
            if getattr(self, g).ternary:
                raise SpecError(f"QuantConfig.{g}: ternary is for weights only")

    @property
    def integer(self) -> bool:
        """True when every group the integer step uses is quantized (dt is training-only)."""
        return all(getattr(self, g).enabled for g in GROUPS if g != "dt")

    @property
    def any_enabled(self) -> bool:
        return any(getattr(self, g).enabled for g in GROUPS)

    @classmethod
    def uniform(cls, bits: int, *, weight_bits: int | None = None, state_bits: int | None = None,
                act_bits: int | None = None, adc_bits: int | None = None,
                per_channel: bool = True, learn_scales: bool = True) -> QuantConfig:
        """Homogeneous precision with optional overrides; S4D blocks per channel."""
        wb = bits if weight_bits is None else weight_bits
        sb = bits if state_bits is None else state_bits
        ab = bits if act_bits is None else act_bits
        cb = ab if adc_bits is None else adc_bits
        pc = QuantSpec(bits, per_channel=per_channel)
        return cls(
            weights=QuantSpec(wb, per_channel=per_channel),
            A=pc, B=pc, C=pc,
            D=QuantSpec(max(bits, 8), per_channel=per_channel),
            dt=pc,
            state=QuantSpec(sb, per_channel=per_channel),
            act=QuantSpec(ab), adc=QuantSpec(cb),
            learn_scales=learn_scales,
        )


@dataclass(frozen=True)
class FrontendConfig(_Config):
    """How raw input becomes one model step's features.

    kind "identity": the raw sample is the feature (ECG per sample, toy tasks).
    kind "logmel": streaming log-mel frames (audio); the model steps once per hop.
    kind "ecg": causal band-pass and optional decimation before the model; with `rhythm`, up to
    nine more features per step from the front end's own online R-peak detector (the
    prematurity of the latest detected beat and of the one before it, its shape's distance
    from the patient's template, its size, its prematurity against the last minute's mean
    RR, the previous beat's last three, and the time since the latest beat: `runtime/ecg.py`).
    `beat_wait_s` sets when a beat's class is read (BeatStream).
    """

    kind: str = "identity"
    sample_rate: int = 16000
    n_mels: int = 40
    win_ms: float = 25.0
    hop_ms: float = 10.0
    n_fft: int = 512
    f_min: float = 20.0
    f_max: float = 8000.0
    log_floor: float = 1e-6
    band_hz: tuple = (0.5, 40.0)
    decimate: int = 1
    norm_mean: tuple = ()  # per-feature normalization applied after the front end
    norm_std: tuple = ()
    rhythm: int = 0  # ecg: rhythm features appended from the detector: 0, 2, 4, 5 or 9 (runtime/ecg.py)
    beat_wait_s: float = 0.0  # ecg: 0 = a beat's class is read 0.25 s after its R peak; > 0 =
    # when the detector decides the next beat (so the following RR is known), at most this
    # long after the R peak (runtime/ecg.py, BeatStream)

    def __post_init__(self):
        if self.kind not in ("identity", "logmel", "ecg"):
            raise SpecError(f"FrontendConfig.kind: 'identity', 'logmel' or 'ecg', got {self.kind!r}")
        _int_in("sample_rate", self.sample_rate, 1, MAX_SAMPLE_RATE)
        _int_in("decimate", self.decimate, 1, 1024)
        _int_in("n_mels", self.n_mels, 1, MAX_N_MELS)
        _int_in("n_fft", self.n_fft, 1, MAX_N_FFT)
        for name in ("win_ms", "hop_ms", "log_floor"):
            if not _positive(getattr(self, name)):
                raise SpecError(f"FrontendConfig.{name}: a finite number > 0, got "
                                f"{getattr(self, name)!r}")
        for name in ("f_min", "f_max"):
            v = getattr(self, name)
            if not _number(v) or v < 0:
                raise SpecError(f"FrontendConfig.{name}: a finite number >= 0, got {v!r}")
        band = tuple(self.band_hz)
        if len(band) != 2 or not all(_positive(v) for v in band) or not band[0] < band[1]:
            raise SpecError(f"FrontendConfig.band_hz: [low, high] with 0 < low < high, got "
                            f"{list(band)}")
        if self.kind == "ecg" and not band[1] < self.sample_rate / 2:
            raise SpecError(f"FrontendConfig.band_hz: high edge {band[1]} must be below "
                            f"sample_rate / 2 = {self.sample_rate / 2}")
        if self.kind == "logmel":
            win, hop = self.win_samples, self.hop_samples
            if not 1 <= hop <= win <= self.n_fft:
                raise SpecError(f"FrontendConfig.win_ms/hop_ms/n_fft: need 1 <= hop <= window "
                                f"<= n_fft samples, got hop {hop}, window {win}, n_fft "
                                f"{self.n_fft}")
            if not self.f_min < self.f_max <= self.sample_rate / 2:
                raise SpecError(f"FrontendConfig.f_min/f_max: need f_min < f_max <= "
                                f"sample_rate / 2 = {self.sample_rate / 2}, got {self.f_min}, "
                                f"{self.f_max}")
        mean, std = tuple(self.norm_mean), tuple(self.norm_std)
        if len(mean) != len(std) or not all(_number(v) for v in mean) or not all(
                _positive(v) for v in std):
            raise SpecError(f"FrontendConfig.norm_mean/norm_std: equally long lists of finite "
                            f"numbers, every std > 0; got {list(mean)[:8]}, {list(std)[:8]}")

        _check_rhythm(self, "FrontendConfig")
        if self.rhythm and self.kind != "ecg":
            raise SpecError(f"FrontendConfig.rhythm: ECG front ends only, got kind {self.kind!r}")
        w = self.beat_wait_s
        if not _number(w) or not (w == 0 or 0.3 <= w <= MAX_BEAT_WAIT_S):
            raise SpecError(f"FrontendConfig.beat_wait_s: 0 or a number of seconds in "
                            f"[0.3, {MAX_BEAT_WAIT_S}], got {w!r}")
        if w and (self.kind != "ecg" or not self.rhythm):
            raise SpecError("FrontendConfig.beat_wait_s: needs an ECG front end with rhythm "
                            f"features (their detector times the decision), got kind "
                            f"{self.kind!r}, rhythm {self.rhythm}")

    @property
    def win_samples(self) -> int:
        """Log-mel analysis window in samples (the one place the geometry is derived)."""
        return int(round(self.sample_rate * self.win_ms / 1000.0))

    @property
    def hop_samples(self) -> int:
        """Log-mel hop in samples: the model steps once per hop."""
        return int(round(self.sample_rate * self.hop_ms / 1000.0))

    def features(self) -> int | None:
        """Features per step this front end produces (None: the model's d_input)."""
        ecg = 1 + int(getattr(self, "rhythm", 0))  # the ECG feature and the rhythm features
        return {"logmel": self.n_mels, "ecg": ecg}.get(self.kind)


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _positive(v) -> bool:
    return _number(v) and v > 0


def _int_in(name: str, v, lo: int, hi: int) -> None:
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise SpecError(f"FrontendConfig.{name}: an integer in {lo}..{hi}, got {v!r}")


RHYTHM_CHOICES = (0, 2, 4, 5, 9)
MAX_BEAT_WAIT_S = 4.0  # BeatStream keeps 8 s of logits rows


def _check_rhythm(cfg, where: str) -> None:
    """rhythm is 0, 2, 4, 5 or 9 features; true (the first format, prematurity only) means 2."""
    v = cfg.rhythm
    if v is True:
        object.__setattr__(cfg, "rhythm", 2)
    elif v is False:
        object.__setattr__(cfg, "rhythm", 0)
    elif not isinstance(v, int) or v not in RHYTHM_CHOICES:
        raise SpecError(f"{where}.rhythm: one of {list(RHYTHM_CHOICES)} (features), got {v!r}")


@dataclass(frozen=True)
class Spec(_Config):
    """Everything `spec.json` holds."""

    model: ModelConfig
    quant: QuantConfig = field(default_factory=QuantConfig)
    frontend: FrontendConfig = field(default_factory=FrontendConfig)
    labels: tuple = ()
    metrics: dict = field(default_factory=dict)
    name: str = ""
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def from_dict(cls, d: dict, where: str = SPEC_FILE) -> Spec:
        _check_keys(cls, d, where)
        ver = d.get("schema_version", SCHEMA_VERSION)
        if ver != SCHEMA_VERSION:
            raise SpecError(f"{where}.schema_version: this qs4d reads version {SCHEMA_VERSION}, "
                            f"got {ver!r}")
        model = ModelConfig.from_dict(d["model"], f"{where}.model")
        quant = QuantConfig.from_dict(d.get("quant", {}), f"{where}.quant")
        frontend = FrontendConfig.from_dict(d.get("frontend", {}), f"{where}.frontend")
        labels = d.get("labels", ())
        if not isinstance(labels, (list, tuple)) or not all(isinstance(x, str) for x in labels):
            raise SpecError(f"{where}.labels: expected a list of strings, got {labels!r}")
        labels = tuple(labels)
        if labels and len(labels) != model.n_classes:
            raise SpecError(f"{where}.labels: {len(labels)} labels for {model.n_classes} classes")
        metrics = d.get("metrics", {})
        if not isinstance(metrics, dict):
            raise SpecError(f"{where}.metrics: expected an object")
        name = _coerce(d.get("name", ""), "", f"{where}.name")
        try:
            return cls(model=model, quant=quant, frontend=frontend, labels=labels,
                       metrics=metrics, name=name, schema_version=ver)
        except SpecError as e:
            raise SpecError(f"{where}: {e}") from None

    def __post_init__(self):
        fe, F = self.frontend, self.model.d_input
        if fe.features() not in (None, F):
            raise SpecError(f"model.d_input is {F} but a {fe.kind!r} front end gives "
                            f"{fe.features()} feature(s) per step")
        n_norm = len(fe.norm_mean)
        if n_norm and n_norm != (fe.features() or F):
            raise SpecError(f"frontend.norm_mean/norm_std hold {n_norm} values for "
                            f"{fe.features() or F} feature(s)")

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, where: str = SPEC_FILE) -> Spec:
        from .safe_io import parse_json

        return cls.from_dict(parse_json(text, SpecError, where), where)


from .spec_crossbar import READ_NOISE_MODELS, CrossbarConfig  # noqa: E402,F401
from .spec_layout import layer_key, weight_shapes  # noqa: E402,F401  (bundle keys)
from .spec_train import KWS_TASKS, REAL_KWS_TASKS, TASKS, TrainConfig  # noqa: E402,F401
