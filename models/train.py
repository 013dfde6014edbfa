"""`qs4d train`: float convolution-mode pre-training, optional mode pruning, then recurrent
integer-exact QAT fine-tuning (or PTQ calibration). Checkpoints every epoch; `--resume`
continues from the last one. With `train.qat_distill = a > 0` the QAT loss is
(1 - a) CE + a KL(teacher || model), the teacher being the model as it entered QAT (float,
norms folded, eval mode) on the same augmented batch: the fine-tune is pulled towards the float
model's posteriors, not only its labels (knowledge distillation, Hinton et al. 2015, T = 1).

Glossary: B batch, L sequence length, F features, K classes.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as Fn
from tqdm import tqdm

from qs4d.runtime.spec import ModelConfig, QuantConfig, TrainConfig

from . import checkpoint
from .config import load_recipe
from .model import S4DClassifier
from .qmodel import attach_quant, calibrate
from .tasks import Task, load_task

log = logging.getLogger(__name__)
PHASES = ("float", "prune", "qat")


def param_groups(model, tcfg: TrainConfig, lr: float) -> list:
    ssm, scales, rest = [], [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name.endswith(("log_dt", "log_A_re", "A_im")):
            ssm.append(p)
        elif name.startswith("quant."):
            scales.append(p)
        else:
            rest.append(p)
    ssm_lr = min(lr, tcfg.lr_ssm)
    return [{"params": rest, "lr": lr, "weight_decay": tcfg.weight_decay},
            {"params": ssm, "lr": ssm_lr, "weight_decay": 0.0},
            {"params": scales, "lr": lr, "weight_decay": 0.0}]


@torch.no_grad()
def evaluate(model, split: tuple, batch_size: int = 256) -> float:
    """Top-1 accuracy (%) of pooled logits on (X (n, L, F), y (n,))."""
    X, y = split
    was = model.training
    model.eval()
    correct = 0
    for i in range(0, len(X), batch_size):
        logits = model.pool(model(X[i:i + batch_size]))  # (B, K)
        correct += int((logits.argmax(-1) == y[i:i + batch_size]).sum())
    model.train(was)
    return 100.0 * correct / max(1, len(X))


@torch.no_grad()
def predict(model, X: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    was = model.training
    model.eval()
    out = torch.cat([model.pool(model(X[i:i + batch_size])).argmax(-1)
                     for i in range(0, len(X), batch_size)])
    model.train(was)
    return out


def train_epoch(model, task: Task, opt, sched, tcfg: TrainConfig, gen: torch.Generator,
                desc: str, teacher=None) -> float:
    X, y = task.train
    model.train()
    perm = torch.randperm(len(X), generator=gen)
    n_batches = batches_per_epoch(task, tcfg, model.quant is not None)
    shift = logit_shift(y, len(task.labels), tcfg.logit_adjust)  # (K,)
    total, bar = 0.0, tqdm(range(n_batches), desc, disable=None)
    for b in bar:
        idx = perm[b * tcfg.batch_size:(b + 1) * tcfg.batch_size]
        xb = X[idx] if task.augment is None else task.augment(X[idx], gen)  # (B, L, F)
        logits = model.pool(model(xb))  # (B, K)
        loss = Fn.cross_entropy(logits + shift, y[idx], label_smoothing=tcfg.label_smoothing)
        if teacher is not None:
            loss = (1.0 - tcfg.qat_distill) * loss + tcfg.qat_distill * distill_loss(
                logits, teacher, xb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        total += float(loss.detach())
        bar.set_postfix(loss=f"{total / (b + 1):.3f}", refresh=False)
    return total / n_batches


def distill_loss(logits: torch.Tensor, teacher, xb: torch.Tensor) -> torch.Tensor:
    """KL(teacher || model) of the pooled posteriors (batch mean); the teacher is frozen."""
    with torch.no_grad():
        target = Fn.log_softmax(teacher.pool(teacher(xb)), -1)  # (B, K)
    return Fn.kl_div(Fn.log_softmax(logits, -1), target, log_target=True, reduction="batchmean")


def make_teacher(model, tcfg: TrainConfig, out: Path, fresh: bool):
    """The frozen float model QAT distills from (None when qat_distill is 0): the model as it
    enters QAT, or, resuming inside QAT, the checkpoint it entered from (the run's prune.pt or
    float.pt, else train.init)."""
    if not tcfg.qat_distill:
        return None
    if fresh:  # called before the quantizers attach: the model is still the float one
        teacher = copy.deepcopy(model)
    else:
        srcs = [out / "prune.pt", out / "float.pt"] + ([Path(tcfg.init)] if tcfg.init else [])
        src = next((p for p in srcs if p.exists()), None)
        if src is None:
            raise FileNotFoundError(f"train.qat_distill: resuming QAT in {out} needs the "
                                    "teacher: its prune.pt or float.pt, or train.init")
        teacher, _ = checkpoint.load(src)
    teacher.eval()
    teacher.fold_norms()  # as QAT folds the model's (exact in eval mode)
    teacher.noise_std = 0.0
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def logit_shift(y: torch.Tensor, k: int, tau: float) -> torch.Tensor:
    """(K,) tau * log(class prior of the training labels y): added to the logits in the training
    loss only (logit adjustment, Menon et al. 2021), it trains the raw logits towards the
    class-balanced decision, so an over-represented class (KWS `_unknown_`) is not favoured
    on inputs unlike the training data. Zeros when tau is 0."""
    if not tau:
        return torch.zeros(k)
    prior = torch.bincount(y, minlength=k).to(torch.float32) / len(y)  # (K,)
    return tau * torch.log(prior.clamp_min(1e-12))


def batches_per_epoch(task: Task, tcfg: TrainConfig, qat: bool) -> int:
    n = math.ceil(len(task.train[0]) / tcfg.batch_size)
    return min(n, tcfg.qat_batches) if qat and tcfg.qat_batches else n


def _enter_phase(model, phase: str, tcfg: TrainConfig, qcfg: QuantConfig, task: Task) -> dict:
    """Structural changes at the start of a phase: pruning, BatchNorm folding, quantizers."""
    info: dict = {}
    if phase == "prune":
        info = model.prune_modes(tcfg.prune_keep)
        log.info("pruned modes %s -> %s", info["modes_before"], info["modes_after"])
    if phase == "qat":
        model.eval()
        model.fold_norms()
        attach_quant(model, qcfg)
        X = task.train[0]
        n = min(len(X), tcfg.calib_batches * tcfg.batch_size)
        g = torch.Generator().manual_seed(tcfg.seed)
        calibrate(model, X[torch.randperm(len(X), generator=g)[:n]])
    return info


def run(tcfg: TrainConfig, mcfg: ModelConfig, qcfg: QuantConfig, out: Path,
        resume: bool = False) -> tuple:
    """Train into `out/` (ckpt.pt after every epoch, final.pt at the end); (model, metrics)."""
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(tcfg.seed)
    task = load_task(tcfg)
    mcfg = mcfg.replace(d_input=task.d_input, n_classes=len(task.labels))
    epochs = {"float": tcfg.epochs_float,
              "prune": tcfg.epochs_prune if tcfg.prune_keep else 0,
              "qat": (0 if tcfg.ptq else tcfg.epochs_qat) if qcfg.any_enabled else 0}
    active = [p for p in PHASES if epochs[p] or (p == "qat" and qcfg.any_enabled)
              or (p == "prune" and tcfg.prune_keep)]
    model, start_phase, start_epoch, metrics, opt_state = _start(tcfg, mcfg, out, resume)
    model.noise_std = tcfg.noise_std  # noise-aware training (off in evaluation)
    model.noise_kind = tcfg.noise_kind
    t0 = time.time()
    for phase in active[active.index(start_phase):] if start_phase in active else active:
        fresh = phase != start_phase or start_epoch == 0
        teacher = make_teacher(model, tcfg, out, fresh) if phase == "qat" else None
        if fresh:
            metrics.update(_enter_phase(model, phase, tcfg, qcfg, task))
            start_epoch, opt_state = 0, None
            if phase == "qat":
                metrics["ptq_val_acc"] = evaluate(model, task.val)
        lr = tcfg.lr_qat if phase == "qat" else tcfg.lr
        opt = torch.optim.AdamW(param_groups(model, tcfg, lr))
        if opt_state:
            opt.load_state_dict(opt_state)
        per_epoch = batches_per_epoch(task, tcfg, phase == "qat")
        steps = max(1, epochs[phase] * per_epoch)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s, n=steps: 0.5 * (1 + math.cos(math.pi * min(1.0, s / n))))
        for _ in range(start_epoch * per_epoch):
            sched.step()
        gen = torch.Generator().manual_seed(tcfg.seed + 7919 * PHASES.index(phase))
        for _ in range(start_epoch):
            torch.randperm(len(task.train[0]), generator=gen)
        for epoch in range(start_epoch, epochs[phase]):
            loss = train_epoch(model, task, opt, sched, tcfg, gen,
                               f"{phase} {epoch + 1}/{epochs[phase]}", teacher)
            acc = evaluate(model, task.val)
            metrics[f"{phase}_val_acc"] = acc
            log.info("%s epoch %d: loss %.4f, val %.2f%%", phase, epoch + 1, loss, acc)
            checkpoint.save(out / "ckpt.pt", model, train=tcfg, frontend=task.frontend,
                            labels=task.labels, phase=phase, epoch=epoch + 1, metrics=metrics,
                            optimizer=opt.state_dict())
        start_epoch = 0
        metrics[f"{phase}_val_acc"] = evaluate(model, task.val)
        if task.score_test:
            metrics[f"{phase}_test_acc"] = evaluate(model, task.test)
        for name, split in task.extra.items():
            metrics[f"{phase}_{name}_acc"] = evaluate(model, split)
        checkpoint.save(out / f"{phase}.pt", model, train=tcfg, frontend=task.frontend,
                        labels=task.labels, phase=phase, epoch=epochs[phase], metrics=metrics)
    metrics.update(_final_from_last_phase(metrics, active) or final_metrics(model, task))
    metrics["params"] = model.n_params()
    metrics["train_minutes"] = round(metrics.get("train_minutes", 0) + (time.time() - t0) / 60, 2)
    checkpoint.save(out / "final.pt", model, train=tcfg, frontend=task.frontend,
                    labels=task.labels, phase="done", epoch=0, metrics=metrics)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
    return model, metrics


def final_metrics(model, task: Task) -> dict:
    m = {"val_acc": evaluate(model, task.val), "params": model.n_params()}
    if task.score_test:
        m["test_acc"] = evaluate(model, task.test)
    for name, split in task.extra.items():
        m[f"{name}_acc"] = evaluate(model, split)
    return m


def _final_from_last_phase(metrics: dict, active: list) -> dict:
    """The final accuracies are the last phase's end-of-phase ones (the model has not changed
    since): {} when that phase left none, so the caller measures them."""
    if not active or f"{active[-1]}_val_acc" not in metrics:
        return {}
    pre = f"{active[-1]}_"
    return {k[len(pre):]: v for k, v in metrics.items() if k.startswith(pre) and k.endswith("_acc")}


def _start(tcfg, mcfg, out: Path, resume: bool):
    ck = out / "ckpt.pt"
    if resume and ck.exists():
        model, ckpt = checkpoint.load(ck)
        log.info("resuming %s at phase %s epoch %d", ck, ckpt["phase"], ckpt["epoch"])
        return model, ckpt["phase"], ckpt["epoch"], dict(ckpt["metrics"]), ckpt["optimizer"]
    if tcfg.init:
        model, ckpt = checkpoint.load(tcfg.init)
        if model.quant is not None:
            raise ValueError(f"train.init {tcfg.init}: expected a float checkpoint")
        log.info("starting from %s (%s phase)", tcfg.init, ckpt["phase"])
        metrics = {k: v for k, v in ckpt["metrics"].items() if k.startswith("float")}
        return model, "float", 0, metrics, None
    return S4DClassifier(mcfg, seed=tcfg.seed), "float", 0, {}, None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qs4d train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="TOML recipe with [model], [quant], [train] tables")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a recipe value, e.g. --set train.epochs_qat=2")
    p.add_argument("--out", required=True, help="run directory (checkpoints, metrics)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/ckpt.pt")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from .dscnn_train import is_dscnn_recipe

    if is_dscnn_recipe(args.config):  # the DS-CNN baseline: same data, loop and evaluation
        from .dscnn_train import main as dscnn_main

        return dscnn_main(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    torch.set_num_threads(int(os.environ.get("QS4D_THREADS", min(2, os.cpu_count() or 1))))
    tcfg, mcfg, qcfg = load_recipe(args.config, args.set)
    _, metrics = run(tcfg, mcfg, qcfg, Path(args.out), resume=args.resume)
    print(json.dumps(metrics, indent=2, sort_keys=True))
    return 0
