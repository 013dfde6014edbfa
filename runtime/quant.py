"""Integer quantization in numpy, exactly the semantics of DESIGN section 3.

- quantize: q = clip(rint(x / scale), qmin, qmax); float32 division, round half to even.
- requantize: sum of float32(acc_i) * float32(m_i) in the given order, rint, saturate.
  The combined multiplier of an accumulator is m = float32(s_in * s_w) / s_out, all float32.
- lookup tables: elementwise nonlinearities over an input code, table index = code - qmin.

The torch fake-quant in `qs4d.models.quant` and the ONNX graph in `qs4d.export` perform the
same float32 operations in the same order, so the three agree bit for bit.
"""

from __future__ import annotations

import numpy as np

F32 = np.float32


def qrange(bits: int, narrow: bool = False) -> tuple[int, int]:
    """(qmin, qmax) of a signed symmetric quantizer; ternary (2 bits) is always narrow."""
    if bits < 2:
        raise ValueError(f"bits must be >= 2, got {bits}")
    qmax = 2 ** (bits - 1) - 1
    qmin = -qmax if (narrow or bits == 2) else -qmax - 1
    return qmin, qmax


def quantize(x: np.ndarray, scale, qmin: int, qmax: int) -> np.ndarray:
    """Codes of x as int32: clip(rint(x / scale)), float32 division, half to even."""
    x = np.asarray(x, dtype=F32)
    q = np.rint(x / np.asarray(scale, dtype=F32))
    return np.clip(q, qmin, qmax).astype(np.int32)


def dequantize(q: np.ndarray, scale) -> np.ndarray:
    return np.asarray(q, dtype=F32) * np.asarray(scale, dtype=F32)


def multiplier(s_in, s_w, s_out) -> np.ndarray:
    """Combined requantization scale float32(float32(s_in * s_w) / s_out)."""
    p = np.asarray(s_in, dtype=F32) * np.asarray(s_w, dtype=F32)
    return (p / np.asarray(s_out, dtype=F32)).astype(F32)


def requantize(terms, qmin: int, qmax: int) -> np.ndarray:
    """clip(rint(sum_i float32(acc_i) * m_i)) for terms [(acc_i, m_i), ...], summed in order."""
    total = None
    for acc, m in terms:
        t = np.asarray(acc).astype(F32) * np.asarray(m, dtype=F32)
        total = t if total is None else (total + t).astype(F32)
    return np.clip(np.rint(total), qmin, qmax).astype(np.int32)


def lookup(table: np.ndarray, codes: np.ndarray, qmin: int) -> np.ndarray:
    """Elementwise table lookup over input codes (ONNX Gather on code - qmin)."""
    return np.asarray(table)[np.asarray(codes, dtype=np.int64) - qmin]


def accumulate_bound(*code_bounds: int, terms: int = 1) -> int:
    """Largest |sum| of `terms` products of codes bounded by code_bounds; picks int32 or int64."""
    b = terms
    for c in code_bounds:
        b *= int(c)
    return b


def acc_dtype(bound: int):
    """int32 when the accumulator bound fits, else int64 (never wrap around)."""
    return np.int32 if bound < 2**31 else np.int64
