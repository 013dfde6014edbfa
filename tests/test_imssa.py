"""IMSSA simulator: ideal parity with FloatStep, noise statistics, drift, converters, counters.

Glossary: T steps, B streams, F features, H width, P modes, K classes; n arrays, R/C array
rows/cols, S signals and O outputs of a group.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_crossbar import ALL, calib, make_spec, make_weights  # tests/ is on sys.path

from qs4d.export.crossbar import build_crossbar, s4d_block, write_crossbar
from qs4d.runtime.crossbar_io import block_layout, s4d_kinds
from qs4d.runtime.imssa import ImssaStep, s4d_unblock
from qs4d.runtime.reference import FloatStep, dequantize_weights, rotate
from qs4d.runtime.spec import CrossbarConfig, SpecError


def run(step, x: np.ndarray) -> tuple:
    """Logits (T, B, K) and the final state of a step over x (T, B, F)."""
    state, ys = step.init_state(x.shape[1]), []
    for xt in x:
        y, state = step(xt, state)
        ys.append(y)
    return np.stack(ys), state


def rel(a, b) -> float:
    return float(np.abs(np.asarray(a) - b).max() / np.abs(b).max())


@pytest.fixture(scope="module")
def model():
    spec = make_spec((4, 40), H=8)
    return spec, make_weights(spec, seed=5)


# ------------------------------------------------------------------ (a) ideal parity


@pytest.mark.parametrize("R,C,layers,per_channel", [
    (64, 64, ("s4d",), True),  # P=4 blocks share arrays, P=40 blocks split both ways
    (128, 128, ALL, True),  # every block fits
    (32, 48, ALL, False),  # everything split, per-tensor scales
    (16, 16, ("s4d", "mix"), False),
])
def test_ideal_equals_float_step(R, C, layers, per_channel):
    spec = make_spec((4, 40), H=8, per_channel=per_channel)
    w = make_weights(spec, seed=7)
    cfg = CrossbarConfig(array_rows=R, array_cols=C, layers=layers)
    sim = ImssaStep(spec, w, build_crossbar(spec, w, cfg), cfg)
    x = calib(spec, T=200, B=4, seed=2)
    y_ref, s_ref = run(FloatStep(spec, dequantize_weights(spec, w)), x)
    y_sim, s_sim = run(sim, x)
    assert np.abs(y_ref).max() > 0.1 and min(np.abs(s).max() for s in s_ref) > 0.1
    assert rel(y_sim, y_ref) < 1e-5
    for a, b in zip(s_sim, s_ref):
        assert a.dtype == np.float32 and rel(a, b) < 1e-5


def test_block_layout_matches_reference_step():
    """The block times [s; u; u] equals the float step of the integer codes (DESIGN section 3)."""
    rng = np.random.default_rng(0)
    H, P = 3, 5
    A, Bm = rng.integers(-9, 10, (H, 2, P)), rng.integers(-9, 10, (H, 2, P))
    C, D = rng.integers(-9, 10, (H, 2 * P)), rng.integers(-9, 10, H)
    M = s4d_block(A, Bm, C, D)  # (H, 2P+1, 2P+2)
    s, u = rng.normal(size=(H, 2 * P)), rng.normal(size=H)
    out = np.einsum("hrc,hc->hr", M, np.c_[s, u, u])  # (H, 2P+1)
    ar, ai = rotate(A[:, 0], A[:, 1], s[:, :P], s[:, P:])
    np.testing.assert_allclose(out[:, :P], ar + Bm[:, 0] * u[:, None])
    np.testing.assert_allclose(out[:, P:2 * P], ai + Bm[:, 1] * u[:, None])
    np.testing.assert_allclose(out[:, 2 * P], (C * s).sum(1) + D * u)
    back = s4d_unblock(M)
    for k, v in {"A": A, "B": Bm, "C": C, "D": D}.items():
        np.testing.assert_array_equal(back[k], v)
    assert (s4d_kinds(P) > 0).sum() == 8 * P + 1


def test_nothing_mapped_is_float_step_bit_for_bit(model):
    spec, w = model
    cb = build_crossbar(spec, w, CrossbarConfig(array_rows=64, array_cols=64))
    sim = ImssaStep(spec, w, cb, CrossbarConfig(array_rows=64, array_cols=64, layers=()))
    x = calib(spec, T=20, B=2)
    np.testing.assert_array_equal(run(sim, x)[0], run(FloatStep(spec, dequantize_weights(spec, w)), x)[0])


def test_loads_a_written_folder(model, tmp_path):
    spec, w = model
    cfg = CrossbarConfig(array_rows=64, array_cols=64)
    cb = build_crossbar(spec, w, cfg)
    write_crossbar(tmp_path, cb)
    x = calib(spec, T=10, B=2)
    np.testing.assert_array_equal(run(ImssaStep(spec, w, tmp_path, cfg), x)[0],
                                  run(ImssaStep(spec, w, cb, cfg), x)[0])


def test_rejects_mismatched_tables(model):
    spec, w = model
    cfg = CrossbarConfig(array_rows=64, array_cols=64)
    cb = build_crossbar(spec, w, cfg)
    with pytest.raises(ValueError, match="array_rows/cols"):
        ImssaStep(spec, w, cb, cfg.replace(array_rows=128))
    with pytest.raises(ValueError, match=r"weights\['l0\.A'\]"):
        ImssaStep(spec, make_weights(spec, seed=99), cb, cfg)
    with pytest.raises(ValueError, match="calibrated"):
        ImssaStep(spec, w, cb, cfg.replace(adc_bits=8))
    with pytest.raises(ValueError, match=r"no group \['enc'"):
        ImssaStep(spec, w, cb, cfg.replace(layers=("s4d", "enc")))


# ------------------------------------------------------------------ (b) noise and drift


@pytest.fixture(scope="module")
def noisy(model):
    spec, w = model
    cfg = CrossbarConfig(g_min=10.0, g_max=40.0, array_rows=64, array_cols=64, sigma_prog=0.02,
                         sigma_read=0.03, seed=11)
    cb = build_crossbar(spec, w, cfg)
    return spec, w, cfg, cb, ImssaStep(spec, w, cb, cfg)


def test_programming_noise_sigma(noisy):
    _, _, cfg, cb, sim = noisy
    want = cfg.sigma_prog * (cfg.g_max - cfg.g_min)
    errs = []
    for name in cb.groups:
        gp, gm = sim.conductances(name)
        sl = cb.arrays(name)
        errs += [gp - cb.tables["G_plus"][sl], gm - cb.tables["G_minus"][sl]]
    e = np.concatenate([x.ravel() for x in errs])
    assert e.size > 100_000
    assert abs(e.std() / want - 1) < 0.05 and abs(e.mean()) < 5 * want / np.sqrt(e.size)
    first = sim.conductances("l0.s4d")[0].copy()
    np.testing.assert_array_equal(sim.conductances("l0.s4d")[0], first)  # once per programming
    sim.reprogram(12)
    assert np.abs(sim.conductances("l0.s4d")[0] - first).max() > 0
    sim.reprogram(cfg.seed)
    np.testing.assert_array_equal(sim.conductances("l0.s4d")[0], first)  # seeded


def test_read_noise_sigma_per_device_and_in_currents(noisy):
    _, _, cfg, cb, sim = noisy
    want = cfg.sigma_read * (cfg.g_max - cfg.g_min)
    gp, gm = sim.conductances("l1.s4d")
    rp, rm = sim.read_conductances("l1.s4d")
    e = np.concatenate([(rp - gp).ravel(), (rm - gm).ravel()])
    assert abs(e.std() / want - 1) < 0.05
    # through the matrix-vector product: sqrt(2) sigma per cell, every stream its own read
    V = np.random.default_rng(3).normal(size=(64, 2, cfg.array_cols))  # (B, n, C)
    V = V * (sim.routes["l0.s4d"].col_idx < sim.routes["l0.s4d"].S)  # used columns only
    gp, gm = sim.conductances("l0.s4d")
    noise = sim.read("l0.s4d", V) - np.einsum("nrc,bnc->bnr", gp - gm, V)  # (B, n, R)
    z = noise / (np.sqrt(2) * want * np.linalg.norm(V, axis=2, keepdims=True))
    assert z.size > 5000 and abs(z.std() - 1) < 0.05


def test_relative_read_noise_scales_with_each_device(model):
    """read_noise "relative": N(0, sigma G) per device and read, so off cells (g_min) are
    quiet and the row current noise is sigma^2 sum (G+^2 + G-^2) V^2."""
    spec, w = model
    cfg = CrossbarConfig(g_min=1.0, g_max=40.0, array_rows=64, array_cols=64, sigma_read=0.05,
                         read_noise="relative", seed=5)
    sim = ImssaStep(spec, w, build_crossbar(spec, w, cfg), cfg)
    gp, gm = sim.conductances("l1.s4d")
    rp, rm = sim.read_conductances("l1.s4d")
    z = np.concatenate([((rp - gp) / gp).ravel(), ((rm - gm) / gm).ravel()])
    assert z.size > 10_000 and abs(z.std() / cfg.sigma_read - 1) < 0.05
    hi = gp > 0.5 * cfg.g_max  # the devices near g_max are noisier in absolute terms
    assert hi.sum() > 50 and (rp - gp)[hi].std() > 10 * (rp - gp)[gp == cfg.g_min].std()
    V = np.random.default_rng(3).normal(size=(64, 2, cfg.array_cols))  # (B, n, C)
    V = V * (sim.routes["l0.s4d"].col_idx < sim.routes["l0.s4d"].S)  # used columns only
    gp, gm = sim.conductances("l0.s4d")
    noise = sim.read("l0.s4d", V) - np.einsum("nrc,bnc->bnr", gp - gm, V)  # (B, n, R)
    sd = cfg.sigma_read * np.sqrt(np.einsum("nrc,bnc->bnr", gp**2 + gm**2, V**2))
    z = noise / sd
    assert z.size > 5000 and abs(z.std() - 1) < 0.05 and abs(z.mean()) < 0.05
    with pytest.raises(SpecError, match="read_noise"):
        CrossbarConfig(read_noise="thermal")


def test_drift(model):
    spec, w = model
    cfg = CrossbarConfig(array_rows=64, array_cols=64, drift_nu=0.05, drift_t0=2.0,
                         step_seconds=0.5)
    sim = ImssaStep(spec, w, build_crossbar(spec, w, cfg), cfg)
    g0 = sim.conductances("l1.s4d")[0]
    run(sim, calib(spec, T=6, B=1))
    assert sim.t == pytest.approx(2.0 + 6 * 0.5)
    np.testing.assert_allclose(sim.conductances("l1.s4d")[0], g0 * (5.0 / 2.0) ** -0.05)
    sim.set_time(200.0)
    np.testing.assert_allclose(sim.conductances("l1.s4d")[0], g0 * 100.0 ** -0.05)
    with pytest.raises(ValueError, match="t must be > 0"):
        sim.set_time(0.0)


@pytest.mark.parametrize("t0", [0.0, -1.0, float("nan")])
def test_drift_t0_checked_by_the_config(t0):
    """drift_t0 must be > 0 with or without drift: the clock starts there (CrossbarConfig)."""
    with pytest.raises(SpecError, match=r"CrossbarConfig\.drift_t0: must be > 0"):
        CrossbarConfig(drift_t0=t0)
    with pytest.raises(SpecError, match="drift_t0"):
        CrossbarConfig.from_dict({"drift_nu": 0.1, "drift_t0": t0})


def test_levels_at_programming(model):
    spec, w = model
    cfg = CrossbarConfig(array_rows=64, array_cols=64, levels=8)
    sim = ImssaStep(spec, w, build_crossbar(spec, w, cfg.replace(levels=0)), cfg)
    lossy = ImssaStep(spec, w, build_crossbar(spec, w, cfg), cfg)  # tables built on 8 levels
    for s in (sim, lossy):
        gp = s.conductances("l0.s4d")[0]
        k = (gp - cfg.g_min) / ((cfg.g_max - cfg.g_min) / 7)
        np.testing.assert_allclose(k, np.rint(k), atol=1e-9)
        assert np.unique(np.rint(k)).size == 8
    np.testing.assert_allclose(lossy.conductances("l1.s4d")[0], sim.conductances("l1.s4d")[0])
    x = calib(spec, T=30, B=2)
    y_ref = run(FloatStep(spec, dequantize_weights(spec, w)), x)[0]
    assert 1e-4 < rel(run(lossy, x)[0], y_ref) < 0.1  # lossy (2e-2 measured), same model


# ------------------------------------------------------------------ (c) converters


@pytest.fixture(scope="module")
def calibrated(model):
    spec, w = model
    cfg = CrossbarConfig(array_rows=32, array_cols=32, layers=ALL)
    x = calib(spec, T=40, B=3, seed=4)
    cb = build_crossbar(spec, w, cfg, calib_x=x)
    taps: list = []
    sim = ImssaStep(spec, w, cb, cfg)
    state = sim.init_state(x.shape[1])
    for xt in x[:12]:  # a prefix of the calibration data: the same trajectory
        t: dict = {}
        _, state = sim.step(xt, state, t)
        taps.append(t)
    return spec, w, cfg, cb, x, taps


def test_adc_error_within_half_lsb(calibrated):
    spec, w, cfg, cb, _, taps = calibrated
    bits = 8
    sim = ImssaStep(spec, w, cb, cfg.replace(adc_bits=bits))
    worst = 0.0
    for t in taps:
        for name, sig in t.items():
            I = sim.read(name, sim.drive(name, sig))  # (B, n, R)
            fs = sim.routes[name].adc_fs  # (n, R)
            assert np.all(np.abs(I) <= fs)  # calibrated on these data: nothing clips
            lsb = fs / (2 ** (bits - 1) - 1)
            err = np.abs(sim.adc(name, I) - I)
            worst = max(worst, float((err / np.where(lsb > 0, lsb, 1)).max()))
            np.testing.assert_allclose(sim.adc(name, 10 * I)[np.abs(10 * I) > fs],
                                       (np.sign(I) * fs)[np.abs(10 * I) > fs])  # saturates
    assert 0.3 < worst <= 0.5 + 1e-9


def test_dac_error_within_half_lsb(calibrated):
    spec, w, cfg, cb, _, taps = calibrated
    bits = 6
    sim = ImssaStep(spec, w, cb, cfg.replace(dac_bits=bits))
    ideal = ImssaStep(spec, w, cb, cfg)
    worst = 0.0
    for t in taps:
        for name, sig in t.items():
            rt = sim.routes[name]
            lsb = rt.dac_fs / (2 ** (bits - 1) - 1) * np.abs(rt.col_gain)  # (n, C) in volts
            err = np.abs(sim.drive(name, sig) - ideal.drive(name, sig))  # (B, n, C)
            worst = max(worst, float((err / np.where(lsb > 0, lsb, 1)).max()))
    assert 0.3 < worst <= 0.5 + 1e-9


def test_more_bits_less_error(calibrated):
    spec, w, cfg, cb, x, _ = calibrated
    y_ref = run(ImssaStep(spec, w, cb, cfg), x)[0]
    errs = [rel(run(ImssaStep(spec, w, cb, cfg.replace(dac_bits=b, adc_bits=b)), x)[0], y_ref)
            for b in (6, 12)]
    assert errs[1] < errs[0] / 8 and errs[1] < 2e-2


# ------------------------------------------------------------------ (f) counters


def _expected_per_read(cb, names) -> dict:
    """Reads, conversions and analog MACs of one stream-step, from the tile map alone."""
    out = {"array_reads": 0, "adc_conversions": 0, "dac_conversions": 0, "analog_macs": 0}
    for name in names:
        g = cb.groups[name]
        col = block_layout(g)[1]
        for t in cb.tiles(name):
            out["array_reads"] += 1
            sigs = set()
            for pl in t["placements"]:
                (r0, r1), (c0, c1) = pl["rows"], pl["cols"]
                out["adc_conversions"] += r1 - r0
                out["analog_macs"] += (r1 - r0) * (c1 - c0)
                sigs |= {(pl["block"], int(j)) for j in col[c0:c1]}  # u_state, u_out: one signal
            out["dac_conversions"] += len(sigs)
    return out


@pytest.mark.parametrize("layers", [("s4d",), ALL])
def test_counters_follow_the_tile_map(calibrated, layers):
    spec, w, cfg, cb, x, _ = calibrated
    sim = ImssaStep(spec, w, cb, cfg.replace(layers=layers, adc_bits=8, dac_bits=6))
    run(sim, x[:3])
    sim.reset_counters()
    assert set(sim.counters().values()) == {0}
    T, B = 5, x.shape[1]
    run(sim, x[:T])
    c = sim.counters()
    names = [n for n in cb.groups if n.split(".")[-1] in layers or n in layers]
    want = _expected_per_read(cb, names)
    for k, v in want.items():
        assert c[k] == v * T * B, k
    assert c["adc_conversion_bits"] == 8 * c["adc_conversions"]
    assert c["dac_conversion_bits"] == 6 * c["dac_conversions"]
    m = spec.model
    H, F, K = m.d_model, m.d_input, m.n_classes
    digital = 0 if "enc" in layers else H * F
    digital += 0 if "dec" in layers else K * H
    digital += 0 if "mix" in layers else m.n_layers * 2 * H * H
    assert c["digital_macs"] == digital * T * B and c["steps"] == T
    if layers == ("s4d",):
        # P=40 blocks on 32x32 arrays: 3 column slices, so 2 partial-sum adds per output
        assert c["adc_conversions"] == T * B * H * sum(3 * (2 * P + 1) if P == 40 else
                                                       (2 * P + 1) for P in m.layer_modes)
