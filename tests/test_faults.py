"""Issue 20's numbered cases, one regression test (or a few) each: bad input and faults end in
a clear error naming the file, field or value (one line on stderr, exit code 1, or 2 for a
usage error, from `qs4d`), or in the correct result; never a crash or a silently wrong answer.

Glossary: B batch/streams, T steps, F features, K classes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import test_apps
from conftest import ROOT, steps_input
from scipy.io import wavfile
from test_apps import DATA

import qs4d
from qs4d.cli import main as qs4d_main
from qs4d.export.bundle import write_bundle, write_manifest
from qs4d.runtime.bundle import BundleError, load_bundle
from qs4d.runtime.crossbar_io import CrossbarError
from qs4d.runtime.errors import InputError, UsageError
from qs4d.runtime.spec import SPEC_FILE, WEIGHTS_FILE, SpecError

kws_bundle = test_apps.kws_bundle  # the app tests' tiny log-mel and ECG bundles (fixtures)
ecg_bundle = test_apps.ecg_bundle


@pytest.fixture
def w4(tmp_path, bundle_path) -> Path:
    out = tmp_path / "b"
    shutil.copytree(bundle_path("w4"), out)
    return out


def cli(capsys, *argv) -> tuple[int, str, str]:
    """`qs4d ARGV` in process: (exit code, stdout, stderr)."""
    rc = qs4d_main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def one_line_error(err: str, *words) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in lines[0], (w, lines[0])


def edit_json(path: Path, edit) -> None:
    d = json.loads(path.read_text())
    edit(d)
    path.write_text(json.dumps(d))


# -- 1. kws: a chunk that completes no log-mel frame ------------------------------------------

def wav(path: Path, x: np.ndarray, rate: int = 16000) -> Path:
    wavfile.write(path, rate, x)
    return path


@pytest.mark.parametrize("n,chunk_ms", [(16050, 100), (300, 100), (32000, 20), (8000, 5)])
def test_kws_chunks_without_a_frame_give_the_same_decisions(kws_bundle, tmp_path, capsys, n,
                                                             chunk_ms):
    x = (0.1 * np.random.default_rng(n).standard_normal(n)).astype(np.float32)
    f = wav(tmp_path / "a.wav", x)
    rc, out, err = cli(capsys, "kws", kws_bundle, "--wav", f, "--fast", "--chunk-ms", chunk_ms,
                       "--threshold", 0.3, "--smooth-ms", 50)
    assert rc == 0, err
    rc2, ref, _ = cli(capsys, "kws", kws_bundle, "--wav", f, "--fast", "--chunk-ms", 1000,
                      "--threshold", 0.3, "--smooth-ms", 50)
    steps = 0 if n < 400 else 1 + (n - 400) // 160
    assert f"{steps} steps" in out.splitlines()[-1]
    det = [ln.split("latency")[0] for ln in out.splitlines() if " p=" in ln]
    assert det == [ln.split("latency")[0] for ln in ref.splitlines() if " p=" in ln]


def test_kws_chunk_ms_zero_is_a_usage_error(kws_bundle, capsys):
    rc, _, err = cli(capsys, "kws", kws_bundle, "--wav", DATA / "sentence_espeak_16k.wav",
                     "--chunk-ms", 0)
    assert rc == 2
    one_line_error(err, "--chunk-ms")


# -- 2. non-finite ECG input -------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["nan", "inf", "-inf"])
def test_ecg_csv_with_non_finite_samples_refused(ecg_bundle, tmp_path, capsys, bad):
    x = np.sin(np.arange(3600) / 50.0)
    lines = [f"{v:.4f}" for v in x]
    lines[1000:1000 + (36 if bad == "nan" else 1)] = [bad] * (36 if bad == "nan" else 1)
    f = tmp_path / "e.csv"
    f.write_text("\n".join(lines) + "\n")
    rc, out, err = cli(capsys, "ecg", ecg_bundle, "--csv", f, "--fs", 360)
    assert rc == 1 and "beats" not in out
    one_line_error(err, "e.csv", "line 1001")


def test_ecg_stdin_with_non_finite_sample_refused(ecg_bundle, capsys, monkeypatch):
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO("0.1\n0.2\nnan\n0.3\n"))
    rc, _, err = cli(capsys, "ecg", ecg_bundle, "--stdin", "--fs", 360)
    assert rc == 1
    one_line_error(err, "stdin line 3")


def test_run_features_and_ecg_samples_refuse_non_finite(ecg_bundle):
    from qs4d.runtime.ecg import BeatStream, EcgFrontend

    model = qs4d.load(ecg_bundle, backend="numpy")
    s = model.stream()
    s.run_features(np.zeros((10, 1), np.float32))
    for bad in (np.nan, np.inf):
        with pytest.raises(InputError, match="NaN or Inf"):
            s.run_features(np.array([[0.0], [bad]], np.float32))
    assert s.steps == 10
    with pytest.raises(InputError, match="beyond the float32 range"):
        s.run_features(np.array([[1e300]]))
    fe = EcgFrontend(model.spec.frontend)
    with pytest.raises(InputError, match="sample 2 of the chunk is nan"):
        fe.process(np.array([0.0, 1.0, np.nan]))
    with pytest.raises(InputError, match="non-finite"):
        BeatStream(s, model.spec.frontend).accept(np.array([np.inf]))


# -- 3. export never deletes what it did not write ---------------------------------------------

def test_export_refuses_a_folder_that_is_not_a_bundle(bundle_path, tmp_path):
    b = load_bundle(bundle_path("w4"))
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    with pytest.raises(UsageError, match="not a bundle.*--force"):
        write_bundle(out, b.spec, b.weights)
    assert (out / "thesis.tex").read_text() == "years of work"
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(UsageError, match="a file"):
        write_bundle(f, b.spec, b.weights)
    write_bundle(out, b.spec, b.weights, force=True)
    assert not (out / "thesis.tex").exists() and load_bundle(out).spec == b.spec


def test_export_replaces_a_bundle_atomically(bundle_path, tmp_path):
    b = load_bundle(bundle_path("w4"))
    out = tmp_path / "bundle"
    write_bundle(out, b.spec, b.weights, card="first")
    write_bundle(out, b.spec, b.weights, card="second")  # a bundle: replaced
    assert (out / "README.md").read_text() == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]  # nothing left beside it
    (out / "notes.txt").write_text("mine")  # not listed in the manifest: not a bundle now
    with pytest.raises(UsageError):
        write_bundle(out, b.spec, b.weights)
    assert (out / "notes.txt").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    write_bundle(empty, b.spec, b.weights)
    assert (empty / "manifest.json").exists()


def test_qs4d_export_refuses_before_reading_the_checkpoint(tmp_path, capsys):
    out = tmp_path / "data"
    out.mkdir()
    (out / "keep.csv").write_text("1\n")
    rc, _, err = cli(capsys, "export", tmp_path / "no-such.pt", "--out", out)
    assert rc == 2 and (out / "keep.csv").exists()
    one_line_error(err, "not a bundle", "--force")


# -- 4. memory: sizes checked before allocation ------------------------------------------------

def test_crossbar_array_count_of_1e9_refused(w4):
    edit_json(w4 / "crossbar" / "manifest.json", lambda d: d["array"].update(count=10**9))
    write_manifest(w4)
    with pytest.raises(CrossbarError, match="array.*more than"):
        qs4d.load(w4, backend="imssa")


def _npz(path: Path, members: dict) -> None:
    """An .npz written by hand: member name -> (header dict, data bytes), deflated."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, (header, data) in members.items():
            h = repr(header).encode()
            h += b" " * ((64 - (10 + len(h) + 1) % 64) % 64) + b"\n"
            z.writestr(name + ".npy", b"\x93NUMPY\x01\x00" + len(h).to_bytes(2, "little") + h +
                       data)


def test_weights_bomb_and_huge_member_refused_before_inflating(w4):
    good = load_bundle(w4).weights
    big = {"descr": "<f4", "fortran_order": False, "shape": (1 << 40,)}  # 4 TiB
    _npz(w4 / WEIGHTS_FILE, {"enc.w": (big, b"")})
    write_manifest(w4)
    with pytest.raises(BundleError, match=r"\['enc.w'\]: shape"):
        qs4d.load(w4, backend="numpy")
    # a bomb: a member of the right name and shape, followed by a gigabyte of zeros
    hdr = {"descr": "<i1", "fortran_order": False, "shape": good["enc.w"].shape}
    with zipfile.ZipFile(w4 / WEIGHTS_FILE, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("enc.w.npy", "w", force_zip64=True) as f:
            h = repr(hdr).encode()
            h += b" " * ((64 - (10 + len(h) + 1) % 64) % 64) + b"\n"
            f.write(b"\x93NUMPY\x01\x00" + len(h).to_bytes(2, "little") + h)
            f.write(good["enc.w"].astype(np.int8).tobytes())
            zeros = bytes(1 << 20)
            for _ in range(1024):
                f.write(zeros)
    write_manifest(w4)
    assert (w4 / WEIGHTS_FILE).stat().st_size < 8 << 20
    with pytest.raises(BundleError, match="data beyond"):  # its declared bytes, then 1 more
        qs4d.load(w4, backend="numpy")


@pytest.mark.parametrize("payload,match", [
    (b"PK\x03\x04garbage", "not an .npz|unreadable"),  # BadZipFile
    (None, "not an .npz"),  # an .npy posing as an .npz
])
def test_unreadable_npz_refused(w4, payload, match):
    if payload is None:
        np.save(w4 / "x.npy", np.zeros(3))
        payload = (w4 / "x.npy").read_bytes()
        (w4 / "x.npy").unlink()
    for name in (WEIGHTS_FILE, "crossbar/tables.npz"):
        b = w4.parent / f"c{len(name)}"
        shutil.copytree(w4, b)
        (b / name).write_bytes(payload)
        write_manifest(b)
        with pytest.raises((BundleError, CrossbarError), match=match):
            qs4d.load(b, backend="imssa")


def test_corrupt_deflate_data_refused(w4):
    """A flipped byte inside the deflated tables (zlib.error or a truncated member)."""
    data = bytearray((w4 / "crossbar" / "tables.npz").read_bytes())
    i = data.index(b"level_plus.npy") + 200
    data[i: i + 64] = bytes(64)
    (w4 / "crossbar" / "tables.npz").write_bytes(bytes(data))
    write_manifest(w4)
    with pytest.raises(CrossbarError, match="tables.npz"):
        qs4d.load(w4, backend="imssa")


LIMIT_CHILD = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
import qs4d
from qs4d.runtime.spec import SpecError
for path in sys.argv[1:]:
    for backend in ("numpy", "onnx", "imssa"):
        try:
            qs4d.load(path, backend=backend)
        except SpecError as e:
            pass
print("ok")
"""


def test_no_bundle_edit_exceeds_2gb(w4, tmp_path):
    """Each of these edits (manifest re-hashed) is refused in a process limited to 2 GB of
    address space, without a MemoryError or a kill."""
    edits = {
        "count": ("crossbar/manifest.json", lambda d: d["array"].update(count=10**9)),
        "rows": ("crossbar/manifest.json", lambda d: d["config"].update(array_rows=1 << 20)),
        "blocks": ("crossbar/manifest.json", lambda d: d["groups"][0].update(blocks=10**9)),
        "d_model": (SPEC_FILE, lambda d: d["model"].update(d_model=4096, d_state=4096)),
        "layers": (SPEC_FILE, lambda d: d["model"].update(n_layers=10**6)),
        "bits": (SPEC_FILE, lambda d: d["quant"]["adc"].update(bits=24)),
    }
    paths = []
    for name, (f, edit) in edits.items():
        b = tmp_path / name
        shutil.copytree(w4, b)
        edit_json(b / f, edit)
        write_manifest(b)
        paths.append(str(b))
    b = tmp_path / "huge-member"
    shutil.copytree(w4, b)
    big = {"descr": "<f4", "fortran_order": False, "shape": (1 << 40,)}
    _npz(b / "crossbar" / "tables.npz", {"level_plus": (big, b"")})
    write_manifest(b)
    paths.append(str(b))
    done = subprocess.run([sys.executable, "-c", LIMIT_CHILD, *paths], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


# -- 5. altered step.onnx constants (re-hashed) ------------------------------------------------

def test_altered_onnx_table_entry_refused(w4):
    """An entry of a layer's lookup table changed in step.onnx (manifest re-hashed): the load
    check runs enough steps over enough of the codes' range to see it."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(w4 / "step.onnx")
    ref = qs4d.load(w4, backend="numpy")
    x = steps_input(ref.spec, 2000, np.random.default_rng(3), batch=4)
    want = ref.stream(batch=4).accept(x)
    tables = [t for t in m.graph.initializer if "table" in t.name]
    assert tables
    refused = 0
    for t in tables:
        a = numpy_helper.to_array(t).copy()
        flat = a.reshape(-1)
        flat[len(flat) // 2] += 1 if a.dtype.kind in "iu" else 0.5
        saved = onnx.TensorProto()
        saved.CopyFrom(t)
        t.CopyFrom(numpy_helper.from_array(a, t.name))
        (w4 / "step.onnx").write_bytes(m.SerializeToString())
        t.CopyFrom(saved)
        write_manifest(w4)
        try:
            got = qs4d.load(w4, backend="onnx").stream(batch=4).accept(x)
        except BundleError as e:
            assert "step.onnx" in str(e) and "disagrees" in str(e)
            refused += 1
            continue
        np.testing.assert_array_equal(got, want, err_msg=f"{t.name} altered, loaded silently")
    assert refused  # the middle entries are used


# -- 6. one-line errors from the command line --------------------------------------------------

def test_bundle_load_failures_are_one_line(kws_bundle, ecg_bundle, tmp_path, capsys):
    w = DATA / "sentence_espeak_16k.wav"
    rc, _, err = cli(capsys, "kws", tmp_path / "nowhere", "--wav", w)
    assert rc == 1
    one_line_error(err, "qs4d kws:", "not a bundle directory")
    b = tmp_path / "k"
    shutil.copytree(kws_bundle, b)
    (b / "step.onnx").write_bytes(b"\0" * 100)
    rc, _, err = cli(capsys, "kws", b, "--wav", w)
    assert rc == 1
    one_line_error(err, "step.onnx", "size 100")
    rc, _, err = cli(capsys, "ecg", b)
    assert rc == 1
    one_line_error(err, "qs4d ecg:", "step.onnx")


def test_debug_keeps_the_traceback(tmp_path):
    with pytest.raises(BundleError):
        qs4d_main(["--debug", "kws", str(tmp_path), "--wav", "x.wav"])


def test_unreadable_and_absurd_wavs(kws_bundle, tmp_path, capsys):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x10\0\0\0WAVEfmt garbage")
    loud = wav(tmp_path / "loud.wav", np.full(16000, 1e30, np.float32))
    nan = wav(tmp_path / "nan.wav", np.array([0.0, np.nan] * 800, np.float32))
    zero = tmp_path / "zero.wav"  # block align 0 in the header (found by the fuzz suite)
    data = bytearray(wav(zero, np.zeros(800, np.float32)).read_bytes())
    data[32] = 0
    zero.write_bytes(bytes(data))
    for f, words in ((bad, ["bad.wav", "cannot read as WAV"]),
                     (zero, ["zero.wav", "cannot read as WAV"]),
                     (tmp_path / "none.wav", ["none.wav", "no such file"]),
                     (loud, ["loud.wav", "peak at 1e+30"]), (nan, ["nan.wav", "sample 1"])):
        rc, out, err = cli(capsys, "kws", kws_bundle, "--wav", f, "--fast")
        assert rc == 1 and "detection" not in out, (f, out)
        one_line_error(err, *words)


def test_mic_without_an_audio_device(kws_bundle, capsys, monkeypatch):
    import types

    class PortAudioError(Exception):
        pass

    def no_device(*args, **kw):
        raise PortAudioError("Error querying device -1\nline 2 of a long story")

    fake = types.SimpleNamespace(PortAudioError=PortAudioError, check_input_settings=no_device,
                                 query_devices=no_device, InputStream=no_device)
    monkeypatch.setitem(sys.modules, "sounddevice", fake)
    rc, _, err = cli(capsys, "kws", kws_bundle, "--mic", "--seconds", 1)
    assert rc == 1
    one_line_error(err, "no usable audio input", "Error querying device -1")
    rc, _, err = cli(capsys, "kws", "--list-devices")
    assert rc == 1
    one_line_error(err, "no usable audio input")


@pytest.mark.parametrize("app,args,word", [
    ("kws", ["--stdin", "--rate", "0"], "--rate"),
    ("kws", ["--mic", "--seconds", "-1"], "--seconds"),
    ("kws", ["--wav", "x.wav", "--threshold", "2"], "threshold"),
    ("ecg", ["--stdin", "--fs", "0"], "--fs"),
    ("ecg", ["--seconds", "-1"], "--seconds"),
    ("ecg", ["--seconds", "nan"], "--seconds"),
    ("ecg", ["--plot", "/no/such/folder/strip.png"], "/no/such/folder"),
    ("ecg", ["--chunk-ms", "0"], "--chunk-ms"),
])
def test_bad_arguments_are_usage_errors(kws_bundle, ecg_bundle, capsys, app, args, word):
    b = kws_bundle if app == "kws" else ecg_bundle
    rc, out, err = cli(capsys, app, b, *args)
    assert rc == 2 and not out
    one_line_error(err, word)


def test_garbage_on_ecg_stdin(ecg_bundle, capsys, monkeypatch):
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO("0.1\n0.2\n\x00\x01garbage\n"))
    rc, _, err = cli(capsys, "ecg", ecg_bundle, "--stdin", "--fs", 360)
    assert rc == 1
    one_line_error(err, "stdin line 3", "not a number")


def test_corrupt_crossbar_files_refused(w4):
    cases = {
        "truncated": lambda d: (d / "crossbar/tables.npz").write_bytes(
            (d / "crossbar/tables.npz").read_bytes()[:-100]),
        "bad utf-8": lambda d: (d / "crossbar/array_000.csv").write_bytes(b"\xff\xfe\x00"),
        "bad json": lambda d: (d / "crossbar/manifest.json").write_bytes(b"\xff{"),
        "nested": lambda d: (d / "crossbar/manifest.json").write_text("[" * 100000),
        "count type": lambda d: edit_json(d / "crossbar/manifest.json",
                                          lambda m: m["array"].update(count="4")),
        "groups type": lambda d: edit_json(d / "crossbar/manifest.json",
                                           lambda m: m.update(groups=[7])),
    }
    for name, damage in cases.items():
        b = w4.parent / name.replace(" ", "_")
        shutil.copytree(w4, b)
        damage(b)
        write_manifest(b)
        with pytest.raises(CrossbarError, match="crossbar"):
            qs4d.load(b, backend="imssa")


@pytest.mark.parametrize("edit,match", [
    (lambda d: d["frontend"].update(n_mels=0), "n_mels"),
    (lambda d: d["frontend"].update(band_hz=[0.5]), "band_hz"),
    (lambda d: d["frontend"].update(sample_rate=10**9), "sample_rate"),
    (lambda d: d["frontend"].update(norm_mean=[0.0], norm_std=[0.0]), "norm_std"),
    (lambda d: d["frontend"].update(kind="logmel"), "d_input|f_max"),
    (lambda d: d["model"].update(d_model=10**9), "d_model"),
])
def test_spec_values_that_cannot_work_refused(w4, edit, match):
    edit_json(w4 / SPEC_FILE, edit)
    write_manifest(w4)
    with pytest.raises(SpecError, match=match):
        qs4d.load(w4, backend="numpy")


def test_deeply_nested_json_refused(w4):
    (w4 / SPEC_FILE).write_text("[" * 200000 + "]" * 200000)
    write_manifest(w4)
    with pytest.raises(BundleError, match="nested too deeply|not valid JSON"):
        qs4d.load(w4, backend="numpy")
    (w4 / "manifest.json").write_text('{"files": ' + "[" * 200000)
    with pytest.raises(BundleError, match="manifest.json"):
        qs4d.load(w4, backend="numpy")


@pytest.mark.parametrize("batch", [2.5, 0, -1, True, "2"])
def test_batch_must_be_a_positive_integer(bundle_path, batch, capsys):
    with pytest.raises(InputError, match="batch"):
        qs4d.load(bundle_path("int8"), backend="numpy").stream(batch=batch)
    if batch != "2":  # "2" is a valid --batch on the command line
        rc, _, err = cli(capsys, "profile", bundle_path("int8"), "--batch", str(batch))
        assert rc == 2
        one_line_error(err, "--batch")


# -- 7. restore() ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def int8(bundle_path):
    return qs4d.load(bundle_path("int8"), backend="numpy")


def advanced(model, batch=2, steps=30):
    s = model.stream(batch=batch)
    s.accept(steps_input(model.spec, steps, np.random.default_rng(1), batch=batch))
    return s


@pytest.mark.parametrize("damage,match", [
    (lambda d: d.pop("steps"), "steps"),
    (lambda d: d.update(steps=np.int64(-5)), "steps must be >= 0"),
    (lambda d: d.update(steps=np.array([1, 2])), "steps must be an integer scalar"),
    (lambda d: d.pop("model"), "no model digest"),
    (lambda d: d.update(model=np.asarray("0" * 64)), "another model"),
    (lambda d: d.update(backend=np.asarray("imssa")), "'imssa' backend"),
    (lambda d: d.update(extra=np.zeros(1)), "unexpected key"),
])
def test_refused_state_leaves_the_stream_as_it_was(int8, damage, match):
    saved = advanced(int8).state()
    d = dict(saved)
    damage(d)
    s = advanced(int8, steps=10)
    before = s.state()
    with pytest.raises(InputError, match=match):
        s.restore(d)
    after = s.state()
    assert after.keys() == before.keys() and all(np.array_equal(after[k], before[k])
                                                  for k in before)


def test_state_of_another_model_with_the_same_shapes_refused(bundle_path, int8):
    other = qs4d.load(bundle_path("tern"), backend="numpy")  # same H, N, layers; 8-bit state
    st = advanced(other).state()
    assert all(st[k].shape == v.shape for k, v in advanced(int8).state().items()
               if k.startswith("rec."))
    with pytest.raises(InputError, match="another model"):
        int8.stream(batch=2).restore(st)


def test_state_saved_and_loaded_through_a_file_keeps_its_origin(int8, tmp_path):
    s = advanced(int8)
    s.save(tmp_path / "s.npz")
    t = int8.stream(batch=2)
    t.load(tmp_path / "s.npz")
    assert t.steps == s.steps
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04")
    with pytest.raises(InputError, match="bad.npz: not an .npz"):
        t.load(tmp_path / "bad.npz")


def test_front_end_state_with_nan_refused(kws_bundle):
    model = qs4d.load(kws_bundle, backend="numpy")
    s = model.stream()
    s.accept(np.zeros(500, np.float32))
    st = s.state()
    st["fe.0.buffer"] = st["fe.0.buffer"].copy()
    st["fe.0.buffer"][0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        model.stream().restore(st)


def test_overflow_leaves_the_front_end_as_it_was(kws_bundle):
    """A log-mel stream whose model overflows (an executor made to give Inf on loud
    features): the chunk is refused and the front end's buffer is the one from before it, so
    the next chunk gives what an undisturbed stream gives."""
    model = qs4d.load(kws_bundle, backend="numpy", chunked=False)
    real = model.executor

    class Overflowing:
        def init_state(self, batch):
            return real.init_state(batch)

        def __call__(self, x, state):
            y, state = real(x, state)
            return (y * np.inf if np.abs(x).max() > 20 else y), state

    x = (0.1 * np.random.default_rng(6).standard_normal(4000)).astype(np.float32)
    want = model.stream().accept(x)
    model.executor = Overflowing()
    s = model.stream()
    s.accept(x[:1234])
    with np.errstate(all="ignore"), pytest.raises(InputError, match="overflowed"):
        s.accept(np.full(1000, 3.4e38, np.float32))
    n = s.steps
    np.testing.assert_array_equal(s.accept(x[1234:]), want[n:])


@pytest.mark.parametrize("name", ["int8", "zoo/toy-qat4"])
def test_imssa_extreme_finite_input_never_gives_nan(bundle_path, name):
    """-3.4e38 overflows the simulator's float32 arithmetic: an InputError and the stream kept
    (or, where nothing overflows, finite logits), never NaN logits."""
    model = qs4d.load(bundle_path(name), backend="imssa")
    s = model.stream()
    x = np.zeros((3, model.spec.model.d_input), np.float32)
    s.accept(x)
    x[1, 0] = -3.4e38
    with np.errstate(all="ignore"):
        try:
            y = s.accept(x)
        except InputError as e:
            assert "overflowed" in str(e) and s.steps == 3
        else:
            assert np.isfinite(y).all() and s.steps == 6
    assert np.isfinite(s.accept(x[:1] * 0)).all()
