"""The two-stage cascade: crop geometry round trips, upright re-crops, resampling, training."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from wingface.landmarks import IBUG68
from wingface.models.cascade import CascadeRegressor, CropTransform, jittered, upright_crop
from wingface.models.cnn import LandmarkCNN

RIGHT_EYE, LEFT_EYE = list(IBUG68.right_eye), list(IBUG68.left_eye)


def faces(batch: int, seed: int = 0, size: float = 128.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, 68, 2)`` random face-like shapes turned in-plane by known angles (radians)."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(-1.0, 1.0, (68, 2)) * [0.6, 0.8]
    base[RIGHT_EYE] = np.add([-0.35, -0.2], rng.normal(0, 0.05, (6, 2)))
    base[LEFT_EYE] = np.add([0.35, -0.2], rng.normal(0, 0.05, (6, 2)))
    angles = rng.uniform(-0.8, 0.8, batch)
    cos, sin = np.cos(angles), np.sin(angles)
    rotation = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)
    scale = rng.uniform(0.2, 0.35, (batch, 1, 1)) * size
    centre = size / 2 + rng.uniform(-8.0, 8.0, (batch, 1, 2))
    shapes = centre + scale * base[None] @ rotation.transpose(0, 2, 1)
    return torch.tensor(shapes), torch.tensor(angles)


def test_crop_transform_round_trip() -> None:
    points, angles = faces(5)
    crop = CropTransform(points.mean(1), angles, torch.full((5,), 0.7, dtype=torch.float64), 96)
    torch.testing.assert_close(crop.to_input(crop.to_crop(points)), points)
    torch.testing.assert_close(crop.to_crop(crop.to_input(points)), points)


def test_upright_crop_levels_the_eyes_and_holds_the_face() -> None:
    points, angles = faces(8, seed=1)
    crop = upright_crop(points, RIGHT_EYE, LEFT_EYE, 128, 1.2)
    torch.testing.assert_close(
        torch.remainder(crop.angle - angles + math.pi, 2 * math.pi) - math.pi,
        torch.zeros(8, dtype=torch.float64),
        atol=0.1,
        rtol=0,
    )  # the eye line's angle (noise in the eye points: a few degrees)
    inside = crop.to_crop(points)
    eyes_dy = inside[:, LEFT_EYE, 1].mean(1) - inside[:, RIGHT_EYE, 1].mean(1)
    torch.testing.assert_close(eyes_dy, torch.zeros(8, dtype=torch.float64), atol=1e-9, rtol=0)
    low, high = inside.amin(1), inside.amax(1)
    assert (low > 0).all() and (high < 127).all()  # 1.2x margin: the whole face is inside
    longer = (high - low).amax(1)
    torch.testing.assert_close(longer, torch.full((8,), 128 / 1.2, dtype=torch.float64))
    # rotate, crop, map back: the identity on the ground truth
    torch.testing.assert_close(crop.to_input(inside), points)


def test_sampling_puts_image_content_where_the_transform_says() -> None:
    marker = torch.tensor([[[40.3, 90.6]]], dtype=torch.float64)
    y, x = torch.meshgrid(torch.arange(128.0), torch.arange(128.0), indexing="ij")
    blob = torch.exp(-((x - 40.3) ** 2 + (y - 90.6) ** 2) / (2 * 3.0**2))
    image = blob.double()[None, None]
    crop = CropTransform(
        torch.tensor([[60.0, 70.0]], dtype=torch.float64),
        torch.tensor([0.5], dtype=torch.float64),
        torch.tensor([0.8], dtype=torch.float64),
        96,
    )
    sampled = crop.sample(image)[0, 0]
    expected = crop.to_crop(marker)[0, 0]
    # the blob's centre of mass lands on the crop pixel the transform predicts
    v, u = torch.meshgrid(torch.arange(96.0), torch.arange(96.0), indexing="ij")
    weights = sampled / sampled.sum()
    found = torch.stack([(weights * u.double()).sum(), (weights * v.double()).sum()])
    torch.testing.assert_close(found, expected, atol=0.05, rtol=0)


def test_jitter_stays_within_its_ranges() -> None:
    points, _ = faces(256, seed=2)
    crop = upright_crop(points, RIGHT_EYE, LEFT_EYE, 128, 1.2)
    torch.manual_seed(0)
    moved = jittered(crop, 10.0, 0.05, 0.03)
    assert (moved.angle - crop.angle).abs().max() <= math.radians(10.0) + 1e-9
    assert ((moved.scale / crop.scale - 1).abs() <= 0.05 + 1e-9).all()
    shift = (moved.centre - crop.centre) / (crop.scale[:, None] * 128)
    assert shift.abs().max() <= 0.03 + 1e-9
    assert (moved.angle - crop.angle).abs().max() > math.radians(5)  # it does move


def _cascade(stage2_training: str = "predicted") -> CascadeRegressor:
    return CascadeRegressor(
        68,
        128,
        "300w",
        LandmarkCNN(68, 64, [8, 8, 8, 8, 8], fc_dim=32),
        LandmarkCNN(68, 128, [8, 8, 8, 8, 8, 8], fc_dim=32),
        stage2_training=stage2_training,
    )


@pytest.mark.parametrize("scheme", ["predicted", "ground_truth"])
def test_cascade_shapes_and_stage_targets(scheme: str) -> None:
    torch.manual_seed(0)
    net = _cascade(scheme).train()
    images = torch.randn(4, 3, 128, 128)
    target = faces(4, seed=3)[0].float()
    final, stages = net.stage_outputs(images, target)
    assert final.shape == (4, 68, 2) and len(stages) == 2
    (pred1, target1), (pred2, target2) = stages
    assert pred1.shape == target1.shape == pred2.shape == target2.shape == (4, 68, 2)
    torch.testing.assert_close(target1, (target + 0.5) / 2 - 0.5)  # stage-1 pixels (64 of 128)
    (sum(p.sum() for p, _ in stages)).backward()
    assert net.stage1.head[-1].weight.grad is not None
    assert net.stage2.head[-1].weight.grad is not None
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(net(images), net.stage_outputs(images, target)[0])


def test_cascade_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match=r"model\.stage2_training"):
        _cascade("oracle")
    with pytest.raises(ValueError, match=r"model\.stage2"):
        CascadeRegressor(
            68, 128, "300w", LandmarkCNN(68, 64, [8] * 5), LandmarkCNN(19, 128, [8] * 6)
        )
