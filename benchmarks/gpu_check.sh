#!/usr/bin/env bash
# One short GPU check: the small model at batch 1024 — training tokens/s and MFU, labelling throughput —
# a short paper_copy run (base + 2 rounds), every task's experiment=paper_<task> preset for a few steps
# (base + 1 round, so a GPU run of the paper's settings is one command away), the arithmetic ones again with
# coupled positions (model.pos_encoding=coupled_rope), and the same for the pretrained
# presets (model=hf: LoRA on a Hugging Face Llama) on the models named by HF_MODEL_1B / HF_MODEL_3B, or else
# on a tiny random Llama built here. Figures go to stdout and to $OUT (a temporary dir if unset).
#
#   bash benchmarks/gpu_check.sh             # on a CUDA machine (a few minutes)
#   bash benchmarks/gpu_check.sh --cpu-tiny  # the same steps at tiny sizes on the CPU (tests/test_benchmarks.py)
#   TASKS="copy maze" bash benchmarks/gpu_check.sh ...   # only these tasks' presets
#   HF_MODEL_1B=/models/Llama-3.2-1B bash benchmarks/gpu_check.sh   # the 1B preset on the real model
#   PRETRAINED=paper_pretrained_1b bash benchmarks/gpu_check.sh ...  # only these pretrained presets (empty: none)
#   COUPLED=reverse_addition bash benchmarks/gpu_check.sh ...  # only these coupled-position presets (empty: none)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d)}
PYTHON=${PYTHON:-python}
echo "gpu_check: writing to $OUT"

if [[ "${1:-}" == "--cpu-tiny" ]]; then
  "$PYTHON" -m benchmarks.training --device cpu --quick --json "$OUT/training.json"
  "$PYTHON" -m benchmarks.labelling --device cpu --quick --voters 2 --json "$OUT/labelling.json"
  "$PYTHON" run.py experiment=quick training.device=cpu progress=false hydra.run.dir="$OUT/run"
  # The presets' models and batches shrunk to seconds on a CPU: what is checked is that each one runs.
  FEW_STEPS=(training.device=cpu training.compile=false training.precision=fp32 model.n_layer=1 model.n_embd=32
    model.n_head=2 model.ffn_hidden=64 training.batch_size=8 training.base_steps=4 training.round_steps=2
    training.warmup_steps=1 si.samples_per_round=16 data.eval_samples=2 data.generate_batch_size=64)
else
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  "$PYTHON" -m benchmarks.training --device cuda --models small --batch 1024 --steps 10 --json "$OUT/training.json"
  "$PYTHON" -m benchmarks.labelling --device cuda --models small --batches 1024 --voters 5 --json "$OUT/labelling.json"
  "$PYTHON" run.py experiment=paper_copy si.rounds=2 training.base_steps=1000 training.round_steps=250 \
    progress=false hydra.run.dir="$OUT/run"
  FEW_STEPS=(training.base_steps=50 training.round_steps=20 training.warmup_steps=10 si.samples_per_round=2048
    data.eval_samples=64)
fi
for task in ${TASKS:-copy reverse reverse_addition forward_addition multiplication maze}; do
  "$PYTHON" run.py experiment=paper_$task si.rounds=1 si.collapse_threshold=0 "${FEW_STEPS[@]}" progress=false \
    hydra.run.dir="$OUT/paper_$task" > "$OUT/paper_$task.log"
done
# Position coupling (issue #34): the paper's arithmetic presets with coupled RoPE ids (multiplication's two a token,
# with a*b and b*a voting, as experiment=cpu_multiplication).
for task in ${COUPLED-reverse_addition forward_addition multiplication}; do
  coupled=(model.pos_encoding=coupled_rope)
  # forward addition as experiment=cpu_forward_addition: padded sum, the reversed sum first (about 290 tokens at 70
  # digits), a slower RoPE step
  [[ $task == forward_addition ]] && coupled+=(data.pad_sum=true data.scratchpad=true model.rope_step=0.4
    model.block_size=512)
  [[ $task == multiplication ]] && coupled+=(si.filters.presentations=2)
  "$PYTHON" run.py experiment=paper_$task "${coupled[@]}" si.rounds=1 si.collapse_threshold=0 "${FEW_STEPS[@]}" \
    progress=false hydra.run.dir="$OUT/coupled_$task" > "$OUT/coupled_$task.log"
done
for preset in ${PRETRAINED-paper_pretrained_1b paper_pretrained_3b}; do
  case $preset in
    paper_pretrained_1b) model=${HF_MODEL_1B:-} ;;
    paper_pretrained_3b) model=${HF_MODEL_3B:-} ;;
    *) echo "gpu_check: unknown pretrained preset $preset" >&2; exit 2 ;;
  esac
  if [[ -z "$model" ]]; then
    [[ -d "$OUT/tiny-llama" ]] || "$PYTHON" tests/tiny_llama.py "$OUT/tiny-llama"  # the tests' model
    model=$OUT/tiny-llama
  fi
  "$PYTHON" run.py experiment=$preset model.path="$model" si.rounds=1 si.collapse_threshold=0 "${FEW_STEPS[@]}" \
    progress=false hydra.run.dir="$OUT/$preset" > "$OUT/$preset.log"
done
"$PYTHON" - "$OUT"/run "$OUT"/paper_* "$OUT"/coupled_* <<'PY'
import json, sys
from pathlib import Path
for run in map(Path, sys.argv[1:]):
    if not run.is_dir():
        continue
    summary = json.load(open(run / "summary.json"))
    print(f"{run.name}:")
    for r in summary["rounds"]:
        print(f"  round {r['round']}: reach {r['reach']}, label accuracy {r['label_accuracy']}, {r['seconds']} s")
    print(f"  reach {summary['reach']}, {summary['seconds']} s in all")
PY
