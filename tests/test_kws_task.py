"""The keyword-spotting training task's feature cache: keyed on the data, not only the config."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.io import wavfile

pytest.importorskip("torch", reason="the training task needs torch (extra 'train')")
from qs4d.models.kws_task import _cache_key, _data_id  # noqa: E402
from qs4d.runtime.spec import TrainConfig  # noqa: E402


def _write(root, rel, n=16000):
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    wavfile.write(root / rel, 16000, np.zeros(n, np.int16))


def test_cache_key_changes_when_the_data_set_changes(tmp_path):
    _write(tmp_path, "one/a_nohash_0.wav")
    (tmp_path / "testing_list.txt").write_text("")
    cfg = TrainConfig(task="kws", data=str(tmp_path))
    key = _cache_key(cfg, tmp_path)
    assert _cache_key(cfg, tmp_path) == key  # deterministic
    _write(tmp_path, "two/b_nohash_0.wav")  # a rebuilt set with one more clip
    assert _cache_key(cfg, tmp_path) != key
    key2, id2 = _cache_key(cfg, tmp_path), _data_id(tmp_path)
    (tmp_path / "testing_list.txt").write_text("two/b_nohash_0.wav\n")  # a clip changes split
    assert _data_id(tmp_path) != id2 and _cache_key(cfg, tmp_path) != key2
    assert _cache_key(cfg.replace(seed=1), tmp_path) != _cache_key(cfg, tmp_path)


def test_exclude_train_drops_speakers_by_prefix_and_is_validated():
    from qs4d.models.kws_task import train_keep
    from qs4d.runtime.spec import SpecError

    spk = ["espeak-en-us+max", "ast-carlo-it", "flite-slt", "ast-june-fr", "festival-kal"]
    np.testing.assert_array_equal(train_keep(spk, ()), [True] * 5)
    np.testing.assert_array_equal(train_keep(spk, ("ast-",)), [True, False, True, False, True])
    np.testing.assert_array_equal(train_keep(spk, ("ast-june", "flite")),
                                  [True, True, False, False, True])
    cfg = TrainConfig.from_dict({"task": "kws", "exclude_train": ["ast-"]})
    assert cfg.exclude_train == ("ast-",) and TrainConfig.from_dict(cfg.to_dict()) == cfg
    for bad in ("ast-", [""], [1]):
        with pytest.raises(SpecError, match="exclude_train"):
            TrainConfig.from_dict({"task": "kws", "exclude_train": bad})


def test_kws_eval_confusion_and_report():
    from qs4d.models.kws_eval import confusion, report

    labels = ("zero", "one", "_unknown_", "_silence_")
    y = np.array([0, 0, 1, 1, 2, 2, 2, 3])
    p = np.array([0, 2, 1, 2, 2, 0, 2, 3])
    c = confusion(y, p, 4)
    assert c.tolist() == [[1, 0, 1, 0], [0, 1, 1, 0], [1, 0, 2, 0], [0, 0, 0, 1]]
    text = report(labels, c)
    assert "accuracy 62.50% of 8" in text and "keywords right 2 of 4" in text
    assert "_unknown_ right 2 of 3; keywords called _unknown_ 2" in text


def test_loud_noise_clips_are_one_second_at_the_stated_levels():
    from qs4d.models.data.augment import colored_noise
    from qs4d.models.kws_task import LOUD_DBFS, loud_clip

    noises = [colored_noise(40000, "pink", np.random.default_rng(0)).astype(np.float32)]
    levels = []
    for seed in range(60):
        x = loud_clip(seed, noises)
        assert x.shape == (16000,) and x.dtype == np.float32
        levels.append(10 * np.log10(np.mean(x.astype(np.float64) ** 2)))
    np.testing.assert_array_equal(loud_clip(7, noises), loud_clip(7, noises))
    # band-limiting pink noise removes little power: every level within the range (+-1 dB)
    assert LOUD_DBFS[0] - 1.0 <= min(levels) and max(levels) <= LOUD_DBFS[1] + 0.1
    assert max(levels) - min(levels) > 20  # spread over the range
    cfg = TrainConfig.from_dict({"task": "kws", "loud_noise_clips": 10})
    assert cfg.loud_noise_clips == 10
    from qs4d.runtime.spec import SpecError

    with pytest.raises(SpecError, match="loud_noise_clips"):
        TrainConfig.from_dict({"task": "kws", "loud_noise_clips": -1})


def test_f_max_sets_the_front_end_top_edge_and_its_own_cache_key(tmp_path):
    from qs4d.models.data.speech_commands import DIGITS12, load_index
    from qs4d.models.kws_task import FRONTEND, _features, augment_for, frontend_for
    from qs4d.runtime.spec import SpecError

    _write(tmp_path, "one/a_nohash_0.wav")
    _write(tmp_path, "_silence_/s_nohash_0.wav")
    (tmp_path / "testing_list.txt").write_text("")
    cfg = TrainConfig(task="kws", data=str(tmp_path))
    assert frontend_for(cfg) == FRONTEND  # unset: the task's front end, the old cache keys
    tel = cfg.replace(f_max=4000.0)
    assert frontend_for(tel) == FRONTEND.replace(f_max=4000.0)
    assert _cache_key(tel, tmp_path) != _cache_key(cfg, tmp_path)
    # a 6-kHz tone is in a band of the 8-kHz front end and outside every band of the 4-kHz one
    t = np.arange(16000) / 16000
    wavfile.write(tmp_path / "one/a_nohash_0.wav", 16000,
                  (8000 * np.sin(2 * np.pi * 6000 * t)).astype(np.int16))
    index = load_index(tmp_path, DIGITS12, seed=0)
    i = list(index.paths).index(str(tmp_path / "one/a_nohash_0.wav"))
    full, low = (_features((index, i, "clean", 0, [], frontend_for(c), augment_for(c)))
                 for c in (cfg, tel))
    assert full.max() > low.max() + 5.0  # log-mel
    for bad in ({"task": "kws", "f_max": 500.0}, {"task": "ecg", "f_max": 4000.0}):
        with pytest.raises(SpecError, match="f_max"):
            TrainConfig.from_dict(bad)


def test_band_cutoff_min_draws_the_telephone_cutoff_and_has_its_own_cache_key(tmp_path):
    """Unset, the augmentation and the cache key are those from before the option (the
    default draws no extra random number); set, the band edge moves from clip to clip."""
    from qs4d.models.data import augment as aug
    from qs4d.models.kws_task import DEFAULT_AUG, _aug_key, augment_for
    from qs4d.runtime.spec import SpecError

    _write(tmp_path, "one/a_nohash_0.wav")
    cfg = TrainConfig(task="kws", data=str(tmp_path))
    assert augment_for(cfg) == DEFAULT_AUG and "band_cutoff" not in _aug_key(DEFAULT_AUG)
    band = cfg.replace(band_cutoff_min=3200.0)
    assert augment_for(band).band_cutoff == (3200.0, 4000.0)
    assert _cache_key(band, tmp_path) != _cache_key(cfg, tmp_path)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(16000) * 0.1  # white noise: the cutoff shows in its spectrum
    only_band = dict(p_speed=0, p_pitch=0, shift_ms=0, gain_db=(0.0, 0.0), p_noise=0, p_band=1)
    fixed = aug.Augmenter(aug.AugmentConfig(**only_band))
    assert np.array_equal(fixed(x, np.random.default_rng(1)), aug.band_limit(x, 16000)
                          .clip(-1, 1).astype(np.float32))
    moving = aug.Augmenter(aug.AugmentConfig(**only_band, band_cutoff=(3200.0, 4000.0)))
    f = np.fft.rfftfreq(16000, 1 / 16000)

    def edge(y):  # the frequency where the spectrum falls 20 dB below its 1-2 kHz level
        p = np.convolve(np.abs(np.fft.rfft(y)) ** 2, np.ones(101) / 101, "same")
        ref = p[(f > 1000) & (f < 2000)].mean()
        return f[np.flatnonzero((f > 2000) & (p < 0.01 * ref))[0]]

    edges = [edge(moving(x, np.random.default_rng(s))) for s in range(12)]
    assert all(3100 < e < 4400 for e in edges) and max(edges) - min(edges) > 300, edges
    for bad in ({"task": "kws", "band_cutoff_min": 500.0}, {"task": "ecg", "band_cutoff_min": 3e3}):
        with pytest.raises(SpecError, match="band_cutoff_min"):
            TrainConfig.from_dict(bad)
