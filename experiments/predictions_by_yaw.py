"""Draw a trained model's predictions on test faces spread across yaw.

Usage:
    python experiments/predictions_by_yaw.py <run>/checkpoints/<ckpt> --out docs/predictions.png

Green: ground truth, red: prediction. Each title gives the true yaw and the face's NME
(inter-ocular, %).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import cv2
import numpy as np
import torch
from hydra.utils import instantiate

from wingface.config import register_resolvers
from wingface.metrics import normalising_distance, per_image_nme
from wingface.pipeline import build_module
from wingface.plots import draw_landmarks, tile_grid
from wingface.run_folder import run_config_of_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ckpt_path", type=Path)
    parser.add_argument("--out", type=Path, default=Path("docs/predictions.png"))
    parser.add_argument("--num", type=int, default=12, help="faces in the grid")
    parser.add_argument("--columns", type=int, default=6)
    args = parser.parse_args()

    register_resolvers()
    run_cfg = run_config_of_checkpoint(args.ckpt_path)
    run_cfg.paths.output_dir = str(args.out.parent)
    module = build_module(run_cfg)
    state = torch.load(args.ckpt_path, map_location="cpu", weights_only=False)["state_dict"]
    module.load_state_dict(state)
    module.eval()
    datamodule = instantiate(run_cfg.data)
    dataset = datamodule.dataset("test")
    yaws = datamodule.source.load("test").poses[:, 0]
    order = np.argsort(yaws)
    picks = order[np.linspace(0, len(order) - 1, args.num).round().astype(int)]

    samples = [dataset[int(i)] for i in picks]
    images = torch.stack([s["image"] for s in samples])
    truth = torch.stack([s["landmarks"] for s in samples])
    with torch.no_grad():
        pred = module(images).float()
    norm = normalising_distance(truth, None, "inter_ocular", run_cfg.data.scheme)
    nmes = per_image_nme(pred, truth, None, norm).numpy() * 100

    tiles = []
    for sample, points, index, nme in zip(samples, pred.numpy(), picks, nmes, strict=True):
        tile = draw_landmarks(
            sample["image"].permute(1, 2, 0).numpy(), sample["landmarks"].numpy(), points
        )
        label = f"yaw {yaws[index]:+.0f}  NME {nme:.1f}%"
        cv2.rectangle(tile, (0, 0), (tile.shape[1], 22), (255, 255, 255), -1)
        cv2.putText(tile, label, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        tiles.append(tile)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    grid = tile_grid(tiles, args.columns)
    cv2.imwrite(str(args.out), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
