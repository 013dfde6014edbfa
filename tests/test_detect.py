"""apps/detect.py: smoothing, threshold, one detection per utterance, refractory period,
filler classes, chunk invariance."""

from __future__ import annotations

import numpy as np
import pytest

from qs4d.apps.detect import Detector, DetectorConfig

LABELS = ("yes", "no", "up", "_unknown_", "_silence_")


def logits_for(probs: np.ndarray) -> np.ndarray:
    """Logits whose softmax is probs (T, K)."""
    return np.log(np.asarray(probs, np.float64))


def posteriors(T: int, k: int | None = None, p: float = 0.0, rest: int = 4) -> np.ndarray:
    """(T, K): class k at probability p, the remainder on class `rest` (silence by default)."""
    out = np.full((T, len(LABELS)), 1e-9)
    out[:, rest] = 1.0 - p if k is not None else 1.0
    if k is not None:
        out[:, k] = p
    return out / out.sum(axis=1, keepdims=True)


def run(det: Detector, probs: np.ndarray, chunk: int | None = None):
    z = logits_for(probs)
    if chunk is None:
        return det.update(z)[0]
    out = []
    for a in range(0, len(z), chunk):
        out += det.update(z[a: a + chunk])[0]
    return out


def test_smoothing_is_a_moving_average_with_zero_history():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((50, len(LABELS)))
    det = Detector(LABELS, DetectorConfig(smooth_steps=7))
    _, sm = det.update(z)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    padded = np.concatenate([np.zeros((6, len(LABELS))), p])
    want = np.stack([padded[t: t + 7].mean(axis=0) for t in range(50)])
    np.testing.assert_allclose(sm, want, atol=1e-12)


def test_fires_once_per_utterance_at_the_first_smoothed_crossing():
    cfg = DetectorConfig(threshold=0.7, smooth_steps=10, refractory_steps=5)
    det = Detector(LABELS, cfg)
    probs = np.concatenate([posteriors(20), posteriors(200, k=1, p=0.95), posteriors(30)])
    dets = run(det, probs)
    assert [d.label for d in dets] == ["no"]  # held for 200 steps >> refractory: still once
    # smoothed = (j + 1) * 0.95 / 10 >= 0.7 first at j = 7
    assert dets[0].step == 20 + 7
    assert dets[0].confidence == pytest.approx(8 * 0.95 / 10, abs=1e-6)


def test_two_utterances_fire_twice_and_threshold_is_respected():
    cfg = DetectorConfig(threshold=0.7, smooth_steps=5, refractory_steps=10)
    words = [posteriors(30, k=0, p=0.9), posteriors(30), posteriors(30, k=0, p=0.9),
             posteriors(30), posteriors(30, k=2, p=0.69)]
    dets = run(Detector(LABELS, cfg), np.concatenate(words))
    assert [d.label for d in dets] == ["yes", "yes"]  # "up" at 0.69 stays below 0.7
    assert dets[1].step - dets[0].step == 60


def test_refractory_period_suppresses_a_different_keyword():
    probs = np.concatenate([posteriors(10, k=0, p=0.99), posteriors(10, k=1, p=0.99),
                            posteriors(40), posteriors(10, k=1, p=0.99)])
    got = {r: [(d.label, d.step) for d in run(
        Detector(LABELS, DetectorConfig(smooth_steps=1, refractory_steps=r)), probs)]
        for r in (5, 15, 25)}
    assert got[5] == [("yes", 0), ("no", 10), ("no", 60)]
    assert got[15] == [("yes", 0), ("no", 15), ("no", 60)]  # "no" outlasts the period
    assert got[25] == [("yes", 0), ("no", 60)]


def test_fillers_never_fire_and_a_spike_is_smoothed_away():
    probs = np.concatenate([posteriors(50, k=3, p=0.99), posteriors(1, k=0, p=0.99),
                            posteriors(50)])
    assert run(Detector(LABELS, DetectorConfig(smooth_steps=10)), probs) == []
    assert len(run(Detector(LABELS, DetectorConfig(smooth_steps=1)), probs)) == 1


def test_rearms_only_after_the_posterior_drops():
    cfg = DetectorConfig(threshold=0.7, smooth_steps=1, refractory_steps=0, release=0.5)
    dip_high = posteriors(5, k=0, p=0.4)  # 0.4 >= 0.35: not re-armed
    dip_low = posteriors(5, k=0, p=0.3)  # 0.3 < 0.35: re-armed
    on = posteriors(5, k=0, p=0.9)
    assert len(run(Detector(LABELS, cfg), np.concatenate([on, dip_high, on]))) == 1
    assert len(run(Detector(LABELS, cfg), np.concatenate([on, dip_low, on]))) == 2


def test_logit_smoothing_is_the_softmax_of_the_mean_logits_with_zero_history():
    """smooth = "logits": the mean-pooling decision of training, over the last W steps."""
    rng = np.random.default_rng(2)
    z = 2 * rng.standard_normal((40, len(LABELS)))
    det = Detector(LABELS, DetectorConfig(smooth_steps=5, smooth="logits"))
    _, sm = det.update(z)
    padded = np.concatenate([np.zeros((4, len(LABELS))), z])
    mean = np.stack([padded[t: t + 5].mean(axis=0) for t in range(40)])
    want = np.exp(mean) / np.exp(mean).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(sm, want, atol=1e-12)


def test_logit_smoothing_keeps_weak_consistent_evidence():
    """Steps that each favour one keyword by a small margin: their posteriors never reach the
    threshold on average, the softmax of their mean logits does (W = 10)."""
    z = np.zeros((60, len(LABELS)))
    z[:, 1] = 3.0  # "no" 3 ahead of the other classes: p("no") = 0.83
    z[::2, 3] = 3.0  # but tied with "_unknown_" every other step: p("no") = 0.47 there
    # mean posterior of "no" 0.65 < 0.7; softmax of the mean logits (3, 1.5, 0...) 0.73
    by_post = Detector(LABELS, DetectorConfig(0.7, 10, smooth="posterior")).update(z)[0]
    by_logit = Detector(LABELS, DetectorConfig(0.7, 10, smooth="logits")).update(z)[0]
    assert by_post == [] and [d.label for d in by_logit] == ["no"]


def test_hold_fires_the_best_keyword_of_the_span_at_its_end():
    """An onset that favours "yes" (0.75) followed by the word's own "no" (0.95): without a
    hold "yes" fires at once and "no" after it; with a 6-step hold only "no", 6 steps after
    the crossing."""
    probs = np.concatenate([posteriors(5), posteriors(3, k=0, p=0.75),
                            posteriors(4, k=1, p=0.95), posteriors(20)])
    now = run(Detector(LABELS, DetectorConfig(0.7, 1, refractory_steps=5)), probs)
    assert [(d.label, d.step) for d in now] == [("yes", 5), ("no", 10)]  # after refractory
    held = run(Detector(LABELS, DetectorConfig(0.7, 1, refractory_steps=5, hold_steps=6)), probs)
    assert [(d.label, d.step) for d in held] == [("no", 11)]
    assert held[0].confidence == pytest.approx(0.95, abs=1e-6)
    # nothing better within the hold: the crossing keyword fires, D steps late
    one = np.concatenate([posteriors(5), posteriors(10, k=2, p=0.9), posteriors(20)])
    held = run(Detector(LABELS, DetectorConfig(0.7, 1, hold_steps=3)), one)
    assert [(d.label, d.step) for d in held] == [("up", 8)]
    assert DetectorConfig.from_ms(10.0, hold_ms=200).hold_steps == 20


@pytest.mark.parametrize("hold", [0, 5])
@pytest.mark.parametrize("smooth", ["posterior", "logits"])
@pytest.mark.parametrize("chunk", [1, 3, 17, 64])
def test_decisions_do_not_depend_on_chunking(chunk, smooth, hold):
    rng = np.random.default_rng(1)
    z = 3 * rng.standard_normal((300, len(LABELS)))
    cfg = DetectorConfig(threshold=0.5, smooth_steps=4, refractory_steps=6, smooth=smooth,
                         hold_steps=hold)
    whole = Detector(LABELS, cfg).update(z)[0]
    det = Detector(LABELS, cfg)
    parts = []
    for a in range(0, len(z), chunk):
        parts += det.update(z[a: a + chunk])[0]
    assert whole and parts == whole


def test_reset_and_config_validation():
    det = Detector(LABELS, DetectorConfig(smooth_steps=1))
    assert len(run(det, posteriors(3, k=0, p=0.99))) == 1
    assert run(det, posteriors(3, k=0, p=0.99)) == []  # disarmed
    det.reset()
    assert run(det, posteriors(3, k=0, p=0.99))[0].step == 0
    held = Detector(LABELS, DetectorConfig(smooth_steps=1, hold_steps=10))
    assert run(held, posteriors(3, k=0, p=0.99)) == []  # decision still open
    held.reset()  # drops it
    assert run(held, posteriors(20)) == []
    cfg = DetectorConfig.from_ms(10.0, 0.6, smooth_ms=300, refractory_ms=800)
    assert (cfg.smooth_steps, cfg.refractory_steps, cfg.threshold) == (30, 80, 0.6)
    assert DetectorConfig.from_ms(10.0, smooth="logits").smooth == "logits"
    for bad in ({"threshold": 0.0}, {"threshold": 1.5}, {"smooth_steps": 0},
                {"refractory_steps": -1}, {"release": 2.0}, {"smooth": "median"},
                {"hold_steps": -1}):
        with pytest.raises(ValueError):
            DetectorConfig(**bad)
    with pytest.raises(ValueError, match="expected"):
        det.update(np.zeros((2, 3)))
