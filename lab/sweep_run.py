"""One sweep run, executed in a Ray worker: its shared base (float pre-training, pruning), its
own quantization stage (QAT, PTQ or none), its step costs, and its imssa read-noise
evaluation on an exported bundle.

Glossary: n examples, L steps, F features, K classes; H width, P modes of a layer.

Every stage writes into its own directory of the run store and skips what is already there:
a base with its checkpoint, a run with final.pt, an evaluation present in result.json. The
run store must be a path every Ray node sees (a shared file system on a cluster).

This file is the one place in models/ that reaches beyond runtime/: lazily, into export/ (the
bundle the imssa backend runs) and apps/ (the step cost model of runtime/costs.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from qs4d.models import checkpoint
from qs4d.models import train as train_mod
from qs4d.models.tasks import load_task
from qs4d.runtime.spec import CrossbarConfig, QuantConfig, Spec, TrainConfig

from .sweep_config import Base, Run

log = logging.getLogger(__name__)
RESULT_FILE = "result.json"


def _worker_setup() -> None:
    torch.set_num_threads(int(os.environ.get("QS4D_THREADS", "1")))
    logging.getLogger("qs4d").setLevel(logging.WARNING)


def train_base(base: Base, parent_ckpt: str | None, runs_dir: str) -> str:
    """Train a shared float stage (or find it done); the path of its checkpoint."""
    if base.external:
        if not Path(base.external).exists():
            raise FileNotFoundError(f"train.init {base.external}: no such checkpoint")
        return base.external
    out = Path(runs_dir) / "_bases" / base.base_id
    ckpt = out / base.checkpoint
    if ckpt.exists():
        return str(ckpt)
    _worker_setup()
    tcfg = base.tcfg if parent_ckpt is None else base.tcfg.replace(init=parent_ckpt)
    train_mod.run(tcfg, base.mcfg, QuantConfig(), out, resume=True)
    return str(ckpt)


def execute(run: Run, base_ckpt: str, runs_dir: str) -> dict:
    """Train (unless final.pt exists), measure and evaluate one run; its result dict."""
    _worker_setup()
    out = Path(runs_dir) / run.run_id
    out.mkdir(parents=True, exist_ok=True)
    prev = read_result(out)
    t0 = time.time()
    tcfg = run.tcfg.replace(init=base_ckpt, epochs_float=0, epochs_prune=0, prune_keep=0)
    if (out / "final.pt").exists():
        model, ck = checkpoint.load(out / "final.pt")
        metrics = dict(ck["metrics"])
    elif run.tcfg.noise_std and run.method == "qat":
        model, metrics = qat_with_noise(tcfg, run, out)
    else:
        model, metrics = train_mod.run(tcfg, run.mcfg, run.qcfg, out, resume=True)
    model.eval()
    base = base_metrics(base_ckpt)
    if "test_acc" not in metrics:  # training never scored the test split: this report does
        metrics = {**metrics, **test_metrics(model, tcfg, run.eval.test_stride)}
        base.setdefault("float_test_acc", float_test_acc(base_ckpt, runs_dir,
                                                         run.eval.test_stride))
    result = {"run_id": run.run_id, "config": {"train": run.tcfg.to_dict(),
                                               "model": run.mcfg.to_dict(),
                                               "quant": run.qcfg.to_dict()},
              "metrics": metrics, "base_metrics": base,
              "modes": list(model.cfg.layer_modes), "costs": step_costs(model),
              "evals": dict(prev.get("evals", {})) if prev else {}}
    todo = [s for s, k in zip(run.read_noise, run.eval_keys()) if k not in result["evals"]]
    if todo:
        result["evals"].update(imssa_accuracy(model, run, out, todo))
    result["minutes"] = round((prev or {}).get("minutes", 0) + (time.time() - t0) / 60, 3)
    return result


def read_result(out: Path) -> dict | None:
    p = out / RESULT_FILE
    return json.loads(p.read_text()) if p.exists() else None


def write_result(out: Path, result: dict) -> None:
    """Atomically (a crash never leaves half a row)."""
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / RESULT_FILE, result)


def base_metrics(base_ckpt: str) -> dict:
    """The float (and pruning) metrics of the checkpoint a run started from."""
    m = checkpoint.load(base_ckpt)[1]["metrics"]
    return {k: v for k, v in m.items() if k.startswith(("float_", "prune_"))}


def test_metrics(model, tcfg: TrainConfig, stride: int) -> dict:
    """Accuracy (%) on every stride-th example of the task's test split, for a task whose
    training does not score it (Task.score_test false: MIT-BIH, where DS2 is only reported)."""
    x, y = load_task(tcfg).test
    return {"test_acc": train_mod.evaluate(model, (x[::stride], y[::stride])),
            "test_examples": len(y[::stride])}


def float_test_acc(base_ckpt: str, runs_dir: str, stride: int) -> float:
    """test_metrics of the float checkpoint every run of a sweep starts from, once per
    checkpoint content and stride (kept in RUNS/_bases/test-KEY.json)."""
    key = hashlib.sha256(Path(base_ckpt).read_bytes() + f"/{stride}".encode()).hexdigest()[:12]
    path = Path(runs_dir) / "_bases" / f"test-{key}.json"
    if not path.exists():
        model, ck = checkpoint.load(base_ckpt)
        model.eval()
        acc = test_metrics(model, ck["train_cfg"], stride)["test_acc"]
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, {"checkpoint": str(base_ckpt), "stride": stride,
                                 "float_test_acc": acc})
    return json.loads(path.read_text())["float_test_acc"]


def write_json_atomic(path: Path, obj: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True))
    os.replace(tmp, path)


def qat_with_noise(tcfg: TrainConfig, run: Run, out: Path) -> tuple:
    """QAT with Gaussian noise (tcfg.noise_kind "weight": noise_std x max|codes| on every
    weight tensor, model.noisy; "read": per step and row, relative, model.read_noisy),
    which train.run does not apply: train.run calibrates (PTQ) from the base,
    then this loop fine-tunes as train.run's QAT phase does (AdamW, cosine schedule, the QAT
    phase's shuffling seed), with the noise on during training only."""
    model, metrics = train_mod.run(tcfg.replace(ptq=True), run.mcfg, run.qcfg, out / "calib",
                                   resume=True)
    task = load_task(tcfg)
    model.noise_std, model.noise_kind = tcfg.noise_std, tcfg.noise_kind
    opt = torch.optim.AdamW(train_mod.param_groups(model, tcfg, tcfg.lr_qat))
    per_epoch = train_mod.batches_per_epoch(task, tcfg, True)
    steps = max(1, tcfg.epochs_qat * per_epoch)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))))
    gen = torch.Generator().manual_seed(tcfg.seed + 7919 * train_mod.PHASES.index("qat"))
    t0 = time.time()
    for epoch in range(tcfg.epochs_qat):
        train_mod.train_epoch(model, task, opt, sched, tcfg, gen,
                              f"qat+noise {epoch + 1}/{tcfg.epochs_qat}")
    minutes = (time.time() - t0) / 60
    metrics["train_minutes"] = round(metrics.get("train_minutes", 0) + minutes, 2)
    metrics["qat_val_acc"] = train_mod.evaluate(model, task.val)
    metrics["qat_test_acc"] = train_mod.evaluate(model, task.test)
    metrics.update(train_mod.final_metrics(model, task))
    checkpoint.save(out / "final.pt", model, train=tcfg, frontend=task.frontend,
                    labels=task.labels, phase="done", epoch=0, metrics=metrics)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
    return model, metrics


# ------------------------------------------------------------------------ costs

def step_costs(model) -> dict:
    """Bit operations, memory bits and ADC work per step of the model, and the reduction
    factors against the float32 model of the unpruned recipe architecture."""
    from qs4d.runtime.costs import complexity

    qcfg = model.qcfg if model.quant is not None else QuantConfig()
    if qcfg.any_enabled and not qcfg.integer:
        return {}  # a partly quantized model (per-component study) has no integer step
    return complexity(Spec(model=model.cfg.replace(norm="none"), quant=qcfg))


# ------------------------------------------------------------------------ imssa evaluation

def imssa_accuracy(model, run: Run, out: Path, sigmas: list) -> dict:
    """Test accuracy (%) on the imssa backend at each read-noise sigma: {eval key: entry}."""
    import qs4d
    from qs4d.export.cli import export_model

    ck = checkpoint.load(out / "final.pt")[1]
    task = load_task(ck["train_cfg"])
    ev, q = run.eval, model.qcfg
    g = torch.Generator().manual_seed(ev.seed)
    calib = task.train[0][torch.randperm(len(task.train[0]), generator=g)[:16]]  # (16, L, F)
    xcfg = CrossbarConfig(layers=ev.crossbar_layers, seed=ev.seed, read_noise=ev.noise_model)
    bundle = export_model(model, out / "bundle", frontend=task.frontend, labels=task.labels,
                          metrics=ck["metrics"], name=run.run_id,
                          calib_x=calib.numpy().transpose(1, 0, 2), crossbar=xcfg)
    X, y = (t.numpy() for t in task.test)  # (n, L, F) (n,)
    if ev.max_examples:
        X, y = X[:ev.max_examples], y[:ev.max_examples]
    conv = {"dac_bits": q.act.bits, "adc_bits": q.adc.bits} if ev.converters == "model" else {}
    res = {}
    for sigma in sigmas:
        t0 = time.time()
        m = qs4d.load(bundle, backend="imssa", crossbar=xcfg.replace(sigma_read=sigma, **conv))
        pred, counts = _predict(m.executor, X, model.cfg.pooling)
        res[ev.key(sigma)] = {"sigma_read": sigma, "noise_model": ev.noise_model,
                              "acc": 100.0 * float((pred == y).mean()), "examples": len(y),
                              "seconds": round(time.time() - t0, 1),
                              "adc_conversions_per_step": counts["adc_conversions"]
                              // (X.shape[1] * len(y))}
        log.info("%s: imssa sigma %g: %.2f%%", run.run_id, sigma, res[ev.key(sigma)]["acc"])
    return res


def _predict(ex, X: np.ndarray, pooling: str, batch: int = 500) -> tuple:
    """Class predictions (n,) of an executor over whole sequences X (n, L, F), and its counters."""
    preds = []
    with np.errstate(over="ignore"):  # noisy logits may saturate the sigmoid table's exp
        for i in range(0, len(X), batch):
            xb = X[i:i + batch]  # (B, L, F)
            state = ex.init_state(len(xb))
            logits = []
            for t in range(xb.shape[1]):
                out, state = ex(xb[:, t], state)  # (B, K)
                logits.append(out)
            z = np.mean(logits, 0) if pooling == "mean" else logits[-1]  # (B, K)
            preds.append(z.argmax(-1))
    return np.concatenate(preds), ex.counters()
