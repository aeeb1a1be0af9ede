"""A callback for the interruption tests: the training process sends itself a real signal at a
chosen batch, once per marker file (a relaunch with the same config is not signalled again)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning as L


class SignalAt(L.Callback):
    """Send ``signum`` to this process before training batch ``batch`` of ``epoch``, unless
    ``marker`` exists (it is created just before the signal)."""

    def __init__(self, signum: int, epoch: int, batch: int, marker: str) -> None:
        self.signum, self.epoch, self.batch, self.marker = signum, epoch, batch, Path(marker)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if (trainer.current_epoch, batch_idx) == (
            self.epoch,
            self.batch,
        ) and not self.marker.exists():
            self.marker.touch()
            os.kill(os.getpid(), self.signum)
