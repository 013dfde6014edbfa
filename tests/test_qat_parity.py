"""The torch QAT recurrent forward is the integer runtime: same state codes and bit-equal
logits at every step as runtime.reference.IntegerStep over export.weights.integer_weights,
for QAT-trained and for PTQ-calibrated models; the exported ONNX step agrees too. Weight
noise is active only in training.

Glossary: B batch, L steps, F features, H width, P modes, K classes.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import F_IN, LABELS, PARITY_CONFIGS, QUANT, build_model, export

import qs4d
from qs4d.export.cli import make_spec
from qs4d.export.weights import check_layout, integer_weights
from qs4d.models.qmodel import forward_quant
from qs4d.runtime.quant import qrange
from qs4d.runtime.reference import IntegerStep
from qs4d.runtime.spec import FrontendConfig

B, L = 3, 1000


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def inputs(seed: int) -> torch.Tensor:
    return torch.randn(B, L, F_IN, generator=torch.Generator().manual_seed(seed))  # (B, L, F)


def check_parity(model, x: torch.Tensor) -> dict:
    """Step the numpy integer reference next to the QAT trace; fail at the first difference."""
    trace: dict = {}
    with torch.no_grad():
        logits = forward_quant(model, x, trace=trace).numpy()  # (B, L, K)
    spec = make_spec(model, FrontendConfig(), LABELS, {})
    w = integer_weights(model)
    check_layout(spec, w)
    step = IntegerStep(spec, w)
    state = step.init_state(B)
    n_layers = spec.model.n_layers
    states = [trace[f"l{i}_state"].numpy() for i in range(n_layers)]  # (B, L, H, 2P) each
    for t in range(L):
        for i in range(n_layers):
            if not np.array_equal(state[i], states[i][:, t]):
                bad = int((state[i] != states[i][:, t]).sum())
                pytest.fail(f"layer {i} state before step {t}: {bad} codes differ")
        lg, state = step(x[:, t].numpy(), state)
        if not np.array_equal(lg, logits[:, t]):
            pytest.fail(f"logits of step {t} differ by {np.abs(lg - logits[:, t]).max()}")
    return {"logits": logits, "states": states, "spec": spec}


def assert_not_trivial(result: dict) -> None:
    """A parity test over all-zero or all-saturated states could not fail."""
    q = result["spec"].quant.state
    _, qmax = qrange(q.bits, q.narrow)
    for i, S in enumerate(result["states"]):
        assert not S[:, 0].any(), f"layer {i}: the state before step 0 is zero"
        nonzero = float((S[:, 1:] != 0).mean())
        saturated = float((np.abs(S) >= qmax).mean())
        assert nonzero > 0.3, f"layer {i}: only {nonzero:.0%} of state codes are nonzero"
        assert saturated < 0.2, f"layer {i}: {saturated:.0%} of state codes saturate"
        assert len(np.unique(S)) > 16, f"layer {i}: too few distinct state codes"
    logits = result["logits"]
    assert np.all(np.isfinite(logits)) and logits.std(axis=1).min() > 0


@pytest.mark.parametrize("name", PARITY_CONFIGS)
def test_qat_forward_equals_integer_step(name):
    model = build_model(name, seed=11, qat_steps=3)
    assert model.qcfg == QUANT[name][0]
    result = check_parity(model, inputs(12))
    assert_not_trivial(result)


@pytest.mark.parametrize("name", ["int8", "pt6"])
def test_ptq_calibrated_model_equals_integer_step(name):
    model = build_model(name, seed=13, qat_steps=0)  # calibrate() only
    result = check_parity(model, inputs(14))
    assert_not_trivial(result)


@pytest.mark.parametrize("name", PARITY_CONFIGS)
def test_exported_onnx_step_equals_qat_forward(name, tmp_path):
    model = build_model(name, seed=15, qat_steps=2)
    x = inputs(16)[:, :300]  # (B, T, F)
    with torch.no_grad():
        want = forward_quant(model, x).numpy()  # (B, T, K)
    bundle = export(model, tmp_path / name)
    for backend in ("onnx", "numpy"):
        got = qs4d.load(bundle, backend=backend).stream(batch=B).accept(x.numpy())
        np.testing.assert_array_equal(got, want, err_msg=backend)


def test_trace_state_is_the_state_before_each_step():
    model = build_model("int8", seed=17, qat_steps=0)
    x = inputs(18)[:, :50]
    trace: dict = {}
    with torch.no_grad():
        forward_quant(model, x, trace=trace)
    S = trace["l0_state"]  # (B, T, H, 2P)
    assert S.shape == (B, 50, model.cfg.d_model, 2 * model.cfg.layer_modes[0])
    assert not S[:, 0].any() and S[:, 1].any()


def test_weight_noise_only_in_training():
    for name in (None, "int8"):
        model = build_model(name, seed=19, qat_steps=0)
        model.fold_norms()  # training-mode BatchNorm would move its statistics
        x = inputs(20)[:, :40]
        with torch.no_grad():
            model.eval()
            clean = model(x)
            model.noise_std = 0.1
            model.train()
            a, b = model(x), model(x)
            assert not torch.equal(a, b), f"{name}: noise must differ between calls"
            model.eval()
            assert torch.equal(model(x), clean), f"{name}: no noise in eval"
            model.noise_std = 0.0
            model.train()
            assert torch.equal(model(x), model(x)), f"{name}: no noise at noise_std 0"


def test_export_ignores_training_noise():
    model = build_model("w4", seed=21, qat_steps=0)
    clean = integer_weights(model)
    model.noise_std = 0.2
    model.train()
    noisy_export = integer_weights(model)
    assert model.training and model.noise_std == 0.2  # restored after the export
    assert clean.keys() == noisy_export.keys()
    for k in clean:
        np.testing.assert_array_equal(clean[k], noisy_export[k], err_msg=k)


def test_read_noise_only_in_training_and_relative_per_product():
    model = build_model("int8", seed=23, qat_steps=0)
    model.fold_norms()
    x = inputs(24)[:, :40]
    with torch.no_grad():
        model.eval()
        clean = model(x)
        model.noise_std, model.noise_kind = 0.05, "read"
        model.train()
        a, b = model(x), model(x)
        assert not torch.equal(a, b) and not torch.equal(a, clean), "read noise in training"
        assert not model.noisy(torch.ones(3)).ne(1).any(), "no weight noise with kind 'read'"
        model.eval()
        assert torch.equal(model(x), clean), "no read noise in eval"
        model.train()
        # a row's noise is N(0, sigma^2 var): var = sum of its squared products
        acc, var = torch.zeros(200_000), torch.full((200_000,), 9.0)
        z = model.read_noisy(acc, lambda: var) / (0.05 * 3.0)
        assert abs(float(z.std()) - 1) < 0.02 and abs(float(z.mean())) < 0.02
        model.noise_kind = "weight"
        assert torch.equal(model.read_noisy(acc, var), acc), "kind 'weight': no read noise"
