"""The runtime's executors and streams (DESIGN section 5), over every integer bundle in
models/zoo and the conftest bundles: `onnx` equals `numpy` bit for bit, alone and batched;
outputs never depend on chunking; `imssa` in ideal mode equals the float reference; state()
and restore() resume a stream in another process without losing a sample; bad input is
refused with an error that names the problem.

Glossary: B batch/streams, T steps, F features, K classes.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import ROOT, ZOO, steps_input, zoo_bundles

import qs4d
from qs4d.runtime.crossbar_io import load_crossbar
from qs4d.runtime.quant import qrange


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def rel_err(a: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(a - ref).max() / max(float(np.abs(ref).max()), 1e-30))


def ideal_imssa(bundle):
    """The imssa backend in ideal mode (infinite DAC/ADC precision, no noise, no drift)."""
    cfg = load_crossbar(bundle).config.replace(dac_bits=0, adc_bits=0, sigma_prog=0.0,
                                               sigma_read=0.0, drift_nu=0.0, levels=0)
    return qs4d.load(bundle, backend="imssa", crossbar=cfg)


def test_zoo_has_bundles():
    """The zoo ships at least one trained bundle (models/zoo/toy-qat4 at the least)."""
    assert zoo_bundles(), f"no bundle (*/manifest.json) under {ZOO}"


@pytest.mark.parametrize("bundle", zoo_bundles(), ids=lambda p: p.name)
def test_zoo_bundles_carry_every_part(bundle):
    """DESIGN section 4: spec, weights, both step graphs, the crossbar tables and the manifest,
    float bundles included (their weights programmed as codes); the imssa backend loads it."""
    for part in ("spec.json", "weights.npz", "step.onnx", "step_float.onnx", "manifest.json",
                 "crossbar/manifest.json", "crossbar/tables.npz"):
        assert (bundle / part).is_file(), f"{bundle.name}: no {part}"
    cb = load_crossbar(bundle)
    assert cb.manifest["calibration"]["calibrated"], bundle.name
    assert qs4d.load(bundle, backend="imssa").spec.name


# -- onnx == numpy ---------------------------------------------------------------------------

@pytest.mark.slow
def test_onnx_equals_numpy_10000_steps(int_bundle):
    spec = qs4d.load(int_bundle, backend="numpy").spec
    x = steps_input(spec, 10_000, rng(1))
    y = {b: qs4d.load(int_bundle, backend=b).stream().accept(x) for b in ("onnx", "numpy")}
    assert y["numpy"].shape == (10_000, spec.model.n_classes)
    assert np.abs(y["numpy"]).max() > 0 and len(np.unique(y["numpy"])) > 100
    np.testing.assert_array_equal(y["onnx"], y["numpy"])


def test_onnx_equals_numpy_8_streams(int_bundle):
    spec = qs4d.load(int_bundle, backend="numpy").spec
    x = steps_input(spec, 2000, rng(2), batch=8)  # (B, ...)
    y = {b: qs4d.load(int_bundle, backend=b).stream(batch=8).accept(x)
         for b in ("onnx", "numpy")}
    assert y["numpy"].shape == (8, 2000, spec.model.n_classes)
    np.testing.assert_array_equal(y["onnx"], y["numpy"])
    # a batch is B independent streams: stream 3 alone gives stream 3's outputs
    alone = qs4d.load(int_bundle, backend="onnx").stream().accept(x[3])
    np.testing.assert_array_equal(alone, y["onnx"][3])
    assert not np.array_equal(y["onnx"][0], y["onnx"][1])


def test_float_bundle_onnx_close_to_numpy(float_bundle):
    """Float graphs agree to float32 rounding (ONNX Erf and MatMul are not numpy's)."""
    spec = qs4d.load(float_bundle, backend="numpy").spec
    assert not spec.quant.any_enabled
    x = steps_input(spec, 2000, rng(3), batch=2)
    y = {b: qs4d.load(float_bundle, backend=b).stream(batch=2).accept(x)
         for b in ("onnx", "numpy")}
    assert rel_err(y["onnx"], y["numpy"]) < 1e-5


def test_float_graph_of_integer_bundle(int_bundle):
    """step_float.onnx (dequantized weights) agrees with the numpy float reference."""
    spec = qs4d.load(int_bundle, backend="numpy").spec
    x = steps_input(spec, 500, rng(4), batch=2)
    y = {b: qs4d.load(int_bundle, backend=b, float_graph=True).stream(batch=2).accept(x)
         for b in ("onnx", "numpy")}
    assert rel_err(y["onnx"], y["numpy"]) < 1e-5


# -- chunking ----------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["onnx", "numpy"])
def test_chunking_never_changes_outputs(int_bundle, backend):
    model = qs4d.load(int_bundle, backend=backend)
    x = steps_input(model.spec, 1200, rng(5))
    whole = model.stream().accept(x)
    assert len(whole) == 1200
    r = rng(6)
    random_cuts = np.sort(r.choice(np.arange(1, len(x)), 30, replace=False))
    for name, cuts in [("1", range(1, len(x))), ("7", range(7, len(x), 7)),
                       ("160", range(160, len(x), 160)), ("1000", [1000]),
                       ("random", random_cuts)]:
        s = model.stream()
        parts = [s.accept(c) for c in np.split(x, list(cuts))]
        got = np.concatenate(parts)
        np.testing.assert_array_equal(got, whole, err_msg=f"chunks of {name}")
        assert s.steps == 1200


# -- imssa (ideal) == float reference ----------------------------------------------------------

def test_imssa_ideal_equals_float_reference_per_step(int_bundle):
    """Teacher-forced: both executors get the same state at every step, for 1000 steps."""
    imssa = ideal_imssa(int_bundle).executor
    ref = qs4d.load(int_bundle, backend="numpy", float_graph=True).executor
    spec = qs4d.load(int_bundle, backend="numpy").spec
    x = qs4d.load(int_bundle, backend="numpy").stream(batch=2).features(
        steps_input(spec, 1000, rng(7), batch=2))  # (B, T, F)
    state = ref.init_state(2)
    worst_y = worst_s = 0.0
    for t in range(x.shape[1]):
        yi, si = imssa(x[:, t], state)
        yr, sr = ref(x[:, t], state)
        worst_y = max(worst_y, rel_err(yi, yr))
        worst_s = max(worst_s, max(rel_err(a, b) for a, b in zip(si, sr)))
        state = sr
    assert np.abs(state[0]).max() > 0
    assert worst_y < 1e-5 and worst_s < 1e-5, (worst_y, worst_s)


def test_imssa_ideal_equals_float_reference_free_running(int_bundle):
    spec = qs4d.load(int_bundle, backend="numpy").spec
    x = steps_input(spec, 200, rng(8), batch=2)
    yi = ideal_imssa(int_bundle).stream(batch=2).accept(x)
    yr = qs4d.load(int_bundle, backend="numpy", float_graph=True).stream(batch=2).accept(x)
    assert rel_err(yi, yr) < 1e-5


def test_float_reference_tracks_integer_model(int_bundle):
    """Sanity of the comparison above: the float reference computes the same model."""
    spec = qs4d.load(int_bundle, backend="numpy").spec
    x = steps_input(spec, 300, rng(9))
    yi = qs4d.load(int_bundle, backend="numpy").stream().accept(x)
    yf = qs4d.load(int_bundle, backend="numpy", float_graph=True).stream().accept(x)
    # unrelated models correlate near 0; the 4-bit KWS model on noise input reaches 0.79
    assert np.corrcoef(yi.ravel(), yf.ravel())[0, 1] > 0.7


# -- state, restore, reset ---------------------------------------------------------------------

CHILD = textwrap.dedent("""\
    import sys
    import numpy as np
    import qs4d
    bundle, backend, state, rest, out = sys.argv[1:]
    s = qs4d.load(bundle, backend=backend).stream(batch=2)
    s.load(state)
    y = s.accept(np.load(rest))
    np.savez(out, y=y, steps=s.steps)
""")


@pytest.mark.parametrize("backend", ["onnx", "numpy"])
def test_restore_in_a_new_process_continues_exactly(int_bundle, backend, tmp_path):
    model = qs4d.load(int_bundle, backend=backend)
    x = steps_input(model.spec, 1000, rng(10), batch=2)
    cut = x.shape[1] * 389 // 1000  # mid-frame for front ends with a hop
    whole = model.stream(batch=2).accept(x)
    s = model.stream(batch=2)
    first = s.accept(x[:, :cut])
    s.save(tmp_path / "state.npz")
    np.save(tmp_path / "rest.npy", x[:, cut:])
    (tmp_path / "child.py").write_text(CHILD)
    done = subprocess.run([sys.executable, str(tmp_path / "child.py"), str(int_bundle), backend,
                           str(tmp_path / "state.npz"), str(tmp_path / "rest.npy"),
                           str(tmp_path / "out.npz")], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    with np.load(tmp_path / "out.npz", allow_pickle=False) as z:
        rest, steps = z["y"], int(z["steps"])
    assert first.shape[1] > 0 and rest.shape[1] > 0 and steps == whole.shape[1]
    np.testing.assert_array_equal(np.concatenate([first, rest], axis=1), whole)


@pytest.mark.parametrize("backend", ["onnx", "numpy", "imssa"])
def test_state_restore_in_process(int_bundle, backend):
    model = ideal_imssa(int_bundle) if backend == "imssa" else qs4d.load(int_bundle, backend)
    x = steps_input(model.spec, 400, rng(11), batch=3)
    whole = model.stream(batch=3).accept(x)
    cut = x.shape[1] * 3 // 8  # raw input (samples for audio front ends), not steps
    a = model.stream(batch=3)
    a.accept(x[:, :cut])
    n1, saved = a.steps, a.state()
    assert 0 < n1 < whole.shape[1]
    a.accept(x[:, cut:])  # the saved state is a copy: advancing `a` does not change it
    b = model.stream(batch=3)
    b.restore(saved)
    assert b.steps == n1
    np.testing.assert_array_equal(b.accept(x[:, cut:]), whole[:, n1:])


def test_reset_gives_a_fresh_stream(int_bundle):
    model = qs4d.load(int_bundle, backend="onnx")
    x = steps_input(model.spec, 300, rng(12))
    s = model.stream()
    first = s.accept(x)
    again = s.accept(x)
    assert not np.array_equal(first, again)  # the state carried over
    s.reset()
    assert s.steps == 0
    assert all(not v.any() for k, v in s.state().items() if k.startswith("rec."))
    np.testing.assert_array_equal(s.accept(x), first)


def test_streams_of_one_model_are_independent(int_bundle):
    model = qs4d.load(int_bundle, backend="onnx")
    x = steps_input(model.spec, 200, rng(13), batch=2)
    a, b = model.stream(), model.stream()
    ya = [a.accept(x[0, :100]), b.accept(x[1, :100]), a.accept(x[0, 100:]), b.accept(x[1, 100:])]
    np.testing.assert_array_equal(np.concatenate([ya[0], ya[2]]), model.stream().accept(x[0]))
    np.testing.assert_array_equal(np.concatenate([ya[1], ya[3]]), model.stream().accept(x[1]))


# -- bad input ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def int8_model(bundle_path):
    return qs4d.load(bundle_path("int8"), backend="onnx")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_inf_refused_and_stream_unharmed(int8_model, bad):
    x = steps_input(int8_model.spec, 50, rng(14))
    want = int8_model.stream().accept(x)
    s = int8_model.stream()
    s.accept(x[:20])
    chunk = x[20:30].copy()
    chunk[3, 0] = bad
    with pytest.raises(ValueError, match="NaN or Inf"):
        s.accept(chunk)
    assert s.steps == 20
    np.testing.assert_array_equal(s.accept(x[20:]), want[20:])


@pytest.mark.parametrize("batch,shape,match", [
    (None, (10, 3), r"\(10, 3\)"),  # F = 2 features, got 3
    (None, (10, 2, 1), r"\(10, 2, 1\)"),
    (None, (), r"shape \(\)"),
    (2, (10, 2), r"\(10, 2\).*\(2, T"),  # a batch stream needs (B, T, F)
    (2, (3, 10, 2), r"\(3, 10, 2\)"),
])
def test_wrong_shapes_named(int8_model, batch, shape, match):
    s = int8_model.stream(batch=batch)
    with pytest.raises(ValueError, match=match):
        s.accept(np.zeros(shape, np.float32))


@pytest.mark.parametrize("chunk,match", [
    (np.zeros((4, 2), np.complex64), "complex64"),
    (np.array([["a", "b"]]), "<U1"),
    (np.zeros((4, 2), bool), "bool"),
    (np.array([[None, 1.0]], dtype=object), "object"),
])
def test_wrong_dtypes_named(int8_model, chunk, match):
    with pytest.raises(TypeError, match=match):
        int8_model.stream().accept(chunk)


def test_integer_samples_accepted(int8_model):
    x = rng(15).integers(-3, 4, (30, 2))
    np.testing.assert_array_equal(int8_model.stream().accept(x),
                                  int8_model.stream().accept(x.astype(np.float32)))


def test_restore_refuses_a_foreign_state(int8_model, bundle_path):
    x = steps_input(int8_model.spec, 20, rng(16), batch=2)
    s2 = int8_model.stream(batch=2)
    s2.accept(x)
    st2 = s2.state()
    with pytest.raises(ValueError, match="batch"):
        int8_model.stream(batch=3).restore(st2)
    with pytest.raises(ValueError, match="batch"):
        int8_model.stream().restore(st2)
    # float imssa state into an integer onnx stream: dtype named
    imssa_state = ideal_imssa(bundle_path("int8")).stream(batch=2).state()
    with pytest.raises(ValueError, match=r"rec\.0.*float32.*int32"):
        int8_model.stream(batch=2).restore(imssa_state)
    # a state of another model (pruned: fewer modes) -> shape named
    other = qs4d.load(bundle_path("w4"), backend="onnx").stream(batch=2).state()
    with pytest.raises(ValueError, match=r"rec\.0"):
        int8_model.stream(batch=2).restore(other)
    # a key missing
    broken = dict(st2)
    del broken["rec.1"]
    with pytest.raises((ValueError, KeyError), match=r"rec\.1"):
        int8_model.stream(batch=2).restore(broken)


def test_state_moves_between_integer_backends(bundle_path):
    """The 8-bit ONNX graph keeps its state as int8 codes, the numpy reference as int32;
    state() saves int32 codes either way, so a stream continues on the other backend."""
    onnx_m = qs4d.load(bundle_path("int8"), backend="onnx")
    np_m = qs4d.load(bundle_path("int8"), backend="numpy")
    x = steps_input(onnx_m.spec, 300, rng(12), batch=2)
    whole = np_m.stream(batch=2).accept(x)
    cut = x.shape[1] // 3
    for first, second in ((onnx_m, np_m), (np_m, onnx_m)):
        a = first.stream(batch=2)
        a.accept(x[:, :cut])
        st = a.state()
        assert all(st[f"rec.{i}"].dtype == np.int32 for i in range(first.spec.model.n_layers))
        b = second.stream(batch=2)
        b.restore(st)
        np.testing.assert_array_equal(b.accept(x[:, cut:]), whole[:, a.steps:])


def test_restore_refuses_out_of_range_state_codes(int8_model):
    """State codes beyond the state quantizer's range can only come from a corrupted file;
    in int32 arithmetic they would wrap around in ONNX Runtime."""
    s = int8_model.stream()
    st = s.state()
    q = int8_model.spec.quant.state
    st["rec.0"] = st["rec.0"].copy()
    st["rec.0"][0, 0, 0] = qrange(q.bits, q.narrow)[1] + 1
    with pytest.raises(ValueError, match=r"rec\.0"):
        s.restore(st)


def test_bad_backend_and_batch(bundle_path):
    with pytest.raises(ValueError, match="gpu"):
        qs4d.load(bundle_path("int8"), backend="gpu")
    with pytest.raises(ValueError, match="batch"):
        qs4d.load(bundle_path("int8"), backend="numpy").stream(batch=0)


def test_model_describes_itself(int8_model):
    assert int8_model.labels == ("a", "b", "c", "d")
    assert "onnx" in repr(int8_model) and "H=8" in repr(int8_model)


def test_onnx_steps_through_the_binding_and_without_it(bundle_path):
    """The onnx executor calls the session's binding directly (skipping
    InferenceSession.run's per-call feed check); the public run, used where a session has no
    binding, gives the same outputs, and a bad feed is still refused by ONNX Runtime."""
    from types import SimpleNamespace

    from qs4d.runtime.backends import session_runner

    m = qs4d.load(bundle_path("int8"), backend="onnx")
    x = steps_input(m.spec, 40, rng(17))
    want = qs4d.load(bundle_path("int8"), backend="numpy").stream().accept(x)
    np.testing.assert_array_equal(m.stream().accept(x), want)
    ex = m.executor
    assert ex._run == ex.sess._sess.run
    with pytest.raises(Exception, match=r"Actual: \(tensor\(int32\)\)"):  # the graph takes int8
        ex(x[:1], [s.astype(np.int32) for s in ex.init_state(1)])
    ex._run = session_runner(SimpleNamespace(run=ex.sess.run))  # no binding: the public run
    assert ex._run != ex.sess._sess.run
    np.testing.assert_array_equal(m.stream().accept(x), want)
