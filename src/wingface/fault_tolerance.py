"""What lets a run survive an interruption and resume exactly: training randomness keyed by the
step, a resumable checkpoint on SIGTERM (or SLURM pre-emption), and checkpoint files that are
either whole or absent.

- :class:`StepRandomness` reseeds torch's generators before every training batch from
  ``(seed, epoch, batch)``: dropout and any other random draw of a training step depend on
  nothing else (not on data-loader workers, sanity checks, or whether the run was resumed).
  Together with the augmentation keyed by ``(seed, epoch, position)`` and the sampler's saved
  position (:class:`~wingface.data.sampler.ResumablePosition`), a resumed run trains on the
  same batches with the same draws as an uninterrupted one.
- :class:`InterruptCheckpoint` writes ``last.ckpt`` when Lightning stops a fit on SIGTERM
  (``SIGTERMException``); :func:`interrupted_exit_code` tells the entry point how to exit.
- :class:`AtomicCheckpointIO` writes each checkpoint to a temporary file in its own folder,
  flushes and fsyncs it, then renames it over the destination; on any failure the partial
  file is removed and the previous checkpoint of that name stays as it was.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import tempfile
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)

LAST_CHECKPOINT = "last.ckpt"
"""The checkpoint ``ckpt_path=last`` resumes from (in the run's ``checkpoints/`` folder)."""

EXIT_INTERRUPTED = 128 + signal.SIGTERM
"""Exit status of a run stopped by SIGTERM or pre-emption (the shell's convention, 143)."""


def step_seed(seed: int, epoch: int, batch_idx: int) -> int:
    """The 63-bit torch seed of training batch ``batch_idx`` of ``epoch`` in a run seeded
    ``seed``."""
    state = np.random.SeedSequence([int(seed), int(epoch), int(batch_idx)]).generate_state(
        1, dtype=np.uint64
    )
    return int(state[0]) >> 1


class StepRandomness(L.Callback):
    """Seeds torch (CPU and every GPU) with :func:`step_seed` before each training batch.

    Args:
        seed: the run's ``seed``.
    """

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        seed_torch_generators(step_seed(self.seed, trainer.current_epoch, batch_idx))


def seed_torch_generators(seed: int) -> None:
    """Seed torch's CPU generator and, once CUDA is initialised, every GPU's.

    ``torch.manual_seed`` also queues lazy seeds for each backend not yet initialised,
    formatting a stack trace per backend on every call (about a millisecond per training
    step); no randomness is drawn on a backend before it is initialised, and the next step
    seeds it.
    """
    torch.default_generator.manual_seed(seed)
    if torch.cuda.is_initialized():
        for generator in torch.cuda.default_generators:
            generator.manual_seed(seed)


class InterruptCheckpoint(L.Callback):
    """On SIGTERM during a fit, saves a resumable checkpoint as ``<dirpath>/last.ckpt``.

    Lightning turns SIGTERM into a ``SIGTERMException`` at the next batch boundary (or between
    validation batches); the checkpoint then holds the weights, optimizer, schedule, loop
    progress and the sampler's position, so ``ckpt_path=last`` continues the run exactly.
    Under SLURM, the pre-emption signal (``SIGUSR1``) is turned into the same path, unless
    Lightning's SLURM auto-requeue handles it (it saves its own checkpoint and requeues the
    job; :attr:`requeued` then records that it did).

    Args:
        dirpath: the run's checkpoint folder.

    Attributes:
        saved: the checkpoint written on the interruption, or None.
        epoch: the epoch (0-based) the run was in when interrupted.
        requeued: whether SLURM's auto-requeue took the pre-emption signal.
    """

    def __init__(self, dirpath: str | Path) -> None:
        self.dirpath = Path(dirpath)
        self.saved: Path | None = None
        self.epoch: int | None = None
        self.requeued = False
        self._previous_handler: Any = None
        self._signal: int | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if "SLURM_JOB_ID" not in os.environ:
            return
        environment = trainer._accelerator_connector.cluster_environment
        auto_requeue = isinstance(environment, SLURMEnvironment) and environment.auto_requeue
        requeue_signal = (
            environment.requeue_signal if isinstance(environment, SLURMEnvironment) else None
        ) or signal.SIGUSR1
        self._previous_handler = signal.getsignal(requeue_signal)

        def on_preemption(signum: int, frame: FrameType | None) -> None:
            if auto_requeue:
                self.requeued = True
                if callable(self._previous_handler):
                    self._previous_handler(signum, frame)
            else:
                log.info("pre-emption signal %d: stopping as on SIGTERM", signum)
                os.kill(os.getpid(), signal.SIGTERM)

        with contextlib.suppress(ValueError):  # not the main thread: nothing to install
            signal.signal(requeue_signal, on_preemption)
            self._signal = requeue_signal

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Give the pre-emption signal back to the handler it had before the fit."""
        if self._signal is not None:
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(self._signal, self._previous_handler or signal.SIG_DFL)
            self._signal = None

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if not isinstance(exception, SIGTERMException) or trainer.state.fn != TrainerFn.FITTING:
            return
        self.epoch = trainer.current_epoch
        if self.requeued:
            return  # Lightning saved its requeue checkpoint
        path = self.dirpath / LAST_CHECKPOINT
        trainer.save_checkpoint(path)
        self.saved = path


def interrupted_exit_code(callback: InterruptCheckpoint | None) -> int:
    """Exit status after a SIGTERM: 0 when SLURM requeued the job (it will run again),
    :data:`EXIT_INTERRUPTED` otherwise (a scheduler or ``train && eval`` must not read an
    interrupted run as a success)."""
    return 0 if callback is not None and callback.requeued else EXIT_INTERRUPTED


class RunInterruptedError(Exception):
    """A run stopped by SIGTERM after saving its resumable checkpoint, raised instead of
    ``SystemExit`` where ending the process would take other runs with it (a job of a sweep
    whose jobs share worker processes): the sweep records the job as failed, with this
    message (where it stopped and the command that resumes it), and its other jobs go on."""


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (where the platform allows it)."""
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def write_atomically(path: str | Path, write: Any) -> Path:
    """Create or replace ``path`` with what ``write(file)`` writes, all or nothing.

    The data goes to a hidden temporary file in ``path``'s own folder (so the final rename
    never crosses file systems), is flushed and fsynced, then renamed over ``path``. If
    anything fails (a full disk, a kill signal turned exception), the temporary file is
    removed and ``path`` keeps its previous content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
    )
    try:
        with os.fdopen(descriptor, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _fsync_folder(path.parent)
    return path


UNFINISHED_WRITE = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")
"""Name of :func:`write_atomically`'s temporary file (``.<name>.<8 random characters>.tmp``)."""


def remove_unfinished_writes(folder: str | Path) -> list[Path]:
    """Delete the temporary files of :func:`write_atomically` calls that never finished in
    ``folder`` and below (a process killed with SIGKILL while writing cannot remove its own);
    W&B's folders are left alone. Call it only while holding the folder's run lock, when no
    other process can be writing there. Returns the files removed."""
    removed = []
    for path in sorted(Path(folder).rglob(".*.tmp")):
        if UNFINISHED_WRITE.match(path.name) and "wandb" not in path.parts and path.is_file():
            path.unlink()
            removed.append(path)
    return removed


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO with all-or-nothing local writes (:func:`write_atomically`);
    remote paths (``s3://`` ...) go through Lightning's own writer."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None or "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        write_atomically(path, lambda handle: torch.save(checkpoint, handle))
