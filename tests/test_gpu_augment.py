"""The batched augmentation (augment=gpu) against the albumentations path, and its data paths.

References are independent of the code under test: OpenCV/albumentations warps of the same
parameters, blobs rendered at known points, geometry recovered from where points went.
"""

from __future__ import annotations

import math

import albumentations as A
import cv2
import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from wingface.data.datamodule import FaceDataModule
from wingface.data.dataset import ContextCrops, FaceCropDataset
from wingface.data.faces import FaceSet
from wingface.data.gpu_augment import (
    BatchAugmentation,
    geometry_matrices,
    sample_keys,
    shift_hue,
    transform_points_batch,
    uniforms,
    warp_images,
)
from wingface.data.transforms import TrainAugmentation, horizontal_flip
from wingface.landmarks import IBUG68

CONTEXT, INPUT = 80, 64


def smooth_image(size: int = CONTEXT) -> np.ndarray:
    """A ``(size, size, 3)`` uint8 image of smooth colour waves (no edges to alias)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    channels = [
        127 + 100 * np.sin(xx / 7.0 + yy / 11.0),
        127 + 100 * np.cos(yy / 5.0 - xx / 13.0),
        127 + 60 * np.sin((xx + yy) / 9.0),
    ]
    return np.stack(channels, -1).round().astype(np.uint8)


def albumentations_geometry(
    image: np.ndarray,
    points: np.ndarray,
    flip: bool,
    rotate: float,
    scale: tuple[float, float],
    shift: tuple[int, int],
    oversample: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """The albumentations path's flip + ``A.Affine`` + centre crop with fixed parameters (the
    affine's scale divided by ``oversample``, as for context crops stored at that many pixels
    per input pixel)."""
    sx, sy = scale[0] / oversample, scale[1] / oversample
    visibility = np.ones(len(points), bool)
    if flip:
        image, points, visibility = horizontal_flip(image, points, visibility, IBUG68.flip_array())
    compose = A.Compose(
        [
            A.Affine(
                scale={"x": (sx, sx), "y": (sy, sy)},
                translate_px={"x": (shift[0], shift[0]), "y": (shift[1], shift[1])},
                rotate=(rotate, rotate),
                interpolation=cv2.INTER_LINEAR,
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,
                p=1.0,
            ),
            A.CenterCrop(INPUT, INPUT),
        ],
        keypoint_params=A.KeypointParams(format="xy", remove_invisible=False),
    )
    out = compose(image=image, keypoints=points)
    return out["image"], np.asarray(out["keypoints"], dtype=np.float32)


@pytest.mark.parametrize("oversample", [1, 2, 3])
@pytest.mark.parametrize(
    "flip,rotate,scale,shift",
    [
        (False, 0.0, (1.0, 1.0), (0, 0)),
        (False, 17.3, (1.07, 0.93), (3, -2)),
        (True, -29.0, (0.9, 1.1), (-3, 3)),
        (True, 5.5, (1.02, 1.02), (0, 1)),
    ],
)
def test_same_affine_moves_images_and_landmarks_like_albumentations(
    flip: bool, rotate: float, scale: tuple[float, float], shift: tuple[int, int], oversample: int
) -> None:
    context = CONTEXT * oversample
    image = smooth_image(context)
    points = np.random.default_rng(0).uniform(-5, context + 5, (68, 2)).astype(np.float32)
    ref_image, ref_points = albumentations_geometry(
        image, points, flip, rotate, scale, shift, oversample
    )
    matrices = geometry_matrices(
        torch.tensor([flip]),
        torch.tensor([rotate]),
        torch.tensor([scale]),
        torch.tensor([shift], dtype=torch.float32),
        context,
        INPUT,
        oversample,
    )
    batch = torch.from_numpy(image).permute(2, 0, 1)[None]
    warped = warp_images(batch, matrices, INPUT)[0].permute(1, 2, 0).numpy()
    landmarks = torch.from_numpy(points)[None]
    if flip:  # the batched path re-indexes, the matrix mirrors
        landmarks = landmarks[:, IBUG68.flip_array()]
    moved = transform_points_batch(landmarks, matrices)[0].numpy()
    np.testing.assert_allclose(moved, ref_points, atol=1e-4)
    difference = np.abs(warped - ref_image.astype(np.float64))
    # OpenCV interpolates uint8 with 1/32-px fixed-point weights and rounds: within one level
    assert difference.max() <= 1.0 and difference.mean() < 0.35


def blob_image(points: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    """``(C, C, 3)`` uint8: a Gaussian blob at ``points[0]`` in red, at ``points[1]`` in green."""
    yy, xx = np.mgrid[0:CONTEXT, 0:CONTEXT]
    image = np.zeros((CONTEXT, CONTEXT, 3), np.uint8)
    for channel, (x, y) in enumerate(points[:2]):
        blob = np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))
        image[..., channel] = np.round(255 * blob).astype(np.uint8)
    return image


def centroid(channel: np.ndarray) -> np.ndarray:
    """Intensity-weighted ``(x, y)`` centroid of a 2-D array above a small threshold."""
    weights = channel.astype(np.float64)
    weights[weights < 20] = 0
    yy, xx = np.mgrid[0 : channel.shape[0], 0 : channel.shape[1]]
    return np.array([(weights * xx).sum(), (weights * yy).sum()]) / weights.sum()


def test_landmarks_stay_on_the_features_they_mark() -> None:
    """Two points (a left/right pair) marked by red and green dots: after random flips and
    affines the dot of each original point is where its (re-indexed) landmark went."""
    augment = BatchAugmentation(
        INPUT, CONTEXT, np.array([1, 0]), brightness=0, contrast=0, saturation=0, hue=0,
        blur_prob=0, occlusion_prob=0, flip_prob=0.5,
    )  # fmt: skip
    rng = np.random.default_rng(3)
    points = rng.uniform(30, 50, (16, 2, 2)).astype(np.float32)
    images = torch.from_numpy(np.stack([blob_image(p) for p in points])).permute(0, 3, 1, 2)
    keys = sample_keys(5, 0, torch.arange(16), torch.device("cpu"))
    params = augment.draw(keys)
    assert 0 < int(params.flip.sum()) < 16  # both cases are exercised
    out, moved, _ = augment.apply(images, torch.from_numpy(points), torch.ones(16, 2), params)
    for b in range(16):
        red_landmark = 1 if params.flip[b] else 0  # point 0 is landmark 1 after a flip
        for channel, landmark in ((0, red_landmark), (1, 1 - red_landmark)):
            found = centroid(out[b, channel].numpy())
            np.testing.assert_allclose(found, moved[b, landmark].numpy(), atol=0.15)


def recovered_geometry(source: np.ndarray, moved: np.ndarray) -> dict[str, np.ndarray]:
    """Flip, rotation, scales and shift recovered from where 3 points ``(N, 3, 2)`` went.

    Solves each sample's affine map context → input pixels and factors its linear part as
    ``R(theta) S(sx, sy)`` (mirrored first when its determinant is negative).
    """
    n = len(source)
    out = {k: np.empty(n) for k in ("flip", "rotate", "sx", "sy", "tx", "ty")}
    centre_in, centre_ctx = (INPUT - 1) / 2.0, (CONTEXT - 1) / 2.0
    for i in range(n):
        design = np.hstack([source[i], np.ones((3, 1))])
        matrix = np.linalg.solve(design, moved[i]).T  # (2, 3)
        linear = matrix[:, :2].copy()
        flip = np.linalg.det(linear) < 0
        if flip:
            linear[:, 0] *= -1
        out["flip"][i] = flip
        out["sx"][i] = np.hypot(*linear[:, 0])
        out["sy"][i] = np.hypot(*linear[:, 1])
        out["rotate"][i] = np.degrees(np.arctan2(-linear[1, 0], linear[0, 0]))
        shift = matrix[:, :2] @ [centre_ctx, centre_ctx] + matrix[:, 2] - centre_in
        out["tx"][i], out["ty"][i] = shift
    return out


def test_parameter_draws_match_the_albumentations_path() -> None:
    """Rotation, per-axis scale, whole-pixel shift and flip rate: same range, mean, variance."""
    source = np.array([[20.0, 25.0], [60.0, 30.0], [35.0, 65.0]], np.float32)
    identity = np.arange(3)
    cpu = TrainAugmentation(INPUT, CONTEXT, identity, blur_prob=0.0, occlusion_prob=0.0)
    image = np.zeros((CONTEXT, CONTEXT, 3), np.uint8)
    n_cpu, n_gpu = 1500, 20000
    cpu_moved = []
    for i in range(n_cpu):
        cpu.reseed(i)
        cpu_moved.append(cpu(image, source, np.ones(3, bool))[1])
    batched = BatchAugmentation(INPUT, CONTEXT, identity)
    keys = sample_keys(1, 0, torch.arange(n_gpu), torch.device("cpu"))
    matrices = batched.matrices(batched.draw(keys))
    gpu_moved = transform_points_batch(torch.from_numpy(source).expand(n_gpu, 3, 2), matrices)
    a = recovered_geometry(np.broadcast_to(source, (n_cpu, 3, 2)), np.stack(cpu_moved))
    b = recovered_geometry(np.broadcast_to(source, (n_gpu, 3, 2)), gpu_moved.numpy())
    se = 1 / math.sqrt(n_cpu)
    assert abs(a["flip"].mean() - 0.5) < 4 * 0.5 * se and abs(b["flip"].mean() - 0.5) < 0.02
    for key, low, high in (("rotate", -30, 30), ("sx", 0.9, 1.1), ("sy", 0.9, 1.1)):
        for draws in (a[key], b[key]):
            assert low - 1e-4 <= draws.min() and draws.max() <= high + 1e-4, key
            assert draws.min() < low + 0.02 * (high - low) and draws.max() > high - 0.02 * (
                high - low
            ), key  # both fill the range
        uniform_sd = (high - low) / math.sqrt(12)
        assert abs(a[key].mean() - b[key].mean()) < 4 * uniform_sd * se, key
        assert abs(a[key].std() / b[key].std() - 1) < 0.06, key
        assert abs(b[key].std() / uniform_sd - 1) < 0.02, key
    for draws in (a, b):  # x and y scale are independent draws in both paths
        assert abs(np.corrcoef(draws["sx"], draws["sy"])[0, 1]) < 4 * se
    for key in ("tx", "ty"):  # whole pixels, truncated towards zero: -3..3 with 0 twice as likely
        for draws in (a[key], b[key]):
            np.testing.assert_allclose(draws, np.round(draws), atol=1e-3)
        values = np.arange(-3, 4)
        freq_a = np.array([(np.round(a[key]) == v).mean() for v in values])
        freq_b = np.array([(np.round(b[key]) == v).mean() for v in values])
        expected = np.array([0.2, 1, 1, 2, 1, 1, 0.2]) / 6.4  # U(-3.2, 3.2) truncated
        np.testing.assert_allclose(freq_b, expected, atol=0.01)
        np.testing.assert_allclose(freq_a, expected, atol=4 * 0.5 * se)


def both_paths(image: np.ndarray, n: int, **options: float) -> tuple[np.ndarray, np.ndarray]:
    """``n`` augmentations of ``image`` by each path: two ``(n, 3, S, S)`` uint8 arrays."""
    cpu = TrainAugmentation(INPUT, CONTEXT, np.arange(1), **options)
    cpu_out = []
    for i in range(n):
        cpu.reseed(100 + i)
        cpu_out.append(cpu(image, np.zeros((1, 2), np.float32), np.ones(1, bool))[0])
    batched = BatchAugmentation(INPUT, CONTEXT, np.arange(1), **options)
    gpu_out = []
    for start in range(0, n, 500):  # batches of 500 keep the memory small
        size = min(500, n - start)
        batch = torch.from_numpy(image).permute(2, 0, 1)[None].expand(size, 3, CONTEXT, CONTEXT)
        keys = sample_keys(2, 0, torch.arange(start, start + size), torch.device("cpu"))
        gpu_out.append(batched(batch, torch.zeros(size, 1, 2), torch.ones(size, 1), keys)[0])
    return np.stack(cpu_out).transpose(0, 3, 1, 2), torch.cat(gpu_out).numpy()


NO_GEOMETRY = {"rotate": 0.0, "scale": 0.0, "shift": 0.0, "flip_prob": 0.0}
NO_COLOUR = {"brightness": 0.0, "contrast": 0.0, "saturation": 0.0, "hue": 0.0}


@pytest.mark.slow
def test_colour_jitter_matches_the_albumentations_path_in_distribution() -> None:
    """Per-image channel means and colourfulness (mean channel spread) of a fixed picture:
    the same mean and spread across draws in both paths."""
    cpu, gpu = both_paths(smooth_image(), 4000, **NO_GEOMETRY, blur_prob=0.0, occlusion_prob=0.0)

    def statistics(images: np.ndarray) -> np.ndarray:
        images = images.astype(np.float64)
        spread = images.max(1) - images.min(1)
        return np.concatenate([images.mean((2, 3)), spread.mean((1, 2))[:, None]], 1)

    a, b = statistics(cpu), statistics(gpu)
    assert (a.std(0) > 5).all()  # the jitter is on
    # 0-255 levels; standard error of the difference about 0.45 (the uint8 path's hue step
    # leaves a bias below one level)
    np.testing.assert_allclose(a.mean(0), b.mean(0), atol=2.0)
    np.testing.assert_allclose(a.std(0), b.std(0), rtol=0.08)


def test_blur_matches_the_albumentations_path_in_distribution() -> None:
    """On noise, the share of blurred images and how much fine detail the blur removes."""
    noise = np.random.default_rng(6).integers(0, 256, (CONTEXT, CONTEXT, 3), dtype=np.uint8)
    cpu, gpu = both_paths(noise, 800, **NO_GEOMETRY, **NO_COLOUR, blur_prob=0.3, occlusion_prob=0.0)
    centre = noise[8:72, 8:72].transpose(2, 0, 1)[None]

    def detail(images: np.ndarray) -> np.ndarray:
        return np.abs(np.diff(images.astype(np.float64), 2, axis=3)).mean((1, 2, 3))

    reference = detail(centre)[0]
    kept = [detail(images) / reference for images in (cpu, gpu)]
    for share in kept:  # un-blurred images are the centre crop itself
        assert abs((share < 0.999).mean() - 0.3) < 0.05
    blurred = [share[share < 0.999] for share in kept]
    assert abs(blurred[0].mean() - blurred[1].mean()) < 0.03
    np.testing.assert_allclose(np.quantile(blurred[0], [0.1, 0.5, 0.9]),
                               np.quantile(blurred[1], [0.1, 0.5, 0.9]), atol=0.05)  # fmt: skip


def test_occlusion_matches_the_albumentations_path_in_distribution() -> None:
    """Occluder rate, side lengths (15-40% of the input) and position, from changed pixels."""
    image = smooth_image()
    cpu, gpu = both_paths(image, 1500, **NO_GEOMETRY, **NO_COLOUR, blur_prob=0.0,
                          occlusion_prob=0.4)  # fmt: skip
    centre = image[8:72, 8:72].transpose(2, 0, 1)[None]
    boxes = []
    for images in (cpu, gpu):
        changed = (images != centre).any(1)
        hit = changed.any((1, 2))
        assert abs(hit.mean() - 0.4) < 0.06
        rows, cols = changed[hit].any(2), changed[hit].any(1)
        height = rows.sum(1)
        width = cols.sum(1)
        top = rows.argmax(1)
        assert (height >= int(0.15 * INPUT)).all() and (height <= int(0.4 * INPUT)).all()
        assert (width >= int(0.15 * INPUT)).all() and (width <= int(0.4 * INPUT)).all()
        boxes.append(np.stack([height, width, top + height / 2], 1))
    # pixels; standard errors of the differences about 0.3 (sides) and 0.8 (centre row)
    np.testing.assert_allclose(boxes[0].mean(0)[:2], boxes[1].mean(0)[:2], atol=1.0)
    np.testing.assert_allclose(boxes[0].mean(0)[2], boxes[1].mean(0)[2], atol=2.5)
    np.testing.assert_allclose(boxes[0].std(0), boxes[1].std(0), rtol=0.12)


def test_hue_shift_matches_opencv_hsv() -> None:
    rng = np.random.default_rng(4)
    image = rng.integers(0, 256, (1, 16, 16, 3), dtype=np.uint8)
    shift = 0.1  # of the circle: 36 degrees
    ours = shift_hue(torch.from_numpy(image).permute(0, 3, 1, 2).float(), torch.tensor([shift]))
    hsv = cv2.cvtColor(image[0].astype(np.float32) / 255, cv2.COLOR_RGB2HSV)
    hsv[..., 0] = np.mod(hsv[..., 0] + 360 * shift, 360)
    reference = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * 255
    np.testing.assert_allclose(ours[0].permute(1, 2, 0).numpy(), reference, atol=0.05)
    unchanged = shift_hue(torch.from_numpy(image).permute(0, 3, 1, 2).float(), torch.zeros(1))
    np.testing.assert_allclose(unchanged.numpy(), image.transpose(0, 3, 1, 2), atol=1e-3)


def test_draws_are_keyed_by_seed_epoch_and_position_only() -> None:
    augment = BatchAugmentation(INPUT, CONTEXT, IBUG68.flip_array(), occlusion_prob=0.5)
    rng = np.random.default_rng(5)
    images = torch.from_numpy(rng.integers(0, 256, (6, 3, CONTEXT, CONTEXT), dtype=np.uint8))
    landmarks = torch.from_numpy(rng.uniform(10, 70, (6, 68, 2)).astype(np.float32))
    visibility = torch.ones(6, 68)
    positions = torch.tensor([4, 9, 0, 17, 3, 8])
    keys = sample_keys(7, 2, positions, torch.device("cpu"))
    whole = augment(images, landmarks, visibility, keys)
    # the same samples in another batch composition and order: the same results
    order = torch.tensor([5, 2, 0])
    part = augment(images[order], landmarks[order], visibility[order], keys[order])
    for full, piece in zip(whole, part, strict=True):
        torch.testing.assert_close(full[order], piece)
    again = augment(images, landmarks, visibility, sample_keys(7, 2, positions, "cpu"))
    torch.testing.assert_close(again[1], whole[1])
    other_epoch = augment(images, landmarks, visibility, sample_keys(7, 3, positions, "cpu"))
    assert not torch.allclose(other_epoch[1], whole[1])
    other_seed = sample_keys(8, 2, positions, torch.device("cpu"))
    assert not torch.equal(other_seed, keys)


@pytest.mark.slow
def test_compiled_pixel_work_matches_eager() -> None:
    """augment.compile=true fuses the pixel work; it computes the same batches (two batch
    sizes: the compiled function handles a short last batch)."""
    options = {"blur_prob": 0.5, "occlusion_prob": 0.5}
    eager = BatchAugmentation(INPUT, CONTEXT, IBUG68.flip_array(), **options)
    compiled = BatchAugmentation(INPUT, CONTEXT, IBUG68.flip_array(), **options, compile=True)
    image = torch.from_numpy(smooth_image()).permute(2, 0, 1)
    rng = np.random.default_rng(8)
    for size in (6, 5):
        images = image[None].repeat(size, 1, 1, 1)
        landmarks = torch.from_numpy(rng.uniform(10, 70, (size, 68, 2)).astype(np.float32))
        keys = sample_keys(4, size, torch.arange(size), torch.device("cpu"))
        expected = eager(images, landmarks, torch.ones(size, 68), keys)
        got = compiled(images, landmarks, torch.ones(size, 68), keys)
        torch.testing.assert_close(got[1], expected[1], rtol=0, atol=0)
        difference = (got[0].int() - expected[0].int()).abs()
        # fused float arithmetic may truncate a level differently now and then (and a level
        # off before a colour step can become two after it)
        assert difference.max() <= 2 and (difference > 0).float().mean() < 1e-3


def test_keyed_uniforms_are_uniform_and_independent() -> None:
    keys = sample_keys(0, torch.arange(4).repeat_interleave(5000), torch.arange(20000), "cpu")
    u = uniforms(keys).numpy()
    assert u.min() >= 0 and u.max() < 1
    np.testing.assert_allclose(u.mean(0), 0.5, atol=0.01)
    np.testing.assert_allclose(u.var(0), 1 / 12, atol=0.003)
    correlation = np.corrcoef(u.T) - np.eye(u.shape[1])
    assert np.abs(correlation).max() < 0.04
    histogram = np.histogram(u[:, 0], bins=20, range=(0, 1))[0]
    assert histogram.min() > 0.9 * 1000 and histogram.max() < 1.1 * 1000


def test_invalid_options_name_the_key() -> None:
    with pytest.raises(ValueError, match="augment.hue"):
        BatchAugmentation(INPUT, CONTEXT, IBUG68.flip_array(), hue=0.7)
    with pytest.raises(ValueError, match="augment.occlusion_prob"):
        BatchAugmentation(INPUT, CONTEXT, IBUG68.flip_array(), occlusion_prob=1.5)
    with pytest.raises(ValueError, match="augment.brightness"):
        BatchAugmentation(INPUT, CONTEXT, IBUG68.flip_array(), brightness=-0.1)
    with pytest.raises(ValueError, match="augment.compile"):
        BatchAugmentation(INPUT, CONTEXT, IBUG68.flip_array(), compile="yes")


# ------------------------------------------------------------------- through the data module


class _Faces:
    """A face source of twelve random 68-point faces on textured images in every split (some
    points without a position, but not the eyes, which every NME normalisation needs)."""

    def load(self, split: str) -> FaceSet:
        rng = np.random.default_rng(len(split))
        visibility = rng.random((12, 68)) > 0.1
        visibility[:, 36:48] = True
        return FaceSet(
            images=rng.integers(0, 256, (12, 64, 64, 3), dtype=np.uint8),
            landmarks=rng.uniform(16.0, 48.0, (12, 68, 2)).astype(np.float32),
            visibility=visibility,
            boxes=np.tile(np.array([16.0, 16.0, 48.0, 48.0], np.float32), (12, 1)),
            flip_permutation=IBUG68.flip_array(),
        )


def _datamodule(
    on_device: bool, augment: bool = True, workers: int = 0, oversample: int = 1
) -> FaceDataModule:
    repeats = np.array([1, 2, 1, 1, 3, 1, 1, 1, 2, 1, 1, 1])
    datamodule = FaceDataModule(
        _Faces(), None, "300w", 68, 32, batch_size=5, eval_batch_size=7, num_workers=workers,
        balance=lambda *_: repeats, seed=3, on_device=on_device, context_oversample=oversample,
    )  # fmt: skip
    if augment:
        datamodule.augment = lambda **kwargs: BatchAugmentation(**kwargs, occlusion_prob=0.3)
    return datamodule


def _epoch(datamodule: FaceDataModule, split: str, epoch: int) -> list[dict]:
    loader = getattr(datamodule, f"{split}_dataloader")()
    if split == "train":
        loader.sampler.set_epoch(epoch)
    return [datamodule.on_after_batch_transfer(dict(batch), 0) for batch in loader]


@pytest.mark.parametrize("oversample", [1, 2])
@pytest.mark.parametrize("augment", [True, False], ids=["augment=gpu", "augment=none"])
def test_device_resident_batches_equal_the_loader_batches(augment: bool, oversample: int) -> None:
    """``data.on_device`` gives exactly the data loader's batches (workers or not)."""
    loader = _datamodule(False, augment, workers=1, oversample=oversample)
    resident = _datamodule(True, augment, oversample=oversample)
    for split, epoch in (("train", 0), ("train", 2), ("val", 0), ("test", 0)):
        expected, got = _epoch(loader, split, epoch), _epoch(resident, split, epoch)
        assert len(expected) == len(got) > 1
        for a, b in zip(expected, got, strict=True):
            assert a.keys() == b.keys() == {"image", "landmarks", "visibility", "index"}
            for key in a:
                torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
        shape = expected[0]["image"].shape
        assert shape[1:] == (3, 32, 32) and expected[0]["image"].dtype == torch.uint8
    first, third = _epoch(loader, "train", 0), _epoch(loader, "train", 2)
    if augment:  # a fresh augmentation every epoch
        assert not torch.equal(first[0]["landmarks"], third[0]["landmarks"])


def test_batched_path_augments_the_same_faces_as_their_centre_crops() -> None:
    """Training batches of augment=gpu are augmented views of the faces they name: with the
    geometry and colour turned off they are exactly the un-augmented centre crops."""
    datamodule = _datamodule(False)
    datamodule.augment = lambda **kwargs: BatchAugmentation(
        **kwargs, rotate=0, scale=0, shift=0, flip_prob=0, brightness=0, contrast=0,
        saturation=0, hue=0, blur_prob=0, occlusion_prob=0,
    )  # fmt: skip
    plain = _datamodule(False, augment=False)
    crops = plain.dataset("train")
    for batch in _epoch(datamodule, "train", 1):
        for i, face in enumerate(batch["index"].tolist()):
            position = int(np.flatnonzero(crops.indices == face)[0])
            expected = crops[position]
            torch.testing.assert_close(batch["image"][i], expected["image"], rtol=0, atol=0)
            torch.testing.assert_close(batch["landmarks"][i], expected["landmarks"])


def test_oversampled_context_crops_hold_the_same_faces() -> None:
    """``data.context_oversample=k``: context crops of k times the pixels, whose landmarks are
    the centre crops' at k pixels per input pixel; the centre crops (warped from the photo
    directly) are the window of the plain context crops (up to OpenCV's rounding)."""
    faces = _Faces().load("train")
    plain = ContextCrops(faces, 32, 1.28, 1.25)
    sharp = ContextCrops(faces, 32, 1.28, 1.25, oversample=2)
    assert plain.context_size == 40 and sharp.context_size == 80
    assert sharp.images.shape == (12, 80, 80, 3) and sharp.centre_images.shape == (12, 32, 32, 3)
    np.testing.assert_allclose(sharp.centre_landmarks, plain.centre_landmarks, atol=1e-4)
    np.testing.assert_allclose(plain.centre_landmarks, plain.landmarks - 4, atol=0)
    np.testing.assert_allclose(
        (sharp.landmarks + 0.5) / 2 - 0.5 - 4, sharp.centre_landmarks, atol=1e-4
    )
    difference = np.abs(sharp.centre_images.astype(int) - plain.centre_images)
    assert difference.max() <= 1


def textured_faces(count: int) -> FaceSet:
    """Faces of 128-px boxes on 256-px photos of smooth noise (detail at about 2 photo px)."""
    rng = np.random.default_rng(0)
    noise = [cv2.GaussianBlur(rng.normal(size=(256, 256, 3)), (0, 0), 2.0) for _ in range(count)]
    images = np.clip(128 + 50 * np.stack(noise) / np.std(noise), 0, 255).astype(np.uint8)
    return FaceSet(
        images=images,
        landmarks=rng.uniform(80.0, 176.0, (count, 68, 2)).astype(np.float32),
        visibility=np.ones((count, 68), bool),
        boxes=np.tile(np.array([64.0, 64.0, 192.0, 192.0], np.float32), (count, 1)),
        flip_permutation=IBUG68.flip_array(),
    )


def test_oversampled_context_crops_keep_augmented_faces_as_sharp_as_evaluation_faces() -> None:
    """Augmenting a context crop interpolates it a second time: at 1 pixel per input pixel the
    augmented faces lose more than half the detail (mean squared pixel difference of
    neighbours) of the evaluation crops warped from the photo; at 3 they keep most of it."""

    def detail(images: np.ndarray) -> float:
        x = images.astype(np.float64)
        return float(np.mean(np.diff(x, axis=-1) ** 2) + np.mean(np.diff(x, axis=-2) ** 2))

    faces = textured_faces(16)
    kept = {}
    for oversample in (1, 3):
        crops = ContextCrops(faces, 32, 1.28, 1.25, oversample)
        augment = BatchAugmentation(
            32, crops.context_size, IBUG68.flip_array(), oversample=oversample, brightness=0,
            contrast=0, saturation=0, hue=0, blur_prob=0, occlusion_prob=0,
        )  # fmt: skip
        images, _, _ = augment(
            torch.from_numpy(crops.images).permute(0, 3, 1, 2),
            torch.from_numpy(crops.landmarks),
            torch.ones(16, 68),
            sample_keys(0, 0, torch.arange(16), torch.device("cpu")),
        )
        kept[oversample] = detail(images.numpy()) / detail(
            crops.centre_images.transpose(0, 3, 1, 2)
        )
    assert kept[1] < 0.5 and kept[3] > 0.8


def test_on_device_rejects_the_per_sample_augmentation() -> None:
    datamodule = _datamodule(True, augment=False)
    datamodule.augment = lambda **kwargs: TrainAugmentation(**kwargs)
    with pytest.raises(ValueError, match="data.on_device"):
        datamodule.train_dataloader()


def test_augment_none_config_trains_on_centre_crops_on_either_path(
    compose_train, small_data: list[str]
) -> None:
    """``augment=none`` (the config option) means no augmentation on both paths: the loader's
    and the device-resident training batches are the faces' un-augmented centre crops."""
    epochs = {}
    for on_device in (False, True):
        cfg = compose_train("augment=none", f"data.on_device={str(on_device).lower()}", *small_data)
        datamodule = instantiate(cfg.data)
        assert datamodule.augmentation() is None
        epochs[on_device] = _epoch(datamodule, "train", 1)
    crops = datamodule._crops("train")
    centre = FaceCropDataset(crops, np.arange(len(crops)))
    assert len(epochs[False]) == len(epochs[True]) > 1
    for loaded, resident in zip(epochs[False], epochs[True], strict=True):
        for key in ("image", "landmarks", "index"):
            torch.testing.assert_close(loaded[key], resident[key], rtol=0, atol=0)
        for i, face in enumerate(resident["index"].tolist()):
            torch.testing.assert_close(resident["image"][i], centre[face]["image"], rtol=0, atol=0)


@pytest.mark.parametrize("augment", ["default", "gpu"])
def test_context_oversample_config_serves_input_size_batches_on_either_path(
    compose_train, small_data: list[str], augment: str
) -> None:
    """``data.context_oversample=2``: context crops of twice the pixels, training batches at
    the network's input size from either augmentation path, evaluation batches the centre
    crops warped from the photo."""
    cfg = compose_train(f"augment={augment}", "data.context_oversample=2", *small_data)
    datamodule = instantiate(cfg.data)
    train = _epoch(datamodule, "train", 0)[0]
    crops = datamodule._crops("train")
    assert crops.context_size == 2 * 80 and crops.oversample == 2
    assert train["image"].shape[1:] == (3, 64, 64) and train["image"].dtype == torch.uint8
    assert torch.isfinite(train["landmarks"]).all()
    val = _epoch(datamodule, "val", 0)[0]
    val_crops = datamodule._crops("val")
    assert val_crops.oversample == 1  # evaluated faces are never augmented
    expected = torch.from_numpy(val_crops.centre_images[: len(val["image"])]).permute(0, 3, 1, 2)
    torch.testing.assert_close(val["image"], expected, rtol=0, atol=0)


def test_keep_ratio_draws_one_scale_for_both_axes_in_both_paths() -> None:
    """``augment.keep_ratio=true``: the face keeps its aspect ratio (x scale = y scale) on both
    paths, and the common factor still spans ``[1 - scale, 1 + scale]``."""
    source = np.array([[20.0, 25.0], [60.0, 30.0], [35.0, 65.0]], np.float32)
    identity = np.arange(3)
    cpu = TrainAugmentation(
        INPUT, CONTEXT, identity, keep_ratio=True, blur_prob=0.0, occlusion_prob=0.0
    )
    image = np.zeros((CONTEXT, CONTEXT, 3), np.uint8)
    cpu_moved = []
    for i in range(300):
        cpu.reseed(i)
        cpu_moved.append(cpu(image, source, np.ones(3, bool))[1])
    batched = BatchAugmentation(INPUT, CONTEXT, identity, keep_ratio=True)
    keys = sample_keys(1, 0, torch.arange(2000), torch.device("cpu"))
    gpu_moved = batched.matrices(batched.draw(keys))
    gpu_moved = transform_points_batch(torch.from_numpy(source).expand(2000, 3, 2), gpu_moved)
    a = recovered_geometry(np.broadcast_to(source, (300, 3, 2)), np.stack(cpu_moved))
    b = recovered_geometry(np.broadcast_to(source, (2000, 3, 2)), gpu_moved.numpy())
    for draws in (a, b):
        np.testing.assert_allclose(draws["sx"], draws["sy"], atol=1e-3)
        assert 0.9 - 1e-4 <= draws["sx"].min() < 0.91 and 1.09 < draws["sx"].max() <= 1.1 + 1e-4
    with pytest.raises(ValueError, match=r"augment\.keep_ratio must be true or false, got 'yes'"):
        BatchAugmentation(INPUT, CONTEXT, identity, keep_ratio="yes")
