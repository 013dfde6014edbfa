#!/usr/bin/env bash
# Trains and exports the foundation's example model (noisy-sine task) into models/zoo/toy-qat4.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
$PY -m qs4d train --config models/recipes/toy.toml --out runs/toy-qat4
$PY -m qs4d export runs/toy-qat4/final.pt --out models/zoo/toy-qat4 --name toy-qat4 \
  --command "bash scripts/zoo_toy.sh   # = qs4d train --config models/recipes/toy.toml --out runs/toy-qat4 && qs4d export runs/toy-qat4/final.pt --out models/zoo/toy-qat4"
