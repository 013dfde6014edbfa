"""The DS-CNN baseline's model card, with the side-by-side table against the S4D keyword
bundles of the zoo (their numbers read from spec.json; MACs from `qs4d.runtime.costs`).

Glossary: K classes.
"""

from __future__ import annotations

import json
from pathlib import Path

from qs4d.runtime.costs import step_costs, step_period_s
from qs4d.runtime.spec import Spec

from .card import weight_bits

ACC = (("test", "test"), ("real", "real"), ("real 20 dB", "real_snr20"),
       ("real 10 dB", "real_snr10"))


def zoo_rows(zoo: Path) -> list[dict]:
    """One row per log-mel (keyword) bundle under `zoo`: params, weight bits, MACs per 1 s."""
    rows = []
    for path in sorted(zoo.glob("*/spec.json")):
        spec = Spec.from_dict(json.loads(path.read_text()), str(path))
        if spec.frontend.kind != "logmel":
            continue
        q, steps = spec.quant, round(1.0 / step_period_s(spec))
        w = "ternary" if q.weights.bits == 2 else f"w{q.weights.bits}"
        bits = f"{w}/a{q.act.bits}/state{q.state.bits}" if q.integer else "float32"
        m = spec.model
        pruned = f", {max(m.modes)} of {m.d_state // 2} modes" if m.modes and \
            max(m.modes) < m.d_state // 2 else ""
        rows.append({"model": path.parent.name, "arch": f"S4D {m.n_layers}x"
                     f"H{m.d_model} N{m.d_state}{pruned}", "bits": bits,
                     "params": spec.metrics.get("params"), "weight_bits": weight_bits(spec, {}),
                     "macs_1s": step_costs(spec).macs * steps,
                     "macs_note": f"{step_costs(spec).macs} x {steps} steps",
                     **{k: spec.metrics.get(f"{k}_acc") for _, k in ACC}})
    return rows


def dscnn_rows(m: dict, name: str) -> list[dict]:
    return [{"model": f"{name} ({tag})", "arch": "DS-CNN (MLPerf Tiny)", "bits": bits,
             "params": m["params"], "weight_bits": m[f"onnx_{tag}_weight_bits"],
             "macs_1s": m["macs"], "macs_note": "1 inference",
             **{k: m.get(f"onnx_{tag}_{k}_acc") for _, k in ACC}}
            for tag, bits in (("float", "float32"), ("int8", "w8/a8"))]


def side_by_side(rows: list[dict]) -> str:
    def pct(v):
        return "-" if v is None else f"{v:.1f}"

    head = ("| model | architecture | bits | params | weight memory | MACs per 1 s | "
            + " | ".join(t for t, _ in ACC) + " |")
    lines = [head, "|" + "---|" * (6 + len(ACC))]
    for r in rows:
        lines.append(f"| {r['model']} | {r['arch']} | {r['bits']} | "
                     f"{'-' if r['params'] is None else format(r['params'], ',')} | "
                     f"{r['weight_bits'] / 1e6:.3f} Mbit | {r['macs_1s'] / 1e6:.2f} M "
                     f"({r['macs_note']}) | " + " | ".join(pct(r[k]) for _, k in ACC) + " |")
    return "\n".join(lines)


def _acc_table(m: dict) -> str:
    splits = ("val", "test", "test_all", "real", "real_snr20", "real_snr10")
    lines = ["| model | " + " | ".join(splits) + " |", "|---|" + "---|" * len(splits)]
    for tag, what in (("torch", "PyTorch, end of training"), ("onnx_float", "float ONNX"),
                      ("onnx_int8", "int8 ONNX")):
        vals = [m.get(f"{tag}_{s}_acc") for s in splits]
        lines.append(f"| {what} | " + " | ".join("-" if v is None else f"{v:.2f}"
                                                 for v in vals) + " |")
    return "\n".join(lines)


def card(m: dict, zoo: Path, out: Path) -> str:
    name = out.name
    L, F = m["input_shape"]
    mb = m["macs_by_layer"]
    return f"""# {name}: the MLPerf Tiny DS-CNN as a peer baseline

The MLPerf Tiny keyword-spotting reference model (DS-CNN, `keras_model.py` "ds_cnn" of
mlcommons/tiny): Conv 64 x (10x4) stride 2 + BN + ReLU + Dropout 0.2, 4 x [depthwise 3x3 + BN +
ReLU, pointwise 64 + BN + ReLU], Dropout 0.4, average pool, dense {m['dscnn']['n_classes']}
(`models/dscnn.py`). Trained on the same data, features, augmentation and splits as the S4D
keyword models, by the same training loop and evaluation code (`models/dscnn_train.py`).

**Input differs from the reference:** the reference reads 49 x 10 MFCC; this model reads the
S4D models' input, {F} log-mel bands x {L} frames (25-ms window, 10-ms hop, 1-s clip, the
runtime's streaming LogMel front end), normalized by the training mean and std (in the ONNX
metadata). The larger input raises the compute: {m['macs']:,} MACs per inference here against
{m['macs_mlperf_49x10']:,} (the published ~2.7 M) at 49 x 10, same weights.

Files: `dscnn_float.onnx` (BN folded, opset {m['opset']}), `dscnn_int8.onnx` (ONNX Runtime
static quantization, QDQ, int8 per-channel weights, int8 activations, int32 biases, MinMax
calibration on {m['n_calib']} seeded training feature clips incl. augmented copies). Input
`x` (B, {L}, {F}), output `logits` (B, {m['dscnn']['n_classes']}). Both pass `onnx.checker` (full check).

## Reproduce

```
{m.get('command', '')}
```

Data: `{m['data']}` (`qs4d data kws --out data/kws`, seed 0; docs/data-kws.md): {m['n_train']:,}
training examples (each training clip clean and in {m.get('n_aug', '?')} augmented copies),
features from `{m['data']}/.features-{m.get('features', '?')}.npz`, the file that `qs4d train`
with the S4D keyword recipes (same data, seed 0) reads. Seed: {m['seed']}. Recipe: `models/recipes/kws-dscnn.toml`; train config
`{json.dumps(m['train'], sort_keys=True)}`. The reference trains with Adam and L2 1e-4 on
its kernels; here the S4D trainer's AdamW (weight decay {m['train']['weight_decay']}), cosine
schedule and label smoothing are used, so the two model families see the same recipe.
Training: {m['train_minutes']} min wall time (the threads as in the command) on a CPU shared
with other jobs.

## Accuracy (%, measured by the command above; also in metrics.json)

`test`: held-out synthetic voices; `test_all` adds the real-speaker clips; `real*`: one real
speaker ({m.get('n_real', '?')} clips), clean and with noise at 20 and 10 dB SNR. ONNX models run on ONNX Runtime.

{_acc_table(m)}

## Size and compute

| | value |
|---|---|
| parameters (trainable) | {m['params']:,} |
| parameters incl. BN moving statistics (the Keras summary's total) | {m['params_total']:,} |
| deployed weights and biases (BN folded) | {m['onnx_float_n_weights']:,} |
| weight memory, float32 | {m['onnx_float_weight_bits']:,} bits |
| weight memory, int8 (8-bit weights, 32-bit biases) | {m['onnx_int8_weight_bits']:,} bits |
| int8 incl. scales and zero points | {m['onnx_int8_total_bits']:,} bits |
| MACs per inference (one 1-s window) | {m['macs']:,} (conv {mb['conv']:,}, depthwise {mb['dw']:,}, pointwise {mb['pw']:,}, dense {mb['fc']:,}) |

MACs count the convolutions and the dense layer (BN folded; ReLU and pooling not counted).

## Side by side with the S4D keyword bundles

Produced by `python -m qs4d.export.dscnn --card-only --out {out}` from `{zoo}/*/spec.json`
(the zoo as it stands when the card is written) and this folder's metrics.json. S4D MACs per 1 s: MACs per streaming
step (`qs4d.runtime.costs.step_costs`) x 100 steps (10-ms hop); the S4D gives a decision every
step, the DS-CNN one per window (a sliding window every 100 ms would be 10x its figure).
Weight memory: weights at their bit width plus 32-bit biases, as in the zoo cards; S4D
`params` are the trainable parameters of its training run (spec.json).

{side_by_side(zoo_rows(zoo) + dscnn_rows(m, name))}
{f"{chr(10)}**Note:** {m['note']}{chr(10)}" if m.get("note") else ""}"""


def write_card(out: Path, metrics: dict, zoo: Path) -> None:
    (out / "README.md").write_text(card(metrics, zoo, out))
