"""`qs4d models`: the package's zoo, one line per bundle with its headline figure.

    qs4d models                 # the zoo shipped with the package
    qs4d models --zoo DIR       # any folder of bundles

Columns: the bundle, its task (from its labels), precision (weight bits and state bits, or
float32), weight memory and the headline figure of its model card: DS2 accuracy for the ECG
bundles trained on MIT-BIH, held-out real speakers' clip accuracy for the keyword bundles
trained on them, and for the others (simulated ECG, synthetic voices, the toy task) the test
accuracy on their synthetic data. `qs4d kws` and `qs4d ecg`
without a bundle run the ones marked *. Only the bundles' spec.json and README.md are read
(nothing is loaded or checked: `qs4d verify BUNDLE` does that).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from qs4d.runtime.cliargs import ArgParser
from qs4d.runtime.spec import SPEC_FILE

from .zoo import DEFAULT, ZOO

TASKS = {("N", "S", "V", "F", "Q"): "ECG beats (AAMI)",
         ("yes", "no"): "keywords (sc12)", ("zero", "one"): "digits"}
DS2 = re.compile(r"Accuracy ([\d.]+)% of matched beats")
MEMORY = re.compile(r"Weight memory: (\d+) bits")


def task_of(labels: list) -> str:
    for head, name in TASKS.items():
        if tuple(labels[:len(head)]) == head:
            return name
    return f"{len(labels)} classes"


def precision_of(quant: dict) -> str:
    """'float32', 'ternary/s8' or 'wW/sS' (weight and state bits) of a spec's quant table."""
    w, s = ((quant.get(g) or {}).get("bits", 0) for g in ("weights", "state"))
    if not w and not s:
        return "float32"
    return f"{'ternary' if w == 2 else f'w{w}'}/s{s}"


def headline(card: str, metrics: dict) -> str:
    m = DS2.search(card)
    if m:
        return f"MIT-BIH DS2 (22 patients): {float(m.group(1)):.1f}%"
    acc = metrics.get("test_acc", metrics.get("float_test_acc"))
    if acc is None:
        return "-"
    if "## Real speakers" in card:
        return f"held-out real speakers: {acc:.1f}%"
    return f"synthetic data's test: {acc:.1f}%"  # simulated ECG, synthetic voices, toy tones


def rows(zoo: Path) -> list[tuple]:
    """(name, task, precision, weight memory, headline) of every bundle in zoo, by name."""
    out = []
    defaults = set(DEFAULT.values())
    for spec_path in sorted(zoo.glob(f"*/{SPEC_FILE}")):
        d = json.loads(spec_path.read_text())
        card_path = spec_path.parent / "README.md"
        card = card_path.read_text() if card_path.is_file() else ""
        mem = MEMORY.search(card)
        name = spec_path.parent.name
        out.append((name + (" *" if name in defaults else ""), task_of(list(d.get("labels", []))),
                    precision_of(d.get("quant", {})),
                    f"{int(mem.group(1)) / 8192:.1f} KiB" if mem else "-",
                    headline(card, d.get("metrics") or {})))
    return out


def main(argv: list[str] | None = None) -> int:
    p = ArgParser(prog="qs4d models", description=__doc__.splitlines()[0])
    p.add_argument("--zoo", type=Path, default=ZOO, help=f"a folder of bundles (default {ZOO})")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    table = rows(args.zoo)
    if not table:
        print(f"no bundles in {args.zoo}")
        return 1
    head = ("bundle", "task", "precision", "weights", "headline (model card)")
    widths = [max(len(str(r[i])) for r in [head, *table]) for i in range(len(head))]
    for r in [head, *table]:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip())
    print("\n* the default bundle of `qs4d kws` / `qs4d ecg`; each bundle's README.md is its "
          "model card")
    return 0
