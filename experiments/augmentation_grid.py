"""Draw augmented training samples of a dataset config with their landmarks.

Usage (any Hydra overrides of ``conf/train.yaml``):
    python experiments/augmentation_grid.py --out docs/augmented_300w.png \
        data=300w data.root=../shared/data/300w 'data.source.test.folders=[lfpw/testset]'

Each row shows one face: the un-augmented centre crop, then augmented copies. Landmark indices
are colour-coded from blue (point 0) to red (last point), so a flip without re-indexing shows up
as mirrored colours.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import cv2
import numpy as np
from hydra.utils import instantiate

from wingface.config import compose_config, register_resolvers


def draw(image: np.ndarray, points: np.ndarray, upscale: int = 3) -> np.ndarray:
    """Upscale ``(S, S, 3)`` RGB and draw ``(L, 2)`` points coloured by index."""
    canvas = cv2.resize(image, None, fx=upscale, fy=upscale, interpolation=cv2.INTER_LINEAR)
    colours = cv2.applyColorMap(
        np.linspace(0, 255, len(points)).astype(np.uint8)[:, None], cv2.COLORMAP_JET
    )[:, 0, ::-1]
    for (x, y), colour in zip(points * upscale + (upscale - 1) / 2, colours, strict=True):
        cv2.circle(canvas, (round(x), round(y)), 2, tuple(int(c) for c in colour), -1, cv2.LINE_AA)
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/augmented.png"))
    parser.add_argument("--faces", type=int, default=4)
    parser.add_argument("--copies", type=int, default=5)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()

    register_resolvers()
    cfg = compose_config([*args.overrides, "paths.output_dir=."])
    datamodule = instantiate(cfg.data)
    augmented = datamodule.dataset("train")
    augmented.augment.reseed(0)
    crops = datamodule.crops["train"]
    rows = []
    for face in range(args.faces):
        index = int(augmented.indices[face])
        offset = (crops.context_size - crops.input_size) // 2
        size = crops.input_size
        tiles = [
            draw(
                crops.images[index][offset : offset + size, offset : offset + size],
                crops.landmarks[index] - offset,
            )
        ]
        for _ in range(args.copies):
            sample = augmented[face]
            tiles.append(
                draw(sample["image"].permute(1, 2, 0).numpy(), sample["landmarks"].numpy())
            )
        rows.append(np.concatenate(tiles, axis=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), cv2.cvtColor(np.concatenate(rows, axis=0), cv2.COLOR_RGB2BGR))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
