"""Configs and the bundle spec: dict and JSON round trips; unknown, missing, wrongly typed keys
and foreign schema versions refused with a SpecError that names the key; recipes from TOML
with --set overrides in the compact and the full quant form.
"""

from __future__ import annotations

import json

import pytest

from qs4d.models.config import load_recipe
from qs4d.runtime.spec import (
    SCHEMA_VERSION,
    CrossbarConfig,
    FrontendConfig,
    ModelConfig,
    QuantConfig,
    QuantSpec,
    Spec,
    SpecError,
    TrainConfig,
    weight_shapes,
)

EXAMPLES = [
    ModelConfig(d_input=3, d_model=12, d_state=10, n_layers=2, n_classes=7, init="inv",
                dt_min=2e-3, dt_max=0.2, norm="none", pooling="last", dropout=0.1, modes=(3, 5)),
    QuantSpec(6, per_channel=True, narrow=True),
    QuantConfig.uniform(8, weight_bits=2, state_bits=12, per_channel=False, learn_scales=False),
    FrontendConfig(kind="logmel", sample_rate=8000, n_mels=20, hop_ms=20.0, n_fft=256,
                   f_max=4000.0, band_hz=(1.0, 30.0), norm_mean=(0.5, 1.5), norm_std=(2.0, 3.0)),
    CrossbarConfig(g_min=0.5, g_max=25.0, levels=16, array_rows=64, array_cols=32, dac_bits=6,
                   adc_bits=7, sigma_prog=0.02, sigma_read=0.01, drift_nu=0.05, seed=3,
                   layers=("s4d", "mix")),
    TrainConfig(task="kws", data="/data/kws", seed=4, batch_size=8, epochs_float=2,
                epochs_prune=1, epochs_qat=5, noise_std=0.03, prune_keep=4, ptq=True,
                label_smoothing=0.1),
]


def full_spec() -> Spec:
    # the logmel front end's n_mels and norm lengths match the model's d_input = 3
    fe = EXAMPLES[3].replace(n_mels=3, norm_mean=(0.5, 1.5, 2.5), norm_std=(2.0, 3.0, 4.0))
    return Spec(model=EXAMPLES[0], quant=EXAMPLES[2], frontend=fe,
                labels=tuple("abcdefg"), metrics={"test_acc": 91.5, "n": 3}, name="x")


@pytest.mark.parametrize("cfg", EXAMPLES, ids=lambda c: type(c).__name__)
def test_round_trip(cfg):
    d = cfg.to_dict()
    assert type(cfg).from_dict(d) == cfg
    assert type(cfg).from_dict(json.loads(json.dumps(d))) == cfg  # tuples travel as lists
    assert cfg != type(cfg)()  # the example really differs from the defaults


def test_spec_round_trip_through_json():
    spec = full_spec()
    again = Spec.from_json(spec.to_json())
    assert again == spec and again.schema_version == SCHEMA_VERSION
    assert json.loads(spec.to_json())["schema_version"] == SCHEMA_VERSION


@pytest.mark.parametrize("cls", [ModelConfig, QuantSpec, QuantConfig, FrontendConfig,
                                 CrossbarConfig, TrainConfig])
def test_unknown_key_is_named(cls):
    d = cls().to_dict()
    d["colour_of_the_bikeshed"] = 1
    with pytest.raises(SpecError, match="colour_of_the_bikeshed"):
        cls.from_dict(d)


def test_unknown_nested_key_is_named_with_its_path():
    d = full_spec().to_dict()
    d["quant"]["A"]["per_chanel"] = True
    with pytest.raises(SpecError, match=r"spec\.json\.quant\.A.*per_chanel"):
        Spec.from_dict(d)
    d = full_spec().to_dict()
    d["model"]["d_modle"] = 3
    with pytest.raises(SpecError, match=r"spec\.json\.model.*d_modle"):
        Spec.from_dict(d)
    d = full_spec().to_dict()
    d["extra"] = {}
    with pytest.raises(SpecError, match="extra"):
        Spec.from_dict(d)


def test_missing_key_is_named():
    d = full_spec().to_dict()
    del d["model"]
    with pytest.raises(SpecError, match=r"missing.*model"):
        Spec.from_dict(d)


@pytest.mark.parametrize("cls,key,value", [
    (ModelConfig, "d_model", "8"),
    (ModelConfig, "d_model", 8.0),
    (ModelConfig, "d_state", True),
    (ModelConfig, "dt_min", "small"),
    (ModelConfig, "init", 3),
    (ModelConfig, "modes", 3),
    (ModelConfig, "modes", ["2", "3", "4", "5"]),
    (QuantSpec, "bits", "8"),
    (QuantSpec, "per_channel", 1),
    (QuantSpec, "narrow", "yes"),
    (FrontendConfig, "sample_rate", 16000.5),
    (FrontendConfig, "kind", None),
    (FrontendConfig, "band_hz", 5),
    (CrossbarConfig, "g_max", "40"),
    (CrossbarConfig, "layers", "s4d"),
    (TrainConfig, "lr", [0.1]),
    (TrainConfig, "ptq", 0),
    (TrainConfig, "batch_size", None),
])
def test_wrong_type_is_named(cls, key, value):
    d = cls().to_dict()
    d[key] = value
    with pytest.raises(SpecError, match=key):
        cls.from_dict(d)


@pytest.mark.parametrize("key,value", [("labels", "abcdefg"), ("labels", [1, 2, 3, 4, 5, 6, 7]),
                                       ("labels", ["a", "b"]), ("metrics", [1]),
                                       ("name", 5)])
def test_spec_field_types_are_named(key, value):
    d = full_spec().to_dict()
    d[key] = value
    with pytest.raises(SpecError, match=key):
        Spec.from_dict(d)


@pytest.mark.parametrize("version", [0, 2, "1", None, 1.5])
def test_wrong_schema_version(version):
    d = full_spec().to_dict()
    d["schema_version"] = version
    with pytest.raises(SpecError, match="schema_version"):
        Spec.from_dict(d)


@pytest.mark.parametrize("cls,kw,key", [
    (ModelConfig, {"d_state": 7}, "d_state"),
    (ModelConfig, {"n_layers": 0}, "n_layers"),
    (ModelConfig, {"dt_min": 0.5, "dt_max": 0.1}, "dt_min"),
    (ModelConfig, {"n_layers": 2, "modes": (1,)}, "modes"),
    (ModelConfig, {"d_state": 8, "modes": (5,)}, "modes"),
    (QuantSpec, {"bits": 1}, "bits"),
    (FrontendConfig, {"kind": "mfcc"}, "kind"),
    (FrontendConfig, {"decimate": 0}, "decimate"),
    (CrossbarConfig, {"levels": 1}, "levels"),
    (CrossbarConfig, {"layers": ("s4d", "attn")}, "layers"),
    (TrainConfig, {"task": "mnist"}, "task"),
])
def test_bad_values_are_named(cls, kw, key):
    d = cls().to_dict()
    d.update(kw)
    with pytest.raises(SpecError, match=key):
        cls.from_dict(json.loads(json.dumps(d)))


def test_ternary_is_for_weights_only():
    with pytest.raises(SpecError, match="state"):
        QuantConfig(state=QuantSpec(2))
    assert QuantConfig.uniform(8, weight_bits=2).weights.ternary


def test_not_an_object():
    with pytest.raises(SpecError, match="expected an object"):
        ModelConfig.from_dict([1, 2])
    with pytest.raises(SpecError, match="not valid JSON"):
        Spec.from_json("{model: 1")


def test_configs_are_frozen():
    cfg = ModelConfig()
    with pytest.raises(AttributeError):
        cfg.d_model = 3
    assert cfg.replace(d_model=3).d_model == 3 and cfg.d_model == 64


def test_weight_shapes_follow_modes():
    spec = Spec(model=ModelConfig(d_input=2, d_model=4, d_state=8, n_layers=2, n_classes=3,
                                  modes=(4, 2)), quant=QuantConfig.uniform(8))
    shapes = weight_shapes(spec)
    assert shapes["l0.A"] == ((4, 2, 4), "code") and shapes["l1.A"] == ((4, 2, 2), "code")
    assert shapes["l1.C"] == ((4, 4), "code") and shapes["l1.state.scale"] == ((4,), "scale")
    assert shapes["l0.gelu.table"] == ((256,), "table")
    with pytest.raises(SpecError, match="quant"):  # half-quantized bundles do not exist
        weight_shapes(spec.replace(quant=QuantConfig(weights=QuantSpec(8))))


# -- recipes ---------------------------------------------------------------------------------

COMPACT = """\
[model]
d_model = 16
d_state = 8
n_layers = 3
init = "inv"

[quant]
bits = 8
weight_bits = 4
per_channel = false

[train]
task = "toy"
epochs_float = 2
lr = 0.01
"""

FULL = """\
[model]
d_model = 16

[quant]
learn_scales = false

[quant.weights]
bits = 2

[quant.A]
bits = 8
per_channel = true

[quant.state]
bits = 12
narrow = true

[train]
epochs_qat = 1
"""


def test_recipe_compact_form(tmp_path):
    p = tmp_path / "r.toml"
    p.write_text(COMPACT)
    tcfg, mcfg, qcfg = load_recipe(str(p))
    assert mcfg == ModelConfig(d_model=16, d_state=8, n_layers=3, init="inv")
    assert qcfg == QuantConfig.uniform(8, weight_bits=4, per_channel=False)
    assert tcfg == TrainConfig(task="toy", epochs_float=2, lr=0.01)


def test_recipe_full_form(tmp_path):
    p = tmp_path / "r.toml"
    p.write_text(FULL)
    _, mcfg, qcfg = load_recipe(str(p))
    assert mcfg == ModelConfig(d_model=16)
    assert qcfg == QuantConfig(weights=QuantSpec(2), A=QuantSpec(8, per_channel=True),
                               state=QuantSpec(12, narrow=True), learn_scales=False)


def test_recipe_overrides(tmp_path):
    p = tmp_path / "r.toml"
    p.write_text(COMPACT)
    tcfg, mcfg, qcfg = load_recipe(str(p), [
        "train.epochs_float=5", "train.data=/some/where", "model.init=lin", "model.modes=[2,3,4]",
        "quant.weight_bits=2", "quant.per_channel=true", "train.ptq=true"])
    assert tcfg.epochs_float == 5 and tcfg.data == "/some/where" and tcfg.ptq is True
    assert mcfg.init == "lin" and mcfg.modes == (2, 3, 4)
    assert qcfg == QuantConfig.uniform(8, weight_bits=2, per_channel=True)
    # overrides alone, no file; a full-form group set from the command line
    tcfg, mcfg, qcfg = load_recipe(None, ["quant.A.bits=6", "model.d_model=4"])
    assert qcfg == QuantConfig(A=QuantSpec(6)) and mcfg.d_model == 4
    assert load_recipe(None)[2] == QuantConfig()  # no [quant]: a float model


def test_shipped_recipe_loads():
    from conftest import ROOT

    for path in sorted((ROOT / "models" / "recipes").glob("*.toml")):
        if "[dscnn]" in path.read_text():  # the DS-CNN baseline: tests/test_dscnn.py
            continue
        tcfg, mcfg, qcfg = load_recipe(str(path))
        assert isinstance(tcfg, TrainConfig) and isinstance(mcfg, ModelConfig), path


@pytest.mark.parametrize("sets,key", [
    (["train.epochs_float=many"], "epochs_float"),
    (["train.nope=1"], "nope"),
    (["nosection=1"], "nosection"),
    (["model.d_model"], "model.d_model"),
    (["extra.x=1"], "extra"),
    (["quant.weight_bits=4"], "bits"),  # compact form without bits
    (["quant.bits=8", "quant.A.bits=4"], "A"),  # compact and full form mixed
    (["quant.bits=8", "quant.per_channel=\"yes\""], "per_channel"),
])
def test_recipe_errors_name_the_key(tmp_path, sets, key):
    with pytest.raises(SpecError, match=key):
        load_recipe(None, sets)
