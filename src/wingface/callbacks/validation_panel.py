"""A fixed panel of validation faces with ground truth and prediction, logged to W&B."""

from __future__ import annotations

import lightning as L
import torch

from wingface.plots import draw_landmarks
from wingface.wandb_run import wandb_loggers


def is_last_epoch(trainer: L.Trainer) -> bool:
    """Whether the epoch now ending is the run's last (by ``max_epochs`` or ``max_steps``)."""
    max_epochs = trainer.max_epochs if trainer.max_epochs is not None else -1
    if 0 <= max_epochs <= trainer.current_epoch + 1:
        return True
    return 0 < trainer.max_steps <= trainer.global_step


class LandmarkPanel(L.Callback):
    """Logs the same ``num_faces`` validation faces after every ``every_n_epochs`` epochs and
    after the last epoch.

    Only acts when the trainer has a W&B logger (``logger=wandb``, alone or beside others); on
    rank zero only.
    """

    def __init__(self, num_faces: int = 8, every_n_epochs: int = 1) -> None:
        if num_faces < 1 or every_n_epochs < 1:
            raise ValueError("callbacks.landmark_panel.num_faces and every_n_epochs must be >= 1")
        self.num_faces = num_faces
        self.every_n_epochs = every_n_epochs

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        loggers = wandb_loggers(trainer)
        if not loggers or trainer.sanity_checking:
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
        captions = [f"face {int(s['index'])}: green truth, red prediction" for s in samples]
        for logger in loggers:
            logger.log_image(
                key="val/panel", images=panels, caption=captions, step=trainer.global_step
            )
