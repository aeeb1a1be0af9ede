#!/usr/bin/env bash
# The GPU measurement of experiments/performance.md in one script (a few minutes on one H100/H200):
#   1. benchmarks/throughput.py: model-only vs end-to-end training throughput (and evaluation)
#      for CNN-6@64, CNN-7@128 and ResNet-50@256 at fp32, bf16-mixed + channels-last, and the
#      same compiled;
#   2. 800 epochs of CNN-6 on the real 300-W subset with experiment=gpu_fast (crops and
#      augmentation on the GPU, bf16, batch 256, learning rate scaled by sqrt(256/64)): wall time
#      of the whole command and of the fit, and the test NME on lfpw/testset.
# It installs nothing: Hydra, OmegaConf and python-dotenv come from .gpu_carry/site and the
# data from .gpu_carry/300w, made here by `bash benchmarks/gpu_pack.sh`. With this workplace's
# device tool:
#   run(command="bash benchmarks/gpu_check.sh", carry=[".gpu_carry"], timeout_s=540)
# Results go to $OUT (or outputs/gpu_check): summary.txt, throughput.md/.json, train_300w.log,
# metrics_300w.json (the run folder itself stays in $TMPDIR or /tmp).
# The same script on a CPU, shortened, checks it end to end without a GPU:
#   DEVICE=cpu QUICK=1 bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/outputs/gpu_check}
DEVICE=${DEVICE:-cuda}
QUICK=${QUICK:-0}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONPATH="$ROOT/src:$ROOT/.gpu_carry/site${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 NO_ALBUMENTATIONS_UPDATE=1 WANDB_MODE=disabled
export WINGFACE_CACHE_DIR=${WINGFACE_CACHE_DIR:-/tmp/wingface_cache}
SUMMARY=$OUT/summary.txt
: > "$SUMMARY"
note() { echo "$*" | tee -a "$SUMMARY"; }
since() { "$PYTHON" -c "import sys, time; print(f'{time.time() - float(sys.argv[1]):.1f}')" "$1"; }

note "== environment"
"$PYTHON" - 2>&1 <<'PY' | tee -a "$SUMMARY"
import importlib
import os
import torch
print("python", os.sys.version.split()[0], "| torch", torch.__version__, "| cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "", "| cpus", os.cpu_count())
for name in ("lightning", "torchmetrics", "torchvision", "timm", "cv2", "hydra", "omegaconf", "dotenv"):
    module = importlib.import_module(name)
    print(f"  {name} {getattr(module, '__version__', '?')}")
import wingface.pipeline  # noqa: F401  (fails here, clearly, if a package is missing)
PY
[ "${PIPESTATUS[0]}" -eq 0 ] || { note "missing packages: run benchmarks/gpu_pack.sh and carry .gpu_carry"; exit 1; }
[ -d .gpu_carry/300w ] || { note "no .gpu_carry/300w: run benchmarks/gpu_pack.sh"; exit 1; }

note "== 1. throughput (benchmarks/throughput.py)"
if [ "$QUICK" = 1 ]; then
  BENCH=(--quick --models cnn6 --settings 32 bf16-cl --seconds 0.3)
  EPOCHS=2
  VAL_EVERY=1
else
  BENCH=(--seconds 2)
  EPOCHS=800
  VAL_EVERY=20
fi
start=$(date +%s.%N)
timeout 300 "$PYTHON" benchmarks/throughput.py --device "$DEVICE" "${BENCH[@]}" \
  --json "$OUT/throughput.json" > "$OUT/throughput.md" 2>&1
status=$?
tail -n 60 "$OUT/throughput.md"
note "throughput.py exit $status after $(since "$start") s"

note "== 2. CNN-6, $EPOCHS epochs on 300-W (experiment=gpu_fast)"
RUN=${TMPDIR:-/tmp}/wingface_run_300w
rm -rf "$RUN"
ARGS=(experiment=gpu_fast data=300w "data.root=$ROOT/.gpu_carry/300w"
      "data.source.test.folders=[lfpw/testset]" "trainer.max_epochs=$EPOCHS"
      "trainer.check_val_every_n_epoch=$VAL_EVERY" logger=csv "hydra.run.dir=$RUN")
[ "$DEVICE" = cpu ] && ARGS+=(trainer.accelerator=cpu trainer.precision=32-true trainer.benchmark=false)
start=$(date +%s.%N)
timeout 200 "$PYTHON" src/train.py "${ARGS[@]}" > "$OUT/train_300w.log" 2>&1
status=$?
wall=$(since "$start")
tail -n 5 "$OUT/train_300w.log"
note "train.py exit $status, wall time of the whole command ${wall} s"
cp "$RUN/metrics.json" "$OUT/metrics_300w.json" 2>/dev/null
"$PYTHON" - "$OUT/metrics_300w.json" 2>&1 <<'PY' | tee -a "$SUMMARY"
import json, sys
m = json.load(open(sys.argv[1]))
pct = lambda key: f"{100 * m[key]:.2f}%" if key in m else "n/a"
print(f"fit {m['time/fit_seconds']:.1f} s; test NME inter-ocular {pct('test/nme')}, "
      f"inter-pupil {pct('test/nme_inter_pupil')}, mean-shape baseline "
      f"{pct('test/nme_mean_shape')}; best val NME {pct('val/nme_best')}")
PY
