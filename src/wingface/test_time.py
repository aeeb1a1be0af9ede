"""Test-time averaging of landmark predictions: mirrored inputs (``test_time_flip``) and inputs
moved by whole pixels (``test_time_shift``).

Each variant of an input is predicted, its prediction mapped back to the input's frame (mirror
undone and landmarks re-indexed, shift subtracted) and the variants averaged. Whole-pixel moves
need no resampling: the network sees exactly the input's pixels, displaced, with the uncovered
border filled with black (the value crops and augmentation give pixels outside a photo).
Pixel convention: pixel centres at integers, an ``S``-pixel image spans ``[-0.5, S - 0.5]``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def unflip_points(points: torch.Tensor, flip_permutation: torch.Tensor, width: int) -> torch.Tensor:
    """``(B, L, 2)`` landmarks predicted on horizontally mirrored ``width``-pixel images → the
    same landmarks on the original images: x mirrored about the image centre (pixel centres
    at integers, so ``x → width - 1 - x``) and points re-indexed (``flip_permutation[i]`` is the
    point that mirrors point ``i``)."""
    unflipped = points[:, flip_permutation]
    return torch.stack([(width - 1) - unflipped[..., 0], unflipped[..., 1]], dim=-1)


def whole_pixel_shifts(radius: int) -> list[tuple[int, int]]:
    """The ``(2 radius + 1)²`` moves ``(dx, dy)`` with ``|dx|, |dy| <= radius`` pixels, the
    unmoved ``(0, 0)`` first."""
    if not isinstance(radius, int) or isinstance(radius, bool) or radius < 0:
        raise ValueError(f"test_time_shift must be a whole number of pixels >= 0, got {radius!r}")
    span = range(-radius, radius + 1)
    return [(0, 0)] + [(dx, dy) for dy in span for dx in span if (dx, dy) != (0, 0)]


def shift_images(images: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """``(B, C, H, W)`` images with their content moved ``dx`` pixels right and ``dy`` down
    (a point at ``(x, y)`` lands on ``(x + dx, y + dy)``); the uncovered border is 0."""
    height, width = images.shape[-2:]
    if abs(dx) >= width or abs(dy) >= height:
        raise ValueError(f"a shift of ({dx}, {dy}) px moves a {width}x{height} image out of view")
    moved = torch.zeros_like(images)
    moved[..., max(dy, 0) : height + min(dy, 0), max(dx, 0) : width + min(dx, 0)] = images[
        ..., max(-dy, 0) : height + min(-dy, 0), max(-dx, 0) : width + min(-dx, 0)
    ]
    return moved


def averaged_prediction(
    predict: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    flip_permutation: torch.Tensor,
    flip: bool,
    shift_radius: int,
) -> torch.Tensor:
    """The mean of ``predict`` over the variants of ``images``, in the images' frame.

    Args:
        predict: ``(B, C, S, S)`` images → ``(B, L, 2)`` landmark pixels.
        images: ``(B, C, S, S)``.
        flip_permutation: ``(L,)`` landmark re-indexing of a horizontal mirror.
        flip: add the mirrored image of every variant (``test_time_flip``).
        shift_radius: every whole-pixel move up to this many pixels along each axis
            (``test_time_shift``; 0: none).

    Returns:
        ``(B, L, 2)``; ``(2 shift_radius + 1)² × (2 if flip else 1)`` predictions averaged.
    """
    width = images.shape[-1]
    predictions = []
    for dx, dy in whole_pixel_shifts(shift_radius):
        moved = shift_images(images, dx, dy) if (dx, dy) != (0, 0) else images
        prediction = predict(moved)
        back = prediction.new_tensor([dx, dy])
        predictions.append(prediction - back)
        if flip:
            mirrored = unflip_points(predict(moved.flip(-1)), flip_permutation, width)
            predictions.append(mirrored - back)
    return torch.stack(predictions).mean(0)
