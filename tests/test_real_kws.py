"""Keyword spotting on real speakers: the Speech Commands / FSDD loaders and their
speaker-disjoint splits (models/data/real_kws.py), the sc12 and digits task listings
(models/real_kws_task.py), and the streaming benchmark's scoring (lab/kws_stream_bench.py).

Tests that read the real data skip when ../shared/data (from the project root) is absent; they
check listings, splits and small parity, never accuracy, and compute no features.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ROOT
from scipy.io import wavfile
from scipy.signal import resample_poly

from qs4d.apps.detect import Detector, DetectorConfig
from qs4d.lab import kws_stream_bench as bench
from qs4d.models.data import real_kws as rk

DATA = ROOT.parent / "shared" / "data"
needs_data = pytest.mark.skipif(not (DATA / "speech_commands_test").is_dir()
                                or not (DATA / "fsdd").is_dir(),
                                reason=f"real data not present at {DATA}")


# --- No data needed

def test_speaker_hash_is_fixed():
    """The split of a speaker is a pure function of its id (salted sha1, SC_PERCENT); these
    values pin it: a change would silently move speakers between train and test."""
    assert [rk.speaker_split(s) for s in ("0c540988", "3102f006", "ffd2ba2f", "silence-1024")] \
        == ["train", "train", "validation", "testing"]
    split = [rk.speaker_split(f"{i:08x}") for i in range(4000)]
    share = {s: split.count(s) / len(split) for s in rk.SPLITS}
    assert abs(share["testing"] - 0.25) < 0.03 and abs(share["validation"] - 0.15) < 0.03


def test_file_names():
    assert rk.parse_sc_name("yes", "0bac8a71_nohash_0") == ("yes", "0bac8a71")
    assert rk.parse_sc_name("_unknown_", "backward_0c540988_nohash_0") == ("backward",
                                                                           "0c540988")
    assert rk.parse_sc_name("_silence_", "1024") == ("_silence_", "silence-1024")
    assert rk.parse_fsdd_name("7_yweweler_12") == ("seven", "yweweler")
    with pytest.raises(ValueError):
        rk.parse_fsdd_name("seven_jackson")


def test_centre_and_noise_split():
    x = np.arange(10, dtype=np.float32) + 1
    y = rk.centre(x, 16)
    assert len(y) == 16 and y[3] == 1 and y[12] == 10 and y[:3].sum() == 0
    assert np.array_equal(rk.centre(np.arange(20), 10), np.arange(5, 15))
    n = np.arange(1000)
    parts = [rk.noise_split(n, s) for s in rk.SPLITS]
    assert np.array_equal(np.concatenate(parts), n)  # disjoint, in time order, all of it
    assert [len(p) for p in parts] == [600, 150, 250]


def test_cap_unknown_shares_real_and_synthetic():
    from qs4d.models.real_kws_task import UNKNOWN_RATIO, cap_unknown

    y = np.array([0] * 10 + [1] * 10 + [2] * 40)  # 2 keywords of 10, 40 `_unknown_` (class 2)
    cap = int(round(UNKNOWN_RATIO * 10))
    few_real = np.array([False] * 25 + [True] * 35)  # 5 real `_unknown_`, 35 synthetic
    keep = cap_unknown(y, few_real, n_keywords=2, unk=2, seed=0)
    assert keep[:25].all() and (keep & (y == 2)).sum() == cap  # the 5 real ones, then synth
    many_real = np.array([False] * 50 + [True] * 10)  # 30 real, 10 synthetic
    keep = cap_unknown(y, many_real, n_keywords=2, unk=2, seed=0)
    assert keep[:20].all() and (keep & (y == 2)).sum() == cap
    assert (keep & many_real).sum() == cap // 2  # real at least half; synth the other half
    no_synth = cap_unknown(y, np.zeros(60, bool), n_keywords=2, unk=2, seed=0)
    assert (no_synth & (y == 2)).sum() == cap
    assert np.array_equal(keep, cap_unknown(y, many_real, 2, 2, seed=0))


def test_detect_equals_the_apps_detector():
    rng = np.random.default_rng(0)
    labels = ("a", "b", "c", "_unknown_", "_silence_")
    z = rng.normal(0, 1, (3000, 5)).cumsum(0) * 0.05  # slowly drifting logits
    z[:, 3] += 0.5
    for thr in (0.4, 0.6, 0.8):
        cfg = DetectorConfig.from_ms(10.0, thr, 300.0, 200.0, smooth="logits")
        want = [(d.step, d.label) for d in Detector(labels, cfg).update(z)[0]]
        sm = bench.smooth_logits(z, cfg.smooth_steps)
        got = [(t, labels[k]) for t, k in bench.detect(sm, np.array([1, 1, 1, 0, 0], bool), cfg)]
        assert got == want and want, thr


def test_score_fa_per_hour():
    """Two streams of 1800 s: three keywords, one missed; false alarms: a wrong keyword on a
    keyword, a repeat, one on an Asterisk prompt, one on plain noise."""
    E = bench.Event
    ev = [[E(10.0, 11.0, "yes", "keyword"), E(20.0, 21.0, "no", "keyword"),
           E(30.0, 35.0, "", "prompt")],
          [E(100.0, 101.0, "go", "keyword"), E(200.0, 201.0, "", "unknown")]]
    hop = 0.01
    dets = [[(1050, "yes"), (1150, "yes"), (2050, "up"), (3200, "no")],
            [(50000, "stop")]]
    r = bench.score(dets, ev, duration_s=3600.0, hop_s=hop, tolerance_s=1.0)
    assert r["n_kw"] == 3 and r["hits"] == 1 and r["rate"] == pytest.approx(100 / 3)
    assert r["fa"] == 4
    assert r["fa_by_kind"] == {"keyword": 2, "unknown": 0, "prompt": 1, "noise": 1}
    assert r["hours"] == pytest.approx((3600.0 - 3 * 2.0) / 3600)
    assert r["fa_per_hour"] == pytest.approx(4 / r["hours"])
    rows = [{"threshold": 0.5, "rate": 90.0, "fa_per_hour": 3.0},
            {"threshold": 0.7, "rate": 85.0, "fa_per_hour": 1.0},
            {"threshold": 0.8, "rate": 85.0, "fa_per_hour": 0.0},
            {"threshold": 0.9, "rate": 60.0, "fa_per_hour": 0.0}]
    assert bench.choose_threshold(rows, 2.0)["threshold"] == 0.7
    assert bench.choose_threshold(rows, -1.0) is None


def test_build_streams_places_events_apart():
    rng = np.random.default_rng(1)
    items = [(rng.normal(0, 0.1, 8000 + 100 * i).astype(np.float32), "yes" if i % 2 else "",
              "keyword" if i % 2 else "unknown") for i in range(9)]
    noises = [rng.normal(0, 0.01, 16000 * 30).astype(np.float32)]
    audio, events = bench.build_streams(items, noises, n_streams=2, seed=0)
    assert audio.shape[0] == 2 and audio.dtype == np.float32
    assert sum(len(e) for e in events) == 9
    for evs in events:
        for a, b in zip(evs, evs[1:]):
            assert b.start - a.end >= bench.GAP_S[0] - 1e-9
        assert evs[-1].end * rk.SR <= audio.shape[1]


# --- The real data

@needs_data
def test_speech_commands_splits():
    c = rk.sc_clips(DATA)
    assert len(c) == 4168
    rk.check_disjoint(c)  # no speaker in two splits
    speakers = {s: {x for x in c.select(s).speakers if not x.startswith("silence-")}
                for s in rk.SPLITS}
    assert [len(speakers[s]) for s in rk.SPLITS] == [119, 28, 50]
    assert not (speakers["train"] & speakers["testing"] or speakers["train"]
                & speakers["validation"] or speakers["validation"] & speakers["testing"])
    assert [len(c.select(s)) for s in rk.SPLITS] == [2411, 692, 1065]
    assert c.select("testing").counts(rk.SC12) == {
        "yes": 92, "no": 91, "up": 85, "down": 84, "left": 90, "right": 81, "on": 82,
        "off": 96, "stop": 95, "go": 93, "_unknown_": 93, "_silence_": 83}
    again = rk.sc_clips(DATA)
    assert all(np.array_equal(getattr(c, k), getattr(again, k)) for k in rk.COLUMNS)
    digits = c.take(np.isin(c.words, rk.DIGITS))
    assert len(digits) == 208 and set(digits.counts(rk.DIGITS12).values()) - {0}


@needs_data
def test_fsdd_folds():
    for fold in rk.FSDD_SPEAKERS:
        f = rk.fsdd_clips(DATA, fold)
        test, train = f.select("testing"), f.select("train")
        assert len(test) == 500 and set(test.speakers) == {fold}
        assert len(train) == 2000 and fold not in set(train.speakers)
        assert set(test.counts(rk.DIGITS12).values()) == {50, 0}
    f = rk.fsdd_clips(DATA, "jackson/lucas")
    assert set(f.select("testing").speakers) == {"jackson"}
    assert set(f.select("validation").speakers) == {"lucas"} and len(f.select("train")) == 1500
    for bad in ("nobody", "jackson/jackson", "jackson/nobody"):
        with pytest.raises(ValueError):
            rk.fsdd_clips(DATA, bad)


@needs_data
def test_clip_loading_and_resampling_parity():
    f = rk.fsdd_clips(DATA, "george")
    sr, raw = wavfile.read(f.paths[0])
    assert sr == 8000
    up = rk.read_audio(f.paths[0])
    assert np.allclose(up, resample_poly(raw / 32768.0, 2, 1), atol=1e-6)
    x = rk.load_clip(f, 0)
    assert x.shape == (16000,) and x.dtype == np.float32
    e = np.square(x)
    assert e[4000:12000].sum() > 0.9 * e.sum()  # centred
    c = rk.sc_clips(DATA)
    y = rk.load_clip(c, 0)
    _, raw = wavfile.read(c.paths[0])
    assert np.array_equal(y, raw.astype(np.float32) / 32768.0)
    noise = rk.load_noises(DATA / "speech_commands_noise", "testing")
    assert len(noise) == 6 and all(len(n) > 10 * rk.SR for n in noise)


@needs_data
@pytest.mark.parametrize("task,fold", [("sc12", ""), ("digits", "lucas"),
                                       ("digits", "lucas/george")])
def test_task_listings_are_speaker_disjoint(task, fold):
    from qs4d.models.real_kws_task import task_clips
    from qs4d.runtime.spec import TrainConfig

    cfg = TrainConfig(task=task, data=str(DATA), fold=fold)
    clips, cmap, m = task_clips(cfg)
    spk = {k: set(clips.speakers[v]) - {s for s in clips.speakers if s.startswith("silence-")}
           for k, v in m.items()}
    held_out = [k for k in m if k != "train"]
    for k in held_out:
        assert not spk["train"] & spk[k], k
    assert not spk["validation"] & spk["test"]
    y = clips.labels(cmap)
    assert (y[m["train"]] >= 0).all() and m["test"].sum() > 0
    n_unk = (y[m["train"]] == cmap.labels.index("_unknown_")).sum()
    mean_kw = (y[m["train"]] < len(cmap.keywords)).sum() / len(cmap.keywords)
    assert n_unk <= 1.5 * mean_kw + 1
    if task == "digits":
        assert spk["test"] == {"lucas"} and m["test"].sum() == 500
        fsdd_val = (clips.sources == "fsdd") & m["validation"]
        assert set(clips.speakers[fsdd_val]) == ({"george"} if "/" in fold else set())
    else:
        assert m["test"].sum() == 1065 and m["validation"].sum() == 692


def test_synth_build_joins_train_without_keyword_prompts(tmp_path):
    """Every clip of a `qs4d data kws` build is train; an Asterisk `_unknown_` clip whose
    prompt file names a keyword ("vm-no.wav" for sc12) is left out of that task only."""
    from qs4d.models.real_kws_task import synth_clips

    files = {"yes/espeak-en+m1_nohash_0.wav": "espeak-ng", "one/flite-kal_nohash_0.wav": "flite",
             "_unknown_/ast-allison-en_nohash_0.wav": "asterisk-core-sounds-en-wav:vm-no.wav",
             "_unknown_/ast-june-fr_nohash_0.wav": "asterisk-core-sounds-fr-wav:vm-goodbye.wav",
             "_silence_/white_nohash_0.wav": "generated"}
    for rel in files:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        wavfile.write(tmp_path / rel, rk.SR, np.zeros(rk.SR, np.int16))
    (tmp_path / "testing_list.txt").write_text("yes/espeak-en+m1_nohash_0.wav\n")
    (tmp_path / "sources.csv").write_text("path,split,real,licence,source\n" + "".join(
        f"{rel},train,0,x,{src}\n" for rel, src in files.items()))
    sc12 = synth_clips(tmp_path, rk.SC12.keywords)
    assert sorted(sc12.words) == ["_silence_", "_unknown_", "one", "yes"]
    assert set(sc12.splits) == {"train"} and set(sc12.sources) == {"synth"}
    assert sc12.counts(rk.SC12)["_unknown_"] == 2  # "one" and June's goodbye
    digits = synth_clips(tmp_path, rk.DIGITS12.keywords)
    assert len(digits) == 5 and digits.counts(rk.DIGITS12)["_unknown_"] == 3


def test_asterisk_prompts_skip_keyword_names_and_word_folders(tmp_path):
    """The running-speech prompts (benchmark bed and `train.speech_negatives`) leave out the
    digits/letters/phonetic/silence folders and files whose name holds a keyword."""
    spk = tmp_path / "en_US_f_Allison"
    for rel in ("vm-goodbye.wav", "vm-no-messages.wav", "digits/1.wav", "letters/a.wav",
                "conf/conf-onlyperson.wav", "dir/dir-intro.wav"):
        (spk / rel).parent.mkdir(parents=True, exist_ok=True)
        wavfile.write(spk / rel, 8000, np.zeros(8000, np.int16))
    got = rk.asterisk_prompts(tmp_path, ("en_US_f_Allison",), rk.SC12.keywords)
    assert sorted(p.relative_to(spk).as_posix() for p in got) == [
        "conf/conf-onlyperson.wav", "dir/dir-intro.wav", "vm-goodbye.wav"]
    assert not set(rk.ASTERISK_SPLIT["english"]) & set(
        rk.ASTERISK_SPLIT["validation"] + rk.ASTERISK_SPLIT["testing"])


def test_speech_negatives_option_is_checked():
    from qs4d.runtime.spec import SpecError, TrainConfig

    assert TrainConfig(task="sc12", data="d", speech_negatives=10).speech_negatives == 10
    with pytest.raises(SpecError, match="speech_negatives.*only"):
        TrainConfig(task="kws", speech_negatives=10)
    with pytest.raises(SpecError, match="speech_negatives.*>= 0"):
        TrainConfig(task="sc12", speech_negatives=-1)


@pytest.mark.skipif(not (rk.ASTERISK / "en_US_f_Allison").is_dir(),
                    reason="Asterisk English prompts absent (asterisk-core-sounds-en-wav)")
def test_speech_negative_cuts_are_speech_at_the_set_level(tmp_path, monkeypatch):
    """Each negative is a 1-s cut of a prompt's voiced part over noise: log-mel frames of the
    task's front end, louder than the noise alone, deterministic for a seed, cached."""
    pytest.importorskip("torch")
    from qs4d.models import real_kws_task as rt
    from qs4d.runtime.spec import TrainConfig

    monkeypatch.setenv("QS4D_CACHE", str(tmp_path))
    noise = [np.random.default_rng(0).standard_normal(3 * rk.SR).astype(np.float32) * 0.01]
    cfg = TrainConfig(task="sc12", data="d", speech_negatives=6, seed=3)
    a = rt.speech_negative_features(cfg, noise, "n0", rk.SC12.keywords)
    assert a.shape == (6, 98, 40) and np.isfinite(a).all()
    assert len(list(tmp_path.glob("negative-*.npz"))) == 1
    rt._init_worker(noise)
    again = np.stack([rt._negative_features((str(p), s, rt.frontend_for(cfg))) for p, s in [
        (rk.asterisk_prompts(rk.ASTERISK, rk.ASTERISK_SPLIT["english"], rk.SC12.keywords)[0], 9)
    ] * 2])
    assert np.array_equal(again[0], again[1])
    quiet = rt.LogMel(rt.frontend_for(cfg)).frames(np.zeros(rk.SR, np.float32) + noise[0][
        :rk.SR] * 10 ** (-55 / 20) / 0.01)
    assert a.mean() > quiet.mean() + 1.0
