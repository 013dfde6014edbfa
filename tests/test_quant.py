"""The quantizer contract (DESIGN section 3) agrees among numpy, torch and ONNX Runtime:
ties round half to even, values past the range saturate, negative zero is code 0, ternary is
the narrow range {-1, 0, +1}, and requantization sums float32 terms in the given order.

Glossary: n values in a test vector, C channels.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from qs4d.export.onnx_graph import Graph
from qs4d.models import quant as tq
from qs4d.models.quant import Quantizer, quantize_codes
from qs4d.runtime import quant as nq
from qs4d.runtime.quant import qrange, quantize, requantize
from qs4d.runtime.spec import QuantSpec

F32 = np.float32


def ort_session(model):
    model.ir_version = 8  # onnxruntime here reads IR <= 13; onnx writes 14
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def ort_quantize_linear(x: np.ndarray, scale: float) -> np.ndarray:
    """ONNX QuantizeLinear to int8 with zero point 0 (scalars as 0-d initializers)."""
    node = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"])
    graph = helper.make_graph(
        [node], "q", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])],
        [helper.make_tensor_value_info("y", TensorProto.INT8, [None])],
        [numpy_helper.from_array(np.array(scale, F32), "s"),
         numpy_helper.from_array(np.array(0, np.int8), "z")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return ort_session(model).run(None, {"x": np.asarray(x, F32)})[0]


def ort_graph_quantize(x: np.ndarray, scale: float, qmin: int, qmax: int) -> np.ndarray:
    """The export's own idiom (Graph.quantize: Div, Round, Clip, Cast) through ONNX Runtime."""
    g = Graph("q")
    xin = g.input("x", TensorProto.FLOAT, [None])
    g.output(g.quantize(xin, scale, qmin, qmax, TensorProto.INT32), "y", TensorProto.INT32,
             [None])
    return ort_session(g.model({})).run(None, {"x": np.asarray(x, F32)})[0]


def torch_codes(x: np.ndarray, scale, qmin: int, qmax: int) -> np.ndarray:
    c = quantize_codes(torch.tensor(np.asarray(x, F32)), torch.tensor(np.asarray(scale, F32)),
                       qmin, qmax)
    assert bool(torch.all(c == torch.round(c)))  # codes are exact integers
    return c.numpy().astype(np.int64)


def all_three(x: np.ndarray, scale: float) -> tuple:
    """int8 codes of x from numpy, torch and ONNX QuantizeLinear."""
    qmin, qmax = qrange(8)
    return (quantize(x, scale, qmin, qmax).astype(np.int64), torch_codes(x, scale, qmin, qmax),
            ort_quantize_linear(x, scale).astype(np.int64))


def test_ties_round_half_to_even_everywhere():
    scale = 0.25  # a power of two: (k + 0.5) * scale / scale is exactly k + 0.5
    k = np.arange(-12, 12)
    x = ((k + 0.5) * scale).astype(F32)  # (n,)
    want = np.where(k % 2 == 0, k, k + 1)  # the even neighbour of k + 0.5
    for name, got in zip(("numpy", "torch", "onnx"), all_three(x, scale)):
        np.testing.assert_array_equal(got, want, err_msg=name)
    np.testing.assert_array_equal(ort_graph_quantize(x, scale, -128, 127), want)


def test_saturation_at_both_ends():
    scale = 0.5
    x = np.array([63.4, 63.6, 64.0, 1e9, np.inf, -64.0, -64.4, -64.6, -1e9, -np.inf], F32)
    want = np.array([127, 127, 127, 127, 127, -128, -128, -128, -128, -128])
    for name, got in zip(("numpy", "torch", "onnx"), all_three(x, scale)):
        np.testing.assert_array_equal(got, want, err_msg=name)
    np.testing.assert_array_equal(ort_graph_quantize(x, scale, -128, 127), want)


def test_negative_zero_is_code_zero():
    x = np.array([-0.0, 0.0, -0.1, 0.1, -0.125], F32)  # -0.125 / 0.25 = -0.5 -> -0
    for name, got in zip(("numpy", "torch", "onnx"), all_three(x, 0.25)):
        np.testing.assert_array_equal(got, [0, 0, 0, 0, 0], err_msg=name)
    deq = nq.dequantize(quantize(x, 0.25, -128, 127), 0.25)
    assert not np.any(np.signbit(deq))


def test_ternary_is_narrow():
    assert qrange(2) == (-1, 1) == qrange(2, narrow=False)
    spec = QuantSpec(2)
    assert (spec.qmin, spec.qmax) == (-1, 1) and spec.ternary
    s = 0.5
    x = np.array([-100, -0.76, -0.25, -0.24, 0.0, 0.24, 0.25, 0.26, 0.74, 0.75, 100], F32)
    want = [-1, -1, 0, 0, 0, 0, 0, 1, 1, 1, 1]  # +-0.5 codes are ties -> 0
    np.testing.assert_array_equal(quantize(x, s, -1, 1), want)
    np.testing.assert_array_equal(torch_codes(x, s, -1, 1), want)
    np.testing.assert_array_equal(ort_graph_quantize(x, s, -1, 1), want)
    q = Quantizer(spec, channels=1)
    q.calibrate(torch.tensor([0.3, -0.9, 0.05, 0.6]))
    assert set(q.codes(torch.linspace(-3, 3, 101)).unique().tolist()) == {-1.0, 0.0, 1.0}


def test_narrow_8bit_never_uses_minus_128():
    assert qrange(8, narrow=True) == (-127, 127)
    x = np.array([-1000.0, -127.5, 127.5], F32)
    np.testing.assert_array_equal(quantize(x, 1.0, *qrange(8, True)), [-127, -127, 127])
    np.testing.assert_array_equal(torch_codes(x, 1.0, *qrange(8, True)), [-127, -127, 127])


def test_division_not_reciprocal_multiply():
    """q = rint(x / s) in float32: values near ties where x * (1/s) rounds the other way."""
    rng = np.random.default_rng(1)
    s = F32(0.3)
    k = rng.integers(-300, 300, 5000)  # (n,)
    x = ((k + 0.5) * s).astype(F32)  # near ties
    x = np.concatenate([x, np.nextafter(x, F32(np.inf)), np.nextafter(x, F32(-np.inf))])
    div = np.rint(x / s)
    mul = np.rint(x * (F32(1) / s))
    assert np.any(div != mul)  # the test vector can tell the two apart
    np.testing.assert_array_equal(quantize(x, s, -(2**20), 2**20), div.astype(np.int32))
    np.testing.assert_array_equal(torch_codes(x, s, -(2**20), 2**20), div.astype(np.int64))
    np.testing.assert_array_equal(ort_graph_quantize(x, float(s), -(2**20), 2**20), div)


def test_requantize_sums_float32_terms_in_order():
    big = np.array([2**24], np.int64)
    one = np.array([1], np.int64)
    m = F32(1.0)
    lo, hi = -(2**30), 2**30
    # (2^24 + 1) + 1 in float32: each +1 is a tie that rounds back to 2^24
    first_big = requantize([(big, m), (one, m), (one, m)], lo, hi)
    last_big = requantize([(one, m), (one, m), (big, m)], lo, hi)
    assert int(first_big[0]) == 2**24 and int(last_big[0]) == 2**24 + 2
    tb = [(torch.tensor(big), torch.tensor(m)), (torch.tensor(one), torch.tensor(m)),
          (torch.tensor(one), torch.tensor(m))]
    assert int(tq.requantize(tb, lo, hi)[0]) == 2**24
    assert int(tq.requantize(tb[::-1], lo, hi)[0]) == 2**24 + 2
    # the accumulator is cast to float32 before the multiply: 2^24 + 1 -> 2^24
    assert int(requantize([(big + 1, m)], lo, hi)[0]) == 2**24
    # and the result saturates
    assert int(requantize([(big, m)], -128, 127)[0]) == 127


def test_multiplier_is_float32_product_then_quotient():
    s_in, s_w, s_out = F32(0.1), F32(0.3), F32(0.7)
    want = (s_in * s_w) / s_out
    assert nq.multiplier(s_in, s_w, s_out).dtype == np.float32
    assert nq.multiplier(s_in, s_w, s_out) == want
    t = tq.multiplier(torch.tensor(s_in), float(s_w), torch.tensor(s_out))
    assert t.dtype == torch.float32 and t.item() == want


def test_lookup_indexes_by_code_minus_qmin():
    table = np.arange(-8, 8) * 10  # (16,) a 4-bit table
    np.testing.assert_array_equal(nq.lookup(table, np.array([-8, 0, 7]), -8), [-80, 0, 70])


floats32 = st.floats(width=32, allow_nan=False, allow_infinity=True)
scales32 = st.floats(min_value=2.0**-20, max_value=1024.0, width=32)
widths = st.sampled_from([(2, False), (3, False), (4, True), (4, False), (6, False), (8, False),
                          (8, True), (12, False), (16, False)])


@settings(max_examples=150, deadline=None)
@given(st.lists(floats32, min_size=1, max_size=64), scales32, widths)
def test_numpy_equals_torch_on_random_values(xs, scale, width):
    bits, narrow = width
    qmin, qmax = qrange(bits, narrow)
    x = np.array(xs, F32)
    with np.errstate(over="ignore"):  # inf / scale saturates like any large value
        want = quantize(x, scale, qmin, qmax)
    np.testing.assert_array_equal(want, torch_codes(x, scale, qmin, qmax))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-8192.0, 8192.0, width=32), min_size=6, max_size=6),
       st.lists(scales32, min_size=3, max_size=3), st.booleans())
def test_quantizer_module_matches_numpy(xs, scales, per_channel):
    """Quantizer.codes (per tensor or per channel along axis 0) equals numpy's quantize."""
    spec = QuantSpec(8, per_channel=per_channel)
    q = Quantizer(spec, channels=3, axis=0)
    with torch.no_grad():
        q.raw.copy_(torch.log(torch.tensor(scales if per_channel else scales[0])))
    x = np.array(xs, F32).reshape(3, 2)  # (C, 2)
    s = q.scale().detach().numpy()  # (C,) or ()
    want = quantize(x, s[:, None] if per_channel else s, q.qmin, q.qmax)
    np.testing.assert_array_equal(q.codes(torch.tensor(x)).detach().numpy(), want)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(-(2**30), 2**30), min_size=2, max_size=2),
       st.lists(st.floats(2.0**-20, 4.0, width=32), min_size=2, max_size=2), widths)
def test_requantize_numpy_equals_torch(accs, ms, width):
    qmin, qmax = qrange(*width)
    terms = [(np.array([a], np.int64), F32(m)) for a, m in zip(accs, ms)]
    tterms = [(torch.tensor([float(a)], dtype=torch.float64), torch.tensor(F32(m)))
              for a, m in zip(accs, ms)]
    assert int(requantize(terms, qmin, qmax)[0]) == int(tq.requantize(tterms, qmin, qmax)[0])
    assert int(tq.requantize(tterms, qmin, qmax)[0]) == int(
        ort_requantize(accs, ms, qmin, qmax)[0])


def ort_requantize(accs, ms, qmin, qmax) -> np.ndarray:
    """Graph.requantize (Cast, Mul, Add, Round, Clip, Cast) through ONNX Runtime, int64 accs."""
    g = Graph("r")
    names = [g.input(f"a{i}", TensorProto.INT64, [1]) for i in range(len(accs))]
    out = g.requantize([(n, np.asarray(m, F32)) for n, m in zip(names, ms)], qmin, qmax,
                       TensorProto.INT64, "r")
    g.output(out, "y", TensorProto.INT64, [1])
    feeds = {n: np.array([a], np.int64) for n, a in zip(names, accs)}
    return ort_session(g.model({})).run(None, feeds)[0]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-65536.0, 65536.0, width=32), min_size=1, max_size=32),
       st.floats(2.0**-13, 128.0, width=32))
def test_numpy_equals_onnx_quantize_linear(xs, scale):
    x = np.array(xs, F32)
    got = ort_quantize_linear(x, scale).astype(np.int64)
    np.testing.assert_array_equal(got, quantize(x, scale, -128, 127))


@pytest.mark.parametrize("bits", [1, 25, -3])
def test_bad_widths_refused(bits):
    with pytest.raises(ValueError, match="bits"):
        QuantSpec(bits)
    if bits < 2:
        with pytest.raises(ValueError, match="bits"):
            qrange(bits)
