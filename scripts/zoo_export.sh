#!/usr/bin/env bash
# Export trained runs into models/zoo/ (bundle + model card). Each line names the recipe
# command that trained the run; runs that do not exist are skipped with a message.
#   bash scripts/zoo_export.sh [NAME ...]      (default: every bundle below)
# The ECG bundles are trained on real patients and scored on MIT-BIH DS2: scripts/ecg_zoo.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}

ONLY=" $* "
export_run() {  # NAME CHECKPOINT TRAIN_COMMAND
  local name=$1 ckpt=$2 cmd=$3
  if [ "$ONLY" != "  " ] && [[ "$ONLY" != *" $name "* ]]; then return; fi
  if [ ! -f "$ckpt" ]; then echo "skip $name: $ckpt not found (train: $cmd)"; return; fi
  $PY -m qs4d export "$ckpt" --out "models/zoo/$name" --name "$name" --reeval \
    --command "$cmd && qs4d export $ckpt --out models/zoo/$name"
  $PY -m qs4d verify "models/zoo/$name" --steps 300 | tail -2
}

KWS_DATA="qs4d data kws --out data/kws"
export_run kws-float runs/kws-qat4/float.pt "$KWS_DATA && QS4D_THREADS=1 qs4d train --config models/recipes/kws-qat4.toml --out runs/kws-qat4"
export_run kws-qat4 runs/kws-qat4/final.pt "$KWS_DATA && QS4D_THREADS=1 qs4d train --config models/recipes/kws-qat4.toml --out runs/kws-qat4"
export_run kws-robust runs/kws-robust/final.pt "$KWS_DATA && QS4D_THREADS=1 qs4d train --config models/recipes/kws-robust.toml --out runs/kws-robust"
KWS_NAT_DATA="qs4d data kws --out data/kws-nat --pico-per-word 120 --pico-per-unknown 15 --mbrola-per-word 120 --mbrola-per-unknown 15"
export_run kws-natural runs/kws-natural/final.pt "$KWS_NAT_DATA && QS4D_THREADS=1 qs4d train --config models/recipes/kws-natural-float.toml --out runs/kws-natural-float && QS4D_THREADS=1 qs4d train --config models/recipes/kws-natural.toml --out runs/kws-natural"
export_run kws-natural-loud runs/kws-natural-loud/final.pt "$KWS_NAT_DATA && QS4D_THREADS=1 qs4d train --config models/recipes/kws-natural-loud.toml --out runs/kws-natural-loud"
KWS_NAT3_DATA="qs4d data kws --out data/kws-nat3 --pico-per-word 400 --pico-per-unknown 40 --mbrola-per-word 400 --mbrola-per-unknown 40 --piper-per-word 400 --piper-per-unknown 40"
export_run kws-voices runs/kws-voices/final.pt "$KWS_NAT3_DATA && QS4D_THREADS=1 qs4d train --config models/recipes/kws-voices.toml --out runs/kws-voices"
export_run kws-voices-band runs/kws-voices-band/final.pt "$KWS_NAT3_DATA && QS4D_THREADS=1 qs4d train --config models/recipes/kws-voices-band.toml --out runs/kws-voices-band"
export_run kws-voices-band-float runs/kws-voices-band/float.pt "$KWS_NAT3_DATA && QS4D_THREADS=1 qs4d train --config models/recipes/kws-voices-band.toml --out runs/kws-voices-band"
export_run kws-qat8 runs/kws-qat8/final.pt "QS4D_THREADS=1 qs4d train --config models/recipes/kws-qat8.toml --out runs/kws-qat8   # after kws-qat4"
export_run kws-ternary runs/kws-ternary/final.pt "QS4D_THREADS=1 qs4d train --config models/recipes/kws-ternary.toml --out runs/kws-ternary   # after kws-qat4"
export_run kws-pruned runs/kws-pruned/final.pt "QS4D_THREADS=1 qs4d train --config models/recipes/kws-pruned.toml --out runs/kws-pruned   # after kws-qat4"
