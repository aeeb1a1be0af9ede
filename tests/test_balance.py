"""Pose-based data balancing: Procrustes, repeat counts, pose component, real AFLW shapes."""

from __future__ import annotations

import numpy as np
import pytest

from shared_data import REAL_AFLW_SHAPES, needs_real_aflw_shapes
from wingface.data.balance import (
    DEFAULT_MAX_REPEAT,
    BalancePlan,
    NoBalance,
    PoseBalance,
    align_to,
    fill_from_mirror_partner,
    fill_invisible,
    histogram_repeats,
    mirror_shapes,
    observed_projection,
    pose_quantile_flags,
    procrustes_align,
    shape_vectors,
)
from wingface.landmarks import AFLW19

# --------------------------------------------------------------------------- synthetic faces

# A left/right symmetric 3-D face (x right, y up, z towards the camera; arbitrary units):
# image-left half (x < 0) of the pairs, then the points on the symmetry axis.
_HALF = np.array(
    [
        [-3.0, 2.0, -1.0],  # outer eye corner
        [-1.2, 2.0, -0.5],  # inner eye corner
        [-2.5, 3.2, -0.3],  # brow
        [-1.8, -2.2, -0.6],  # mouth corner
        [-4.0, 0.0, -3.0],  # cheek contour
    ]
)
_AXIS = np.array([[0.0, 0.0, 2.0], [0.0, 2.0, 0.5], [0.0, -2.2, 0.0], [0.0, -4.0, -0.5]])
TEMPLATE = np.concatenate([_HALF, _HALF * [-1.0, 1.0, 1.0], _AXIS])
"""``(14, 3)``: points 0-4 and 5-9 are mirror pairs, 10-13 lie on the symmetry axis."""
FLIP = np.array([5, 6, 7, 8, 9, 0, 1, 2, 3, 4, 10, 11, 12, 13], dtype=np.int64)


def project(yaw_deg: np.ndarray) -> np.ndarray:
    """``(N, 14, 2)`` orthographic views of :data:`TEMPLATE` turned by ``(N,)`` yaws (deg)."""
    t = np.radians(np.asarray(yaw_deg, dtype=np.float64))[:, None]
    x = TEMPLATE[:, 0] * np.cos(t) + TEMPLATE[:, 2] * np.sin(t)
    return np.stack([x, np.broadcast_to(TEMPLATE[:, 1], x.shape)], axis=-1)


def random_similarity(points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each ``(N, L, 2)`` shape rotated (+-30 deg), scaled (20-40x) and shifted at random."""
    angle = rng.uniform(-0.5, 0.5, len(points))
    cos, sin = np.cos(angle)[:, None], np.sin(angle)[:, None]
    x, y = points[..., 0], points[..., 1]
    rotated = np.stack([cos * x - sin * y, sin * x + cos * y], axis=-1)
    scale = rng.uniform(20.0, 40.0, len(points))[:, None, None]
    return rotated * scale + rng.uniform(50.0, 150.0, (len(points), 1, 2))


def synthetic_faces(
    num: int = 300, seed: int = 0, noise: float = 0.05
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(landmarks (N, 14, 2) pixels, visibility all True, yaw (N,) deg in [-60, 60])``."""
    rng = np.random.default_rng(seed)
    yaw = rng.uniform(-60.0, 60.0, num)
    shapes = project(yaw) + rng.normal(0.0, noise, (num, len(TEMPLATE), 2))
    return random_similarity(shapes, rng), np.ones((num, len(TEMPLATE)), dtype=bool), yaw


def hide(
    landmarks: np.ndarray, fraction: float, seed: int, value: float = -1e3
) -> tuple[np.ndarray, np.ndarray]:
    """Mark a random ``fraction`` of the points invisible and overwrite them with ``value``."""
    visible = np.random.default_rng(seed).random(landmarks.shape[:2]) >= fraction
    return np.where(visible[..., None], landmarks, value), visible


def self_occluded_faces(
    num: int, seed: int, recede: float = 1.5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Faces turned by |yaw| <= 90 deg whose points hide when the head turns them away.

    A point is hidden once it has receded more than ``recede`` units in depth from where it
    sits in the frontal face (the far eye corner at about 40 deg); hidden points are stored
    as -1 like the AFLW release's.

    Returns:
        ``(landmarks (N, 14, 2) pixels, visibility (N, 14) bool, yaw (N,) deg)``.
    """
    rng = np.random.default_rng(seed)
    yaw = rng.uniform(-90.0, 90.0, num)
    t = np.radians(yaw)[:, None]
    depth = -TEMPLATE[:, 0] * np.sin(t) + TEMPLATE[:, 2] * np.cos(t)
    visible = depth > TEMPLATE[:, 2] - recede
    shapes = random_similarity(project(yaw) + rng.normal(0.0, 0.05, (num, 14, 2)), rng)
    return np.where(visible[..., None], shapes, -1.0), visible, yaw


def abs_correlation(coefficient: np.ndarray, yaw: np.ndarray) -> float:
    """Pearson correlation of |coefficient| and |yaw|."""
    return float(np.corrcoef(np.abs(coefficient), np.abs(yaw))[0, 1])


# --------------------------------------------------------------------------- Procrustes


def _similarity(shape: np.ndarray, angle: float, scale: float, shift: tuple) -> np.ndarray:
    """``(L, 2)`` shape rotated by ``angle`` rad, scaled and shifted."""
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return shape @ rotation.T * scale + np.asarray(shift)


def test_align_to_undoes_a_similarity_transform() -> None:
    original = project(np.array([25.0]))[0]
    moved = _similarity(original, 0.7, 3.5, (40.0, -12.0))
    aligned = align_to(moved[None], np.ones((1, len(original)), bool), original)[0]
    np.testing.assert_allclose(aligned, original, atol=1e-9)
    assert np.abs(moved - original).max() > 1.0  # there was something to undo


def test_procrustes_aligns_transformed_copies_onto_each_other() -> None:
    original = project(np.array([-20.0]))[0]
    shapes = np.stack(
        [
            original,
            _similarity(original, -1.2, 0.2, (5.0, 7.0)),
            _similarity(original, 2.5, 9, (0, 0)),
        ]
    )
    aligned, mean = procrustes_align(shapes, np.ones(shapes.shape[:2], bool))
    assert aligned.shape == shapes.shape and mean.shape == original.shape
    assert aligned.dtype == np.float64
    for copy in aligned[1:]:
        np.testing.assert_allclose(copy, aligned[0], atol=1e-9)
    np.testing.assert_allclose(aligned[0], mean, atol=1e-9)  # identical shapes: mean = each
    np.testing.assert_allclose(mean.mean(axis=0), 0.0, atol=1e-12)  # mean-shape units
    assert np.sqrt((mean**2).sum(axis=1).mean()) == pytest.approx(1.0)


def test_invisible_points_do_not_affect_the_alignment() -> None:
    landmarks, visibility, _ = synthetic_faces(40, seed=1)
    garbage_a, hidden = hide(landmarks, 0.3, seed=2, value=-1e3)
    garbage_b = np.where(hidden[..., None], landmarks, np.nan)  # other values, same mask
    aligned_a, mean_a = procrustes_align(garbage_a, hidden)
    aligned_b, mean_b = procrustes_align(garbage_b, hidden)
    np.testing.assert_allclose(mean_a, mean_b, atol=1e-10)
    np.testing.assert_allclose(aligned_a[hidden], aligned_b[hidden], atol=1e-10)
    # ... while treating the garbage as visible changes everything.
    aligned_c, _ = procrustes_align(garbage_a, visibility)
    assert np.abs(aligned_c[hidden] - aligned_a[hidden]).max() > 0.1


def test_align_to_ignores_invisible_points() -> None:
    original = project(np.array([40.0]))[0]
    moved = _similarity(original, 0.3, 2.0, (10.0, 10.0))
    visible = np.ones(len(original), bool)
    visible[[0, 3, 12]] = False
    moved[~visible] = [1e4, -1e4]
    aligned = align_to(moved[None], visible[None], original)[0]
    np.testing.assert_allclose(aligned[visible], original[visible], atol=1e-9)


def test_shapes_without_two_visible_points_become_the_mean() -> None:
    landmarks, visibility, _ = synthetic_faces(10, seed=3)
    visibility[4] = False
    visibility[4, 2] = True  # a single visible point: no similarity transform
    aligned, mean = procrustes_align(landmarks, visibility)
    np.testing.assert_allclose(aligned[4], mean)
    assert np.isfinite(aligned).all()


def test_fill_invisible_takes_the_mean_points() -> None:
    aligned = np.arange(12.0).reshape(2, 3, 2)
    visibility = np.array([[True, False, True], [False, True, True]])
    mean = -np.ones((3, 2))
    filled = fill_invisible(aligned, visibility, mean)
    np.testing.assert_array_equal(filled[visibility], aligned[visibility])
    np.testing.assert_array_equal(filled[~visibility], -1.0)


def test_mirror_shapes_negates_x_and_reindexes() -> None:
    shape = np.arange(28.0).reshape(1, 14, 2)
    visibility = np.zeros((1, 14), bool)
    visibility[0, 0] = True
    mirrored, mirrored_visibility = mirror_shapes(shape, visibility, FLIP)
    np.testing.assert_array_equal(mirrored[0, 5], [-shape[0, 0, 0], shape[0, 0, 1]])
    assert mirrored_visibility[0, 5] and mirrored_visibility.sum() == 1
    twice, _ = mirror_shapes(mirrored, mirrored_visibility, FLIP)
    np.testing.assert_array_equal(twice, shape)


def test_fill_from_mirror_partner() -> None:
    landmarks = np.arange(28.0).reshape(1, 14, 2)
    visibility = np.ones((1, 14), bool)
    visibility[0, [0, 1, 6, 11]] = False  # 0 has its partner 5; 1 and 6 are partners; 11 axis
    filled, filled_visibility = fill_from_mirror_partner(landmarks, visibility, FLIP)
    np.testing.assert_array_equal(filled[0, 0], landmarks[0, 5])
    assert filled_visibility[0, 0]
    assert not filled_visibility[0, [1, 6, 11]].any()
    np.testing.assert_array_equal(filled[0, 1:], landmarks[0, 1:])


def test_shape_vectors_append_the_weighted_visibility_pattern() -> None:
    filled = np.arange(12.0).reshape(2, 3, 2)
    visibility = np.array([[True, False, True], [True, True, True]])
    np.testing.assert_array_equal(shape_vectors(filled, visibility, 0.0), filled.reshape(2, 6))
    vectors = shape_vectors(filled, visibility, 0.4)
    assert vectors.shape == (2, 9)
    np.testing.assert_array_equal(vectors[:, :6], filled.reshape(2, 6))
    np.testing.assert_allclose(vectors[:, 6:], [[0.2, -0.2, 0.2], [0.2, 0.2, 0.2]])


def test_observed_projection_ignores_missing_entries() -> None:
    direction = np.array([0.6, 0.0, 0.8, 0.0])
    offsets = 2.5 * direction[None].repeat(2, axis=0)
    offsets[1, 2] = 99.0  # a hidden entry's placeholder
    observed = np.array([[1, 1, 1, 1], [1, 1, 0, 1]])
    np.testing.assert_allclose(observed_projection(offsets, observed, direction), [2.5, 2.5])
    nothing = observed_projection(offsets[:1], np.array([[0, 1, 0, 1]]), direction)
    np.testing.assert_allclose(nothing, [0.0])  # nothing of d observed: the gaps count as 0


# --------------------------------------------------------------------------- repeat counts


def test_histogram_repeats_match_round_of_max_over_count() -> None:
    # K = 4 bins over [0, 8]: widths of 2; counts 10, 4, 0, 3 (8.0 falls in the last bin).
    magnitude = np.array([0.5] * 10 + [3.0] * 4 + [6.5, 7.0, 8.0])
    repeats, bins, edges = histogram_repeats(magnitude, num_bins=4)
    np.testing.assert_array_equal(bins, [0] * 10 + [1] * 4 + [3] * 3)
    np.testing.assert_allclose(edges, [0.0, 2.0, 4.0, 6.0, 8.0])
    counts = np.bincount(bins, minlength=4)
    expected = [round(counts.max() / counts[b]) for b in bins]  # 10/4 = 2.5 -> 2 (half to even)
    np.testing.assert_array_equal(repeats, expected)
    np.testing.assert_array_equal(np.unique(repeats), [1, 2, 3])
    assert repeats.dtype == np.int64


def test_histogram_repeats_cap_and_degenerate_inputs() -> None:
    magnitude = np.array([0.1] * 50 + [1.0])
    uncapped, _, _ = histogram_repeats(magnitude, 9)
    capped, _, _ = histogram_repeats(magnitude, 9, max_repeat=7)
    assert uncapped.max() == 50 and capped.max() == 7
    np.testing.assert_array_equal(capped, np.minimum(uncapped, 7))
    zeros, bins, _ = histogram_repeats(np.zeros(5), 9)
    np.testing.assert_array_equal(zeros, 1)
    np.testing.assert_array_equal(bins, 0)


def test_paper_mode_repeats_are_the_uncapped_histogram_of_its_coefficients() -> None:
    landmarks, visibility, _ = synthetic_faces(200, seed=5)
    plan = PoseBalance("paper", num_bins=9, component=0).plan(landmarks, visibility, FLIP)
    # bins follow |coefficient|: a face with a larger one is never in a lower bin, and each
    # face lies inside its bin's edges
    order = np.argsort(np.abs(plan.coefficient), kind="stable")
    assert (np.diff(plan.bins[order]) >= 0).all()
    magnitude = np.abs(plan.coefficient)
    assert (plan.bin_edges[plan.bins] <= magnitude + 1e-12).all()
    assert (magnitude <= plan.bin_edges[plan.bins + 1] + 1e-12).all()
    counts = np.bincount(plan.bins, minlength=9)
    for b in np.flatnonzero(counts):
        assert (plan.repeats[plan.bins == b] == max(1, round(counts.max() / counts[b]))).all()
    assert plan.component == 0


def test_improved_mode_caps_the_repeats() -> None:
    rng = np.random.default_rng(6)
    yaw = np.concatenate([rng.uniform(-30.0, 30.0, 300), [85.0, -88.0]])  # two pose outliers
    shapes = random_similarity(project(yaw) + rng.normal(0, 0.05, (len(yaw), 14, 2)), rng)
    visibility = np.ones(shapes.shape[:2], bool)
    uncapped = PoseBalance(max_repeat=None).plan(shapes, visibility, FLIP)
    capped = PoseBalance(max_repeat=3).plan(shapes, visibility, FLIP)
    assert uncapped.repeats[-2:].min() > 3
    assert capped.repeats.max() == 3
    np.testing.assert_array_equal(capped.repeats, np.minimum(uncapped.repeats, 3))


# --------------------------------------------------------------------------- pose component


def test_improved_mode_finds_the_yaw_component() -> None:
    landmarks, visibility, yaw = synthetic_faces(300, seed=7)
    plan = PoseBalance().plan(landmarks, visibility, FLIP)
    assert abs_correlation(plan.coefficient, yaw) > 0.8
    assert abs(np.corrcoef(plan.coefficient, yaw)[0, 1]) > 0.9  # signed: one side, one sign


def test_mirroring_flips_the_sign_of_the_coefficient() -> None:
    landmarks, visibility, _ = synthetic_faces(200, seed=8)
    plan = PoseBalance().plan(landmarks, visibility, FLIP)
    mirrored, mirrored_visibility = mirror_shapes(landmarks, visibility, FLIP)
    mirrored_plan = PoseBalance().plan(mirrored, mirrored_visibility, FLIP)
    scale = np.abs(plan.coefficient).max()
    np.testing.assert_allclose(mirrored_plan.coefficient, -plan.coefficient, atol=1e-6 * scale)
    np.testing.assert_array_equal(mirrored_plan.repeats, plan.repeats)


def test_frontal_face_has_coefficient_zero() -> None:
    landmarks, _, _ = synthetic_faces(200, seed=9)
    frontal = random_similarity(project(np.zeros(3)), np.random.default_rng(10))
    shapes = np.concatenate([landmarks, frontal])
    plan = PoseBalance().plan(shapes, np.ones(shapes.shape[:2], bool), FLIP)
    spread = plan.coefficient[: len(landmarks)].std()
    assert np.abs(plan.coefficient[-3:]).max() < 1e-3 * spread
    assert (plan.bins[-3:] == 0).all()


def test_frontal_is_zero_even_when_most_faces_turn_one_way() -> None:
    rng = np.random.default_rng(11)
    yaw = np.concatenate([rng.uniform(10.0, 60.0, 250), rng.uniform(-60.0, 0.0, 50), [0.0]])
    shapes = random_similarity(project(yaw) + rng.normal(0, 0.05, (len(yaw), 14, 2)), rng)
    shapes[-1] = random_similarity(project(np.zeros(1)), rng)[0]  # a noiseless frontal face
    plan = PoseBalance().plan(shapes, np.ones(shapes.shape[:2], bool), FLIP)
    assert abs(plan.coefficient[-1]) < 0.01 * np.abs(plan.coefficient).max()
    assert abs_correlation(plan.coefficient, yaw) > 0.8
    paper = PoseBalance("paper").plan(shapes, np.ones(shapes.shape[:2], bool), FLIP)
    assert abs(paper.coefficient[-1]) > 0.2 * np.abs(paper.coefficient).max()  # mean != frontal


def test_improved_mode_with_30_percent_of_points_invisible() -> None:
    landmarks, _, yaw = synthetic_faces(300, seed=12)
    hidden_landmarks, visible = hide(landmarks, 0.3, seed=13, value=-1e3)
    assert 0.27 < (~visible).mean() < 0.33
    # points missing at random, not by pose: the visibility pattern carries no pose
    plan = PoseBalance(visibility_weight=0).plan(hidden_landmarks, visible, FLIP)
    assert abs_correlation(plan.coefficient, yaw) > 0.8
    assert np.isfinite(plan.coefficient).all()
    nan_landmarks = np.where(visible[..., None], landmarks, np.nan)
    nan_plan = PoseBalance(visibility_weight=0).plan(nan_landmarks, visible, FLIP)
    np.testing.assert_allclose(nan_plan.coefficient, plan.coefficient, atol=1e-9)


def test_visibility_pattern_reveals_self_occluded_profiles() -> None:
    landmarks, visible, yaw = self_occluded_faces(400, seed=20)
    assert 0.1 < (~visible).mean() < 0.2
    coordinates_only = PoseBalance(visibility_weight=0).plan(landmarks, visible, FLIP)
    with_pattern = PoseBalance().plan(landmarks, visible, FLIP)
    r_coordinates = abs_correlation(coordinates_only.coefficient, yaw)  # measured 0.88
    r_pattern = abs_correlation(with_pattern.coefficient, yaw)  # measured 0.96
    assert r_pattern > 0.94 and r_pattern > r_coordinates + 0.05
    mirrored, mirrored_visible = mirror_shapes(landmarks, visible, FLIP)
    mirrored_plan = PoseBalance().plan(mirrored, mirrored_visible, FLIP)
    scale = np.abs(with_pattern.coefficient).max()
    np.testing.assert_allclose(
        mirrored_plan.coefficient, -with_pattern.coefficient, atol=1e-6 * scale
    )


def test_paper_mode_survives_non_finite_invisible_points() -> None:
    landmarks, _, _ = synthetic_faces(100, seed=14)
    nan_landmarks, visible = hide(landmarks, 0.2, seed=15, value=np.nan)
    plan = PoseBalance("paper").plan(nan_landmarks, visible, FLIP)
    assert np.isfinite(plan.coefficient).all() and (plan.repeats >= 1).all()


def test_pose_quantile_flags_bin_faces_by_their_own_pose() -> None:
    landmarks, visible, yaw = self_occluded_faces(400, seed=21)
    flags = pose_quantile_flags(landmarks, visible, FLIP, [0.5, 0.9])
    assert list(flags) == ["pose_q0_50", "pose_q50_90", "pose_q90_100"]
    stacked = np.stack(list(flags.values()))
    assert (stacked.sum(axis=0) == 1).all()  # every face in exactly one bin
    assert [int(f.sum()) for f in flags.values()] == [200, 160, 40]
    medians = [np.median(np.abs(yaw[f])) for f in flags.values()]
    assert medians[0] < medians[1] < medians[2]
    assert medians[2] > 60.0  # the top 10% are the profiles


@pytest.mark.parametrize("quantiles", [[], [0.0, 0.5], [0.9, 0.5], [0.5, 1.0], [0.5, 0.5]])
def test_pose_quantiles_must_increase_inside_0_1(quantiles: list) -> None:
    landmarks, visible, _ = self_occluded_faces(20, seed=22)
    with pytest.raises(ValueError, match=r"data\.pose_quantiles"):
        pose_quantile_flags(landmarks, visible, FLIP, quantiles)


# --------------------------------------------------------------------------- API


def test_plan_shapes_dtypes_and_call() -> None:
    landmarks, visibility, _ = synthetic_faces(120, seed=16)
    for strategy in (PoseBalance(), PoseBalance("paper"), PoseBalance(num_bins=1)):
        plan = strategy.plan(landmarks.astype(np.float32), visibility, FLIP)
        assert isinstance(plan, BalancePlan)
        assert plan.repeats.shape == (120,) and plan.repeats.dtype == np.int64
        assert plan.coefficient.shape == (120,) and plan.coefficient.dtype == np.float64
        assert plan.bins.shape == (120,) and plan.bins.dtype == np.int64
        assert plan.bin_edges.shape == (strategy.num_bins + 1,)
        assert (plan.repeats >= 1).all()
        assert ((plan.bins >= 0) & (plan.bins < strategy.num_bins)).all()
        assert 0 <= plan.component < 28
        np.testing.assert_array_equal(strategy(landmarks, visibility, FLIP), plan.repeats)
    np.testing.assert_array_equal(PoseBalance(num_bins=1)(landmarks, visibility, FLIP), 1)
    np.testing.assert_array_equal(NoBalance()(landmarks, visibility, FLIP), np.ones(120))


def test_plans_are_deterministic() -> None:
    landmarks, _, _ = synthetic_faces(150, seed=17)
    hidden_landmarks, visible = hide(landmarks, 0.2, seed=18)
    for mode in ("paper", "improved"):
        first = PoseBalance(mode).plan(hidden_landmarks, visible, FLIP)
        second = PoseBalance(mode).plan(hidden_landmarks.copy(), visible.copy(), FLIP)
        np.testing.assert_array_equal(first.coefficient, second.coefficient)
        np.testing.assert_array_equal(first.repeats, second.repeats)


def test_default_max_repeat() -> None:
    assert PoseBalance().max_repeat == DEFAULT_MAX_REPEAT
    assert 1 <= DEFAULT_MAX_REPEAT <= 25


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"num_bins": 0}, "balance.num_bins"),
        ({"num_bins": 2.5}, "balance.num_bins"),
        ({"max_repeat": 0}, "balance.max_repeat"),
        ({"max_repeat": -3}, "balance.max_repeat"),
        ({"mode": "pdb"}, "balance.mode"),
        ({"component": -1}, "balance.component"),
        ({"fill": "zero"}, "balance.fill"),
        ({"visibility_weight": -0.1}, "balance.visibility_weight"),
        ({"visibility_weight": float("nan")}, "balance.visibility_weight"),
    ],
)
def test_invalid_settings_name_the_config_key(kwargs: dict, key: str) -> None:
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        PoseBalance(**kwargs)


def test_component_out_of_range_names_the_config_key() -> None:
    landmarks, visibility, _ = synthetic_faces(50, seed=19)
    with pytest.raises(ValueError, match=r"balance\.component"):
        PoseBalance("paper", component=28).plan(landmarks, visibility, FLIP)  # 14 points: 0-27
    with pytest.raises(ValueError, match=r"balance\.component"):
        PoseBalance("paper", component=20).plan(landmarks[:10], visibility[:10], FLIP)
    PoseBalance("paper", component=27).plan(landmarks, visibility, FLIP)


# --------------------------------------------------------------------------- real AFLW shapes


REAL_SHAPES = REAL_AFLW_SHAPES
needs_real_shapes = needs_real_aflw_shapes


@pytest.fixture(scope="module")
def aflw() -> tuple[np.ndarray, np.ndarray, np.ndarray, BalancePlan]:
    """The real AFLW shapes, visibility, |yaw| and the default improved plan."""
    from wingface.data.formats.aflw import load_aflw_shapes

    landmarks, visibility, yaw = load_aflw_shapes(
        REAL_SHAPES / "AFLW_GT_pts21.npy", REAL_SHAPES / "AFLW_GT_crop_yaws.npy"
    )
    plan = PoseBalance().plan(landmarks, visibility, AFLW19.flip_array())
    return landmarks, visibility, np.abs(yaw.astype(np.float64)), plan


def _share(abs_yaw: np.ndarray, repeats: np.ndarray, low: float) -> float:
    """Share of faces with |yaw| >= ``low`` deg, weighted by ``repeats``."""
    return float(repeats[abs_yaw >= low].sum() / repeats.sum())


@needs_real_shapes
def test_real_aflw_improved_mode_finds_pose_and_respects_the_cap(aflw: tuple) -> None:
    _, _, abs_yaw, plan = aflw
    assert plan.repeats.max() <= min(DEFAULT_MAX_REPEAT, 25)
    assert abs_correlation(plan.coefficient, abs_yaw) > 0.75  # measured 0.80 (0.35 without
    # the visibility pattern, 0.48 for the paper mode)
    assert _share(abs_yaw, plan.repeats, 60) > _share(abs_yaw, np.ones_like(plan.repeats), 60)
    before, after = (
        _share(abs_yaw, np.ones_like(plan.repeats), 30),
        _share(abs_yaw, plan.repeats, 30),
    )
    assert before == pytest.approx(0.450, abs=0.001)
    assert after > before + 0.10  # 45.0% -> 55.6% of faces turned by 30 deg or more
