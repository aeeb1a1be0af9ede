"""The LightningDataModule: faces → context crops → (balanced, augmented) batches."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from wingface.data.balance import NoBalance, pose_quantile_flags
from wingface.data.checks import bad_samples_path, check_policy
from wingface.data.dataset import ContextCrops, FaceCropDataset
from wingface.data.sampler import BalancedEpochSampler
from wingface.data.sources import FaceSource
from wingface.data.transforms import TrainAugmentation
from wingface.evaluation import EvaluationProtocol
from wingface.landmarks import get_scheme

log = logging.getLogger(__name__)

Balance = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


class FaceDataModule(L.LightningDataModule):
    """Loads a face source, pre-crops every split once and serves uint8 image batches.

    Batches are dicts: ``image`` ``(B, 3, S, S)`` uint8, ``landmarks`` ``(B, L, 2)`` float32 in
    input pixels, ``visibility`` ``(B, L)`` float32, ``index`` ``(B,)``.

    Args:
        source: the dataset source (``data.source``).
        root: the dataset's folder on disk (``data.root``), checked before anything is loaded;
            None for generated data.
        scheme: landmark scheme name (``data.scheme``), e.g. ``"300w"``.
        num_points: landmarks per face (``data.num_points``); checked against the data.
        input_size: network input side in pixels (``model.input_size``).
        crop_scale: crop side as a multiple of the longer face-box side.
        context_scale: context crop side as a multiple of the input crop (room for augmentation).
        batch_size: training batch size.
        eval_batch_size: validation / test batch size.
        num_workers: data-loader worker processes.
        augment: builds the training augmentation from ``(input_size, context_size,
            flip_permutation)``; None trains on un-augmented centre crops.
        balance: returns each training face's repeat count from the training shapes.
        pin_memory: pin host memory for faster transfers to an accelerator.
        protocol: what the test split reports (``data.protocol``); the default protocol when
            None.
        pose_quantiles: when set (``data.pose_quantiles``, e.g. ``[0.5, 0.9]``), the test faces
            get pose-bin flags ``pose_q0_50``, ``pose_q50_90``, ``pose_q90_100`` from the
            quantiles of their own |pose coefficient| (:func:`pose_quantile_flags`), for
            per-pose results on data without a ground-truth pose.
        seed: seeds each epoch's shuffle of the balanced training set and every sample's
            augmentation (``data.seed``, the run's ``seed`` by default), identically on every
            DDP rank and whatever the number of workers.
        on_bad_sample: ``data.on_bad_sample``, ``"error"`` or ``"skip"`` (checked here, before
            anything is loaded; the readers of ``data.source`` apply it). Faces the readers
            dropped are logged as a warning and listed in ``bad_samples.txt`` in
            ``output_dir``.
        output_dir: the run folder for ``bad_samples.txt``; None: the Hydra run folder
            (``paths.output_dir``) when Hydra is running, else the list is only logged.
    """

    def __init__(
        self,
        source: FaceSource,
        root: str | None,
        scheme: str,
        num_points: int,
        input_size: int,
        crop_scale: float = 1.28,
        context_scale: float = 1.25,
        batch_size: int = 64,
        eval_batch_size: int = 256,
        num_workers: int = 2,
        augment: Callable[..., TrainAugmentation] | None = None,
        balance: Balance | None = None,
        pin_memory: bool = True,
        protocol: EvaluationProtocol | None = None,
        pose_quantiles: Sequence[float] | None = None,
        seed: int = 0,
        on_bad_sample: str = "error",
        output_dir: str | None = None,
    ) -> None:
        super().__init__()
        self.on_bad_sample = check_policy(on_bad_sample)
        self.output_dir = output_dir
        self.bad_samples: list[str] = []
        if root is not None and not Path(root).is_dir():
            raise FileNotFoundError(
                f"data.root: dataset folder not found: {root} (resolved: {Path(root).resolve()})"
            )
        self.root = root
        self.source = source
        self.scheme = get_scheme(scheme)
        if num_points != self.scheme.num_points:
            raise ValueError(
                f"data.num_points={num_points} does not match scheme {scheme!r} "
                f"({self.scheme.num_points} points)"
            )
        if crop_scale <= 0:
            raise ValueError(f"data.crop_scale must be > 0, got {crop_scale}")
        self.num_points = num_points
        self.input_size = input_size
        self.crop_scale = crop_scale
        self.context_scale = context_scale
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.augment = augment
        self.balance = balance if balance is not None else NoBalance()
        self.pin_memory = pin_memory
        self.protocol = protocol if protocol is not None else EvaluationProtocol()
        self.pose_quantiles = None if pose_quantiles is None else list(pose_quantiles)
        self.seed = int(seed)
        self.crops: dict[str, ContextCrops] = {}
        self.train_repeats: np.ndarray | None = None

    def _crops(self, split: str) -> ContextCrops:
        if split not in self.crops:
            faces = self.source.load(split)
            self._record_dropped(split, faces.dropped)
            if faces.num_points != self.num_points:
                raise ValueError(
                    f"{split} split has {faces.num_points} landmarks per face, "
                    f"data.num_points expects {self.num_points}"
                )
            if split == "test" and self.pose_quantiles is not None:
                faces.attributes.update(
                    pose_quantile_flags(
                        faces.landmarks,
                        faces.visibility,
                        self.scheme.flip_array(),
                        self.pose_quantiles,
                    )
                )
            self.crops[split] = ContextCrops(
                faces, self.input_size, self.crop_scale, self.context_scale
            )
            log.info("%s split: %d faces cropped", split, len(faces))
        return self.crops[split]

    def _record_dropped(self, split: str, dropped: list[str]) -> None:
        """Log the faces the readers left out (``data.on_bad_sample=skip``) and list them all
        in ``bad_samples.txt`` (train and val come from one reading: each face once)."""
        new = [entry for entry in dropped if entry not in self.bad_samples]
        if not new:
            return
        self.bad_samples.extend(new)
        path = bad_samples_path(self.output_dir)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(f"{entry}\n" for entry in self.bad_samples))
        log.warning(
            "%s split: %d bad sample(s) dropped (data.on_bad_sample=skip)%s:\n  %s",
            split,
            len(new),
            f", listed in {path}" if path is not None else "",
            "\n  ".join(new),
        )

    def setup(self, stage: str | None = None) -> None:
        """Load and crop the splits the stage needs (testing alone never reads training data)."""
        if stage in (None, "fit") and self.train_repeats is None:
            train = self._crops("train")
            repeats = np.asarray(
                self.balance(train.landmarks, train.visibility, self.scheme.flip_array()),
                dtype=np.int64,
            )
            if repeats.shape != (len(train),) or (repeats < 1).any():
                raise ValueError("balance must return one repeat count >= 1 per training face")
            self.train_repeats = repeats
            log.info("training epoch: %d samples from %d faces", repeats.sum(), len(train))
        if stage in (None, "fit", "validate"):
            self._crops("val")
        if stage in (None, "test", "predict"):
            self._crops("test")

    def test_subset_masks(self) -> dict[str, np.ndarray]:
        """Bool masks over the test faces for each subset of ``data.protocol.subsets``."""
        crops = self._crops("test")
        return self.protocol.subset_masks(crops.attributes, len(crops))

    def train_mean_shape(self) -> torch.Tensor:
        """``(L, 2)`` mean training shape in input pixels (un-augmented centre crops)."""
        return torch.from_numpy(self._crops("train").input_landmarks().mean(axis=0))

    def dataset(self, split: str) -> FaceCropDataset:
        """The dataset of ``split``; the training split is augmented and balanced."""
        crops = self._crops(split)
        if split != "train":
            return FaceCropDataset(crops, np.arange(len(crops)))
        if self.train_repeats is None:
            self.setup("fit")
        indices = np.repeat(np.arange(len(crops)), self.train_repeats)
        augment = None
        if self.augment is not None:
            augment = self.augment(
                input_size=self.input_size,
                context_size=crops.context_size,
                flip_permutation=self.scheme.flip_array(),
            )
        return FaceCropDataset(crops, indices, augment, seed=self.seed)

    def _loader(
        self, split: str, batch_size: int, sampler: BalancedEpochSampler | None = None
    ) -> DataLoader:
        return DataLoader(
            self.dataset(split),
            batch_size=batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
        )

    def train_sampler(self) -> BalancedEpochSampler:
        """The balanced-epoch sampler for this process (world size and rank from the trainer)."""
        if self.train_repeats is None:
            self.setup("fit")
        trainer = self.trainer
        world_size = trainer.world_size if trainer is not None else 1
        rank = trainer.global_rank if trainer is not None else 0
        sampler = BalancedEpochSampler(self.train_repeats, world_size, rank, self.seed)
        log.info(
            "balanced epoch: %d samples from %d faces; %d per rank on %d rank(s)",
            sampler.epoch_size,
            len(self.train_repeats),
            len(sampler),
            world_size,
        )
        return sampler

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.batch_size, self.train_sampler())

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.eval_batch_size)
