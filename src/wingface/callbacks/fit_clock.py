"""A run's fitting time over all its launches (``time/fit_seconds``)."""

from __future__ import annotations

import time
from typing import Any

import lightning as L

FIT_SECONDS_KEY = "wingface_fit_seconds"
"""Checkpoint key of the fitting seconds spent up to that checkpoint, over all launches."""


class FitClock(L.Callback):
    """Counts the seconds spent fitting, stores the count in every checkpoint and continues it
    when a run resumes from one, so that a resumed run reports the time of all its launches
    (a checkpoint without the count adds nothing: such a run counts from its resume)."""

    def __init__(self) -> None:
        self.earlier_seconds = 0.0
        self._started: float | None = None

    @property
    def seconds(self) -> float:
        """Fitting seconds so far: earlier launches plus this one."""
        running = 0.0 if self._started is None else time.perf_counter() - self._started
        return self.earlier_seconds + running

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started = time.perf_counter()

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self.earlier_seconds = float(checkpoint.get(FIT_SECONDS_KEY, 0.0))

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint[FIT_SECONDS_KEY] = self.seconds
