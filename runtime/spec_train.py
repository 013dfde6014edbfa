"""Training recipes' configuration (`TrainConfig`): what `qs4d train` reads from a recipe's
[train] table. The runtime never uses it; it lives beside the bundle's configs so that a
checkpoint and its card carry one typed, strictly checked record. Re-exported by `spec`.
"""

from __future__ import annotations

from dataclasses import dataclass

from .spec import _check_rhythm
from .spec_base import SpecError, _Config


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
    speech_negatives: int = 0  # sc12, digits: 1-s cuts of running speech (Asterisk's English
    # prompts) as _unknown_, so that speech between keywords does not fire
    logit_adjust: float = 0.0  # tau: train on logits + tau log(class prior) (Menon et al. 2021)
    f_max: float = 0.0  # kws: top edge (Hz) of the log-mel front end; 0 = the task's (8000)
    band_cutoff_min: float = 0.0  # kws: telephone-band augmentation cuts uniformly in
    # [band_cutoff_min, 4000] Hz instead of at 4000 (0 = at 4000)
    qat_distill: float = 0.0  # a: QAT loss (1 - a) CE + a KL(float teacher || QAT model)
    fold: str = ""  # digits: the FSDD speaker held out (leave-one-speaker-out test fold)
    synth: str = ""  # sc12, digits: a `qs4d data kws` build whose clips join the training set
    rhythm: int = 0  # ecg: rhythm features the front end appends (0, 2, 4, 5 or 9)
    beat_wait_s: float = 0.0  # ecg: read a beat's class at the next beat, at most this long
    # after its R peak (0: 0.25 s after it); FrontendConfig.beat_wait_s
    noise_data: str = ""  # ecg: folder of WFDB noise records (MIT-BIH NSTDB bw, em, ma)
    noise_copies: int = 0  # ecg: noisy copies of every training record (needs noise_data)
    extra_data: str = ""  # ecg: a `qs4d data ecg` folder whose train split is added
    oversample: int = 4  # ecg: each minority class repeated up to this many times its count
    # (and to at most a quarter of the N count)

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
        if self.speech_negatives < 0:
            raise SpecError("TrainConfig.speech_negatives: must be >= 0, got "
                            f"{self.speech_negatives}")
        if self.speech_negatives and self.task not in REAL_KWS_TASKS:
            raise SpecError(f"TrainConfig.speech_negatives: tasks {REAL_KWS_TASKS} only, got "
                            f"{self.task!r}")
        if self.synth and self.task not in REAL_KWS_TASKS:
            raise SpecError(f"TrainConfig.synth: tasks {REAL_KWS_TASKS} only, got {self.task!r}")
        if bool(self.fold) != (self.task == "digits"):
            raise SpecError("TrainConfig.fold: the digits task needs it (an FSDD speaker), other "
                            f"tasks take none; got task {self.task!r}, fold {self.fold!r}")
        _check_rhythm(self, "TrainConfig")
        ecg_only = [n for n in ("rhythm", "noise_data", "noise_copies", "extra_data",
                                "beat_wait_s")
                    if getattr(self, n)]
        if ecg_only and self.task != "ecg":
            raise SpecError(f"TrainConfig.{ecg_only[0]}: ECG only (task 'ecg'), got task "
                            f"{self.task!r}")
        if self.oversample < 1:
            raise SpecError(f"TrainConfig.oversample: must be >= 1, got {self.oversample}")
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
