"""Work and memory of one streaming step, counted from a bundle's spec (numpy only).

Glossary: F features, H width, P modes of a layer, K classes.

Multiply-accumulates per step (batch 1), each with its weight and activation bit widths:
    encoder      F*H          weights x act
    per layer    A: 4P*H      (rotation: 2 products per real state element)  A x state
                 B: 2P*H      B x act         C: 2P*H   C x state         D: H   D x act
                 mixing 2H*H  weights x act   GLU product: H  act x act
    decoder      H*K          weights x act
bit operations = sum of MACs x weight bits x activation bits (float bundles: 32 x 32).
Element-wise work: 2H table lookups per layer (GELU, sigmoid) and one requantization per
integer output (encoder H; per layer 2P*H state, H output, 2H mixing, H GLU, H residual).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .spec import Spec, weight_shapes


@dataclass(frozen=True)
class Term:
    name: str
    macs: int
    w_bits: int
    a_bits: int


def step_terms(spec: Spec) -> list[Term]:
    m, q = spec.model, spec.quant
    F, H, K = m.d_input, m.d_model, m.n_classes
    integer = q.integer
    b = (lambda g: getattr(q, g).bits) if integer else (lambda g: 32)
    terms = [Term("enc", F * H, b("weights"), b("act"))]
    for i, P in enumerate(m.layer_modes):
        terms += [Term(f"l{i}.A", 4 * P * H, b("A"), b("state")),
                  Term(f"l{i}.B", 2 * P * H, b("B"), b("act")),
                  Term(f"l{i}.C", 2 * P * H, b("C"), b("state")),
                  Term(f"l{i}.D", H, b("D"), b("act")),
                  Term(f"l{i}.mix", 2 * H * H, b("weights"), b("act")),
                  Term(f"l{i}.glu", H, b("act"), b("act"))]
    terms.append(Term("dec", H * K, b("weights"), b("act")))
    return terms


@dataclass(frozen=True)
class StepCosts:
    macs: int
    bitops: int
    weight_code_bits: int  # weights memory: codes x their bits (float bundles: 32 per weight)
    weight_total_bits: int  # plus int32 biases, float32 scales and int32 lookup tables
    table_bits: int  # the lookup tables alone (read per lookup, not per step)
    n_weights: int  # weight and S4D matrix entries
    state_bits: int  # recurrent state of all layers
    state_values: int
    lookups: int
    requants: int
    act_bits: int
    integer: bool

    def to_dict(self) -> dict:
        return asdict(self)


def step_costs(spec: Spec) -> StepCosts:
    m, q = spec.model, spec.quant
    terms = step_terms(spec)
    groups = {"A": q.A, "B": q.B, "C": q.C, "D": q.D}
    code_bits = total_bits = table_bits = n_w = 0
    for key, (shape, kind) in weight_shapes(spec).items():
        n = int(np.prod(shape)) if shape else 1
        if kind == "code":
            bits = groups.get(key.split(".")[-1], q.weights).bits
            code_bits += bits * n
            total_bits += bits * n
            n_w += n
        elif kind == "float":
            total_bits += 32 * n
            if key.endswith(".w") or key.split(".")[-1] in groups:
                code_bits += 32 * n
                n_w += n
        else:  # acc (int32 bias), scale (float32), table (int32)
            total_bits += 32 * n
            table_bits += 32 * n if kind == "table" else 0
    H = m.d_model
    state_values = sum(H * 2 * P for P in m.layer_modes)
    state_b = q.state.bits if q.integer else 32
    requants = H + sum(2 * P * H + 5 * H for P in m.layer_modes)
    return StepCosts(
        macs=sum(t.macs for t in terms), bitops=sum(t.macs * t.w_bits * t.a_bits for t in terms),
        weight_code_bits=code_bits, weight_total_bits=total_bits, table_bits=table_bits,
        n_weights=n_w,
        state_bits=state_values * state_b, state_values=state_values,
        lookups=2 * H * m.n_layers, requants=requants if q.integer else 0,
        act_bits=q.act.bits if q.integer else 32, integer=q.integer)


FLOAT_BITS = 32  # float32 baselines: every weight, state value and ADC result in 32 bits


def adc_costs(spec: Spec) -> dict:
    """ADC work of one step with every S4D layer on a crossbar: one conversion per row of the
    (2P+1) x (2P+2) block of each channel, the 2P state rows at the state's bits and the
    output row at the ADC group's bits (float32 baselines: 32 bits)."""
    m, q = spec.model, spec.quant
    sb, yb = (q.state.bits, q.adc.bits) if q.integer else (FLOAT_BITS, FLOAT_BITS)
    H = m.d_model
    return {"adc_conversions": sum(H * (2 * P + 1) for P in m.layer_modes),
            "adc_bit_conversions": sum(H * (2 * P * sb + yb) for P in m.layer_modes)}


REDUCED = ("bitops", "mem_bits", "weight_mem_bits", "adc_bit_conversions")


def complexity(spec: Spec) -> dict:
    """Bit operations, memory bits (weight codes + state) and ADC work per step of a spec,
    the same of the float32 model of its unpruned architecture (keys float_*), and the
    reduction factors float / this (keys *_reduction)."""
    ref = Spec(model=spec.model.replace(modes=()), frontend=spec.frontend)
    out: dict = {}
    for name, s in (("", spec), ("float_", ref)):
        c, a = step_costs(s), adc_costs(s)
        out.update({f"{name}bitops": c.bitops, f"{name}macs": c.macs,
                    f"{name}weight_mem_bits": c.weight_code_bits,
                    f"{name}state_mem_bits": c.state_bits,
                    f"{name}mem_bits": c.weight_code_bits + c.state_bits,
                    f"{name}adc_conversions": a["adc_conversions"],
                    f"{name}adc_bit_conversions": a["adc_bit_conversions"]})
    for k in REDUCED:
        out[f"{k}_reduction"] = round(out[f"float_{k}"] / out[k], 3)
    return out


def step_period_s(spec: Spec) -> float:
    """Seconds of input per model step: the hop (logmel), decimate / fs (ecg), 1 / fs (identity)."""
    fe = spec.frontend
    if fe.kind == "logmel":
        return fe.hop_ms / 1000.0
    if fe.kind == "ecg":
        return fe.decimate / fe.sample_rate
    return 1.0 / fe.sample_rate


def raw_input(spec: Spec, steps: int, rng: np.random.Generator, batch: int | None = None):
    """Raw input that completes exactly `steps` model steps through the spec's front end."""
    fe = spec.frontend
    if fe.kind == "identity":
        shape: tuple = (steps, spec.model.d_input)
    elif fe.kind == "logmel":
        shape = (fe.win_samples + (steps - 1) * fe.hop_samples,)
    else:
        shape = (steps * fe.decimate,)
    scale = 0.1 if fe.kind == "logmel" else 1.0
    shape = shape if batch is None else (batch,) + shape
    return (scale * rng.standard_normal(shape)).astype(np.float32)
