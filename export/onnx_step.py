"""One streaming step of the whole model as ONNX: integer (`step.onnx`) and float
(`step_float.onnx`). Inputs `x` (B, F) float32 and `state_i` (B, H, 2P); outputs `y` (B, K)
float32 logits and `new_state_i`. The spec travels in the model's metadata_props.

Glossary: B batch/streams, F features, H width, P modes, K classes.

The integer graph performs the operations of `qs4d.runtime.reference.IntegerStep` in the same
order: integer products and sums (MatMulInteger for 8-bit operands, else integer MatMul, Mul,
Add, ReduceSum), requantization by float32 multiply, Round, Clip before every narrowing Cast,
and lookup tables (Gather) for GELU and the sigmoid of the GLU.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from qs4d.runtime.quant import multiplier, qrange
from qs4d.runtime.reference import sig_scale
from qs4d.runtime.spec import ONNX_SPEC_KEY, Spec, layer_key

from .onnx_graph import Graph, np_dtype

F32, I32 = TensorProto.FLOAT, TensorProto.INT32


def _pc(m: np.ndarray) -> np.ndarray:
    """Per-channel (H,) multiplier shaped (H, 1) to broadcast over (B, H, 2P)."""
    m = np.asarray(m, np.float32)
    return m[:, None] if m.ndim == 1 else m


def accumulator_bound(spec: Spec, w: dict) -> int:
    """Largest |integer| any accumulator of the step can reach."""
    q, m = spec.quant, spec.model
    amax = -qrange(q.act.bits)[0]
    smax, H = -qrange(q.state.bits)[0], m.d_model
    mx = lambda k: int(np.abs(w[k]).max()) if w[k].size else 0  # noqa: E731
    b = [m.d_input * amax * mx("enc.w") + mx("enc.b"), H * amax * mx("dec.w") + mx("dec.b")]
    for i, P in enumerate(m.layer_modes):
        k = lambda n, i=i: layer_key(i, n)  # noqa: E731
        b += [2 * mx(k("A")) * smax + mx(k("B")) * amax, 2 * P * mx(k("C")) * smax,
              mx(k("D")) * amax, H * amax * mx(k("mix.w")) + mx(k("mix.b")), amax * amax]
    return max(b)


class _IntegerBuilder:
    def __init__(self, spec: Spec, w: dict):
        self.spec, self.w, self.g = spec, w, Graph("qs4d_step_int")
        q = spec.quant
        self.itype = I32 if accumulator_bound(spec, w) < 2**31 else TensorProto.INT64
        self.act, self.adc = qrange(q.act.bits, q.act.narrow), qrange(q.adc.bits, q.adc.narrow)
        self.st = qrange(q.state.bits, q.state.narrow)
        self.mmi = q.act.bits <= 8 and q.weights.bits <= 8  # MatMulInteger on int8 operands

    def linear(self, x: str, prefix: str) -> str:
        """Integer x @ W.T + b (accumulator of the itype)."""
        g, w = self.g, self.w
        if self.mmi:
            x8 = g.op("Cast", x, to=TensorProto.INT8)
            wt = g.const(w[f"{prefix}.w"].T.astype(np.int8), name=f"{prefix}.w")
            acc = g.op("MatMulInteger", x8, wt, name=f"{prefix}_mm")
            if self.itype != I32:
                acc = g.op("Cast", acc, to=self.itype)
        else:
            wt = g.const(w[f"{prefix}.w"].T.astype(np_dtype(self.itype)), name=f"{prefix}.w")
            acc = g.op("MatMul", x, wt, name=f"{prefix}_mm")
        b = g.const(w[f"{prefix}.b"].astype(np_dtype(self.itype)), name=f"{prefix}.b")
        return g.op("Add", acc, b, name=f"{prefix}_acc")

    def build(self):
        g, w, spec = self.g, self.w, self.spec
        (amin, amax), it = self.act, self.itype
        F, K = spec.model.d_input, spec.model.n_classes
        x = g.input("x", F32, ["B", F])
        s_in = w["in.scale"]
        h = g.requantize([(self.linear(g.quantize(x, s_in, amin, amax, it), "enc"),
                           multiplier(s_in, w["enc.w.scale"], w["enc.out.scale"]))],
                         amin, amax, it, "enc_out")
        s_h = w["enc.out.scale"]
        for i, P in enumerate(spec.model.layer_modes):
            h, s_h = self.layer(i, P, h, s_h)
        acc = self.linear(h, "dec")
        m = (np.asarray(s_h, np.float32) * w["dec.w.scale"]).astype(np.float32)
        y = g.op("Mul", g.op("Cast", acc, to=F32), g.const(m, np.float32), name="logits")
        g.output(y, "y", F32, ["B", K])
        return g.model({ONNX_SPEC_KEY: spec.to_json(), "qs4d.kind": "integer"})

    def layer(self, i: int, P: int, u: str, s_u):
        g, it = self.g, self.itype
        k = lambda n: self.w[layer_key(i, n)]  # noqa: E731
        kn = lambda n: f"l{i}_{n}"  # noqa: E731
        (amin, amax), (cmin, cmax), (smin, smax) = self.act, self.adc, self.st
        H = self.spec.model.d_model
        dt = np_dtype(it)
        s_in = g.input(f"state_{i}", I32, ["B", H, 2 * P])
        s = s_in if it == I32 else g.op("Cast", s_in, to=it)
        A, Bm, C, D = k("A").astype(dt), k("B").astype(dt), k("C").astype(dt), k("D").astype(dt)
        sr = g.op("Slice", s, g.const([0], np.int64), g.const([P], np.int64), g.const([-1], np.int64))
        si = g.op("Slice", s, g.const([P], np.int64), g.const([2 * P], np.int64),
                  g.const([-1], np.int64))
        swap = g.op("Concat", si, sr, axis=-1)
        a1 = g.const(np.concatenate([A[:, 0], A[:, 0]], -1), name=kn("A_diag"))
        a2 = g.const(np.concatenate([-A[:, 1], A[:, 1]], -1), name=kn("A_off"))
        acc_a = g.op("Add", g.op("Mul", s, a1), g.op("Mul", swap, a2), name=kn("acc_a"))
        u3 = g.op("Unsqueeze", u, g.const([-1], np.int64))
        acc_b = g.op("Mul", u3, g.const(np.concatenate([Bm[:, 0], Bm[:, 1]], -1), name=kn("B")),
                     name=kn("acc_b"))
        s_x, s_y = k("state.scale"), k("y.scale")
        s_new = g.requantize([(acc_a, _pc(multiplier(k("A.scale"), s_x, s_x))),
                              (acc_b, _pc(multiplier(s_u, k("B.scale"), s_x)))],
                             smin, smax, it, kn("state"))
        g.output(s_new if it == I32 else g.op("Cast", s_new, to=I32), f"new_state_{i}", I32,
                 ["B", H, 2 * P])
        acc_c = g.op("ReduceSum", g.op("Mul", s, g.const(C, name=kn("C"))),
                     g.const([-1], np.int64), keepdims=0, name=kn("acc_c"))
        acc_d = g.op("Mul", u, g.const(D, name=kn("D")), name=kn("acc_d"))
        y = g.requantize([(acc_c, multiplier(k("C.scale"), s_x, s_y)),
                          (acc_d, multiplier(s_u, k("D.scale"), s_y))], cmin, cmax, it, kn("y"))
        gl = g.lookup(k("gelu.table"), y, cmin, it, kn("gelu"))
        s_g, s_z = k("gelu.scale"), k("mix.out.scale")
        z = g.requantize([(self.linear(gl, layer_key(i, "mix")),
                           multiplier(s_g, k("mix.w.scale"), s_z))], amin, amax, it, kn("z"))
        za = g.op("Slice", z, g.const([0], np.int64), g.const([H], np.int64), g.const([-1], np.int64))
        zb = g.op("Slice", z, g.const([H], np.int64), g.const([2 * H], np.int64),
                  g.const([-1], np.int64))
        sig = g.lookup(k("sig.table"), zb, amin, it, kn("sigmoid"))
        s_o, s_r = k("glu.scale"), k("res.scale")
        o = g.requantize([(g.op("Mul", za, sig, name=kn("glu_acc")),
                           multiplier(s_z, sig_scale(amax), s_o))], amin, amax, it, kn("glu"))
        r = g.requantize([(u, multiplier(s_u, 1.0, s_r)), (o, multiplier(s_o, 1.0, s_r))],
                         amin, amax, it, kn("res"))
        return r, s_r


def integer_model(spec: Spec, w: dict):
    """The integer step graph of an integer bundle's weights (the int8 specialisation when
    activations, state and ADC are 8-bit)."""
    from .onnx_int8 import Int8Builder, eligible

    if eligible(spec) and accumulator_bound(spec, w) < 2**31:
        return Int8Builder(spec, w).build()
    return _IntegerBuilder(spec, w).build()


def float_model(spec: Spec, w: dict):
    """The float32 step graph over float weights (a float bundle or dequantized integers)."""
    g = Graph("qs4d_step_float")
    F, H, K = spec.model.d_input, spec.model.d_model, spec.model.n_classes
    c = lambda a, name=None: g.const(np.asarray(a, np.float32), name=name)  # noqa: E731
    lin = lambda x, p: g.op("Add", g.op("MatMul", x, c(w[f"{p}.w"].T, f"{p}.w")),  # noqa: E731
                            c(w[f"{p}.b"], f"{p}.b"), name=p)
    idx = lambda v: g.const([v], np.int64)  # noqa: E731
    h = lin(g.input("x", F32, ["B", F]), "enc")
    for i, P in enumerate(spec.model.layer_modes):
        k = lambda n, i=i: w[layer_key(i, n)]  # noqa: E731
        s = g.input(f"state_{i}", F32, ["B", H, 2 * P])
        A, Bm = k("A"), k("B")
        swap = g.op("Concat", g.op("Slice", s, idx(P), idx(2 * P), idx(-1)),
                    g.op("Slice", s, idx(0), idx(P), idx(-1)), axis=-1)
        ns = g.op("Add", g.op("Mul", s, c(np.concatenate([A[:, 0], A[:, 0]], -1))),
                  g.op("Mul", swap, c(np.concatenate([-A[:, 1], A[:, 1]], -1))))
        u3 = g.op("Unsqueeze", h, idx(-1))
        ns = g.op("Add", ns, g.op("Mul", u3, c(np.concatenate([Bm[:, 0], Bm[:, 1]], -1))))
        g.output(ns, f"new_state_{i}", F32, ["B", H, 2 * P])
        y = g.op("Add", g.op("ReduceSum", g.op("Mul", s, c(k("C"))), idx(-1), keepdims=0),
                 g.op("Mul", h, c(k("D"))))
        erf = g.op("Erf", g.op("Mul", y, c(1 / np.sqrt(2))))
        gl = g.op("Mul", g.op("Mul", y, c(0.5)), g.op("Add", erf, c(1.0)))
        z = lin(gl, layer_key(i, "mix"))
        za = g.op("Slice", z, idx(0), idx(H), idx(-1))
        zb = g.op("Slice", z, idx(H), idx(2 * H), idx(-1))
        h = g.op("Add", h, g.op("Mul", za, g.op("Sigmoid", zb)))
    g.output(lin(h, "dec"), "y", F32, ["B", K])
    return g.model({ONNX_SPEC_KEY: spec.to_json(), "qs4d.kind": "float"})
