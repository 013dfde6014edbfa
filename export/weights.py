"""Model -> the tensors of weights.npz (the layout of `qs4d.runtime.spec.weight_shapes`).

Integer bundles get exactly the codes and scales the QAT forward used; float bundles get the
float weights with BatchNorm folded. Pruned modes are already gone from the model's tensors.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as Fn

from qs4d.models.qmodel import _bias_codes, _s4d_codes, lut_table, sig_scale
from qs4d.runtime.spec import Spec, layer_key


def _np(t: torch.Tensor, dtype) -> np.ndarray:
    return t.detach().cpu().numpy().astype(dtype)


def _code_dtype(bits: int):
    return np.int8 if bits <= 8 else np.int16 if bits <= 16 else np.int32


@torch.no_grad()
def float_weights(model) -> dict:
    """Float32 tensors of a float model (BatchNorm folded on a copy)."""
    import copy

    m = copy.deepcopy(model).eval()
    m.fold_norms()
    out = {"enc.w": m.enc.weight, "enc.b": m.enc.bias, "dec.w": m.dec.weight, "dec.b": m.dec.bias}
    for i, blk in enumerate(m.blocks):
        A, Bm, C, D = blk.s4d.step_matrices()
        out.update({layer_key(i, "A"): A, layer_key(i, "B"): Bm, layer_key(i, "C"): C,
                    layer_key(i, "D"): D, layer_key(i, "mix.w"): blk.mix.weight,
                    layer_key(i, "mix.b"): blk.mix.bias})
    return {k: _np(v, np.float32) for k, v in out.items()}


@torch.no_grad()
def integer_weights(model) -> dict:
    """Integer codes, int32 bias codes, float32 scales and int32 tables of a QAT model."""
    if model.quant is None or not model.qcfg.integer:
        raise ValueError("integer export needs a model with every tensor group quantized")
    was = model.training, model.noise_std
    model.eval()
    model.noise_std = 0.0
    try:
        return _collect(model)
    finally:
        model.train(was[0])
        model.noise_std = was[1]


def _collect(model) -> dict:
    q, qc = model.quant, model.qcfg
    wdt = _code_dtype(qc.weights.bits)
    out: dict = {"in.scale": _np(q["in"].scale(), np.float32)}

    def lin(prefix, lin_mod, wq, s_x, s_out):
        s_w = wq.scale()
        out[f"{prefix}.w"] = _np(wq.codes(lin_mod.weight), wdt)
        out[f"{prefix}.w.scale"] = _np(s_w, np.float32)
        out[f"{prefix}.b"] = _np(_bias_codes(lin_mod.bias, s_x * s_w, True), np.int32)
        if s_out is not None:
            out[f"{prefix}.out.scale"] = _np(s_out, np.float32)

    lin("enc", model.enc, q["enc_w"], q["in"].scale(), q["enc_out"].scale())
    s_h = q["enc_out"].scale()
    for i, blk in enumerate(model.blocks):
        k = lambda n, i=i: layer_key(i, n)  # noqa: E731
        p = {n: q[f"l{i}_{n}"] for n in ("dt", "A", "B", "C", "D", "state", "y", "gelu",
                                         "mix_w", "z", "glu", "res")}
        for name, codes in zip("ABCD", _s4d_codes(model, blk, p)):
            bits = getattr(qc, name).bits
            out[k(name)] = _np(codes, _code_dtype(bits))
            out[k(name + ".scale")] = _np(p[name].scale(), np.float32)
        out[k("state.scale")] = _np(p["state"].scale(), np.float32)
        out[k("y.scale")] = _np(p["y"].scale(), np.float32)
        s_g = p["gelu"].scale()
        out[k("gelu.table")] = _np(lut_table(p["y"], p["y"].scale(), Fn.gelu, s_g,
                                             p["gelu"].qmin, p["gelu"].qmax), np.int32)
        out[k("gelu.scale")] = _np(s_g, np.float32)
        lin(k("mix"), blk.mix, p["mix_w"], s_g, p["z"].scale())
        out[k("sig.table")] = _np(lut_table(p["z"], p["z"].scale(), torch.sigmoid,
                                            sig_scale(p["z"]), 0, p["z"].qmax), np.int32)
        out[k("glu.scale")] = _np(p["glu"].scale(), np.float32)
        out[k("res.scale")] = _np(p["res"].scale(), np.float32)
        s_h = p["res"].scale()
    lin("dec", model.dec, q["dec_w"], s_h, None)
    return out


def model_weights(model) -> dict:
    return integer_weights(model) if model.quant is not None else float_weights(model)


def check_layout(spec: Spec, w: dict) -> None:
    """Every key of the layout present with its shape; nothing else."""
    from qs4d.runtime.spec import weight_shapes

    want = weight_shapes(spec)
    extra, missing = sorted(set(w) - set(want)), sorted(set(want) - set(w))
    if extra or missing:
        raise ValueError(f"weights: missing {missing}, unexpected {extra}")
    for key, (shape, _kind) in want.items():
        if tuple(w[key].shape) != tuple(shape):
            raise ValueError(f"weights[{key!r}]: shape {w[key].shape}, expected {shape}")
