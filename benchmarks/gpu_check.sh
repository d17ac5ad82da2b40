#!/usr/bin/env bash
# One short GPU check: the small model at batch 1024 — training tokens/s and MFU, labelling throughput —
# and a short paper_copy run (base + 2 rounds). Figures go to stdout and to $OUT (a temporary dir if unset).
#
#   bash benchmarks/gpu_check.sh             # on a CUDA machine (a few minutes)
#   bash benchmarks/gpu_check.sh --cpu-tiny  # the same steps at tiny sizes on the CPU (tests/test_benchmarks.py)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d)}
PYTHON=${PYTHON:-python}
echo "gpu_check: writing to $OUT"

if [[ "${1:-}" == "--cpu-tiny" ]]; then
  "$PYTHON" -m benchmarks.training --device cpu --quick --json "$OUT/training.json"
  "$PYTHON" -m benchmarks.labelling --device cpu --quick --json "$OUT/labelling.json"
  "$PYTHON" run.py experiment=quick training.device=cpu progress=false hydra.run.dir="$OUT/run"
else
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  "$PYTHON" -m benchmarks.training --device cuda --models small --batch 1024 --steps 10 --json "$OUT/training.json"
  "$PYTHON" -m benchmarks.labelling --device cuda --models small --batches 1024 --json "$OUT/labelling.json"
  "$PYTHON" run.py experiment=paper_copy si.rounds=2 training.base_steps=1000 training.round_steps=250 \
    progress=false hydra.run.dir="$OUT/run"
fi
"$PYTHON" - "$OUT/run/summary.json" <<'PY'
import json, sys
summary = json.load(open(sys.argv[1]))
for r in summary["rounds"]:
    print(f"round {r['round']}: reach {r['reach']}, label accuracy {r['label_accuracy']}, {r['seconds']} s")
print(f"reach {summary['reach']}, {summary['seconds']} s in all")
PY
