"""Complexity of shipped bundles against the float32 model of their unpruned architecture.

    python -m qs4d.runtime.complexity models/zoo/kws-* [--out FILE]

Per bundle, from its spec (runtime/costs.py, numpy only): bit operations per step (MACs x weight
bits x activation bits), memory (weight codes + recurrent state, bits) and ADC work
(conversions x bits, every S4D layer on a crossbar), each beside its reduction factor
float32 / this; and the bundle's test accuracy with its distance to the float model it was
fine-tuned from (spec metrics `test_acc` and `float_test_acc`, measured at export). The last
line names the model with the largest reduction among those within 1 point of float.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .bundle import load_bundle
from .costs import complexity

COLS = ("bundle", "w/s/a/adc bits", "modes", "test %", "vs float", "bitops", "x", "mem bits",
        "x", "ADC bit-conv", "x")


def row(path: str) -> dict:
    spec = load_bundle(path).spec
    q, m = spec.quant, spec.metrics
    bits = (f"{q.weights.bits}/{q.state.bits}/{q.act.bits}/{q.adc.bits}" if q.integer
            else "32/32/32/32")
    acc, fl = m.get("test_acc"), m.get("float_test_acc", m.get("test_acc"))
    c = complexity(spec)
    return {"name": Path(path).name, "bits": bits, "integer": q.integer, "modes": max(spec.model.layer_modes),
            "full_modes": spec.model.d_state // 2, "acc": acc,
            "delta": None if acc is None or fl is None else acc - fl, **c}


def table(rows: list) -> str:
    fmt = "{:<14}{:>15}{:>7}{:>8}{:>9}{:>12}{:>7}{:>10}{:>6}{:>13}{:>6}"
    lines = [fmt.format(*COLS)]
    for r in rows:
        pct = lambda v, sign="": "-" if v is None else f"{v:{sign}.2f}"  # noqa: E731
        lines.append(fmt.format(
            r["name"], r["bits"], f"{r['modes']}/{r['full_modes']}", pct(r["acc"]),
            pct(r["delta"], "+"), r["bitops"], f"{r['bitops_reduction']:.1f}", r["mem_bits"],
            f"{r['mem_bits_reduction']:.1f}", r["adc_bit_conversions"],
            f"{r['adc_bit_conversions_reduction']:.1f}"))
    ok = [r for r in rows if r["integer"] and r["delta"] is not None and r["delta"] >= -1.0]
    if ok:
        best = max(ok, key=lambda r: max(r[f"{k}_reduction"] for k in
                                         ("bitops", "mem_bits", "adc_bit_conversions")))
        lines.append(f"\nlargest reduction within 1 point of float: {best['name']} "
                     f"({best['delta']:+.2f} points): bit operations {best['bitops_reduction']:.1f}x, "
                     f"memory {best['mem_bits_reduction']:.1f}x, ADC work "
                     f"{best['adc_bit_conversions_reduction']:.1f}x fewer than float32")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m qs4d.runtime.complexity", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundles", nargs="+")
    p.add_argument("--out", help="also write the table to this file")
    a = p.parse_args(argv)
    text = table([row(b) for b in a.bundles])
    print(text)
    if a.out:
        cmd = "python -m qs4d.runtime.complexity " + " ".join(a.bundles)
        Path(a.out).write_text(f"command: {cmd}\n\n{text}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
