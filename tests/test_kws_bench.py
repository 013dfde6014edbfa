"""The streaming keyword benchmark (apps/kws_bench.py): split reading, stream assembly,
scoring of detections against clips, and one end-to-end run on a tiny bundle."""

from __future__ import annotations

import numpy as np
from scipy.io import wavfile

from qs4d.apps import kws_bench
from qs4d.apps.detect import Detection

LABELS = ("zero", "one", "_unknown_", "_silence_")


def _wav(path, n=16000, rate=16000, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    x = (3000 * np.random.default_rng(seed).standard_normal(n)).astype(np.int16)
    wavfile.write(path, rate, x)


def _dataset(root):
    names = ["zero/a_nohash_0.wav", "bed/b_nohash_0.wav", "one/c_nohash_0.wav",
             "_unknown_/ast-x_nohash_0.wav", "_silence_/n_nohash_0.wav", "one/real_nohash_0.wav"]
    for i, n in enumerate(names):
        _wav(root / n, seed=i)
    (root / "testing_list.txt").write_text("\n".join(names) + "\n")
    (root / "real_test_list.txt").write_text("one/real_nohash_0.wav\n")
    (root / "validation_list.txt").write_text("zero/a_nohash_0.wav\n")
    return names


def test_split_clips_maps_words_and_keeps_real_clips_apart(tmp_path):
    _dataset(tmp_path)
    test = kws_bench.split_clips(tmp_path, "testing", LABELS)
    assert [(p.relative_to(tmp_path).as_posix(), lab) for p, lab in test] == [
        ("zero/a_nohash_0.wav", "zero"), ("bed/b_nohash_0.wav", "_unknown_"),
        ("one/c_nohash_0.wav", "one"), ("_unknown_/ast-x_nohash_0.wav", "_unknown_"),
        ("_silence_/n_nohash_0.wav", "_silence_")]
    real = kws_bench.split_clips(tmp_path, "real", LABELS)
    assert [lab for _, lab in real] == ["one"]


def test_clip_stream_places_each_clip_after_a_gap(tmp_path):
    _wav(tmp_path / "a.wav", n=16000)
    _wav(tmp_path / "b.wav", n=4000, rate=8000)  # 0.5 s at 8 kHz: resampled to 8000 samples
    audio, starts = kws_bench.clip_stream([(tmp_path / "a.wav", "x"), (tmp_path / "b.wav", "y")],
                                          16000, gap_s=0.5)
    assert starts.tolist() == [0, 24000] and len(audio) == 24000 + 8000 + 8000
    assert not audio[16000:24000].any() and audio.dtype == np.float32


def test_score_counts_hits_substitutions_and_false_alarms():
    clips = [("p", "zero"), ("p", "one"), ("p", "_unknown_"), ("p", "one"), ("p", "_silence_")]
    starts = np.array([0, 100, 200, 300, 400])
    dets = [Detection(150, "one", 0.9),            # clip 1: hit
            Detection(250, "zero", 0.8),           # clip 2 (unknown): false alarm
            Detection(299, "one", 0.8),            # still clip 2's gap: false alarm
            Detection(310, "zero", 0.9),           # clip 3: substitution
            Detection(5, "_unknown_", 0.9)]        # a filler never fires, but is not a hit
    r = kws_bench.score(dets, clips, starts, {"zero", "one"})
    assert (r["n_kw"], r["n_other"]) == (3, 2)
    assert r["hit"] == 100 / 3 and r["sub"] == 2 * 100 / 3 and r["fa"] == 100.0


def test_end_to_end_prints_a_row_per_setting(tmp_path, capsys):
    from test_apps import make_bundle

    root = tmp_path / "data"
    _dataset(root)
    bundle = make_bundle(tmp_path / "b", "logmel")
    _wav(tmp_path / "music.wav", n=32000)
    rc = kws_bench.main([str(bundle), "--data", str(root), "--split", "testing",
                         "--music", str(tmp_path / "music.wav"), "--smooth", "posterior",
                         "logits", "--threshold", "0.5", "0.9", "--hold-ms", "0", "200"])
    out = capsys.readouterr().out
    assert rc == 0 and "testing: 5 clips" in out
    rows = [ln for ln in out.splitlines() if ln.strip().startswith(("posterior", "logits"))]
    assert len(rows) == 8
