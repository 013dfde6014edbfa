#!/usr/bin/env bash
# The real-patient ECG zoo: export each MIT-BIH DS1 training run into models/zoo/, score the
# bundle once on DS2 (22 records, streamed through the runtime: `qs4d ecg-report`), and write
# that report into its model card. Runs that do not exist are skipped with a message.
#   bash scripts/ecg_zoo.sh [NAME ...]        (default: every bundle below)
#   MITDB=/path/to/mitdb bash scripts/ecg_zoo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
MITDB=${MITDB:-../shared/data/mitdb}
RES=docs/results/ecg-mitdb
mkdir -p "$RES"

ONLY=" $* "
export_run() {  # NAME CHECKPOINT TRAIN_COMMAND
  local name=$1 ckpt=$2 cmd=$3 zoo=models/zoo/$1
  if [ "$ONLY" != "  " ] && [[ "$ONLY" != *" $name "* ]]; then return; fi
  if [ ! -f "$ckpt" ]; then echo "skip $name: $ckpt not found (train: $cmd)"; return; fi
  local full="$cmd && qs4d export $ckpt --out $zoo"
  $PY -m qs4d export "$ckpt" --out "$zoo" --name "$name" --force --command "$full"
  $PY -m qs4d ecg-report "$zoo" --data "$MITDB" --split DS2 --jobs 2 \
    --json "$RES/$name-ds2.json" --markdown "$RES/$name-ds2.md" | tee "$RES/$name-ds2.txt"
  # the same bundle (deterministic export), its card now with the DS2 report
  $PY -m qs4d export "$ckpt" --out "$zoo" --name "$name" --force --command "$full" \
    --append "$RES/$name-ds2.md"
  $PY -m qs4d verify "$zoo" --steps 300 | tail -2
}

T="QS4D_THREADS=1 qs4d train --config models/recipes"
export_run ecg-float runs/ecg-mitdb/float.pt "$T/ecg-mitdb.toml --out runs/ecg-mitdb"
export_run ecg-qat4 runs/ecg-mitdb/final.pt "$T/ecg-mitdb.toml --out runs/ecg-mitdb"
export_run ecg-qat8 runs/ecg-mitdb-qat8/final.pt "$T/ecg-mitdb-qat8.toml --out runs/ecg-mitdb-qat8   # after ecg-mitdb"
export_run ecg-ternary runs/ecg-mitdb-ternary/final.pt "$T/ecg-mitdb-ternary.toml --out runs/ecg-mitdb-ternary   # after ecg-mitdb"
export_run ecg-pruned runs/ecg-mitdb-pruned/final.pt "$T/ecg-mitdb-pruned.toml --out runs/ecg-mitdb-pruned   # after ecg-mitdb"
