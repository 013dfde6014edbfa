"""The S4D layer and classifier: convolution mode equals step mode, zero-order hold equals the
matrix exponential, outputs are causal, pruning keeps the strongest modes, BatchNorm folding
leaves eval outputs unchanged.

Glossary: B batch, L sequence length, H channels, P modes, F features, K classes.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.linalg import expm

from qs4d.models.model import S4DClassifier
from qs4d.models.qmodel import attach_quant, calibrate
from qs4d.models.s4d import S4D
from qs4d.runtime.spec import ModelConfig, QuantConfig

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("init", ["lin", "inv"])
def test_convolution_mode_equals_step_mode(init):
    layer = S4D(8, 8, init, dt_min=1e-3, dt_max=1e-1, seed=1)
    u = torch.randn(2, 2000, 8, generator=gen(0))  # (B, L, H)
    with torch.no_grad():
        y_conv = layer(u)  # (B, L, H)
        y_step = layer.forward_recurrent(u)  # (B, L, H)
    assert y_conv.abs().max() > 1.0  # a real signal, not a vanishing one
    assert (y_conv - y_step).abs().max().item() < 1e-4


@pytest.mark.parametrize("init", ["lin", "inv"])
def test_zoh_matches_matrix_exponential(init):
    """Per mode, [[A, B], [0, 0]] * dt exponentiates to [[A_bar, B_bar], [0, 1]]."""
    layer = S4D(3, 4, init, seed=2)
    with torch.no_grad():
        A_bar, B_bar = layer.discretize()  # (H, P) (H, P)
        A = layer.continuous_A().numpy().astype(np.complex128)  # (H, P)
        dt = layer.dt().numpy().astype(np.float64)  # (H,)
    for h in range(3):
        for p in range(4):
            M = expm(np.array([[A[h, p], 1.0], [0.0, 0.0]], np.complex128) * dt[h])
            assert abs(M[0, 0] - complex(A_bar[h, p])) < 1e-5 * max(1.0, abs(M[0, 0]))
            assert abs(M[0, 1] - complex(B_bar[h, p])) < 1e-5 * max(abs(M[0, 1]), 1e-3)


def test_step_mode_equals_complex_simulation():
    """The real-form step (A, B, C row, D~) equals x[k+1] = A_bar x[k] + B_bar u[k],
    y[k] = 2Re(C x[k+1]) + D u[k] simulated in complex128 with expm-discretized matrices."""
    H, P, L = 2, 3, 300
    layer = S4D(H, P, "inv", seed=3)
    u = torch.randn(1, L, H, generator=gen(1))  # (B, L, H)
    with torch.no_grad():
        y = layer.forward_recurrent(u)[0].numpy()  # (L, H)
        A = layer.continuous_A().numpy().astype(np.complex128)  # (H, P)
        dt = layer.dt().numpy().astype(np.float64)  # (H,)
        C = layer.c_complex().numpy().astype(np.complex128)  # (H, P)
        D = layer.D.numpy().astype(np.float64)  # (H,)
    un = u[0].numpy().astype(np.float64)  # (L, H)
    want = np.zeros((L, H))
    for h in range(H):
        for p in range(P):
            M = expm(np.array([[A[h, p], 1.0], [0.0, 0.0]]) * dt[h])
            x = 0j
            for k in range(L):
                x = M[0, 0] * x + M[0, 1] * un[k, h]
                want[k, h] += 2 * (C[h, p] * x).real
        want[:, h] += D[h] * un[:, h]
    np.testing.assert_allclose(y, want, atol=1e-4, rtol=1e-4)


def _small_model(norm: str = "batch", seed: int = 0, **kw) -> S4DClassifier:
    cfg = ModelConfig(d_input=2, d_model=8, d_state=16, n_layers=2, n_classes=3, norm=norm, **kw)
    return S4DClassifier(cfg, seed=seed)


@pytest.mark.parametrize("mode", ["conv", "step", "qat"])
def test_causal(mode):
    """A change of the input at step t changes no output before t (and some output after)."""
    model = _small_model().eval()
    x = torch.randn(2, 120, 2, generator=gen(4))  # (B, L, F)
    if mode == "qat":
        model.fold_norms()
        attach_quant(model, QuantConfig.uniform(8))
        calibrate(model, x)
    t = 70
    x2 = x.clone()
    x2[:, t] += 3.0
    with torch.no_grad():
        a = model(x, recurrent=mode == "step")  # (B, L, K)
        b = model(x2, recurrent=mode == "step")
    if mode == "conv":  # FFT rounding reaches every step; the change itself does not
        assert (a[:, :t] - b[:, :t]).abs().max() < 1e-5
    else:
        assert torch.equal(a[:, :t], b[:, :t])
    assert (a[:, t:] - b[:, t:]).abs().max() > 1e-2


def test_prune_keeps_top_modes_and_shrinks():
    model = _small_model(seed=5)
    with torch.no_grad():  # make mode importance differ strongly across modes
        for blk in model.blocks:
            blk.s4d.C.mul_(torch.rand(8, 8, 1, generator=gen(6)) * 3)
    scores = [blk.s4d.mode_scores() for blk in model.blocks]  # (H, P) each
    params = [{n: p.detach().clone() for n, p in blk.s4d.named_parameters()}
              for blk in model.blocks]
    n_before = model.n_params()
    info = model.prune_modes([3, 5])
    assert info == {"modes_before": [8, 8], "modes_after": [3, 5]}
    assert model.cfg.modes == (3, 5) and model.cfg.layer_modes == (3, 5)
    # each removed mode carries 4 parameters: log_A_re, A_im, Re C, Im C
    assert n_before - model.n_params() == 4 * 8 * ((8 - 3) + (8 - 5))
    for blk, score, before, keep in zip(model.blocks, scores, params, (3, 5)):
        s4d = blk.s4d
        assert s4d.P == keep and s4d.log_A_re.shape == (8, keep) and s4d.C.shape == (8, keep, 2)
        for h in range(8):
            top = set(torch.topk(score[h], keep).indices.tolist())
            idx = sorted(top)  # the kept modes, in their original order
            for name in ("log_A_re", "A_im", "C"):
                assert torch.equal(getattr(s4d, name)[h], before[name][h, idx]), name
            dropped = sorted(set(range(8)) - top)
            if dropped:  # every kept mode is at least as important as every dropped one
                assert score[h, idx].min() >= score[h, dropped].max()
    x = torch.randn(1, 50, 2, generator=gen(7))
    model.eval()
    with torch.no_grad():  # the pruned model still runs, in both modes, and they agree
        assert (model(x) - model(x, recurrent=True)).abs().max() < 1e-4


def test_prune_one_keep_for_all_layers_and_clamps():
    model = _small_model(seed=8)
    assert model.prune_modes(2)["modes_after"] == [2, 2]
    assert model.prune_modes(99)["modes_after"] == [2, 2]  # never grows back
    assert model.cfg.modes == (2, 2)


def test_batchnorm_fold_leaves_eval_outputs_unchanged():
    model = _small_model(seed=9)
    x = torch.randn(4, 60, 2, generator=gen(10))  # (B, L, F)
    model.train()
    with torch.no_grad():  # a few training-mode passes: real running statistics
        for _ in range(5):
            model(x + torch.randn(x.shape, generator=gen(11)))
        for blk in model.blocks:
            blk.norm.weight.uniform_(0.5, 2.0, generator=gen(12))
            blk.norm.bias.normal_(0, 0.3, generator=gen(13))
    model.eval()
    with torch.no_grad():
        before = model(x)
        before_rec = model(x, recurrent=True)
        w_before = model.blocks[0].mix.weight.clone()
        model.fold_norms()
        after = model(x)
        after_rec = model(x, recurrent=True)
    assert all(blk.norm is None for blk in model.blocks)
    assert not torch.equal(w_before, model.blocks[0].mix.weight)  # the fold did something
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(after_rec, before_rec, atol=1e-5, rtol=1e-5)
    model.fold_norms()  # idempotent
    with torch.no_grad():
        torch.testing.assert_close(model(x), before, atol=1e-5, rtol=1e-5)


def test_attach_quant_refuses_unfolded_batchnorm():
    with pytest.raises(ValueError, match="fold"):
        attach_quant(_small_model(), QuantConfig.uniform(8))
