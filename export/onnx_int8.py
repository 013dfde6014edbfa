"""The integer step graph specialised for 8-bit activations, state and ADC (the common case),
built for few ONNX Runtime kernels at batch 1, each computing exactly the arithmetic of
`qs4d.runtime.reference.IntegerStep`:

- activation codes travel as uint8 code + 128: ready table indices, and the fast uint8 x int8
  kernels of MatMulInteger and QLinearMatMul (zero point 128). Requantization is
  DequantizeLinear (float32(acc) * m), Add, QuantizeLinear (scale 1: round half to even,
  saturate), or one QLinearMatMul (the same float32 multiply, rounding and saturation) where
  a single accumulator is requantized; a bias enters a QLinearMatMul as extra input columns
  of code 1 against int8 rows that sum to it;
- the states of all layers with the same mode count are one (B, n H, 2P) tensor: R(A) s and
  C s of every layer come first (they do not depend on the layer inputs), the new states
  last: R(A) s and B u requantized together, as the contract says, then split per layer;
- the state inputs and outputs are int8 (the 8-bit state codes themselves): the saturating
  QuantizeLinear writes them. R(A) s and B u accumulate in int16 where their bounds,
  128 (|A_re| + |A_im|) and 128 |B|, stay below 2^15, else in int32: ONNX
  Runtime's int16 Mul and Add take half the time of float32 or int32 over the (1, 256, 64)
  state, and its elementwise kernels cost 1-3 us per pass there whatever the op (the graph's
  cost is mostly its passes over the state). Each accumulator is requantized by one
  DequantizeLinear (float32(acc) * m per channel). B u is a same-shape product (u gathered
  once per state column: ONNX Runtime's broadcasting Mul is far slower);
- C s is computed in float32, exactly (integer products and sums below 2^24): the int8 state
  times C as one blocked DequantizeLinear (opset 21; the scale block spans the batch axis),
  then a ReduceSum;
- D u is a diagonal uint8 x int8 product; GELU is a table over the ADC code; the GLU (sigmoid
  table, integer product, requantization) is one 256 x 256 table over the codes (za, zb),
  holding float32(o) * m_o, the GLU code times its multiplier in the residual sum: the value
  DequantizeLinear would give;
- weights beyond +-64 are split in two and bias rows stay within +-64 (D, on a diagonal, has
  one weight per column), so that no pair of uint8 x int8 products can saturate the 16-bit
  intermediate of x86 kernels without VNNI (255 * 128 < 2^15);
- the residual sum is a Sum, not an Add: ONNX Runtime rewrites DequantizeLinear -> Add ->
  QuantizeLinear on 8-bit tensors into its QLinearAdd, which rounds differently.

Glossary: B batch/streams, F features, H width, P modes, K classes, n layers in a group.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from qs4d.runtime.quant import multiplier, requantize
from qs4d.runtime.reference import sig_scale
from qs4d.runtime.spec import ONNX_SPEC_KEY, Spec, layer_key

from .onnx_graph import Graph, dequantize, saturate8

F32, I32, I64, I8 = TensorProto.FLOAT, TensorProto.INT32, TensorProto.INT64, TensorProto.INT8
I16 = TensorProto.INT16
NP_OF = {I16: np.int16, I32: np.int32}
CODES = np.arange(-128, 128)  # every 8-bit code, in index order (index = code + 128)
ONE = 129  # the index of code 1
W_SAFE = 64  # largest |weight| a uint8 x int8 product may meet
BATCH_BLOCK = 1 << 30  # block size along the batch axis: one scale block for every stream
F32_EXACT = 2**24  # integers below this are exact in float32
I16_BOUND = 2**15  # integers below this in magnitude fit int16


def eligible(spec: Spec) -> bool:
    """8-bit (non-narrow) activations, state and ADC; weights and D of at most 8 bits."""
    q = spec.quant
    eight = all(g.bits == 8 and not g.narrow for g in (q.act, q.state, q.adc))
    return eight and q.weights.bits <= 8 and q.D.bits <= 8


def glu_table(sig: np.ndarray, m) -> np.ndarray:
    """(256, 256) uint8: [za + 128, zb + 128] -> clip(rint(f32(za * sig[zb]) * m)) + 128."""
    za, zb = np.meshgrid(CODES, CODES, indexing="ij")
    o = requantize([(za * np.asarray(sig, np.int64)[zb + 128], m)], -128, 127)
    return (o + 128).astype(np.uint8)


def bias_rows(b: np.ndarray) -> np.ndarray:
    """(k, N) rows in [-64, 64] whose column sums are the integer bias b (N,)."""
    k = max(1, -(-int(np.abs(b).max(initial=0)) // W_SAFE))
    rows, rest = [], np.asarray(b, np.int64)
    for _ in range(k):
        rows.append(np.clip(rest, -W_SAFE, W_SAFE))
        rest = rest - rows[-1]
    return np.stack(rows)


def interleave(pieces: list, bias: np.ndarray) -> tuple[np.ndarray, int]:
    """Rows of a product whose input holds, per code h, the code once per weight piece then
    `ones` codes 1: W pieces (H, N) and bias rows (k, N) -> (H (len(pieces) + ones), N)."""
    H, N = pieces[0].shape
    ones = -(-len(bias) // H)
    extra = np.zeros((H * ones, N), np.int64)
    extra[:len(bias)] = bias
    rows = np.concatenate([np.stack(pieces, 1), extra.reshape(H, ones, N)], 1)
    return rows.reshape(-1, N), ones


def split_weights(wt: np.ndarray) -> list:
    """W as a sum of int8 matrices with entries in [-64, 64] (one when W already is)."""
    if np.abs(wt).max(initial=0) <= W_SAFE:
        return [wt]
    hi = np.clip(wt, -W_SAFE, W_SAFE)
    return [hi, wt - hi]


class Int8Builder:
    def __init__(self, spec: Spec, w: dict):
        self.spec, self.w, self.g = spec, w, Graph("qs4d_step_int8", opset=21)

    def shape(self, x: str, *dims: int) -> str:
        return self.g.op("Reshape", x, self.g.const(list(dims), np.int64))

    def cat(self, xs: list, axis: int, hint: str) -> str:
        return xs[0] if len(xs) == 1 else self.g.op("Concat", *xs, axis=axis, name=hint)

    def weights(self, prefix: str, perm=None):
        """(W.T pieces, bias) of a linear layer as int64; `perm` orders the output columns."""
        wt, b = self.w[f"{prefix}.w"].T.astype(np.int64), self.w[f"{prefix}.b"].astype(np.int64)
        if perm is not None:
            wt, b = wt[:, perm], b[perm]
        return split_weights(wt), b

    def qmm(self, x: str, rows: np.ndarray, m, hint: str) -> str:
        """uint8 clip(rint(f32(x @ rows) * m)) + 128 for uint8 x holding code + 128."""
        g = self.g
        one, zp = g.const(np.float32(1.0)), g.const(np.uint8(128))
        m = np.ascontiguousarray(np.broadcast_to(np.asarray(m, np.float32), rows.shape[1:]))
        return g.op("QLinearMatMul", x, one, zp, g.const(rows.astype(np.int8), name=f"{hint}.w"),
                    g.const(m, name=f"{hint}.m"), g.const(np.zeros(m.shape, np.int8)), one, zp,
                    name=f"{hint}_qmm")

    def build(self):
        g, w, spec = self.g, self.w, self.spec
        F, H, K = spec.model.d_input, spec.model.d_model, spec.model.n_classes
        x = g.input("x", F32, ["B", F])
        states = [g.input(f"state_{i}", I8, ["B", H, 2 * P])
                  for i, P in enumerate(spec.model.layer_modes)]
        s_in = w["in.scale"]
        xq = g.op("QuantizeLinear", x, g.const(np.float32(s_in)), g.const(np.uint8(128)),
                  name="x_codes")  # (B, F)
        pieces, b = self.weights("enc")
        bias = bias_rows(b)
        xb = g.op("Pad", self.cat([xq] * len(pieces), 1, "enc_x"),
                  g.const([0, 0, 0, len(bias)], np.int64), g.const(np.uint8(ONE)), name="enc_one")
        us = [self.qmm(xb, np.concatenate(pieces + [bias]),
                       multiplier(s_in, w["enc.w.scale"], w["enc.out.scale"]), "enc")]  # (B, H)
        scales = [w["enc.out.scale"]]
        groups: dict = {}  # layers by mode count; each group's states are one tensor
        for i, P in enumerate(spec.model.layer_modes):
            groups.setdefault(P, []).append(i)
        old = {P: self.old_state(P, ls, [states[i] for i in ls]) for P, ls in groups.items()}
        t_c = {i: t for P, ls in groups.items() for i, t in zip(ls, old[P][1])}
        for i in range(spec.model.n_layers):
            u, s_u = self.layer(i, us[-1], scales[-1], t_c[i])
            us.append(u)
            scales.append(s_u)
        for P, ls in groups.items():
            self.new_state(P, ls, old[P][0], [us[i] for i in ls], [scales[i] for i in ls])
        pieces, b = self.weights("dec")
        acc = g.op("MatMulInteger", self.cat([us[-1]] * len(pieces), 1, "dec_x"),
                   g.const(np.concatenate(pieces).astype(np.int8), name="dec.w"),
                   g.const(np.uint8(128)), name="dec_mm")
        acc = g.op("Add", acc, g.const(b.astype(np.int32), name="dec.b"), name="dec_acc")
        m = (np.asarray(scales[-1], np.float32) * w["dec.w.scale"]).astype(np.float32)
        g.output(dequantize(g, acc, m, np.int32), "y", F32, ["B", K])
        return g.model({ONNX_SPEC_KEY: spec.to_json(), "qs4d.kind": "integer"})

    def old_state(self, P: int, layers: list, states: list):
        """Terms of the old states of `layers` (all with P modes), n = len(layers): R(A) s times
        its multiplier (B, n H, 2, P) and, per layer, C s times its multiplier (B, H), float32."""
        g, H, N, n = self.g, self.spec.model.d_model, 2 * P, len(layers)
        k = lambda i, name: self.w[layer_key(i, name)]  # noqa: E731
        hint = f"p{P}"
        s8 = self.cat(states, 1, f"{hint}_states")  # (B, n H, 2P) int8 [re; im]
        A = np.concatenate([k(i, "A") for i in layers]).astype(np.int64)  # (n H, 2, P)
        a_diag, a_off = np.concatenate([A[:, 0], A[:, 0]], 1), np.concatenate([-A[:, 1], A[:, 1]], 1)
        acc_t = _acc_type(128 * (np.abs(a_diag) + np.abs(a_off)))
        # (B, n H, 2, P) [re; im] from here to the requantization: the widened state's only
        # reader is a Reshape, which ONNX Runtime then runs in place
        s = self.shape(g.op("Cast", s8, to=acc_t, name=f"{hint}_s"), -1, n * H, 2, P)
        swap = g.op("Slice", s, g.const([-1], np.int64), g.const([-3], np.int64),
                    g.const([2], np.int64), g.const([-1], np.int64), name=f"{hint}_im_re")
        dt, quad = NP_OF[acc_t], (n * H, 2, P)
        acc_a = g.op("Add", g.op("Mul", s, g.const(a_diag.reshape(quad).astype(dt),
                                                   name=f"{hint}_A_diag")),
                     g.op("Mul", swap, g.const(a_off.reshape(quad).astype(dt),
                                               name=f"{hint}_A_off")),
                     name=f"{hint}_acc_a")  # (B, n H, 2, P)
        m_a = np.concatenate([_per_h(multiplier(k(i, "A.scale"), k(i, "state.scale"),
                                                k(i, "state.scale")), H) for i in layers])
        t_a = dequantize(g, acc_a, m_a, dt)
        C = np.concatenate([k(i, "C") for i in layers]).astype(np.int64)  # (n H, 2P)
        m_c = np.concatenate([_per_h(multiplier(k(i, "C.scale"), k(i, "state.scale"),
                                                k(i, "y.scale")), H) for i in layers])
        if 128 * int(np.abs(C).sum(axis=1).max(initial=0)) < F32_EXACT:
            # C s in float32, exactly (every partial sum is an integer below 2^24): C times the
            # int8 codes as one blocked DequantizeLinear (the scale tensor C, the same for every
            # stream), a ReduceSum, then the multiplier as DequantizeLinear would apply it
            prod = g.op("DequantizeLinear", s8,
                        g.const(C[None].astype(np.float32), name=f"{hint}_C"), axis=0,
                        block_size=BATCH_BLOCK, name=f"{hint}_Cs")  # (B, n H, 2P)
            acc_c = g.op("ReduceSum", prod, g.const([-1], np.int64), keepdims=0,
                         name=f"{hint}_acc_c")  # (B, n H)
            t_c = g.op("Mul", acc_c, g.const(m_c), name=f"{hint}_t_c")
        else:
            s32 = g.op("Cast", s8, to=I32, name=f"{hint}_s32")
            acc_c = g.op("MatMul", g.op("Mul", s32, g.const(C.astype(np.int32), name=f"{hint}_C")),
                         g.const(np.ones((N, 1), np.int32)), name=f"{hint}_acc_c")  # (B, n H, 1)
            t_c = dequantize(g, self.shape(acc_c, -1, n * H), m_c, np.int32)
        t_c = [t_c] if n == 1 else list(g.op("Split", t_c, axis=1, name=f"{hint}_c_split",
                                              outputs=n))
        return t_a, t_c

    def new_state(self, P: int, layers: list, t_a: str, us: list, s_us: list) -> None:
        """The new states of `layers`: R(A) s and B u requantized together, split per layer."""
        g, H, N, n = self.g, self.spec.model.d_model, 2 * P, len(layers)
        k = lambda i, name: self.w[layer_key(i, name)]  # noqa: E731
        hint = f"p{P}"
        Bm = np.concatenate([k(i, "B").reshape(H, N) for i in layers]).astype(np.int64)
        acc_t = _acc_type(128 * np.abs(Bm))
        dt = NP_OF[acc_t]
        codes = np.repeat(CODES.astype(dt)[:, None], N, 1).reshape(256, 2, P)  # each code 2P times
        u = g.op("Gather", g.const(codes, name=f"{hint}_codes"),
                 g.op("Cast", self.cat(us, 1, f"{hint}_u"), to=I32), axis=0,
                 name=f"{hint}_u_codes")  # (B, n H, 2, P)
        acc_b = g.op("Mul", u, g.const(Bm.reshape(n * H, 2, P).astype(dt), name=f"{hint}_B"),
                     name=f"{hint}_acc_b")
        m_b = np.concatenate([_per_h(multiplier(s_u, k(i, "B.scale"), k(i, "state.scale")), H)
                              for i, s_u in zip(layers, s_us)])
        tot = g.op("Add", t_a, dequantize(g, acc_b, m_b, dt), name=f"{hint}_sum")
        q = self.shape(saturate8(g, tot, f"{hint}_state"), -1, n * H, N)  # int8 codes of n layers
        q = [q] if n == 1 else g.op("Split", q, axis=1, name=f"{hint}_split", outputs=n)
        for i, s8 in zip(layers, q):
            g.output(s8, f"new_state_{i}", I8, ["B", H, N])

    def layer(self, i: int, u: str, s_u, t_c: str):
        """One block after the state terms: u (B, H) uint8 code + 128 at scale s_u, t_c the
        float32 C s term of its output row; returns the block's output codes and scale."""
        g = self.g
        k = lambda name: self.w[layer_key(i, name)]  # noqa: E731
        kn = lambda name: f"l{i}_{name}"  # noqa: E731
        H = self.spec.model.d_model
        # output row at ADC precision: C s + D u (D u as a diagonal uint8 x int8 product)
        acc_d = g.op("MatMulInteger", u, g.const(np.diag(k("D")).astype(np.int8), name=kn("D")),
                     g.const(np.uint8(128)), name=kn("acc_d"))  # (B, H)
        tot = g.op("Add", t_c, dequantize(g, acc_d, multiplier(s_u, k("D.scale"), k("y.scale")),
                                          np.int32), name=kn("y_sum"))
        y = saturate8(g, tot, kn("y"), index=True)
        # GELU table: each code once per weight piece, then codes 1 for the mixing bias
        perm = np.stack([np.arange(H), H + np.arange(H)], 1).ravel()  # za_0, zb_0, za_1, ...
        pieces, b = self.weights(layer_key(i, "mix"), perm)
        rows, ones = interleave(pieces, bias_rows(b))
        gelu = np.concatenate([np.repeat((k("gelu.table") + 128)[:, None], len(pieces), 1),
                               np.full((256, ones), ONE)], 1).astype(np.uint8)
        gl = self.shape(g.op("Gather", g.const(gelu, name=kn("gelu_table")),
                             g.op("Cast", y, to=I32), axis=0, name=kn("gelu")), -1, len(rows))
        s_g, s_z = k("gelu.scale"), k("mix.out.scale")
        m_z = np.broadcast_to(multiplier(s_g, k("mix.w.scale"), s_z), (2 * H,))[perm]
        z = self.qmm(gl, rows, m_z, layer_key(i, "mix"))  # (B, 2H)
        # GLU table over (za, zb), then the residual sum (a Sum: see the module docstring)
        s_o, s_r = k("glu.scale"), k("res.scale")
        glu = glu_table(k("sig.table"), multiplier(s_z, sig_scale(127), s_o))
        m_o = np.float32(multiplier(s_o, 1.0, s_r))  # glu.scale and res.scale: per tensor
        glu = (glu.astype(np.int32) - 128).astype(np.float32) * m_o  # DequantizeLinear's value
        o = g.op("GatherND", g.const(glu, name=kn("glu_table")),
                 self.shape(g.op("Cast", z, to=I64), -1, H, 2), name=kn("glu"))  # (B, H) float32
        tot = g.op("Sum", dequantize(g, u, multiplier(s_u, 1.0, s_r), np.uint8, zp=128), o,
                   name=kn("res_sum"))
        return saturate8(g, tot, kn("res"), index=True), s_r


def _acc_type(bound: np.ndarray) -> int:
    """int16 for an accumulator whose every entry stays below I16_BOUND in magnitude, else int32."""
    return I16 if int(np.max(bound, initial=0)) < I16_BOUND else I32


def _per_h(m, H: int) -> np.ndarray:
    """A per-tensor () or per-channel (H,) multiplier as an (H,) float32 array."""
    return np.broadcast_to(np.asarray(m, np.float32).reshape(-1), (H,)).astype(np.float32)
