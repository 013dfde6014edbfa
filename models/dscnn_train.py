"""Training of the DS-CNN baseline (models/dscnn.py) with the S4D trainer's own pieces: the same
task loader (features, augmentation, splits), seed handling, epoch loop, optimizer groups,
cosine schedule, evaluation, checkpoints every epoch, `--resume`, and metrics.json.

A DS-CNN recipe is a TOML file with a [dscnn] table (DSCNNConfig; the input shape and the
class count come from the task) and a [train] table (TrainConfig: only the float phase is
used; the QAT keys are ignored). `qs4d train --config RECIPE --out RUN` hands such a recipe
to this module.

Glossary: B batch, L frames, F features, K classes.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
import tomllib
from pathlib import Path

import torch

from qs4d.runtime.spec import FrontendConfig, SpecError, TrainConfig

from .config import apply_overrides
from .dscnn import DSCNN, DSCNNConfig
from .tasks import Task, load_task
from .train import build_parser, evaluate, final_metrics, param_groups, train_epoch

log = logging.getLogger(__name__)
PHASE = "float"


def is_dscnn_recipe(path: str | None) -> bool:
    if not path:
        return False
    with open(path, "rb") as f:
        return "dscnn" in tomllib.load(f)


def load_dscnn_recipe(path: str, sets: list[str] = ()) -> tuple:
    """(TrainConfig, DSCNNConfig) from a TOML file and SECTION.KEY=VALUE overrides."""
    with open(path, "rb") as f:
        recipe = apply_overrides(tomllib.load(f), list(sets))
    unknown = sorted(set(recipe) - {"dscnn", "train"})
    if unknown:
        raise SpecError(f"{path}: unknown table(s) {unknown} in a DS-CNN recipe")
    tcfg = TrainConfig.from_dict(recipe.get("train", {}), "train")
    for name in ("epochs_prune", "prune_keep", "noise_std", "init"):
        if getattr(tcfg, name):
            raise SpecError(f"{path}: train.{name} is not supported for the DS-CNN")
    return tcfg, DSCNNConfig.from_dict(recipe.get("dscnn", {}), "dscnn")


def save(path: Path, model: DSCNN, *, train: TrainConfig, frontend: FrontendConfig,
         labels: tuple, phase: str, epoch: int, metrics: dict,
         optimizer: dict | None = None) -> None:
    """Config dicts and tensors only (loads with weights_only=True); written atomically."""
    ckpt = {"arch": "dscnn", "dscnn": model.cfg.to_dict(), "train": train.to_dict(),
            "frontend": frontend.to_dict(), "labels": list(labels), "phase": phase,
            "epoch": epoch, "metrics": metrics, "state_dict": model.state_dict(),
            "optimizer": optimizer}
    tmp = path.with_suffix(".tmp")
    torch.save(ckpt, tmp)
    os.replace(tmp, path)


def load(path: str | Path) -> tuple:
    """(model, ckpt dict) with train_cfg and frontend_cfg rebuilt."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if ckpt.get("arch") != "dscnn":
        raise ValueError(f"{path}: not a DS-CNN checkpoint (arch {ckpt.get('arch')!r})")
    model = DSCNN(DSCNNConfig.from_dict(ckpt["dscnn"], f"{path}:dscnn"))
    model.load_state_dict(ckpt["state_dict"])
    ckpt["train_cfg"] = TrainConfig.from_dict(ckpt["train"], f"{path}:train")
    ckpt["frontend_cfg"] = FrontendConfig.from_dict(ckpt["frontend"], f"{path}:frontend")
    return model, ckpt


def run(tcfg: TrainConfig, dcfg: DSCNNConfig, out: Path, resume: bool = False,
        task: Task | None = None) -> tuple:
    """Train into `out/` (ckpt.pt every epoch, float.pt and final.pt); (model, metrics)."""
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(tcfg.seed)
    task = task or load_task(tcfg)
    _, L, F = task.train[0].shape
    dcfg = dcfg.replace(n_frames=int(L), n_features=int(F), n_classes=len(task.labels))
    model, start, metrics, opt_state = DSCNN(dcfg, seed=tcfg.seed), 0, {}, None
    if resume and (out / "ckpt.pt").exists():
        model, ck = load(out / "ckpt.pt")
        start, metrics, opt_state = ck["epoch"], dict(ck["metrics"]), ck["optimizer"]
        log.info("resuming %s at epoch %d", out / "ckpt.pt", start)
    kw = {"train": tcfg, "frontend": task.frontend, "labels": task.labels}
    opt = torch.optim.AdamW(param_groups(model, tcfg, tcfg.lr))
    if opt_state:
        opt.load_state_dict(opt_state)
    per_epoch = math.ceil(len(task.train[0]) / tcfg.batch_size)
    steps = max(1, tcfg.epochs_float * per_epoch)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))))
    for _ in range(start * per_epoch):
        sched.step()
    gen = torch.Generator().manual_seed(tcfg.seed)  # the trainer's float-phase generator
    for _ in range(start):
        torch.randperm(len(task.train[0]), generator=gen)
    t0 = time.time()
    for epoch in range(start, tcfg.epochs_float):
        loss = train_epoch(model, task, opt, sched, tcfg, gen,
                           f"{PHASE} {epoch + 1}/{tcfg.epochs_float}")
        metrics[f"{PHASE}_val_acc"] = acc = evaluate(model, task.val)
        log.info("%s epoch %d: loss %.4f, val %.2f%%", PHASE, epoch + 1, loss, acc)
        metrics["train_minutes"] = round(metrics.get("train_minutes", 0)
                                         + (time.time() - t0) / 60, 2)
        t0 = time.time()
        save(out / "ckpt.pt", model, **kw, phase=PHASE, epoch=epoch + 1, metrics=metrics,
             optimizer=opt.state_dict())
    metrics.update(final_metrics(model, task))
    metrics.update(params_total=model.n_params_total(), macs=model.macs()["total"],
                   torch_threads=torch.get_num_threads(), cpu_count=os.cpu_count())
    metrics["train_minutes"] = round(metrics.get("train_minutes", 0) + (time.time() - t0) / 60, 2)
    save(out / "float.pt", model, **kw, phase=PHASE, epoch=tcfg.epochs_float, metrics=metrics)
    save(out / "final.pt", model, **kw, phase="done", epoch=0, metrics=metrics)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
    return model, metrics


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    torch.set_num_threads(int(os.environ.get("QS4D_THREADS", min(2, os.cpu_count() or 1))))
    if not is_dscnn_recipe(args.config):
        raise SystemExit(f"{args.config}: not a DS-CNN recipe (no [dscnn] table)")
    tcfg, dcfg = load_dscnn_recipe(args.config, args.set)
    _, metrics = run(tcfg, dcfg, Path(args.out), resume=args.resume)
    print(json.dumps(metrics, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
