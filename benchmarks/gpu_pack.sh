#!/usr/bin/env bash
# Pack what benchmarks/gpu_check.sh needs on a GPU machine whose Python has torch, lightning,
# torchmetrics, torchvision, timm and OpenCV but not Hydra/OmegaConf/python-dotenv (nor W&B or
# albumentations, which the check does not use): run once here, in the repository root,
#
#   bash benchmarks/gpu_pack.sh [path to the 300-W subset, default ../shared/data/300w]
#
# It fills .gpu_carry/ (ignored by git through .git/info/exclude):
#   .gpu_carry/site/   the pure-Python distributions below, copied file by file from this
#                      environment (no download; a distribution with compiled files is refused)
#   .gpu_carry/300w/   the 300-W development subset (about 48 MB)
# and prints its size (with the working tree it must stay under the device tool's 64 MiB).
# Then carry it to the GPU machine with the working tree; with this workplace's device tool:
#   run(command="bash benchmarks/gpu_check.sh", carry=[".gpu_carry"], timeout_s=540)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data/300w}
PYTHON=${PYTHON:-python}
[ -d "$DATA" ] || { echo "gpu_pack.sh: no 300-W folder at $DATA" >&2; exit 1; }
grep -qx '/.gpu_carry/' .git/info/exclude 2>/dev/null || echo '/.gpu_carry/' >> .git/info/exclude
rm -rf .gpu_carry
mkdir -p .gpu_carry/site
"$PYTHON" - .gpu_carry/site <<'PY'
"""Copy pure-Python distributions (their RECORD files) into the folder given."""
import shutil
import sys
from importlib import metadata
from pathlib import Path

DISTRIBUTIONS = [
    "hydra-core",
    "omegaconf",
    "antlr4-python3-runtime",
    "python-dotenv",
    "hydra-submitit-launcher",
    "submitit",
]
target = Path(sys.argv[1])
for name in DISTRIBUTIONS:
    dist = metadata.distribution(name)
    files = [f for f in dist.files or [] if "__pycache__" not in f.parts]
    compiled = [str(f) for f in files if f.suffix in (".so", ".pyd")]
    if compiled:
        raise SystemExit(f"{name} has compiled files {compiled[:3]}: carry a wheel instead")
    copied = 0
    for file in files:
        source = Path(dist.locate_file(file)).resolve()
        if file.parts[0] == ".." or not source.is_file():
            continue  # console scripts and the like, outside site-packages
        destination = target / file
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination)
        copied += 1
    print(f"packed {name} {dist.version}: {copied} files")
PY
cp -r "$DATA" .gpu_carry/300w
du -sh .gpu_carry/site .gpu_carry/300w; du -sh .gpu_carry
echo "working tree that travels (tracked and untracked, not ignored):"
git ls-files -co --exclude-standard -z | xargs -0 du -cb 2>/dev/null | tail -1
