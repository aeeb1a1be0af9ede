"""The synthetic face generator: determinism, geometry conventions, caching, image content."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from wingface.data import synthetic
from wingface.data.faces import FaceSet
from wingface.data.synthetic import (
    SYNTHETIC_VERSION,
    generate_synthetic_faces,
    load_or_generate_synthetic,
    mean_face_3d,
    render_face,
    sample_yaw,
)
from wingface.landmarks import IBUG68

# Under pytest -n (make test) in one test process: the tests share one set of rendered faces.
pytestmark = pytest.mark.xdist_group("synthetic-faces")

SIZE = 96
EYE_R, EYE_L = np.arange(36, 42), np.arange(42, 48)
# lip body: midpoints between matching outer and inner lip points
LIP_OUT, LIP_IN = [50, 51, 52, 56, 57, 58], [61, 62, 63, 65, 66, 67]


@pytest.fixture(scope="module")
def faces() -> FaceSet:
    """A few hundred small faces shared by the statistical tests."""
    return generate_synthetic_faces(240, seed=11, image_size=SIZE, num_workers=1)


def _assert_same(a: FaceSet, b: FaceSet) -> None:
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.landmarks, b.landmarks)
    np.testing.assert_array_equal(a.occluded, b.occluded)
    np.testing.assert_array_equal(a.poses, b.poses)
    np.testing.assert_array_equal(a.boxes, b.boxes)
    assert a.names == b.names


def test_same_seed_gives_identical_arrays() -> None:
    _assert_same(generate_synthetic_faces(6, seed=3), generate_synthetic_faces(6, seed=3))


def test_different_seed_gives_different_faces() -> None:
    a, b = generate_synthetic_faces(4, seed=3), generate_synthetic_faces(4, seed=4)
    assert not np.array_equal(a.landmarks, b.landmarks)
    assert not np.array_equal(a.images, b.images)
    assert a.names[0] == "synthetic_3_0" and b.names[0] == "synthetic_4_0"


def test_face_does_not_depend_on_set_size() -> None:
    small = generate_synthetic_faces(3, seed=5, image_size=64)
    large = generate_synthetic_faces(8, seed=5, image_size=64)
    _assert_same(small, large.subset(np.arange(3)))
    image, landmarks, occluded, pose = render_face(6, 5, 64)
    np.testing.assert_array_equal(image, large.images[6])
    np.testing.assert_array_equal(landmarks, large.landmarks[6])
    np.testing.assert_array_equal(occluded, large.occluded[6])
    np.testing.assert_array_equal(pose, large.poses[6])


def test_image_size_changes_resolution_not_content() -> None:
    small = generate_synthetic_faces(4, seed=6, image_size=64)
    large = generate_synthetic_faces(4, seed=6, image_size=128)
    np.testing.assert_array_equal(small.poses, large.poses)
    assert np.mean(small.occluded == large.occluded) > 0.95
    # pixel centres: x_128 = 2 * x_64 + 0.5
    np.testing.assert_allclose(large.landmarks, 2 * small.landmarks + 0.5, atol=1e-3)
    shrunk = large.images.reshape(4, 64, 2, 64, 2, 3).mean(axis=(2, 4))
    assert np.abs(shrunk - small.images).mean() < 12


def test_parallel_rendering_matches_serial() -> None:
    serial = generate_synthetic_faces(130, seed=2, image_size=32, num_workers=1)
    parallel = generate_synthetic_faces(130, seed=2, image_size=32, num_workers=2)
    _assert_same(serial, parallel)


def test_shapes_and_dtypes(faces: FaceSet) -> None:
    n = len(faces)
    assert faces.images.shape == (n, SIZE, SIZE, 3) and faces.images.dtype == np.uint8
    assert faces.landmarks.shape == (n, 68, 2) and faces.landmarks.dtype == np.float32
    assert faces.visibility.shape == (n, 68) and faces.visibility.dtype == bool
    assert faces.visibility.all()
    assert faces.occluded.shape == (n, 68) and faces.occluded.dtype == bool
    assert faces.boxes.shape == (n, 4) and faces.boxes.dtype == np.float32
    assert faces.poses.shape == (n, 3) and faces.poses.dtype == np.float32
    np.testing.assert_array_equal(faces.flip_permutation, IBUG68.flip_array())
    assert faces.names == [f"synthetic_11_{i}" for i in range(n)]
    assert np.isfinite(faces.landmarks).all()


def test_empty_set_and_bad_arguments() -> None:
    empty = generate_synthetic_faces(0, seed=0, image_size=64)
    assert empty.images.shape == (0, 64, 64, 3) and empty.landmarks.shape == (0, 68, 2)
    with pytest.raises(ValueError):
        generate_synthetic_faces(-1, seed=0)
    with pytest.raises(ValueError):
        generate_synthetic_faces(2, seed=0, image_size=8)


def test_mean_face_is_symmetric_under_flip() -> None:
    shape = mean_face_3d()
    mirrored = shape[IBUG68.flip_array()] * np.array([-1.0, 1.0, 1.0])
    np.testing.assert_allclose(mirrored, shape, atol=1e-12)
    # and it is a face: subject's right eye on the image left, nose tip in front, ears behind
    assert shape[36:42, 0].max() < 0 < shape[42:48, 0].min()
    assert np.argmax(shape[:, 2]) == 30
    assert shape[[0, 16], 2].max() < shape[27:36, 2].min()
    assert shape[8, 1] == shape[:, 1].max()  # chin lowest
    assert shape[17:27, 1].max() < shape[36:48, 1].min()  # brows above eyes


def test_yaw_distribution_is_long_tailed() -> None:
    rng = np.random.default_rng(0)
    yaw = np.abs([sample_yaw(rng) for _ in range(20_000)])
    assert yaw.max() <= 90.0
    assert 0.7 < np.mean(yaw < 30) < 0.9
    assert 0.08 < np.mean(yaw > 45) < 0.2
    assert np.mean(yaw > 60) > 0.04
    assert np.mean(yaw > 85) > 0.005


def test_generated_poses_cover_large_yaw(faces: FaceSet) -> None:
    yaw, pitch, roll = np.abs(faces.poses).T
    assert np.mean(yaw < 30) > 0.6 and np.mean(yaw > 60) > 0.02
    assert pitch.max() <= 30 and roll.max() <= 40


def test_landmarks_inside_the_image(faces: FaceSet) -> None:
    inside = (faces.landmarks >= -0.5) & (faces.landmarks <= SIZE - 0.5)
    assert inside.all(axis=-1).mean() > 0.99
    extent = (faces.boxes[:, 2:] - faces.boxes[:, :2]).max(axis=1) / SIZE
    assert extent.min() > 0.35 and extent.max() < 0.65


def test_boxes_are_landmark_extents(faces: FaceSet) -> None:
    np.testing.assert_array_equal(faces.boxes[:, :2], faces.landmarks.min(axis=1))
    np.testing.assert_array_equal(faces.boxes[:, 2:], faces.landmarks.max(axis=1))


def test_yaw_turns_the_nose_towards_the_image_right(faces: FaceSet) -> None:
    yaw, _, roll = faces.poses.T
    upright = np.abs(roll) < 15
    eye_mid = faces.landmarks[:, [36, 45], 0].mean(axis=1)
    nose_offset = faces.landmarks[:, 30, 0] - eye_mid
    assert (nose_offset[upright & (yaw > 25)] > 0).all()
    assert (nose_offset[upright & (yaw < -25)] < 0).all()


def test_far_side_points_are_occluded_at_large_yaw(faces: FaceSet) -> None:
    yaw = faces.poses[:, 0]
    left = np.r_[9:17, 22:27, 42:48]  # subject's left: the far side when yaw > 0
    right = IBUG68.flip_array()[left]
    turned = yaw > 60
    assert turned.sum() >= 3
    assert faces.occluded[turned][:, left].mean() > faces.occluded[turned][:, right].mean() + 0.2
    frontal = np.abs(yaw) < 15
    assert faces.occluded[np.abs(yaw) > 60].mean() > faces.occluded[frontal].mean() + 0.05


def _disc_mean(image: np.ndarray, centre: np.ndarray, radius: float) -> np.ndarray:
    """Mean RGB of the pixels within ``radius`` of ``centre`` (x, y)."""
    yy, xx = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
    mask = (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 <= radius**2
    return image[mask].astype(np.float64).mean(axis=0)


def _part_contrasts(faces: FaceSet, landmarks: np.ndarray) -> tuple[float, float]:
    """Mean lip redness and eye darkness relative to nose-bridge skin, using ``landmarks``."""
    lip_red, eye_dark = [], []
    for image, points in zip(faces.images, landmarks, strict=True):
        skin = _disc_mean(image, points[28], 1.5)
        lips = np.mean(
            [_disc_mean(image, p, 1.0) for p in (points[LIP_OUT] + points[LIP_IN]) / 2], 0
        )
        iris = np.mean([_disc_mean(image, points[i].mean(0), 1.0) for i in (EYE_R, EYE_L)], 0)
        lip_red.append((lips[0] - lips[1:].mean()) - (skin[0] - skin[1:].mean()))
        eye_dark.append(skin.mean() - iris.mean())
    return float(np.mean(lip_red)), float(np.mean(eye_dark))


def test_face_parts_are_drawn_at_the_landmarks(faces: FaceSet) -> None:
    frontal = (np.abs(faces.poses[:, 0]) < 30) & ~faces.occluded[:, 27:68].any(axis=1)
    subset = faces.subset(np.nonzero(frontal)[0])
    assert len(subset) > 60
    lip_red, eye_dark = _part_contrasts(subset, subset.landmarks)
    # the same statistics with another face's landmarks: no relation to the drawn parts
    shuffled = np.roll(subset.landmarks, 7, axis=0)
    lip_red_control, eye_dark_control = _part_contrasts(subset, shuffled)
    assert lip_red > 10 and lip_red > lip_red_control + 10
    assert eye_dark > 20 and eye_dark > eye_dark_control + 20


def test_cache_round_trip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="wingface.data.synthetic")
    first = load_or_generate_synthetic(tmp_path, num_faces=5, seed=9, image_size=64)
    path = tmp_path / f"synthetic_s9_n5_px64_v{SYNTHETIC_VERSION}.npz"
    assert path.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary files left
    assert "Generated 5 synthetic faces" in caplog.text

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cached set should have been loaded")

    monkeypatch.setattr(synthetic, "generate_synthetic_faces", fail)
    second = load_or_generate_synthetic(tmp_path, num_faces=5, seed=9, image_size=64)
    _assert_same(first, second)
    np.testing.assert_array_equal(first.visibility, second.visibility)
    np.testing.assert_array_equal(first.flip_permutation, second.flip_permutation)
    with pytest.raises(AssertionError, match="cached"):
        load_or_generate_synthetic(tmp_path, num_faces=6, seed=9, image_size=64)


def test_unreadable_cache_is_regenerated(tmp_path: Path) -> None:
    path = tmp_path / f"synthetic_s1_n2_px64_v{SYNTHETIC_VERSION}.npz"
    path.write_bytes(b"not a zip file")
    faces = load_or_generate_synthetic(tmp_path, num_faces=2, seed=1, image_size=64)
    _assert_same(faces, generate_synthetic_faces(2, seed=1, image_size=64))
    _assert_same(faces, load_or_generate_synthetic(tmp_path, num_faces=2, seed=1, image_size=64))
