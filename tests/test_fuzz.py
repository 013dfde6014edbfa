"""The fuzz suite of issue 20 (hypothesis, derandomized: the same examples every run; about a
minute on two shared cores): byte flips, truncations and JSON edits of every bundle file, with
and without re-hashing the manifest; stream inputs; saved states; command lines; WAV and CSV
files. Every case must end in a clean refusal (a qs4d error naming what is wrong, or exit code
1 or 2) or in a correct output: never a crash, a hang, unbounded memory or a silently changed
result.

Bundles load in a child process limited to 2 GB of address space with a timeout per case, so
that a crash, a hang or a runaway allocation fails the test instead of killing pytest.

Glossary: B batch/streams, T steps, F features, K classes.
"""

from __future__ import annotations

import io
import json
import shutil
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import steps_input
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.io import wavfile
from test_apps import make_bundle
from test_bundle import OnnxWorker

import qs4d
from qs4d.cli import main as qs4d_main
from qs4d.export.bundle import write_manifest
from qs4d.runtime.errors import InputError, Qs4dError


def fuzz(n: int):
    """Hypothesis settings of the suite: n examples, derandomized, no deadline."""
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow, HealthCheck.data_too_large])
BACKENDS = ("numpy", "onnx", "imssa")

WORKER = textwrap.dedent("""\
    import hashlib, json, os, resource, sys, warnings
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
    warnings.simplefilter("ignore")
    import numpy as np
    np.seterr(all="ignore")
    import qs4d
    from qs4d.runtime.errors import Qs4dError
    reply = os.fdopen(os.dup(1), "w")
    quiet = os.open(os.devnull, os.O_WRONLY)
    os.dup2(quiet, 1)
    os.dup2(quiet, 2)
    x = np.load(sys.argv[1])
    for line in sys.stdin:
        out = {}
        for backend in ("numpy", "onnx", "imssa"):
            try:
                y = qs4d.load(line.strip(), backend=backend).stream().accept(x)
                out[backend] = {"ok": True, "y": hashlib.sha256(y.tobytes()).hexdigest(),
                                "finite": bool(np.isfinite(y).all()), "raw": y.tolist()}
            except Exception as e:
                out[backend] = {"ok": False, "qs4d": isinstance(e, Qs4dError),
                                "type": type(e).__name__, "msg": str(e)[:300]}
        print(json.dumps(out), file=reply, flush=True)
""")


@pytest.fixture(scope="module")
def base(bundle_path, tmp_path_factory):
    """The 4-bit pruned tiny bundle, its input, and each backend's reference output."""
    src = bundle_path("w4")
    work = tmp_path_factory.mktemp("fuzz-bundles")
    x = steps_input(qs4d.load(src, backend="numpy").spec, 40, np.random.default_rng(0))
    worker = OnnxWorker(work, x, WORKER)  # here: every backend, in 2 GB
    ref = worker.ask(src)
    assert all(ref[b]["ok"] for b in BACKENDS), ref
    files = sorted(p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file())
    yield src, ref, worker, work, files
    worker.close()


def _json_paths(v, prefix=()):
    """Every leaf path of a JSON value (lists and objects walked)."""
    if isinstance(v, dict):
        for k, x in v.items():
            yield from _json_paths(x, prefix + (k,))
    elif isinstance(v, list) and v:
        for i, x in enumerate(v[:4]):
            yield from _json_paths(x, prefix + (i,))
    else:
        yield prefix


JSON_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40),
                        st.sampled_from([0, -1, 1, 10**9, 10**18, 2**63, 0.5, -0.5, 1e308,
                                         1e-300, "", "x", [], {}, [0.5], [[1]]]),
                        st.floats(allow_nan=False, allow_infinity=False))


@st.composite
def bundle_edits(draw, files):
    """(file, operation, argument, re-hash the manifest)."""
    name = draw(st.sampled_from(files))
    ops = ["flip", "truncate", "append"] + (["json"] * 3 if name.endswith(".json") else [])
    op = draw(st.sampled_from(ops))
    if op == "flip":
        arg = draw(st.lists(st.tuples(st.integers(0, 2**31), st.integers(1, 255)),
                            min_size=1, max_size=4))
    elif op == "truncate":
        arg = draw(st.floats(0.0, 0.999))
    elif op == "append":
        arg = draw(st.binary(min_size=1, max_size=64))
    else:
        arg = (draw(st.integers(0, 10**6)), draw(JSON_VALUES))
    return name, op, arg, draw(st.booleans()) if name != "manifest.json" else False


def _apply(path: Path, name: str, op: str, arg) -> bool:
    """Damage one file; True when the JSON it holds now means something else (a re-hashed
    semantic edit: a different, possibly valid, bundle)."""
    f = path / name
    data = bytearray(f.read_bytes())
    before = _parse(bytes(data))
    if op == "flip":
        for pos, xor in {p % len(data): x for p, x in arg}.items():
            data[pos] ^= xor
    elif op == "truncate":
        data = data[: int(len(data) * arg)]
    elif op == "append":
        data += arg
    else:
        d = json.loads(data)
        paths = list(_json_paths(d))
        where = paths[arg[0] % len(paths)]
        if not where:
            d = arg[1]
        else:
            node = d
            for k in where[:-1]:
                node = node[k]
            node[where[-1]] = arg[1]
        data = bytearray(json.dumps(d).encode())
    f.write_bytes(bytes(data))
    after = _parse(bytes(data))
    return before is not None and after is not None and after != before


def _parse(data: bytes):
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return None


@fuzz(200)
@given(data=st.data())
def test_fuzzed_bundle_files_refused_or_unchanged(base, data):
    """Any file of a bundle damaged, the manifest re-hashed or not: each backend refuses with
    a qs4d error or computes exactly its reference output. A re-hashed JSON edit that still
    parses describes another bundle: then whatever loads must give finite logits, and numpy
    and onnx (bit-exact executors of one integer model) must agree."""
    src, ref, worker, work, files = base
    name, op, arg, rehash = data.draw(bundle_edits(files))
    path = Path(tempfile.mkdtemp(dir=work)) / "b"
    shutil.copytree(src, path)
    changed = _apply(path, name, op, arg) and rehash
    if rehash:
        write_manifest(path)
    res = worker.ask(path)
    for b in BACKENDS:
        r = res[b]
        if not r["ok"]:
            assert r["qs4d"], f"{b}: {r['type']} is not a qs4d error: {r['msg']}"
            if not rehash and name != "manifest.json":
                assert name in r["msg"], r["msg"]  # the manifest names the damaged file
            continue
        assert rehash or name in ("manifest.json", "README.md"), f"{b}: {name} passed"
        if changed:
            assert r["finite"], f"{b}: non-finite logits after editing {name}"
        else:
            assert r["y"] == ref[b]["y"], f"{b}: {name} {op} loaded silently wrong"
    if res["numpy"]["ok"] and res["onnx"]["ok"]:
        assert res["numpy"]["y"] == res["onnx"]["y"], f"numpy and onnx differ after {name}"
    shutil.rmtree(path.parent)


def test_fuzz_worker_reports_memory_kills(tmp_path):
    """The guard works: a child that exceeds its 2 GB fails the test rather than passing."""
    script = WORKER.split("import numpy")[0] + "bytearray(3 << 30)\n"
    w = OnnxWorker(tmp_path, np.zeros((1, 2), np.float32), script)
    with pytest.raises(pytest.fail.Exception, match="crashed"):
        w.ask(tmp_path)


# -- stream inputs -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def models(bundle_path, tmp_path_factory):
    """name -> (numpy model, onnx model): an identity, a log-mel and an ECG front end."""
    root = tmp_path_factory.mktemp("fuzz-models")
    paths = {"int8": bundle_path("int8"), "kws": make_bundle(root / "kws", "logmel"),
             "ecg": make_bundle(root / "ecg", "ecg")}
    return {k: (qs4d.load(p, backend="numpy"), qs4d.load(p, backend="onnx"))
            for k, p in paths.items()}


SPECIAL = st.sampled_from([0.0, -0.0, 1.0, -1.0, 1e-45, 3.4e38, -3.4e38, 1e300, -1e300,
                           np.nan, np.inf, -np.inf, 32767.0, -32768.0])
DTYPES = st.sampled_from(["float16", "float32", "float64", "int8", "int16", "int32", "int64",
                          "uint8", "bool", "complex64", "U1"])


@st.composite
def chunks(draw, F: int, batch: int | None):
    """A chunk of any dtype and shape, mostly well-formed (T, F) / (B, T, F) with values
    from Gaussian to extreme, sometimes wrong."""
    dtype = draw(st.sampled_from(["float32"] * 6 + ["float64", "int16"])
                 if draw(st.booleans()) else DTYPES)
    T = draw(st.integers(0, 40))
    shape = (T, F) if F > 1 else (T,)
    if batch is not None:
        shape = (batch,) + shape
    if draw(st.integers(0, 9)) == 0:
        shape = tuple(draw(st.lists(st.integers(0, 4), max_size=4)))
    n = int(np.prod(shape))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal(n) * draw(st.sampled_from([1e-3, 0.1, 1.0, 30.0, 1e6]))
    for i in draw(st.lists(st.integers(0, max(n - 1, 0)), max_size=3)) if n else []:
        x[i] = draw(SPECIAL)
    with np.errstate(all="ignore"):
        if dtype == "U1":
            return np.full(shape, "a")
        return x.reshape(shape).astype(dtype)


def _same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@fuzz(120)
@given(data=st.data(), name=st.sampled_from(["int8", "kws", "ecg"]),
       batch=st.sampled_from([None, 2]))
def test_fuzzed_stream_inputs(models, data, name, batch):
    """A chunk is refused (TypeError for a non-numeric dtype, else an InputError) with the
    stream unchanged, or it gives finite logits of the right shape, the same on numpy and
    onnx bit for bit, and the stream goes on."""
    np_model, onnx_model = models[name]
    spec = np_model.spec
    F = spec.model.d_input if spec.frontend.kind == "identity" else 1
    chunk = data.draw(chunks(F, batch))
    warm = steps_input(spec, 3, np.random.default_rng(1), batch=batch)
    outs = []
    for model in (np_model, onnx_model):
        s = model.stream(batch=batch)
        s.accept(warm)
        before = s.state()
        try:
            with np.errstate(all="ignore"):
                y = s.accept(chunk)
        except (TypeError, InputError) as e:
            assert isinstance(e, Qs4dError) or "dtype" in str(e), e
            assert _same_state(s.state(), before), "a refused chunk changed the stream"
            outs.append(None)
            continue
        K = spec.model.n_classes
        assert y.shape[-1] == K and (y.ndim == 2 if batch is None else y.ndim == 3)
        assert np.isfinite(y).all()
        outs.append(y)
        assert np.isfinite(s.accept(warm)).all()
    if outs[0] is None or outs[1] is None:
        assert outs[0] is None and outs[1] is None, "one backend refused, the other did not"
    else:
        np.testing.assert_array_equal(outs[0], outs[1])


# -- saved states ------------------------------------------------------------------------------

@st.composite
def state_edits(draw, keys: list):
    key = draw(st.sampled_from(keys + ["new"]))
    op = draw(st.sampled_from(["drop", "value", "dtype", "shape", "scalar", "text"]))
    return key, op, draw(SPECIAL), draw(st.integers(-10, 10**12))


@fuzz(80)
@given(data=st.data(), name=st.sampled_from(["int8", "kws", "ecg"]),
       backend=st.sampled_from([0, 1]))
def test_fuzzed_states(models, data, name, backend):
    """An edited state is refused with an InputError, the stream unchanged, or restores into
    a stream that then gives finite logits."""
    model = models[name][backend]
    spec = model.spec
    x = steps_input(spec, 20, np.random.default_rng(2), batch=2)
    a = model.stream(batch=2)
    a.accept(x)
    st_ = {k: np.array(v, copy=True) for k, v in a.state().items()}
    key, op, special, n = data.draw(state_edits(sorted(st_)))
    v = st_.get(key, np.zeros(3))
    if op == "drop":
        st_.pop(key, None)
    elif op == "value" and v.size and v.dtype.kind in "fiu":
        if v.dtype.kind in "iu":
            info = np.iinfo(v.dtype)
            n = min(max(n, info.min), info.max)
        with np.errstate(all="ignore"):
            v.reshape(-1)[n % v.size] = special if v.dtype.kind == "f" else n
        st_[key] = v
    elif op == "dtype":
        st_[key] = (np.zeros(v.shape, np.float32) if v.dtype.kind not in "biuf" else
                    v.astype(np.float32 if v.dtype.kind != "f" else np.int64))
    elif op == "shape":
        st_[key] = np.concatenate([v.reshape(-1), v.reshape(-1)])
    elif op == "scalar":
        st_[key] = np.asarray(n)
    else:
        st_[key] = np.asarray("x" * (n % 80))
    b = model.stream(batch=2)
    b.accept(x[:, :3])
    before = b.state()
    try:
        b.restore(st_)
    except InputError:
        assert _same_state(b.state(), before)
        return
    with np.errstate(all="ignore"):
        try:
            y = b.accept(x)
        except InputError as e:  # a restored state far out of range can overflow a float model
            assert "overflowed" in str(e)
            return
    assert np.isfinite(y).all()


# -- command lines and files -------------------------------------------------------------------

@pytest.fixture(scope="module")
def cli_env(models, tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz-cli")
    rng = np.random.default_rng(4)
    wavfile.write(d / "a.wav", 16000, (0.1 * rng.standard_normal(4000)).astype(np.float32))
    (d / "e.csv").write_text("\n".join(f"{v:.4f}" for v in np.sin(np.arange(720) / 30.0)))
    return {"dir": d, "kws": str(models["kws"][0].bundle.path),
            "ecg": str(models["ecg"][0].bundle.path), "int8": str(models["int8"][0].bundle.path)}


VALUES = st.sampled_from(["0", "-1", "1", "0.5", "2", "nan", "inf", "-inf", "1e309", "abc", "",
                          "99999999999999999999", "16000", "360", "100", "1e-9", "--fast"])


@st.composite
def command_lines(draw, env):
    cmd = draw(st.sampled_from(["kws", "ecg", "verify", "export"]))
    opts = {"kws": ["--wav", "--stdin", "--rate", "--chunk-ms", "--threshold", "--smooth-ms",
                    "--hold-ms", "--refractory-ms", "--backend", "--smooth", "--fast", "--mic",
                    "--seconds", "--device-rate"],
            "ecg": ["--csv", "--stdin", "--fs", "--seconds", "--chunk-ms", "--backend",
                    "--print-limit", "--quiet", "--plot", "--plot-start", "--realtime"],
            "verify": ["--steps", "--batch", "--json"],
            "export": ["--out", "--force", "--calib", "--array", "--levels"]}[cmd]
    bundle = {"kws": env["kws"], "ecg": env["ecg"], "verify": env["int8"],
              "export": str(env["dir"] / "no.pt")}[cmd]
    argv = [cmd] + ([bundle] if draw(st.integers(0, 9)) else [draw(VALUES)])
    for _ in range(draw(st.integers(0, 5))):
        o = draw(st.sampled_from(opts))
        argv.append(o)
        if o in ("--fast", "--stdin", "--mic", "--quiet", "--json", "--force", "--realtime"):
            continue
        if o == "--wav":
            argv.append(str(env["dir"] / draw(st.sampled_from(["a.wav", "e.csv", "none.wav"]))))
        elif o == "--csv":
            argv.append(str(env["dir"] / draw(st.sampled_from(["e.csv", "a.wav", "x.csv"]))))
        elif o in ("--plot", "--out"):
            argv.append(str(env["dir"] / draw(st.sampled_from(["p.png", "no/p.png", "a.wav"]))))
        elif o == "--backend":
            argv.append(draw(st.sampled_from(["numpy", "onnx", "imssa", "gpu"])))
        elif o == "--smooth":
            argv.append(draw(st.sampled_from(["logits", "posterior", "x"])))
        else:
            argv.append(draw(VALUES))
    if cmd == "verify" and "--steps" not in argv:
        argv += ["--steps", "3"]
    if cmd == "ecg" and not {"--csv", "--stdin", "--record208"} & set(argv):
        argv[2:2] = ["--csv", str(env["dir"] / "e.csv")]  # not the 5-min default record
    return argv


@fuzz(40)
@given(data=st.data())
def test_fuzzed_command_lines(cli_env, data, capsys, monkeypatch):
    """Random arguments: exit code 0, 1 or 2, errors as one line on stderr, no traceback."""
    argv = data.draw(command_lines(cli_env))
    for i, a in enumerate(argv[:-1]):  # keep verify short: at most 20 steps
        if argv[0] == "verify" and a == "--steps" and argv[i + 1].isdigit():
            argv[i + 1] = str(min(int(argv[i + 1]), 20))
    stdin = io.TextIOWrapper(io.BytesIO(b"0.1\n0.2\nx\n" if argv[0] == "ecg" else b"\0\1" * 800))
    monkeypatch.setattr(sys, "stdin", stdin)
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # no microphone here
    monkeypatch.setattr("time.sleep", lambda s: None)  # real-time pacing, without the wait
    rc = qs4d_main(argv)
    err = capsys.readouterr().err
    assert rc in (0, 1, 2), (argv, rc)
    assert "Traceback" not in err, (argv, err)
    if rc:
        assert len([ln for ln in err.splitlines() if ln.strip()]) == 1, (argv, err)


def _wav_bytes() -> bytes:
    buf = io.BytesIO()
    x = (0.1 * np.random.default_rng(5).standard_normal(3000)).astype(np.float32)
    wavfile.write(buf, 16000, x)
    return buf.getvalue()


@fuzz(50)
@given(kind=st.sampled_from(["wav", "csv"]),
       flips=st.lists(st.tuples(st.integers(0, 2**31), st.integers(0, 255)), max_size=6),
       cut=st.floats(0.0, 1.0), tail=st.binary(max_size=40))
def test_fuzzed_input_files(cli_env, capsys, kind, flips, cut, tail):
    """Damaged WAV and CSV files: a result (exit code 0) or one line and exit code 1 or 2."""
    d = cli_env["dir"]
    if kind == "wav":
        data = bytearray(_wav_bytes())
    else:
        data = bytearray((d / "e.csv").read_bytes())
    for pos, v in flips:
        data[pos % len(data)] = v
    data = data[: max(1, int(len(data) * cut))] + tail
    f = d / f"fuzz.{kind}"
    f.write_bytes(bytes(data))
    argv = (["kws", cli_env["kws"], "--wav", str(f), "--fast"] if kind == "wav" else
            ["ecg", cli_env["ecg"], "--csv", str(f), "--fs", "360", "--quiet"])
    with np.errstate(all="ignore"):
        rc = qs4d_main(argv)
    err = capsys.readouterr().err
    assert rc in (0, 1, 2) and "Traceback" not in err, err
    if rc:
        assert len([ln for ln in err.splitlines() if ln.strip()]) == 1, err

