"""The LightningModule: a landmark regressor, a loss from the zoo, metrics and logging."""

from __future__ import annotations

import logging
from collections.abc import Callable

import lightning as L
import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torchmetrics import MetricCollection, MinMetric

from wingface.metrics import CEDAUC, FailureRate, LandmarkNME

log = logging.getLogger(__name__)

# ImageNet statistics: a fixed, documented input normalisation shared by every model.
IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)


class LandmarkModule(L.LightningModule):
    """Trains ``net`` with ``loss`` and reports NME, failure rate and CED AUC.

    Logged: ``train/loss``; ``val/loss``, ``val/nme`` (inter-ocular, the checkpoint monitor),
    ``val/nme_inter_pupil``, ``val/nme_best``; ``test/nme``, ``test/nme_inter_pupil``,
    ``test/nme_box`` (normalised by √(w·h) of the ground-truth landmark box),
    ``test/fr_0.10``, ``test/auc_0.10`` and ``test/nme_mean_shape`` (the NME of predicting the
    training mean shape for every test face, the baseline every model must beat). NMEs are
    fractions of the normalising distance.

    Args:
        net: maps ``(B, 3, S, S)`` normalised images to ``(B, L, 2)`` input pixels.
        loss: ``loss(pred, target, weight)`` → scalar, see ``wingface.losses``.
        optimizer: builds the optimizer from the parameters (``optim.optimizer``).
        scheduler: builds a per-step schedule from ``(optimizer, total_steps)``, or None.
        scheme: landmark scheme name for the metrics' eye indices.
        failure_threshold: NME above which a face counts as a failure.
    """

    def __init__(
        self,
        net: nn.Module,
        loss: nn.Module,
        optimizer: Callable[..., Optimizer],
        scheduler: Callable[..., LRScheduler] | None,
        scheme: str = "300w",
        failure_threshold: float = 0.10,
    ) -> None:
        super().__init__()
        self.net = net
        self.loss = loss
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.register_buffer("image_mean", torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1) * 255)
        self.register_buffer("image_std", torch.tensor(IMAGE_STD).view(1, 3, 1, 1) * 255)
        num_points = net.num_points
        self.register_buffer("mean_shape", torch.full((num_points, 2), float("nan")))
        self.val_metrics = MetricCollection(
            {
                "nme": LandmarkNME("inter_ocular", scheme),
                "nme_inter_pupil": LandmarkNME("inter_pupil", scheme),
            },
            prefix="val/",
        )
        # Module names cannot hold dots: the threshold joins the logged names in on_test_epoch_end.
        self.threshold_tag = f"{failure_threshold:.2f}"
        self.test_metrics = MetricCollection(
            {
                "nme": LandmarkNME("inter_ocular", scheme),
                "nme_inter_pupil": LandmarkNME("inter_pupil", scheme),
                "nme_box": LandmarkNME("box", scheme),
                "fr": FailureRate(failure_threshold, "inter_ocular", scheme),
                "auc": CEDAUC(failure_threshold, "inter_ocular", scheme),
            },
            prefix="test/",
        )
        self.test_mean_shape_nme = LandmarkNME("inter_ocular", scheme)
        self.val_nme_best = MinMetric()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, S, S)`` uint8 (or float 0–255) images → ``(B, L, 2)`` landmark pixels."""
        images = (images.float() - self.image_mean) / self.image_std
        return self.net(images)

    def setup(self, stage: str) -> None:
        """Take the training mean shape from the data module when fitting."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if stage == "fit" and datamodule is not None:
            self.mean_shape.copy_(datamodule.train_mean_shape())

    def _step(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        pred = self(batch["image"])
        loss = self.loss(pred, batch["landmarks"], batch["visibility"])
        return pred, loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        _, loss = self._step(batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"non-finite training loss {loss.item()} at epoch {self.current_epoch}, "
                f"batch {batch_idx} (face indices {batch['index'].tolist()})"
            )
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        return loss

    def on_train_start(self) -> None:
        self.val_nme_best.reset()

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        pred, loss = self._step(batch)
        self.val_metrics.update(pred.float(), batch["landmarks"], batch["visibility"] > 0)
        self.log("val/loss", loss, on_epoch=True, batch_size=len(pred))

    def on_validation_epoch_end(self) -> None:
        values = self.val_metrics.compute()
        self.val_metrics.reset()
        self.log_dict(values, prog_bar=True)
        if not self.trainer.sanity_checking:
            self.val_nme_best.update(values["val/nme"])
            best = self.val_nme_best.compute()
            self.log("val/nme_best", best, prog_bar=True)
            if self.trainer.is_global_zero:
                log.info(
                    "epoch %d: val/nme %.4f (inter-pupil %.4f), best %.4f",
                    self.current_epoch,
                    values["val/nme"],
                    values["val/nme_inter_pupil"],
                    best,
                )

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        pred = self(batch["image"]).float()
        visible = batch["visibility"] > 0
        self.test_metrics.update(pred, batch["landmarks"], visible)
        if torch.isfinite(self.mean_shape).all():
            baseline = self.mean_shape.expand_as(pred)
            self.test_mean_shape_nme.update(baseline, batch["landmarks"], visible)

    def on_test_epoch_end(self) -> None:
        values = self.test_metrics.compute()
        self.test_metrics.reset()
        for name in ("test/fr", "test/auc"):
            values[f"{name}_{self.threshold_tag}"] = values.pop(name)
        self.log_dict(values)
        if torch.isfinite(self.mean_shape).all():
            self.log("test/nme_mean_shape", self.test_mean_shape_nme.compute())
            self.test_mean_shape_nme.reset()

    def configure_optimizers(self) -> dict:
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return {"optimizer": optimizer}
        total_steps = int(self.trainer.estimated_stepping_batches)
        scheduler = self.scheduler_factory(optimizer=optimizer, total_steps=total_steps)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }
