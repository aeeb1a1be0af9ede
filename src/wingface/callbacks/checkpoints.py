"""The run's checkpoints: the best epoch by the monitored metric, and ``last.ckpt`` after every
epoch, the state ``ckpt_path=last`` resumes."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint


class BestAndLastCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint``, with ``last.ckpt`` (``save_last=true``) rewritten at the
    end of every training epoch.

    Lightning (2.6) writes ``last.ckpt`` only in a step where it also writes a top-k
    checkpoint. With ``monitor=val/nme`` and ``save_top_k=1`` it then stays at the best epoch:
    ``ckpt_path=last`` resumes from there, trains the epochs after it again with other random
    draws, and relaunching a finished run trains its tail again and rewrites its results. Here
    every epoch that did not write a top-k checkpoint writes ``last.ckpt`` too, at the same
    point of the epoch where Lightning saves its checkpoints.

    Its state (the best checkpoint so far and its score) is stored under Lightning's own
    ``ModelCheckpoint`` key, so runs checkpointed by either class resume with their best
    checkpoint known; a state not found would start the best-so-far over and test another
    epoch after a resume.
    """

    @property
    def state_key(self) -> str:
        """Lightning's ``ModelCheckpoint`` state key for the same settings."""
        key = self._generate_state_key(
            monitor=self.monitor,
            mode=self.mode,
            every_n_train_steps=self._every_n_train_steps,
            every_n_epochs=self._every_n_epochs,
            train_time_interval=self._train_time_interval,
        )
        return ModelCheckpoint.__qualname__ + key.removeprefix(type(self).__qualname__)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_last_unless_saved(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._save_last_unless_saved(trainer)

    def _save_last_unless_saved(self, trainer: L.Trainer) -> None:
        """Write ``last.ckpt`` where Lightning saves (at the epoch's end, or after validation
        when that is where it saves) unless this step already wrote a checkpoint or saving is
        off (sanity check, ``fast_dev_run``, outside fitting)."""
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
