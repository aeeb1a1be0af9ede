"""Render a grid of synthetic faces with their 68 landmarks, ordered by yaw.

Usage: python experiments/synthetic_faces_grid.py --out docs/synthetic_faces.png --num 24 --seed 0
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from wingface.data.synthetic import generate_synthetic_faces


def select_across_yaw(yaws: np.ndarray, num: int) -> np.ndarray:
    """Indices of ``num`` faces spread over the yaw range, sorted from most negative yaw."""
    order = np.argsort(yaws, kind="stable")
    if num >= len(order):
        return order
    targets = np.linspace(yaws[order[0]], yaws[order[-1]], num)
    chosen: list[int] = []
    for target in targets:
        candidates = [i for i in order if i not in chosen]
        chosen.append(min(candidates, key=lambda i: abs(yaws[i] - target)))
    return np.asarray(sorted(chosen, key=lambda i: yaws[i]))


def plot_grid(
    images: np.ndarray,
    landmarks: np.ndarray,
    occluded: np.ndarray,
    yaws: np.ndarray,
    out: Path,
    columns: int = 6,
    dpi: int = 80,
) -> None:
    """Save a grid of ``(N, S, S, 3)`` images with ``(N, 68, 2)`` landmarks to ``out``."""
    rows = int(np.ceil(len(images) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.35 * rows), dpi=dpi)
    for ax in np.atleast_1d(axes).ravel():
        ax.axis("off")
    for ax, image, points, hidden, yaw in zip(
        np.atleast_1d(axes).ravel(), images, landmarks, occluded, yaws, strict=False
    ):
        ax.imshow(image, interpolation="nearest")
        ax.scatter(*points[~hidden].T, s=3, c="lime", linewidths=0)
        ax.scatter(*points[hidden].T, s=3, c="red", linewidths=0)
        ax.set_title(f"yaw {yaw:+.0f}°", fontsize=8)
    fig.suptitle("synthetic faces (green: visible, red: occluded)", fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.canvas.draw()
    pixels = np.asarray(fig.canvas.buffer_rgba())[..., :3]
    plt.close(fig)
    # a 256-colour palette keeps the noisy images small on disk
    image = Image.fromarray(np.ascontiguousarray(pixels))
    palette = image.quantize(colors=256)
    image.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG).save(out, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("docs/synthetic_faces.png"))
    parser.add_argument("--num", type=int, default=24, help="faces in the grid")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pool", type=int, default=400, help="faces to choose the grid from")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    faces = generate_synthetic_faces(max(args.pool, args.num), args.seed, args.size)
    chosen = select_across_yaw(faces.poses[:, 0], args.num)
    plot_grid(
        faces.images[chosen],
        faces.landmarks[chosen],
        faces.occluded[chosen],
        faces.poses[chosen, 0],
        args.out,
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
