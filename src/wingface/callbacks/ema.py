"""An exponential moving average of the weights (``callbacks=ema``), as Lightning computes it,
with checkpoints tested as they are saved."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import EMAWeightAveraging
from lightning.pytorch.trainer.states import TrainerFn


class EMAWeights(EMAWeightAveraging):
    """Lightning's :class:`~lightning.pytorch.callbacks.EMAWeightAveraging`: validation and
    checkpoints use the average (a checkpoint's ``state_dict`` holds it, the weights being
    trained are kept beside it for resuming).

    Lightning restores the weights being trained from any checkpoint it loads while the
    callback holds an average, which includes testing the best checkpoint right after fitting;
    here a checkpoint loaded to test, validate or predict keeps its ``state_dict`` (the
    average), so the test after training measures the same weights as ``src/eval.py``.

    Args:
        decay: per optimizer step, average ← decay · average + (1 − decay) · weights (the first
            update copies the weights).
        update_starting_at_step: the first optimizer step that updates the average (None: the
            first); before it the average holds the initial weights.
    """

    def __init__(self, decay: float = 0.999, update_starting_at_step: int | None = None) -> None:
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"callbacks.ema.decay must be in [0, 1], got {decay}")
        super().__init__(decay=decay, update_starting_at_step=update_starting_at_step)

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)
