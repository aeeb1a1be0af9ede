#!/usr/bin/env bash
# Every model for one epoch on the synthetic faces and on the real 300-W subset, then a table.
#   bash experiments/models_one_epoch.sh [300w root, default ../shared/data/300w] [output dir]
# ResNet-50 (256 px) is limited to 25 training batches per epoch on CPU (a full epoch takes over
# an hour on 2 cores); everything else runs the full epoch. Recorded in experiments/models.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="${1:-../shared/data/300w}"
OUT="${2:-outputs/train/multiruns/models_one_epoch}"
PY="${PYTHON:-.venv/bin/python}"
export NO_ALBUMENTATIONS_UPDATE=1
COMMON=(trainer.max_epochs=1 trainer.enable_progress_bar=false logger=csv)
run() {  # run <name> <overrides...>
  local name="$1"; shift
  "$PY" src/train.py "${COMMON[@]}" "$@" "hydra.run.dir=$OUT/$name" > "$OUT/$name.log" 2>&1 \
    && echo "$name: ok" || { echo "$name: FAILED (see $OUT/$name.log)"; return 1; }
}
mkdir -p "$OUT"
for data in synthetic 300w; do
  DATA=(data="$data")
  [[ $data == 300w ]] && DATA=(experiment=lfpw_subset "data.root=$ROOT")
  run "$data-cnn6" "${DATA[@]}" model=cnn6
  run "$data-cnn7" "${DATA[@]}" model=cnn7
  run "$data-cascade" "${DATA[@]}" model=cascade
  run "$data-timm_resnet18" "${DATA[@]}" model=timm
  run "$data-heatmap_awing" "${DATA[@]}" model=heatmap loss=awing
  run "$data-resnet50" "${DATA[@]}" model=resnet50 +trainer.limit_train_batches=25
done
"$PY" - "$OUT" <<'PYEOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
print("| data | model | train samples | test NME (inter-ocular) % | fit s |")
print("|---|---|---|---|---|")
for run in sorted(p for p in out.iterdir() if p.is_dir()):
    metrics = json.loads((run / "metrics.json").read_text())
    data, model = run.name.split("-", 1)
    print(f"| {data} | {model} | {int(metrics.get('train/epoch_samples', 0)):,} | "
          f"{100 * metrics['test/nme']:.2f} | {metrics.get('time/fit_seconds', float('nan')):.0f} |")
PYEOF
