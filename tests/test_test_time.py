"""Test-time averaging over mirrored and whole-pixel-shifted inputs (``wingface.test_time``)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from wingface.landmarks import get_scheme
from wingface.models.cnn import LandmarkCNN
from wingface.module import LandmarkModule
from wingface.test_time import (
    averaged_prediction,
    shift_images,
    unflip_points,
    whole_pixel_shifts,
)

FLIP = torch.from_numpy(get_scheme("300w").flip_array())


def _blob(size: int, x: float, y: float) -> torch.Tensor:
    """``(1, 3, size, size)`` float image of a Gaussian blob centred on ``(x, y)``."""
    yy, xx = torch.meshgrid(torch.arange(float(size)), torch.arange(float(size)), indexing="ij")
    blob = torch.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 2.0**2)) * 255
    return blob.expand(1, 3, size, size).clone()


def _centroid(images: torch.Tensor) -> torch.Tensor:
    """``(B, 68, 2)``: every landmark at the intensity centroid of channel 0, a predictor that
    moves exactly with the image."""
    weights = images[:, 0].double()
    height, width = weights.shape[-2:]
    ys = torch.arange(height, dtype=torch.float64)[:, None]
    xs = torch.arange(width, dtype=torch.float64)[None, :]
    total = weights.sum((1, 2))
    sums = torch.stack([(weights * xs).sum((1, 2)), (weights * ys).sum((1, 2))], -1)
    centre = sums / total[:, None]
    return centre[:, None].expand(-1, 68, 2).float()


def test_whole_pixel_shifts_cover_the_square_unmoved_first() -> None:
    assert whole_pixel_shifts(0) == [(0, 0)]
    shifts = whole_pixel_shifts(2)
    assert shifts[0] == (0, 0) and len(shifts) == 25 == len(set(shifts))
    assert {abs(dx) for dx, _ in shifts} == {0, 1, 2} == {abs(dy) for _, dy in shifts}
    for bad in (-1, 1.5, True, "1"):
        with pytest.raises(ValueError, match=r"test_time_shift must be a whole number"):
            whole_pixel_shifts(bad)


@pytest.mark.parametrize("dx,dy", [(1, 0), (0, -1), (2, 1), (-3, 2)])
def test_shift_images_moves_content_by_whole_pixels(dx: int, dy: int) -> None:
    image = _blob(32, 15.3, 16.6)
    moved = shift_images(image, dx, dy)
    torch.testing.assert_close(
        _centroid(moved)[0, 0], torch.tensor([15.3 + dx, 16.6 + dy]), atol=1e-3, rtol=0
    )
    # an independent reference: pad with zeros, then cut the window out
    padded = F.pad(image, (3, 3, 3, 3))
    reference = padded[..., 3 - dy : 3 - dy + 32, 3 - dx : 3 - dx + 32]
    torch.testing.assert_close(moved, reference)
    with pytest.raises(ValueError, match=r"moves a 32x32 image out of view"):
        shift_images(image, 32, 0)


@pytest.mark.parametrize("flip", [False, True])
def test_averaging_an_equivariant_predictor_changes_nothing(flip: bool) -> None:
    """A predictor that moves and mirrors exactly with the image (the blob's centroid, for a
    scheme-symmetric set of points) gives the same landmarks averaged or not."""
    images = torch.cat([_blob(32, 14.2, 17.7), _blob(32, 18.0, 12.5)])
    plain = _centroid(images)
    averaged = averaged_prediction(_centroid, images, FLIP, flip=flip, shift_radius=2)
    torch.testing.assert_close(averaged, plain, atol=1e-3, rtol=0)


def _module(**options: bool | int) -> LandmarkModule:
    torch.manual_seed(0)
    net = LandmarkCNN(68, 64, [8, 16, 32, 64, 64], fc_dim=64)
    torch.nn.init.normal_(net.head[-1].weight, std=0.01)  # a non-trivial output
    return LandmarkModule(net, torch.nn.L1Loss(), torch.optim.SGD, None, **options)


def test_module_averages_the_shifted_and_mirrored_passes_outside_training() -> None:
    """``test_time_shift=1`` with ``test_time_flip``: the mean of the 18 passes (9 whole-pixel
    moves, each also mirrored), each mapped back; training keeps the plain prediction, and
    ``test_time_shift=0`` with the flip is the flip average as before."""
    plain = _module().eval()
    both = _module(test_time_flip=True, test_time_shift=1).eval()
    flip_only = _module(test_time_flip=True).eval()
    images = torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        expected = []
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                padded = F.pad(images, (1, 1, 1, 1))
                moved = padded[..., 1 - dy : 65 - dy, 1 - dx : 65 - dx]
                back = torch.tensor([float(dx), float(dy)])
                expected.append(plain(moved) - back)
                expected.append(unflip_points(plain(moved.flip(-1)), FLIP, 64) - back)
        torch.testing.assert_close(both(images), torch.stack(expected).mean(0))
        mirrored = unflip_points(plain(images.flip(-1)), FLIP, 64)
        torch.testing.assert_close(flip_only(images), (plain(images) + mirrored) / 2)
        both.train()
        torch.testing.assert_close(both(images), plain(images))
    with pytest.raises(ValueError, match=r"test_time_shift must be a whole number .* got -1"):
        _module(test_time_shift=-1)
