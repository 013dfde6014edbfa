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
    kind "ecg": causal band-pass and optional decimation before the model; with `rhythm`, four
    more features per step from the front end's own online R-peak detector (the prematurity
    of the latest detected beat and of the one before it, its shape's distance from the
    patient's template and its size: `runtime/ecg.py`).
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
    rhythm: int = 0  # ecg: rhythm features appended from the detector: 0, 2 or 4 (runtime/ecg.py)

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
            win = round(self.sample_rate * self.win_ms / 1000.0)
            hop = round(self.sample_rate * self.hop_ms / 1000.0)
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


RHYTHM_CHOICES = (0, 2, 4)


def _check_rhythm(cfg, where: str) -> None:
    """rhythm is 0, 2 or 4 features; true (the first format, prematurity only) means 2."""
    v = cfg.rhythm
    if v is True:
        object.__setattr__(cfg, "rhythm", 2)
    elif v is False:
        object.__setattr__(cfg, "rhythm", 0)
    elif not isinstance(v, int) or v not in RHYTHM_CHOICES:
        raise SpecError(f"{where}.rhythm: one of {list(RHYTHM_CHOICES)} (features), got {v!r}")


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


@dataclass(frozen=True)
class TrainConfig(_Config):
    """A training recipe: float convolution-mode pre-training, optional mode pruning, then
    recurrent-mode QAT fine-tuning (or PTQ: calibration only)."""

    task: str = "toy"  # "toy", "kws", "ecg", "sc12", "digits" (TASKS)
    data: str = ""  # data set directory (kws, ecg)
    seed: int = 0
    batch_size: int = 64
    epochs_float: int = 10
    epochs_prune: int = 0
    epochs_qat: int = 3
    lr: float = 3e-3
    lr_ssm: float = 1e-3  # A, dt: lower rate, no weight decay (S4 practice)
    lr_qat: float = 5e-4
    weight_decay: float = 0.01
    noise_std: float = 0.0  # relative Gaussian noise during QAT training
    noise_kind: str = "weight"  # "weight": N(0, noise_std max|w|) on the weights per forward;
    # "read": per step and row, N(0, noise_std^2 sum w^2 x^2) on every product (relative read)
    prune_keep: int = 0  # modes kept per channel after pruning; 0 = no pruning
    ptq: bool = False  # calibrate the quantizers, no QAT training
    calib_batches: int = 4
    max_train: int = 0  # cap on training examples (0 = all)
    label_smoothing: float = 0.0
    init: str = ""  # start from this checkpoint's weights (e.g. a float run's float.pt)
    qat_batches: int = 0  # batches per QAT epoch (0 = the whole training set)
    exclude_train: tuple = ()  # kws: speaker-name prefixes left out of the training split
    feat_warp: float = 0.0  # kws: per-clip VTLP warp of the mel axis, factor in [1 -+ w]
    feat_eq_db: float = 0.0  # kws: per-clip smooth random EQ of the log-mel, RMS in dB
    loud_noise_clips: int = 0  # kws: extra _silence_ clips of train noise at -45..-10 dBFS
    logit_adjust: float = 0.0  # tau: train on logits + tau log(class prior) (Menon et al. 2021)
    f_max: float = 0.0  # kws: top edge (Hz) of the log-mel front end; 0 = the task's (8000)
    band_cutoff_min: float = 0.0  # kws: telephone-band augmentation cuts uniformly in
    # [band_cutoff_min, 4000] Hz instead of at 4000 (0 = at 4000)
    qat_distill: float = 0.0  # a: QAT loss (1 - a) CE + a KL(float teacher || QAT model)
    fold: str = ""  # digits: the FSDD speaker held out (leave-one-speaker-out test fold)
    synth: str = ""  # sc12, digits: a `qs4d data kws` build whose clips join the training set
    rhythm: int = 0  # ecg: rhythm features the front end appends (0, 2 or 4)
    noise_data: str = ""  # ecg: folder of WFDB noise records (MIT-BIH NSTDB bw, em, ma)
    noise_copies: int = 0  # ecg: noisy copies of every training record (needs noise_data)
    extra_data: str = ""  # ecg: a `qs4d data ecg` folder whose train split is added

    def __post_init__(self):
        if self.task not in TASKS:
            raise SpecError(f"TrainConfig.task: one of {TASKS}, got {self.task!r}")
        if self.noise_kind not in ("weight", "read"):
            raise SpecError(f"TrainConfig.noise_kind: 'weight' or 'read', got {self.noise_kind!r}")
        if self.batch_size < 1:
            raise SpecError(f"TrainConfig.batch_size: must be >= 1, got {self.batch_size}")
        for name in ("epochs_float", "epochs_prune", "epochs_qat", "prune_keep", "max_train",
                     "qat_batches", "loud_noise_clips", "noise_copies"):
            if getattr(self, name) < 0:
                raise SpecError(f"TrainConfig.{name}: must be >= 0, got {getattr(self, name)}")
        if isinstance(self.exclude_train, str) or not all(
                isinstance(v, str) and v for v in self.exclude_train):
            raise SpecError("TrainConfig.exclude_train: a list of non-empty speaker prefixes, "
                            f"got {self.exclude_train!r}")
        object.__setattr__(self, "exclude_train", tuple(self.exclude_train))
        if not 0.0 <= self.feat_warp < 0.5:
            raise SpecError(f"TrainConfig.feat_warp: must be in [0, 0.5), got {self.feat_warp}")
        kws_only = [n for n in ("feat_warp", "feat_eq_db", "loud_noise_clips", "f_max",
                                "band_cutoff_min")
                    if getattr(self, n)]
        if kws_only and self.task not in KWS_TASKS:
            raise SpecError(f"TrainConfig.{kws_only[0]}: keyword spotting only (tasks "
                            f"{KWS_TASKS}), got task {self.task!r}")
        if self.synth and self.task not in REAL_KWS_TASKS:
            raise SpecError(f"TrainConfig.synth: tasks {REAL_KWS_TASKS} only, got {self.task!r}")
        if bool(self.fold) != (self.task == "digits"):
            raise SpecError("TrainConfig.fold: the digits task needs it (an FSDD speaker), other "
                            f"tasks take none; got task {self.task!r}, fold {self.fold!r}")
        _check_rhythm(self, "TrainConfig")
        ecg_only = [n for n in ("rhythm", "noise_data", "noise_copies", "extra_data")
                    if getattr(self, n)]
        if ecg_only and self.task != "ecg":
            raise SpecError(f"TrainConfig.{ecg_only[0]}: ECG only (task 'ecg'), got task "
                            f"{self.task!r}")
        if self.noise_copies and not self.noise_data:
            raise SpecError("TrainConfig.noise_copies: needs noise_data (a folder of noise "
                            "records)")
        if self.logit_adjust < 0:
            raise SpecError(f"TrainConfig.logit_adjust: must be >= 0, got {self.logit_adjust}")
        if not 0.0 <= self.qat_distill <= 1.0:
            raise SpecError(f"TrainConfig.qat_distill: must be in [0, 1], got {self.qat_distill}")
        if self.feat_eq_db < 0:
            raise SpecError(f"TrainConfig.feat_eq_db: must be >= 0, got {self.feat_eq_db}")
        if self.band_cutoff_min and not 1000.0 <= self.band_cutoff_min <= 4000.0:
            raise SpecError(f"TrainConfig.band_cutoff_min: 0 or 1000..4000 Hz, got "
                            f"{self.band_cutoff_min}")
        if self.f_max and not 1000.0 <= self.f_max <= 8000.0:
            raise SpecError(f"TrainConfig.f_max: 0 (the task's) or 1000..8000 Hz, got {self.f_max}")


TASKS = ("toy", "kws", "ecg", "sc12", "digits")
KWS_TASKS = ("kws", "sc12", "digits")  # keyword spotting: the kws-only train options apply
REAL_KWS_TASKS = ("sc12", "digits")  # on real speakers (models/real_kws_task.py)


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


from .spec_layout import layer_key, weight_shapes  # noqa: E402,F401  (bundle keys)
