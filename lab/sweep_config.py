"""Sweep configs: a base recipe plus grids of axes, expanded into content-addressed runs.

A sweep file is TOML with the tables of a recipe ([model], [quant] in the compact form,
[train]; or `[sweep] recipe = "models/recipes/X.toml"` with those tables as overrides) and:

    [sweep]   name, out (results: results.csv, plots, summary.md), runs (the run store;
              default OUT/runs), num_cpus (local Ray instance; default all cores)
    [grid]    axes -> lists of values; the runs are their Cartesian product.
              [[grid]] (an array of tables) gives the union of several products.
    [eval]    the imssa read-noise evaluation: crossbar_layers, converters ("model": DAC and
              ADC at the bundle's act and adc bits, or "ideal"), max_examples, seed,
              noise_model (CrossbarConfig.read_noise: "span", the default, or "relative");
              test_stride: for a task whose training never scores its test split (MIT-BIH:
              DS2 is a report, not a training signal), the sweep scores every
              test_stride-th test example of each run and of its float base itself
    [[plot]], [[threshold]], [[table]]   what the report draws and tabulates (sweep_report.py)

Axes (any other "section.key" axis sets that recipe value, e.g. "train.lr_qat"):
    method      "qat" | "ptq" | "float"
    bits        homogeneous width of every group (QuantConfig.uniform; the recipe's other
                widths are dropped, its per_channel kept); bits = 2 is ternary
                weights, A, B, C, dt with 3-bit state, activations and ADC (the spec reserves
                2 bits for ternary weights); D keeps max(bits, 8) as in QuantConfig.uniform
    weight_bits, state_bits, act_bits, adc_bits   overrides of the uniform form
    group       "all" or one tensor group (weights, A, B, C, D, dt, state, act, adc): only that
                group quantized at `bits`, every other group left in float
    d_model, d_state, n_layers   the architecture
    prune_keep  modes kept per channel (0 = no pruning), after float pre-training
    noise_std   relative Gaussian noise during QAT; train.noise_kind says which: "weight"
                (the default: weights + N(0, noise_std max|w|), one draw per forward) or
                "read" (fresh per step and row, sigma relative to each weight's magnitude:
                the "relative" read noise of the crossbar)
    seed        the training seed
    eval_read_noise   imssa read noise sigma (see eval.noise_model): an
                evaluation axis; the model is trained once and evaluated at every value

Runs are content-addressed: the run id ends in a hash of the resolved (train, model, quant)
configs, so sweeps sharing a run store share runs. Float pre-training (and pruning) is a base
shared by every run that differs only in quantization.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from qs4d.models.config import apply_overrides, quant_from_dict
from qs4d.runtime.spec import (
    GROUPS,
    READ_NOISE_MODELS,
    ModelConfig,
    QuantConfig,
    SpecError,
    TrainConfig,
)

AXES = ("method", "bits", "weight_bits", "state_bits", "act_bits", "adc_bits", "group",
        "d_model", "d_state", "n_layers", "prune_keep", "noise_std", "seed", "eval_read_noise")
METHODS = ("qat", "ptq", "float")
MIN_ACT_BITS = 3  # state, activations and ADC cannot be ternary
FLOAT_FIELDS = ("task", "data", "seed", "batch_size", "epochs_float", "lr", "lr_ssm",
                "weight_decay", "max_train", "label_smoothing")
EVAL_KEYS = {"crossbar_layers", "converters", "max_examples", "seed", "read_noise",
             "noise_model", "test_stride"}
SWEEP_KEYS = {"name", "out", "runs", "num_cpus", "recipe"}
REPORT_TABLES = ("plot", "threshold", "table")


def short_hash(d) -> str:
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:8]


def file_digest(path: str) -> str:
    """sha256 (16 hex digits) of a file's bytes; "absent" when it does not exist yet (a dry
    run before the checkpoint is trained). Read once per (path, size, mtime): every run and
    base of a sweep asks for the same checkpoint."""
    p = Path(path).resolve()
    if not p.is_file():
        return "absent"
    st = p.stat()
    return _digest(str(p), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


@dataclass(frozen=True)
class Base:
    """A shared float stage: pre-training (parent None), an existing float checkpoint
    (`external`, from [train] init), or pruning of its parent's model."""

    base_id: str
    tcfg: TrainConfig
    mcfg: ModelConfig
    parent: Base | None = None
    external: str = ""

    @property
    def checkpoint(self) -> str:
        """The file this stage leaves for its children, relative to its directory."""
        return "prune.pt" if self.parent is not None else "float.pt"


@dataclass(frozen=True)
class EvalSpec:
    crossbar_layers: tuple = ("enc", "s4d", "mix", "dec")
    converters: str = "model"
    max_examples: int = 0
    seed: int = 0
    noise_model: str = "span"
    test_stride: int = 1  # a task whose training never scores its test split (MIT-BIH DS2):
    # the sweep scores every test_stride-th test example of each run and of its float base

    def key(self, sigma: float) -> str:
        model = "" if self.noise_model == "span" else f"-{self.noise_model}"
        return (f"imssa-sigma{sigma:g}{model}-{'+'.join(self.crossbar_layers)}-{self.converters}"
                f"-n{self.max_examples}-seed{self.seed}")


@dataclass(frozen=True)
class Run:
    run_id: str
    axes: dict  # the grid values that produced it (for the CSV)
    tcfg: TrainConfig  # the user-level recipe (prune_keep, noise_std, ... as set)
    mcfg: ModelConfig
    qcfg: QuantConfig
    method: str
    base: Base
    read_noise: tuple = ()  # imssa evaluation points
    eval: EvalSpec = field(default_factory=EvalSpec)

    def eval_keys(self) -> list:
        return [self.eval.key(s) for s in self.read_noise]


@dataclass(frozen=True)
class SweepConfig:
    name: str
    path: str
    recipe: dict  # {"model": ..., "quant": ..., "train": ...}
    grids: tuple  # of {axis: [values]}
    out: str
    runs_dir: str
    num_cpus: int
    eval: EvalSpec
    read_noise: tuple
    report: dict  # {"plot": [...], "threshold": [...], "table": [...]}

    def expand(self) -> list:
        """Every run of every grid, in grid order, without duplicates."""
        runs: dict = {}
        for grid in self.grids:
            names = list(grid)
            for values in itertools.product(*(grid[n] for n in names)):
                run = make_run(self, dict(zip(names, values)))
                runs.setdefault(run.run_id, run)
                if runs[run.run_id].read_noise != run.read_noise:
                    merged = tuple(sorted(set(runs[run.run_id].read_noise) | set(run.read_noise)))
                    runs[run.run_id] = _with_noise(runs[run.run_id], merged)
        return list(runs.values())


def _with_noise(run: Run, read_noise: tuple) -> Run:
    return Run(run.run_id, run.axes, run.tcfg, run.mcfg, run.qcfg, run.method, run.base,
               read_noise, run.eval)


def _table(d: dict, key: str, allowed: set, where: str) -> dict:
    t = d.get(key, {})
    if not isinstance(t, dict):
        raise SpecError(f"{where}: [{key}] must be a table")
    unknown = sorted(set(t) - allowed)
    if unknown:
        raise SpecError(f"{where}: [{key}] unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    return t


def load_sweep(path: str | Path) -> SweepConfig:
    where = str(path)
    with open(path, "rb") as f:
        d = tomllib.load(f)
    unknown = sorted(set(d) - {"sweep", "model", "quant", "train", "grid", "eval",
                               *REPORT_TABLES})
    if unknown:
        raise SpecError(f"{where}: unknown table(s) {unknown}")
    sw = _table(d, "sweep", SWEEP_KEYS, where)
    recipe: dict = {}
    if "recipe" in sw:
        with open(sw["recipe"], "rb") as f:
            recipe = tomllib.load(f)
    for sec in ("model", "quant", "train"):
        recipe.setdefault(sec, {}).update(d.get(sec, {}))
    grids = d.get("grid", {})
    grids = [grids] if isinstance(grids, dict) else list(grids)
    for g in grids:
        for axis, values in g.items():
            if axis not in AXES and "." not in axis:
                raise SpecError(f"{where}: grid axis {axis!r} unknown; axes: {list(AXES)} or "
                                f"SECTION.KEY")
            if not isinstance(values, list) or not values:
                raise SpecError(f"{where}: grid axis {axis!r} needs a non-empty list")
    ev = _table(d, "eval", EVAL_KEYS, where)
    espec = EvalSpec(crossbar_layers=tuple(ev.get("crossbar_layers", EvalSpec.crossbar_layers)),
                     converters=ev.get("converters", "model"),
                     max_examples=int(ev.get("max_examples", 0)), seed=int(ev.get("seed", 0)),
                     noise_model=ev.get("noise_model", "span"),
                     test_stride=int(ev.get("test_stride", 1)))
    if espec.test_stride < 1:
        raise SpecError(f"{where}: eval.test_stride must be >= 1, got {espec.test_stride}")
    if espec.converters not in ("model", "ideal"):
        raise SpecError(f"{where}: eval.converters 'model' or 'ideal', got {espec.converters!r}")
    if espec.noise_model not in READ_NOISE_MODELS:
        raise SpecError(f"{where}: eval.noise_model one of {list(READ_NOISE_MODELS)}, got "
                        f"{espec.noise_model!r}")
    name = sw.get("name", Path(path).stem)
    out = sw.get("out", "")
    report = {k: list(d.get(k, [])) for k in REPORT_TABLES}
    cfg = SweepConfig(name=name, path=where, recipe=recipe, grids=tuple(grids or [{}]), out=out,
                      runs_dir=sw.get("runs", ""), num_cpus=int(sw.get("num_cpus", 0)),
                      eval=espec, read_noise=tuple(float(s) for s in ev.get("read_noise", ())),
                      report=report)
    cfg.expand()  # every combination must make a valid run
    return cfg


def quant_for(base_quant: dict, point: dict, method: str) -> QuantConfig:
    """The QuantConfig of one grid point (see the module docstring for the rules)."""
    if method == "float":
        return QuantConfig()
    keep = ("per_channel", "learn_scales")  # the bits axis means homogeneous widths
    q = {k: v for k, v in base_quant.items() if k in keep} if "bits" in point else dict(base_quant)
    for k in ("bits", "weight_bits", "state_bits", "act_bits", "adc_bits"):
        if k in point:
            q[k] = point[k]
    if q.get("bits") == 2:
        for k in ("state_bits", "act_bits", "adc_bits"):
            q.setdefault(k, MIN_ACT_BITS)
    full = quant_from_dict(q, "quant")
    group = point.get("group", "all")
    if group == "all":
        return full
    if group not in GROUPS:
        raise SpecError(f"grid group {group!r}: 'all' or one of {list(GROUPS)}")
    return QuantConfig(**{group: getattr(full, group)}, learn_scales=full.learn_scales)


def quant_tag(q: QuantConfig) -> str:
    bits = {g: getattr(q, g).bits for g in GROUPS if getattr(q, g).enabled}
    if not bits:
        return "float"
    if len(bits) < len(GROUPS):
        return "+".join(f"{g}{b}" for g, b in bits.items())
    rest = sorted({b for g, b in bits.items() if g not in ("weights", "D")})
    tag = "b" + "-".join(map(str, rest))
    return tag if bits["weights"] in rest else f"w{bits['weights']}{tag}"


def make_run(cfg: SweepConfig, point: dict) -> Run:
    where = f"{cfg.path}: grid point {point}"
    recipe = json.loads(json.dumps(cfg.recipe))
    sets = {"d_model": "model.d_model", "d_state": "model.d_state", "n_layers": "model.n_layers",
            "prune_keep": "train.prune_keep", "noise_std": "train.noise_std",
            "seed": "train.seed"}
    for axis, value in point.items():
        path = sets.get(axis, axis if "." in axis else None)
        if path:
            apply_overrides(recipe, [f"{path}={json.dumps(value)}"])
    method = point.get("method", "qat")
    if method not in METHODS:
        raise SpecError(f"{where}: method {method!r}, expected one of {list(METHODS)}")
    tcfg = TrainConfig.from_dict(recipe.get("train", {}), "train")
    mcfg = ModelConfig.from_dict(recipe.get("model", {}), "model")
    qcfg = quant_for(recipe.get("quant", {}), point, method)
    tcfg = normalize(tcfg, method)
    if method != "qat" and tcfg.noise_std:
        raise SpecError(f"{where}: noise_std is a QAT option (method {method!r})")
    if not tcfg.noise_std:
        tcfg = tcfg.replace(noise_kind=TrainConfig.noise_kind)  # unused: one run either way
    if tcfg.prune_keep and tcfg.prune_keep > mcfg.d_state // 2:
        raise SpecError(f"{where}: prune_keep {tcfg.prune_keep} > d_state/2 = {mcfg.d_state // 2}")
    sig = point.get("eval_read_noise")
    read_noise = cfg.read_noise if sig is None else (float(sig),)
    if read_noise and not qcfg.integer:
        raise SpecError(f"{where}: the imssa read-noise evaluation needs an integer model "
                        f"(every group quantized)")
    if tcfg.init and {"d_model", "d_state", "n_layers"} & set(point):
        raise SpecError(f"{where}: train.init fixes the architecture; drop the init or the "
                        f"d_model/d_state/n_layers axes")
    base = make_base(tcfg, mcfg)
    config = {"train": _hashed(tcfg), "model": mcfg.to_dict(), "quant": qcfg.to_dict()}
    if tcfg.init:  # a retrained checkpoint at the same path is a different run
        config["init_digest"] = file_digest(tcfg.init)
    P = tcfg.prune_keep or mcfg.d_state // 2
    run_id = (f"{tcfg.task}-h{mcfg.d_model}n{mcfg.d_state}l{mcfg.n_layers}-{method}-"
              f"{quant_tag(qcfg)}" + (f"-p{P}" if tcfg.prune_keep else "")
              + (f"-{tcfg.noise_kind}noise{tcfg.noise_std:g}" if tcfg.noise_kind != "weight"
                 else f"-noise{tcfg.noise_std:g}" if tcfg.noise_std else "")
              + f"-s{tcfg.seed}-{short_hash(config)}")
    axes = {k: v for k, v in point.items() if k != "eval_read_noise"}
    return Run(run_id, axes, tcfg, mcfg, qcfg, method, base, read_noise, cfg.eval)


# TrainConfig fields added after runs were stored: they enter a run id only when set, so
# the runs stored before they existed keep their ids.
LATE_FIELDS = ("noise_kind", "feat_warp", "feat_eq_db", "logit_adjust",
               "loud_noise_clips", "f_max", "band_cutoff_min", "qat_distill")


def _hashed(tcfg: TrainConfig) -> dict:
    d, default = tcfg.to_dict(), TrainConfig()
    return {k: v for k, v in d.items() if k not in LATE_FIELDS or v != getattr(default, k)}


def normalize(tcfg: TrainConfig, method: str) -> TrainConfig:
    """Reset the fields a run does not use, so equal runs hash equal across sweeps."""
    d = TrainConfig()
    if not tcfg.prune_keep:
        tcfg = tcfg.replace(epochs_prune=d.epochs_prune)
    if method == "ptq":
        tcfg = tcfg.replace(ptq=True)
    if method != "qat":
        tcfg = tcfg.replace(epochs_qat=d.epochs_qat, lr_qat=d.lr_qat, qat_batches=d.qat_batches)
    if method == "float":
        tcfg = tcfg.replace(calib_batches=d.calib_batches)
    return tcfg


def make_base(tcfg: TrainConfig, mcfg: ModelConfig) -> Base:
    """The float pre-training stage of a run, then its pruning stage when it prunes."""
    ft = TrainConfig(**{f: getattr(tcfg, f) for f in FLOAT_FIELDS})
    key = {"train": ft.to_dict(), "model": mcfg.to_dict()}
    if tcfg.init:
        key = {"init": str(Path(tcfg.init).resolve()), "digest": file_digest(tcfg.init)}
    fbase = Base(f"{'init' if tcfg.init else 'float'}-{tcfg.task}-h{mcfg.d_model}n{mcfg.d_state}"
                 f"l{mcfg.n_layers}-s{tcfg.seed}-{short_hash(key)}", ft, mcfg,
                 external=key.get("init", ""))
    if not tcfg.prune_keep:
        return fbase
    pt = ft.replace(epochs_float=0, prune_keep=tcfg.prune_keep, epochs_prune=tcfg.epochs_prune)
    pkey = {**key, "prune_keep": pt.prune_keep, "epochs_prune": pt.epochs_prune}
    return Base(f"prune{pt.prune_keep}-{fbase.base_id}-{short_hash(pkey)}", pt, mcfg, fbase)


def bases_of(runs: list) -> list:
    """Every base the runs need, parents before children, each once."""
    seen: dict = {}
    for r in runs:
        chain, b = [], r.base
        while b is not None:
            chain.append(b)
            b = b.parent
        for b in reversed(chain):
            seen.setdefault(b.base_id, b)
    return list(seen.values())
