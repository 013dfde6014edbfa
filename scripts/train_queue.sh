#!/usr/bin/env bash
# Train the zoo variants that fine-tune the float models of kws-qat4 / ecg-qat4, one after another,
# resuming any that were interrupted, then export everything into models/zoo/.
#   bash scripts/train_queue.sh [RECIPE ...]    (default: the qat8 and pruned variants)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
recipes=("$@")
[ ${#recipes[@]} -eq 0 ] && recipes=(ecg-qat8 kws-qat8 ecg-pruned kws-pruned)
for r in "${recipes[@]}"; do
  if [ -f "runs/$r/final.pt" ]; then echo "done: $r"; continue; fi
  resume=(); [ -f "runs/$r/ckpt.pt" ] && resume=(--resume)
  echo "train: $r"
  $PY -m qs4d train --config "models/recipes/$r.toml" --out "runs/$r" "${resume[@]}" || echo "FAILED: $r"
done
