"""The LightningModule: a landmark regressor, a loss from the zoo, metrics and logging."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import lightning as L
import numpy as np
import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torchmetrics import CatMetric, MinMetric

from wingface.callbacks.test_report import TestOutcome
from wingface.evaluation import EvaluationProtocol
from wingface.landmarks import get_scheme
from wingface.metrics import LandmarkNME, MeanOffset, PerLandmarkNME
from wingface.test_time import averaged_prediction, whole_pixel_shifts

log = logging.getLogger(__name__)

# ImageNet statistics: a fixed, documented input normalisation shared by every model.
IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)


def check_model_and_loss(net: nn.Module, loss: nn.Module) -> None:
    """A heatmap model (one with ``heatmaps``, whose decoded coordinates carry no gradient)
    trains only with a heatmap loss (``needs_heatmaps``), and a heatmap loss only with a
    heatmap model.

    Raises:
        ValueError: naming the ``model=`` and ``loss=`` choices that do not go together.
    """
    heatmap_model = callable(getattr(net, "heatmaps", None))
    heatmap_loss = bool(getattr(loss, "needs_heatmaps", False))
    if heatmap_loss and not heatmap_model:
        raise ValueError(
            f"loss ({type(loss).__name__}) needs heatmaps, but model ({type(net).__name__}) "
            "only predicts coordinates: use a heatmap model (model=heatmap) or a coordinate "
            "loss (e.g. loss=wing)"
        )
    if heatmap_model and not heatmap_loss:
        raise ValueError(
            f"model ({type(net).__name__}) predicts heatmaps, whose decoded peaks carry no "
            f"gradient, so it trains with a heatmap loss (loss=awing), not "
            f"{type(loss).__name__}"
        )


class LandmarkModule(L.LightningModule):
    """Trains ``net`` with ``loss`` and evaluates it with the evaluation ``protocol``.

    Everything it needs from the data is given when it is built
    (:func:`~wingface.pipeline.build_module`): the landmark scheme, the evaluation protocol
    (normalisations, thresholds, test subsets), the test subsets' face masks and the training
    mean shape; it works with any data module whose batches hold ``image``, ``landmarks``,
    ``visibility`` and ``index``.
    Logged: ``train/loss``; ``val/loss``, ``val/nme`` (primary normalisation, the checkpoint
    monitor), ``val/nme_<other>``, ``val/nme_best``; on the test split ``test/nme``,
    ``test/nme_<other>``, ``test/fr_<t>``, ``test/auc_<t>`` and the same under
    ``test/<subset>/`` for each test subset, plus ``test/nme_mean_shape`` (predicting the
    training mean shape for every face: the baseline every model must beat);
    ``val/offset_x``, ``val/offset_y``, ``test/offset_x``, ``test/offset_y``: the predictions'
    mean signed error (systematic offset) in input pixels. NMEs are fractions of the
    normalising distance. Validation and test predictions have ``prediction_offset`` (zero
    unless ``calibrate_offset`` set it) subtracted. After a test epoch the per-face, per-subset
    and per-landmark results are left in ``test_outcome`` for the report callback
    (:class:`~wingface.callbacks.test_report.TestReport`), which writes the files.

    Args:
        net: maps ``(B, 3, S, S)`` normalised images to ``(B, L, 2)`` input pixels.
        loss: ``loss(pred, target, weight)`` → scalar, see ``wingface.losses``.
        optimizer: builds the optimizer from the parameters (``optim.optimizer``).
        scheduler: builds a per-step schedule from ``(optimizer, total_steps)``, or None.
        channels_last: keep the network's weights and its inputs in channels-last memory
            format (``channels_last``; faster convolutions on recent GPUs).
        compile: run the network's forward pass through ``torch.compile`` (``compile``). The
            compiled wrapper is not a registered submodule, so checkpoints have the same keys
            and load the same with or without it. Multi-stage training outputs
            (``stage_outputs``) and heatmaps run eagerly.
        skip_nonfinite_loss: skip batches whose loss is NaN or infinite instead of stopping
            (``skip_nonfinite_loss``); every skipped batch is logged with its face indices.
        protocol: what validation and test report (``data.protocol``).
        scheme: the landmark scheme (``data.scheme``), for the normalising distances.
        mean_shape: ``(L, 2)`` mean training shape in input pixels (the ``test/nme_mean_shape``
            baseline); None leaves it unknown until a checkpoint that holds one is loaded.
        test_subsets: subset name → ``(N,)`` bool mask over the test faces (by the batches'
            ``index``), the protocol's subsets the test split has; each is reported under
            ``test/<subset>/``.
        test_time_flip: outside training, average the prediction with the re-indexed
            prediction for the mirrored image (``test_time_flip``; validation, test and
            prediction; twice the inference cost).
        test_time_shift: outside training, average over the image moved by every whole-pixel
            shift up to this many pixels along each axis (``test_time_shift``; 0: none;
            ``(2 r + 1)²`` times the inference cost, twice that with ``test_time_flip``); see
            :mod:`wingface.test_time`. Multi-stage (``stage_outputs``) and heatmap
            training losses are unaffected; their validation uses the plain prediction.

    A network with a ``stage_outputs(images, target)`` method (the cascade) is trained on the
    sum of the loss over its stages, each ``(prediction, target)`` in that stage's pixels.
    """

    def __init__(
        self,
        net: nn.Module,
        loss: nn.Module,
        optimizer: Callable[..., Optimizer],
        scheduler: Callable[..., LRScheduler] | None,
        channels_last: bool = True,
        compile: bool = False,
        skip_nonfinite_loss: bool = False,
        protocol: EvaluationProtocol | None = None,
        scheme: str = "300w",
        mean_shape: torch.Tensor | None = None,
        test_subsets: Mapping[str, np.ndarray] | None = None,
        test_time_flip: bool = False,
        test_time_shift: int = 0,
    ) -> None:
        super().__init__()
        check_model_and_loss(net, loss)
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
        self.net = net
        self.channels_last = channels_last
        self.skip_nonfinite_loss = skip_nonfinite_loss
        self.skipped_batches = 0
        # kept out of the module tree (and the state dict): the compiled wrapper shares net's
        # parameters
        self.__dict__["compiled_net"] = torch.compile(net) if compile else None
        self.loss = loss
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.register_buffer("image_mean", torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1) * 255)
        self.register_buffer("image_std", torch.tensor(IMAGE_STD).view(1, 3, 1, 1) * 255)
        self.register_buffer("mean_shape", torch.full((net.num_points, 2), float("nan")))
        if mean_shape is not None:
            self.mean_shape.copy_(mean_shape)
        self.test_subsets = dict(test_subsets or {})
        self.test_time_flip = test_time_flip
        whole_pixel_shifts(test_time_shift)  # validates it
        self.test_time_shift = test_time_shift
        # not saved: a property of the scheme, not of the weights
        flip = torch.from_numpy(get_scheme(scheme).flip_array()).long()
        self.register_buffer("flip_permutation", flip, persistent=False)
        # subtracted from validation and test predictions (calibrate_offset, set by
        # wingface.pipeline.calibrate_prediction_offset); not saved with the weights
        self.register_buffer("prediction_offset", torch.zeros(2), persistent=False)
        self.protocol = protocol if protocol is not None else EvaluationProtocol()
        norms = self.protocol.normalisations
        self.val_metrics = nn.ModuleDict({n: LandmarkNME(n, scheme) for n in norms})
        self.test_metrics = nn.ModuleDict({n: LandmarkNME(n, scheme) for n in norms})
        self.val_offset = MeanOffset()
        self.test_offset = MeanOffset()
        self.test_mean_shape_nme = LandmarkNME(self.protocol.primary, scheme)
        self.test_landmark_nme = PerLandmarkNME(net.num_points, self.protocol.primary, scheme)
        self.test_outcome: TestOutcome | None = None
        self.val_nme_best = MinMetric()
        self._resumed_val_nme_best: float | None = None
        self.test_indices = CatMetric()

    def _normalise(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, S, S)`` uint8 (or float 0–255) images → float, ImageNet mean/std (in
        channels-last memory format when ``channels_last``)."""
        images = (images.float() - self.image_mean) / self.image_std
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, S, S)`` uint8 (or float 0–255) images → ``(B, L, 2)`` landmark pixels
        (outside training, averaged over mirrored and shifted inputs with ``test_time_flip``
        and ``test_time_shift``)."""
        compiled = self.__dict__["compiled_net"]
        net = self.net if compiled is None else compiled
        if self.training or not (self.test_time_flip or self.test_time_shift):
            return net(self._normalise(images))
        return averaged_prediction(
            lambda variant: net(self._normalise(variant)),
            images,
            self.flip_permutation,
            self.test_time_flip,
            self.test_time_shift,
        )

    def prediction_and_loss(
        self, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(pred (B, L, 2) input pixels, scalar loss)``; a heatmap loss (``needs_heatmaps``)
        gets the net's ``(B, L, h, w)`` heatmaps instead of the decoded coordinates."""
        if not getattr(self.loss, "needs_heatmaps", False):
            if callable(getattr(self.net, "stage_outputs", None)):
                images = self._normalise(batch["image"])
                pred, stages = self.net.stage_outputs(images, batch["landmarks"])
                losses = [self.loss(p, t, batch["visibility"]) for p, t in stages]
                return pred, torch.stack(losses).sum()
            pred = self(batch["image"])
            return pred, self.loss(pred, batch["landmarks"], batch["visibility"])
        heat = self.net.heatmaps(self._normalise(batch["image"]))
        pred = self.net.decode(heat)
        return pred, self.loss(heat, batch["landmarks"], batch["visibility"])

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor | None:
        """The batch's loss; a non-finite loss stops training with the batch identified, or,
        with ``skip_nonfinite_loss``, skips the batch (no update) and counts it in
        ``train/skipped_batches``."""
        _, loss = self.prediction_and_loss(batch)
        if not torch.isfinite(loss):
            message = (
                f"non-finite training loss {loss.item()} at epoch {self.current_epoch}, "
                f"batch {batch_idx} (face indices {batch['index'].tolist()})"
            )
            if not self.skip_nonfinite_loss:
                raise FloatingPointError(
                    f"{message}; set skip_nonfinite_loss=true to skip such batches"
                )
            self.skipped_batches += 1
            log.warning("%s: batch skipped (skip_nonfinite_loss=true)", message)
            self.log("train/skipped_batches", float(self.skipped_batches), on_step=True)
            return None
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        return loss

    def on_train_start(self) -> None:
        """Start the best validation NME afresh, or from the value a resumed checkpoint held."""
        self.val_nme_best.reset()
        if self._resumed_val_nme_best is not None:
            self.val_nme_best.update(torch.tensor(self._resumed_val_nme_best))

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Keep the best validation NME so far (``val/nme_best`` continues after a resume)."""
        best = float(self.val_nme_best.compute()) if self.val_nme_best.update_count else None
        checkpoint["val_nme_best"] = best

    def on_train_epoch_start(self) -> None:
        """Log the epoch's size: ``train/epoch_samples`` (all ranks, after balancing)."""
        sampler = getattr(self.trainer.train_dataloader, "sampler", None)
        epoch_size = getattr(sampler, "epoch_size", None)
        if epoch_size is not None:
            self.log("train/epoch_samples", float(epoch_size), on_step=False, on_epoch=True)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        pred, loss = self.prediction_and_loss(batch)
        pred = pred.float() - self.prediction_offset
        visible = batch["visibility"] > 0
        for metric in self.val_metrics.values():
            metric.update(pred, batch["landmarks"], visible)
        self.val_offset.update(pred, batch["landmarks"], visible)
        self.log("val/loss", loss, on_epoch=True, batch_size=len(pred))

    def on_validation_epoch_end(self) -> None:
        values = {}
        for norm, metric in self.val_metrics.items():
            values[f"val/{self.protocol.metric_name(norm)}"] = metric.compute()
            metric.reset()
        self.log_dict(values, prog_bar=True)
        self.log_dict(self._offset_values("val", self.val_offset))
        if not self.trainer.sanity_checking:
            self.val_nme_best.update(values["val/nme"])
            best = self.val_nme_best.compute()
            self.log("val/nme_best", best, prog_bar=True)
            if self.trainer.is_global_zero:
                log.info(
                    "epoch %d: %s, best %.4f",
                    self.current_epoch,
                    ", ".join(f"{k} {float(v):.4f}" for k, v in values.items()),
                    best,
                )

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        pred = self(batch["image"]).float() - self.prediction_offset
        visible = batch["visibility"] > 0
        for metric in self.test_metrics.values():
            metric.update(pred, batch["landmarks"], visible)
        self.test_offset.update(pred, batch["landmarks"], visible)
        self.test_indices.update(batch["index"])
        self.test_landmark_nme.update(pred, batch["landmarks"], visible)
        if torch.isfinite(self.mean_shape).all():
            baseline = self.mean_shape.expand_as(pred)
            self.test_mean_shape_nme.update(baseline, batch["landmarks"], visible)

    def on_test_epoch_end(self) -> None:
        """Log the test metrics, overall and per test subset (``test_subsets``), and leave the
        whole result in ``test_outcome``."""
        per_image = {n: m.per_image().cpu().numpy() for n, m in self.test_metrics.items()}
        indices = self.test_indices.compute().long().cpu().numpy()
        per_landmark = {k: v.cpu().numpy() for k, v in self.test_landmark_nme.compute().items()}
        for metric in [*self.test_metrics.values(), self.test_indices, self.test_landmark_nme]:
            metric.reset()
        values = self.protocol.summarise(per_image, "test/")
        curves = {"all": per_image[self.protocol.primary]}
        sizes = {}
        for name, mask in self.test_subsets.items():
            selected = mask[indices]
            if selected.any():
                subset = {n: v[selected] for n, v in per_image.items()}
                values.update(self.protocol.summarise(subset, f"test/{name}/"))
                curves[name] = subset[self.protocol.primary]
                sizes[name] = int(selected.sum())
        if torch.isfinite(self.mean_shape).all():
            values["test/nme_mean_shape"] = float(self.test_mean_shape_nme.compute())
            self.test_mean_shape_nme.reset()
        offsets = self._offset_values("test", self.test_offset)
        values.update({name: float(value) for name, value in offsets.items()})
        self.log_dict(values)
        self.test_outcome = TestOutcome(
            protocol=self.protocol,
            indices=indices,
            per_image=per_image,
            curves=curves,
            sizes=sizes,
            values=values,
            per_landmark_nme=per_landmark["nme"],
            per_landmark_faces=per_landmark["faces"],
        )

    @staticmethod
    def _offset_values(stage: str, metric: MeanOffset) -> dict[str, torch.Tensor]:
        """``{"<stage>/offset_x": …, "<stage>/offset_y": …}``: the predictions' mean signed
        error in input pixels (their systematic offset); resets ``metric``."""
        offset = metric.compute()
        metric.reset()
        return {f"{stage}/offset_x": offset[0], f"{stage}/offset_y": offset[1]}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Let a resumed run follow the schedule of its own length.

        A step-based schedule is planned over ``trainer.estimated_stepping_batches``; its
        saved state keeps the step reached but not the planned length (``total_steps`` and
        one-cycle's phase boundaries), so a run resumed with a larger ``trainer.max_epochs``
        continues on the schedule planned for the new length from the step it reached.
        """
        for state in checkpoint.get("lr_schedulers") or []:
            for key in ("total_steps", "_schedule_phases"):
                state.pop(key, None)
        self._resumed_val_nme_best = checkpoint.get("val_nme_best")

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
