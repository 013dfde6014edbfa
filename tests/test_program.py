"""Float bundles on crossbars (runtime/program.py): their weights programmed as codes per output
channel, the tables holding exactly those codes, and the imssa backend running them.

Glossary: T steps, B streams, F features.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import steps_input

import qs4d
from qs4d.runtime.bundle import load_bundle
from qs4d.runtime.crossbar_io import load_crossbar
from qs4d.runtime.imssa import ImssaStep, decode_codes
from qs4d.runtime.program import as_programmed, programmed_weights, quantize_rows
from qs4d.runtime.reference import FloatStep
from qs4d.runtime.spec import CrossbarConfig, SpecError


@pytest.mark.parametrize("bits", [2, 4, 8, 12])
def test_rows_round_to_their_nearest_code(bits):
    rng = np.random.default_rng(bits)
    w = rng.normal(0, 1, (6, 3, 5)).astype(np.float32)
    w[2] = 0.0  # an all-zero channel: scale 1, codes 0
    codes, scale = quantize_rows(w, bits)
    qmax = 2 ** (bits - 1) - 1
    assert codes.dtype == np.int64 and np.abs(codes).max() == qmax and scale[2] == 1.0
    assert not codes[2].any() and np.all(scale > 0)
    err = np.abs(codes * scale[:, None, None] - w)
    assert np.all(err <= scale[:, None, None] / 2 * (1 + 1e-6))
    np.testing.assert_array_equal(np.abs(codes.reshape(6, -1)).max(1)[[0, 1, 3, 4, 5]], qmax)


def test_float_bundle_carries_tables_of_its_programmed_codes(bundle_path):
    """The round trip: conductances back to codes give the programmed codes exactly, every G
    lies in [g_min, g_max], and more bits move the weights less."""
    b = load_bundle(bundle_path("float"))
    cb = load_crossbar(b.path)
    assert cb.config.weight_bits == 8 and cb.manifest["calibration"]["calibrated"]
    _, codes = programmed_weights(b.spec, b.weights, 8)
    got = decode_codes(cb)
    for key in got:
        np.testing.assert_array_equal(got[key], codes[key].astype(np.float64), err_msg=key)
    for G in (cb.tables["G_plus"], cb.tables["G_minus"]):
        assert G.min() >= np.float32(cb.config.g_min) and G.max() <= np.float32(cb.config.g_max)
    err = [max(float(np.abs(v - b.weights[k]).max()) for k, v in
               as_programmed(b.spec, b.weights, bits, got).items()) for bits in (4, 8, 12)]
    assert err[0] > err[1] > err[2] > 0


def test_imssa_ideal_is_the_programmed_float_model(bundle_path):
    """Ideal imssa on a float bundle equals FloatStep on the weights its codes stand for."""
    path = bundle_path("float")
    b = load_bundle(path)
    cfg = load_crossbar(path).config.replace(dac_bits=0, adc_bits=0, sigma_prog=0.0,
                                             sigma_read=0.0, drift_nu=0.0, levels=0)
    im = qs4d.load(path, backend="imssa", crossbar=cfg)
    ref = FloatStep(b.spec, as_programmed(b.spec, b.weights, 8, decode_codes(im.executor.cb)))
    x = steps_input(b.spec, 200, np.random.default_rng(3), batch=2).transpose(1, 0, 2)  # (T,B,F)
    s_ref = ref.init_state(2)
    for xt in x:
        y_ref, s_next = ref(xt, s_ref)
        y_im, _ = im.executor(xt, s_ref)  # teacher-forced: the same state into both
        assert np.abs(y_im - y_ref).max() <= 1e-5 * np.abs(y_ref).max() + 1e-7
        s_ref = s_next
    noisy = qs4d.load(path, backend="imssa")  # the tables' own DAC/ADC bits
    assert np.isfinite(noisy.stream(batch=2).accept(x.transpose(1, 0, 2))).all()


@pytest.mark.parametrize("name,key,factor", [
    ("float", "l0.C", 1.5),  # the same codes at another scale: caught by the gains
    ("int8", "l0.A.scale", 1.01),  # an integer bundle's scale
])
def test_imssa_refuses_tables_of_other_weights(bundle_path, name, key, factor):
    """The tables must hold the weights' codes and, through the row and column gains, their
    scales; a weight that no mapped group holds may differ (mixing: "s4d" maps only S4D)."""
    b = load_bundle(bundle_path(name))
    cb = load_crossbar(b.path)
    w = dict(b.weights)
    w[key] = (w[key] * factor).astype(w[key].dtype)
    with pytest.raises(ValueError, match="do not hold"):
        ImssaStep(b.spec, w, cb, cb.config)
    assert cb.config.layers == ("s4d",)
    w = dict(b.weights)
    w["l1.mix.b"] = w["l1.mix.b"] + 1
    ImssaStep(b.spec, w, cb, cb.config)


def test_weight_bits_checked():
    for bad in (1, 17, 8.0):
        with pytest.raises(SpecError, match="weight_bits"):
            CrossbarConfig(weight_bits=bad)
