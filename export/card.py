"""Model cards: a short markdown page written beside every exported bundle, from the spec,
the training recipe and the measured metrics."""

from __future__ import annotations

import json

import numpy as np

from qs4d.runtime.spec import Spec, weight_shapes


def weight_bits(spec: Spec, w: dict) -> int:
    """Bits of weight memory: codes at their group's bit width (float32 for float bundles)."""
    q = spec.quant
    total = 0
    for key, (shape, kind) in weight_shapes(spec).items():
        n = int(np.prod(shape)) if shape else 1
        if kind == "float":
            total += 32 * n
        elif kind == "code":
            name = key.split(".")[-1]
            group = {"A": q.A, "B": q.B, "C": q.C, "D": q.D}.get(name, q.weights)
            total += group.bits * n
        elif kind == "acc":
            total += 32 * n
    return total


THREADS_NOTE = ("\nQS4D_THREADS=1: one torch thread, as trained here (float sums, and so the "
                "weights, depend on the thread count).\n")


def model_card(spec: Spec, w: dict, *, command: str, train: dict, data: str) -> str:
    m = spec.metrics
    rows = "\n".join(f"| {k} | {v} |" for k, v in sorted(m.items()))
    q = spec.quant
    bits = {g: getattr(q, g).bits for g in ("weights", "A", "B", "C", "D", "state", "act", "adc")}
    return f"""# {spec.name or 'qs4d model'}

S4D classifier: {spec.model.n_layers} layers, H={spec.model.d_model}, N={spec.model.d_state}
(modes per layer {list(spec.model.layer_modes)}), {spec.model.d_input} input features,
{spec.model.n_classes} classes {list(spec.labels)}.
Front end: {spec.frontend.kind}. Quantization bits: {json.dumps(bits)} (0 = float).
Weight memory: {weight_bits(spec, w)} bits.

## Reproduce

```
{command}
```
{THREADS_NOTE if "QS4D_THREADS=1" in command else ""}
Data: {data}. Seed: {train.get('seed')}.
Recipe: `{json.dumps(train, sort_keys=True)}`

## Metrics (measured by the command above; also in spec.json)

Accuracies in %. `val`/`test`: held-out validation and test data (for keyword spotting,
speakers/voices never seen in training; `test_all` adds the real-speaker clips); `real*`: the
real-speaker split, clean and with noise at 20 and 10 dB SNR; `float_*`, `ptq_*`, `qat_*`:
measured at the end of that training phase; plain names: the exported model.

| metric | value |
|---|---|
{rows}
"""
