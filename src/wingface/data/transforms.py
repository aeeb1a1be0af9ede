"""Face crops and training augmentation.

Pixel convention: 0-based coordinates with the centre of pixel ``i`` at ``i``; an image of width
``W`` spans ``[-0.5, W - 0.5]``. OpenCV's ``warpAffine`` uses the same convention, so a point
``p`` maps to ``M @ [p, 1]`` exactly when the image is warped by ``M``.

A face is cropped once into a square *context crop* whose central window is the network input;
the context lets rotations and shifts bring real image content into view instead of empty
borders. Training samples are then drawn from the context crop: optional horizontal flip with
landmark re-indexing, an albumentations affine (rotation, scale, shift) about the crop centre,
a centre crop to the input size and colour jitter. A context crop may be stored at
``oversample`` pixels per input pixel (``data.context_oversample``): the affine then also
shrinks it to the input's resolution, so an augmented face is resampled once at input
resolution, as sharp as an evaluation crop (which is warped from the photo directly), instead
of being interpolated a second time.
The same augmentation for whole batches on the batch's device is
:class:`wingface.data.gpu_augment.BatchAugmentation` (``augment=gpu``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar

import cv2
import numpy as np


def crop_matrix(box: np.ndarray, crop_scale: float, out_size: int) -> np.ndarray:
    """Affine ``(2, 3)`` matrix mapping image pixels to a square crop around a face box.

    The crop is centred on the box centre, its side is ``crop_scale * max(box w, box h)`` image
    pixels and it is resampled to ``out_size`` pixels.

    Args:
        box: ``(4,)`` ``(x0, y0, x1, y1)`` in image pixels.
        crop_scale: crop side as a multiple of the longer box side.
        out_size: side of the output crop in pixels.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    side = crop_scale * max(x1 - x0, y1 - y0)
    if not side > 0:
        raise ValueError(f"face box {tuple(box)} has no extent")
    scale = out_size / side
    centre_x, centre_y = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    # The crop's left edge (centre_x - side/2) maps to the output's left edge at -0.5.
    return np.array(
        [
            [scale, 0.0, (out_size - 1) / 2.0 - scale * centre_x],
            [0.0, scale, (out_size - 1) / 2.0 - scale * centre_y],
        ],
        dtype=np.float64,
    )


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply an affine ``(2, 3)`` matrix to ``(L, 2)`` points; returns float32 ``(L, 2)``."""
    return (points @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)


def warp_crop(image: np.ndarray, matrix: np.ndarray, out_size: int) -> np.ndarray:
    """Resample ``image`` ``(H, W, 3)`` uint8 through ``matrix`` into a square ``out_size`` crop."""
    return cv2.warpAffine(
        image,
        matrix,
        (out_size, out_size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )


def horizontal_flip(
    image: np.ndarray,
    landmarks: np.ndarray,
    visibility: np.ndarray,
    flip_permutation: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mirror a face left-right and re-index its landmarks.

    Args:
        image: ``(H, W, 3)`` array.
        landmarks: ``(L, 2)`` pixels.
        visibility: ``(L,)`` mask.
        flip_permutation: ``(L,)``; flipped point ``i`` is original point ``flip_permutation[i]``.

    Returns:
        The mirrored image, landmarks (``x -> W - 1 - x``) and visibility.
    """
    width = image.shape[1]
    flipped = landmarks[flip_permutation].copy()
    flipped[:, 0] = (width - 1) - flipped[:, 0]
    return np.ascontiguousarray(image[:, ::-1]), flipped, visibility[flip_permutation]


def centre_crop_offset(context_size: int, input_size: int) -> int:
    """Pixel offset of the central ``input_size`` window in a ``context_size`` crop."""
    if (context_size - input_size) % 2 or context_size < input_size:
        raise ValueError(
            f"context crop of {context_size} px cannot be centre-cropped to {input_size} px"
        )
    return (context_size - input_size) // 2


def check_oversample(oversample: int) -> int:
    """``data.context_oversample``, checked: a whole number >= 1 (else a ValueError naming it)."""
    if isinstance(oversample, bool) or not isinstance(oversample, int) or oversample < 1:
        raise ValueError(f"data.context_oversample must be a whole number >= 1, got {oversample!r}")
    return oversample


def context_side_in_input_pixels(context_size: int, input_size: int, oversample: int) -> int:
    """The side, in network-input pixels, of a context crop of ``context_size`` pixels stored
    at ``oversample`` pixels per input pixel (``data.context_oversample``).

    Raises:
        ValueError: ``oversample`` is not a whole number >= 1, or the crop is not ``oversample``
            times a whole number of input pixels with a central ``input_size`` window.
    """
    check_oversample(oversample)
    side, remainder = divmod(context_size, oversample)
    if remainder:
        raise ValueError(
            f"context crop of {context_size} px is not {oversample} (data.context_oversample) "
            f"times a whole number of input pixels"
        )
    centre_crop_offset(side, input_size)
    return side


@dataclass(frozen=True)
class AugmentOptions:
    """The ``augment.*`` options of both augmentation paths (:class:`TrainAugmentation` in the
    loader workers, :class:`~wingface.data.gpu_augment.BatchAugmentation` on the batch's
    device), with the defaults of ``conf/augment/default.yaml`` and ``gpu.yaml``.

    Attributes:
        rotate: maximum in-plane rotation in degrees (uniform in ``[-rotate, rotate]``).
        scale: maximum relative scale change (uniform in ``[1 - scale, 1 + scale]``), < 1.
        keep_ratio: one scale factor for both axes, so faces keep their aspect ratio; false
            draws the x and y factors independently (albumentations' ``Affine`` default).
        shift: maximum shift as a fraction of the input size, per axis.
        flip_prob: probability of a horizontal flip (landmarks re-indexed).
        brightness, contrast, saturation: colour jitter strengths (0 disables).
        hue: hue jitter in ``[0, 0.5]``.
        blur_prob: probability of a Gaussian blur (kernel of :attr:`BLUR_KERNEL` pixels).
        occlusion_prob: probability of one random rectangular occluder (sides
            :attr:`OCCLUDER_SIDE` of the input side, per axis).

    Raises:
        ValueError: naming the ``augment.<key>``, its value and the allowed range.
    """

    BLUR_KERNEL: ClassVar[tuple[int, int]] = (3, 5)
    """Smallest and largest Gaussian blur kernel, pixels (odd sizes)."""
    OCCLUDER_SIDE: ClassVar[tuple[float, float]] = (0.15, 0.4)
    """Range of an occluder's side as a fraction of the input side."""

    rotate: float = 30.0
    scale: float = 0.1
    keep_ratio: bool = False
    shift: float = 0.05
    flip_prob: float = 0.5
    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.3
    hue: float = 0.05
    blur_prob: float = 0.1
    occlusion_prob: float = 0.2

    def __post_init__(self) -> None:
        for key in ("rotate", "scale", "shift", "brightness", "contrast", "saturation"):
            value = getattr(self, key)
            if not value >= 0:
                raise ValueError(f"augment.{key} must be >= 0, got {value}")
        for key in ("flip_prob", "blur_prob", "occlusion_prob"):
            value = getattr(self, key)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"augment.{key} must be in [0, 1], got {value}")
        if not isinstance(self.keep_ratio, bool):
            raise ValueError(f"augment.keep_ratio must be true or false, got {self.keep_ratio!r}")
        if self.scale >= 1.0:
            raise ValueError(f"augment.scale must be < 1, got {self.scale}")
        if not 0.0 <= self.hue <= 0.5:
            raise ValueError(f"augment.hue must be in [0, 0.5], got {self.hue}")

    @classmethod
    def of(cls, options: dict[str, float | bool]) -> AugmentOptions:
        """The options from ``augment.*`` keyword arguments; an unknown key is an error that
        names it and the known ones."""
        unknown = sorted(set(options) - {f.name for f in fields(cls)})
        if unknown:
            known = ", ".join(f.name for f in fields(cls))
            raise ValueError(f"augment.{unknown[0]} is not an augmentation option ({known})")
        return cls(**options)


class TrainAugmentation:
    """Random flip, affine and colour augmentation of context crops (albumentations).

    Args:
        input_size: network input side in pixels.
        context_size: side of the context crops it receives, in their own pixels.
        flip_permutation: ``(L,)`` landmark re-indexing for horizontal flips.
        oversample: context-crop pixels per input pixel (``data.context_oversample``); the
            affine's scale is divided by it, so its output is at input resolution.
        options: the ``augment.*`` options, see :class:`AugmentOptions`.
    """

    def __init__(
        self,
        input_size: int,
        context_size: int,
        flip_permutation: np.ndarray,
        oversample: int = 1,
        **options: float | bool,
    ) -> None:
        # albumentations is imported here, not with the module: the batched path
        # (augment=gpu) and evaluation work without it.
        import albumentations as A

        self.options = o = AugmentOptions.of(options)
        context_side_in_input_pixels(context_size, input_size, oversample)  # validates sizes
        centre_crop_offset(context_size, input_size)  # the affine's output is centre-cropped
        self.flip_permutation = np.asarray(flip_permutation, dtype=np.int64)
        self._rng = np.random.default_rng()
        # the affine's output keeps the context crop's side, at input resolution: a shift of
        # o.shift input sides is this fraction of it
        shift_fraction = o.shift * input_size / context_size
        self.compose = A.Compose(
            [
                A.Affine(
                    scale=((1.0 - o.scale) / oversample, (1.0 + o.scale) / oversample),
                    keep_ratio=o.keep_ratio,
                    translate_percent=(-shift_fraction, shift_fraction),
                    rotate=(-o.rotate, o.rotate),
                    interpolation=cv2.INTER_LINEAR,
                    border_mode=cv2.BORDER_CONSTANT,
                    fill=0,
                    p=1.0,
                ),
                A.CenterCrop(input_size, input_size),
                A.ColorJitter(
                    brightness=o.brightness,
                    contrast=o.contrast,
                    saturation=o.saturation,
                    hue=o.hue,
                    p=1.0 if max(o.brightness, o.contrast, o.saturation, o.hue) > 0 else 0.0,
                ),
                A.GaussianBlur(blur_limit=o.BLUR_KERNEL, p=o.blur_prob),
                # A random grey-to-colour block over part of the face; landmarks keep their
                # positions (the network must infer occluded points, as on COFW).
                A.CoarseDropout(
                    num_holes_range=(1, 1),
                    hole_height_range=o.OCCLUDER_SIDE,
                    hole_width_range=o.OCCLUDER_SIDE,
                    fill="random_uniform",
                    p=o.occlusion_prob,
                ),
            ],
            keypoint_params=A.KeypointParams(format="xy", remove_invisible=False),
        )

    def reseed(self, seed: int) -> None:
        """Reseed the flip and albumentations generators (the dataset does it per sample)."""
        self._rng = np.random.default_rng(seed)
        self.compose.set_random_seed(seed)

    def __call__(
        self, image: np.ndarray, landmarks: np.ndarray, visibility: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Augment one ``(C, C, 3)`` uint8 context crop with ``(L, 2)`` landmarks in its pixels.

        Returns the ``(S, S, 3)`` input image, its ``(L, 2)`` float32 landmarks and ``(L,)``
        visibility.
        """
        if self._rng.random() < self.options.flip_prob:
            image, landmarks, visibility = horizontal_flip(
                image, landmarks, visibility, self.flip_permutation
            )
        out = self.compose(image=image, keypoints=landmarks)
        return out["image"], np.asarray(out["keypoints"], dtype=np.float32), visibility


def no_augmentation(
    input_size: int, context_size: int, flip_permutation: np.ndarray, oversample: int = 1
) -> None:
    """The training augmentation of ``augment=none``: none (the data module then serves the
    un-augmented centre crops, on either path). Takes the arguments every augmentation
    factory receives."""
    del input_size, context_size, flip_permutation, oversample
    return None
