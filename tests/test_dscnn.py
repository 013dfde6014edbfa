"""The MLPerf Tiny DS-CNN baseline: shapes and TensorFlow 'same' padding, parameters and MACs
against the reference's closed forms, BN folding, float and int8 ONNX under ONNX Runtime,
training through the trainer's loop (checkpoints, resume, `qs4d train` dispatch), the card.

Glossary: B batch, L frames, F features, C filters, K classes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the DS-CNN baseline needs torch")
onnx = pytest.importorskip("onnx", reason="the DS-CNN export needs onnx")
pytest.importorskip("onnxruntime.quantization", reason="int8 export needs onnxruntime")

from qs4d.export import dscnn as dx  # noqa: E402
from qs4d.export.dscnn_card import dscnn_rows, side_by_side, zoo_rows  # noqa: E402
from qs4d.models import dscnn_train  # noqa: E402
from qs4d.models.dscnn import DSCNN, DSCNNConfig, reference_params, same_pad  # noqa: E402
from qs4d.models.tasks import Task  # noqa: E402
from qs4d.runtime.spec import FrontendConfig, TrainConfig  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_one_thread")
ROOT = Path(__file__).resolve().parents[1]
TINY = DSCNNConfig(n_frames=20, n_features=8, n_classes=4, filters=8, n_blocks=2)


def _randomize_bn(model: DSCNN, seed: int = 0) -> DSCNN:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(0.3 * torch.randn(m.num_features, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
                m.weight.copy_(1 + 0.2 * torch.randn(m.num_features, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.num_features, generator=g))
    return model.eval()


def test_same_padding_matches_tensorflow():
    assert same_pad(49, 10, 2) == (4, 5)  # the reference input: the odd pad after
    assert same_pad(98, 10, 2) == (4, 4) and same_pad(40, 4, 2) == (1, 1)
    assert same_pad(10, 4, 2) == (1, 1) and same_pad(5, 3, 1) == (1, 1)


def test_shapes_and_reference_geometry():
    m = DSCNN(TINY).eval()
    assert m(torch.randn(3, 20, 8)).shape == (3, 4)  # (B, K)
    assert m.pool(torch.zeros(3, 4)).shape == (3, 4)
    with pytest.raises(ValueError, match=r"\(B, 20, 8\)"):
        m(torch.randn(3, 21, 8))
    ref = DSCNN(DSCNNConfig(n_frames=49, n_features=10))
    h = ref.conv(ref.pad(torch.zeros(1, 1, 49, 10)))
    assert h.shape == (1, 64, 25, 5)  # 'same' with stride 2: ceil(49/2) x ceil(10/2)


def test_params_and_macs_match_the_reference_closed_forms():
    m = DSCNN(DSCNNConfig())  # 98 x 40 log-mel input, 12 classes
    assert m.n_params_total() == reference_params() == 24908  # the Keras summary's total
    assert m.n_params() == reference_params(bn_stats=False) == 23756
    C, K = 64, 12
    for (L, F), (Lo, Fo) in (((49, 10), (25, 5)), ((98, 40), (49, 20))):
        macs = DSCNN(DSCNNConfig(n_frames=L, n_features=F)).macs()
        assert macs["total"] == Lo * Fo * (40 * C + 4 * (9 * C + C * C)) + C * K, (L, F)
    assert DSCNN(DSCNNConfig(n_frames=49, n_features=10)).macs()["total"] == 2_656_768


def test_folding_keeps_the_function():
    m = _randomize_bn(DSCNN(TINY, seed=1))
    f = m.folded()
    x = torch.randn(5, 20, 8)
    assert not any(isinstance(k, torch.nn.BatchNorm2d) for k in f.modules())
    torch.testing.assert_close(f(x), m(x), rtol=1e-4, atol=1e-5)


def test_float_and_int8_onnx_run_and_agree(tmp_path):
    m = _randomize_bn(DSCNN(TINY, seed=2))
    fp, qp = tmp_path / "f.onnx", tmp_path / "q.onnx"
    dx.export_float(m, fp, {"labels": json.dumps(list("abcd"))})
    X = np.random.default_rng(0).standard_normal((64, 20, 8)).astype(np.float32)
    dx.export_int8(fp, qp, X[:48])
    ref = m(torch.from_numpy(X)).detach().numpy()  # (B, K)
    yf = dx.session(fp).run(None, {"x": X})[0]
    yq = dx.session(qp).run(None, {"x": X})[0]
    np.testing.assert_allclose(yf, ref, rtol=1e-4, atol=1e-4)
    assert np.corrcoef(yf.ravel(), yq.ravel())[0, 1] > 0.95
    ops = {n.op_type for n in onnx.load(str(qp)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    y = yf.argmax(-1)
    assert dx.onnx_accuracy(dx.session(fp), X, y) == 100.0
    # memory: every folded weight and bias at 32 bits; int8 kernels at 8 and biases at 32
    f = m.folded()
    kernels = sum(p.numel() for n, p in f.named_parameters() if n.endswith("weight"))
    biases = sum(p.numel() for n, p in f.named_parameters() if n.endswith("bias"))
    assert dx.weight_memory(fp)["weight_bits"] == 32 * (kernels + biases)
    wq = dx.weight_memory(qp)
    assert wq["weight_bits"] == 8 * kernels + 32 * biases and wq["total_bits"] > wq["weight_bits"]
    meta = {p.key: p.value for p in onnx.load(str(fp)).metadata_props}
    assert json.loads(meta["labels"]) == list("abcd")


def _toy_task(n: int = 256, seed: int = 0) -> Task:
    """Class k lights up mel band 2k: learnable in a few steps."""
    def split(n, s):
        g = torch.Generator().manual_seed(s)
        y = torch.randint(0, 4, (n,), generator=g)
        X = 0.5 * torch.randn(n, 20, 8, generator=g)
        X[torch.arange(n), :, 2 * y] += 3.0
        return X, y
    return Task(train=split(n, seed), val=split(32, seed + 1), test=split(32, seed + 2),
                labels=tuple("abcd"), frontend=FrontendConfig(kind="identity"),
                extra={"real": split(16, seed + 3)})


class _Stop(Exception):
    pass


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)`")
def test_training_checkpoints_and_exact_resume(tmp_path, monkeypatch):
    tcfg = TrainConfig(task="toy", batch_size=16, epochs_float=2, lr=0.02)
    dcfg = TINY.replace(dropout_in=0.0, dropout_out=0.0)
    task = _toy_task()
    model, m = dscnn_train.run(tcfg, dcfg, tmp_path / "a", task=task)
    assert m["test_acc"] >= 80.0 and "real_acc" in m and m["params"] == model.n_params()
    assert json.loads((tmp_path / "a" / "metrics.json").read_text()) == m
    ck = torch.load(tmp_path / "a" / "final.pt", weights_only=True)
    assert ck["arch"] == "dscnn" and ck["dscnn"]["filters"] == 8
    rebuilt, ck = dscnn_train.load(tmp_path / "a" / "final.pt")
    assert ck["train_cfg"] == tcfg and rebuilt.cfg == model.cfg
    # interrupted after the first epoch's checkpoint, then --resume: the straight run's weights
    save = dscnn_train.save

    def save_then_stop(path, *args, **kw):
        save(path, *args, **kw)
        if path.name == "ckpt.pt" and kw["epoch"] == 1:
            raise _Stop

    with monkeypatch.context() as mp:
        mp.setattr(dscnn_train, "save", save_then_stop)
        with pytest.raises(_Stop):
            dscnn_train.run(tcfg, dcfg, tmp_path / "b", task=task)
    assert not (tmp_path / "b" / "final.pt").exists()
    resumed, m2 = dscnn_train.run(tcfg, dcfg, tmp_path / "b", resume=True, task=task)
    assert m2["test_acc"] == m["test_acc"]
    for (k, a), b in zip(model.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


def test_qs4d_train_hands_a_dscnn_recipe_to_the_baseline(tmp_path, capsys):
    from qs4d.cli import main as qs4d_main

    recipe = tmp_path / "r.toml"
    recipe.write_text('[dscnn]\nfilters = 8\nn_blocks = 1\n\n[train]\ntask = "toy"\n'
                      'epochs_float = 1\nmax_train = 64\nbatch_size = 32\n')
    assert qs4d_main(["train", "--config", str(recipe), "--out", str(tmp_path / "run")]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["params"] == DSCNN(DSCNNConfig(filters=8, n_blocks=1, n_classes=10,
                                                  n_frames=64, n_features=1)).n_params()
    assert json.loads(capsys.readouterr().out)["test_acc"] == metrics["test_acc"]


def test_shipped_recipe_is_the_reference_architecture():
    tcfg, dcfg = dscnn_train.load_dscnn_recipe(str(ROOT / "models/recipes/kws-dscnn.toml"))
    assert tcfg.task == "kws" and dcfg == DSCNNConfig()
    assert dscnn_train.is_dscnn_recipe(str(ROOT / "models/recipes/kws-dscnn.toml"))
    assert not dscnn_train.is_dscnn_recipe(str(ROOT / "models/recipes/kws-qat4.toml"))


def test_side_by_side_table_reads_the_zoo():
    rows = zoo_rows(ROOT / "models" / "zoo")
    names = {r["model"] for r in rows}
    logmel = {p.parent.name for p in (ROOT / "models" / "zoo").glob("*/spec.json")
              if json.loads(p.read_text())["frontend"]["kind"] == "logmel"}
    assert names and names == logmel  # the log-mel (keyword) bundles, every one
    m = {"params": 1, "macs": 2, "onnx_float_weight_bits": 32, "onnx_int8_weight_bits": 8,
         "onnx_float_test_acc": 90.0, "onnx_int8_test_acc": 89.0}
    table = side_by_side(rows + dscnn_rows(m, "kws-dscnn"))
    assert table.count("\n") == len(rows) + 3 and "kws-dscnn (int8)" in table


@pytest.mark.parametrize("name", ["kws-dscnn", "sc12-dscnn"])
def test_committed_baseline_files_match_their_metrics(name):
    from qs4d.export.dscnn_card import card

    d = ROOT / "models" / "baselines" / name
    if not (d / "metrics.json").exists():
        pytest.skip("no committed DS-CNN baseline")
    m = json.loads((d / "metrics.json").read_text())
    x = np.zeros((2, *m["input_shape"]), np.float32)  # (B, L, F)
    for tag in ("float", "int8"):
        path = d / f"dscnn_{tag}.onnx"
        assert dx.weight_memory(path)["weight_bits"] == m[f"onnx_{tag}_weight_bits"]
        assert dx.session(path).run(None, {"x": x})[0].shape == (2, m["dscnn"]["n_classes"])
    text = card(m, ROOT / "models" / "zoo", d)
    assert f"{m['onnx_int8_test_acc']:.2f}" in text and f"{m['macs']:,}" in text
