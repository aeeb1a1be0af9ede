"""The two-stage CNN-6/7 cascade of the Wing loss paper.

Stage 1 (CNN-6, 64 px) localises the face on a downscaled copy of the input crop; its landmarks
only remove the in-plane rotation and re-centre the face: a new square crop, rotated so that
the eyes are level, is resampled from the full-resolution input; stage 2 (CNN-7, 128 px)
localises on it, and its landmarks are mapped back into the input frame.

Geometry conventions: 0-based pixels with pixel ``i``'s centre at ``i``; a crop transform is
``x = centre + s R(angle) (u - (side - 1) / 2)`` from crop pixels ``u`` to input pixels ``x``
(``s`` input pixels per crop pixel, ``R`` the rotation by ``angle`` radians).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from wingface.landmarks import get_scheme

STAGE2_TRAINING = ("predicted", "ground_truth")
"""How stage 2 is trained (``model.stage2_training``)."""


@dataclass
class CropTransform:
    """A batch of similarity transforms from a square crop into the input frame.

    Attributes:
        centre: ``(B, 2)`` input pixels the crop centre maps to.
        angle: ``(B,)`` radians; the crop's x axis points along ``(cos, sin)`` in the input.
        scale: ``(B,)`` input pixels per crop pixel.
        side: crop side in pixels.
    """

    centre: torch.Tensor
    angle: torch.Tensor
    scale: torch.Tensor
    side: int

    def _rotation(self) -> torch.Tensor:
        cos, sin = torch.cos(self.angle), torch.sin(self.angle)
        return torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)

    def to_input(self, points: torch.Tensor) -> torch.Tensor:
        """``(B, L, 2)`` crop pixels → input pixels."""
        offsets = (points - (self.side - 1) / 2.0) * self.scale[:, None, None]
        return self.centre[:, None, :] + offsets @ self._rotation().transpose(1, 2)

    def to_crop(self, points: torch.Tensor) -> torch.Tensor:
        """``(B, L, 2)`` input pixels → crop pixels (the inverse of :meth:`to_input`)."""
        offsets = (points - self.centre[:, None, :]) @ self._rotation()
        return offsets / self.scale[:, None, None] + (self.side - 1) / 2.0

    def sample(self, images: torch.Tensor) -> torch.Tensor:
        """Resample ``(B, C, H, W)`` input images into ``(B, C, side, side)`` crops (bilinear,
        zeros outside the input)."""
        height, width = images.shape[-2:]
        grid_1d = torch.arange(self.side, device=images.device, dtype=images.dtype)
        v, u = torch.meshgrid(grid_1d, grid_1d, indexing="ij")
        crop_points = torch.stack([u, v], -1).reshape(1, -1, 2).expand(len(images), -1, -1)
        points = self.to_input(crop_points.to(self.centre.dtype)).to(images.dtype)
        size = torch.tensor([width, height], device=images.device, dtype=images.dtype)
        grid = (2.0 * points + 1.0) / size - 1.0  # align_corners=False pixel-centre convention
        grid = grid.view(len(images), self.side, self.side, 2)
        return F.grid_sample(
            images, grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )


def upright_crop(
    landmarks: torch.Tensor,
    right_eye: list[int],
    left_eye: list[int],
    side: int,
    crop_scale: float,
) -> CropTransform:
    """The crop that levels the eyes and holds the landmarks with a margin.

    The angle is that of the line from the centroid of the ``right_eye`` points (image left in a
    frontal face) to the centroid of the ``left_eye`` points; the centre is the middle of the
    landmarks' bounding box in the rotated frame and the crop side ``crop_scale`` times its
    longer side.

    Args:
        landmarks: ``(B, L, 2)`` input pixels.
        right_eye, left_eye: landmark indices of the two eyes.
        side: crop side in pixels.
        crop_scale: crop side as a multiple of the rotated landmark box's longer side.
    """
    eye_a = landmarks[:, right_eye].mean(dim=1)
    eye_b = landmarks[:, left_eye].mean(dim=1)
    delta = eye_b - eye_a
    angle = torch.atan2(delta[:, 1], delta[:, 0])
    unit = CropTransform(torch.zeros_like(eye_a), angle, torch.ones_like(angle), 1)
    rotated = unit.to_crop(landmarks)  # coordinates along the eye line and across it
    low, high = rotated.amin(dim=1), rotated.amax(dim=1)
    centre = unit.to_input(((low + high) / 2.0)[:, None, :])[:, 0]
    extent = (high - low).amax(dim=1).clamp_min(1e-3)
    return CropTransform(centre, angle, crop_scale * extent / side, side)


def jittered(
    transform: CropTransform, rotation_deg: float, scale: float, shift: float
) -> CropTransform:
    """``transform`` with uniform random rotation (±deg), scale (±fraction) and shift (±fraction
    of the crop side) per face: the stronger augmentation for training stage 2 on
    ground-truth crops."""
    batch = len(transform.angle)
    device, dtype = transform.angle.device, transform.angle.dtype

    def uniform(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, device=device, dtype=dtype) * 2.0 - 1.0

    angle = transform.angle + uniform(batch) * math.radians(rotation_deg)
    factor = transform.scale * (1.0 + uniform(batch) * scale)
    offset = uniform(batch, 2) * shift * transform.side * transform.scale[:, None]
    return CropTransform(transform.centre + offset, angle, factor, transform.side)


class CascadeRegressor(nn.Module):
    """Two-stage cascade: stage 1 on the downscaled input, stage 2 on an upright re-crop.

    Args:
        num_points: landmarks ``L``.
        input_size: side of the input crop (``model.input_size``; the data crops to it); stage
            2 resamples its crop from it.
        scheme: landmark scheme (``data.scheme``), for the eye points that level the face.
        stage1: the first network (CNN-6; its own ``input_size``, e.g. 64).
        stage2: the second network (CNN-7; its own ``input_size``, e.g. 128).
        crop_scale: stage-2 crop side / longer side of the stage-1 landmarks' upright box.
        stage2_training: ``"predicted"`` trains stage 2 on crops made from stage 1's (detached)
            predictions, exactly as at test time; ``"ground_truth"`` on crops made from the
            ground-truth landmarks with random jitter (``jitter_rotation`` degrees,
            ``jitter_scale`` and ``jitter_shift`` fractions).

    Shapes:
        input ``(B, 3, S, S)`` normalised float, output ``(B, L, 2)`` input pixels.
    """

    def __init__(
        self,
        num_points: int,
        input_size: int,
        scheme: str,
        stage1: nn.Module,
        stage2: nn.Module,
        crop_scale: float = 1.2,
        stage2_training: str = "predicted",
        jitter_rotation: float = 10.0,
        jitter_scale: float = 0.05,
        jitter_shift: float = 0.03,
    ) -> None:
        super().__init__()
        if stage2_training not in STAGE2_TRAINING:
            raise ValueError(
                f"model.stage2_training: expected one of {list(STAGE2_TRAINING)}, "
                f"got {stage2_training!r}"
            )
        if not crop_scale > 0:
            raise ValueError(f"model.crop_scale must be > 0, got {crop_scale}")
        for name, stage in (("model.stage1", stage1), ("model.stage2", stage2)):
            if stage.num_points != num_points:
                raise ValueError(f"{name} predicts {stage.num_points} points, not {num_points}")
        self.num_points = num_points
        self.input_size = input_size
        landmark_scheme = get_scheme(scheme)
        self.right_eye = list(landmark_scheme.right_eye)
        self.left_eye = list(landmark_scheme.left_eye)
        self.stage1 = stage1
        self.stage2 = stage2
        self.crop_scale = float(crop_scale)
        self.stage2_training = stage2_training
        self.jitter = (float(jitter_rotation), float(jitter_scale), float(jitter_shift))

    def _stage1(self, images: torch.Tensor) -> tuple[torch.Tensor, float]:
        """Stage-1 landmarks in its own pixels and the input pixels per stage-1 pixel."""
        size = self.stage1.input_size
        small = F.interpolate(
            images, size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )
        return self.stage1(small), self.input_size / size

    @staticmethod
    def _coarse(stage1: torch.Tensor, factor: float) -> torch.Tensor:
        """Stage-1 landmarks (detached) from stage-1 pixels to input pixels."""
        return (stage1.detach() + 0.5) * factor - 0.5

    def _stage2(self, images: torch.Tensor, crop: CropTransform) -> torch.Tensor:
        return self.stage2(crop.sample(images))

    def _crop(self, landmarks: torch.Tensor) -> CropTransform:
        side = self.stage2.input_size
        return upright_crop(landmarks, self.right_eye, self.left_eye, side, self.crop_scale)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Map ``(B, 3, S, S)`` images to ``(B, L, 2)`` input pixels (stage 2's result)."""
        stage1, factor = self._stage1(images)
        crop = self._crop(self._coarse(stage1, factor))
        return crop.to_input(self._stage2(images, crop))

    def stage_outputs(
        self, images: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """Training outputs: the final prediction and each stage's ``(prediction, target)``.

        Args:
            images: ``(B, 3, S, S)`` normalised images.
            target: ``(B, L, 2)`` ground-truth input pixels.

        Returns:
            ``(final (B, L, 2) input pixels, [(stage-1 pred, target) in stage-1 pixels,
            (stage-2 pred, target) in stage-2 crop pixels]``: each stage's loss is taken in its
            own input pixels, the units its loss constants are meant for.
        """
        stage1, factor = self._stage1(images)
        target1 = (target + 0.5) / factor - 0.5
        if self.training and self.stage2_training == "ground_truth":
            crop = jittered(self._crop(target), *self.jitter)
        else:
            crop = self._crop(self._coarse(stage1, factor))
        stage2 = self._stage2(images, crop)
        final = crop.to_input(stage2)
        return final, [(stage1, target1), (stage2, crop.to_crop(target))]
