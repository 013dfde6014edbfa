"""Recipes: a TOML file with [model], [quant], [train] tables, plus SECTION.KEY=VALUE overrides.

[quant] is either a full QuantConfig (one table per group: [quant.A] bits = 8 ...) or the
compact form of QuantConfig.uniform: bits, weight_bits, state_bits, act_bits, adc_bits,
per_channel, learn_scales. An empty or absent [quant] means a float model.
"""

from __future__ import annotations

import json
import tomllib

from qs4d.runtime.spec import ModelConfig, QuantConfig, SpecError, TrainConfig

UNIFORM_KEYS = {"bits", "weight_bits", "state_bits", "act_bits", "adc_bits", "per_channel",
                "learn_scales"}


def quant_from_dict(d: dict, where: str = "quant") -> QuantConfig:
    if not d:
        return QuantConfig()
    if set(d) & (UNIFORM_KEYS - {"learn_scales"}):
        unknown = sorted(set(d) - UNIFORM_KEYS)
        if unknown:
            raise SpecError(f"{where}: unknown key(s) {unknown} in the compact form")
        if "bits" not in d:
            raise SpecError(f"{where}.bits: required in the compact form")
        for k, v in d.items():
            want_bool = k in ("per_channel", "learn_scales")
            if isinstance(v, bool) != want_bool or not isinstance(v, int):
                kind = "true/false" if want_bool else "an integer"
                raise SpecError(f"{where}.{k}: expected {kind}, got {v!r}")
        kw = {k: v for k, v in d.items() if k != "bits"}
        return QuantConfig.uniform(d["bits"], **kw)
    return QuantConfig.from_dict(d, where)


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def apply_overrides(recipe: dict, sets: list[str]) -> dict:
    for item in sets:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise SpecError(f"--set {item!r}: expected SECTION.KEY=VALUE")
        path, value = item.split("=", 1)
        *sections, key = path.split(".")
        d = recipe
        for s in sections:
            d = d.setdefault(s, {})
        d[key] = _parse_value(value)
    return recipe


def load_recipe(path: str | None, sets: list[str] = ()) -> tuple:
    """(TrainConfig, ModelConfig, QuantConfig) from a TOML file and overrides."""
    recipe: dict = {}
    if path:
        with open(path, "rb") as f:
            recipe = tomllib.load(f)
    recipe = apply_overrides(recipe, list(sets))
    unknown = sorted(set(recipe) - {"model", "quant", "train"})
    if unknown:
        raise SpecError(f"{path or 'recipe'}: unknown table(s) {unknown}")
    tcfg = TrainConfig.from_dict(recipe.get("train", {}), "train")
    mcfg = ModelConfig.from_dict(recipe.get("model", {}), "model")
    qcfg = quant_from_dict(recipe.get("quant", {}), "quant")
    return tcfg, mcfg, qcfg
