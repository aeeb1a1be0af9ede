"""Crops, flips and the albumentations augmentation keep images and landmarks together."""

from __future__ import annotations

from dataclasses import fields

import cv2
import numpy as np
import pytest
from omegaconf import OmegaConf

from wingface.config import CONFIG_DIR
from wingface.data.transforms import (
    AugmentOptions,
    TrainAugmentation,
    centre_crop_offset,
    crop_matrix,
    horizontal_flip,
    transform_points,
    warp_crop,
)
from wingface.landmarks import IBUG68


def blob_image(size: int, point: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    """A ``(size, size, 3)`` uint8 image with a Gaussian blob centred on ``point`` (x, y)."""
    yy, xx = np.mgrid[0:size, 0:size]
    blob = np.exp(-((xx - point[0]) ** 2 + (yy - point[1]) ** 2) / (2 * sigma**2))
    image = np.zeros((size, size, 3), dtype=np.uint8)
    image[..., 0] = np.round(blob * 255).astype(np.uint8)
    return image


def blob_centre(image: np.ndarray) -> np.ndarray:
    """Intensity-weighted centroid (x, y) of channel 0, above a small threshold."""
    weights = image[..., 0].astype(np.float64)
    weights[weights < 20] = 0
    yy, xx = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
    return np.array([(weights * xx).sum(), (weights * yy).sum()]) / weights.sum()


def test_crop_matrix_maps_box_edges_to_crop_edges() -> None:
    box = np.array([10.0, 20.0, 50.0, 40.0])  # 40 x 20, centre (30, 30)
    matrix = crop_matrix(box, crop_scale=1.5, out_size=64)
    # side = 60 px, so the crop spans x in [0, 60] image edge coordinates
    corners = np.array([[0.0, 0.0], [60.0, 60.0], [30.0, 30.0]])
    mapped = transform_points(corners, matrix)
    np.testing.assert_allclose(mapped[0], [-0.5, -0.5], atol=1e-5)
    np.testing.assert_allclose(mapped[1], [63.5, 63.5], atol=1e-5)
    np.testing.assert_allclose(mapped[2], [31.5, 31.5], atol=1e-5)


def test_warp_crop_moves_pixels_like_points() -> None:
    rng = np.random.default_rng(0)
    for _ in range(5):
        point = rng.uniform(40, 80, size=2)
        image = blob_image(128, point, sigma=3.0)
        box = np.array([30.0, 35.0, 90.0, 85.0])
        matrix = crop_matrix(box, crop_scale=1.3, out_size=64)
        crop = warp_crop(image, matrix, 64)
        expected = transform_points(point[None], matrix)[0]
        np.testing.assert_allclose(blob_centre(crop), expected, atol=0.1)


def test_crop_matrix_rejects_empty_box() -> None:
    with pytest.raises(ValueError, match="no extent"):
        crop_matrix(np.array([5.0, 5.0, 5.0, 5.0]), 1.2, 64)


def test_flip_twice_is_identity() -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, size=(40, 50, 3), dtype=np.uint8)
    points = rng.uniform(0, 40, size=(68, 2)).astype(np.float32)
    visibility = rng.random(68) > 0.3
    perm = IBUG68.flip_array()
    once = horizontal_flip(image, points, visibility, perm)
    twice = horizontal_flip(*once, perm)
    np.testing.assert_array_equal(twice[0], image)
    np.testing.assert_allclose(twice[1], points, atol=1e-5)
    np.testing.assert_array_equal(twice[2], visibility)


def test_flip_permutation_is_an_involution_pairing_left_and_right() -> None:
    perm = IBUG68.flip_array()
    np.testing.assert_array_equal(perm[perm], np.arange(68))
    assert perm[36] == 45 and perm[0] == 16 and perm[48] == 54 and perm[8] == 8
    assert set(perm[list(IBUG68.right_eye)]) == set(IBUG68.left_eye)


def test_flip_moves_the_pixel_under_each_landmark() -> None:
    point = np.array([[12.0, 20.0]])
    image = blob_image(48, point[0])
    flipped_image, flipped_point, _ = horizontal_flip(image, point, np.ones(1, bool), np.array([0]))
    np.testing.assert_allclose(blob_centre(flipped_image), flipped_point[0], atol=0.05)
    np.testing.assert_allclose(flipped_point[0], [35.0, 20.0])


@pytest.mark.parametrize("oversample", [1, 2, 3])
def test_augmentation_moves_image_and_landmarks_identically(oversample: int) -> None:
    """Also with context crops stored at ``oversample`` pixels per input pixel, shrunk to the
    input's resolution by the affine."""
    rng = np.random.default_rng(2)
    context = 80 * oversample
    augment = TrainAugmentation(
        input_size=64,
        context_size=context,
        oversample=oversample,
        flip_permutation=np.array([0]),
        flip_prob=0.5,
        brightness=0.0,
        contrast=0.0,
        saturation=0.0,
        hue=0.0,
        blur_prob=0.0,
        occlusion_prob=0.0,
    )
    augment.reseed(3)
    for _ in range(20):
        point = rng.uniform(28, 52, size=(1, 2)).astype(np.float32)
        point = (point + 0.5) * oversample - 0.5  # the same place, in context-crop pixels
        out_image, out_points, _ = augment(
            blob_image(context, point[0], sigma=2.0 * oversample), point, np.ones(1, bool)
        )
        assert out_image.shape == (64, 64, 3)
        np.testing.assert_allclose(blob_centre(out_image), out_points[0], atol=0.15)


def test_augmentation_keeps_points_outside_the_crop() -> None:
    points = np.full((68, 2), 40.0, dtype=np.float32)
    points[0] = [2.0, 3.0]  # outside the central 64 px window of the 80 px context crop
    image = np.zeros((80, 80, 3), dtype=np.uint8)
    visibility = np.ones(68, bool)
    identity = TrainAugmentation(
        64, 80, IBUG68.flip_array(), rotate=0, scale=0, shift=0, flip_prob=0.0
    )
    _, out_points, out_visibility = identity(image, points, visibility)
    np.testing.assert_allclose(out_points[0], [-6.0, -5.0], atol=1e-4)
    np.testing.assert_allclose(out_points[1:], 32.0, atol=1e-4)
    assert out_visibility.shape == (68,)
    mirror = TrainAugmentation(
        64, 80, IBUG68.flip_array(), rotate=0, scale=0, shift=0, flip_prob=1.0
    )
    _, flipped_points, _ = mirror(image, points, visibility)
    # point 0 (jaw, image left) becomes point 16 at x = 79 - 2 - 8 after the flip and crop
    np.testing.assert_allclose(flipped_points[16], [69.0, -5.0], atol=1e-4)


def test_augmentation_is_reproducible_after_reseed() -> None:
    augment = TrainAugmentation(64, 80, IBUG68.flip_array())
    rng = np.random.default_rng(4)
    image = rng.integers(0, 255, size=(80, 80, 3), dtype=np.uint8)
    points = rng.uniform(20, 60, size=(68, 2)).astype(np.float32)
    visibility = np.ones(68, bool)
    augment.reseed(7)
    first = augment(image, points, visibility)
    augment.reseed(7)
    second = augment(image, points, visibility)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])


def test_invalid_augmentation_values_name_the_key() -> None:
    with pytest.raises(ValueError, match="augment.rotate"):
        TrainAugmentation(64, 80, IBUG68.flip_array(), rotate=-1)
    with pytest.raises(ValueError, match="augment.flip_prob"):
        TrainAugmentation(64, 80, IBUG68.flip_array(), flip_prob=2)
    with pytest.raises(ValueError, match="cannot be centre-cropped"):
        centre_crop_offset(81, 64)


def test_occlusion_covers_pixels_but_keeps_landmarks() -> None:
    rng = np.random.default_rng(5)
    image = np.full((80, 80, 3), 128, dtype=np.uint8)
    points = rng.uniform(20, 60, size=(68, 2)).astype(np.float32)
    still = dict.fromkeys(["rotate", "scale", "shift", "flip_prob", "brightness", "contrast"], 0)
    occlude = TrainAugmentation(
        64, 80, IBUG68.flip_array(), **still, saturation=0, hue=0, blur_prob=0, occlusion_prob=1.0
    )
    occlude.reseed(1)
    out_image, out_points, _ = occlude(image, points, np.ones(68, bool))
    np.testing.assert_allclose(out_points, points - 8, atol=1e-4)
    changed = (out_image != image[8:72, 8:72]).any(axis=2).mean()
    low, high = AugmentOptions.OCCLUDER_SIDE
    assert low**2 <= changed <= high**2 + 0.01


def test_crop_round_trip_returns_every_point_to_its_pixel() -> None:
    """Crop with a matrix, map the crop back with its inverse: points and blobs return."""
    rng = np.random.default_rng(6)
    point = rng.uniform(50, 70, size=2)
    image = blob_image(120, point, sigma=2.5)
    matrix = crop_matrix(np.array([35.0, 40.0, 85.0, 95.0]), 1.2, 96)
    inverse = cv2.invertAffineTransform(matrix)
    crop = warp_crop(image, matrix, 96)
    crop_point = transform_points(point[None], matrix)
    np.testing.assert_allclose(transform_points(crop_point, inverse)[0], point, atol=1e-5)
    back = cv2.warpAffine(crop, inverse, (120, 120), flags=cv2.INTER_LINEAR)
    np.testing.assert_allclose(blob_centre(back), point, atol=0.15)


def test_augment_options_defaults_are_the_configs_and_unknown_keys_are_named() -> None:
    """``AugmentOptions``' defaults are the values of both augmentation configs (one source
    for both paths), and an unknown ``augment.*`` key names itself."""
    defaults = {f.name: f.default for f in fields(AugmentOptions)}
    for option in ("default", "gpu"):
        cfg = OmegaConf.load(CONFIG_DIR / "augment" / f"{option}.yaml")
        values = {k: v for k, v in cfg.items() if k in defaults}
        assert values == defaults, option
    with pytest.raises(ValueError, match=r"augment\.rotation is not an augmentation option"):
        TrainAugmentation(64, 80, IBUG68.flip_array(), rotation=10)
