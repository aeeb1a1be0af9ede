"""Head pose from landmarks (3-D template fit) and the pose3d balancing mode built on it."""

from __future__ import annotations

import numpy as np
import pytest

from shared_data import REAL_AFLW_SHAPES, needs_real_aflw_shapes
from wingface.data.balance import PoseBalance, histogram_repeats
from wingface.data.head_pose import (
    MIN_FIT_POINTS,
    face_template,
    fit_head_pose,
    rotation_angles,
)
from wingface.data.synthetic import rotation_matrix
from wingface.landmarks import SCHEMES, get_scheme, scheme_with_points


def project(
    points: np.ndarray, poses: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``(N, L, 2)`` scaled-orthographic images of ``(L, 3)`` points at ``(N, 3)`` poses
    (degrees), with random scales and offsets; returns them and the scales."""
    scales = rng.uniform(20.0, 80.0, len(poses))
    offsets = rng.uniform(50.0, 200.0, (len(poses), 2))
    images = np.stack(
        [
            s * points @ rotation_matrix(*pose)[:2].T + t
            for pose, s, t in zip(poses, scales, offsets, strict=True)
        ]
    )
    return images, scales


def random_poses(rng: np.random.Generator, count: int) -> np.ndarray:
    return np.column_stack(
        [rng.uniform(-85, 85, count), rng.uniform(-25, 25, count), rng.uniform(-35, 35, count)]
    )


def test_rotation_angles_invert_the_generators_rotation() -> None:
    rng = np.random.default_rng(0)
    poses = random_poses(rng, 50)
    rotations = np.stack([rotation_matrix(*pose) for pose in poses])
    np.testing.assert_allclose(rotation_angles(rotations), poses, atol=1e-9)


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_exact_projections_give_back_pose_and_scale(scheme: str) -> None:
    """Noise-free projections of the template itself: the pose and the scale come back
    exactly, also with a third of the points hidden (their stored positions are junk)."""
    rng = np.random.default_rng(1)
    template = face_template(scheme)
    poses = random_poses(rng, 40)
    images, scales = project(template.points, poses, rng)
    visibility = np.ones(images.shape[:2], dtype=bool)
    hidden = rng.random(visibility.shape) < 0.33
    hidden[:, :MIN_FIT_POINTS] &= False  # keep every face fittable
    hidden &= template.rigid  # keep enough rigid points
    visibility[hidden] = False
    images[hidden] = -1000.0
    pose = fit_head_pose(images, visibility, template)
    assert pose.fitted.all()
    np.testing.assert_allclose(pose.angles, poses, atol=1e-6)
    np.testing.assert_allclose(pose.scale, scales, rtol=1e-6)
    assert np.all(pose.residual < 1e-6)


def test_a_few_misplaced_points_barely_move_the_yaw() -> None:
    """Three of the 68 points moved by a fifth of the face: the Huber re-weighting keeps the
    yaw within 2 degrees, the plain least-squares fit does not."""
    rng = np.random.default_rng(2)
    template = face_template("300w")
    poses = random_poses(rng, 30)
    images, scales = project(template.points, poses, rng)
    for face, scale in enumerate(scales):
        moved = rng.choice(np.flatnonzero(template.rigid), 3, replace=False)
        images[face, moved] += rng.choice([-1, 1], (3, 2)) * 0.4 * scale
    visibility = np.ones(images.shape[:2], dtype=bool)
    robust = fit_head_pose(images, visibility, template).angles[:, 0]
    plain = fit_head_pose(images, visibility, template, iterations=0).angles[:, 0]
    assert np.abs(robust - poses[:, 0]).max() < 2.0
    assert np.abs(plain - poses[:, 0]).max() > 2 * np.abs(robust - poses[:, 0]).max()


def test_faces_with_too_few_points_are_not_fitted() -> None:
    rng = np.random.default_rng(3)
    template = face_template("aflw19")
    images, _ = project(template.points, random_poses(rng, 3), rng)
    visibility = np.ones(images.shape[:2], dtype=bool)
    visibility[1, MIN_FIT_POINTS - 1 :] = False
    pose = fit_head_pose(images, visibility, template)
    assert pose.fitted.tolist() == [True, False, True]
    assert np.isnan(pose.angles[1]).all() and np.isfinite(pose.angles[[0, 2]]).all()


def test_templates_are_mirror_symmetric_under_the_schemes_flip() -> None:
    """A check of each correspondence table: a point and its mirror partner must come from
    mirror-image 300-W points."""
    for scheme in SCHEMES:
        points = face_template(scheme).points
        assert len(points) == get_scheme(scheme).num_points
        mirrored = points[get_scheme(scheme).flip_array()] * [-1.0, 1.0, 1.0]
        np.testing.assert_allclose(mirrored, points, atol=1e-12)


def test_schemes_without_a_template_are_named() -> None:
    with pytest.raises(ValueError, match="'helen194'.*'cofw'"):
        face_template("helen194")
    with pytest.raises(ValueError, match="no landmark scheme has 7 points"):
        scheme_with_points(7)
    assert scheme_with_points(19).name == "aflw19"


def test_estimated_yaw_flags_bin_the_fitted_yaw_and_leave_unfitted_faces_out() -> None:
    from wingface.data.head_pose import estimated_yaw_flags

    rng = np.random.default_rng(5)
    poses = np.array([[10.0, 5, 0], [-45, 0, 10], [75, -10, 0], [-20, 0, 0]])
    images, _ = project(face_template("aflw19").points, poses, rng)
    visibility = np.ones(images.shape[:2], dtype=bool)
    visibility[3, 4:] = False
    flags = estimated_yaw_flags(images, visibility, "aflw19")
    assert flags["yaw_est_0_30"].tolist() == [True, False, False, False]
    assert flags["yaw_est_30_60"].tolist() == [False, True, False, False]
    assert flags["yaw_est_60_90"].tolist() == [False, False, True, False]


def test_pose3d_balances_on_the_true_yaw_of_rigid_faces() -> None:
    """On exact projections the estimated |yaw| is the true one, so the pose3d plan is the
    histogram rule applied to the true |yaw|; a face too sparse to fit keeps one repeat."""
    rng = np.random.default_rng(4)
    template = face_template("300w")
    poses = random_poses(rng, 200)
    poses[:, 0] = np.concatenate([rng.laplace(0, 10, 170), rng.uniform(-85, 85, 30)]).clip(-85, 85)
    images, _ = project(template.points, poses, rng)
    visibility = np.ones(images.shape[:2], dtype=bool)
    visibility[0, 17:] = False  # only contour points left: no fit
    plan = PoseBalance("pose3d", num_bins=9).plan(
        images, visibility, get_scheme("300w").flip_array()
    )
    expected, bins, _ = histogram_repeats(np.abs(poses[1:, 0]), 9, 20)
    assert plan.repeats[0] == 1 and plan.bins[0] == -1 and np.isnan(plan.coefficient[0])
    np.testing.assert_array_equal(plan.repeats[1:], expected)
    np.testing.assert_array_equal(plan.bins[1:], bins)
    assert plan.repeats.max() > 1


@needs_real_aflw_shapes
@pytest.mark.slow
def test_pose3d_on_the_real_aflw_shapes() -> None:
    """The issue's goal on the 21,080 AFLW shapes: |yaw| >= 60 share >= 35% after balancing
    at cap 20 (oracle 44.7%) with an epoch of at most 3 N; |yaw| error under 8 degrees."""
    from wingface.data.formats.aflw import load_aflw_shapes

    landmarks, visibility, yaw = load_aflw_shapes(
        REAL_AFLW_SHAPES / "AFLW_GT_pts21.npy", REAL_AFLW_SHAPES / "AFLW_GT_crop_yaws.npy"
    )
    plan = PoseBalance("pose3d").plan(landmarks, visibility, get_scheme("aflw19").flip_array())
    fitted = np.isfinite(plan.coefficient)
    assert fitted.mean() > 0.99
    error = np.abs(np.abs(plan.coefficient[fitted]) - np.abs(yaw[fitted]))
    assert error.mean() < 8.0
    weights = plan.repeats.astype(np.float64)
    assert weights[np.abs(yaw) >= 60].sum() / weights.sum() >= 0.35
    assert weights.sum() <= 3 * len(yaw)
