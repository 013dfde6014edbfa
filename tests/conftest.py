"""Shared fixtures: tiny random QAT models and the bundles they export (integer and float).

Glossary: B batch/streams, T steps, L sequence length, F features, H width, N state size,
P modes, K classes.

Models are tiny (H = 8, N = 8, 2 layers) so every test that builds one stays fast; they are
random but not trivial: BatchNorm statistics are random (so folding changes the weights), and
QAT models take a few optimizer steps after calibration (so scales and weights are not the
calibrated values). torch is imported lazily: runtime-only tests never pay for it.

tests/ is deliberately not a package (pytest's rootdir import mode puts it on sys.path, which
`from test_crossbar import ...` relies on).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from qs4d.runtime.spec import FrontendConfig, QuantConfig

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "models" / "zoo"
F_IN, H, N, K = 2, 8, 8, 4
LABELS = ("a", "b", "c", "d")

# name -> (QuantConfig, modes kept per layer after pruning or None)
QUANT = {
    "int8": (QuantConfig.uniform(8), None),
    "w4": (QuantConfig.uniform(8, weight_bits=4), (3, 2)),  # pruned, then 4-bit weights
    "tern": (QuantConfig.uniform(8, weight_bits=2), None),
    "pt6": (QuantConfig.uniform(6, per_channel=False), None),  # per-tensor, 6 bits
}
PARITY_CONFIGS = ("int8", "w4", "tern")  # the three configs of the QAT parity suite


def zoo_bundles() -> list:
    """Bundle directories under models/zoo (those with a manifest)."""
    return sorted(p.parent for p in ZOO.glob("*/manifest.json"))


def _is_integer(bundle: Path) -> bool:
    quant = json.loads((bundle / "spec.json").read_text()).get("quant", {})
    return any(isinstance(v, dict) and v.get("bits", 0) > 0 for v in quant.values())


INT_BUNDLES = list(QUANT) + [f"zoo/{p.name}" for p in zoo_bundles() if _is_integer(p)]
FLOAT_BUNDLES = ["float"] + [f"zoo/{p.name}" for p in zoo_bundles() if not _is_integer(p)]


def build_model(name: str | None, seed: int = 0, qat_steps: int = 3):
    """A tiny S4DClassifier: float (name None) or QAT with the config QUANT[name].

    Float models keep BatchNorm with random statistics; QAT models are folded, pruned if the
    config says so, calibrated on random data, then trained for qat_steps steps.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _build_model(name, seed, qat_steps)
    finally:
        torch.set_num_threads(threads)


def _build_model(name: str | None, seed: int, qat_steps: int):
    import torch

    from qs4d.models.model import S4DClassifier
    from qs4d.models.qmodel import attach_quant, calibrate
    from qs4d.runtime.spec import ModelConfig

    g = torch.Generator().manual_seed(seed)
    cfg = ModelConfig(d_input=F_IN, d_model=H, d_state=N, n_layers=2, n_classes=K, norm="batch")
    m = S4DClassifier(cfg, seed=seed)
    with torch.no_grad():
        for blk in m.blocks:
            bn = blk.norm
            bn.running_mean.copy_(0.3 * torch.randn(2 * H, generator=g))
            bn.running_var.copy_(0.5 + torch.rand(2 * H, generator=g))
            bn.weight.copy_(1 + 0.3 * torch.randn(2 * H, generator=g))
            bn.bias.copy_(0.2 * torch.randn(2 * H, generator=g))
    m.eval()
    if name is None:
        return m
    qcfg, modes = QUANT[name]
    if modes is not None:
        m.prune_modes(list(modes))
    m.fold_norms()
    attach_quant(m, qcfg)
    x = torch.randn(4, 200, F_IN, generator=g)  # (B, L, F)
    calibrate(m, x)
    if qat_steps:
        y = torch.randint(0, K, (4,), generator=g)  # (B,)
        opt = torch.optim.Adam(m.parameters(), lr=1e-2)
        m.train()
        for _ in range(qat_steps):
            loss = torch.nn.functional.cross_entropy(m.pool(m(x[:, :48])), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        m.eval()
    return m


def export(model, out: Path, calib_seed: int = 0) -> Path:
    """export_model with a small calibration set (T, B, F) for the crossbar DAC/ADC ranges."""
    from qs4d.export.cli import export_model

    rng = np.random.default_rng(calib_seed)
    calib = rng.standard_normal((200, 4, model.cfg.d_input)).astype(np.float32)  # (T, B, F)
    return export_model(model, out, frontend=FrontendConfig(kind="identity"), labels=LABELS,
                        metrics={"test_acc": 0.0}, name=out.name, calib_x=calib)


@pytest.fixture(scope="module")
def torch_one_thread():
    """Tiny tensors: one intra-op thread is several times faster than two on a shared box."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def bundle_path(tmp_path_factory):
    """name -> bundle directory: a QUANT name, "float", or "zoo/NAME"; built once per session."""
    cache: dict = {}
    root = tmp_path_factory.mktemp("bundles")

    def get(name: str) -> Path:
        if name.startswith("zoo/"):
            return ZOO / name[4:]
        if name not in cache:
            model = build_model(None if name == "float" else name, seed=len(cache) + 1)
            cache[name] = export(model, root / name)
        return cache[name]

    return get


@pytest.fixture(scope="session", params=INT_BUNDLES)
def int_bundle(request, bundle_path) -> Path:
    """Every integer bundle: the conftest ones and every bundle in models/zoo."""
    return bundle_path(request.param)


@pytest.fixture(scope="session", params=FLOAT_BUNDLES)
def float_bundle(request, bundle_path) -> Path:
    """Every float bundle: the conftest one and the float bundles in models/zoo."""
    return bundle_path(request.param)


def steps_input(spec, steps: int, rng: np.random.Generator, batch: int | None = None):
    """Raw input that makes exactly `steps` model steps through the spec's front end:
    (T, F) rows for identity, audio samples for logmel, ECG samples for ecg; (B, ...) when
    batch is given. The profiler's own helper, so tests and benchmarks feed the same input."""
    from qs4d.runtime.costs import raw_input

    return raw_input(spec, steps, rng, batch)
