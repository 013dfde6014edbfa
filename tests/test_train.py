"""Training on the small task: float learns it, 4-bit QAT stays within 2 points, checkpoints
load with weights_only=True, --resume continues exactly, and `qs4d train` / `qs4d export` work
in-process on a tiny recipe.

Glossary: B batch, L sequence length, F features, K classes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import qs4d
from qs4d.cli import main as qs4d_main
from qs4d.models import checkpoint
from qs4d.models import train as train_mod
from qs4d.models.tasks import toy_sines
from qs4d.runtime.spec import ModelConfig, QuantConfig, TrainConfig

pytestmark = pytest.mark.usefixtures("torch_one_thread")


# toy task (noisy sines, 10 classes, L = 64), sized to train in seconds
TOY = TrainConfig(task="toy", seed=0, batch_size=32, epochs_float=5, epochs_qat=1, lr=0.01,
                  lr_qat=0.002, max_train=768)
TOY_MODEL = ModelConfig(d_model=32, d_state=16, n_layers=2, norm="batch")


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy")
    model, metrics = train_mod.run(TOY, TOY_MODEL, QuantConfig.uniform(8, weight_bits=4), out)
    return model, metrics, out


@pytest.mark.slow
def test_float_learns_and_4bit_qat_stays_close(toy_run):
    _, metrics, out = toy_run
    assert metrics["float_test_acc"] >= 95.0, metrics
    assert metrics["qat_test_acc"] >= metrics["float_test_acc"] - 2.0, metrics
    assert metrics["test_acc"] == metrics["qat_test_acc"]
    assert json.loads((out / "metrics.json").read_text()) == metrics


@pytest.mark.slow
def test_final_metrics_are_the_last_phase_ones_and_match_the_reloaded_model(toy_run):
    """The final accuracies reuse the last phase's end-of-phase evaluation (the model is
    unchanged since), and a model reloaded from final.pt measures the same."""
    _, metrics, out = toy_run
    assert {k: metrics[k] for k in ("val_acc", "test_acc")} == \
        {"val_acc": metrics["qat_val_acc"], "test_acc": metrics["qat_test_acc"]}
    task = train_mod.load_task(TOY)
    rebuilt, _ = checkpoint.load(out / "final.pt")
    assert train_mod.evaluate(rebuilt, task.test) == metrics["test_acc"]
    assert train_mod.evaluate(rebuilt, task.val) == metrics["val_acc"]


@pytest.mark.slow
def test_checkpoint_loads_weights_only_and_rebuilds_the_model(toy_run):
    model, metrics, out = toy_run
    for name in ("final.pt", "ckpt.pt"):
        ck = torch.load(out / name, map_location="cpu", weights_only=True)
        assert ck["model"]["d_model"] == 32 and ck["quant"] is not None
    ck = torch.load(out / "final.pt", weights_only=True)
    assert ck["phase"] == "done" and ck["folded"] and ck["metrics"] == metrics
    rebuilt, ck2 = checkpoint.load(out / "final.pt")
    assert ck2["train_cfg"] == TOY and rebuilt.cfg == model.cfg
    assert rebuilt.qcfg == QuantConfig.uniform(8, weight_bits=4)
    x, _ = toy_sines(8, seed=5)  # (B, L, F)
    model.eval()
    rebuilt.eval()
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))


class _Stop(Exception):
    pass


def _interrupt_after(monkeypatch, phase: str, epoch: int) -> None:
    """Make training die right after the checkpoint of (phase, epoch) is written."""
    save = checkpoint.save

    def save_then_stop(path, model, **kw):
        save(path, model, **kw)
        if Path(path).name == "ckpt.pt" and (kw["phase"], kw["epoch"]) == (phase, epoch):
            raise _Stop
    monkeypatch.setattr(checkpoint, "save", save_then_stop)


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)`")
@pytest.mark.parametrize("distill", [0.0, 0.5])
def test_resume_continues_exactly(tmp_path, monkeypatch, distill):
    """Interrupted in the float phase and again in the QAT phase, resumed runs end with the
    same weights and metrics as one straight run (with distillation: the resumed QAT phase's
    teacher, rebuilt from float.pt, is the straight run's)."""
    tcfg = TrainConfig(task="toy", seed=3, batch_size=32, epochs_float=2, epochs_qat=2,
                       lr=0.01, lr_qat=0.002, max_train=64, qat_distill=distill)
    mcfg = ModelConfig(d_model=8, d_state=8, n_layers=1)
    qcfg = QuantConfig.uniform(8)
    straight, m_straight = train_mod.run(tcfg, mcfg, qcfg, tmp_path / "straight")

    out = tmp_path / "resumed"
    with monkeypatch.context() as mp:
        _interrupt_after(mp, "float", 1)
        with pytest.raises(_Stop):
            train_mod.run(tcfg, mcfg, qcfg, out)
    ck = torch.load(out / "ckpt.pt", weights_only=True)
    assert (ck["phase"], ck["epoch"], ck["quant"]) == ("float", 1, None)
    assert not (out / "final.pt").exists()
    with monkeypatch.context() as mp:
        _interrupt_after(mp, "qat", 1)
        with pytest.raises(_Stop):
            train_mod.run(tcfg, mcfg, qcfg, out, resume=True)
    ck = torch.load(out / "ckpt.pt", weights_only=True)
    assert (ck["phase"], ck["epoch"]) == ("qat", 1) and ck["quant"] is not None
    assert "float_test_acc" in ck["metrics"] and "ptq_val_acc" in ck["metrics"]
    resumed, m_resumed = train_mod.run(tcfg, mcfg, qcfg, out, resume=True)

    drop = {"train_minutes"}
    assert {k: v for k, v in m_resumed.items() if k not in drop} == \
        {k: v for k, v in m_straight.items() if k not in drop}
    sd_a, sd_b = straight.state_dict(), resumed.state_dict()
    assert sd_a.keys() == sd_b.keys()
    for k in sd_a:
        assert torch.equal(sd_a[k], sd_b[k]), k
    assert torch.load(out / "final.pt", weights_only=True)["phase"] == "done"


def test_resume_without_checkpoint_starts_fresh(tmp_path):
    tcfg = TrainConfig(task="toy", seed=1, batch_size=32, epochs_float=1, epochs_qat=0,
                       max_train=32)
    mcfg = ModelConfig(d_model=4, d_state=4, n_layers=1)
    _, m = train_mod.run(tcfg, mcfg, QuantConfig(), tmp_path / "r", resume=True)
    assert "float_test_acc" in m and "qat_test_acc" not in m


TINY_RECIPE = """\
[model]
d_model = 8
d_state = 8
n_layers = 1

[quant]
bits = 8
weight_bits = 4

[train]
task = "toy"
batch_size = 32
epochs_float = 1
epochs_qat = 1
max_train = 64
"""


def test_cli_train_then_export_writes_a_bundle_that_loads(tmp_path, capsys):
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(TINY_RECIPE)
    run_dir, bundle = tmp_path / "run", tmp_path / "bundle"
    assert qs4d_main(["train", "--config", str(recipe), "--out", str(run_dir),
                      "--set", "train.seed=2", "--set", "model.init=inv"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert "qat_test_acc" in printed
    ck = torch.load(run_dir / "final.pt", weights_only=True)
    assert ck["train"]["seed"] == 2 and ck["model"]["init"] == "inv"
    assert qs4d_main(["export", str(run_dir / "final.pt"), "--out", str(bundle),
                      "--calib", "4", "--name", "tiny"]) == 0
    models = {b: qs4d.load(bundle, backend=b) for b in ("onnx", "numpy", "imssa")}
    spec = models["onnx"].spec
    assert spec.name == "tiny" and spec.model.d_model == 8 and spec.model.norm == "none"
    assert spec.quant == QuantConfig.uniform(8, weight_bits=4)
    assert len(models["onnx"].labels) == spec.model.n_classes == 10
    x = toy_sines(2, seed=9)[0].numpy()  # (B, L, F)
    out = {b: m.stream(batch=2).accept(x) for b, m in models.items()}
    np.testing.assert_array_equal(out["onnx"], out["numpy"])
    assert np.abs(out["imssa"] - out["numpy"]).max() < 0.5 * np.abs(out["numpy"]).max()
    # the bundle computes what the trained QAT model computes
    model, _ = checkpoint.load(run_dir / "final.pt")
    model.eval()
    with torch.no_grad():
        want = model(torch.tensor(x)).numpy()  # (B, L, K)
    np.testing.assert_array_equal(out["onnx"], want)


def test_distillation_pulls_towards_the_frozen_float_teacher():
    """KL(teacher || model) is 0 for the teacher's own logits and positive otherwise; its
    gradient reaches the model, never the teacher; qat_distill is checked to lie in [0, 1]."""
    from qs4d.models.model import S4DClassifier
    from qs4d.runtime.spec import SpecError

    model = S4DClassifier(ModelConfig(d_input=3, d_model=8, d_state=4, n_layers=1, n_classes=4))
    model.eval()
    teacher = train_mod.make_teacher(model, TrainConfig(qat_distill=0.5), Path("."), True)
    assert teacher is not model and not any(p.requires_grad for p in teacher.parameters())
    assert train_mod.make_teacher(model, TrainConfig(), Path("."), True) is None
    x = torch.randn(5, 7, 3)
    same = train_mod.distill_loss(model.pool(model(x)), teacher, x)
    assert float(same.detach()) == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        model.dec.bias.add_(torch.tensor([2.0, 0.0, 0.0, -1.0]))
    moved = train_mod.distill_loss(model.pool(model(x)), teacher, x)
    assert float(moved.detach()) > 0.05
    moved.backward()
    assert model.dec.bias.grad is not None and model.dec.bias.grad.abs().sum() > 0
    for bad in (-0.1, 1.5):
        with pytest.raises(SpecError, match="qat_distill"):
            TrainConfig(qat_distill=bad)
