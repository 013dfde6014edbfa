#!/usr/bin/env bash
# The real-patient ECG zoo: export each MIT-BIH DS1 training run into models/zoo/, choose its
# prior correction on the DS1 validation patients (scripts/ecg_prior.py), score the bundle once
# on DS2 (22 records, streamed through the runtime: `qs4d ecg-report`), and write that report
# into its model card. Runs that do not exist are skipped with a message.
#   bash scripts/ecg_zoo.sh [NAME ...]        (default: every bundle below)
#   MITDB=/path/to/mitdb JOBS=2 bash scripts/ecg_zoo.sh   (JOBS: processes for the DS2 report)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
MITDB=${MITDB:-../shared/data/mitdb}
RES=docs/results/ecg-mitdb
mkdir -p "$RES"

ONLY=" $* "
export_run() {  # NAME CHECKPOINT RECIPE TRAIN_COMMAND
  local name=$1 ckpt=$2 recipe=$3 cmd=$4 zoo=models/zoo/$1
  if [ "$ONLY" != "  " ] && [[ "$ONLY" != *" $name "* ]]; then return; fi
  if [ ! -f "$ckpt" ]; then echo "skip $name: $ckpt not found (train: $cmd)"; return; fi
  $PY -m qs4d export "$ckpt" --out "$zoo" --name "$name" --force
  $PY scripts/ecg_prior.py "$zoo" --data "$MITDB" --recipe "$recipe" \
    --json "$RES/$name-prior.json" | tee "$RES/$name-prior.txt"
  local bias
  bias=$($PY -c "import json,sys; print(json.load(open(sys.argv[1]))['logit_bias'])" "$RES/$name-prior.json")
  local full="$cmd && qs4d export $ckpt --out $zoo && python scripts/ecg_prior.py $zoo --data $MITDB --recipe $recipe && qs4d export $ckpt --out $zoo --force --logit-bias $bias"
  $PY -m qs4d export "$ckpt" --out "$zoo" --name "$name" --force --command "$full" \
    --logit-bias "$bias"
  $PY -m qs4d ecg-report "$zoo" --data "$MITDB" --split DS2 --jobs "${JOBS:-1}" \
    --json "$RES/$name-ds2.json" --markdown "$RES/$name-ds2.md" | tee "$RES/$name-ds2.txt"
  # the same bundle (deterministic export), its card now with the DS2 report
  $PY -m qs4d export "$ckpt" --out "$zoo" --name "$name" --force --command "$full" \
    --logit-bias "$bias" --append "$RES/$name-ds2.md"
  $PY -m qs4d verify "$zoo" --steps 300 | tail -2
}

R=models/recipes
T="QS4D_THREADS=1 qs4d train --config $R"
export_run ecg-float runs/ecg-next/float.pt $R/ecg-next.toml "$T/ecg-next.toml --out runs/ecg-next"
export_run ecg-qat4 runs/ecg-next/final.pt $R/ecg-next.toml "$T/ecg-next.toml --out runs/ecg-next"
export_run ecg-qat8 runs/ecg-next-qat8/final.pt $R/ecg-next-qat8.toml "$T/ecg-next-qat8.toml --out runs/ecg-next-qat8   # after ecg-next"
export_run ecg-ternary runs/ecg-next-ternary/final.pt $R/ecg-next-ternary.toml "$T/ecg-next-ternary.toml --out runs/ecg-next-ternary   # after ecg-next"
export_run ecg-pruned runs/ecg-next-pruned/final.pt $R/ecg-next-pruned.toml "$T/ecg-next-pruned.toml --out runs/ecg-next-pruned   # after ecg-next"
