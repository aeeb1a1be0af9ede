"""Export a training checkpoint as a ready-to-use model file (float16 weights + run config).

Usage:
    python experiments/export_model.py <run>/checkpoints/<file>.ckpt models/<name>.ckpt \
        [--calibrate-offset [data.root=<300-W folder> ...]]

The model file needs no run folder beside it (:mod:`wingface.inference.model_file`). Prints its
size; ``python src/eval.py ckpt_path=<file>`` measures each file, so the float16 rounding's
effect is the difference between the two evaluations. With ``--calibrate-offset`` the
checkpoint's mean signed error on its run's validation faces is measured (the trailing key
overrides apply to the run's config, e.g. where its data lies) and stored in the file, and
``src/predict.py`` subtracts it from every prediction (its ``calibrate_offset``).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from wingface.config import register_resolvers
from wingface.inference.model_file import export_model, validation_offset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ckpt", type=Path, help="a checkpoint of a training run folder")
    parser.add_argument("out", type=Path, help="the model file to write")
    parser.add_argument(
        "--calibrate-offset",
        action="store_true",
        help="measure the validation faces' mean signed error and store it in the file",
    )
    parser.add_argument(
        "overrides", nargs="*", help="key overrides of the run's config (with --calibrate-offset)"
    )
    args = parser.parse_args()
    if args.overrides and not args.calibrate_offset:
        parser.error("config overrides apply only to --calibrate-offset")
    register_resolvers()
    offset = validation_offset(args.ckpt, args.overrides) if args.calibrate_offset else None
    path = export_model(args.ckpt, args.out, offset)
    stored = "" if offset is None else f", prediction offset ({offset[0]:.3f}, {offset[1]:.3f}) px"
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB{stored})")


if __name__ == "__main__":
    main()
