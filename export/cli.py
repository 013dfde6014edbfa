"""`qs4d export CHECKPOINT --out BUNDLE`: checkpoint -> bundle.

Integer (QAT or PTQ) checkpoints get the integer `step.onnx`, the float `step_float.onnx`
(dequantized weights, for comparison) and `crossbar/` tables with DAC/ADC ranges calibrated on
data. Float checkpoints get `step.onnx` = `step_float.onnx` semantics (float graph) and
`crossbar/` tables of their weights programmed as `--weight-bits` codes per output channel
(post-training quantization onto the devices, qs4d.runtime.program), calibrated the same way.
"""

from __future__ import annotations

import argparse
import pickle
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx

from qs4d.runtime.cliargs import ArgParser
from qs4d.runtime.errors import InputError, UsageError
from qs4d.runtime.reference import dequantize_weights
from qs4d.runtime.spec import CrossbarConfig, Spec, SpecError

from .bundle import check_out, write_bundle
from .onnx_step import float_model, integer_model
from .weights import model_weights


def make_spec(model, frontend, labels, metrics: dict, name: str = "") -> Spec:
    from qs4d.runtime.spec import QuantConfig

    cfg = model.cfg.replace(norm="none")  # BatchNorm is folded into the weights
    quant = model.qcfg if model.quant is not None else QuantConfig()
    return Spec(model=cfg, quant=quant, frontend=frontend, labels=tuple(labels),
                metrics=dict(metrics), name=name)


def export_model(model, out: str | Path, *, frontend, labels, metrics: dict | None = None,
                 name: str = "", calib_x: np.ndarray | None = None,
                 crossbar: CrossbarConfig | None = None, card: str | None = None,
                 force: bool = False) -> Path:
    """Write the bundle of a trained model. calib_x (T, B, F) calibrates the DAC/ADC ranges.
    An existing `out` must be an empty folder or a bundle (replaced atomically) unless force."""
    check_out(out, force)
    spec = make_spec(model, frontend, labels, metrics or {}, name)
    w = model_weights(model)
    if spec.quant.integer:
        wf = dequantize_weights(spec, w)
        onnx_int, onnx_f = integer_model(spec, w), float_model(spec, wf)
    else:
        onnx_int = onnx_f = float_model(spec, w)
    from .crossbar import build_crossbar

    xbar = build_crossbar(spec, w, crossbar or CrossbarConfig(), calib_x)
    for m in (onnx_int, onnx_f):
        onnx.checker.check_model(m, full_check=True)
    return write_bundle(out, spec, w, onnx_int=onnx_int.SerializeToString(),
                        onnx_float=onnx_f.SerializeToString(), crossbar=xbar, card=card,
                        force=force)


def calibration_inputs(ckpt: dict, n: int, seed: int = 0) -> np.ndarray:
    """(T, B, F) features of n training examples of the checkpoint's task."""
    import torch

    from qs4d.models.tasks import load_task

    task = load_task(ckpt["train_cfg"])
    X = task.train[0]
    idx = torch.randperm(len(X), generator=torch.Generator().manual_seed(seed))[:n]
    return X[idx].numpy().transpose(1, 0, 2)


def build_parser() -> argparse.ArgumentParser:
    p = ArgParser(prog="qs4d export", description=__doc__,
                  formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("--out", required=True, help="bundle directory to write: a new path, an "
                   "empty folder or a bundle (replaced atomically: written beside it, renamed)")
    p.add_argument("--force", action="store_true",
                   help="replace --out even when it is a file or a folder that is not a bundle")
    p.add_argument("--name", default="", help="model name recorded in spec.json")
    p.add_argument("--calib", type=int, default=16, help="examples for DAC/ADC calibration")
    p.add_argument("--array", type=int, default=128, help="crossbar array size (rows = cols)")
    p.add_argument("--levels", type=int, default=0, help="device levels (0 = exact)")
    p.add_argument("--g-min", type=float, default=1.0, help="minimum conductance, uS")
    p.add_argument("--g-max", type=float, default=40.0, help="maximum conductance, uS")
    p.add_argument("--weight-bits", type=int, default=8,
                   help="bits of the codes a float checkpoint's weights are programmed as")
    p.add_argument("--card", help="markdown model card to use instead of the generated one")
    p.add_argument("--command", default="", help="the command that trained it, for the card")
    p.add_argument("--logit-bias", default="",
                   help="per-class offsets added to the decoder's bias before export, as "
                        "LABEL=VALUE,... (e.g. a prior correction chosen on validation data: "
                        "scripts/ecg_prior.py)")
    p.add_argument("--threshold", type=float, default=None,
                   help="keyword spotting: the detector threshold this bundle ships with "
                        "(chosen on validation speakers: qs4d kws-bench), recorded as "
                        "metrics.detector_threshold; `qs4d kws` uses it unless told otherwise")
    p.add_argument("--append", help="markdown file appended to the generated card (figures "
                                    "measured on the exported bundle, e.g. a streaming report)")
    p.add_argument("--reeval", action="store_true",
                   help="re-measure accuracy on the task's splits and record it in the spec")
    return p


def shift_decoder_bias(model, ckpt: dict, text: str) -> None:
    """Add LABEL=VALUE offsets to the decoder bias (in logit units) and record them in the
    checkpoint's metrics as logit_bias_LABEL, so spec.json and the card show them."""
    import torch

    labels = list(ckpt["labels"])
    shift = torch.zeros(len(labels))
    for item in text.split(","):
        name, _, value = item.partition("=")
        if name.strip() not in labels:
            raise InputError(f"--logit-bias: {name.strip()!r} is not a label of this model "
                             f"({labels})")
        try:
            shift[labels.index(name.strip())] = float(value)
        except ValueError:
            raise InputError(f"--logit-bias: {item!r} is not LABEL=NUMBER") from None
    with torch.no_grad():
        model.dec.bias += shift
    ckpt["metrics"] = {**ckpt["metrics"],
                       **{f"logit_bias_{c}": float(v) for c, v in zip(labels, shift)}}


def main(argv: list[str]) -> int:
    from qs4d.models import checkpoint

    args = build_parser().parse_args(argv)
    check_out(args.out, args.force)  # before any work
    try:
        model, ckpt = checkpoint.load(args.checkpoint)
    except FileNotFoundError:
        raise InputError(f"{args.checkpoint}: no such file") from None
    except (RuntimeError, KeyError, TypeError, EOFError, ValueError, pickle.UnpicklingError,
            zipfile.BadZipFile) as e:
        if isinstance(e, SpecError):
            raise
        raise InputError(f"{args.checkpoint}: not a readable qs4d checkpoint "
                         f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
                         ) from None
    model.eval()
    if args.logit_bias:
        shift_decoder_bias(model, ckpt, args.logit_bias)
    if args.threshold is not None:
        if not 0.0 < args.threshold < 1.0:
            raise UsageError(f"--threshold: a posterior in (0, 1), got {args.threshold}")
        if ckpt["frontend_cfg"].kind != "logmel":
            raise UsageError("--threshold: keyword-spotting bundles only (a logmel front end)")
        ckpt["metrics"] = {**ckpt["metrics"], "detector_threshold": float(args.threshold)}
    xcfg = CrossbarConfig(g_min=args.g_min, g_max=args.g_max, levels=args.levels,
                          array_rows=args.array, array_cols=args.array,
                          weight_bits=args.weight_bits)
    calib = calibration_inputs(ckpt, args.calib)
    if args.reeval:
        import torch

        from qs4d.models.tasks import load_task
        from qs4d.models.train import final_metrics

        torch.set_num_threads(1)
        ckpt["metrics"] = {**ckpt["metrics"], **final_metrics(model, load_task(ckpt["train_cfg"]))}
    card = Path(args.card).read_text() if args.card else None
    if card is None:
        from .card import model_card

        spec = make_spec(model, ckpt["frontend_cfg"], ckpt["labels"], ckpt["metrics"], args.name)
        tcfg = ckpt["train_cfg"]
        cmd = args.command or f"qs4d train ... --out RUN && qs4d export {args.checkpoint} ..."
        card = model_card(spec, model_weights(model), command=cmd, train=tcfg.to_dict(),
                          data=tcfg.data or f"task {tcfg.task!r} (generated)")
    if args.append:
        card = card.rstrip("\n") + "\n\n" + Path(args.append).read_text()
    out = export_model(model, args.out, frontend=ckpt["frontend_cfg"], labels=ckpt["labels"],
                       metrics=ckpt["metrics"], name=args.name, calib_x=calib, crossbar=xcfg,
                       card=card, force=args.force)
    print(f"wrote {out}", file=sys.stderr)
    return 0
