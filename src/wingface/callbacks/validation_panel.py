"""A fixed panel of validation faces with ground truth and prediction, logged to W&B."""

from __future__ import annotations

import cv2
import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import WandbLogger

GROUND_TRUTH_RGB = (40, 220, 40)
PREDICTION_RGB = (240, 40, 40)


def tile_grid(tiles: list[np.ndarray], columns: int) -> np.ndarray:
    """``(H, W, 3)`` images of equal size laid out ``columns`` wide, blank (white) tiles filling
    the last row."""
    tiles = list(tiles)
    while len(tiles) % columns:
        tiles.append(np.full_like(tiles[0], 255))
    rows = [np.concatenate(tiles[r : r + columns], axis=1) for r in range(0, len(tiles), columns)]
    return np.concatenate(rows, axis=0)


def draw_landmarks(
    image: np.ndarray, truth: np.ndarray, pred: np.ndarray, upscale: int = 4
) -> np.ndarray:
    """Draw ``(L, 2)`` ground-truth (green) and predicted (red) points on an upscaled copy.

    Args:
        image: ``(S, S, 3)`` uint8 RGB.
        truth, pred: ``(L, 2)`` pixels of ``image``.
        upscale: integer magnification of the returned ``(S*upscale, S*upscale, 3)`` image.
    """
    canvas = cv2.resize(image, None, fx=upscale, fy=upscale, interpolation=cv2.INTER_NEAREST).copy()
    for points, colour in ((truth, GROUND_TRUTH_RGB), (pred, PREDICTION_RGB)):
        # Pixel centre i of the input lies at upscale * i + (upscale - 1) / 2 on the canvas.
        scaled = (points * upscale + (upscale - 1) / 2.0) * 16
        for x, y in np.round(scaled).astype(np.int64):
            cv2.circle(canvas, (int(x), int(y)), 2 * 16, colour, -1, cv2.LINE_AA, shift=4)
    return canvas


def is_last_epoch(trainer: L.Trainer) -> bool:
    """Whether the epoch now ending is the run's last (by ``max_epochs`` or ``max_steps``)."""
    max_epochs = trainer.max_epochs if trainer.max_epochs is not None else -1
    if 0 <= max_epochs <= trainer.current_epoch + 1:
        return True
    return 0 < trainer.max_steps <= trainer.global_step


class LandmarkPanel(L.Callback):
    """Logs the same ``num_faces`` validation faces after every ``every_n_epochs`` epochs and
    after the last epoch.

    Only acts when the trainer's logger is a ``WandbLogger``; on rank zero only.
    """

    def __init__(self, num_faces: int = 8, every_n_epochs: int = 1) -> None:
        if num_faces < 1 or every_n_epochs < 1:
            raise ValueError("callbacks.landmark_panel.num_faces and every_n_epochs must be >= 1")
        self.num_faces = num_faces
        self.every_n_epochs = every_n_epochs

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        logger = trainer.logger
        if not isinstance(logger, WandbLogger) or trainer.sanity_checking:
            return
        due = (trainer.current_epoch + 1) % self.every_n_epochs == 0
        if not trainer.is_global_zero or not (due or is_last_epoch(trainer)):
            return
        dataset = trainer.datamodule.dataset("val")
        samples = [dataset[i] for i in range(min(self.num_faces, len(dataset)))]
        images = torch.stack([s["image"] for s in samples]).to(pl_module.device)
        with torch.no_grad():
            preds = pl_module(images).float().cpu().numpy()
        panels = [
            draw_landmarks(s["image"].permute(1, 2, 0).numpy(), s["landmarks"].numpy(), pred)
            for s, pred in zip(samples, preds, strict=True)
        ]
        logger.log_image(
            key="val/panel",
            images=panels,
            caption=[f"face {int(s['index'])}: green truth, red prediction" for s in samples],
            step=trainer.global_step,
        )
