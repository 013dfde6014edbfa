"""`make demo`: keyword spotting on the bundled WAVs (Speech Commands words with the sc12
bundle, digits with the digits bundle) and ECG on the bundled MIT-BIH record 208 excerpt,
through the onnx and imssa backends, then a profile summary. A few minutes on 2 cores.

Bundles: models/zoo/sc12-qat4, models/zoo/digits-qat4 and models/zoo/ecg-qat4 (trained on real
speakers and patients). A missing one is named with the command that makes it; the rest of the
demo still runs and the exit status is then 1. Figures go to out/demo/.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "models" / "zoo"
DATA = ROOT / "apps" / "data"
OUT = ROOT / "out" / "demo"
WANT = {  # part: (bundle, WAV truth file or None, how to make the bundle)
    "commands": ("sc12-qat4", "commands.json",
                 "QS4D_THREADS=1 qs4d train --config models/recipes/sc12-qat4.toml --out "
                 "runs/sc12-qat4 && bash scripts/kws_zoo.sh sc12-qat4"),
    "digits": ("digits-qat4", "digits.json",
               "QS4D_THREADS=1 qs4d train --config models/recipes/digits-qat4.toml --set "
               "train.fold=jackson/lucas --out runs/digits-qat4 && bash scripts/kws_zoo.sh "
               "digits-qat4"),
    "ecg": ("ecg-qat4", None, "bash scripts/ecg_zoo.sh (models/recipes/ecg-next.toml)"),
}


def find_bundle(part: str) -> Path | None:
    path = ZOO / WANT[part][0]
    return path if (path / "spec.json").is_file() else None


def banner(text: str) -> None:
    print(f"\n{'=' * 100}\n{text}\n{'=' * 100}", flush=True)


def run(argv: list[str]) -> int:
    from qs4d.cli import main

    print(f"$ qs4d {' '.join(argv)}", flush=True)
    t0 = time.perf_counter()
    try:
        rc = main(argv)
    except Exception:  # report, count as a failure, and go on with the next part
        traceback.print_exc()
        rc = 1
    print(f"[{time.perf_counter() - t0:.1f} s, exit {rc}]", flush=True)
    return rc


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    found = {part: find_bundle(part) for part in WANT}
    missing = [part for part, b in found.items() if b is None]
    for part in missing:
        name, _, how = WANT[part]
        print(f"MISSING: models/zoo/{name}; make it with:\n  {how}", file=sys.stderr)
    failures = 0
    for part in ("commands", "digits"):
        kws, truth = found[part], WANT[part][1]
        if kws is None:
            continue
        items = json.loads((DATA / truth).read_text())
        banner(f"keyword spotting: {kws.name} on {len(items)} bundled WAV(s)")
        for t in items:
            print(f"  {t['file']}: says {t['text']!r} ({t['noise']}; {t['source']})")
        wavs = [str(DATA / t["file"]) for t in items]
        for be in ("onnx", "imssa"):
            failures += run(["kws", str(kws), "--wav", *wavs, "--fast", "--backend", be]) != 0
    ecg = found["ecg"]
    if ecg is not None:
        banner(f"ECG: {ecg.name} on the MIT-BIH record 208 excerpt (5 min, no annotations). "
               f"Record 208 is in DS1, the models' training set: this shows the runtime, not "
               f"accuracy on new patients (the model card's DS2 table does)")
        failures += run(["ecg", str(ecg), "--record208", "--fast", "--backend", "onnx",
                         "--print-limit", "20", "--plot", str(OUT / "ecg208.png")]) != 0
        failures += run(["ecg", str(ecg), "--record208", "--fast", "--backend", "imssa",
                         "--seconds", "60", "--quiet"]) != 0
    torch = ["--torch"] if importlib.util.find_spec("torch") is not None else []
    for name, b in (("kws", found["commands"]), ("ecg", ecg)):
        if b is None:
            continue
        banner(f"profile: {b.name}")
        failures += run(["profile", str(b), "--backends", "onnx,imssa,numpy", "--batch", "1,8",
                         "--steps", "100", "--repeats", "3", *torch, "--json",
                         str(OUT / f"profile-{name}.json"), "--plot",
                         str(OUT / f"profile-{name}.png")]) != 0
    banner(f"demo finished in {time.perf_counter() - t0:.0f} s; figures in {OUT}")
    if missing:
        print("incomplete: " + ", ".join(f"models/zoo/{WANT[p][0]}" for p in missing)
              + " missing", file=sys.stderr)
    return 1 if missing or failures else 0


if __name__ == "__main__":
    sys.exit(main())
