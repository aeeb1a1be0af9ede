"""Torch datasets over pre-cropped faces."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from wingface.data.faces import FaceSet
from wingface.data.transforms import (
    TrainAugmentation,
    centre_crop_offset,
    crop_matrix,
    transform_points,
    warp_crop,
)


class ContextCrops:
    """Faces pre-cropped once into square uint8 context crops held in memory.

    Attributes:
        images: ``(N, C, C, 3)`` uint8, ``C = context_size``.
        landmarks: ``(N, L, 2)`` float32 in context-crop pixels.
        visibility: ``(N, L)`` bool.
        attributes: the faces' named ``(N,)`` bool flags (evaluation subsets).
        names: the faces' identifiers.
        input_size: side ``S`` of the central network-input window.
        context_size: side ``C`` of each crop.
    """

    def __init__(
        self, faces: FaceSet, input_size: int, crop_scale: float, context_scale: float
    ) -> None:
        if context_scale < 1.0:
            raise ValueError(f"data.context_scale must be >= 1, got {context_scale}")
        context_size = input_size + 2 * round(input_size * (context_scale - 1.0) / 2.0)
        centre_crop_offset(context_size, input_size)
        self.input_size = input_size
        self.context_size = context_size
        n, num_points = len(faces), faces.num_points
        self.images = np.empty((n, context_size, context_size, 3), dtype=np.uint8)
        self.landmarks = np.empty((n, num_points, 2), dtype=np.float32)
        self.visibility = faces.visibility.astype(bool)
        self.attributes = faces.attributes
        self.names = faces.names
        context_crop_scale = crop_scale * context_size / input_size
        for i in range(n):
            matrix = crop_matrix(faces.boxes[i], context_crop_scale, context_size)
            self.images[i] = warp_crop(faces.images[i], matrix, context_size)
            self.landmarks[i] = transform_points(faces.landmarks[i], matrix)

    def __len__(self) -> int:
        return len(self.images)

    def input_landmarks(self) -> np.ndarray:
        """``(N, L, 2)`` landmarks in network-input pixels of the un-augmented centre crop."""
        return self.landmarks - centre_crop_offset(self.context_size, self.input_size)


class FaceCropDataset(Dataset):
    """Samples of network-input size from context crops, augmented or centre-cropped.

    Each item is a dict with ``image`` ``(3, S, S)`` uint8, ``landmarks`` ``(L, 2)`` float32 in
    input pixels, ``visibility`` ``(L,)`` float32 and ``index`` (the face's index in the crops).

    Items are addressed as ``epoch * len(self) + position`` (plain positions are epoch 0): the
    augmentation of a sample is seeded with ``(seed, epoch, position)``, so it depends on
    nothing else (not the worker that loads it, nor whether training was resumed).

    Args:
        crops: the split's context crops.
        indices: ``(M,)`` face index of each dataset position (repeated faces appear repeatedly).
        augment: the training augmentation, or None for centre crops.
        seed: run seed for the augmentation.
    """

    def __init__(
        self,
        crops: ContextCrops,
        indices: np.ndarray,
        augment: TrainAugmentation | None = None,
        seed: int = 0,
    ) -> None:
        self.crops = crops
        self.indices = np.asarray(indices, dtype=np.int64)
        self.augment = augment
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.indices)

    def sample_seed(self, epoch: int, position: int) -> int:
        """The 32-bit augmentation seed of dataset ``position`` in ``epoch``."""
        state = np.random.SeedSequence([self.seed, epoch, position]).generate_state(1)
        return int(state[0])

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        epoch, position = divmod(int(item), len(self.indices))
        index = int(self.indices[position])
        image = self.crops.images[index]
        landmarks = self.crops.landmarks[index]
        visibility = self.crops.visibility[index]
        if self.augment is not None:
            self.augment.reseed(self.sample_seed(epoch, position))
            image, landmarks, visibility = self.augment(image, landmarks, visibility)
        else:
            offset = centre_crop_offset(self.crops.context_size, self.crops.input_size)
            size = self.crops.input_size
            image = image[offset : offset + size, offset : offset + size]
            landmarks = landmarks - offset
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1),
            "landmarks": torch.from_numpy(np.asarray(landmarks, dtype=np.float32)),
            "visibility": torch.from_numpy(np.asarray(visibility, dtype=np.float32)),
            "index": torch.tensor(index, dtype=torch.int64),
        }
