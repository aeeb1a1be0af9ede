"""Export a training checkpoint as a ready-to-use model file (float16 weights + run config).

Usage:
    python experiments/export_model.py <run>/checkpoints/<file>.ckpt models/<name>.ckpt

The model file needs no run folder beside it (:mod:`wingface.inference.model_file`). Prints its
size; ``python src/eval.py ckpt_path=<file>`` measures each file, so the float16 rounding's
effect is the difference between the two evaluations.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from wingface.config import register_resolvers
from wingface.inference.model_file import export_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ckpt", type=Path, help="a checkpoint of a training run folder")
    parser.add_argument("out", type=Path, help="the model file to write")
    args = parser.parse_args()
    register_resolvers()
    path = export_model(args.ckpt, args.out)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
