"""`qs4d verify BUNDLE`: parity among the executors of a bundle, and how much of the ONNX step
computes in integers.

- onnx vs numpy (integer reference): must be bit-identical at every step;
- imssa in ideal mode vs the numpy float reference (dequantized weights; for a float bundle,
  the weights its crossbar's programmed codes stand for): relative error, teacher-forced per
  step (same state into both) and free-running; for a float bundle also how far those
  programmed weights move the outputs from the float model's (`programmed_vs_float_rel`);
- the share of ONNX nodes whose outputs are integer tensors (needs the `onnx` package).
"""

from __future__ import annotations

import argparse
import json
import logging

import numpy as np

from .backends import make_executor
from .bundle import Bundle, load_bundle
from .cliargs import ArgParser, int_in
from .program import as_programmed
from .reference import FloatStep
from .spec import ONNX_FILE, CrossbarConfig

log = logging.getLogger(__name__)


def _inputs(bundle: Bundle, steps: int, batch: int, seed: int) -> np.ndarray:
    """(T, B, F) test inputs: unit Gaussian features (the front end's normalized range)."""
    F = bundle.spec.model.d_input
    return np.random.default_rng(seed).standard_normal((steps, batch, F)).astype(np.float32)


def run_all(ex, xs: np.ndarray) -> tuple[np.ndarray, list]:
    state, outs, states = ex.init_state(xs.shape[1]), [], []
    for x in xs:
        states.append(state)
        y, state = ex(x, state)
        outs.append(y)
    return np.stack(outs), states


def parity(bundle: Bundle, steps: int = 1000, batch: int = 4, seed: int = 0) -> dict:
    xs = _inputs(bundle, steps, batch, seed)
    out: dict = {"steps": steps, "batch": batch}
    ref, _ = run_all(make_executor(bundle, "numpy"), xs)
    onnx_y, _ = run_all(make_executor(bundle, "onnx"), xs)
    if bundle.spec.quant.integer:
        out["onnx_vs_numpy_mismatches"] = int((onnx_y != ref).sum())
        fl = make_executor(bundle, "numpy", float_graph=True)
        fy, fstates = run_all(fl, xs)
        out["integer_vs_float_top1_agreement"] = float((ref.argmax(-1) == fy.argmax(-1)).mean())
    else:
        out["onnx_vs_numpy_max_rel"] = float(np.abs(onnx_y - ref).max() / np.abs(ref).max())
    if (bundle.path / "crossbar").is_dir():
        im = make_executor(bundle, "imssa", crossbar=CrossbarConfig())
        if not bundle.spec.quant.integer:  # the float model its programmed codes stand for
            keys = [k for g in im.mapped for k in im.cb.groups[g]["keys"].values()]
            fl = FloatStep(bundle.spec, as_programmed(bundle.spec, bundle.weights,
                                                      im.cb.config.weight_bits, keys))
            fy, fstates = run_all(fl, xs)
            out["programmed_vs_float_rel"] = float(np.abs(fy - ref).max() / np.abs(ref).max())
        scale = float(np.abs(fy).max())
        forced = max(float(np.abs(im(x, s)[0] - fl(x, s)[0]).max()) for x, s in zip(xs, fstates))
        iy, _ = run_all(im, xs[:200])
        out["imssa_ideal_vs_float_rel_per_step"] = forced / scale
        out["imssa_ideal_vs_float_rel_200_steps"] = float(np.abs(iy - fy[:200]).max() / scale)
    return out


def integer_node_share(bundle: Bundle) -> dict | None:
    """Share of step.onnx nodes with integer outputs, by op type (None without `onnx`)."""
    try:
        import onnx
    except ModuleNotFoundError:
        return None
    m = onnx.shape_inference.infer_shapes(onnx.load(str(bundle.file(ONNX_FILE))))
    types = {v.name: v.type.tensor_type.elem_type
             for v in list(m.graph.value_info) + list(m.graph.output) + list(m.graph.input)}
    ints = {onnx.TensorProto.INT8, onnx.TensorProto.INT16, onnx.TensorProto.INT32,
            onnx.TensorProto.INT64, onnx.TensorProto.UINT8}
    n_int, by_op = 0, {}
    for node in m.graph.node:
        is_int = all(types.get(o) in ints for o in node.output)
        n_int += is_int
        by_op.setdefault(node.op_type, [0, 0])[0 if is_int else 1] += 1
    return {"nodes": len(m.graph.node), "integer_nodes": n_int,
            "integer_share": n_int / max(1, len(m.graph.node)),
            "by_op_integer_float": by_op}


def main(argv: list[str]) -> int:
    p = ArgParser(prog="qs4d verify", description=__doc__,
                  formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle")
    p.add_argument("--steps", type=int_in(1, 10**6), default=1000)
    p.add_argument("--batch", type=int_in(1, 1024), default=4)
    p.add_argument("--json", action="store_true", help="print JSON only")
    args = p.parse_args(argv)
    bundle = load_bundle(args.bundle)
    report = {"bundle": str(bundle.path), "parity": parity(bundle, args.steps, args.batch)}
    if bundle.spec.quant.integer:
        report["onnx_integer_nodes"] = integer_node_share(bundle)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    par = report["parity"]
    print(f"bundle {bundle.path}  ({args.steps} steps x {args.batch} streams)")
    for k, v in par.items():
        print(f"  {k:40s} {v}")
    share = report.get("onnx_integer_nodes")
    if share:
        print(f"  {'onnx nodes computing in integers':40s} {share['integer_nodes']}/"
              f"{share['nodes']} ({100 * share['integer_share']:.0f}%)")
    ok = par.get("onnx_vs_numpy_mismatches", 0) == 0
    print("PASS" if ok else "FAIL: onnx differs from the numpy reference")
    return 0 if ok else 1
