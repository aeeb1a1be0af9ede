"""Torch datasets over pre-cropped faces."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from wingface.data.faces import FaceSet
from wingface.data.transforms import (
    TrainAugmentation,
    centre_crop_offset,
    check_oversample,
    crop_matrix,
    transform_points,
    warp_crop,
)


class ContextCrops:
    """Faces pre-cropped once into square uint8 context crops held in memory, and their
    network-input (centre) crops for evaluation and un-augmented training.

    A context crop covers ``context_scale`` times the input crop, stored at ``oversample``
    pixels per input pixel; augmentation resamples it to the input size. With ``oversample``
    1 the centre crop is its central window (a view); with more, the centre crop is warped
    from the photo directly at input resolution (what the augmentation's identity gives, up to
    interpolation), so that augmented training faces are no blurrier than evaluation faces.

    Attributes:
        images: ``(N, K, K, 3)`` uint8 context crops, ``K = context_size``.
        landmarks: ``(N, L, 2)`` float32 in context-crop pixels.
        centre_images: ``(N, S, S, 3)`` uint8 network-input crops, ``S = input_size``.
        centre_landmarks: ``(N, L, 2)`` float32 in network-input pixels.
        visibility: ``(N, L)`` bool.
        attributes: the faces' named ``(N,)`` bool flags (evaluation subsets).
        names: the faces' identifiers.
        input_size: side ``S`` of the network input.
        context_size: side ``K`` of each context crop, in its own pixels.
        oversample: context-crop pixels per input pixel.
    """

    def __init__(
        self,
        faces: FaceSet,
        input_size: int,
        crop_scale: float,
        context_scale: float,
        oversample: int = 1,
    ) -> None:
        if context_scale < 1.0:
            raise ValueError(f"data.context_scale must be >= 1, got {context_scale}")
        check_oversample(oversample)
        context_side = input_size + 2 * round(input_size * (context_scale - 1.0) / 2.0)
        offset = centre_crop_offset(context_side, input_size)
        context_size = context_side * oversample
        self.input_size = input_size
        self.context_size = context_size
        self.oversample = oversample
        n, num_points = len(faces), faces.num_points
        self.images = np.empty((n, context_size, context_size, 3), dtype=np.uint8)
        self.landmarks = np.empty((n, num_points, 2), dtype=np.float32)
        self.visibility = faces.visibility.astype(bool)
        self.attributes = faces.attributes
        self.names = faces.names
        context_crop_scale = crop_scale * context_side / input_size
        for i in range(n):
            matrix = crop_matrix(faces.boxes[i], context_crop_scale, context_size)
            self.images[i] = warp_crop(faces.images[i], matrix, context_size)
            self.landmarks[i] = transform_points(faces.landmarks[i], matrix)
        if oversample == 1:
            window = slice(offset, offset + input_size)
            self.centre_images = self.images[:, window, window]
            self.centre_landmarks = self.landmarks - offset
            return
        self.centre_images = np.empty((n, input_size, input_size, 3), dtype=np.uint8)
        self.centre_landmarks = np.empty((n, num_points, 2), dtype=np.float32)
        for i in range(n):
            matrix = crop_matrix(faces.boxes[i], crop_scale, input_size)
            self.centre_images[i] = warp_crop(faces.images[i], matrix, input_size)
            self.centre_landmarks[i] = transform_points(faces.landmarks[i], matrix)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def centre_is_window(self) -> bool:
        """Whether :attr:`centre_images` is the central window of :attr:`images` (a view)."""
        return self.oversample == 1


class FaceCropDataset(Dataset):
    """Samples of network-input size from context crops, augmented or centre-cropped.

    Each item is a dict with ``image`` ``(3, S, S)`` uint8, ``landmarks`` ``(L, 2)`` float32 in
    input pixels, ``visibility`` ``(L,)`` float32 and ``index`` (the face's index in the crops).
    With ``context=True`` (batched augmentation after transfer, ``augment=gpu``) the item is
    the un-augmented context crop instead: ``image`` ``(3, C, C)`` uint8, ``landmarks`` in
    context-crop pixels, plus ``epoch`` and ``position`` (int64), from which the batched
    augmentation seeds the sample.

    Items are addressed as ``epoch * len(self) + position`` (plain positions are epoch 0): the
    augmentation of a sample is seeded with ``(seed, epoch, position)``, so it depends on
    nothing else (not the worker that loads it, nor whether training was resumed).

    A data loader fetches whole batches through :meth:`__getitems__` (one indexing of the
    crop array per batch instead of one per sample); use :func:`collate_batch` as its
    ``collate_fn``.

    Args:
        crops: the split's context crops.
        indices: ``(M,)`` face index of each dataset position (repeated faces appear repeatedly).
        augment: the training augmentation, or None for centre crops.
        seed: run seed for the augmentation.
        context: return un-augmented context crops (see above); not with ``augment``.
    """

    def __init__(
        self,
        crops: ContextCrops,
        indices: np.ndarray,
        augment: TrainAugmentation | None = None,
        seed: int = 0,
        context: bool = False,
    ) -> None:
        if context and augment is not None:
            raise ValueError("context crops are augmented after transfer: pass no augment")
        self.crops = crops
        self.indices = np.asarray(indices, dtype=np.int64)
        self.augment = augment
        self.seed = int(seed)
        self.context = context

    def __len__(self) -> int:
        return len(self.indices)

    def sample_seed(self, epoch: int, position: int) -> int:
        """The 32-bit augmentation seed of dataset ``position`` in ``epoch``."""
        state = np.random.SeedSequence([self.seed, epoch, position]).generate_state(1)
        return int(state[0])

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        if self.augment is None:
            return {key: value[0] for key, value in self.__getitems__([item]).items()}
        epoch, position = divmod(int(item), len(self.indices))
        index = int(self.indices[position])
        self.augment.reseed(self.sample_seed(epoch, position))
        image, landmarks, visibility = self.augment(
            self.crops.images[index], self.crops.landmarks[index], self.crops.visibility[index]
        )
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1),
            "landmarks": torch.from_numpy(np.asarray(landmarks, dtype=np.float32)),
            "visibility": torch.from_numpy(np.asarray(visibility, dtype=np.float32)),
            "index": torch.tensor(index, dtype=torch.int64),
        }

    def __getitems__(self, items: list[int]) -> dict[str, torch.Tensor]:
        """The batch of dataset ``items`` (epoch-tagged positions), collated: ``image``
        ``(B, 3, S, S)`` (``(B, 3, C, C)`` with ``context``), ``landmarks`` ``(B, L, 2)``,
        ``visibility`` ``(B, L)``, ``index`` ``(B,)`` (and ``epoch``, ``position`` ``(B,)``
        with ``context``)."""
        if self.augment is not None:
            samples = [self[item] for item in items]
            return {key: torch.stack([s[key] for s in samples]) for key in samples[0]}
        epoch, position = np.divmod(np.asarray(items, dtype=np.int64), len(self.indices))
        index = self.indices[position]
        if self.context:
            images, landmarks = self.crops.images[index], self.crops.landmarks[index]
        else:
            images, landmarks = self.crops.centre_images[index], self.crops.centre_landmarks[index]
        batch = {
            "image": torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
            "landmarks": torch.from_numpy(np.ascontiguousarray(landmarks, dtype=np.float32)),
            "visibility": torch.from_numpy(self.crops.visibility[index].astype(np.float32)),
            "index": torch.from_numpy(index),
        }
        if self.context:
            batch["epoch"] = torch.from_numpy(epoch)
            batch["position"] = torch.from_numpy(position)
        return batch


def collate_batch(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``collate_fn`` for :class:`FaceCropDataset`: its batches come collated already."""
    return batch


class DeviceCrops:
    """A split's context and centre crops as tensors on one device (``data.on_device``).

    Attributes:
        images: ``(N, 3, K, K)`` uint8 context crops.
        landmarks: ``(N, L, 2)`` float32 in context-crop pixels.
        centre_images: ``(N, 3, S, S)`` uint8 (a view of :attr:`images` when the centre crop
            is its central window).
        centre_landmarks: ``(N, L, 2)`` float32 in input pixels.
        visibility: ``(N, L)`` float32.
    """

    def __init__(self, crops: ContextCrops, device: torch.device) -> None:
        images = torch.from_numpy(crops.images).permute(0, 3, 1, 2)
        self.images = images.to(device).contiguous()
        self.landmarks = torch.from_numpy(crops.landmarks).to(device)
        if crops.centre_is_window:
            offset = centre_crop_offset(crops.context_size, crops.input_size)
            window = slice(offset, offset + crops.input_size)
            self.centre_images = self.images[:, :, window, window]
        else:
            centre = torch.from_numpy(crops.centre_images).permute(0, 3, 1, 2)
            self.centre_images = centre.to(device).contiguous()
        self.centre_landmarks = torch.from_numpy(crops.centre_landmarks).to(device)
        self.visibility = torch.from_numpy(crops.visibility.astype(np.float32)).to(device)

    def batch(
        self, faces: torch.Tensor, epoch: torch.Tensor, position: torch.Tensor, context: bool
    ) -> dict[str, torch.Tensor]:
        """The batch of ``(B,)`` ``faces`` (device int64), as :class:`FaceCropDataset` gives it:
        centre crops, or with ``context`` the context crops plus ``epoch`` and ``position``."""
        if context:
            images, landmarks = self.images[faces], self.landmarks[faces]
        else:
            images = self.centre_images[faces].contiguous()
            landmarks = self.centre_landmarks[faces]
        batch = {
            "image": images,
            "landmarks": landmarks,
            "visibility": self.visibility[faces],
            "index": faces,
        }
        if context:
            batch["epoch"] = epoch
            batch["position"] = position
        return batch


class DeviceBatches:
    """An epoch of batches indexed on the device from :class:`DeviceCrops`: no data-loader
    workers, no host-to-device copy per batch (``data.on_device``).

    Yields the same batches as a data loader over :class:`FaceCropDataset` with the same
    sampler and batch size (the last batch may be smaller).

    Args:
        crops: the split's crops on the device.
        indices: ``(M,)`` face index of each dataset position.
        batch_size: samples per batch.
        sampler: the training sampler (epoch-tagged positions, :meth:`set_epoch` is called
            through ``.sampler`` by Lightning), or None for positions in order.
        context: yield context crops for batched augmentation after transfer.
    """

    def __init__(
        self,
        crops: DeviceCrops,
        indices: np.ndarray,
        batch_size: int,
        sampler: Sampler[int] | None = None,
        context: bool = False,
    ) -> None:
        self.crops = crops
        self.indices = torch.as_tensor(np.asarray(indices, dtype=np.int64)).to(crops.images.device)
        self.batch_size = int(batch_size)
        self.sampler = sampler
        self.batch_sampler = None  # read by Lightning, as on a DataLoader
        self.context = context

    def _items(self) -> torch.Tensor:
        if self.sampler is None:
            return torch.arange(len(self.indices), device=self.indices.device)
        items = torch.as_tensor(list(self.sampler), dtype=torch.int64)
        return items.to(self.indices.device)

    def __len__(self) -> int:
        total = len(self.sampler) if self.sampler is not None else len(self.indices)
        return math.ceil(total / self.batch_size)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        items = self._items()
        epoch, position = items // len(self.indices), items % len(self.indices)
        for start in range(0, len(items), self.batch_size):
            chunk = slice(start, start + self.batch_size)
            faces = self.indices[position[chunk]]
            yield self.crops.batch(faces, epoch[chunk], position[chunk], self.context)


class ResumableLoader:
    """Marks a training loader as resumable mid-epoch for Lightning.

    The position itself (epoch, batches done) is saved and restored by
    :class:`~wingface.data.datamodule.FaceDataModule` (``state_dict`` / ``load_state_dict``),
    which Lightning restores before it builds the training loader; the loader's own state is
    empty.
    """

    def state_dict(self) -> dict[str, int]:
        return {}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Nothing to restore here (see the class docstring)."""


class TrainingLoader(ResumableLoader, DataLoader):
    """The training :class:`~torch.utils.data.DataLoader` (:class:`ResumableLoader`)."""


class TrainingDeviceBatches(ResumableLoader, DeviceBatches):
    """The training :class:`DeviceBatches` (:class:`ResumableLoader`)."""
