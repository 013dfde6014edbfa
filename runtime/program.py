"""The codes a crossbar holds for a float bundle: post-training quantization of the matrices a
crossbar can map, per output channel, to the bits of CrossbarConfig.weight_bits.

A float model has no codes of its own, yet a memristive array stores every weight on a grid
of conductance levels: programming a float model is post-training quantization. Each matrix
(encoder, decoder and mixing W; the S4D blocks A, B, C, D) is rounded per output channel to
symmetric `bits`-bit codes, scale = max |w| / (2^(bits-1) - 1) (1 for an all-zero channel).
Export (qs4d.export.crossbar) builds a float bundle's tables from these codes; the imssa
backend recomputes them from weights.npz to check the tables and runs everything it does not
map (biases, GELU, GLU, residual, unmapped layers) on the float weights. Integer bundles
program their own codes and never come here.

Glossary: H width, P modes.
"""

from __future__ import annotations

import numpy as np

from .spec import QuantConfig, QuantSpec, Spec, SpecError, layer_key

F32 = np.float32


def matrix_keys(spec: Spec) -> list:
    """The weights keys of every matrix a crossbar can map."""
    layers = range(spec.model.n_layers)
    return (["enc.w", "dec.w"] + [f"{layer_key(i, 'mix')}.w" for i in layers]
            + [layer_key(i, n) for i in layers for n in "ABCD"])


def quantize_rows(w: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-output-channel (axis 0) codes (int64) and scales (float32, > 0)."""
    w = np.asarray(w, F32)
    qmax = 2 ** (bits - 1) - 1
    amax = np.abs(w.reshape(len(w), -1)).max(1) if w.ndim > 1 else np.abs(w)  # (channels,)
    scale = np.where(amax > 0, amax / F32(qmax), F32(1.0)).astype(F32)  # (channels,)
    codes = np.rint(w / scale.reshape((-1,) + (1,) * (w.ndim - 1)))
    return np.clip(codes, -qmax, qmax).astype(np.int64), scale


def programmed_weights(spec: Spec, w: dict, bits: int) -> tuple[Spec, dict]:
    """(a spec whose weights, A, B, C and D quantizers are `bits`-bit per channel, the codes
    and scales of every crossbar-mappable matrix keyed as in an integer weights.npz) for a
    float bundle's weights `w`."""
    if spec.quant.integer:
        raise ValueError("programmed_weights: an integer bundle programs its own codes")
    if not 2 <= bits <= 16:
        raise ValueError(f"programmed_weights: bits must be 2..16, got {bits}")
    q = QuantSpec(bits, per_channel=True, narrow=True)
    quant = QuantConfig(**{**{g: getattr(spec.quant, g) for g in ("dt", "state", "act", "adc")},
                           "weights": q, "A": q, "B": q, "C": q, "D": q})
    out: dict = {}
    for key in matrix_keys(spec):
        out[key], out[f"{key}.scale"] = quantize_rows(w[key], bits)
    return spec.replace(quant=quant), out


def dequantized(codes: dict) -> dict:
    """Float32 weights the programmed codes stand for: code * scale of its channel."""
    return {k: (v * codes[f"{k}.scale"].reshape((-1,) + (1,) * (v.ndim - 1))).astype(F32)
            for k, v in codes.items() if not k.endswith(".scale")}


def crossbar_codes(spec: Spec, w: dict, bits: int) -> tuple[Spec, dict]:
    """(spec, weights.npz-style codes and scales) that a bundle's crossbar holds: an integer
    bundle's own, a float bundle's programmed as `bits`-bit codes; a partly quantized spec
    has neither."""
    if spec.quant.integer:
        return spec, w
    if spec.quant.any_enabled:
        raise SpecError("spec.quant: crossbar tables need an integer bundle (every group but dt "
                        "quantized) or a float one (none quantized)")
    return programmed_weights(spec, w, bits)


def as_programmed(spec: Spec, w: dict, bits: int, keys) -> dict:
    """A float bundle's weights with the matrices `keys` (those its crossbar maps) replaced
    by the values their programmed codes stand for: the float model an ideal crossbar
    computes."""
    deq = dequantized(programmed_weights(spec, w, bits)[1])
    return {**w, **{k: deq[k] for k in keys}}
