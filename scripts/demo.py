"""`make demo`: keyword spotting on the bundled WAVs and ECG on the bundled MIT-BIH record 208
excerpt, through the onnx and imssa backends, then a profile summary. A few minutes on 2 cores.

Bundles: models/zoo/kws-voices-band and models/zoo/ecg-qat4 when they exist, else any zoo bundle with
a logmel (keywords) or ecg (ECG) front end. A missing one is named with the command that makes
it; the rest of the demo still runs and the exit status is then 1. Figures go to out/demo/.
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
WANT = {"logmel": ("kws-voices-band", "qs4d data kws --out data/kws-nat3 --pico-per-word 400 "
                   "--pico-per-unknown 40 --mbrola-per-word 400 --mbrola-per-unknown 40 "
                   "--piper-per-word 400 --piper-per-unknown 40 && qs4d train --config "
                   "models/recipes/kws-voices-band.toml --out runs/kws-voices-band && qs4d "
                   "export runs/kws-voices-band/final.pt --out models/zoo/kws-voices-band"),
        "ecg": ("ecg-qat4", "the ECG recipe (models/recipes/ecg-*.toml) trained and exported "
                "to models/zoo/ecg-qat4")}


def find_bundle(kind: str) -> Path | None:
    """The preferred zoo bundle for a front-end kind, else any zoo bundle of that kind."""
    preferred = ZOO / WANT[kind][0]
    candidates = [preferred] + sorted(p.parent for p in ZOO.glob("*/spec.json"))
    for path in candidates:
        spec = path / "spec.json"
        if spec.is_file() and json.loads(spec.read_text()).get("frontend", {}).get("kind") == kind:
            return path
    return None


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
    kws, ecg = find_bundle("logmel"), find_bundle("ecg")
    missing = [(kind, WANT[kind]) for kind, b in (("logmel", kws), ("ecg", ecg)) if b is None]
    for kind, (name, how) in missing:
        print(f"MISSING: no bundle with a {kind!r} front end in {ZOO} (expected "
              f"models/zoo/{name}); make it with:\n  {how}", file=sys.stderr)
    failures = 0
    wavs = sorted(DATA.glob("*.wav"))
    if kws is not None:
        banner(f"keyword spotting: {kws.name} on {len(wavs)} bundled WAVs")
        for t in json.loads((DATA / "digits.json").read_text()):
            print(f"  {t['file']}: says {t['text']!r} ({t['noise']})")
        for be in ("onnx", "imssa"):
            failures += run(["kws", str(kws), "--wav", *map(str, wavs), "--fast", "--backend",
                             be]) != 0
    if ecg is not None:
        banner(f"ECG: {ecg.name} on the MIT-BIH record 208 excerpt (5 min, no annotations). "
               f"Record 208 is in DS1, the models' training set: this shows the runtime, not "
               f"accuracy on new patients (the model card's DS2 table does)")
        failures += run(["ecg", str(ecg), "--record208", "--fast", "--backend", "onnx",
                         "--print-limit", "20", "--plot", str(OUT / "ecg208.png")]) != 0
        failures += run(["ecg", str(ecg), "--record208", "--fast", "--backend", "imssa",
                         "--seconds", "60", "--quiet"]) != 0
    torch = ["--torch"] if importlib.util.find_spec("torch") is not None else []
    for name, b in (("kws", kws), ("ecg", ecg)):
        if b is None:
            continue
        banner(f"profile: {b.name}")
        failures += run(["profile", str(b), "--backends", "onnx,imssa,numpy", "--batch", "1,8",
                         "--steps", "100", "--repeats", "3", *torch, "--json",
                         str(OUT / f"profile-{name}.json"), "--plot",
                         str(OUT / f"profile-{name}.png")]) != 0
    banner(f"demo finished in {time.perf_counter() - t0:.0f} s; figures in {OUT}")
    if missing:
        print("incomplete: " + ", ".join(f"models/zoo/{n} ({k} front end)" for k, (n, _) in
                                         missing) + " missing", file=sys.stderr)
    return 1 if missing or failures else 0


if __name__ == "__main__":
    sys.exit(main())
