"""The training sampler: a freshly shuffled balanced epoch, the same on every rank, split."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import DistributedSampler


class BalancedEpochSampler(DistributedSampler):
    """Shuffles the balanced epoch with ``(seed, epoch)`` and hands each rank a disjoint share.

    The training dataset holds face ``i`` ``repeats[i]`` times (``M = sum(repeats)``
    positions; each position is augmented independently, so every copy of a face is a different
    sample). Each epoch the ``M`` positions are permuted by a generator seeded with
    ``seed + epoch`` (Lightning calls :meth:`set_epoch` before every epoch), so every process
    draws the same plan without communicating; the order is padded with its own first
    positions to a multiple of ``num_replicas`` (at most ``num_replicas - 1`` extra samples)
    and rank ``r`` takes positions ``r, r + R, r + 2R, ...``: the shares are disjoint and
    together cover the whole epoch. Being a :class:`~torch.utils.data.DistributedSampler`, it
    is used as it is under Lightning DDP (Lightning only wraps samplers that are not), and it
    behaves the same with one process as with many.

    The sampler yields *epoch-tagged* positions ``epoch * M + position``; the training dataset
    (:class:`~wingface.data.dataset.FaceCropDataset`) takes the position modulo ``M`` and seeds
    that sample's augmentation with ``(seed, epoch, position)``, so an epoch's samples are the
    same whatever the number of workers and after a resume from a checkpoint.

    A resumed run continues where the interrupted one stopped: :meth:`resume_at` sets the
    epoch and the number of this rank's samples already trained on, which the next iteration
    leaves out (once).

    Args:
        repeats: ``(N,)`` int repeat counts ``>= 1`` of the training faces.
        num_replicas: number of processes (world size).
        rank: this process's rank, ``0 <= rank < num_replicas``.
        seed: run seed (``seed``).
    """

    def __init__(
        self, repeats: np.ndarray, num_replicas: int = 1, rank: int = 0, seed: int = 0
    ) -> None:
        repeats = np.asarray(repeats)
        if repeats.ndim != 1 or len(repeats) == 0 or (repeats < 1).any():
            raise ValueError("repeats must be a non-empty 1-D array of counts >= 1")
        self.epoch_size = int(repeats.sum())
        """Samples in one balanced epoch, all ranks together, before padding."""
        super().__init__(
            range(self.epoch_size),
            num_replicas=num_replicas,
            rank=rank,
            shuffle=True,
            seed=int(seed),
            drop_last=False,
        )
        self._skip = 0

    def set_epoch(self, epoch: int) -> None:
        """Draw the plan of ``epoch`` (a pending :meth:`resume_at` skip is kept for its epoch)."""
        if epoch != self.epoch:
            self._skip = 0
        super().set_epoch(epoch)

    def resume_at(self, epoch: int, samples_done: int) -> None:
        """Make the next iteration yield ``epoch``'s share of this rank without its first
        ``samples_done`` samples (those an interrupted run already trained on)."""
        if samples_done < 0:
            raise ValueError(f"samples_done must be >= 0, got {samples_done}")
        super().set_epoch(epoch)
        self._skip = int(samples_done)

    def __iter__(self) -> Iterator[int]:
        offset = self.epoch * self.epoch_size
        skip, self._skip = self._skip, 0
        positions = list(super().__iter__())[skip:]
        return iter([offset + position for position in positions])
