"""Shipped recipes: they load, and streaming recipes keep the S4D memory within the training
window (regression: with dt_min = 0.001 the ECG model's state remembered ~20 s while it was
trained on 2.75-s windows from a zero state; streaming beat accuracy fell from 98.7% on windows
to 63% on whole records)."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import pytest

from qs4d.models.config import load_recipe
from qs4d.runtime.spec import TASKS

# S4D recipes; a DS-CNN baseline recipe ([dscnn] table) is tested in tests/test_dscnn.py
RECIPES = sorted(p for p in (Path(__file__).resolve().parents[1] / "models" / "recipes")
                 .glob("*.toml") if "dscnn" not in tomllib.loads(p.read_text()))
# 1-s clip at a 10-ms hop; 2.75-s beat window at 90 Hz
WINDOW_STEPS = {"kws": 98, "sc12": 98, "digits": 98, "ecg": 248}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_loads(path):
    tcfg, mcfg, qcfg = load_recipe(str(path))
    assert tcfg.task in TASKS


@pytest.mark.parametrize("path", [p for p in RECIPES if p.stem.split("-")[0] in WINDOW_STEPS],
                         ids=lambda p: p.stem)
def test_streaming_memory_fits_training_window(path):
    tcfg, mcfg, _ = load_recipe(str(path))
    if tcfg.init:  # the architecture comes from the init checkpoint's recipe
        pytest.skip(f"{path.stem} starts from {tcfg.init}")
    L = WINDOW_STEPS[tcfg.task]
    # slowest mode at init: |A_bar| = exp(-0.5 dt_min) per step; over the window it must fade
    assert math.exp(-0.5 * mcfg.dt_min * L) < 0.5, (path.stem, mcfg.dt_min, L)
