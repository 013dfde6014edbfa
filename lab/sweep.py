"""`qs4d sweep CONFIG`: a grid of training and evaluation runs scheduled on Ray, resumable,
reported as one table (OUT/results.csv), summary.md and PNG plots.

    qs4d sweep models/sweeps/toy-qat-ptq.toml                  # local Ray, all cores
    qs4d sweep CONFIG --num-cpus 2 --out /tmp/x               # override [sweep] num_cpus, out
    qs4d sweep CONFIG --address ray://head:10001              # an existing Ray cluster
    qs4d sweep CONFIG --dry-run                               # list the runs and bases

Scheduling is Ray's: every shared base (float pre-training, pruning) is one remote task, every
run a remote task that takes its base's result as an argument, so Ray starts a run when its
base is done and runs as many tasks at once as there are CPUs. Each run writes
RUNS/<run-id>/result.json (RUNS = [sweep] runs, default OUT/runs) as soon as it finishes; on a
restart a run with a result is skipped, a base with its checkpoint is reused, and a run
interrupted mid-training resumes from its last epoch. The config format: sweep_config.py.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from pathlib import Path

from tqdm import tqdm

from qs4d.apps.plot import require

from . import sweep_run
from .sweep_config import SweepConfig, bases_of, load_sweep
from .sweep_report import rows_of, write_report

log = logging.getLogger(__name__)


def pending(runs: list, runs_dir: Path) -> tuple:
    """(results of the finished runs by id, the runs still to do)."""
    done, todo = {}, []
    for run in runs:
        res = sweep_run.read_result(runs_dir / run.run_id)
        if res is not None and all(k in res.get("evals", {}) for k in run.eval_keys()):
            done[run.run_id] = res
        else:
            todo.append(run)
    return done, todo


def start_ray(num_cpus: int, address: str | None) -> tuple:
    """(the ray module, whether this call started it); an initialized Ray is reused."""
    try:
        import ray
    except ModuleNotFoundError as e:
        raise SystemExit("qs4d sweep: Ray is not installed; pip install 'qs4d[sweep]'") from e

    if ray.is_initialized():
        return ray, False
    quiet = {"include_dashboard": False, "log_to_driver": False,
             "logging_level": logging.WARNING}
    if address:
        ray.init(address=address, **quiet)
    else:
        ray.init(num_cpus=num_cpus, **quiet)
    return ray, True


def schedule(todo: list, runs_dir: Path, num_cpus: int, address: str | None,
             results: dict) -> list:
    """Run `todo` on Ray; results are written (and added to `results`) as they arrive.
    Returns the failures as (run id, error message)."""
    ray, started = start_ray(num_cpus, address)
    try:
        return _run_all(ray, todo, runs_dir, results)
    finally:
        if started:
            ray.shutdown()


def _run_all(ray, todo: list, runs_dir: Path, results: dict) -> list:
    base_task = ray.remote(num_cpus=1, max_retries=0)(sweep_run.train_base)
    run_task = ray.remote(num_cpus=1, max_retries=0)(sweep_run.execute)
    base_refs: dict = {}
    for b in bases_of(todo):
        parent = base_refs[b.parent.base_id] if b.parent is not None else None
        base_refs[b.base_id] = base_task.remote(b, parent, str(runs_dir))
    refs = {run_task.remote(r, base_refs[r.base.base_id], str(runs_dir)): r for r in todo}
    log.info("scheduled %d runs on %d shared bases", len(refs), len(base_refs))
    bar, failures = tqdm(total=len(refs), desc="sweep", disable=None), []
    while refs:
        ready, _ = ray.wait(list(refs), num_returns=1)
        run = refs.pop(ready[0])
        try:
            res = ray.get(ready[0])
        except Exception as e:  # a RayTaskError wraps whatever the run raised
            failures.append((run.run_id, str(e).strip().splitlines()[-1]))
            log.error("run %s failed: %s", run.run_id, failures[-1][1])
        else:
            sweep_run.write_result(runs_dir / run.run_id, res)
            results[run.run_id] = res
            log.info("done %s: test %.2f%% (float %.2f%%)%s", run.run_id,
                     res["metrics"]["test_acc"],
                     res["base_metrics"].get("float_test_acc", float("nan")),
                     "".join(f", imssa {e['sigma_read']:g}: {e['acc']:.2f}%"
                             for e in res["evals"].values()))
        bar.set_postfix(failed=len(failures), refresh=False)
        bar.update()
    bar.close()
    return failures


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qs4d sweep", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="sweep TOML (base recipe, [grid], [eval], report tables)")
    p.add_argument("--out", help="results folder (default: [sweep] out of the config)")
    p.add_argument("--runs", help="run store (default: [sweep] runs, else OUT/runs)")
    p.add_argument("--num-cpus", type=int, default=0,
                   help="CPUs of the local Ray instance (default: [sweep] num_cpus, else all)")
    p.add_argument("--address", help="connect to this Ray cluster instead of a local instance")
    p.add_argument("--dry-run", action="store_true", help="list the runs and bases, run nothing")
    return p


def paths(cfg: SweepConfig, args) -> tuple:
    out = args.out or cfg.out
    if not out:
        raise SystemExit(f"qs4d sweep: {cfg.path} has no [sweep] out; pass --out")
    runs = args.runs or cfg.runs_dir or str(Path(out) / "runs")
    return Path(out), Path(runs)


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    cfg = load_sweep(args.config)
    out, runs_dir = paths(cfg, args)
    runs = cfg.expand()
    results, todo = pending(runs, runs_dir)
    print(f"{cfg.name}: {len(runs)} runs ({len(results)} done, {len(todo)} to run) on "
          f"{len(bases_of(runs))} shared bases; runs in {runs_dir}, results in {out}")
    if args.dry_run:
        for r in runs:
            state = "done" if r.run_id in results else "todo"
            base = r.base.external or r.base.base_id
            noise = f" read_noise={list(r.read_noise)}" if r.read_noise else ""
            print(f"  [{state}] {r.run_id}  <- {base}{noise}")
        return 0
    if cfg.report.get("plot"):
        require(f"{cfg.path}'s [[plot]]")  # before hours of training, not after
    failures = []
    if todo:
        num_cpus = args.num_cpus or cfg.num_cpus or os.cpu_count() or 1
        failures = schedule(todo, runs_dir, num_cpus, args.address, results)
    command = "qs4d sweep " + " ".join(shlex.quote(a) for a in argv)
    summary = write_report(out, cfg.name, command, rows_of(runs, results), cfg.report,
                           len(runs) - len(results))
    print(summary)
    print(f"wrote {out / 'results.csv'}, {out / 'summary.md'} and the plots")
    for run_id, err in failures:
        print(f"FAILED {run_id}: {err}", file=sys.stderr)
    return 1 if failures else 0
