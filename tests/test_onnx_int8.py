"""The int8 specialisation of the integer step graph (export/onnx_int8.py): its tables and
weight rows are exact rewrites of the reference arithmetic, ONNX Runtime runs it as written
(no fusion into its own quantized kernels, whose rounding differs), and no uint8 x int8
product can saturate the 16-bit pair sums of x86 kernels without VNNI.

Glossary: N output columns.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from qs4d.export.onnx_int8 import bias_rows, glu_table, interleave, split_weights
from qs4d.runtime.quant import requantize
from qs4d.runtime.spec import ONNX_FILE

INT8_BUILT = ["int8", "w4", "tern"]  # conftest configs that the int8 builder exports


def test_glu_table_is_the_reference_glu():
    rng = np.random.default_rng(0)
    sig = np.sort(rng.integers(0, 128, 256))
    m = np.float32(0.0123)
    t = glu_table(sig, m)
    za, zb = rng.integers(-128, 128, 500), rng.integers(-128, 128, 500)
    ref = requantize([(za * sig[zb + 128], m)], -128, 127)
    np.testing.assert_array_equal(t[za + 128, zb + 128].astype(int) - 128, ref)


def test_bias_rows_and_split_weights_sum_back():
    rng = np.random.default_rng(1)
    b = rng.integers(-3000, 3000, 40)
    rows = bias_rows(b)
    assert np.abs(rows).max() <= 64
    np.testing.assert_array_equal(rows.sum(0), b)
    w = rng.integers(-128, 128, (16, 40))
    pieces = split_weights(w)
    assert len(pieces) == 2 and all(np.abs(p).max() <= 64 for p in pieces)
    np.testing.assert_array_equal(sum(pieces), w)
    assert len(split_weights(np.clip(w, -64, 64))) == 1
    rows, ones = interleave(pieces, bias_rows(b))  # input: per code, 2 copies then `ones` 1s
    x = rng.integers(-128, 128, 16)
    xin = np.concatenate([np.repeat(x[:, None], 2, 1), np.ones((16, ones), int)], 1).ravel()
    np.testing.assert_array_equal(xin @ rows, x @ w + b)


@pytest.mark.parametrize("name", INT8_BUILT)
def test_onnxruntime_keeps_the_graph_as_written(bundle_path, name, tmp_path):
    """With default session options ONNX Runtime must not rewrite any part of the graph into
    its own quantized kernels (DequantizeLinear -> Add -> QuantizeLinear became QLinearAdd,
    which rounds (a + b + zero point) once: off by one in rare steps)."""
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(str(bundle_path(name) / ONNX_FILE), so,
                         providers=["CPUExecutionProvider"])
    m = onnx.load(tmp_path / "opt.onnx")
    assert not [n.op_type for n in m.graph.node if n.domain not in ("", "ai.onnx")]


@pytest.mark.parametrize("name", INT8_BUILT)
def test_uint8_products_cannot_saturate_pair_sums(bundle_path, name):
    """Every weight matrix of a uint8 x int8 product has, per column, two largest |w| summing
    to at most 128: 255 * 128 < 2^15, whichever two rows a kernel pairs."""
    m = onnx.load(bundle_path(name) / ONNX_FILE)
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    n = 0
    for node in m.graph.node:
        if node.op_type in ("MatMulInteger", "QLinearMatMul"):
            w = np.abs(inits[node.input[1 if node.op_type == "MatMulInteger" else 3]]
                       .astype(np.int64))
            top2 = np.sort(w, axis=0)[-2:].sum(0)  # (N,)
            assert top2.max() <= 128, node.name
            n += 1
    assert n >= 3


@pytest.mark.parametrize("exact_below", [2**24, 0])  # the float32 C s path, and its fallback
@pytest.mark.parametrize("i16_bound", [2**15, 0])  # int16 state accumulators, and int32
def test_every_state_path_equals_the_reference_bit_for_bit(bundle_path, monkeypatch, exact_below,
                                                           i16_bound):
    """C s in float32 (blocked DequantizeLinear + ReduceSum) where every partial sum is an
    exact float32 integer, else the int32 Mul + MatMul; R(A) s and B u in int16 where they
    provably fit, else in int32: the same outputs and states."""
    from qs4d.export import onnx_int8
    from qs4d.runtime.backends import session_options
    from qs4d.runtime.bundle import load_bundle
    from qs4d.runtime.reference import IntegerStep

    monkeypatch.setattr(onnx_int8, "F32_EXACT", exact_below)
    monkeypatch.setattr(onnx_int8, "I16_BOUND", i16_bound)
    b = load_bundle(bundle_path("int8"))
    m = onnx_int8.Int8Builder(b.spec, b.weights).build()
    onnx.checker.check_model(m, full_check=True)
    ops = {n.op_type for n in m.graph.node}
    assert ("ReduceSum" in ops) == bool(exact_below) and ("MatMul" in ops) != bool(exact_below)
    casts = {a.i for n in m.graph.node if n.op_type == "Cast" for a in n.attribute}
    assert (onnx.TensorProto.INT16 in casts) == bool(i16_bound)
    sess = ort.InferenceSession(m.SerializeToString(), session_options(1),
                                providers=["CPUExecutionProvider"])
    ref = IntegerStep(b.spec, b.weights)
    L = b.spec.model.n_layers
    names = ["y"] + [f"new_state_{i}" for i in range(L)]
    rng = np.random.default_rng(3)
    s_ref = ref.init_state(3)
    s = [np.zeros(a.shape, np.int8) for a in s_ref]
    for _ in range(300):
        x = (rng.standard_normal((3, b.spec.model.d_input)) * (1 + 3 * rng.random()))
        out = sess.run(names, {"x": x.astype(np.float32),
                               **{f"state_{i}": s[i] for i in range(L)}})
        y_ref, s_ref = ref(x.astype(np.float32), s_ref)
        np.testing.assert_array_equal(out[0], y_ref)
        s = out[1:]
        for a, r in zip(s, s_ref):
            np.testing.assert_array_equal(a, r)
