"""Assemble the overlays written by ``src/predict.py`` into one grid image.

Usage:
    python src/predict.py ckpt_path=<file>.ckpt input=<folder> output_dir=<out>
    python experiments/overlay_sheet.py <out> --out docs/predict_lfpw.png

Tiles follow the image order of ``<out>/landmarks.json``; each is scaled to the same width and
captioned with the image name and its number of faces.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from wingface.plots import tile_grid

CAPTION_PX = 22


def tile(path: Path, width: int, caption: str) -> np.ndarray:
    """One ``(h, width, 3)`` uint8 BGR tile: the image scaled to ``width`` under a caption."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"overlay not found or unreadable: {path}")
    height = round(image.shape[0] * width / image.shape[1])
    image = cv2.resize(image, (width, height), interpolation=cv2.INTER_CUBIC)
    band = np.full((CAPTION_PX, width, 3), 255, np.uint8)
    cv2.putText(band, caption, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([band, image], axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="output_dir of a src/predict.py run")
    parser.add_argument("--out", type=Path, default=Path("docs/predict_lfpw.png"))
    parser.add_argument("--width", type=int, default=1200, help="grid width in pixels")
    parser.add_argument("--columns", type=int, default=3)
    args = parser.parse_args()

    results = json.loads((args.results / "landmarks.json").read_text())["images"]
    tile_width = args.width // args.columns
    tiles = [
        tile(args.results / "overlays" / name, tile_width, f"{name}: {len(r['faces'])} face(s)")
        for name, r in results.items()
    ]
    height = max(t.shape[0] for t in tiles)
    tiles = [
        np.pad(t, ((0, height - t.shape[0]), (0, 0), (0, 0)), constant_values=255) for t in tiles
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), tile_grid(tiles, args.columns))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
