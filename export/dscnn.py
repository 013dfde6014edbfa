"""DS-CNN baseline -> float ONNX and int8 ONNX, both evaluated with ONNX Runtime on the task's
splits, with metrics.json and a model card (export/dscnn_card.py).

    python -m qs4d.export.dscnn runs/kws-dscnn/final.pt --out models/baselines/kws-dscnn
    python -m qs4d.export.dscnn --card-only --out models/baselines/kws-dscnn   # card only

Glossary: B batch, L frames, F features, K classes.

Float: BatchNorm folded into the convolutions, `torch.onnx.export` (TorchScript exporter),
opset 17; input `x` (B, L, F) normalized log-mel frames (the front end's mean and std are in
the metadata), output `logits` (B, K). Int8: `onnxruntime.quantization.quantize_static` in QDQ
format, int8 weights per output channel (symmetric), int8 activations (asymmetric), int32
biases, MinMax calibration over seeded training features (augmented copies included).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper
from onnxruntime import quantization as oq
from onnxruntime.quantization.shape_inference import quant_pre_process

from qs4d.models.dscnn import DSCNN
from qs4d.models.dscnn_train import load
from qs4d.models.tasks import load_task

log = logging.getLogger(__name__)
OPSET = 17
SPLITS = ("val", "test", "test_all", "real", "real_snr20", "real_snr10")


def export_float(model: DSCNN, path: Path, metadata: dict) -> None:
    """BN-folded float ONNX of `model`, checked with onnx.checker."""
    m = model.folded()
    x = torch.zeros(1, m.cfg.n_frames, m.cfg.n_features)  # (B, L, F)
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation, the shape check
        warnings.simplefilter("ignore", (DeprecationWarning, torch.jit.TracerWarning))
        torch.onnx.export(m, (x,), str(path), dynamo=False, opset_version=OPSET,
                          input_names=["x"], output_names=["logits"],
                          dynamic_axes={"x": {0: "B"}, "logits": {0: "B"}})
    proto = onnx.load(str(path))
    for k, v in metadata.items():
        proto.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))


class _Calibration(oq.CalibrationDataReader):
    """Feeds (n, L, F) features to the calibrator in batches."""

    def __init__(self, X: np.ndarray, batch: int = 64):
        self.batches = iter([X[i:i + batch] for i in range(0, len(X), batch)])

    def get_next(self):
        b = next(self.batches, None)
        return None if b is None else {"x": b}


def export_int8(float_path: Path, path: Path, calib: np.ndarray) -> None:
    """Static int8 QDQ model of the float ONNX, calibrated on `calib` (n, L, F), after ONNX
    Runtime's recommended pre-processing (shape inference, graph optimization)."""
    pre, said = path.with_suffix(".pre.onnx"), io.StringIO()
    try:
        with contextlib.redirect_stdout(said):  # ORT prints its progress
            quant_pre_process(str(float_path), str(pre))
            oq.quantize_static(str(pre), str(path), _Calibration(calib),
                               quant_format=oq.QuantFormat.QDQ, per_channel=True,
                               activation_type=oq.QuantType.QInt8,
                               weight_type=oq.QuantType.QInt8,
                               calibrate_method=oq.CalibrationMethod.MinMax)
    finally:
        pre.unlink(missing_ok=True)
        log.debug("onnxruntime.quantization: %s", said.getvalue())
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)


def session(path: Path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def onnx_accuracy(sess, X: np.ndarray, y: np.ndarray, batch: int = 256) -> float:
    """Top-1 accuracy (%) of an ONNX classifier on X (n, L, F), y (n,)."""
    pred = np.concatenate([sess.run(None, {"x": X[i:i + batch]})[0].argmax(-1)
                           for i in range(0, len(X), batch)])  # (n,)
    return 100.0 * float((pred == y).mean()) if len(y) else 0.0


def weight_memory(path: Path) -> dict:
    """Bits of an ONNX model's initializers: weights and biases at their stored width
    (`weight_bits`, the zoo cards' definition), plus scales and zero points (`total_bits`)."""
    w = aux = n = 0
    for init in onnx.load(str(path)).graph.initializer:
        a = numpy_helper.to_array(init)
        bits = a.size * a.dtype.itemsize * 8
        if init.name.endswith(("_scale", "_zero_point")):
            aux += bits
        elif a.dtype != np.int64:  # int64: shape constants, not weights
            w, n = w + bits, n + a.size
    return {"weight_bits": w, "total_bits": w + aux, "n_weights": n}


def _splits(task) -> dict:
    out = {"val": task.val, "test": task.test, **task.extra}
    return {k: (out[k][0].numpy(), out[k][1].numpy()) for k in SPLITS if k in out}


def _features(tcfg) -> dict:
    """Which keyword features were used: the cache key (data set, augmentation, seed)."""
    if tcfg.task != "kws":
        return {}
    from qs4d.models.kws_task import N_AUG, _cache_key

    return {"features": _cache_key(tcfg, Path(tcfg.data)), "n_aug": N_AUG}


def export(ckpt_path: Path, out: Path, command: str = "", n_calib: int = 1024) -> dict:
    """Both ONNX models into `out/`, evaluated; returns the metrics (also metrics.json)."""
    model, ck = load(ckpt_path)
    model.eval()
    task = load_task(ck["train_cfg"])
    out.mkdir(parents=True, exist_ok=True)
    meta = {"labels": json.dumps(list(ck["labels"])), "frontend": json.dumps(ck["frontend"]),
            "model": json.dumps({"arch": "dscnn", **ck["dscnn"]}),
            "input": "x (B, L, F): log-mel frames normalized by frontend.norm_mean/norm_std"}
    f_path, q_path = out / "dscnn_float.onnx", out / "dscnn_int8.onnx"
    export_float(model, f_path, meta)
    X = task.train[0].numpy()  # (n, L, F)
    g = np.random.default_rng(ck["train_cfg"].seed)
    export_int8(f_path, q_path, X[np.sort(g.permutation(len(X))[:n_calib])])
    splits = _splits(task)
    m: dict = {f"torch_{k}": v for k, v in ck["metrics"].items() if k.endswith("_acc")}
    for tag, path in (("onnx_float", f_path), ("onnx_int8", q_path)):
        sess = session(path)
        for name, (Xs, ys) in splits.items():
            m[f"{tag}_{name}_acc"] = onnx_accuracy(sess, Xs, ys)
            m[f"n_{name}"] = len(ys)
        m.update({f"{tag}_{k}": v for k, v in weight_memory(path).items()})
    ref = DSCNN(model.cfg.replace(n_frames=49, n_features=10))
    m.update(params=model.n_params(), params_total=model.n_params_total(),
             macs=model.macs()["total"], macs_by_layer=model.macs(),
             macs_mlperf_49x10=ref.macs()["total"], train_minutes=ck["metrics"]["train_minutes"],
             torch_threads=ck["metrics"].get("torch_threads"),
             cpu_count=ck["metrics"].get("cpu_count"), n_train=len(X),
             n_calib=int(min(n_calib, len(X))), opset=OPSET, seed=ck["train_cfg"].seed,
             input_shape=[model.cfg.n_frames, model.cfg.n_features],
             train=ck["train"], dscnn=ck["dscnn"], data=ck["train_cfg"].data,
             command=command, **_features(ck["train_cfg"]))
    (out / "metrics.json").write_text(json.dumps(m, indent=2, sort_keys=True) + "\n")
    return m


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m qs4d.export.dscnn", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ckpt", nargs="?", help="DS-CNN checkpoint (runs/kws-dscnn/final.pt)")
    p.add_argument("--out", required=True, help="output folder (models/baselines/kws-dscnn)")
    p.add_argument("--recipe", default="models/recipes/kws-dscnn.toml",
                   help="the recipe the checkpoint was trained with (for the card)")
    p.add_argument("--train-args", default="", help="extra `qs4d train` arguments (for the card)")
    p.add_argument("--train-env", default="", help="environment of the training command "
                   "(for the card; default: QS4D_THREADS from the checkpoint)")
    p.add_argument("--zoo", default="models/zoo", help="S4D bundles to compare with")
    p.add_argument("--card-only", action="store_true", help="rewrite README.md from metrics.json")
    p.add_argument("--note", help="a note on the side-by-side table, kept in metrics.json "
                   "('' removes it)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    torch.set_num_threads(1)
    from .dscnn_card import write_card

    out = Path(args.out)
    if args.card_only:
        metrics = json.loads((out / "metrics.json").read_text())
    else:
        if not args.ckpt:
            p.error("a checkpoint is needed unless --card-only")
        extra = f" {args.train_args}" if args.train_args else ""
        threads = torch.load(args.ckpt, weights_only=True)["metrics"].get("torch_threads")
        env = args.train_env or (f"QS4D_THREADS={threads}" if threads else "")
        env = f"{env} " if env else ""
        command = (f"{env}qs4d train --config {args.recipe} --out {Path(args.ckpt).parent}"
                   f"{extra} && python -m qs4d.export.dscnn " + " ".join(argv))
        metrics = export(Path(args.ckpt), out, command)
    if args.note is not None:
        metrics = {k: v for k, v in metrics.items() if k != "note"}
        metrics.update({"note": args.note} if args.note else {})
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    write_card(out, metrics, Path(args.zoo))
    print(json.dumps({k: v for k, v in metrics.items() if k.startswith("onnx_")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
