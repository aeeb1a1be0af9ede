"""The LightningDataModule: faces → context crops → (balanced, augmented) batches."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from wingface.data.balance import NoBalance, pose_quantile_flags
from wingface.data.checks import bad_samples_path, check_policy, screen_faces
from wingface.data.dataset import (
    ContextCrops,
    DeviceBatches,
    DeviceCrops,
    FaceCropDataset,
    TrainingDeviceBatches,
    TrainingLoader,
    collate_batch,
)
from wingface.data.gpu_augment import BatchAugmentation, sample_keys
from wingface.data.head_pose import estimated_yaw_flags
from wingface.data.sampler import BalancedEpochSampler
from wingface.data.sources import FaceSource
from wingface.data.transforms import TrainAugmentation, check_oversample
from wingface.landmarks import get_scheme
from wingface.metrics import DEFAULT_NORMALISATIONS

log = logging.getLogger(__name__)

Balance = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


class ScoredIn(Protocol):
    """What the data module reads of an evaluation protocol: the normalisations the
    validation and test faces are scored in."""

    normalisations: Sequence[str]


class FaceDataModule(L.LightningDataModule):
    """Loads a face source, pre-crops every split once and serves uint8 image batches.

    Batches are dicts: ``image`` ``(B, 3, S, S)`` uint8, ``landmarks`` ``(B, L, 2)`` float32 in
    input pixels, ``visibility`` ``(B, L)`` float32, ``index`` ``(B,)``.

    Two training augmentation paths: a per-sample one in the data-loader workers
    (``augment=default``, :class:`TrainAugmentation`), or a batched one on the batch's device
    (``augment=gpu``, :class:`BatchAugmentation`): the loader then serves un-augmented context
    crops and :meth:`on_after_batch_transfer` augments each training batch where it landed.
    With ``on_device`` the crops of every split are kept on the trainer's device and batches
    are indexed there (no workers, no copy per batch); the batches are the same as the
    loader's.

    Args:
        source: the dataset source (``data.source``).
        root: the dataset's folder on disk (``data.root``), checked before anything is loaded;
            None for generated data.
        scheme: landmark scheme name (``data.scheme``), e.g. ``"300w"``.
        num_points: landmarks per face (``data.num_points``); checked against the data.
        input_size: network input side in pixels (``model.input_size``).
        crop_scale: crop side as a multiple of the longer face-box side.
        context_scale: context crop side as a multiple of the input crop (room for augmentation).
        context_oversample: context-crop pixels per network-input pixel of the training faces
            (``data.context_oversample``): above 1 the augmentation resamples a sharper context
            crop down to the input, so augmented training faces are as sharp as the evaluation
            crops (warped from the photo directly) instead of interpolated twice.
        batch_size: training batch size.
        eval_batch_size: validation / test batch size.
        num_workers: data-loader worker processes (``data.num_workers``, 0: load in the
            training process).
        augment: builds the training augmentation from ``(input_size, context_size,
            flip_permutation, oversample)``: a :class:`TrainAugmentation` (per sample, in the
            loader) or a :class:`BatchAugmentation` (per batch, after transfer); None, or a
            factory that returns None (``augment=none``), trains on un-augmented centre crops.
        balance: returns each training face's repeat count from the training shapes.
        pin_memory: pin host memory for faster transfers to an accelerator.
        protocol: the evaluation protocol (``data.protocol``, an
            :class:`~wingface.evaluation.EvaluationProtocol`); only its ``normalisations`` are
            used here: faces whose normalising distance is zero in one of them are screened out
            of the evaluated splits (:func:`~wingface.data.checks.screen_faces`). None: the
            default normalisations. The protocol's subsets are the module's business.
        pose_quantiles: when set (``data.pose_quantiles``, e.g. ``[0.5, 0.9]``), the test faces
            get pose-bin flags ``pose_q0_50``, ``pose_q50_90``, ``pose_q90_100`` from the
            quantiles of their own |pose coefficient| (:func:`pose_quantile_flags`), for
            per-pose results on data without a ground-truth pose.
        estimated_yaw_bins: flag the test faces ``yaw_est_0_30``, ``yaw_est_30_60``,
            ``yaw_est_60_90`` by the |yaw| a 3-D face template fit estimates from their
            landmarks (``data.estimated_yaw_bins``; :func:`~wingface.data.head_pose.
            estimated_yaw_flags`), for per-pose results in degrees without pose labels.
        seed: seeds each epoch's shuffle of the balanced training set and every sample's
            augmentation (``data.seed``, the run's ``seed`` by default), identically on every
            DDP rank and whatever the number of workers.
        on_bad_sample: ``data.on_bad_sample``, ``"error"`` or ``"skip"`` (checked here, before
            anything is loaded; the readers of ``data.source`` apply it). Faces the readers
            dropped are logged as a warning and listed in ``bad_samples.txt`` in
            ``output_dir``.
        output_dir: the run folder for ``bad_samples.txt`` (``data.output_dir``, the run's
            ``paths.output_dir``); None: the list is only logged.
        on_device: keep the crops as uint8 tensors on the trainer's device and index batches
            there (``data.on_device``); needs the batched augmentation or none.
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
        context_oversample: int = 1,
        batch_size: int = 64,
        eval_batch_size: int = 256,
        num_workers: int = 2,
        augment: Callable[..., TrainAugmentation] | None = None,
        balance: Balance | None = None,
        pin_memory: bool = True,
        protocol: ScoredIn | None = None,
        pose_quantiles: Sequence[float] | None = None,
        estimated_yaw_bins: bool = False,
        seed: int = 0,
        on_bad_sample: str = "error",
        output_dir: str | None = None,
        on_device: bool = False,
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
        for key, value in {"batch_size": batch_size, "eval_batch_size": eval_batch_size}.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"data.{key} must be a whole number >= 1, got {value!r}")
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"data.num_workers must be a whole number >= 0, got {num_workers!r}")
        if not isinstance(on_device, bool):
            raise ValueError(f"data.on_device must be true or false, got {on_device!r}")
        self.num_points = num_points
        self.input_size = input_size
        self.crop_scale = crop_scale
        self.context_scale = context_scale
        self.context_oversample = check_oversample(context_oversample)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.augment = augment
        self.balance = balance if balance is not None else NoBalance()
        self.pin_memory = pin_memory
        self.normalisations = list(
            protocol.normalisations if protocol is not None else DEFAULT_NORMALISATIONS
        )
        self.pose_quantiles = None if pose_quantiles is None else list(pose_quantiles)
        self.estimated_yaw_bins = bool(estimated_yaw_bins)
        self.seed = int(seed)
        self.on_device = on_device
        self.crops: dict[str, ContextCrops] = {}
        self.device_crops: dict[str, DeviceCrops] = {}
        self.train_repeats: np.ndarray | None = None
        self._augmentation: TrainAugmentation | BatchAugmentation | None = None
        self._augmentation_built = False
        self._sampler: BalancedEpochSampler | None = None
        self._resume_position: tuple[int, int] | None = None

    def _crops(self, split: str) -> ContextCrops:
        if split not in self.crops:
            faces = self.source.load(split)
            # evaluated splits are scored in every normalisation
            norms = [] if split == "train" else self.normalisations
            faces = screen_faces(faces, split, self.on_bad_sample, norms, self.scheme)
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
            if split == "test" and self.estimated_yaw_bins:
                faces.attributes.update(
                    estimated_yaw_flags(faces.landmarks, faces.visibility, self.scheme.name)
                )
            # only training faces are augmented: evaluated splits keep 1 pixel per input pixel
            # (their centre crops are the same either way, up to OpenCV's rounding)
            oversample = self.context_oversample if split == "train" else 1
            self.crops[split] = ContextCrops(
                faces, self.input_size, self.crop_scale, self.context_scale, oversample
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

    def test_attributes(self) -> dict[str, np.ndarray]:
        """The test faces' named ``(N,)`` bool flags (source folders, pose bins), by test face
        index: what the evaluation protocol's subsets are made of."""
        return dict(self._crops("test").attributes)

    def test_names(self) -> list[str]:
        """The name (file) of each test face, by test face index."""
        return list(self._crops("test").names)

    def train_mean_shape(self) -> torch.Tensor:
        """``(L, 2)`` mean training shape in input pixels (un-augmented centre crops)."""
        return torch.from_numpy(self._crops("train").centre_landmarks.mean(axis=0))

    def augmentation(self) -> TrainAugmentation | BatchAugmentation | None:
        """The training augmentation (built once, for the training crops' sizes)."""
        if not self._augmentation_built and self.augment is not None:
            augmentation = self.augment(
                input_size=self.input_size,
                context_size=self._crops("train").context_size,
                flip_permutation=self.scheme.flip_array(),
                oversample=self.context_oversample,
            )
            self._augmentation_built = True
            if (
                self.on_device
                and augmentation is not None
                and not isinstance(augmentation, BatchAugmentation)
            ):
                raise ValueError(
                    f"data.on_device=true keeps the crops on the accelerator and needs the "
                    f"batched augmentation (augment=gpu) or none (augment=none), not "
                    f"{type(augmentation).__name__}"
                )
            self._augmentation = augmentation
        return self._augmentation

    def _batched(self) -> bool:
        """Whether training batches are augmented after transfer (``augment=gpu``)."""
        return isinstance(self.augmentation(), BatchAugmentation)

    def _train_indices(self) -> np.ndarray:
        if self.train_repeats is None:
            self.setup("fit")
        return np.repeat(np.arange(len(self._crops("train"))), self.train_repeats)

    def dataset(self, split: str) -> FaceCropDataset:
        """The dataset of ``split``; the training split is augmented and balanced (with
        ``augment=gpu`` it serves context crops, augmented after transfer)."""
        crops = self._crops(split)
        if split != "train":
            return FaceCropDataset(crops, np.arange(len(crops)))
        indices = self._train_indices()
        if self._batched():
            return FaceCropDataset(crops, indices, seed=self.seed, context=True)
        augment = self.augmentation()
        assert augment is None or isinstance(augment, TrainAugmentation)
        return FaceCropDataset(crops, indices, augment, seed=self.seed)

    def _device(self) -> torch.device:
        trainer = self.trainer
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def _device_batches(
        self, split: str, batch_size: int, sampler: BalancedEpochSampler | None = None
    ) -> DeviceBatches:
        if split not in self.device_crops:
            self.device_crops[split] = DeviceCrops(self._crops(split), self._device())
            log.info("%s split: crops kept on %s", split, self._device())
        if split == "train":
            return TrainingDeviceBatches(
                self.device_crops[split], self._train_indices(), batch_size, sampler,
                self._batched(),
            )  # fmt: skip
        indices = np.arange(len(self._crops(split)))
        return DeviceBatches(self.device_crops[split], indices, batch_size, sampler, False)

    def _loader(
        self, split: str, batch_size: int, sampler: BalancedEpochSampler | None = None
    ) -> DataLoader | DeviceBatches:
        if self.on_device:
            return self._device_batches(split, batch_size, sampler)
        loader_class = TrainingLoader if split == "train" else DataLoader
        return loader_class(
            self.dataset(split),
            batch_size=batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=collate_batch,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
        )

    def on_after_batch_transfer(
        self, batch: dict[str, torch.Tensor], dataloader_idx: int
    ) -> dict[str, torch.Tensor]:
        """Augment a training batch of context crops where it landed (``augment=gpu``).

        Only training batches carry ``epoch`` and ``position``; each sample is augmented with
        the draws keyed by ``(data.seed, epoch, position)``. Other batches pass unchanged.
        """
        if not isinstance(batch, dict) or "position" not in batch:
            return batch
        augmentation = self.augmentation()
        assert isinstance(augmentation, BatchAugmentation)
        image = batch["image"]
        keys = sample_keys(self.seed, batch.pop("epoch"), batch.pop("position"), image.device)
        batch["image"], batch["landmarks"], batch["visibility"] = augmentation(
            image, batch["landmarks"], batch["visibility"], keys
        )
        return batch

    def train_sampler(self) -> BalancedEpochSampler:
        """The balanced-epoch sampler for this process (world size and rank from the trainer)."""
        if self.train_repeats is None:
            self.setup("fit")
        trainer = self.trainer
        world_size = trainer.world_size if trainer is not None else 1
        rank = trainer.global_rank if trainer is not None else 0
        sampler = BalancedEpochSampler(self.train_repeats, world_size, rank, self.seed)
        if self._resume_position is not None:
            epoch, done = self._resume_position
            if done >= math.ceil(len(sampler) / self.batch_size):
                epoch, done = epoch + 1, 0
            sampler.resume_at(epoch, done * self.batch_size)
            log.info("training resumes at epoch %d, batch %d", epoch, done)
        self._sampler = sampler
        log.info(
            "balanced epoch: %d samples from %d faces; %d per rank on %d rank(s)",
            sampler.epoch_size,
            len(self.train_repeats),
            len(sampler),
            world_size,
        )
        return sampler

    def train_dataloader(self) -> DataLoader | DeviceBatches:
        return self._loader("train", self.batch_size, self.train_sampler())

    def state_dict(self) -> dict[str, int]:
        """The training position saved with a checkpoint: the sampler's epoch and the batches
        of it the trainer has processed (read from the trainer's progress, not from the
        loader, whose workers run ahead)."""
        trainer = self.trainer
        if trainer is None or self._sampler is None:
            return {}
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        return {"train_epoch": int(self._sampler.epoch), "train_batches_done": int(done)}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        """Resume the training sampler where a checkpoint left it: epoch ``e`` from batch ``k``
        on, or epoch ``e + 1`` when ``e`` was complete, so a resumed run trains on the same
        batches in the same order as an uninterrupted one. Lightning restores this before it
        builds the training loader."""
        if "train_epoch" in state_dict:
            self._resume_position = (
                int(state_dict["train_epoch"]),
                int(state_dict["train_batches_done"]),
            )

    def val_dataloader(self) -> DataLoader | DeviceBatches:
        return self._loader("val", self.eval_batch_size)

    def test_dataloader(self) -> DataLoader | DeviceBatches:
        return self._loader("test", self.eval_batch_size)
