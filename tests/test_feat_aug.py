"""Log-mel speaker and channel augmentation (models/feat_aug.py): what each transform does to a
spectrum, its statistics, its reproducibility, and how a training config switches it on; and
the logit-adjusted training loss (train.logit_adjust), the other real-speaker measure."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="feature augmentation runs in training (extra 'train')")
from qs4d.models.feat_aug import DB_TO_LOG_POWER, FeatureAugment, band_centres  # noqa: E402
from qs4d.models.kws_task import FRONTEND  # noqa: E402
from qs4d.runtime.frontend import mel_filterbank  # noqa: E402
from qs4d.runtime.spec import SpecError, TrainConfig  # noqa: E402

F = FRONTEND.n_mels


def _aug(warp=0.0, eq_db=0.0, mean=None, std=None):
    mean = np.zeros(F) if mean is None else mean
    std = np.ones(F) if std is None else std
    return FeatureAugment(FRONTEND, mean, std, warp, eq_db)


def test_band_centres_are_the_filterbank_peaks():
    fb = mel_filterbank(FRONTEND.sample_rate, FRONTEND.n_fft, F, FRONTEND.f_min, FRONTEND.f_max)
    bins = np.arange(FRONTEND.n_fft // 2 + 1) * FRONTEND.sample_rate / FRONTEND.n_fft
    peaks = bins[fb.argmax(1)]  # (F,)
    c = band_centres(FRONTEND)
    assert c.shape == (F,) and np.all(np.diff(c) > 0)
    assert np.all(np.abs(peaks - c) <= FRONTEND.sample_rate / FRONTEND.n_fft)


def test_off_is_the_identity_and_same_generator_same_output():
    x = torch.randn(3, 20, F)
    assert torch.equal(_aug()(x, torch.Generator().manual_seed(0)), x)
    a = _aug(0.15, 6.0, np.random.default_rng(1).normal(size=F), np.full(F, 2.0))
    y1 = a(x, torch.Generator().manual_seed(5))
    y2 = a(x, torch.Generator().manual_seed(5))
    assert torch.equal(y1, y2) and not torch.allclose(y1, x)


def test_warp_moves_a_formant_by_the_factor():
    """A spectral peak at band centre c reads back at c * a after warping by a."""
    a_fac = torch.tensor([0.9, 1.0, 1.12])
    aug = _aug(0.2)
    c = band_centres(FRONTEND)
    k = 25  # a band well inside the range for every factor
    pos = aug.warp_index(a_fac)  # (3, F)
    for row, a in zip(pos.numpy(), a_fac.numpy()):
        # the band that reads at fractional index k sits at c[k] * a
        j = np.interp(k, row, np.arange(F))
        assert np.interp(j, np.arange(F), c) == pytest.approx(c[k] * a, rel=0.01)
    np.testing.assert_allclose(pos[1].numpy(), np.arange(F), atol=1e-4)  # a = 1: identity
    assert float(pos.min()) >= 0 and float(pos.max()) <= F - 1


def test_warp_keeps_a_flat_spectrum_flat_and_works_in_log_power():
    mean, std = np.linspace(-3, 3, F), np.full(F, 2.0)
    aug = _aug(0.15, 0.0, mean, std)
    z = torch.full((4, 10, F), 1.5)  # un-normalized log power, flat
    x = (z - torch.tensor(mean, dtype=torch.float32)) / 2.0
    y = aug(x, torch.Generator().manual_seed(0)) * 2.0 + torch.tensor(mean, dtype=torch.float32)
    torch.testing.assert_close(y, z, atol=1e-5, rtol=0)


def test_eq_adds_one_smooth_curve_per_clip_of_the_set_rms():
    aug = _aug(0.0, 6.0)
    x = torch.zeros(4000, 3, F)
    d = aug(x, torch.Generator().manual_seed(0)) / DB_TO_LOG_POWER  # (n, T, F) dB
    assert torch.equal(d[:, 0], d[:, 2])  # the same curve on every frame of a clip
    g = d[:, 0] @ aug.basis.T / (aug.basis ** 2).sum(1)  # (n, 3) least-squares coefficients
    torch.testing.assert_close(g @ aug.basis, d[:, 0], atol=1e-3, rtol=0)  # in the basis
    rms = float(torch.sqrt((g ** 2).sum(1).mean()))
    assert rms == pytest.approx(6.0, rel=0.05)


def test_bad_settings_are_refused():
    for warp, eq in ((0.5, 0.0), (-0.1, 0.0), (0.1, -1.0)):
        with pytest.raises(ValueError):
            _aug(warp, eq)
    with pytest.raises(ValueError, match="shape"):
        FeatureAugment(FRONTEND, np.zeros(F - 1), np.ones(F), 0.1, 0.0)
    cfg = TrainConfig.from_dict({"task": "kws", "feat_warp": 0.1, "feat_eq_db": 4.0})
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    for bad in ({"feat_warp": 0.6}, {"feat_eq_db": -2.0}):
        with pytest.raises(SpecError, match="feat_"):
            TrainConfig.from_dict({"task": "kws", **bad})
    for name, value in (("feat_warp", 0.1), ("feat_eq_db", 3.0), ("loud_noise_clips", 10)):
        with pytest.raises(SpecError, match=f"{name}: keyword spotting only"):
            TrainConfig.from_dict({"task": "ecg", name: value})


def test_train_epoch_uses_the_task_augmentation():
    """The training loop passes every batch through Task.augment; evaluation never does."""
    from qs4d.models.model import S4DClassifier
    from qs4d.models.tasks import Task
    from qs4d.models.train import evaluate, train_epoch
    from qs4d.runtime.spec import FrontendConfig, ModelConfig

    seen = []

    def spy(xb, gen):
        seen.append(xb.shape)
        return xb

    X, y = torch.randn(40, 8, 3), torch.randint(0, 2, (40,))
    task = Task(train=(X, y), val=(X, y), test=(X, y), labels=("a", "b"),
                frontend=FrontendConfig(kind="identity"), augment=spy)
    model = S4DClassifier(ModelConfig(d_input=3, d_model=8, d_state=4, n_layers=1, n_classes=2))
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    tcfg = TrainConfig(batch_size=16, epochs_float=1)
    train_epoch(model, task, opt, sched, tcfg, torch.Generator().manual_seed(0), "t")
    assert seen == [(16, 8, 3), (16, 8, 3), (8, 8, 3)]
    evaluate(model, task.val)
    assert len(seen) == 3


def test_feature_augmentation_enters_sweep_run_hashes_only_when_set():
    """Sweep runs stored before the fields existed keep their ids."""
    from qs4d.lab import sweep_config

    for name, value in (("feat_warp", 0.1), ("feat_eq_db", 3.0), ("logit_adjust", 0.5),
                        ("loud_noise_clips", 100)):
        assert name not in sweep_config._hashed(TrainConfig(task="kws"))
        assert name in sweep_config._hashed(TrainConfig(task="kws", **{name: value}))


def test_logit_shift_is_tau_log_prior_and_enters_only_the_training_loss(monkeypatch):
    from qs4d.models import train as train_mod
    from qs4d.models.model import S4DClassifier
    from qs4d.models.tasks import Task
    from qs4d.runtime.spec import FrontendConfig, ModelConfig

    y = torch.tensor([0, 0, 0, 1, 2, 2, 2, 2])
    torch.testing.assert_close(train_mod.logit_shift(y, 4, 0.0), torch.zeros(4))
    s = train_mod.logit_shift(y, 4, 0.5)
    torch.testing.assert_close(s[:3], 0.5 * torch.log(torch.tensor([3 / 8, 1 / 8, 4 / 8])))
    assert s[3] < -10  # an absent class: log of the clamped prior, not -inf
    with pytest.raises(SpecError, match="logit_adjust"):
        TrainConfig.from_dict({"task": "kws", "logit_adjust": -1.0})

    seen = []
    real_ce = train_mod.Fn.cross_entropy

    def spy(logits, target, **kw):
        seen.append(logits.detach().clone())
        return real_ce(logits, target, **kw)

    X = torch.randn(8, 5, 3)
    task = Task(train=(X, y), val=(X, y), test=(X, y), labels=("a", "b", "c", "d"),
                frontend=FrontendConfig(kind="identity"))
    model = S4DClassifier(ModelConfig(d_input=3, d_model=8, d_state=4, n_layers=1, n_classes=4))
    model.eval()  # no dropout: the raw logits are reproducible
    with torch.no_grad():
        raw = model.pool(model(X))
    monkeypatch.setattr(train_mod.Fn, "cross_entropy", spy)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1.0)
    gen = torch.Generator().manual_seed(0)
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(0))
    model.train = lambda mode=True: model  # keep eval mode inside train_epoch
    train_mod.train_epoch(model, task, opt, sched, TrainConfig(batch_size=8, logit_adjust=0.5),
                          gen, "t")
    torch.testing.assert_close(seen[0], raw[perm] + s, atol=1e-5, rtol=0)
