"""`qs4d sweep` end to end on a local Ray instance of 2 CPUs: four runs of the toy task (a tiny
model, one epoch each) sharing one float pre-training, the results table, a plot, and a
restart that reruns only the run whose result is missing.

Glossary: H width, N state size.
"""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import json
import sys

import pytest

from qs4d.lab import sweep, sweep_config

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="Ray is not installed (the `sweep` extra: pip install "
                                      "'qs4d[sweep]'); `make test` installs it")
needs_plots = pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None,
                                 reason="the sweep's [[plot]] needs matplotlib (the `plot` "
                                        "extra: pip install 'qs4d[plot]')")

CONFIG = """
[sweep]
name = "ci"
num_cpus = 2

[model]
d_model = 8
d_state = 8
n_layers = 2

[quant]
bits = 8

[train]
task = "toy"
batch_size = 16
epochs_float = 1
epochs_qat = 1
qat_batches = 4
max_train = 1024
lr = 0.03
lr_ssm = 0.01

[grid]
method = ["qat", "ptq"]
bits = [3, 8]

[[plot]]
file = "acc_vs_bits.png"
x = "bits"
series = ["method"]
title = "CI"

[[threshold]]
x = "bits"
by = ["method"]

[[table]]
rows = "bits"
cols = ["method"]
"""


def grid_config(tmp_path, extra: str, name: str = "g.toml"):
    """CONFIG with its [grid] as the first [[grid]] of a list, then `extra` appended."""
    path = tmp_path / name
    path.write_text(CONFIG.replace("[grid]\n", "[[grid]]\n", 1) + extra)
    return path


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@needs_ray
@needs_plots
@pytest.mark.slow
def test_sweep_on_ray_writes_rows_plots_and_resumes(tmp_path, capsys):
    cfg_path = tmp_path / "ci.toml"
    cfg_path.write_text(CONFIG)
    out = tmp_path / "out"
    import ray

    assert sweep.main([str(cfg_path), "--out", str(out)]) == 0
    assert not ray.is_initialized()  # the sweep shut down the instance it started

    rows = read_rows(out / "results.csv")
    assert sorted((r["method"], r["bits"]) for r in rows) == [
        ("ptq", "3"), ("ptq", "8"), ("qat", "3"), ("qat", "8")]
    assert len({r["run_id"] for r in rows}) == 4
    floats = {r["float_test_acc"] for r in rows}
    assert len(floats) == 1, "the four runs share one float pre-training"
    assert float(floats.pop()) > 30.0, "one epoch of float training beats chance (10%)"
    for r in rows:
        assert 0.0 <= float(r["test_acc"]) <= 100.0
        assert (r["q_weights"], r["q_state"]) == (r["bits"], r["bits"])
        assert float(r["bitops_reduction"]) > 1.0 and float(r["mem_bits_reduction"]) > 1.0
    by = {(r["method"], r["bits"]): r for r in rows}
    assert float(by["qat", "3"]["bitops_reduction"]) > float(by["qat", "8"]["bitops_reduction"])
    assert float(by["qat", "3"]["adc_bit_conversions_reduction"]) == pytest.approx(32 / 3, 1e-3)
    from matplotlib.image import imread

    png = imread(out / "acc_vs_bits.png", format="png")[..., :3]  # (h, w, 3)
    assert png.shape[:2] == (560, 1100) and (png < 0.8).any(axis=-1).mean() > 0.01
    summary = (out / "summary.md").read_text()
    assert "smallest bits within 1 pt" in summary and "acc_vs_bits.png" in summary

    runs_dir = out / "runs"
    results = {r["run_id"]: runs_dir / r["run_id"] / "result.json" for r in rows}
    for p in results.values():
        assert json.loads(p.read_text())["run_id"] == p.parent.name
    bases = list((runs_dir / "_bases").glob("*/float.pt"))
    assert len(bases) == 1
    stamps = {k: p.stat().st_mtime_ns for k, p in results.items()}
    base_stamp = bases[0].stat().st_mtime_ns
    redo = by["qat", "3"]["run_id"]
    results[redo].unlink()
    capsys.readouterr()

    assert sweep.main([str(cfg_path), "--out", str(out)]) == 0
    assert "(3 done, 1 to run)" in capsys.readouterr().out
    assert results[redo].exists()
    for k, p in results.items():
        if k != redo:
            assert p.stat().st_mtime_ns == stamps[k], f"{k} was rerun"
    assert bases[0].stat().st_mtime_ns == base_stamp, "the float pre-training was redone"
    again = read_rows(out / "results.csv")
    for r in again + rows:
        r.pop("minutes")
    assert again == rows  # the redone run reused its final.pt: the same numbers




@needs_plots
def test_report_plot_is_an_image_with_one_line_per_series(tmp_path):
    from matplotlib.image import imread

    from qs4d.lab.sweep_report import write_report

    rows = [{"run_id": f"{m}{b}", "method": m, "bits": b, "test_acc": a, "float_test_acc": 91.0}
            for m, b, a in [("qat", 3, 80.0), ("qat", 8, 90.0), ("ptq", 3, 20.0),
                            ("ptq", 8, 89.0)]]
    spec = {"file": "acc.png", "x": "bits", "series": ["method"], "title": "acc vs bits"}
    text = write_report(tmp_path, "ci", "cmd", rows, {"plot": [spec]}, 0)
    assert "![acc](acc.png)" in text
    img = imread(tmp_path / "acc.png", format="png")[..., :3]  # (h, w, 3)
    assert img.shape[:2] == (560, 1100)
    for color in ((0x1F, 0x77, 0xB4), (0xFF, 0x7F, 0x0E)):  # C0, C1: the two series
        assert (abs(img - [c / 255 for c in color]).max(axis=-1) < 0.06).sum() > 200

def test_plots_without_matplotlib_fail_before_any_training(tmp_path, monkeypatch):
    """A sweep whose report draws [[plot]]s, on an install without the plot extra: a usage
    error naming the extra before anything is scheduled, not after hours of training."""
    from qs4d.runtime.errors import UsageError

    cfg_path = tmp_path / "ci.toml"
    cfg_path.write_text(CONFIG)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setattr(sweep, "schedule", lambda *a: pytest.fail("scheduled runs"))
    with pytest.raises(UsageError, match=r"\[\[plot\]\] needs matplotlib.*qs4d\[plot\]"):
        sweep.main([str(cfg_path), "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out" / "results.csv").exists()

def test_grid_expansion_shares_bases_and_hashes_runs(tmp_path):
    cfg = sweep_config.load_sweep(grid_config(tmp_path, """
[[grid]]
method = ["qat"]
bits = [4]
prune_keep = [1]
noise_std = [0.0, 0.05]
"""))
    runs = cfg.expand()
    assert len(runs) == 6 and len({r.run_id for r in runs}) == 6
    bases = sweep_config.bases_of(runs)
    assert [b.parent is None for b in bases] == [True, False]  # float, then its pruning
    pruned = [r for r in runs if r.tcfg.prune_keep]
    assert {r.base.base_id for r in pruned} == {bases[1].base_id}
    assert bases[1].parent.base_id == bases[0].base_id
    assert sweep_config.make_run(cfg, {"method": "qat", "bits": 3}).run_id == runs[0].run_id


def test_runs_from_an_init_checkpoint_change_id_when_the_checkpoint_changes(tmp_path):
    ckpt = tmp_path / "float.pt"
    cfg_path = tmp_path / "g.toml"
    cfg_path.write_text(CONFIG.replace("lr_ssm = 0.01", f'lr_ssm = 0.01\ninit = "{ckpt}"'))
    ids = []
    for content in (None, b"first model", b"first model", b"retrained model"):
        if content is not None:
            ckpt.write_bytes(content)
        runs = sweep_config.load_sweep(cfg_path).expand()
        ids.append(({r.run_id for r in runs}, {r.base.base_id for r in runs}))
    assert ids[1] == ids[2]  # same bytes: same runs (resumable)
    for a, b in ((ids[0], ids[1]), (ids[1], ids[3])):  # new bytes: nothing reused
        assert not (a[0] & b[0]) and not (a[1] & b[1])


def test_bits_two_is_ternary_weights_with_3_bit_activations():
    q = sweep_config.quant_for({"bits": 8}, {"bits": 2}, "qat")
    assert (q.weights.bits, q.A.bits, q.state.bits, q.act.bits, q.adc.bits) == (2, 2, 3, 3, 3)
    one = sweep_config.quant_for({"bits": 8}, {"bits": 4, "group": "state"}, "ptq")
    assert one.state.bits == 4 and not one.A.enabled and not one.integer


def test_noise_kind_enters_the_run_id_only_when_set(tmp_path):
    """Runs stored before train.noise_kind existed keep their ids; read-noise runs get their
    own; the eval keys of the relative read-noise model differ from the span model's."""
    cfg_path = grid_config(tmp_path, """
[[grid]]
method = ["qat"]
bits = [8]
noise_std = [0.05]
"train.noise_kind" = ["weight", "read"]

[eval]
noise_model = "relative"
read_noise = [0.0, 0.05]
""")
    cfg = sweep_config.load_sweep(cfg_path)
    runs = {r.run_id: r for r in cfg.expand()}
    weight = [r for r in runs.values() if r.tcfg.noise_std and r.tcfg.noise_kind == "weight"]
    read = [r for r in runs.values() if r.tcfg.noise_kind == "read"]
    assert len(weight) == 1 and len(read) == 1 and "-readnoise0.05-" in read[0].run_id
    assert "-noise0.05-" in weight[0].run_id
    # the hash of a run without the field set is the hash of its config without the field
    d = weight[0].tcfg.to_dict()
    assert "noise_kind" in d and "noise_kind" not in sweep_config._hashed(weight[0].tcfg)
    assert read[0].eval_keys()[1].startswith("imssa-sigma0.05-relative-")
    cfg_path.write_text(CONFIG + '\n[eval]\nnoise_model = "pink"\n')
    with pytest.raises(sweep_config.SpecError, match="noise_model"):
        sweep_config.load_sweep(cfg_path)


def test_noise_qat_counts_its_training_loop_in_train_minutes(tmp_path, monkeypatch):
    """The noise-QAT loop's time enters metrics["train_minutes"] (it used to hold only the
    calibration stage's: 1.5 minutes recorded for a 46-minute run)."""
    pytest.importorskip("torch", reason="training needs torch (the `train` extra)")
    from qs4d.lab import sweep_run

    cfg_path = grid_config(tmp_path, """
[[grid]]
method = ["qat"]
bits = [8]
noise_std = [0.05]
"train.noise_kind" = ["read"]
""")
    run = next(r for r in sweep_config.load_sweep(cfg_path).expand() if r.tcfg.noise_std)
    base_ckpt = sweep_run.train_base(run.base, None, str(tmp_path / "runs"))
    clock = [1000.0]
    monkeypatch.setattr(sweep_run.time, "time", lambda: clock[0])

    def fake_epoch(*args, **kwargs):  # each QAT epoch "takes" 3 minutes on the fake clock
        clock[0] += 180.0

    monkeypatch.setattr(sweep_run.train_mod, "train_epoch", fake_epoch)
    tcfg = run.tcfg.replace(init=base_ckpt, epochs_float=0, epochs_prune=0, prune_keep=0)
    _, metrics = sweep_run.qat_with_noise(tcfg, run, tmp_path / "run")
    assert metrics["train_minutes"] == 3.0 * tcfg.epochs_qat


def test_a_task_that_never_scores_its_test_split_is_scored_by_the_sweep(tmp_path, monkeypatch):
    """MIT-BIH training never scores DS2 (Task.score_test false); the sweep, a report, scores
    every eval.test_stride-th test example of each run and of its float base (once)."""
    pytest.importorskip("torch", reason="training needs torch (the `train` extra)")
    from qs4d.lab import sweep_run
    from qs4d.models import tasks

    real = tasks.toy_task

    def unscored(cfg):
        return dataclasses.replace(real(cfg), score_test=False)

    monkeypatch.setattr(tasks, "toy_task", unscored)
    cfg_path = tmp_path / "s.toml"
    cfg_path.write_text(CONFIG.replace("bits = [3, 8]", "bits = [8]").replace(
        'method = ["qat", "ptq"]', 'method = ["ptq"]') + "\n[eval]\ntest_stride = 3\n")
    run = sweep_config.load_sweep(cfg_path).expand()[0]
    assert run.eval.test_stride == 3
    runs = str(tmp_path / "runs")
    base_ckpt = sweep_run.train_base(run.base, None, runs)
    assert "float_test_acc" not in sweep_run.base_metrics(base_ckpt)
    res = sweep_run.execute(run, base_ckpt, runs)
    n = len(real(run.tcfg).test[1])
    assert res["metrics"]["test_examples"] == len(range(0, n, 3))
    assert 0 <= res["metrics"]["test_acc"] <= 100
    assert 0 <= res["base_metrics"]["float_test_acc"] <= 100
    assert len(list((tmp_path / "runs" / "_bases").glob("test-*.json"))) == 1
    with pytest.raises(sweep_config.SpecError, match="test_stride"):
        cfg_path.write_text(CONFIG + "\n[eval]\ntest_stride = 0\n")
        sweep_config.load_sweep(cfg_path)
