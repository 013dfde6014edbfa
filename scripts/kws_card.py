"""The real-speaker section of a keyword bundle's model card, from its streaming-benchmark
runs (`qs4d kws-bench --json`) on validation and testing speakers and its training metrics.

    python scripts/kws_card.py BUNDLE --validation V.json --testing T.json --out CARD.md

Prints the threshold chosen on validation, which `qs4d export --threshold` then records in the
bundle: the highest detection rate at <= 2 false alarms per hour, when that detects at least
MIN_DETECTION % of the keywords. Where it does not (the threshold would make the detector all
but silent), it prints nothing: the bundle keeps the apps' default, and the card reports both
operating points on testing.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

APP_THRESHOLD = 0.8  # qs4d.apps.detect.APP_THRESHOLD, without importing the apps
MIN_DETECTION = 50.0  # %: a validation operating point below this is not shipped

DATA_LICENCES = {
    "sc12": "Speech Commands v0.02 (CC BY 4.0; P. Warden, arXiv:1804.03209, 2018): its test "
            "set's speakers split by the salted speaker hash (docs/data-kws.md, \"Real "
            "speakers\"); background noise from the same data set",
    "digits": "Free Spoken Digit Dataset (CC BY-SA 4.0; Z. Jackson et al.) and Speech Commands "
              "v0.02 (CC BY 4.0; P. Warden, arXiv:1804.03209, 2018), speakers split as in "
              "docs/data-kws.md, \"Real speakers\"",
}


def chosen_threshold(val: dict) -> tuple[float, bool]:
    """(the threshold of the validation operating point at <= 2 FA/h, or the grid's highest
    when none reaches it; whether it is shipped)."""
    c = val["chosen"]
    if c is None:
        return max(float(r["threshold"]) for r in val["rows"]), False
    return float(c["threshold"]), float(c["rate"]) >= MIN_DETECTION


def row_at(run: dict, threshold: float) -> dict:
    return min(run["rows"], key=lambda r: abs(r["threshold"] - threshold))


def card(bundle: Path, val: dict, test: dict) -> str:
    spec = json.loads((bundle / "spec.json").read_text())
    m, task = spec["metrics"], val["task"]
    if "test_acc" not in m:  # a float phase's checkpoint: its end-of-phase figures
        m = {k[len("float_"):]: v for k, v in m.items() if k.startswith("float_")}
    thr, ship = chosen_threshold(val)
    v, t = row_at(val, thr), row_at(test, thr)
    shipped = thr if ship else APP_THRESHOLD
    vs, ts = row_at(val, shipped), row_at(test, shipped)
    lines = [f"## Real speakers ({task})", "",
             f"Data: {DATA_LICENCES[task]}. Nothing of it is in this repository.", ""]
    acc = [(k, m[k]) for k in ("test_acc", "val_acc", "sc_test_acc", "sc_digits_acc",
                               "fsdd_unknown_acc") if k in m]
    what = {"test_acc": "held-out test speakers" + (f" (FSDD {val['fold'].split('/')[0]})"
                                                     if task == "digits" else
                                                     " (1065 clips, 12 classes)"),
            "val_acc": "validation speakers", "sc_test_acc": "Speech Commands test speakers, "
            "12 classes under the digits map", "sc_digits_acc": "their digit clips alone",
            "fsdd_unknown_acc": "FSDD digits (500) called _unknown_"}
    lines += ["Clip accuracy (logits averaged over each 1-s clip, as trained):", "",
              "| split | accuracy % |", "|---|---|"]
    lines += [f"| {what[k]} | {x:.1f} |" for k, x in acc]
    lines += ["", "Streaming on real speech (`qs4d kws-bench`, the apps' detector: logits "
              "averaged over 1 s, refractory 800 ms): keyword clips of held-out speakers "
              "spliced between their other words and hours of Asterisk prompts in other "
              "languages, over real background noise. Operating points, from the validation "
              "speakers only: the highest detection at <= 2 false alarms per hour (threshold "
              f"{thr:g}), and the threshold this bundle ships with, **{shipped:g}** ("
              + ("that same point" if ship else
                 f"the apps' default: the 2-FA/h point detects under {MIN_DETECTION:g} % of "
                 "the validation keywords, which would leave the detector all but silent")
              + ").", "",
              "| split | keyword clips | hours | threshold | detected % | false alarms / h |",
              "|---|---|---|---|---|---|"]
    for name, run, rows in (("validation", val, (v, vs)), ("testing", test, (t, ts))):
        for r in (rows if not ship else rows[:1]):
            lines.append(f"| {name} | {run['counts']['keyword clips']} | {run['hours']:.2f} | "
                         f"{r['threshold']:g} | {r['rate']:.1f} | {r['fa_per_hour']:.2f} |")
    lines += ["",
              "Full curves: `docs/results/kws-real/` (JSON and plot per split); produced by "
              "`bash scripts/kws_zoo.sh`.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", type=Path)
    p.add_argument("--validation", type=Path, required=True)
    p.add_argument("--testing", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    val, test = (json.loads(f.read_text()) for f in (a.validation, a.testing))
    a.out.write_text(card(a.bundle, val, test))
    thr, ship = chosen_threshold(val)
    print(f"{thr:g}" if ship else "")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
