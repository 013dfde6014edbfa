"""Whole-chunk execution of the numpy backend (runtime/chunked.py) against the step loop:
float bundles to float rounding, integer bundles bit for bit; state carry, save/restore, and
the ECG beat events of record 208."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ZOO

import qs4d
from qs4d.runtime.chunked import FloatChunk, IntegerChunk, chunk_executor

TOL = 1e-5  # float chunks vs float steps: max |diff| relative to max |logits|


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def step_loop(ex, x: np.ndarray, state=None):
    """The reference: x (B, T, F) one step at a time -> logits (B, T, K), final state."""
    st = ex.init_state(x.shape[0]) if state is None else state
    out = []
    for t in range(x.shape[1]):
        y, st = ex(x[:, t], st)
        out.append(y)
    return np.stack(out, axis=1), st


def run_cut(chunk, x: np.ndarray, cuts: list[int], state=None):
    """The chunk runner over x cut at the given positions, state carried."""
    st = chunk.init_state(x.shape[0]) if state is None else state
    outs = []
    for part in np.split(x, cuts, axis=1):
        y, st = chunk(part, st)
        assert y.shape[:2] == part.shape[:2] and y.dtype == np.float32
        outs.append(y)
    return np.concatenate(outs, axis=1), st


def rel(a, b) -> float:
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def features(spec, T: int, seed: int, batch: int = 2) -> np.ndarray:
    """Feature rows (B, T, F) of a typical scale, slowly varying (so states build up)."""
    x = rng(seed).standard_normal((batch, T, spec.model.d_input)).astype(np.float32)
    return np.cumsum(x, axis=1).astype(np.float32) * np.float32(0.3) / np.sqrt(
        np.arange(1, T + 1, dtype=np.float32))[None, :, None] + x


CUTS = {"whole": [], "1": list(range(1, 300)), "7": list(range(7, 300, 7)),
        "63/65": [63, 128, 193, 258], "random": [5, 6, 90, 211, 212, 299]}


@pytest.mark.parametrize("cuts", list(CUTS))
def test_float_chunks_equal_steps_to_rounding(float_bundle, cuts):
    model = qs4d.load(float_bundle, backend="numpy")
    chunk = FloatChunk(model.executor, block=16)  # many blocks and tails in 300 steps
    x = features(model.spec, 300, 1)
    ref, st_ref = step_loop(model.executor, x)
    got, st = run_cut(chunk, x, CUTS[cuts])
    assert rel(got, ref) < TOL
    for s, s_ref in zip(st, st_ref):
        assert s.dtype == s_ref.dtype == np.float32 and s.shape == s_ref.shape
        assert rel(s, s_ref) < TOL


def test_float_chunk_from_a_nonzero_state_and_long_runs(float_bundle):
    model = qs4d.load(float_bundle, backend="numpy")
    ex = model.executor
    x = features(model.spec, 2500, 2, batch=1)
    _, st0 = step_loop(ex, features(model.spec, 50, 3, batch=1))  # some state to start from
    ref, st_ref = step_loop(ex, x, [s.copy() for s in st0])
    for block in (1, 64, 400):  # one step per block, the default, long blocks
        got, st = run_cut(FloatChunk(ex, block=block), x, [700, 701, 2100],
                          [s.copy() for s in st0])
        assert rel(got, ref) < TOL, block
        assert all(rel(a, b) < TOL for a, b in zip(st, st_ref))


@pytest.mark.parametrize("block", [1, 3, 128])
def test_integer_chunks_equal_steps_bit_for_bit(int_bundle, block):
    model = qs4d.load(int_bundle, backend="numpy")
    chunk = IntegerChunk(model.executor, block=block)
    x = features(model.spec, 300, 4) * np.float32(2.0)  # reaches the saturating codes too
    ref, st_ref = step_loop(model.executor, x)
    for cuts in CUTS.values():
        got, st = run_cut(chunk, x, cuts)
        np.testing.assert_array_equal(got, ref)
        for s, s_ref in zip(st, st_ref):
            assert s.dtype == s_ref.dtype == np.int32
            np.testing.assert_array_equal(s, s_ref)


def test_integer_chunk_without_input_tables(bundle_path):
    """Wide activations (over 12 bits) skip the float32(B u) * m_b table: same bits."""
    model = qs4d.load(bundle_path("int8"), backend="numpy")
    chunk = IntegerChunk(model.executor, block=7)
    for lay in chunk.layers:
        assert lay["pre"] is not None
        lay["pre"] = lay["pre_off"] = None
    x = features(model.spec, 100, 9)
    ref, st_ref = step_loop(model.executor, x)
    got, st = run_cut(chunk, x, [33])
    np.testing.assert_array_equal(got, ref)
    assert all(np.array_equal(a, b) for a, b in zip(st, st_ref))


def test_stream_uses_the_chunk_runner_and_can_step(float_bundle, int_bundle):
    for path in (float_bundle, int_bundle):
        m = qs4d.load(path, backend="numpy")
        assert isinstance(m.chunk, (FloatChunk, IntegerChunk))
        assert qs4d.load(path, backend="numpy", chunked=False).chunk is None
        assert qs4d.load(path, backend="onnx").chunk is None  # ONNX steps its graph
    m = qs4d.load(int_bundle, backend="numpy", float_graph=True)  # dequantized float step
    assert isinstance(m.chunk, FloatChunk)


def test_stream_chunked_equals_stepped_and_restores(float_bundle):
    from conftest import steps_input

    chunked = qs4d.load(float_bundle, backend="numpy")
    stepped = qs4d.load(float_bundle, backend="numpy", chunked=False)
    x = steps_input(chunked.spec, 600, rng(7), batch=2)
    ref = stepped.stream(batch=2).accept(x)
    cut = x.shape[1] * 5 // 12
    a = chunked.stream(batch=2)
    first = a.accept(x[:, :cut])
    saved = a.state()
    b = chunked.stream(batch=2)
    b.restore(saved)
    rest = b.accept(x[:, cut:])
    got = np.concatenate([first, rest], axis=1)
    assert got.shape == ref.shape and rel(got, ref) < TOL
    assert b.steps == ref.shape[1]


def test_run_features_bypasses_the_front_end(int_bundle):
    model = qs4d.load(int_bundle, backend="numpy")
    x = features(model.spec, 40, 8, batch=1)
    ref, _ = step_loop(model.executor, x)
    s = model.stream()
    got = np.concatenate([s.run_features(x[0, :17]), s.run_features(x[0, 17:])])
    np.testing.assert_array_equal(got, ref[0])
    assert s.steps == 40
    with pytest.raises(ValueError, match="expected"):
        s.run_features(np.zeros((5, model.spec.model.d_input + 1), np.float32))
    sb = model.stream(batch=3)
    assert sb.run_features(np.zeros((3, 4, model.spec.model.d_input))).shape[:2] == (3, 4)


def test_integer_chunk_refuses_codes_too_wide_for_float32(bundle_path):
    from qs4d.runtime.reference import IntegerStep

    model = qs4d.load(bundle_path("int8"), backend="numpy")
    wide = dict(model.bundle.weights)
    wide["l0.A"] = wide["l0.A"].astype(np.int64) * 2**10  # A * state codes beyond 2^24
    ex = IntegerStep(model.spec, wide)
    with pytest.raises(ValueError, match=r"2\^24"):
        IntegerChunk(ex)
    assert chunk_executor(ex) is None  # a stream then steps


# -- record 208: beat events of chunked and stepped execution ------------------------------------

def beat_events(model, x: np.ndarray, chunk: int) -> list:
    from qs4d.apps.ecg import FeatureSteps
    from qs4d.runtime.ecg import BeatStream

    bs = BeatStream(FeatureSteps(model), model.spec.frontend, labels=model.labels)
    return [e for i in range(0, len(x), chunk) for e in bs.accept(x[i: i + chunk])]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ecg-float", "ecg-qat4"])
def test_record208_beats_identical_chunked_and_stepped(name):
    from qs4d.runtime.records import load_record208

    if not (ZOO / name / "manifest.json").exists():
        pytest.skip(f"models/zoo/{name} is not there")
    x, fs = load_record208()
    chunked = qs4d.load(ZOO / name, backend="numpy")
    # the step reference: numpy steps for the float bundle, the ONNX graph for the integer one
    stepped = qs4d.load(ZOO / name, backend="numpy" if name == "ecg-float" else "onnx",
                        chunked=False)
    ref = beat_events(stepped, x, 36)  # 100 ms chunks: 9 steps each
    for chunk in (36, 3600, len(x)):
        got = beat_events(chunked, x, chunk)
        assert len(got) == len(ref) > 400
        assert [(e.sample, e.label) for e in got] == [(e.sample, e.label) for e in ref], chunk
        p, p_ref = np.stack([e.probs for e in got]), np.stack([e.probs for e in ref])
        if name == "ecg-float":
            assert np.abs(p - p_ref).max() < 1e-4
        else:
            np.testing.assert_array_equal(p, p_ref)
