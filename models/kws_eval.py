"""Per-class view of a keyword checkpoint on one split of its data set: the confusion matrix,
accuracy, and how many keyword and `_unknown_` clips it gets right.

    python -m qs4d.models.kws_eval runs/kws-qat4/final.pt [--split real] [--data DIR]

Splits: test (synthetic held-out voices), real (the real-speaker clips), real_snr20,
real_snr10, val. The features are the training task's (`qs4d.models.kws_task`, cached).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np


def confusion(y: np.ndarray, p: np.ndarray, k: int) -> np.ndarray:
    """(k, k) counts: rows the reference class, columns the prediction."""
    c = np.zeros((k, k), np.int64)
    np.add.at(c, (y, p), 1)
    return c


def report(labels: tuple, c: np.ndarray) -> str:
    w = max(len(s) for s in labels) + 1
    head = " " * w + "".join(f"{s[:5]:>6}" for s in labels)
    rows = [f"{s:<{w}}" + "".join(f"{v:>6}" for v in r) for s, r in zip(labels, c)]
    n_kw = sum(1 for s in labels if not s.startswith("_"))
    ok, tot = np.diag(c), c.sum(axis=1)
    unk = labels.index("_unknown_") if "_unknown_" in labels else None
    lines = [head, *rows, f"accuracy {100 * ok.sum() / max(tot.sum(), 1):.2f}% of {tot.sum()}",
             f"keywords right {ok[:n_kw].sum()} of {tot[:n_kw].sum()}"]
    if unk is not None:
        lines.append(f"_unknown_ right {ok[unk]} of {tot[unk]}; keywords called _unknown_ "
                     f"{c[:n_kw, unk].sum()}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import torch

    from . import checkpoint
    from .tasks import load_task
    from .train import predict

    p = argparse.ArgumentParser(prog="python -m qs4d.models.kws_eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("--split", default="real")
    p.add_argument("--data", help="data set (default: the checkpoint's train.data)")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    model, ck = checkpoint.load(a.checkpoint)
    model.eval()
    tcfg = ck["train_cfg"] if not a.data else ck["train_cfg"].replace(data=a.data)
    task = load_task(tcfg)
    splits = {"test": task.test, "val": task.val, **task.extra}
    if a.split not in splits:
        print(f"kws_eval: split {a.split!r}; have {sorted(splits)}", file=sys.stderr)
        return 2
    X, y = splits[a.split]
    pred = predict(model, X).numpy()
    print(f"{a.checkpoint} on {tcfg.data} [{a.split}]")
    print(report(tuple(task.labels), confusion(y.numpy(), pred, len(task.labels))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
