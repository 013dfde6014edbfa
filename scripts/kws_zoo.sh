#!/usr/bin/env bash
# The real-speaker keyword zoo: export each sc12 / digits training run into models/zoo/, run the
# streaming benchmark on the validation speakers (choosing the detector threshold: the highest
# detection rate at <= 2 false alarms per hour, shipped when it detects at least half the
# keywords: scripts/kws_card.py) and once on the testing speakers, and export again with that
# threshold and the card section of scripts/kws_card.py. Runs that do not exist
# are skipped with a message.
#   bash scripts/kws_zoo.sh [NAME ...]        (default: every bundle below)
#   DATA=/path/to/data bash scripts/kws_zoo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DATA=${DATA:-../shared/data}
RES=docs/results/kws-real
mkdir -p "$RES"

ONLY=" $* "
export_run() {  # NAME CHECKPOINT FOLD TRAIN_COMMAND
  local name=$1 ckpt=$2 fold=$3 cmd=$4 zoo=models/zoo/$1
  if [ "$ONLY" != "  " ] && [[ "$ONLY" != *" $name "* ]]; then return; fi
  if [ ! -f "$ckpt" ]; then echo "skip $name: $ckpt not found (train: $cmd)"; return; fi
  local foldarg=()
  if [ -n "$fold" ]; then foldarg=(--fold "$fold"); fi
  $PY -m qs4d export "$ckpt" --out "$zoo" --name "$name" --force
  $PY -m qs4d kws-bench "$zoo" --data "$DATA" --split validation "${foldarg[@]}" \
    --json "$RES/$name-validation.json" --plot "$RES/$name-validation.png" | tee "$RES/$name-validation.txt"
  $PY -m qs4d kws-bench "$zoo" --data "$DATA" --split testing "${foldarg[@]}" \
    --json "$RES/$name-testing.json" --plot "$RES/$name-testing.png" | tee "$RES/$name-testing.txt"
  local thr
  thr=$($PY scripts/kws_card.py "$zoo" --validation "$RES/$name-validation.json" \
    --testing "$RES/$name-testing.json" --out "$RES/$name.md")
  local thrarg=()
  if [ -n "$thr" ]; then thrarg=(--threshold "$thr"); fi
  local full="$cmd && qs4d export $ckpt --out $zoo && qs4d kws-bench $zoo --data $DATA --split validation ${foldarg[*]} && qs4d export $ckpt --out $zoo --force ${thrarg[*]}"
  $PY -m qs4d export "$ckpt" --out "$zoo" --name "$name" --force --command "$full" \
    "${thrarg[@]}" --append "$RES/$name.md"
  $PY -m qs4d verify "$zoo" --steps 300 | tail -2
}

R=models/recipes
T="QS4D_THREADS=1 qs4d train --config $R"
export_run sc12-qat4 runs/sc12-qat4/final.pt "" "$T/sc12-qat4.toml --out runs/sc12-qat4"
export_run sc12-float runs/sc12-qat4/float.pt "" "$T/sc12-qat4.toml --out runs/sc12-qat4"
export_run digits-qat4 runs/digits-qat4/final.pt jackson/lucas "$T/digits-qat4.toml --set train.fold=jackson/lucas --out runs/digits-qat4"
export_run digits-float runs/digits-qat4/float.pt jackson/lucas "$T/digits-qat4.toml --set train.fold=jackson/lucas --out runs/digits-qat4"
