"""The apps in-process on tiny bundles made here: `qs4d kws --wav`, `qs4d ecg --csv/--wfdb`,
`qs4d profile`; sources and resampling, the --plot figures (matplotlib), costs and the energy
model, the torch reference step, and import hygiene."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from scipy.io import wavfile
from scipy.signal import resample_poly

from qs4d.apps import ecg as ecg_app
from qs4d.apps import kws
from qs4d.apps.detect import Detector, DetectorConfig
from qs4d.apps.plot import figure, have_matplotlib
from qs4d.apps.rhythm import analyze
from qs4d.apps.sources import RawSource, StreamResampler, WavSource, read_wav, resample
from qs4d.lab import profile as profile_app
from qs4d.runtime import costs, energy
from qs4d.runtime.ecg import BeatStream, ecg_frontend_config
from qs4d.runtime.errors import UsageError
from qs4d.runtime.records import load_record208
from qs4d.runtime.spec import FrontendConfig, ModelConfig, QuantConfig, Spec
from qs4d.runtime.stream import load

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "apps" / "data"
ZOO = ROOT / "models" / "zoo"
KWS_LABELS = tuple("zero one two three four five six seven eight nine".split()) + (
    "_unknown_", "_silence_")
AAMI = ("N", "S", "V", "F", "Q")
PLOTS = have_matplotlib()
needs_plots = pytest.mark.skipif(not PLOTS, reason="--plot needs matplotlib (the plot extra)")


def check_figure(path: Path, shape: tuple) -> np.ndarray:
    """A PNG that matplotlib reads back at shape (h, w), with ink in the plot and in the
    margins where the axis labels go; returns its (h, w, 3) RGB."""
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = imread(path, format="png")[..., :3]  # (h, w, 3) in [0, 1]
    assert img.shape[:2] == shape
    h, w = shape
    ink = (img < 0.8).any(axis=-1)  # (h, w)
    assert 0.01 < ink.mean() < 0.5, ink.mean()
    assert ink[:, : w // 30].any(), "nothing left of the axes (y label)"
    assert ink[-h // 15:].any(), "nothing below the axes (x label)"
    assert ink[: h // 12].any(), "nothing above the axes (title)"
    return img


def make_bundle(out: Path, kind: str, seed: int = 0) -> Path:
    """A tiny random QAT bundle (1 layer, H = 8, N = 8) with a logmel or ecg front end."""
    torch = pytest.importorskip("torch")
    from qs4d.export.cli import export_model
    from qs4d.models.model import S4DClassifier
    from qs4d.models.qmodel import attach_quant, calibrate
    from qs4d.runtime.ecg import EcgFrontend
    from qs4d.runtime.frontend import LogMel

    rng = np.random.default_rng(seed)
    if kind == "logmel":
        fe, labels = FrontendConfig(kind="logmel", sample_rate=16000, n_mels=40), KWS_LABELS
        feats = LogMel(fe).frames((0.1 * rng.standard_normal(16000)).astype(np.float32))
    else:
        fe, labels = ecg_frontend_config(), AAMI
        feats = EcgFrontend(fe).process(load_record208()[0][:3600])
    cfg = ModelConfig(d_input=feats.shape[1], d_model=8, d_state=8, n_layers=1,
                      n_classes=len(labels), norm="none")
    m = S4DClassifier(cfg, seed=seed)
    m.eval()
    attach_quant(m, QuantConfig.uniform(8, weight_bits=4))
    calibrate(m, torch.from_numpy(feats)[None])
    return export_model(m, out, frontend=fe, labels=labels, calib_x=feats[:, None, :],
                        name=f"tiny-{kind}")


def test_export_threshold_is_the_bundles_default(tmp_path, capsys, monkeypatch):
    """`qs4d export --threshold T` records the detector threshold chosen on validation
    speakers (metrics.detector_threshold); `qs4d kws` then uses it unless --threshold is
    given. ECG bundles and values outside (0, 1) are refused."""
    torch = pytest.importorskip("torch")
    from qs4d.cli import main as cli
    from qs4d.export import cli as export_cli
    from qs4d.models import checkpoint
    from qs4d.models.model import S4DClassifier
    from qs4d.runtime.spec import TrainConfig

    fe = FrontendConfig(kind="logmel", sample_rate=16000, n_mels=40)
    m = S4DClassifier(ModelConfig(d_input=40, d_model=8, d_state=8, n_layers=1, n_classes=12,
                                  norm="none"), seed=0)
    ck = tmp_path / "float.pt"
    checkpoint.save(ck, m, train=TrainConfig(task="sc12", data="d"), frontend=fe,
                    labels=KWS_LABELS, phase="done", epoch=0, metrics={"val_acc": 1.0})
    out = tmp_path / "b"
    feats = np.random.default_rng(0).standard_normal((50, 2, 40)).astype(np.float32)
    monkeypatch.setattr(export_cli, "calibration_inputs", lambda ckpt, n: feats)  # no data
    assert cli(["export", str(ck), "--out", str(out), "--threshold", "0.93"]) == 0
    assert json.loads((out / "spec.json").read_text())["metrics"]["detector_threshold"] == 0.93
    assert kws.bundle_threshold({}) == kws.APP_THRESHOLD
    wav = str(DATA / "sentence_espeak_16k.wav")
    capsys.readouterr()
    assert kws.main([str(out), "--wav", wav, "--fast", "--no-live"]) == 0
    assert "threshold 0.93" in capsys.readouterr().out
    assert kws.main([str(out), "--wav", wav, "--fast", "--no-live", "--threshold", "0.5"]) == 0
    assert "threshold 0.5" in capsys.readouterr().out
    assert cli(["export", str(ck), "--out", str(tmp_path / "c"), "--threshold", "1.5"]) == 2
    del torch


@pytest.fixture(scope="module")
def kws_bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("apps") / "kws-tiny", "logmel")


@pytest.fixture(scope="module")
def ecg_bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("apps") / "ecg-tiny", "ecg")


DET_LINE = re.compile(r"(\d+\.\d+) s\s+(\S+)\s+p=(\d\.\d+)\s+latency\s+(\d+\.\d) ms")


def offline_detections(bundle: Path, wav: Path, threshold: float) -> list:
    model = load(bundle)
    x, rate = read_wav(wav)
    logits = model.stream().accept(resample(x, rate, 16000))  # (T, K)
    det = Detector(model.labels, DetectorConfig.from_ms(10.0, threshold))
    return [(f"{kws.step_end_s(model.spec, d.step):.2f}", d.label) for d in det.update(logits)[0]]


def test_kws_wav_in_process_equals_offline_decisions(kws_bundle, capsys):
    wav = DATA / "digits_allison_8k.wav"
    model = load(kws_bundle)
    x, rate = read_wav(wav)
    sm = Detector(model.labels, DetectorConfig.from_ms(10.0, 0.5)).smooth(
        model.stream().accept(resample(x, rate, 16000)))
    threshold = float(np.round(np.quantile(sm[:, :10].max(axis=1), 0.9), 3))  # some fire
    want = offline_detections(kws_bundle, wav, threshold)
    assert want
    assert kws.main([str(kws_bundle), "--wav", str(wav), "--fast", "--threshold",
                     str(threshold), "--chunk-ms", "37"]) == 0
    out = capsys.readouterr().out
    got = [(m.group(1), m.group(2)) for m in DET_LINE.finditer(out)]
    assert got == want
    assert all(float(m.group(4)) < 1000 for m in DET_LINE.finditer(out))
    assert re.search(r"in 12\.\d s of audio, \d+ steps; CPU .* of one core", out)


def test_kws_rejects_other_front_ends_and_missing_source(ecg_bundle, kws_bundle, capsys):
    assert kws.main([str(ecg_bundle), "--wav", str(DATA / "sentence_espeak_16k.wav")]) == 2
    assert "logmel" in capsys.readouterr().err
    assert kws.main([str(kws_bundle)]) == 2


def test_kws_stdin_equals_wav(kws_bundle, capsys, monkeypatch):
    import io
    import types

    wav = DATA / "sentence_espeak_16k.wav"
    rate, x = wavfile.read(wav)
    assert rate == 16000 and x.dtype == np.int16
    argv = [str(kws_bundle), "--threshold", "0.1", "--smooth-ms", "50"]
    assert kws.main(argv + ["--wav", str(wav), "--fast"]) == 0
    from_wav = [m.group(1, 2) for m in DET_LINE.finditer(capsys.readouterr().out)]
    monkeypatch.setattr(sys, "stdin", types.SimpleNamespace(buffer=io.BytesIO(x.tobytes())))
    assert kws.main(argv + ["--stdin"]) == 0
    from_stdin = [m.group(1, 2) for m in DET_LINE.finditer(capsys.readouterr().out)]
    assert from_wav and from_stdin == from_wav


def test_live_line_shows_level_and_top_posterior():
    import io

    out = io.StringIO()
    view = kws.LiveLine(out, enabled=True)
    view.update(np.full(1600, 0.1, np.float32), "seven", 0.42)
    view.update(np.zeros(1600, np.float32), "six", 0.1)  # within 0.1 s: not redrawn
    view.clear()
    text = out.getvalue()
    assert "level  -20.0 dBFS" in text and "seven" in text and "six" not in text
    assert text.endswith("\r\x1b[K")
    quiet = io.StringIO()
    kws.LiveLine(quiet, enabled=False).update(np.ones(10, np.float32), "x", 1.0)
    assert quiet.getvalue() == ""


def test_wav_source_converts_rate_and_channels_and_paces(tmp_path):
    t = np.arange(int(0.3 * 44100)) / 44100
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    stereo = np.stack([tone, tone], axis=1)
    wavfile.write(tmp_path / "s.wav", 44100, (stereo * 32767).astype(np.int16))
    t0 = time.perf_counter()
    chunks = list(WavSource(tmp_path / "s.wav", 16000, chunk_ms=100, realtime=True))
    assert time.perf_counter() - t0 >= 0.28
    y = np.concatenate([c.samples for c in chunks])
    assert len(y) == 4800 and [len(c.samples) for c in chunks] == [1600, 1600, 1600]
    assert chunks[-1].end_s == pytest.approx(0.3)
    assert np.sqrt(np.mean(y[200:-200] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)


def test_raw_source_reads_int16_across_odd_reads():
    import io

    x = (np.arange(-1000, 1000, 3) * 7).astype("<i2")

    class Dribble(io.BytesIO):
        def read(self, n=-1):
            return super().read(min(n, 333))  # odd byte counts split samples

    got = np.concatenate([c.samples for c in RawSource(Dribble(x.tobytes()), 16000, 16000)])
    np.testing.assert_array_equal(got, x.astype(np.float32) / 32768.0)


@pytest.mark.parametrize("rate_in,rate_out", [(48000, 16000), (44100, 16000), (8000, 16000)])
def test_stream_resampler_matches_resample_poly_and_ignores_chunking(rate_in, rate_out):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(rate_in // 2)
    whole = StreamResampler(rate_in, rate_out).process(x)
    r = StreamResampler(rate_in, rate_out)
    cuts = np.cumsum(rng.integers(1, 700, 200))
    parts = np.concatenate([r.process(p) for p in np.split(x, cuts[cuts < len(x)])])
    np.testing.assert_allclose(parts, whole, atol=1e-6)
    assert len(whole) == -(-len(x) * rate_out // rate_in)
    f = Fraction(rate_out, rate_in)
    ref = resample_poly(x, f.numerator, f.denominator)
    d = int(round(r.delay_s * rate_out))
    np.testing.assert_allclose(whole[d + 50: len(ref) - 50], ref[50: len(ref) - d - 50],
                               atol=1e-5)


def write_csv(path: Path, x: np.ndarray, fs: int, with_time: bool) -> Path:
    if with_time:
        rows = "\n".join(f"{i / fs:.6f},{v:.5f}" for i, v in enumerate(x))
        path.write_text("time_s,mv\n" + rows + "\n")
    else:
        path.write_text("\n".join(f"{v:.5f}" for v in x) + "\n")
    return path


def test_ecg_csv_in_process_matches_beat_stream(ecg_bundle, tmp_path, capsys):
    x, fs = load_record208()
    x = np.array([float(f"{v:.5f}") for v in x[: 20 * fs]], np.float32)  # as the CSV holds it
    direct = BeatStream(ecg_app.FeatureSteps(load(ecg_bundle)), ecg_frontend_config(),
                        labels=AAMI).accept(x)
    for with_time in (False, True):
        csv = write_csv(tmp_path / f"e{with_time}.csv", x, fs, with_time)
        png = tmp_path / "strip.png"
        argv = [str(ecg_bundle), "--csv", str(csv)] + (["--plot", str(png)] if PLOTS else [])
        assert ecg_app.main(argv + ([] if with_time else ["--fs", "360"])) == 0
        out = capsys.readouterr().out
        beats = re.findall(r"^\s+(\d+\.\d{3}) s  ([NSVFQ])  p=", out, re.M)
        assert [(f"{e.time_s:.3f}", e.label) for e in direct] == beats
        assert f"beats {len(direct)} over" in out and "heart rate" in out
        assert re.search(r"CPU: .* of one core as fast as possible in 60-s chunks; 7200 model "
                         r"steps; \d+x real", out)
        assert "no beat annotations" in out
        if PLOTS:
            check_figure(png, (460, 1400))


def test_ecg_stdin_text(ecg_bundle, capsys, monkeypatch):
    import io

    x, fs = load_record208()
    text = "\n".join(f"{v:.5f}" for v in x[: 12 * fs]) + "\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))
    assert ecg_app.main([str(ecg_bundle), "--stdin", "--fs", "360", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "signal: stdin, 360 Hz" in out and "4320 model steps" in out
    assert re.search(r"beats \d+ over", out)


def test_ecg_default_backend_numpy_fast_onnx_paced_same_events(ecg_bundle, tmp_path, capsys):
    parse = ecg_app.build_parser().parse_args
    b = str(ecg_bundle)
    assert ecg_app.default_backend(parse([b, "--fast"])) == "numpy"
    assert ecg_app.default_backend(parse([b])) == "numpy"
    assert ecg_app.default_backend(parse([b, "--realtime"])) == "onnx"
    assert ecg_app.default_backend(parse([b, "--stdin", "--fs", "360"])) == "onnx"
    assert ecg_app.default_backend(parse([b, "--fast", "--backend", "imssa"])) == "imssa"
    x, fs = load_record208()
    csv = write_csv(tmp_path / "e.csv", x[: 20 * fs], fs, False)
    outs = {}
    for be in ([], ["--backend", "onnx"]):
        assert ecg_app.main([b, "--csv", str(csv), "--fs", "360"] + be) == 0
        out = capsys.readouterr().out
        assert f"backend='{be[1] if be else 'numpy'}'" in out
        outs[bool(be)] = re.findall(r"^\s+(\d+\.\d{3}) s  ([NSVFQ])  p=(\S+)", out, re.M)
    assert outs[False] and outs[False] == outs[True]  # integer bundle: bit-identical events


def test_ecg_wfdb_is_evaluated_against_annotations(ecg_bundle, tmp_path, capsys):
    wfdb = pytest.importorskip("wfdb")
    x, fs = load_record208()
    wfdb.wrsamp("rec", fs=fs, units=["mV"], sig_name=["MLII"],
                p_signal=x[: 15 * fs, None].astype(np.float64), fmt=["16"],
                write_dir=str(tmp_path))
    back = wfdb.rdrecord(str(tmp_path / "rec")).p_signal[:, 0]  # as the app reads it
    peaks = [e.sample for e in BeatStream(ecg_app.FeatureSteps(load(ecg_bundle)),
                                          ecg_frontend_config(), labels=AAMI).accept(back)]
    sym = ["N" if i % 4 else "V" for i in range(len(peaks))] + ["+"]  # '+' is not a beat
    wfdb.wrann("rec", "atr", np.array(peaks + [peaks[-1] + 5]), sym, write_dir=str(tmp_path))
    assert ecg_app.main([str(ecg_bundle), "--wfdb", str(tmp_path / "rec"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"TP {len(peaks)}  FN 0  FP 0  Se 100.00%  +P 100.00%" in out
    assert "accuracy" in out and "ref\\alg" in out


def test_ecg_bench_side_by_side(ecg_bundle, tmp_path, capsys):
    from qs4d.apps import ecg_bench

    out = tmp_path / "speed.txt"
    assert ecg_bench.main(["--bundles", str(ecg_bundle), "--chunks", "0.1,10", "--repeats", "1",
                           "--realtime-s", "0.5", "--seconds", "20", "--out", str(out)]) == 0
    text = out.read_text()
    rows = re.findall(r"^ecg-tiny\s+(numpy|onnx)\s+(\S+)s\s+(\d+)\s+(\d+).*  (\d+ .*)$", text,
                      re.M)
    assert sorted((be, c) for be, c, *_ in rows) == [("numpy", "0.1"), ("numpy", "10"),
                                                     ("onnx", "0.1"), ("onnx", "10")]
    assert len({beats for *_, beats in rows}) == 1  # the same beats and classes everywhere
    assert "command: python -m qs4d.apps.ecg_bench --bundles" in text
    assert len(re.findall(r"^  ecg-tiny\s+(numpy|onnx)\s+\d+\.\d+%$", text, re.M)) == 2


def test_rhythm_hints():
    t = np.arange(40) * 0.75  # 80 bpm
    labs = list("NNNN" + "NVNVNVNV" + "NNNN" + "NNVNNVNNV" + "NN" + "VV" + "NN" + "VVVV"
                + "NNNNN")
    r = analyze(t[: len(labs)], labs)
    kinds = [e.kind for e in r.episodes]
    assert "ventricular bigeminy" in kinds and "ventricular trigeminy" in kinds
    assert "ventricular couplet" in kinds and "ventricular run" in kinds
    assert r.mean_hr == pytest.approx(80.0)
    assert r.counts["V"] == labs.count("V")
    fast = analyze(np.arange(10) * 0.4, list("NNNVVVVNNN"))  # 150 bpm run
    assert [e.kind for e in fast.episodes] == ["ventricular tachycardia"]


def test_profile_in_process(kws_bundle, tmp_path, capsys):
    js, png = tmp_path / "p.json", tmp_path / "p.png"
    argv = [str(kws_bundle), "--backends", "onnx,imssa,numpy", "--batch", "1,4", "--steps",
            "20", "--repeats", "2", "--json", str(js), "--torch"]
    argv += ["--plot", str(png)] if PLOTS else []
    assert profile_app.main(argv) == 0
    out = capsys.readouterr().out
    r = json.loads(js.read_text())
    names = {"onnx", "imssa", "numpy", "onnx-float", "torch", "torch-int"}  # integer bundle
    assert set(r["latency"]) == names
    assert all(v["p99_s"] >= v["median_s"] > 0 and v["n"] == 40 for v in r["latency"].values())
    assert dict(r["ratios"])["onnx / onnx-float"] == pytest.approx(
        r["latency"]["onnx"]["median_s"] / r["latency"]["onnx-float"]["median_s"])
    assert dict(r["ratios"])["onnx / torch-int"] == pytest.approx(
        r["latency"]["onnx"]["median_s"] / r["latency"]["torch-int"]["median_s"])
    assert set(r["throughput"]["onnx"]) == {"1", "4"}
    assert r["imssa_per_step"]["array_reads"] > 0 and r["imssa_per_step"]["adc_conversions"] > 0
    assert set(r["energy"]) == {"digital-fp32", "digital-int", "crossbar", "jetson-nano"}
    assert r["costs"]["macs"] == sum(t.macs for t in costs.step_terms(load(kws_bundle).spec))
    assert "ESTIMATES" in out and "onnx / onnx-float" in out
    if PLOTS:
        check_figure(png, (520, 1400))
    assert profile_app.main([str(kws_bundle), "--backends", "gpu"]) == 2


def test_profile_of_a_float_bundle_runs_imssa(bundle_path, tmp_path):
    """A float bundle's crossbar (its weights programmed as codes) runs on imssa; the energy
    model prices integer digital parts only, so no crossbar estimate is printed for it."""
    js = tmp_path / "p.json"
    argv = [str(bundle_path("float")), "--backends", "onnx,imssa", "--batch", "1", "--steps",
            "10", "--repeats", "1", "--json", str(js)]
    assert profile_app.main(argv) == 0
    r = json.loads(js.read_text())
    assert set(r["latency"]) == {"onnx", "imssa"}
    assert r["imssa_per_step"]["array_reads"] > 0
    assert set(r["energy"]) == {"digital-fp32", "jetson-nano"}
    assert any("programmed as codes" in n for n in r["notes"])


def spec_with(bits: int, weight_bits: int) -> Spec:
    return Spec(model=ModelConfig(d_input=3, d_model=8, d_state=6, n_layers=2, n_classes=5,
                                  norm="none"),
                quant=QuantConfig.uniform(bits, weight_bits=weight_bits))


def test_costs_count_macs_from_the_spec():
    s = spec_with(8, 4)
    F, H, P, K, L = 3, 8, 3, 5, 2
    want = F * H + L * (4 * P * H + 2 * P * H + 2 * P * H + H + 2 * H * H + H) + H * K
    c = costs.step_costs(s)
    assert c.macs == want
    assert c.state_bits == L * H * 2 * P * 8
    w_codes = (F * H + L * 2 * H * H + H * K) * 4 + L * H * (6 * P + 1) * 8  # A B C D: 8 bits
    assert c.weight_code_bits == w_codes
    assert costs.step_period_s(s) == pytest.approx(1 / 16000)
    ecg = Spec(model=s.model.replace(d_input=1), frontend=ecg_frontend_config(decimate=4))
    assert costs.step_period_s(ecg) == pytest.approx(4 / 360)


def test_energy_model_is_monotone_in_bits():
    bits = range(2, 17)
    for f in (energy.adc, energy.dac, lambda b: energy.int_mac(b, 8), energy.int_add):
        e = [f(b) for b in bits]
        assert all(b > a for a, b in zip(e, e[1:]))
    assert energy.int_mult(8, 8) == pytest.approx(energy.C.int8_mult)
    assert energy.int_mult(32, 32) == pytest.approx(energy.C.int32_mult, rel=0.05)
    totals = []
    for b in (4, 6, 8, 12):
        s = spec_with(b, b)
        totals.append(energy.digital_int(costs.step_costs(s), costs.step_terms(s))["total"])
    assert all(b > a for a, b in zip(totals, totals[1:]))
    s = spec_with(8, 4)
    per = {"analog_macs": 1000, "dac_conversions": 50, "adc_conversions": 60,
           "digital_macs": 200, "digital_ops": 100}
    xb = [energy.crossbar(per, b, b, costs.step_costs(s), 4)["total"] for b in (4, 6, 8, 10)]
    assert all(b > a for a, b in zip(xb, xb[1:]))


def test_torch_step_equals_the_float_reference(kws_bundle):
    pytest.importorskip("torch")
    from qs4d.models.torch_step import TorchStep

    ref = load(kws_bundle, backend="numpy", float_graph=True).executor
    ts = TorchStep.from_bundle(kws_bundle)
    x = np.random.default_rng(0).standard_normal((30, 2, 40)).astype(np.float32)
    s_ref, s_t = ref.init_state(2), ts.init_state(2)
    for t in range(30):
        a, s_ref = ref(x[t], s_ref)
        b, s_t = ts(x[t], s_t)
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("which", ["fixture", "zoo"])
def test_torch_int_step_equals_the_integer_reference_bit_for_bit(kws_bundle, which):
    pytest.importorskip("torch")
    from qs4d.models.torch_step import TorchIntStep

    path = kws_bundle if which == "fixture" else ZOO / "kws-qat4"
    if not path.is_dir():
        pytest.skip(f"{path} is not in this checkout")
    ref = load(path, backend="numpy").executor
    ts = TorchIntStep.from_bundle(path)
    x = 3 * np.random.default_rng(1).standard_normal((200, 2, ref.spec.model.d_input))
    s_ref, s_t = ref.init_state(2), ts.init_state(2)
    for t in range(len(x)):
        a, s_ref = ref(x[t].astype(np.float32), s_ref)
        b, s_t = ts(x[t].astype(np.float32), s_t)
        np.testing.assert_array_equal(b, a)
        for u, v in zip(s_t, s_ref):
            np.testing.assert_array_equal(u.numpy(), v)


def test_apps_import_neither_torch_nor_sounddevice():
    code = ("import sys, qs4d.cli, qs4d.apps.kws, qs4d.apps.ecg, qs4d.lab.profile, "
            "qs4d.apps.mic, qs4d.apps.plot\n"
            "bad = [m for m in ('torch', 'sounddevice', 'qs4d.models', 'qs4d.export') "
            "if m in sys.modules]\nassert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_complexity_reduction_factors_by_hand(kws_bundle, tmp_path, capsys):
    from qs4d.runtime import complexity as cx

    # H 8, P 4, one layer, F 40, K 12; 4-bit weights, 8-bit A B C D state act ADC
    macs = {"enc": 40 * 8, "A": 4 * 4 * 8, "B": 2 * 4 * 8, "C": 2 * 4 * 8, "D": 8,
            "mix": 2 * 8 * 8, "glu": 8, "dec": 8 * 12}
    bits = {"enc": 4 * 8, "A": 64, "B": 64, "C": 64, "D": 64, "mix": 4 * 8, "glu": 64,
            "dec": 4 * 8}
    r = cx.row(str(kws_bundle))
    assert r["float_macs"] == r["macs"] == sum(macs.values()) == 816
    assert r["bitops"] == sum(macs[k] * bits[k] for k in macs)
    assert r["bitops_reduction"] == round(816 * 32 * 32 / r["bitops"], 3)
    # memory: weight codes + state (8 x 2P values); ADC: per channel 2P state rows at 8 bits
    # and the output row at 8 bits, float32 at 32 bits
    assert r["float_state_mem_bits"] == 8 * 8 * 32 and r["state_mem_bits"] == 8 * 8 * 8
    assert r["adc_bit_conversions"] == 8 * (8 * 8 + 8)
    assert r["float_adc_bit_conversions"] == 8 * (8 * 32 + 32)
    assert cx.main([str(kws_bundle), "--out", str(tmp_path / "c.txt")]) == 0
    assert re.search(r"^kws-tiny\s+4/8/8/8\s+4/4\s", capsys.readouterr().out, re.M)
    assert (tmp_path / "c.txt").read_text().startswith("command: python -m qs4d.runtime.complexity")


def _has_color(img: np.ndarray, hex_color: str, tol: float = 0.06) -> bool:
    rgb = np.array([int(hex_color[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    return bool((np.abs(img - rgb).max(axis=-1) < tol).any())


@needs_plots
def test_ecg_strip_draws_the_trace_and_the_beats_by_class(tmp_path):
    from qs4d.apps.plot import ecg_strip

    fs, t = 360.0, np.arange(30 * 360) / 360.0
    x = 0.1 * np.sin(2 * np.pi * 0.3 * t) + np.where((t % 0.8) < 0.03, 1.0, 0.0)  # (L,)
    beats = [(k * 0.8, "V" if k % 4 == 3 else "N") for k in range(37)]
    # a name that is not .png still gets a PNG (matplotlib would take the suffix as format)
    img = check_figure(ecg_strip(tmp_path / "strip.wav", x, fs, 5.0, beats, "rec 1"),
                       (460, 1400))
    assert _has_color(img, "#1f77b4") and _has_color(img, "#d62728")  # N blue, V red
    assert not _has_color(img, "#9467bd")  # no F beat, no purple
    with pytest.raises(ValueError, match="no samples"):
        ecg_strip(tmp_path / "x.png", x, fs, 40.0, beats, "past the end")


@needs_plots
def test_line_plot_of_a_sweep(tmp_path):
    from qs4d.lab.plots import line_plot

    series = {"qat": ([3, 4, 8], [80.0, 88.0, 90.0]), "ptq": ([8, 3, 4], [89.0, 20.0, 60.0])}
    img = check_figure(line_plot(tmp_path / "acc.png", series, title="accuracy vs bits",
                                 x_label="bits", y_label="test accuracy (%)", ref=91.0,
                                 ref_label="float"), (560, 1100))
    assert _has_color(img, "#1f77b4") and _has_color(img, "#ff7f0e")  # the two series
    with pytest.raises(ValueError, match="no points"):
        line_plot(tmp_path / "none.png", {"a": ([], [])}, title="", x_label="", y_label="")


@pytest.mark.parametrize("command", ["ecg", "profile", "kws-bench"])
def test_plot_without_matplotlib_is_a_one_line_usage_error(command, ecg_bundle, kws_bundle,
                                                           tmp_path, capsys, monkeypatch):
    """--plot on an install without the plot extra: exit 2 before any work, one line naming
    the extra, no file."""
    from qs4d.cli import main

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now fails
    png = tmp_path / "p.png"
    bundle = str(ecg_bundle if command == "ecg" else kws_bundle)
    assert main([command, bundle, "--plot", str(png)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "pip install 'qs4d[plot]'" in err, err
    assert "matplotlib" in err and "Traceback" not in err and not png.exists()
    with pytest.raises(UsageError, match="needs matplotlib"):
        figure(100, 100)


def test_apps_run_the_zoo_bundle_when_none_is_named(capsys, monkeypatch, tmp_path):
    """`qs4d kws --wav F` and `qs4d ecg --record208` without a BUNDLE run the package's
    sc12-qat4 and ecg-qat4; with no zoo, a one-line usage error."""
    from qs4d.apps import zoo

    if zoo.default_bundle("kws") is None or zoo.default_bundle("ecg") is None:
        pytest.skip("the zoo's sc12-qat4 / ecg-qat4 are not present")
    assert kws.main(["--wav", str(DATA / "sentence_espeak_16k.wav"), "--fast", "--no-live"]) == 0
    assert "Model('sc12-qat4'" in capsys.readouterr().out
    assert ecg_app.main(["--record208", "--fast", "--seconds", "5", "--quiet"]) == 0
    monkeypatch.setattr(zoo, "ZOO", tmp_path)
    assert kws.main(["--wav", str(DATA / "sentence_espeak_16k.wav"), "--fast"]) == 2
    with pytest.raises(UsageError, match="BUNDLE is required"):
        ecg_app.main(["--record208", "--fast"])


def test_models_lists_the_zoo_with_headline_figures(capsys, tmp_path):
    """`qs4d models`: one line per bundle with task, precision, weight memory and the card's
    headline figure, the apps' default bundles marked; a folder without bundles exits 1."""
    from qs4d.apps import models, zoo

    assert models.main(["--zoo", str(tmp_path)]) == 1
    b = tmp_path / "b1"
    b.mkdir()
    b.joinpath("spec.json").write_text(json.dumps({
        "labels": ["N", "S", "V", "F", "Q"], "metrics": {"test_acc": 50.0},
        "quant": {"weights": {"bits": 2}, "state": {"bits": 8}}}))
    b.joinpath("README.md").write_text("Weight memory: 16384 bits.\n\nAccuracy 91.25% of "
                                       "matched beats.\n")
    c = tmp_path / "c2"
    c.mkdir()
    c.joinpath("spec.json").write_text(json.dumps({
        "labels": ["yes", "no", "up"], "metrics": {"float_test_acc": 88.04}, "quant": {}}))
    c.joinpath("README.md").write_text("## Real speakers (sc12)\n")
    assert models.rows(tmp_path) == [
        ("b1", "ECG beats (AAMI)", "ternary/s8", "2.0 KiB", "MIT-BIH DS2 (22 patients): 91.2%"),
        ("c2", "keywords (sc12)", "float32", "-", "held-out real speakers: 88.0%")]
    if zoo.default_bundle("ecg") is None:
        pytest.skip("the package's zoo is not present")
    capsys.readouterr()
    assert models.main([]) == 0
    out = capsys.readouterr().out
    assert "ecg-qat4 *" in out and "sc12-qat4 *" in out and "MIT-BIH DS2" in out
