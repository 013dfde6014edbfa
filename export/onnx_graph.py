"""A small ONNX graph builder: constants, nodes with readable names, and the integer idioms of
DESIGN section 3 (quantize, requantize with saturation before every narrowing cast, lookup)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = {17: 8, 21: 10}  # the IR version of each opset used: 17 reads on onnxruntime >= 1.14,
# 21 (blocked DequantizeLinear, the 8-bit integer graph) on onnxruntime >= 1.19


class Graph:
    def __init__(self, name: str, opset: int = OPSET):
        self.name, self.opset = name, opset
        self.nodes: list = []
        self.inits: list = []
        self.inputs: list = []
        self.outputs: list = []
        self._n = 0
        self._consts: dict = {}

    def fresh(self, hint: str) -> str:
        self._n += 1
        return f"{hint}_{self._n}"

    def const(self, value, dtype=None, name: str | None = None) -> str:
        a = np.asarray(value, dtype=dtype)
        key = (a.dtype.str, a.shape, a.tobytes()) if a.size <= 64 else None
        if key is not None and key in self._consts and name is None:
            return self._consts[key]
        cname = name or self.fresh("c")
        self.inits.append(numpy_helper.from_array(a, cname))
        if key is not None and name is None:
            self._consts[key] = cname
        return cname

    def op(self, op_type: str, *inputs: str, name: str | None = None, outputs: int = 1,
           **attrs):
        """Append a node; its output name, or a tuple of `outputs` names."""
        out = self.fresh(name or op_type.lower())
        outs = [out] if outputs == 1 else [f"{out}_{j}" for j in range(outputs)]
        if op_type == "Split" and self.opset >= 18:
            attrs.setdefault("num_outputs", outputs)  # required from opset 18 on
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=out, **attrs))
        return out if outputs == 1 else tuple(outs)

    def input(self, name: str, elem_type: int, shape: list) -> str:
        self.inputs.append(helper.make_tensor_value_info(name, elem_type, shape))
        return name

    def output(self, value: str, name: str, elem_type: int, shape: list) -> None:
        """Make `value` a graph output called `name`: the node producing it is renamed to
        write `name` (no Identity node: each costs a kernel launch per step); an input,
        initializer or value that is already an output goes through an Identity."""
        producer = next((n for n in self.nodes if value in n.output), None)
        if producer is None or any(o.name == value for o in self.outputs):
            self.nodes.append(helper.make_node("Identity", [value], [name], name=f"out_{name}"))
        else:
            producer.output[list(producer.output).index(value)] = name
            for n in self.nodes:
                for j, v in enumerate(n.input):
                    if v == value:
                        n.input[j] = name
        self.outputs.append(helper.make_tensor_value_info(name, elem_type, shape))

    def model(self, metadata: dict) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, self.name, self.inputs, self.outputs, self.inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)],
                              producer_name="qs4d")
        m.ir_version = IR_VERSION[self.opset]
        for k, v in metadata.items():
            m.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
        return m

    # -- integer idioms ------------------------------------------------------------------------
    def quantize(self, x: str, scale, qmin: int, qmax: int, itype: int) -> str:
        """clip(rint(x / scale)) as integers: Div, Round (half to even), Clip, Cast."""
        q = self.op("Round", self.op("Div", x, self.const(scale, np.float32)))
        return self.op("Cast", self.clip_f(q, qmin, qmax), to=itype)

    def clip_f(self, x: str, lo: float, hi: float) -> str:
        return self.op("Clip", x, self.const(lo, np.float32), self.const(hi, np.float32))

    def requantize(self, terms: list, qmin: int, qmax: int, itype: int, hint: str) -> str:
        """clip(rint(sum float32(acc_i) * m_i)) -> integer; saturate before the narrowing cast."""
        total = None
        for acc, m in terms:
            t = self.op("Mul", self.op("Cast", acc, to=TensorProto.FLOAT),
                        self.const(m, np.float32), name=f"{hint}_scale")
            total = t if total is None else self.op("Add", total, t, name=f"{hint}_sum")
        r = self.op("Round", total, name=f"{hint}_round")
        return self.op("Cast", self.clip_f(r, qmin, qmax), to=itype, name=hint)

    def lookup(self, table: np.ndarray, codes: str, qmin: int, itype: int, hint: str) -> str:
        """table[codes - qmin]: an ONNX Gather over the input code."""
        idx = self.op("Sub", codes, self.const(qmin, _np_dtype(itype)))
        return self.op("Gather", self.const(table.astype(_np_dtype(itype)), name=f"{hint}_table"),
                       idx, axis=0, name=hint)


def _np_dtype(itype: int):
    return {TensorProto.INT32: np.int32, TensorProto.INT64: np.int64}[itype]


def np_dtype(itype: int):
    return _np_dtype(itype)


def dequantize(g: Graph, x: str, m, x_dtype, zp: int = 0) -> str:
    """float32(x - zp) * m as one DequantizeLinear (per channel along axis 1)."""
    m = np.asarray(m, np.float32)
    zp = g.const(np.full(m.shape, zp, x_dtype))
    if m.ndim == 1:
        return g.op("DequantizeLinear", x, g.const(m), zp, axis=1)
    return g.op("DequantizeLinear", x, g.const(m), zp)


def saturate8(g: Graph, total: str, hint: str, index: bool = False) -> str:
    """clip(rint(total)) to int8 as one QuantizeLinear (scale 1, half to even, saturating);
    index=True gives the uint8 code + 128, a ready lookup-table index."""
    zp = g.const(np.uint8(128)) if index else g.const(np.int8(0))
    return g.op("QuantizeLinear", total, g.const(np.float32(1.0)), zp, name=hint)
