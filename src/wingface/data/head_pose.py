"""Head pose (yaw, pitch, roll) from 2-D landmarks alone: a rigid 3-D face template fitted with a
scaled-orthographic (weak-perspective) camera.

The template of each landmark scheme (:func:`face_template`) is the synthetic faces' 68-point
3-D mean face (:func:`wingface.data.synthetic.mean_face_3d`; head frame: x to the image right of
a frontal face, y down, z towards the camera) or, for the other schemes, points built from it
by the landmark correspondences of :data:`TEMPLATE_FROM_300W` (each point the mean of the
68-point template points it corresponds to). Face-contour points other than the chin are left
out of the fit (:data:`CONTOUR_POINTS`): they mark the silhouette, which slides over the face
as the head turns, so no rigid 3-D point stays under them (on synthetic faces, whose true pose
is known, keeping them raised the yaw error of faces turned 60-90 degrees from 0.9 to 21.6
degrees).

:func:`fit_head_pose` fits, per face and on its visible rigid points only, ``x ≈ s R[:2] X + t``:
the least-squares affine camera, then the nearest scaled rotation (SVD: the rows of ``R[:2]``
orthonormal, ``R[2] = R[0] × R[1]``), re-weighted a few times with Huber weights on the
residuals so that a few badly placed points do not tilt the fit. Angles follow the synthetic
generator's ``R = Rz(roll) Rx(pitch) Ry(yaw)`` (:func:`wingface.data.synthetic.rotation_matrix`),
in degrees. A face with fewer than :data:`MIN_FIT_POINTS` visible points is not fitted (NaN
angles, ``fitted`` False).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_FIT_POINTS = 6
"""Fewer visible points than this leave a face's pose unknown (an affine camera has 8 degrees
of freedom; six points leave a margin for the robust weights)."""

HUBER_K = 1.345
"""Huber threshold in robust standard deviations of a face's residuals."""

_EYE_R, _EYE_L = (37, 38, 40, 41), (43, 44, 46, 47)

TEMPLATE_FROM_300W: dict[str, list[tuple[int, ...]]] = {
    # AFLW-19 (landmarks.AFLW19 order, "left" = image left = the subject's right)
    "aflw19": [
        (17,), (19,), (21,),  # image-left brow: outer corner, centre, inner corner
        (22,), (24,), (26,),  # image-right brow: inner corner, centre, outer corner
        (36,), _EYE_R, (39,),  # image-left eye: outer corner, centre, inner corner
        (42,), _EYE_L, (45,),  # image-right eye: inner corner, centre, outer corner
        (31,), (30,), (35,),  # nose: image-left wing, tip, image-right wing
        (48,), (62, 66), (54,),  # mouth: image-left corner, centre, image-right corner
        (8,),  # chin
    ],
    # COFW-29 (the LFPW 29-point order; "left" = image left). Each brow's lower centre sits on
    # its upper centre (the template has no brow thickness); the nose's lower centre is the
    # subnasale (33).
    "cofw": [
        (17,), (26,), (21,), (22,),  # brows: outer corners, inner corners
        (19,), (19,), (24,), (24,),  # image-left brow upper, lower; image-right brow upper, lower
        (36,), (45,), (39,), (42,),  # eyes: outer corners, inner corners
        (37, 38), (40, 41), (43, 44), (46, 47),  # image-left lids upper, lower; image-right
        _EYE_R, _EYE_L,  # pupils as eye centres
        (31,), (35,), (30,), (33,),  # nose: image-left wing, image-right wing, tip, subnasale
        (48,), (54,), (51,), (62,), (66,), (57,),  # mouth corners; upper lip top, bottom;
        # lower lip top, bottom
        (8,),  # chin
    ],
}  # fmt: skip


def _wflw98_from_300w() -> list[tuple[int, ...]]:
    """WFLW-98 from 300-W points: the 68 points WFLW shares (jaw i = contour 2i, brows' upper
    edges, nose, eye corners and lids, mouth), the points between them as means of their
    neighbours (odd contour points, eye lid middles, pupils as eye centres) and the brows' lower
    edges at the upper edges' midpoints (the brow's thickness is not modelled)."""
    contour = [(i // 2,) if i % 2 == 0 else (i // 2, i // 2 + 1) for i in range(33)]
    upper_brows = [(i,) for i in range(17, 27)]
    right_lower = [(20, 21), (19, 20), (18, 19), (17, 18)]
    left_lower = [(25, 26), (24, 25), (23, 24), (22, 23)]
    nose = [(i,) for i in range(27, 36)]
    right_eye = [(36,), (37,), (37, 38), (38,), (39,), (40,), (40, 41), (41,)]
    left_eye = [(42,), (43,), (43, 44), (44,), (45,), (46,), (46, 47), (47,)]
    mouth = [(i,) for i in range(48, 68)]
    pupils = [_EYE_R, _EYE_L]
    return [
        *contour, *upper_brows[:5], *right_lower, *upper_brows[5:], *left_lower,
        *nose, *right_eye, *left_eye, *mouth, *pupils,
    ]  # fmt: skip


TEMPLATE_FROM_300W["wflw"] = _wflw98_from_300w()
"""For each point of a scheme, the 0-based 300-W points whose template mean places it."""

CONTOUR_POINTS: dict[str, tuple[int, ...]] = {
    "300w": tuple(i for i in range(17) if i != 8),  # the jaw line but the chin
    "wflw": tuple(i for i in range(33) if i != 16),
}
"""Silhouette points of each scheme, left out of the pose fit."""


@dataclass(frozen=True)
class FaceTemplate:
    """A scheme's 3-D face template.

    Attributes:
        points: ``(L, 3)`` float64 head-frame points (see module doc).
        rigid: ``(L,)`` bool, the points the pose fit uses (all but :data:`CONTOUR_POINTS`).
    """

    points: np.ndarray
    rigid: np.ndarray


@dataclass(frozen=True)
class HeadPose:
    """Head poses of ``N`` faces.

    Attributes:
        angles: ``(N, 3)`` float64 (yaw, pitch, roll) in degrees; NaN where not ``fitted``.
        fitted: ``(N,)`` bool, False for faces with too few visible points.
        scale: ``(N,)`` float64 pixels per template unit (NaN where not fitted).
        residual: ``(N,)`` float64 root-mean-square reprojection error of the visible points,
            in units of the face's projected template size (scale × template RMS radius).
    """

    angles: np.ndarray
    fitted: np.ndarray
    scale: np.ndarray
    residual: np.ndarray

    @property
    def abs_yaw(self) -> np.ndarray:
        """``(N,)`` |yaw| in degrees (NaN where not fitted)."""
        return np.abs(self.angles[:, 0])


def face_template(scheme: str) -> FaceTemplate:
    """The 3-D face template of a landmark scheme (``data.scheme``; see module doc).

    Raises:
        ValueError: naming the scheme when it has no template.
    """
    from wingface.data.synthetic import mean_face_3d

    base = mean_face_3d()
    if scheme == "300w":
        points = base
    elif scheme in TEMPLATE_FROM_300W:
        points = np.stack([base[list(group)].mean(axis=0) for group in TEMPLATE_FROM_300W[scheme]])
    else:
        raise ValueError(
            f"no 3-D face template for landmark scheme {scheme!r}; schemes with one: "
            f"{['300w', *TEMPLATE_FROM_300W]}"
        )
    rigid = np.ones(len(points), dtype=bool)
    rigid[list(CONTOUR_POINTS.get(scheme, ()))] = False
    return FaceTemplate(points, rigid)


def estimated_yaw_flags(
    landmarks: np.ndarray, visibility: np.ndarray, scheme: str
) -> dict[str, np.ndarray]:
    """Test-subset flags ``yaw_est_0_30``, ``yaw_est_30_60``, ``yaw_est_60_90`` (``(N,)`` bool)
    from the |yaw| the template fit estimates (beyond 90 degrees counted in the last bin; a face
    that cannot be fitted is in none): per-pose results in degrees for data without a
    ground-truth pose."""
    from wingface.data.sources import YAW_BINS, yaw_bin_flags

    pose = fit_head_pose(landmarks, visibility, face_template(scheme))
    angles = pose.angles.copy()
    angles[:, 0] = np.minimum(np.abs(angles[:, 0]), YAW_BINS[-1][1])
    return yaw_bin_flags(angles, prefix="yaw_est")


def rotation_angles(rotation: np.ndarray) -> np.ndarray:
    """``(..., 3)`` (yaw, pitch, roll) degrees of ``(..., 3, 3)`` rotations
    ``Rz(roll) Rx(pitch) Ry(yaw)`` (pitch in ±90°)."""
    r = np.asarray(rotation, dtype=np.float64)
    yaw = np.arctan2(-r[..., 2, 0], r[..., 2, 2])
    pitch = np.arcsin(np.clip(r[..., 2, 1], -1.0, 1.0))
    roll = np.arctan2(-r[..., 0, 1], r[..., 1, 1])
    return np.degrees(np.stack([yaw, pitch, roll], axis=-1))


def fit_head_pose(
    landmarks: np.ndarray,
    visibility: np.ndarray,
    template: FaceTemplate,
    iterations: int = 5,
) -> HeadPose:
    """Fit the rigid template to each face's visible landmarks (see module doc).

    Args:
        landmarks: ``(N, L, 2)`` pixels (y down), any frame per face.
        visibility: ``(N, L)`` bool, True where a point has a position.
        template: the scheme's template (:func:`face_template`).
        iterations: Huber re-weighting rounds after the first (unweighted) fit.
    """
    x = np.asarray(landmarks, dtype=np.float64)
    visible = np.asarray(visibility, dtype=bool) & np.isfinite(x).all(axis=2)
    visible &= template.rigid
    template = np.asarray(template.points, dtype=np.float64)
    if x.ndim != 3 or x.shape[2] != 2 or template.shape != (x.shape[1], 3):
        raise ValueError(
            f"landmarks (N, L, 2) and template (L, 3) must agree, got {x.shape} and "
            f"{template.shape}"
        )
    x = np.where(visible[..., None], x, 0.0)
    fitted = visible.sum(axis=1) >= MIN_FIT_POINTS
    # faces too sparse to fit are fitted on all points (junk, discarded) to keep the batch regular
    unused = ~fitted[:, None]
    weights = np.where(unused, 1.0, visible)
    for _ in range(iterations + 1):
        rotation, scale, residuals = _weighted_fit(x, template, weights)
        spread = 1.4826 * _masked_median(residuals, visible)
        limit = HUBER_K * np.maximum(spread, 1e-9)[:, None]
        huber = np.minimum(1.0, limit / np.maximum(residuals, 1e-12))
        weights = np.where(unused, 1.0, visible * huber)
    angles = rotation_angles(rotation)
    centred = template - template.mean(axis=0)
    size = scale * np.sqrt((centred**2).sum(axis=1).mean())
    rms = np.sqrt((residuals**2 * visible).sum(axis=1) / np.maximum(visible.sum(axis=1), 1))
    fitted &= np.isfinite(angles).all(axis=1) & (scale > 0)
    nan = np.full_like(scale, np.nan)
    return HeadPose(
        angles=np.where(fitted[:, None], angles, np.nan),
        fitted=fitted,
        scale=np.where(fitted, scale, nan),
        residual=np.where(fitted, rms / np.maximum(size, 1e-12), nan),
    )


def _weighted_fit(
    x: np.ndarray, template: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One weighted scaled-orthographic fit of every face: ``(N, 3, 3)`` rotations, ``(N,)``
    scales and ``(N, L)`` residual distances (pixels)."""
    total = np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)  # (N, 1)
    x_mean = (weights[..., None] * x).sum(axis=1) / total  # (N, 2)
    t_mean = weights @ template / total  # (N, 3)
    xc = x - x_mean[:, None, :]
    tc = template[None] - t_mean[:, None, :]  # (N, L, 3)
    cross = np.einsum("nl,nli,nlj->nij", weights, xc, tc)  # (N, 2, 3)
    gram = np.einsum("nl,nli,nlj->nij", weights, tc, tc)  # (N, 3, 3)
    gram += 1e-9 * np.eye(3) * np.trace(gram, axis1=1, axis2=2)[:, None, None]
    affine = cross @ np.linalg.inv(gram)  # (N, 2, 3)
    u, s, vt = np.linalg.svd(affine, full_matrices=False)  # (N,2,2), (N,2), (N,2,3)
    rows = u @ vt  # orthonormal rows
    scale = s.mean(axis=1)
    rotation = np.concatenate([rows, np.cross(rows[:, 0], rows[:, 1])[:, None, :]], axis=1)
    projected = scale[:, None, None] * np.einsum("nij,nlj->nli", rows, tc)
    residuals = np.linalg.norm(xc - projected, axis=2)
    return rotation, scale, residuals


def _masked_median(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``(N,)`` median of each row's masked entries (0 for a row without any)."""
    masked = np.where(mask, values, np.nan)
    with np.errstate(all="ignore"):
        median = np.nanmedian(masked, axis=1) if masked.size else np.zeros(len(values))
    return np.nan_to_num(median, nan=0.0)
