"""The balanced-epoch sampler: per-epoch plans, identical on every rank, split without overlap."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import DataLoader, Dataset

from wingface.data.datamodule import FaceDataModule
from wingface.data.faces import FaceSet
from wingface.data.sampler import BalancedEpochSampler
from wingface.data.transforms import TrainAugmentation
from wingface.landmarks import IBUG68

REPEATS = np.array([1, 3, 1, 2, 5, 1, 1, 4, 1])
"""Nine faces, 19 samples per balanced epoch (odd: two ranks need one padding sample)."""


def faces_of(positions: list[int], repeats: np.ndarray = REPEATS) -> np.ndarray:
    """Face index of each dataset position of the balanced training set."""
    return np.repeat(np.arange(len(repeats)), repeats)[np.asarray(positions)]


def untagged(items: list[int], epoch: int, size: int = 19) -> list[int]:
    """Dataset positions of epoch-tagged sampler items (``epoch * size + position``)."""
    assert all(item // size == epoch for item in items)
    return [item % size for item in items]


def test_one_process_sees_every_copy_once_per_epoch() -> None:
    sampler = BalancedEpochSampler(REPEATS, seed=3)
    assert sampler.epoch_size == len(sampler) == 19
    epochs = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        positions = untagged(list(sampler), epoch)
        assert sorted(positions) == list(range(19))
        np.testing.assert_array_equal(np.bincount(faces_of(positions)), REPEATS)
        epochs.append(positions)
    assert epochs[0] != epochs[1] != epochs[2]  # a fresh plan every epoch
    sampler.set_epoch(1)
    assert untagged(list(sampler), 1) == epochs[1]  # ... that depends only on seed and epoch
    assert list(BalancedEpochSampler(REPEATS, seed=4)) != list(BalancedEpochSampler(REPEATS, 3))


def test_ranks_split_the_same_plan_without_overlap() -> None:
    shares = [BalancedEpochSampler(REPEATS, num_replicas=2, rank=r, seed=5) for r in (0, 1)]
    for sampler in shares:
        sampler.set_epoch(2)
    first, second = (untagged(list(s), 2) for s in shares)
    assert len(first) == len(second) == 10  # ceil(19 / 2)
    single = BalancedEpochSampler(REPEATS, seed=5)
    single.set_epoch(2)
    order = untagged(list(single), 2)
    assert first == (order + order[:1])[0::2] and second == (order + order[:1])[1::2]
    assert sorted(first + second[:-1]) == list(range(19))  # the last of rank 1 is padding


@pytest.mark.parametrize("repeats", [[], [1, 0, 2], [[1, 2]]])
def test_invalid_repeats(repeats: list) -> None:
    with pytest.raises(ValueError, match="repeats"):
        BalancedEpochSampler(np.array(repeats))


class _NineFaces:
    """A face source of nine random 68-point faces in every split."""

    def load(self, split: str) -> FaceSet:
        rng = np.random.default_rng(len(split))
        return FaceSet(
            images=np.zeros((9, 64, 64, 3), np.uint8),
            landmarks=rng.uniform(16.0, 48.0, (9, 68, 2)).astype(np.float32),
            visibility=np.ones((9, 68), bool),
            boxes=np.tile(np.array([16.0, 16.0, 48.0, 48.0], np.float32), (9, 1)),
            flip_permutation=IBUG68.flip_array(),
        )


def test_augmentation_depends_only_on_seed_epoch_and_position() -> None:
    datamodule = FaceDataModule(
        _NineFaces(), None, "300w", 68, 32, num_workers=0, balance=lambda *_: REPEATS, seed=9
    )
    datamodule.augment = lambda **kwargs: TrainAugmentation(**kwargs)
    dataset = datamodule.dataset("train")
    other = FaceDataModule(
        _NineFaces(), None, "300w", 68, 32, num_workers=0, balance=lambda *_: REPEATS, seed=9
    )
    other.augment = datamodule.augment
    twin = other.dataset("train")
    size = len(dataset)
    for item in (0, 5, size + 5, 3 * size + 18):
        a, b = dataset[item]["landmarks"], twin[item]["landmarks"]
        torch.testing.assert_close(a, b)  # same seed, epoch and position: same sample
    for _ in range(3):  # whatever was drawn before
        dataset[7]
    torch.testing.assert_close(dataset[size + 5]["landmarks"], twin[size + 5]["landmarks"])
    assert not torch.equal(dataset[5]["landmarks"], dataset[size + 5]["landmarks"])  # new epoch
    assert dataset[size + 5]["index"] == dataset[5]["index"]  # ... same face
    # every copy of a repeated face is augmented differently
    copies = [p for p in range(size) if dataset.indices[p] == 4]
    drawn = {tuple(dataset[p]["landmarks"][0].tolist()) for p in copies}
    assert len(drawn) == len(copies) == 5


def test_datamodule_builds_the_sampler_for_its_rank() -> None:
    datamodule = FaceDataModule(
        _NineFaces(), None, "300w", 68, 32, num_workers=0, balance=lambda *_: REPEATS, seed=9
    )
    datamodule.trainer = SimpleNamespace(world_size=2, global_rank=1)
    sampler = datamodule.train_sampler()
    assert (sampler.num_replicas, sampler.rank, sampler.seed) == (2, 1, 9)
    assert sampler.epoch_size == int(REPEATS.sum())
    assert len(datamodule.dataset("train")) == sampler.epoch_size


# --------------------------------------------------------------------------- 2 processes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gloo_worker(rank: int, world_size: int, port: int, out: str) -> None:
    """One rank: draw two epochs, gather every rank's share, rank 0 writes them to ``out``."""
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size
    )
    try:
        sampler = BalancedEpochSampler(REPEATS, num_replicas=world_size, rank=rank, seed=11)
        mine = []
        for epoch in range(2):
            sampler.set_epoch(epoch)
            mine.append(list(sampler))
        gathered: list = [None] * world_size
        dist.all_gather_object(gathered, mine)
        if rank == 0:
            Path(out).write_text(json.dumps(gathered))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_processes_share_each_epoch_without_overlap(tmp_path: Path) -> None:
    out = tmp_path / "shares.json"
    mp.spawn(_gloo_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    shares = json.loads(out.read_text())  # [rank][epoch] -> positions
    for epoch in range(2):
        rank0, rank1 = untagged(shares[0][epoch], epoch), untagged(shares[1][epoch], epoch)
        assert len(rank0) == len(rank1) == 10
        assert len(set(rank0) & set(rank1)) <= 1  # only the one padding sample may repeat
        assert set(rank0) | set(rank1) == set(range(19))
        seen = np.bincount(faces_of(rank0 + rank1), minlength=len(REPEATS))
        assert (seen >= REPEATS).all() and seen.sum() == 20
        reference = BalancedEpochSampler(REPEATS, num_replicas=2, rank=0, seed=11)
        reference.set_epoch(epoch)
        assert shares[0][epoch] == list(reference)  # each rank drew the plan one process would
    assert shares[0][0] != shares[0][1]


class _ItemEcho(Dataset):
    """A dataset whose item ``i`` is ``[float(i)]`` (any epoch-tagged index)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, item: int) -> list[torch.Tensor]:
        return [torch.tensor([float(item)])]


class _RecordingModule(L.LightningModule):
    """Records which dataset positions each rank trains on, per epoch."""

    def __init__(self, out: str) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)
        self.out = out
        self.seen: list[int] = []

    def train_dataloader(self) -> DataLoader:
        positions = _ItemEcho(int(REPEATS.sum()))
        sampler = BalancedEpochSampler(
            REPEATS, self.trainer.world_size, self.trainer.global_rank, seed=13
        )
        return DataLoader(positions, batch_size=4, sampler=sampler)

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        self.seen += batch[0][:, 0].long().tolist()
        return self.layer(batch[0]).sum()

    def on_train_epoch_end(self) -> None:
        path = Path(self.out) / f"rank{self.global_rank}_epoch{self.current_epoch}.json"
        path.write_text(json.dumps(self.seen))
        self.seen = []

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.0)


@pytest.mark.slow
def test_lightning_ddp_keeps_the_sampler_and_advances_its_epoch(tmp_path: Path) -> None:
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    trainer = L.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(_RecordingModule(str(tmp_path)))
    for epoch in range(2):
        expected = []
        for rank in range(2):
            sampler = BalancedEpochSampler(REPEATS, 2, rank, seed=13)
            sampler.set_epoch(epoch)
            expected.append(list(sampler))
            seen = json.loads((tmp_path / f"rank{rank}_epoch{epoch}.json").read_text())
            assert seen == expected[rank]  # Lightning neither replaced nor re-wrapped it
        assert set(untagged(expected[0] + expected[1], epoch)) == set(range(19))
