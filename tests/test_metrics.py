"""Tests for wingface.metrics against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from wingface.landmarks import IBUG68
from wingface.metrics import (
    CEDAUC,
    NORMALISATIONS,
    FailureRate,
    LandmarkNME,
    MeanOffset,
    PerLandmarkNME,
    ced_auc,
    ced_curve,
    failure_rate,
    normalising_distance,
    per_image_nme,
)

# Eye contours of the hand-made face (0-based 300W indices).
#   right eye 36..41: x = 30, 32, 37, 39, 38, 34 (sum 210), y sum 300 -> centre (35, 50)
#   left eye  42..47: x = 61, 63, 67, 70, 66, 63 (sum 390), y sum 300 -> centre (65, 50)
# so inter-ocular = 70 - 30 = 40 px and inter-pupil = 65 - 35 = 30 px. The eye centres are not
# the corner midpoints (34.5 and 65.5, which would give 31 px).
_EYES = {
    36: (30.0, 50.0),
    37: (32.0, 47.0),
    38: (37.0, 47.0),
    39: (39.0, 50.0),
    40: (38.0, 53.0),
    41: (34.0, 53.0),
    42: (61.0, 50.0),
    43: (63.0, 47.0),
    44: (67.0, 47.0),
    45: (70.0, 50.0),
    46: (66.0, 53.0),
    47: (63.0, 53.0),
}
INTER_OCULAR = 40.0
INTER_PUPIL = 30.0
# Tight box: point 0 = (20, 10) and point 16 = (80, 90) are the extremes, every other point lies
# in x in [25, 75], y in [15, 85]  ->  w = 60, h = 80.
BOX = math.sqrt(60.0 * 80.0)  # 40 * sqrt(3)
BOX_DIAG = 100.0


def _face() -> torch.Tensor:
    """The hand-made ``(68, 2)`` float64 face described above."""
    pts = torch.empty(68, 2, dtype=torch.float64)
    for i in range(68):
        pts[i, 0] = 25.0 + (i * 7) % 51
        pts[i, 1] = 15.0 + (i * 13) % 71
    for i, xy in _EYES.items():
        pts[i] = torch.tensor(xy, dtype=torch.float64)
    pts[0] = torch.tensor([20.0, 10.0], dtype=torch.float64)
    pts[16] = torch.tensor([80.0, 90.0], dtype=torch.float64)
    return pts


def _random_batch(
    batch: int, seed: int, dtype: torch.dtype = torch.float64
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Randomly placed / scaled copies of the face, noisy predictions and a visibility mask.

    Eye points are always visible; the per-image noise level varies so that NMEs spread around
    0.10.
    """
    gen = torch.Generator().manual_seed(seed)
    face = _face()
    scale = 0.5 + 2.0 * torch.rand(batch, 1, 1, generator=gen, dtype=torch.float64)
    shift = 100.0 * torch.rand(batch, 1, 2, generator=gen, dtype=torch.float64)
    target = face * scale + shift
    noise_level = 8.0 * torch.rand(batch, 1, 1, generator=gen, dtype=torch.float64)
    pred = target + noise_level * torch.randn(batch, 68, 2, generator=gen, dtype=torch.float64)
    visibility = torch.rand(batch, 68, generator=gen) > 0.2
    visibility[:, 36:48] = True
    return pred.to(dtype), target.to(dtype), visibility


# ---------------------------------------------------------------------------------------------
# normalising distances
# ---------------------------------------------------------------------------------------------


def test_face_is_consistent_with_the_scheme() -> None:
    assert IBUG68.outer_eye_corners == (36, 45)
    assert IBUG68.right_eye == tuple(range(36, 42))
    assert IBUG68.left_eye == tuple(range(42, 48))


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("inter_ocular", INTER_OCULAR),
        ("inter_pupil", INTER_PUPIL),
        ("box", BOX),
        ("box_diag", BOX_DIAG),
    ],
)
def test_normalising_distance_hand_values(kind: str, expected: float) -> None:
    target = _face().unsqueeze(0)
    dist = normalising_distance(target, None, kind, IBUG68)
    assert dist.shape == (1,)
    assert dist.dtype == torch.float64
    assert float(dist[0]) == pytest.approx(expected, rel=1e-12)
    # the scheme may also be given by name
    assert float(normalising_distance(target, None, kind, "300w")[0]) == pytest.approx(
        expected, rel=1e-12
    )


def test_box_norms_use_only_visible_points() -> None:
    face = _face()
    face[15] = torch.tensor([80.0, 90.0], dtype=torch.float64)  # keeps the box when 16 is hidden
    face[16] = torch.tensor([200.0, 300.0], dtype=torch.float64)
    target = face.unsqueeze(0)
    visibility = torch.ones(1, 68, dtype=torch.bool)
    visibility[0, 16] = False

    # with point 16 hidden: w = 60, h = 80
    assert float(normalising_distance(target, visibility, "box")[0]) == pytest.approx(BOX)
    assert float(normalising_distance(target, visibility, "box_diag")[0]) == pytest.approx(100.0)
    # with everything visible: w = 200 - 20 = 180, h = 300 - 10 = 290
    assert float(normalising_distance(target, None, "box")[0]) == pytest.approx(
        math.sqrt(180.0 * 290.0)
    )
    assert float(normalising_distance(target, None, "box_diag")[0]) == pytest.approx(
        math.sqrt(180.0**2 + 290.0**2)
    )


def test_box_norms_on_a_small_shape() -> None:
    # three points spanning w = 8, h = 2: box = sqrt(16) = 4, diag = sqrt(68)
    target = torch.tensor([[[1.0, 1.0], [9.0, 2.0], [5.0, 3.0]]])
    assert normalising_distance(target, None, "box").tolist() == pytest.approx([4.0])
    assert normalising_distance(target, None, "box_diag").tolist() == pytest.approx(
        [math.sqrt(68.0)]
    )


def test_batch_of_distances_keeps_per_sample_values() -> None:
    target = torch.stack([_face(), 2.0 * _face() + 5.0])
    dist = normalising_distance(target, None, "inter_ocular")
    assert dist.tolist() == pytest.approx([INTER_OCULAR, 2.0 * INTER_OCULAR])


def test_unknown_kind_names_accepted_values() -> None:
    with pytest.raises(ValueError, match="kind") as info:
        normalising_distance(_face().unsqueeze(0), None, "inter_ear")
    for name in NORMALISATIONS:
        assert name in str(info.value)


def test_zero_distance_names_the_sample() -> None:
    target = torch.stack([_face(), _face()])
    target[1, 45] = target[1, 36]  # collapsed eye corners in sample 1
    with pytest.raises(ValueError, match="sample 1"):
        normalising_distance(target, None, "inter_ocular")
    single_point = torch.zeros(2, 68, dtype=torch.bool)
    single_point[:, 0] = True  # a one-point box has zero size
    with pytest.raises(ValueError, match="sample 0"):
        normalising_distance(torch.stack([_face(), _face()]), single_point, "box")


def test_eye_norm_requires_visible_eye_points() -> None:
    target = torch.stack([_face(), _face()])
    visibility = torch.ones(2, 68, dtype=torch.bool)
    visibility[1, 40] = False  # a right-eye contour point: fine for inter-ocular only
    assert normalising_distance(target, visibility, "inter_ocular").tolist() == pytest.approx(
        [INTER_OCULAR, INTER_OCULAR]
    )
    with pytest.raises(ValueError, match="sample 1"):
        normalising_distance(target, visibility, "inter_pupil")


def test_wrong_number_of_points_for_eye_norm() -> None:
    with pytest.raises(ValueError, match="68"):
        normalising_distance(torch.zeros(1, 5, 2), None, "inter_ocular")


# ---------------------------------------------------------------------------------------------
# per-image NME
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "norm"),
    [
        ("inter_ocular", INTER_OCULAR),
        ("inter_pupil", INTER_PUPIL),
        ("box", BOX),
        ("box_diag", BOX_DIAG),
    ],
)
def test_shift_by_3_4_gives_5_over_norm(kind: str, norm: float) -> None:
    target = _face().unsqueeze(0)
    pred = target + torch.tensor([3.0, 4.0], dtype=torch.float64)
    dist = normalising_distance(target, None, kind)
    nme = per_image_nme(pred, target, None, dist)
    assert nme.shape == (1,)
    assert float(nme[0]) == pytest.approx(5.0 / norm, rel=1e-12)

    metric = LandmarkNME(normalisation=kind)
    metric.update(pred, target)
    assert float(metric.compute()) == pytest.approx(5.0 / norm, rel=1e-6)


def test_exact_fractions_for_the_eye_norms() -> None:
    target = _face().unsqueeze(0)
    pred = target + torch.tensor([3.0, 4.0], dtype=torch.float64)
    io = per_image_nme(pred, target, None, normalising_distance(target, None, "inter_ocular"))
    ip = per_image_nme(pred, target, None, normalising_distance(target, None, "inter_pupil"))
    assert float(io[0]) == 5.0 / 40.0
    assert float(ip[0]) == pytest.approx(5.0 / 30.0, abs=1e-15)


def test_visibility_mask_excludes_points() -> None:
    target = _face().unsqueeze(0)
    pred = target.clone()
    pred[0, 10] += torch.tensor([30.0, 40.0], dtype=torch.float64)  # error 50 px
    pred[0, 20] += torch.tensor([6.0, 8.0], dtype=torch.float64)  # error 10 px
    visibility = torch.ones(1, 68, dtype=torch.bool)
    visibility[0, 10] = False
    norm = torch.tensor([INTER_OCULAR], dtype=torch.float64)

    masked = per_image_nme(pred, target, visibility, norm)
    assert float(masked[0]) == pytest.approx(10.0 / 67.0 / 40.0, rel=1e-12)
    unmasked = per_image_nme(pred, target, None, norm)
    assert float(unmasked[0]) == pytest.approx(60.0 / 68.0 / 40.0, rel=1e-12)

    metric = LandmarkNME()
    metric.update(pred, target, visibility)
    assert float(metric.compute()) == pytest.approx(10.0 / 67.0 / 40.0, rel=1e-6)


def test_norm_is_measured_on_the_target_not_the_prediction() -> None:
    target = _face().unsqueeze(0)
    pred = target.clone()
    pred[0, 36] += torch.tensor([-6.0, -8.0], dtype=torch.float64)  # widens the predicted eyes
    metric = LandmarkNME("inter_ocular")
    metric.update(pred, target)
    assert float(metric.compute()) == pytest.approx(10.0 / 68.0 / 40.0, rel=1e-6)


def test_image_without_visible_points_is_rejected() -> None:
    target = torch.stack([_face(), _face()])
    visibility = torch.ones(2, 68, dtype=torch.bool)
    visibility[1] = False
    with pytest.raises(ValueError, match="sample 1"):
        per_image_nme(target, target, visibility, torch.ones(2, dtype=torch.float64))


def test_shape_mismatch_is_rejected() -> None:
    with pytest.raises(ValueError, match="shape"):
        per_image_nme(torch.zeros(1, 68, 2), torch.zeros(1, 67, 2), None, torch.ones(1))
    with pytest.raises(ValueError, match="visibility"):
        per_image_nme(
            torch.zeros(1, 68, 2),
            torch.zeros(1, 68, 2),
            torch.ones(1, 67, dtype=torch.bool),
            torch.ones(1),
        )


# ---------------------------------------------------------------------------------------------
# failure rate, CED and AUC
# ---------------------------------------------------------------------------------------------

HAND_NMES = [0.02, 0.05, 0.09, 0.2]


def test_failure_rate_hand_values() -> None:
    # only 0.2 exceeds 0.10
    assert failure_rate(HAND_NMES, 0.10) == pytest.approx(0.25)
    assert failure_rate(torch.tensor(HAND_NMES), 0.08) == pytest.approx(0.5)
    assert failure_rate(HAND_NMES, 0.04) == pytest.approx(0.75)
    assert failure_rate(HAND_NMES, 0.5) == 0.0
    # strictly greater: an NME equal to the threshold is not a failure
    assert failure_rate([0.25, 0.5], 0.25) == pytest.approx(0.5)
    assert failure_rate([0.1, 0.3], 0.1) == pytest.approx(0.5)
    assert failure_rate(torch.tensor([0.1, 0.3]), 0.1) == pytest.approx(0.5)


def test_ced_auc_hand_values() -> None:
    expected = (0.08 + 0.05 + 0.01 + 0.0) / 4 / 0.10  # 0.35
    assert ced_auc(HAND_NMES, 0.10) == pytest.approx(expected, abs=1e-7)
    assert ced_auc(HAND_NMES, 0.10) == pytest.approx(0.35, abs=1e-7)
    assert ced_auc([0.0, 0.0], 0.10) == pytest.approx(1.0)
    assert ced_auc([0.1, 0.3], 0.10) == pytest.approx(0.0, abs=1e-7)
    # threshold 0.2: mean(0.18, 0.15, 0.11, 0) / 0.2 = 0.55
    assert ced_auc(HAND_NMES, 0.2) == pytest.approx(0.55, abs=1e-7)


def test_ced_curve_hand_values() -> None:
    x, y = ced_curve(HAND_NMES, 0.09, num_steps=4)  # x = 0, 0.03, 0.06, 0.09
    assert x.tolist() == pytest.approx([0.0, 0.03, 0.06, 0.09])
    assert y.tolist() == pytest.approx([0.0, 0.25, 0.5, 0.75])
    # NME <= x is inclusive at the grid points
    x, y = ced_curve([0.0, 0.25], 0.25, num_steps=2)
    assert y.tolist() == pytest.approx([0.5, 1.0])


def test_ced_auc_matches_fine_numerical_integral() -> None:
    gen = torch.Generator().manual_seed(0)
    nmes = 0.15 * torch.rand(57, generator=gen, dtype=torch.float64)  # a third above 0.10
    for values in (nmes, torch.tensor(HAND_NMES, dtype=torch.float64)):
        x, y = ced_curve(values, 0.10, num_steps=20001)
        numeric = float(torch.trapezoid(y, x)) / 0.10
        assert ced_auc(values, 0.10) == pytest.approx(numeric, abs=1e-3)


@pytest.mark.parametrize("bad", [0.0, -0.1])
def test_threshold_must_be_positive(bad: float) -> None:
    with pytest.raises(ValueError, match="threshold"):
        failure_rate(HAND_NMES, bad)
    with pytest.raises(ValueError, match="threshold"):
        ced_auc(HAND_NMES, bad)
    with pytest.raises(ValueError, match="threshold"):
        ced_curve(HAND_NMES, bad, 10)
    with pytest.raises(ValueError, match="threshold"):
        FailureRate(threshold=bad)
    with pytest.raises(ValueError, match="threshold"):
        CEDAUC(threshold=bad)


def test_empty_or_nan_nmes_are_rejected() -> None:
    with pytest.raises(ValueError, match="empty"):
        failure_rate([], 0.1)
    with pytest.raises(ValueError, match="NaN"):
        ced_auc([0.1, float("nan")], 0.1)
    with pytest.raises(ValueError, match="num_steps"):
        ced_curve(HAND_NMES, 0.1, num_steps=1)


# ---------------------------------------------------------------------------------------------
# torchmetrics classes
# ---------------------------------------------------------------------------------------------


def test_metric_flags_and_argument_validation() -> None:
    assert LandmarkNME.higher_is_better is False
    assert FailureRate.higher_is_better is False
    assert CEDAUC.higher_is_better is True
    for cls in (LandmarkNME, FailureRate, CEDAUC):
        assert cls.full_state_update is False
        with pytest.raises(ValueError, match="normalisation"):
            cls(normalisation="ears")
    with pytest.raises(KeyError):
        LandmarkNME(scheme="nope")


def _reference(pred: torch.Tensor, target: torch.Tensor, vis: torch.Tensor, kind: str):
    return per_image_nme(pred, target, vis, normalising_distance(target, vis, kind))


@pytest.mark.parametrize("kind", NORMALISATIONS)
def test_accumulation_matches_one_shot(kind: str) -> None:
    batches = [_random_batch(n, seed) for n, seed in ((3, 1), (5, 2), (1, 3))]
    nme, fr, auc = LandmarkNME(kind), FailureRate(0.10, kind), CEDAUC(0.10, kind)
    for pred, target, vis in batches:
        for metric in (nme, fr, auc):
            metric.update(pred, target, vis)

    pred, target, vis = (torch.cat(parts) for parts in zip(*batches, strict=True))
    expected = _reference(pred, target, vis, kind)
    assert 0 < failure_rate(expected, 0.10) < 1  # the data straddle the threshold

    torch.testing.assert_close(nme.per_image(), expected.float(), rtol=1e-5, atol=1e-7)
    assert nme.per_image().dtype == torch.float32
    assert float(nme.compute()) == pytest.approx(float(expected.mean()), rel=1e-5)
    assert float(fr.compute()) == pytest.approx(failure_rate(expected, 0.10), abs=1e-7)
    assert float(auc.compute()) == pytest.approx(ced_auc(expected, 0.10), abs=1e-6)
    for metric in (nme, fr, auc):
        assert metric.compute().dtype == torch.float32


def test_reset_clears_the_state() -> None:
    metric = LandmarkNME()
    pred, target, vis = _random_batch(4, 5)
    metric.update(pred, target, vis)
    assert metric.per_image().shape == (4,)
    metric.reset()
    assert metric.per_image().shape == (0,)

    pred2, target2, vis2 = _random_batch(2, 6)
    metric.update(pred2, target2, vis2)
    expected = _reference(pred2, target2, vis2, "inter_ocular")
    torch.testing.assert_close(metric.per_image(), expected.float(), rtol=1e-5, atol=1e-7)
    assert float(metric.compute()) == pytest.approx(float(expected.mean()), rel=1e-5)


def test_forward_returns_batch_value_and_accumulates() -> None:
    metric = LandmarkNME()
    (p1, t1, v1), (p2, t2, v2) = _random_batch(3, 7), _random_batch(2, 8)
    first = metric(p1, t1, v1)
    metric(p2, t2, v2)
    e1 = _reference(p1, t1, v1, "inter_ocular")
    e2 = _reference(p2, t2, v2, "inter_ocular")
    assert float(first) == pytest.approx(float(e1.mean()), rel=1e-5)
    assert float(metric.compute()) == pytest.approx(float(torch.cat([e1, e2]).mean()), rel=1e-5)


def test_states_concatenate_when_merged() -> None:
    # what a DDP gather does: per-process lists of per-image values are concatenated
    (p1, t1, v1), (p2, t2, v2) = _random_batch(3, 9), _random_batch(4, 10)
    whole, part_a, part_b = CEDAUC(0.10), CEDAUC(0.10), CEDAUC(0.10)
    whole.update(p1, t1, v1)
    whole.update(p2, t2, v2)
    part_a.update(p1, t1, v1)
    part_b.update(p2, t2, v2)
    part_a.merge_state(part_b)
    merged = part_a.per_image()
    assert merged.shape == (7,)
    torch.testing.assert_close(merged.sort().values, whole.per_image().sort().values)
    assert float(part_a.compute()) == pytest.approx(float(whole.compute()), abs=1e-7)


def test_bf16_inputs_give_float32_results() -> None:
    pred64, target64, vis = _random_batch(6, 11)
    pred_bf, target_bf = pred64.to(torch.bfloat16), target64.to(torch.bfloat16)

    metric_bf, metric_32 = LandmarkNME(), LandmarkNME()
    metric_bf.update(pred_bf, target_bf, vis)
    metric_32.update(pred64.float(), target64.float(), vis)
    assert metric_bf.compute().dtype == torch.float32
    assert metric_bf.per_image().dtype == torch.float32

    # computed in float32 on the bf16-rounded inputs (a bf16 computation would be ~1e-2 off)
    exact = _reference(pred_bf.double(), target_bf.double(), vis, "inter_ocular")
    torch.testing.assert_close(metric_bf.per_image(), exact.float(), rtol=1e-5, atol=1e-7)
    # close to the float32 computation on the original inputs: bf16 rounding moves each
    # coordinate (< 512 px) by at most 1 px, so each point error and the inter-ocular distance
    # by at most d = 2*sqrt(2) px, hence |nme' - nme| <= d * (1 + nme) / (norm - d)
    d = 2 * math.sqrt(2)
    nme_32 = metric_32.per_image()
    diff = (metric_bf.per_image() - nme_32).abs()
    norm = normalising_distance(target64, vis, "inter_ocular").float()
    bound = d * (1 + nme_32) / (norm - d)
    assert float(target64.abs().max()) < 512
    assert bool((diff <= bound).all())
    assert float(metric_bf.compute()) == pytest.approx(float(metric_32.compute()), rel=0.05)

    fr = FailureRate(0.10)
    fr.update(pred_bf, target_bf, vis)
    assert fr.compute().dtype == torch.float32


def _similarity(points: torch.Tensor, scale: float, angle: float, shift: tuple[float, float]):
    c, s = math.cos(angle), math.sin(angle)
    rot = torch.tensor([[c, -s], [s, c]], dtype=points.dtype)
    return scale * points @ rot.T + torch.tensor(shift, dtype=points.dtype)


@pytest.mark.parametrize(
    ("kind", "angle"),
    [
        ("inter_ocular", 0.7),
        ("inter_pupil", -2.3),
        # an axis-aligned box is only invariant to rotations by multiples of 90 degrees
        ("box", math.pi / 2),
        ("box_diag", math.pi),
    ],
)
def test_nme_is_similarity_invariant(kind: str, angle: float) -> None:
    pred, target, vis = _random_batch(4, 12)
    before = _reference(pred, target, vis, kind)
    pred_t = _similarity(pred, 1.7, angle, (13.0, -7.5))
    target_t = _similarity(target, 1.7, angle, (13.0, -7.5))
    assert not torch.allclose(target_t, target)
    after = _reference(pred_t, target_t, vis, kind)
    torch.testing.assert_close(after, before, rtol=1e-10, atol=1e-12)

    metric = LandmarkNME(kind)
    metric.update(pred_t, target_t, vis)
    assert float(metric.compute()) == pytest.approx(float(before.mean()), rel=1e-5)


def test_box_norm_is_not_rotation_invariant() -> None:
    # documents the definition: the box is axis-aligned in image coordinates
    target = _face().unsqueeze(0)
    rotated = _similarity(target, 1.0, math.pi / 4, (0.0, 0.0))
    assert float(normalising_distance(rotated, None, "box")[0]) != pytest.approx(BOX, rel=1e-3)


def test_metric_classes_on_hand_made_batch() -> None:
    # per-image NMEs (inter-ocular 40 px): shift (3, 4) -> 0.125, shift (6, 8) -> 0.25
    target = torch.stack([_face(), _face()]).float()
    pred = target + torch.tensor([[[3.0, 4.0]], [[6.0, 8.0]]])
    nme = LandmarkNME()
    nme.update(pred, target)
    assert nme.per_image().tolist() == [0.125, 0.25]
    assert float(nme.compute()) == pytest.approx(0.1875)

    # strictly greater: the image at exactly 0.125 is not a failure
    for threshold, expected in ((0.125, 0.5), (0.12, 1.0), (0.25, 0.0)):
        fr = FailureRate(threshold)
        fr.update(pred, target)
        assert float(fr.compute()) == pytest.approx(expected)

    # AUC at 0.5: mean(0.375, 0.25) / 0.5 = 0.625
    auc = CEDAUC(0.5)
    auc.update(pred, target)
    assert float(auc.compute()) == pytest.approx(0.625)


def test_per_landmark_nme_averages_each_point_over_the_faces_where_it_is_visible() -> None:
    # two faces of 3 points, box normalisation sqrt(w*h) of the visible ground truth:
    # face 0 spans 4 x 9 → d = 6; face 1's visible points (0, 2), (2, 0) span 2 x 2 → d = 2
    target = torch.tensor(
        [[[0.0, 0.0], [4.0, 0.0], [0.0, 9.0]], [[0.0, 2.0], [2.0, 0.0], [0.0, 2.0]]]
    )
    visibility = torch.tensor([[True, True, True], [True, True, False]])
    pred = target.clone()
    pred[0, 0] += torch.tensor([3.0, 0.0])  # error 3 / 6 = 0.5
    pred[0, 2] += torch.tensor([0.0, 1.2])  # error 1.2 / 6 = 0.2
    pred[1, 0] += torch.tensor([0.6, 0.8])  # error 1 / 2 = 0.5
    pred[1, 1] += torch.tensor([0.0, 0.4])  # error 0.4 / 2 = 0.2
    pred[1, 2] += torch.tensor([50.0, 50.0])  # hidden: ignored
    metric = PerLandmarkNME(3, "box", "300w")
    metric.update(pred[:1], target[:1], visibility[:1])
    metric.update(pred[1:], target[1:], visibility[1:])
    result = metric.compute()
    torch.testing.assert_close(result["nme"], torch.tensor([0.5, 0.1, 0.2]))
    torch.testing.assert_close(result["faces"], torch.tensor([2.0, 2.0, 1.0]))


def test_mean_offset_is_the_mean_signed_error_of_the_visible_points() -> None:
    """Two batches: visible points off by (+0.5, -1) and (+1.5, +2) px, 3 and 1 of them; the
    invisible points are off by 100 px and must not count."""
    metric = MeanOffset()
    target = torch.zeros(2, 2, 2)
    pred = target + torch.tensor([0.5, -1.0])
    pred[1, 1] = torch.tensor([100.0, 100.0])
    metric.update(pred, target, torch.tensor([[True, True], [True, False]]))
    pred = target[:1] + torch.tensor([100.0, -100.0])
    pred[0, 0] = torch.tensor([1.5, 2.0])
    metric.update(pred, target[:1], torch.tensor([[True, False]]))
    torch.testing.assert_close(metric.compute(), torch.tensor([(1.5 + 1.5) / 4, (-3.0 + 2.0) / 4]))
    with pytest.raises(ValueError, match=r"pred must have shape \(B, L, 2\)"):
        metric.update(torch.zeros(2, 3), torch.zeros(2, 3))
