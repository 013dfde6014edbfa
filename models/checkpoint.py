"""Checkpoints: config dicts and tensors only, loaded with `weights_only=True`."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from qs4d.runtime.spec import FrontendConfig, ModelConfig, QuantConfig, TrainConfig

from .model import S4DClassifier
from .qmodel import attach_quant


def save(path: str | Path, model, *, train: TrainConfig, frontend: FrontendConfig,
         labels: tuple, phase: str, epoch: int, metrics: dict,
         optimizer: dict | None = None) -> None:
    """Write atomically (a crash never leaves half a checkpoint)."""
    ckpt = {
        "model": model.cfg.to_dict(),
        "quant": model.qcfg.to_dict() if model.quant is not None else None,
        "train": train.to_dict(),
        "frontend": frontend.to_dict(),
        "labels": list(labels),
        "phase": phase,
        "epoch": epoch,
        "metrics": metrics,
        "folded": all(blk.norm is None for blk in model.blocks),
        "state_dict": model.state_dict(),
        "optimizer": optimizer,
    }
    path = Path(path)
    tmp = path.with_suffix(".tmp")
    torch.save(ckpt, tmp)
    os.replace(tmp, path)


def load(path: str | Path):
    """(model, ckpt dict) with the model rebuilt in the checkpoint's phase."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    cfg = ModelConfig.from_dict(ckpt["model"], f"{path}:model")
    model = S4DClassifier(cfg, seed=0)
    if ckpt["folded"]:
        for blk in model.blocks:
            blk.norm = None
    if ckpt["quant"] is not None:
        attach_quant(model, QuantConfig.from_dict(ckpt["quant"], f"{path}:quant"))
    model.load_state_dict(ckpt["state_dict"])
    for part in ("train", "frontend"):  # rhythm was first a flag: true = the 2 features
        if isinstance(ckpt[part].get("rhythm"), bool):
            ckpt[part] = {**ckpt[part], "rhythm": 2 if ckpt[part]["rhythm"] else 0}
    ckpt["train_cfg"] = TrainConfig.from_dict(ckpt["train"], f"{path}:train")
    ckpt["frontend_cfg"] = FrontendConfig.from_dict(ckpt["frontend"], f"{path}:frontend")
    return model, ckpt
