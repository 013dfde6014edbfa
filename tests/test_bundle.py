"""Bundles (DESIGN section 4): a bundle that fails its manifest, schema or shape checks is
refused with an error naming the file and the field; exported graphs pass the ONNX checker,
carry the spec and never narrow without clipping; nothing is unpickled; random byte flips
never crash the loader and never load silently wrong.

Glossary: B batch/streams, T steps, F features.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import ROOT, steps_input
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, numpy_helper

import qs4d
from qs4d.export.bundle import write_manifest
from qs4d.runtime.bundle import BundleError, load_bundle
from qs4d.runtime.spec import (
    MANIFEST_FILE,
    ONNX_FILE,
    ONNX_FLOAT_FILE,
    ONNX_SPEC_KEY,
    SPEC_FILE,
    WEIGHTS_FILE,
    Spec,
    SpecError,
)


@pytest.fixture
def bundle(tmp_path, bundle_path) -> Path:
    """A private copy of the 4-bit (pruned) integer bundle, free to damage."""
    out = tmp_path / "b"
    shutil.copytree(bundle_path("w4"), out)
    return out


def rewrite_weights(path: Path, **changes) -> None:
    """Rewrite weights.npz with some tensors replaced (None removes one); fix the manifest."""
    with np.load(path / WEIGHTS_FILE, allow_pickle=False) as z:
        w = {k: z[k] for k in z.files}
    for k, v in changes.items():
        k = k.replace("__", ".")
        if v is None:
            del w[k]
        else:
            w[k] = v
    np.savez(path / WEIGHTS_FILE, **w)
    write_manifest(path)


def weights(path: Path) -> dict:
    with np.load(path / WEIGHTS_FILE, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


# -- manifest ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", [SPEC_FILE, WEIGHTS_FILE, ONNX_FILE, "crossbar/tables.npz"])
def test_missing_file_named(bundle, name):
    (bundle / name).unlink()
    with pytest.raises(BundleError, match=f"{name}: missing"):
        qs4d.load(bundle, backend="numpy")


def test_missing_manifest_named(bundle):
    (bundle / MANIFEST_FILE).unlink()
    with pytest.raises(BundleError, match=f"{MANIFEST_FILE}: missing"):
        qs4d.load(bundle, backend="numpy")


@pytest.mark.parametrize("name", [SPEC_FILE, WEIGHTS_FILE, ONNX_FILE, ONNX_FLOAT_FILE,
                                  "crossbar/manifest.json"])
def test_hash_mismatch_named(bundle, name):
    data = bytearray((bundle / name).read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit, same size
    (bundle / name).write_bytes(bytes(data))
    with pytest.raises(BundleError, match=f"{name}: sha256 mismatch"):
        qs4d.load(bundle, backend="numpy")


def test_size_mismatch_named(bundle):
    with open(bundle / ONNX_FILE, "ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match=f"{ONNX_FILE}: size"):
        qs4d.load(bundle, backend="numpy")


def test_manifest_problems_named(bundle):
    man = json.loads((bundle / MANIFEST_FILE).read_text())
    bad = dict(man, files={k: v for k, v in man["files"].items() if k != WEIGHTS_FILE})
    (bundle / MANIFEST_FILE).write_text(json.dumps(bad))
    with pytest.raises(BundleError, match=f"required file '{WEIGHTS_FILE}'"):
        load_bundle(bundle)
    bad = dict(man, files=dict(man["files"], **{"../escape": {"sha256": "0", "size": 0}}))
    (bundle / MANIFEST_FILE).write_text(json.dumps(bad))
    with pytest.raises(BundleError, match="leaves the bundle"):
        load_bundle(bundle)
    (bundle / MANIFEST_FILE).write_text("{not json")
    with pytest.raises(BundleError, match=f"{MANIFEST_FILE}: not valid JSON"):
        load_bundle(bundle)
    with pytest.raises(BundleError, match="not a bundle directory"):
        load_bundle(bundle / "nowhere")


# -- schema and shapes (manifest fixed, so only the deeper checks can catch it) ---------------

def test_unknown_schema_version_named(bundle):
    d = json.loads((bundle / SPEC_FILE).read_text())
    d["schema_version"] = 99
    (bundle / SPEC_FILE).write_text(json.dumps(d))
    write_manifest(bundle)
    with pytest.raises(SpecError, match=rf"{SPEC_FILE}\.schema_version.*99"):
        qs4d.load(bundle, backend="numpy")


def test_spec_unknown_key_named(bundle):
    d = json.loads((bundle / SPEC_FILE).read_text())
    d["model"]["d_state_typo"] = 8
    (bundle / SPEC_FILE).write_text(json.dumps(d))
    write_manifest(bundle)
    with pytest.raises(SpecError, match=rf"{SPEC_FILE}\.model.*d_state_typo"):
        qs4d.load(bundle, backend="numpy")


def test_spec_disagreeing_with_weights_named(bundle):
    d = json.loads((bundle / SPEC_FILE).read_text())
    d["model"]["d_model"] = 9
    (bundle / SPEC_FILE).write_text(json.dumps(d))
    write_manifest(bundle)
    with pytest.raises(BundleError, match=rf"{WEIGHTS_FILE}\[.*shape"):
        qs4d.load(bundle, backend="numpy")


def test_wrong_dtype_named(bundle):
    A = weights(bundle)["l0.A"]
    rewrite_weights(bundle, l0__A=A.astype(np.float32))
    with pytest.raises(BundleError, match=rf"{WEIGHTS_FILE}\['l0.A'\]: dtype float32"):
        qs4d.load(bundle, backend="numpy")
    s = weights(bundle)["enc.w.scale"]
    rewrite_weights(bundle, l0__A=A, enc__w__scale=s.astype(np.float64))
    with pytest.raises(BundleError, match=r"\['enc.w.scale'\]: dtype float64"):
        qs4d.load(bundle, backend="numpy")


def test_wrong_shape_named(bundle):
    w = weights(bundle)["enc.w"]
    rewrite_weights(bundle, enc__w=np.ascontiguousarray(w.T))
    with pytest.raises(BundleError, match=rf"{WEIGHTS_FILE}\['enc.w'\]: shape"):
        qs4d.load(bundle, backend="numpy")


def test_missing_and_extra_tensors_named(bundle):
    w = weights(bundle)
    rewrite_weights(bundle, l1__C=None)
    with pytest.raises(BundleError, match=r"missing tensor.*l1\.C"):
        qs4d.load(bundle, backend="numpy")
    rewrite_weights(bundle, l1__C=w["l1.C"], l9__C=w["l1.C"])
    with pytest.raises(BundleError, match=r"unexpected tensor.*l9\.C"):
        qs4d.load(bundle, backend="numpy")


def test_values_out_of_range_named(bundle):
    w = weights(bundle)
    codes = w["l0.mix.w"].copy()  # 4-bit weights stored as int8: range [-8, 7]
    codes[0, 0] = 8
    rewrite_weights(bundle, l0__mix__w=codes)
    with pytest.raises(BundleError, match=r"\['l0.mix.w'\]: values outside \[-8, 7\]"):
        qs4d.load(bundle, backend="numpy")
    rewrite_weights(bundle, l0__mix__w=w["l0.mix.w"], in__scale=np.float32(0.0))
    with pytest.raises(BundleError, match=r"\['in.scale'\]: scales must be > 0"):
        qs4d.load(bundle, backend="numpy")
    rewrite_weights(bundle, in__scale=np.float32(np.nan))
    with pytest.raises(BundleError, match=r"\['in.scale'\]: NaN or Inf"):
        qs4d.load(bundle, backend="numpy")


def test_object_array_never_unpickled(bundle):
    w = weights(bundle)
    w["enc.w"] = np.array([[object()]], dtype=object)
    np.savez(bundle / WEIGHTS_FILE, **w)  # savez pickles object arrays
    write_manifest(bundle)
    with pytest.raises(BundleError, match=rf"{WEIGHTS_FILE}: member 'enc.w' has dtype object"):
        qs4d.load(bundle, backend="numpy")


def test_every_npz_read_refuses_pickles(bundle, monkeypatch):
    """All backends (the crossbar tables included) read npz files without unpickling: through
    runtime.safe_io.read_npz (numbers only), or np.load with allow_pickle=False."""
    import pickle

    from qs4d.runtime import safe_io

    calls, reads = [], []
    real_load, real_read = np.load, safe_io.read_npz

    def spy(*args, **kw):
        calls.append(kw.get("allow_pickle", "default"))
        return real_load(*args, **kw)

    def spy_read(path, *args, **kw):
        reads.append(Path(path).name)
        return real_read(path, *args, **kw)

    def no_pickle(*args, **kw):
        raise AssertionError("something was unpickled")

    monkeypatch.setattr(np, "load", spy)
    monkeypatch.setattr(safe_io, "read_npz", spy_read)
    monkeypatch.setattr(pickle, "load", no_pickle)
    monkeypatch.setattr(pickle, "loads", no_pickle)
    for backend in ("numpy", "onnx", "imssa"):
        qs4d.load(bundle, backend=backend)
    assert all(c is False for c in calls), calls
    assert reads.count(WEIGHTS_FILE) == 3 and "tables.npz" in reads, reads


def test_corrupted_onnx_refused_naming_step_onnx(bundle):
    (bundle / ONNX_FILE).write_bytes(os.urandom(3000))
    write_manifest(bundle)
    qs4d.load(bundle, backend="numpy")  # the numpy backend never reads the graph
    with pytest.raises(BundleError, match=rf"{ONNX_FILE}: ONNX Runtime refused"):
        qs4d.load(bundle, backend="onnx")


def test_onnx_graph_with_wrong_inputs_refused(bundle):
    m = onnx.load(bundle / ONNX_FILE)
    m.graph.input[1].name = "state_zero"
    for node in m.graph.node:
        node.input[:] = ["state_zero" if i == "state_0" else i for i in node.input]
    (bundle / ONNX_FILE).write_bytes(m.SerializeToString())
    write_manifest(bundle)
    with pytest.raises(BundleError, match=rf"{ONNX_FILE}: graph inputs"):
        qs4d.load(bundle, backend="onnx")


def test_onnx_graph_disagreeing_with_weights_refused(bundle):
    """A step.onnx whose constants differ from weights.npz (manifest re-hashed) computes
    something else than the bundle's numpy reference; loading it must fail, not diverge."""
    m = onnx.load(bundle / ONNX_FILE)
    init = next(t for t in m.graph.initializer if t.name.endswith("_B"))
    B = numpy_helper.to_array(init)  # (n H, 2P): input columns of the state updates
    init.CopyFrom(numpy_helper.from_array(-B, init.name))
    (bundle / ONNX_FILE).write_bytes(m.SerializeToString())
    write_manifest(bundle)
    x = steps_input(Spec.from_json((bundle / SPEC_FILE).read_text()), 100,
                    np.random.default_rng(0))
    ref = qs4d.load(bundle, backend="numpy").stream().accept(x)
    try:
        got = qs4d.load(bundle, backend="onnx").stream().accept(x)
    except BundleError as e:
        assert ONNX_FILE in str(e)
        return
    assert np.array_equal(got, ref), "step.onnx disagrees with weights.npz and loaded anyway"


# -- exported graphs ---------------------------------------------------------------------------

def _graphs(path: Path) -> list:
    return [path / n for n in (ONNX_FILE, ONNX_FLOAT_FILE) if (path / n).exists()]


@pytest.mark.parametrize("name", ["int8", "w4", "tern", "pt6", "float"])
def test_exported_graphs_pass_checker_and_carry_the_spec(bundle_path, name):
    path = bundle_path(name)
    spec = load_bundle(path).spec
    for g in _graphs(path):
        m = onnx.load(g)
        onnx.checker.check_model(m, full_check=True)
        meta = {p.key: p.value for p in m.metadata_props}
        assert Spec.from_json(meta[ONNX_SPEC_KEY]) == spec, g.name
        L = spec.model.n_layers
        assert [i.name for i in m.graph.input] == ["x"] + [f"state_{i}" for i in range(L)]
        assert sorted(o.name for o in m.graph.output) == \
            sorted(["y"] + [f"new_state_{i}" for i in range(L)])


@pytest.mark.parametrize("name", ["int8", "w4", "tern", "pt6"])
def test_integer_graph_clips_before_every_narrowing_cast(bundle_path, name):
    """Float -> integer casts are fed by Clip (ONNX casts wrap silently); the other ways to
    narrow are QuantizeLinear and QLinearMatMul, which saturate; the state is int8 or int32."""
    m = onnx.shape_inference.infer_shapes(onnx.load(bundle_path(name) / ONNX_FILE))
    types = {v.name: v.type.tensor_type.elem_type
             for v in list(m.graph.value_info) + list(m.graph.input) + list(m.graph.output)}
    producer = {o: n for n in m.graph.node for o in n.output}
    ints = {TensorProto.INT8, TensorProto.INT16, TensorProto.INT32, TensorProto.INT64}
    casts = 0
    for node in m.graph.node:
        if node.op_type != "Cast":
            continue
        to = next(a.i for a in node.attribute if a.name == "to")
        if to in ints and types.get(node.input[0]) == TensorProto.FLOAT:
            casts += 1
            assert producer[node.input[0]].op_type == "Clip", node.name
    saturating = sum(n.op_type in ("QuantizeLinear", "QLinearMatMul") for n in m.graph.node)
    assert casts + saturating >= 3 * len(m.graph.input)  # several per layer
    state_types = [i.type.tensor_type.elem_type for i in m.graph.input[1:]]
    assert set(state_types) in ({TensorProto.INT8}, {TensorProto.INT32})


# -- fuzzing: random byte flips ----------------------------------------------------------------

WORKER = textwrap.dedent("""\
    import hashlib, json, os, sys
    import numpy as np
    import qs4d
    from qs4d.runtime.spec import SpecError
    reply = os.fdopen(os.dup(1), "w")  # answers only; onnxruntime prints its retries
    quiet = os.open(os.devnull, os.O_WRONLY)
    os.dup2(quiet, 1)
    os.dup2(quiet, 2)
    x = np.load(sys.argv[1])
    for line in sys.stdin:
        try:
            y = qs4d.load(line.strip(), backend="onnx").stream().accept(x)
            out = {"ok": True, "y": hashlib.sha256(y.tobytes()).hexdigest()}
        except Exception as e:
            out = {"ok": False, "qs4d": isinstance(e, SpecError), "type": type(e).__name__,
                   "msg": str(e)[:500]}
        print(json.dumps(out), file=reply, flush=True)
""")


class OnnxWorker:
    """A child interpreter that loads bundles with the onnx backend (or runs another `script`
    reading bundle paths from stdin, one JSON line per answer) and steps them, so that a crash
    inside ONNX Runtime fails the test instead of killing pytest."""

    def __init__(self, workdir: Path, x: np.ndarray, script: str = WORKER):
        self.script, self.x = workdir / "worker.py", workdir / "x.npy"
        self.script.write_text(script)
        np.save(self.x, x)
        self.proc = None

    def ask(self, path: Path, timeout: float = 60.0) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen([sys.executable, str(self.script), str(self.x)],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         text=True, cwd=ROOT)
        self.proc.stdin.write(f"{path}\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.close()
            pytest.fail(f"the onnx loader crashed or hung on {path} "
                        f"(exit code {self.proc.returncode})")
        return json.loads(line)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def fuzz_base(bundle_path, tmp_path_factory):
    src = bundle_path("w4")
    work = tmp_path_factory.mktemp("fuzz")
    x = steps_input(load_bundle(src).spec, 40, np.random.default_rng(0))
    worker = OnnxWorker(work, x)
    ref = {"numpy": qs4d.load(src, backend="numpy").stream().accept(x),
           "onnx": worker.ask(src)["y"]}
    assert isinstance(ref["onnx"], str)
    yield src, x, ref, worker, work
    worker.close()


FUZZ_FILES = [SPEC_FILE, WEIGHTS_FILE, ONNX_FILE, MANIFEST_FILE]


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(name=st.sampled_from(FUZZ_FILES),
       flips=st.lists(st.tuples(st.integers(0, 2**31), st.integers(1, 255)), min_size=1,
                      max_size=3),
       fix_manifest=st.booleans())
def test_fuzzed_bundles_refused_or_unchanged(fuzz_base, name, flips, fix_manifest):
    """Random byte flips in a bundle file, with the manifest re-hashed in half the cases: the
    loader raises a qs4d error (naming the file when the manifest catches it) or the bundle
    computes exactly what the original computes; the onnx backend runs in a child process."""
    src, x, ref, worker, work = fuzz_base
    path = Path(tempfile.mkdtemp(dir=work)) / "b"
    shutil.copytree(src, path)
    data = bytearray((path / name).read_bytes())
    for pos, xor in {pos % len(data): xor for pos, xor in flips}.items():
        data[pos] ^= xor  # distinct positions: the file really changes
    (path / name).write_bytes(bytes(data))
    rehashed = fix_manifest and name != MANIFEST_FILE
    if rehashed:
        write_manifest(path)
    try:
        y = qs4d.load(path, backend="numpy").stream().accept(x)
    except SpecError as e:  # BundleError is a SpecError; both are ValueErrors
        if not rehashed and name != MANIFEST_FILE:
            assert name in str(e) and "sha256" in str(e), str(e)
    else:
        assert rehashed or name == MANIFEST_FILE, "a changed file passed its manifest"
        np.testing.assert_array_equal(y, ref["numpy"], err_msg="loaded silently wrong")
    res = worker.ask(path)
    if res["ok"]:
        assert res["y"] == ref["onnx"], "onnx: loaded silently wrong"
    else:
        assert res["qs4d"], f"onnx: {res['type']} is not a qs4d error: {res['msg']}"
    shutil.rmtree(path.parent)


def test_fuzz_worker_reports_crashes(tmp_path):
    """The guard works: a child that dies fails the test rather than hanging or passing."""
    w = OnnxWorker(tmp_path, np.zeros((1, 2), np.float32))
    w.script.write_text("import os\nos.abort()\n")
    with pytest.raises(pytest.fail.Exception, match="crashed"):
        w.ask(tmp_path)


def test_manifest_hashes_are_sha256_of_the_files(bundle_path):
    path = bundle_path("int8")
    man = json.loads((path / MANIFEST_FILE).read_text())
    assert {SPEC_FILE, WEIGHTS_FILE, ONNX_FILE, ONNX_FLOAT_FILE} <= set(man["files"])
    for name, entry in man["files"].items():
        data = (path / name).read_bytes()
        assert entry == {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
