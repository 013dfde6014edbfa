"""The integer step graph specialised for 8-bit activations, state and ADC (the common case):
requantization as DequantizeLinear (float32(acc) * m, per channel along axis 1) and
QuantizeLinear (scale 1: round half to even, saturate to int8), which is exactly the
arithmetic of `qs4d.runtime.reference.IntegerStep` in fewer, faster nodes. Lookup indices come
straight out of a uint8 QuantizeLinear with zero point 128 (= code - qmin).

Glossary: B batch/streams, F features, H width, P modes, K classes.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from qs4d.runtime.quant import multiplier
from qs4d.runtime.reference import sig_scale
from qs4d.runtime.spec import ONNX_SPEC_KEY, Spec, layer_key

from .onnx_graph import Graph, dequantize, saturate8

F32, I32, I8 = TensorProto.FLOAT, TensorProto.INT32, TensorProto.INT8


def eligible(spec: Spec) -> bool:
    """8-bit (non-narrow) activations, state and ADC; weights of at most 8 bits."""
    q = spec.quant
    eight = all(g.bits == 8 and not g.narrow for g in (q.act, q.state, q.adc))
    return eight and q.weights.bits <= 8


class Int8Builder:
    def __init__(self, spec: Spec, w: dict):
        self.spec, self.w, self.g = spec, w, Graph("qs4d_step_int8")

    def mm(self, x8: str, prefix: str) -> str:
        """int32 accumulator of x8 @ W.T + b (MatMulInteger on int8 operands)."""
        g, w = self.g, self.w
        wt = g.const(w[f"{prefix}.w"].T.astype(np.int8), name=f"{prefix}.w")
        acc = g.op("MatMulInteger", x8, wt, name=f"{prefix}_mm")
        return g.op("Add", acc, g.const(w[f"{prefix}.b"].astype(np.int32), name=f"{prefix}.b"),
                    name=f"{prefix}_acc")

    def build(self):
        g, w, spec = self.g, self.w, self.spec
        F, K = spec.model.d_input, spec.model.n_classes
        x = g.input("x", F32, ["B", F])
        s_in = w["in.scale"]
        q = g.op("Round", g.op("Div", x, g.const(np.float32(s_in))))
        x8 = g.op("Cast", g.clip_f(q, -128, 127), to=I8)
        acc = self.mm(x8, "enc")
        h = saturate8(g, dequantize(g, acc, multiplier(s_in, w["enc.w.scale"],
                                                       w["enc.out.scale"]), np.int32), "enc_out")
        s_h = w["enc.out.scale"]
        for i, P in enumerate(spec.model.layer_modes):
            h, s_h = self.layer(i, P, h, s_h)
        m = (np.asarray(s_h, np.float32) * w["dec.w.scale"]).astype(np.float32)
        y = dequantize(g, self.mm(h, "dec"), m, np.int32)
        g.output(y, "y", F32, ["B", K])
        return g.model({ONNX_SPEC_KEY: spec.to_json(), "qs4d.kind": "integer"})

    def layer(self, i: int, P: int, u8: str, s_u):
        g = self.g
        k = lambda n: self.w[layer_key(i, n)]  # noqa: E731
        kn = lambda n: f"l{i}_{n}"  # noqa: E731
        idx = lambda v: g.const([v], np.int64)  # noqa: E731
        H = self.spec.model.d_model
        A, Bm = k("A").astype(np.int32), k("B").astype(np.int32)
        u = g.op("Cast", u8, to=I32, name=kn("u"))  # (B, H)
        s = g.input(f"state_{i}", I32, ["B", H, 2 * P])  # (B, H, 2P)
        swap = g.op("Concat", g.op("Slice", s, idx(P), idx(2 * P), idx(-1)),
                    g.op("Slice", s, idx(0), idx(P), idx(-1)), axis=-1)
        a1 = g.const(np.concatenate([A[:, 0], A[:, 0]], -1), name=kn("A_diag"))
        a2 = g.const(np.concatenate([-A[:, 1], A[:, 1]], -1), name=kn("A_off"))
        acc_a = g.op("Add", g.op("Mul", s, a1), g.op("Mul", swap, a2), name=kn("acc_a"))
        acc_b = g.op("Mul", g.op("Unsqueeze", u, idx(-1)),
                     g.const(np.concatenate([Bm[:, 0], Bm[:, 1]], -1), name=kn("B")),
                     name=kn("acc_b"))
        s_x, s_y = k("state.scale"), k("y.scale")
        tot = g.op("Add", dequantize(g, acc_a, multiplier(k("A.scale"), s_x, s_x), np.int32),
                   dequantize(g, acc_b, multiplier(s_u, k("B.scale"), s_x), np.int32))
        s_new = g.op("Cast", saturate8(g, tot, kn("state")), to=I32)
        g.output(s_new, f"new_state_{i}", I32, ["B", H, 2 * P])
        acc_c = g.op("ReduceSum", g.op("Mul", s, g.const(k("C").astype(np.int32), name=kn("C"))),
                     idx(-1), keepdims=0, name=kn("acc_c"))
        acc_d = g.op("Mul", u, g.const(k("D").astype(np.int32), name=kn("D")), name=kn("acc_d"))
        tot = g.op("Add", dequantize(g, acc_c, multiplier(k("C.scale"), s_x, s_y), np.int32),
                   dequantize(g, acc_d, multiplier(s_u, k("D.scale"), s_y), np.int32))
        y_idx = g.op("Cast", saturate8(g, tot, kn("y"), index=True), to=I32)
        g8 = g.op("Gather", g.const(k("gelu.table").astype(np.int8), name=kn("gelu_table")),
                  y_idx, axis=0, name=kn("gelu"))
        s_g, s_z = k("gelu.scale"), k("mix.out.scale")
        zf = dequantize(g, self.mm(g8, layer_key(i, "mix")),
                        multiplier(s_g, k("mix.w.scale"), s_z), np.int32)  # (B, 2H)
        za = g.op("Cast", saturate8(g, g.op("Slice", zf, idx(0), idx(H), idx(-1)), kn("za")),
                  to=I32)
        zb = g.op("Cast", saturate8(g, g.op("Slice", zf, idx(H), idx(2 * H), idx(-1)), kn("zb"),
                                    index=True), to=I32)
        sig = g.op("Gather", g.const(k("sig.table").astype(np.int32), name=kn("sig_table")), zb,
                   axis=0, name=kn("sigmoid"))
        s_o, s_r = k("glu.scale"), k("res.scale")
        o8 = saturate8(g, dequantize(g, g.op("Mul", za, sig, name=kn("glu_acc")),
                                     multiplier(s_z, sig_scale(127), s_o), np.int32), kn("glu"))
        tot = g.op("Add", dequantize(g, u8, multiplier(s_u, 1.0, s_r), np.int8),
                   dequantize(g, o8, multiplier(s_o, 1.0, s_r), np.int8))
        return saturate8(g, tot, kn("res")), s_r
