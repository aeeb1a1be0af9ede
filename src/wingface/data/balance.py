"""Training-set balancing strategies: how many times each training face is repeated per epoch.

A strategy is called as ``strategy(landmarks, visibility, flip_permutation)`` with the training
shapes ``(N, L, 2)`` (pixels, any frame per face), their ``(N, L)`` bool visibility and the
scheme's ``(L,)`` flip permutation, and returns ``(N,)`` int64 repeat counts, all ``>= 1``.

:class:`PoseBalance` is pose-based data balancing (PDB): align the shapes, run PCA, take the
principal component that carries head pose, histogram the absolute pose coefficients and repeat
the faces of sparsely populated bins more often. The building blocks are plain functions
(:func:`align_to`, :func:`procrustes_align`, :func:`fill_invisible`,
:func:`fill_from_mirror_partner`, :func:`mirror_shapes`, :func:`shape_vectors`,
:func:`principal_components`, :func:`mirror_correlations`, :func:`pose_component`,
:func:`observed_projection`, :func:`histogram_repeats`) so that they can be checked and reused
on their own. :meth:`PoseBalance.plan` returns a :class:`BalancePlan` with each face's signed
pose coefficient and bin, for evaluating results per pose.

Aligned shapes are in *mean-shape units*: the mean shape is centred at the origin and scaled to a
root-mean-square point distance of 1 from its centroid.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MODES = ("paper", "improved", "pose3d")
"""The :class:`PoseBalance` modes (``balance.mode``)."""

FILLS = ("mean", "mirror")
"""How ``PoseBalance(mode="improved")`` completes invisible points (``balance.fill``)."""

DEFAULT_MAX_REPEAT = 20
"""Default repeat cap of ``PoseBalance(mode="improved")``, measured on real data.

On the 21,080 AFLW shapes (19 points, 21% of them invisible; ``experiments/pdb_aflw.py
--sweep``) with K = 9 bins, the default improved coefficient gives uncapped repeats per
|coefficient| bin of 1, 3, 3, 4, 4, 4, 2, 4, 259: the last bin holds 25 outlier faces (0.1%)
that would fill 0.31 N of the epoch with copies. With coordinates alone
(``visibility_weight=0``) they are 1, 1, 1, 1, 3, 20, 278, 1857, 2785. A cap of 20 is the
smallest that fully balances every bin holding at least 1% of the faces in both; above it only
outliers gain copies (the |yaw| >= 60 share moves by 0.1-0.3 points up to a cap of 32).
"""

DEFAULT_VISIBILITY_WEIGHT = 0.5
"""Default weight of the visibility pattern in ``PoseBalance(mode="improved")``'s PCA.

On the 21,080 AFLW shapes (``experiments/pdb_aflw.py``) the correlation between |pose
coefficient| and |yaw| is 0.35 with coordinates alone (weight 0), 0.61 at 0.2, 0.74 at 0.3 and
0.80 at 0.5, where it levels off (0.81 at 1.0): above 0.5 the component is the visibility
pattern alone, and the coordinates stop separating frontal from slightly turned faces.
"""

_MIN_SIZE = 1e-12
"""Shapes whose visible points spread less than this (in their own units) cannot be aligned."""


# --------------------------------------------------------------------------- Procrustes


def _as_complex(landmarks: np.ndarray) -> np.ndarray:
    """``(..., L, 2)`` points as ``(..., L)`` complex ``x + iy`` (float64 precision)."""
    points = np.asarray(landmarks, dtype=np.float64)
    return points[..., 0] + 1j * points[..., 1]


def _as_points(z: np.ndarray) -> np.ndarray:
    """``(..., L)`` complex as ``(..., L, 2)`` float64 ``(x, y)`` points."""
    return np.stack([z.real, z.imag], axis=-1)


def _normalised(z: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``(L,)`` complex shape centred at its weighted centroid and scaled to unit weighted RMS
    distance from it (points of weight 0 are moved along but do not count)."""
    total = weights.sum()
    centred = z - (weights * z).sum() / total
    size = np.sqrt((weights * np.abs(centred) ** 2).sum() / total)
    return centred / size if size > _MIN_SIZE else centred


def _similarity_to(z: np.ndarray, weights: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Weighted least-squares similarity alignment of complex shapes onto one target.

    Args:
        z: ``(N, L)`` complex shapes.
        weights: ``(N, L)`` non-negative point weights (0 = the point is ignored).
        target: ``(L,)`` complex target shape.

    Returns:
        ``(N, L)`` complex: every point of each shape mapped by the similarity transform
        ``z -> a z + b`` (``a`` complex: scale and rotation) that minimises
        ``sum_j w_j |a z_j + b - target_j|^2``. A shape with fewer than two weighted points, or
        whose weighted points coincide, has no such transform; it is replaced by the target.
    """
    total = weights.sum(axis=1, keepdims=True)
    safe_total = np.where(total > 0, total, 1.0)
    z_centre = (weights * z).sum(axis=1, keepdims=True) / safe_total
    t_centre = (weights * target).sum(axis=1, keepdims=True) / safe_total
    zc = z - z_centre
    spread = (weights * np.abs(zc) ** 2).sum(axis=1, keepdims=True)
    cross = (weights * np.conj(zc) * (target - t_centre)).sum(axis=1, keepdims=True)
    alignable = ((weights > 0).sum(axis=1, keepdims=True) >= 2) & (spread > _MIN_SIZE * safe_total)
    a = np.where(alignable, cross / np.where(alignable, spread, 1.0), 0.0)
    aligned = a * zc + t_centre
    return np.where(alignable, aligned, target[None, :])


def align_to(landmarks: np.ndarray, visibility: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Similarity-align each shape onto ``target`` using only its visible points.

    Args:
        landmarks: ``(N, L, 2)`` shapes (any units).
        visibility: ``(N, L)`` bool; only visible points are fitted.
        target: ``(L, 2)`` target shape (all points used).

    Returns:
        ``(N, L, 2)`` float64: every point of each shape under the shape's best similarity
        transform (least squares over its visible points), in ``target``'s frame. Invisible
        points are carried along by the same transform (their values mean whatever they meant
        before; non-finite ones become the image of 0). Shapes with fewer than two distinct
        visible points become ``target``.
    """
    visible = np.asarray(visibility, dtype=bool)
    z = _as_complex(landmarks)
    z = np.where(visible | np.isfinite(z), z, 0.0)  # non-finite invisible values: never fitted
    weights = visible.astype(np.float64)
    return _as_points(_similarity_to(z, weights, _as_complex(target)))


def procrustes_align(
    landmarks: np.ndarray,
    visibility: np.ndarray | None = None,
    iterations: int = 10,
    tolerance: float = 1e-10,
) -> tuple[np.ndarray, np.ndarray]:
    """Generalised Procrustes analysis with missing points.

    Starts from the shape with the most visible points (normalised) as the reference, then
    repeats: align every shape to the reference with a similarity transform fitted on the points
    visible both in the shape and in the reference; new reference = per-point mean of the
    aligned visible points, re-aligned onto the previous reference (no rotation drift),
    centred and scaled to unit RMS distance from its centroid. Stops after ``iterations``
    rounds or when the reference moves less than ``tolerance``.

    Args:
        landmarks: ``(N, L, 2)`` shapes (pixels or any other unit).
        visibility: ``(N, L)`` bool, True where a point has a position; None = all visible.
        iterations: maximum number of align/re-average rounds (>= 1).
        tolerance: stop when the mean shape moves less than this (RMS, mean-shape units).

    Returns:
        ``(aligned, mean)``: ``(N, L, 2)`` float64 shapes aligned onto ``(L, 2)`` float64
        ``mean``, in mean-shape units (``mean`` centred at 0, unit RMS distance from it).
        Invisible points are transformed along with their shape and carry no meaning (see
        :func:`fill_invisible`). A point that is never visible gets the mean's centroid (0, 0).
        Shapes with fewer than two distinct visible points come back as the mean shape.
    """
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.ndim != 3 or landmarks.shape[2] != 2 or len(landmarks) == 0:
        raise ValueError(f"landmarks must have shape (N, L, 2) with N >= 1, got {landmarks.shape}")
    if visibility is None:
        visibility = np.ones(landmarks.shape[:2], dtype=bool)
    visibility = np.asarray(visibility, dtype=bool)
    if visibility.shape != landmarks.shape[:2]:
        raise ValueError(
            f"visibility must have shape {landmarks.shape[:2]} to match landmarks, "
            f"got {visibility.shape}"
        )
    z = _as_complex(landmarks)
    z = np.where(visibility, z, 0.0)  # invisible values may be NaN; they are never fitted
    weights = visibility.astype(np.float64)
    start = int(np.argmax(visibility.sum(axis=1)))
    reference = _normalised(z[start], weights[start])
    reference_weights = weights[start].copy()
    aligned = z
    for _ in range(max(int(iterations), 1)):
        aligned = _similarity_to(z, weights * reference_weights, reference)
        counts = weights.sum(axis=0)
        reference_weights = (counts > 0).astype(np.float64)
        mean = (weights * aligned).sum(axis=0) / np.where(counts > 0, counts, 1.0)
        mean = _similarity_to(mean[None], reference_weights[None], reference)[0]
        mean = _normalised(mean, reference_weights)
        mean = np.where(reference_weights > 0, mean, 0.0)
        moved = np.sqrt(np.mean(np.abs(mean - reference) ** 2))
        reference = mean
        if moved < tolerance:
            break
    aligned = _similarity_to(z, weights * reference_weights, reference)
    return _as_points(aligned), _as_points(reference)


def fill_invisible(aligned: np.ndarray, visibility: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Replace invisible points of aligned shapes by the mean shape's points.

    Each shape is already aligned onto ``mean``, so the mean's point is the mean shape seen
    under that face's own alignment: a neutral guess that adds no shape variation of its own.

    Args:
        aligned: ``(N, L, 2)`` shapes aligned onto ``mean``.
        visibility: ``(N, L)`` bool.
        mean: ``(L, 2)`` mean shape.

    Returns:
        ``(N, L, 2)`` float64 complete shapes.
    """
    visible = np.asarray(visibility, dtype=bool)[..., None]
    return np.where(visible, np.asarray(aligned, dtype=np.float64), np.asarray(mean)[None])


def mirror_shapes(
    landmarks: np.ndarray, visibility: np.ndarray, flip_permutation: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Horizontally mirrored shapes, re-indexed with the flip permutation.

    Args:
        landmarks: ``(N, L, 2)`` or ``(L, 2)`` shapes.
        visibility: ``(N, L)`` or ``(L,)`` bool.
        flip_permutation: ``(L,)``; point ``i`` of a mirrored face is point
            ``flip_permutation[i]`` of the original.

    Returns:
        ``(mirrored landmarks, mirrored visibility)`` of the input shapes; ``x`` is negated (the
        mirror axis is ``x = 0``, irrelevant after similarity alignment).
    """
    perm = np.asarray(flip_permutation, dtype=np.int64)
    mirrored = np.array(np.asarray(landmarks)[..., perm, :], dtype=np.float64)
    mirrored[..., 0] *= -1.0
    return mirrored, np.asarray(visibility, dtype=bool)[..., perm]


def fill_from_mirror_partner(
    landmarks: np.ndarray, visibility: np.ndarray, flip_permutation: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Put each invisible point on its visible mirror partner (self-occlusion guess).

    A point that is hidden while its left/right partner is visible is usually hidden by the
    head itself, turned away; in an orthographic profile view (90 deg yaw) it projects onto its
    partner. Points whose partner is invisible too, and points on the symmetry axis, stay
    invisible.

    Args:
        landmarks: ``(N, L, 2)`` shapes (pixels, before alignment).
        visibility: ``(N, L)`` bool.
        flip_permutation: ``(L,)`` flip permutation (the partner of point ``i`` is
            ``flip_permutation[i]``).

    Returns:
        ``(landmarks (N, L, 2) float64, visibility (N, L) bool)`` with the filled points marked
        visible.
    """
    perm = np.asarray(flip_permutation, dtype=np.int64)
    visibility = np.asarray(visibility, dtype=bool)
    points = np.asarray(landmarks, dtype=np.float64)
    use = ~visibility & visibility[:, perm]
    return np.where(use[..., None], points[:, perm], points), visibility | use


# --------------------------------------------------------------------------- PCA


def shape_vectors(
    filled: np.ndarray, visibility: np.ndarray, visibility_weight: float
) -> np.ndarray:
    """Row vectors for the PCA: aligned coordinates, then the weighted visibility pattern.

    Args:
        filled: ``(N, L, 2)`` aligned shapes without gaps (mean-shape units).
        visibility: ``(N, L)`` bool.
        visibility_weight: weight ``w >= 0`` of the visibility entries; 0 = coordinates only.

    Returns:
        ``(N, 2 L)`` float64 ``[x0, y0, x1, y1, ...]`` when ``w == 0``, else ``(N, 3 L)`` with
        ``w (v_j - 1/2)`` appended per point (``v_j`` = 1 visible, 0 hidden): a hidden point
        moves a shape by ``w`` mean-shape units along its own axis. Mirroring a shape permutes
        these entries like its points, so a one-sided visibility pattern is antisymmetric.
    """
    vectors = np.asarray(filled, dtype=np.float64).reshape(len(filled), -1)
    if visibility_weight == 0:
        return vectors
    pattern = visibility_weight * (np.asarray(visibility, dtype=np.float64) - 0.5)
    return np.concatenate([vectors, pattern], axis=1)


def principal_components(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PCA of ``(N, D)`` row vectors by SVD.

    Returns:
        ``(centre (D,), components (K, D), variances (K,))`` with ``K = min(N, D)``: the data
        mean, orthonormal principal directions by decreasing variance (each signed so that its
        largest-magnitude entry is positive, for reproducible signs) and the variance along each.
    """
    vectors = np.asarray(vectors, dtype=np.float64)
    centre = vectors.mean(axis=0)
    _, singular, components = np.linalg.svd(vectors - centre, full_matrices=False)
    rows = np.arange(len(components))
    signs = np.sign(components[rows, np.argmax(np.abs(components), axis=1)])
    components = components * np.where(signs == 0, 1.0, signs)[:, None]
    return centre, components, singular**2 / max(len(vectors), 1)


def mirror_correlations(coefficients: np.ndarray, mirrored_coefficients: np.ndarray) -> np.ndarray:
    """Per-component Pearson correlation between shapes' and their mirrors' coefficients.

    Args:
        coefficients: ``(N, K)`` PCA coefficients of the shapes.
        mirrored_coefficients: ``(N, K)`` coefficients of the same shapes mirrored.

    Returns:
        ``(K,)`` correlations in ``[-1, 1]`` (0 for a constant component): about -1 for a
        component that mirroring negates (pose), about +1 for a left/right symmetric one.
    """
    a = coefficients - coefficients.mean(axis=0)
    b = mirrored_coefficients - mirrored_coefficients.mean(axis=0)
    norm = np.sqrt((a**2).sum(axis=0) * (b**2).sum(axis=0))
    return np.where(norm > 0, (a * b).sum(axis=0) / np.where(norm > 0, norm, 1.0), 0.0)


# --------------------------------------------------------------------------- histogram


def histogram_repeats(
    magnitude: np.ndarray, num_bins: int, max_repeat: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Repeat counts that flatten a histogram of non-negative values.

    Args:
        magnitude: ``(N,)`` non-negative values (absolute pose coefficients).
        num_bins: ``K`` equal-width bins over ``[0, max(magnitude)]`` (the maximum falls in the
            last bin; all values in bin 0 when the maximum is 0).
        max_repeat: cap on the repeat count; None = no cap.

    Returns:
        ``(repeats (N,) int64, bins (N,) int64, bin_edges (K + 1,) float64)``: each value's
        repeat count is ``round(largest bin count / its bin count)`` (half to even, as Python's
        ``round``), at least 1, capped at ``max_repeat``.
    """
    magnitude = np.asarray(magnitude, dtype=np.float64)
    top = float(magnitude.max()) if magnitude.size else 0.0
    edges = np.linspace(0.0, top, num_bins + 1)
    if top > 0:
        bins = np.floor(magnitude / top * num_bins).astype(np.int64)
    else:
        bins = np.zeros(magnitude.shape, dtype=np.int64)
    bins = np.clip(bins, 0, num_bins - 1)
    counts = np.bincount(bins, minlength=num_bins)
    repeats = np.rint(counts.max(initial=0) / np.maximum(counts[bins], 1)).astype(np.int64)
    repeats = np.maximum(repeats, 1)
    if max_repeat is not None:
        repeats = np.minimum(repeats, max_repeat)
    return repeats, bins, edges


# --------------------------------------------------------------------------- strategy


@dataclass(frozen=True)
class BalancePlan:
    """What :class:`PoseBalance` decided for ``N`` training faces.

    Attributes:
        repeats: ``(N,)`` int64 repeat counts, all ``>= 1``.
        coefficient: ``(N,)`` float64 signed pose coefficient (mean-shape units): the
            projection on the pose component; in ``mode="improved"`` measured from the
            left/right symmetric (frontal) shape (and, with a visibility weight, in units that
            mix coordinates and visibility), in ``mode="paper"`` from the mean shape.
        bins: ``(N,)`` int64 histogram bin of ``|coefficient|``.
        component: index of the principal component used (0 = largest variance; -1 in
            ``mode="pose3d"``, which uses none).
        bin_edges: ``(K + 1,)`` float64 edges of the ``|coefficient|`` bins.

    In ``mode="pose3d"`` the coefficient is the yaw in degrees estimated by a 3-D template fit
    (:mod:`wingface.data.head_pose`); faces with too few visible points for a fit have a NaN
    coefficient, bin -1 and one repeat.
    """

    repeats: np.ndarray
    coefficient: np.ndarray
    bins: np.ndarray
    component: int
    bin_edges: np.ndarray


class PoseBalance:
    """Pose-based data balancing (PDB): repeat faces of rare head poses more often.

    ``mode="paper"`` is the original method: generalised Procrustes alignment of all points,
    PCA, projection on the principal component number ``component`` (measured from the mean
    shape), a histogram of the absolute coefficients in ``num_bins`` equal-width bins over
    ``[0, max]`` and ``round(largest bin count / bin count)`` repeats per face, without a cap.
    The original has no notion of missing points: every point, visible or not, is used with the
    coordinates it is stored with (so the result depends on what a loader stores for invisible
    points, e.g. ``(0, 0)`` for the AFLW shapes); the only accommodation is that non-finite
    coordinates of invisible points are replaced by the face's visible centroid so that the SVD
    does not fail.

    ``mode="improved"`` (default):

    * handles missing points: each shape is aligned on its visible points only; for the PCA
      its invisible points are filled from the mean shape under the face's alignment
      (:func:`fill_invisible`), so they neither distort the alignment nor add shape
      variation of their own, and each face's visibility pattern joins its shape vector with
      weight ``visibility_weight`` (:func:`shape_vectors`): a point hidden on one side only is
      evidence of a turned head (self-occlusion), which the coordinates of a half-visible
      profile face no longer show after alignment. ``fill="mirror"`` first puts each
      invisible point whose mirror partner is visible onto that partner
      (:func:`fill_from_mirror_partner`, exact for an orthographic 90-degree profile) and
      treats it as visible from then on;
    * finds the pose component itself: the shapes and their mirror images (``x`` negated,
      points re-indexed with the flip permutation, i.e. the training set as flip augmentation
      shows it) are aligned and analysed together, so every principal component is either
      left/right symmetric or antisymmetric; the pose component is the one whose coefficient
      is most anti-correlated between shapes and their mirrors, weighted by its variance
      (:func:`pose_component`); ``component`` is not used;
    * fits each face's coefficient on its visible points (and its visibility pattern) only
      (:func:`observed_projection`), so that missing points do not pull it towards frontal;
    * measures the coefficient from the left/right symmetric (frontal) shape: a face's
      coefficient is half the difference between its own coefficient and its mirror image's,
      so a symmetric face has coefficient 0, a mirrored face the opposite coefficient, and
      ``|coefficient|`` is the distance from frontal whichever side most faces turn to;
    * caps the repeat count at ``max_repeat`` so that a bin of a few outliers is not copied
      thousands of times.

    ``mode="pose3d"`` balances on the head's |yaw| itself, estimated from the landmarks alone
    by fitting the scheme's rigid 3-D face template with a scaled-orthographic camera to each
    face's visible points (:func:`~wingface.data.head_pose.fit_head_pose`, robust to a few
    misplaced points), in ``num_bins`` equal-width |yaw| bins with the improved mode's repeat
    rule and cap. A face with fewer than
    :data:`~wingface.data.head_pose.MIN_FIT_POINTS` visible points keeps one repeat (on the
    AFLW shapes: 169 of 21,080 faces, 0.8%). ``component``, ``fill`` and
    ``visibility_weight`` are not used; the scheme is known from the number of points.

    Args:
        mode: ``"improved"``, ``"paper"`` or ``"pose3d"`` (``balance.mode``).
        num_bins: histogram bins ``K`` (``balance.num_bins``); the authors used 9.
        component: principal component used by ``mode="paper"`` (``balance.component``;
            0 = largest variance; the authors took 0 in general and 1 for 19-point AFLW).
        max_repeat: cap on repeats in ``mode="improved"`` and ``mode="pose3d"``
            (``balance.max_repeat``; None = no cap); ``mode="paper"`` never caps. Default
            :data:`DEFAULT_MAX_REPEAT`.
        fill: how ``mode="improved"`` completes invisible points, ``"mean"`` or ``"mirror"``
            (``balance.fill``).
        visibility_weight: weight of the visibility pattern in the improved mode's shape
            vectors (``balance.visibility_weight``, >= 0; 0 = coordinates only). Default
            :data:`DEFAULT_VISIBILITY_WEIGHT`; use 0 where points go missing for reasons other
            than head pose (random occluders).
        iterations: generalised Procrustes rounds.

    Raises:
        ValueError: naming the config key, for an unknown mode or fill, ``num_bins < 1``,
            ``max_repeat < 1``, a negative ``component`` or ``visibility_weight``, or (when
            called) a ``component`` beyond the shapes' ``2 L`` principal components.
    """

    def __init__(
        self,
        mode: str = "improved",
        num_bins: int = 9,
        component: int = 0,
        max_repeat: int | None = DEFAULT_MAX_REPEAT,
        fill: str = "mean",
        visibility_weight: float = DEFAULT_VISIBILITY_WEIGHT,
        iterations: int = 10,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"balance.mode: expected one of {list(MODES)}, got {mode!r}")
        if fill not in FILLS:
            raise ValueError(f"balance.fill: expected one of {list(FILLS)}, got {fill!r}")
        if not _is_int(num_bins) or num_bins < 1:
            raise ValueError(f"balance.num_bins: expected an integer >= 1, got {num_bins!r}")
        if not _is_int(component) or component < 0:
            raise ValueError(f"balance.component: expected an integer >= 0, got {component!r}")
        if max_repeat is not None and (not _is_int(max_repeat) or max_repeat < 1):
            raise ValueError(
                f"balance.max_repeat: expected an integer >= 1 or None, got {max_repeat!r}"
            )
        if not isinstance(visibility_weight, (int, float)) or not visibility_weight >= 0:
            raise ValueError(
                f"balance.visibility_weight: expected a number >= 0, got {visibility_weight!r}"
            )
        self.mode = mode
        self.visibility_weight = float(visibility_weight)
        self.num_bins = int(num_bins)
        self.component = int(component)
        self.max_repeat = None if max_repeat is None else int(max_repeat)
        self.fill = fill
        self.iterations = int(iterations)

    def __call__(
        self, landmarks: np.ndarray, visibility: np.ndarray, flip_permutation: np.ndarray
    ) -> np.ndarray:
        """Repeat counts ``(N,)`` int64 ``>= 1`` for ``(N, L, 2)`` training shapes."""
        return self.plan(landmarks, visibility, flip_permutation).repeats

    def plan(
        self, landmarks: np.ndarray, visibility: np.ndarray, flip_permutation: np.ndarray
    ) -> BalancePlan:
        """The full balancing decision (repeats, pose coefficients, bins) for the shapes.

        Args:
            landmarks: ``(N, L, 2)`` shapes in pixels (any frame per face), ``N >= 1``.
            visibility: ``(N, L)`` bool, True where a point has a position.
            flip_permutation: ``(L,)`` flip permutation of the landmark scheme.
        """
        landmarks = np.asarray(landmarks, dtype=np.float64)
        visibility = np.asarray(visibility, dtype=bool)
        flip_permutation = np.asarray(flip_permutation, dtype=np.int64)
        if landmarks.ndim != 3 or landmarks.shape[2] != 2 or len(landmarks) == 0:
            raise ValueError(
                f"landmarks must have shape (N, L, 2) with N >= 1, got {landmarks.shape}"
            )
        if visibility.shape != landmarks.shape[:2]:
            raise ValueError(
                f"visibility must have shape {landmarks.shape[:2]}, got {visibility.shape}"
            )
        if self.mode == "pose3d":
            return self._pose3d_plan(landmarks, visibility)
        if self.mode == "paper":
            component, coefficient = self._paper_coefficient(landmarks, visibility)
            max_repeat = None
        else:
            if flip_permutation.shape != (landmarks.shape[1],):
                raise ValueError(
                    f"flip_permutation must have shape ({landmarks.shape[1]},), "
                    f"got {flip_permutation.shape}"
                )
            component, coefficient = self._improved_coefficient(
                landmarks, visibility, flip_permutation
            )
            max_repeat = self.max_repeat
        repeats, bins, edges = histogram_repeats(np.abs(coefficient), self.num_bins, max_repeat)
        return BalancePlan(repeats, coefficient, bins, component, edges)

    def _pose3d_plan(self, landmarks: np.ndarray, visibility: np.ndarray) -> BalancePlan:
        """Repeats from the |yaw| of a 3-D template fit; unfitted faces keep one repeat."""
        from wingface.data.head_pose import face_template, fit_head_pose
        from wingface.landmarks import scheme_with_points

        scheme = scheme_with_points(landmarks.shape[1])
        pose = fit_head_pose(landmarks, visibility, face_template(scheme.name))
        yaw = pose.angles[:, 0]
        repeats = np.ones(len(yaw), dtype=np.int64)
        bins = np.full(len(yaw), -1, dtype=np.int64)
        fitted_repeats, fitted_bins, edges = histogram_repeats(
            np.abs(yaw[pose.fitted]), self.num_bins, self.max_repeat
        )
        repeats[pose.fitted] = fitted_repeats
        bins[pose.fitted] = fitted_bins
        return BalancePlan(repeats, yaw, bins, -1, edges)

    def _paper_coefficient(
        self, landmarks: np.ndarray, visibility: np.ndarray
    ) -> tuple[int, np.ndarray]:
        """Component index and ``(N,)`` coefficients of the original method (all points)."""
        num_components = 2 * landmarks.shape[1]
        if self.component >= num_components:
            raise ValueError(
                f"balance.component: {self.component} is out of range; shapes of "
                f"{landmarks.shape[1]} points have {num_components} principal components "
                f"(0 to {num_components - 1})"
            )
        points = _replace_non_finite(landmarks, visibility)
        aligned, _ = procrustes_align(points, None, self.iterations)
        vectors = aligned.reshape(len(aligned), -1)
        centre, components, _ = principal_components(vectors)
        if self.component >= len(components):
            raise ValueError(
                f"balance.component: {self.component} is out of range; {len(vectors)} training "
                f"faces have only {len(components)} principal components"
            )
        return self.component, (vectors - centre) @ components[self.component]

    def _improved_coefficient(
        self, landmarks: np.ndarray, visibility: np.ndarray, flip_permutation: np.ndarray
    ) -> tuple[int, np.ndarray]:
        """Pose component (found by mirroring) and ``(N,)`` coefficients measured from frontal."""
        if self.fill == "mirror":
            landmarks, visibility = fill_from_mirror_partner(
                landmarks, visibility, flip_permutation
            )
        n = len(landmarks)
        mirrored, mirrored_visibility = mirror_shapes(landmarks, visibility, flip_permutation)
        both = np.concatenate([landmarks, mirrored])
        both_visibility = np.concatenate([visibility, mirrored_visibility])
        aligned, mean = procrustes_align(both, both_visibility, self.iterations)
        vectors = shape_vectors(
            fill_invisible(aligned, both_visibility, mean), both_visibility, self.visibility_weight
        )
        centre, components, variances = principal_components(vectors)
        coefficients = (vectors - centre) @ components.T
        component = pose_component(coefficients[:n], coefficients[n:], variances)
        observed = np.ones_like(vectors)  # the visibility pattern itself is always known
        observed[:, : 2 * landmarks.shape[1]] = np.repeat(both_visibility, 2, axis=1)
        fitted = observed_projection(vectors - centre, observed, components[component])
        return component, (fitted[:n] - fitted[n:]) / 2.0


def observed_projection(
    offsets: np.ndarray, observed: np.ndarray, direction: np.ndarray
) -> np.ndarray:
    """Coefficient along one direction, fitted on each vector's observed entries only.

    For offset vector ``x`` (shape vector minus the PCA centre) with observed entries ``O`` this
    is the least-squares ``c`` of ``x_j ~ c d_j`` over ``j`` in ``O``:
    ``sum_O d_j x_j / sum_O d_j^2``. With every entry observed it is the plain projection
    ``x . d`` (unit ``d``); with points missing it is not shrunk towards 0 the way the
    projection of a mean-filled shape is. A vector whose observed entries carry (almost) none
    of the direction falls back to the projection with its gaps at the mean (offset 0).

    Args:
        offsets: ``(N, D)`` shape vectors minus the PCA centre.
        observed: ``(N, D)`` 0/1 (or bool) mask of the entries that were measured.
        direction: ``(D,)`` unit-norm direction (a principal component).

    Returns:
        ``(N,)`` float64 coefficients.
    """
    weights = np.asarray(observed, dtype=np.float64)
    offsets = np.where(weights > 0, np.asarray(offsets, dtype=np.float64), 0.0)
    numerator = (weights * offsets * direction).sum(axis=1)
    energy = (weights * direction**2).sum(axis=1)
    enough = energy > 1e-3 * (direction**2).sum()
    return np.where(enough, numerator / np.where(enough, energy, 1.0), numerator)


def _is_int(value: object) -> bool:
    """True for an integral number (``3`` or ``3.0``; not ``True``, ``"3"`` or ``3.5``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return False
    return float(value).is_integer()


def pose_component(
    coefficients: np.ndarray, mirrored_coefficients: np.ndarray, variances: np.ndarray
) -> int:
    """Index of the principal component that mirroring negates most strongly.

    The score of a component is the covariance between the shapes' coefficients and their
    mirrors' (its mirror correlation times both standard deviations), and the most negative
    score wins: the component carrying the most mirror-antisymmetric variance. Weighing the
    correlation by the variance keeps near-empty components (correlation -1 by chance of
    symmetry, no variance) from being picked; components without variance are never picked.

    Args:
        coefficients: ``(N, K)`` PCA coefficients of the shapes.
        mirrored_coefficients: ``(N, K)`` coefficients of the mirrored shapes.
        variances: ``(K,)`` variance of each component.
    """
    correlations = mirror_correlations(coefficients, mirrored_coefficients)
    scores = correlations * np.sqrt(coefficients.var(axis=0) * mirrored_coefficients.var(axis=0))
    scores = np.where(variances > _MIN_SIZE * max(variances.sum(), _MIN_SIZE), scores, np.inf)
    return int(np.argmin(scores))


def _replace_non_finite(landmarks: np.ndarray, visibility: np.ndarray) -> np.ndarray:
    """``(N, L, 2)`` copy with non-finite invisible points moved to the face's visible centroid."""
    points = np.array(landmarks, dtype=np.float64)
    bad = ~np.isfinite(points).all(axis=2) & ~visibility
    if bad.any():
        good = ~bad
        counts = np.maximum(good.sum(axis=1), 1)[:, None]
        centroid = np.where(good[..., None], points, 0.0).sum(axis=1) / counts
        points = np.where(bad[..., None], centroid[:, None, :], points)
    return points


class NoBalance:
    """Every training face once per epoch (``balance=none``)."""

    def __call__(
        self, landmarks: np.ndarray, visibility: np.ndarray, flip_permutation: np.ndarray
    ) -> np.ndarray:
        """Repeat counts ``(N,)`` int64, all ones, for ``(N, L, 2)`` training shapes."""
        del visibility, flip_permutation
        return np.ones(len(landmarks), dtype=np.int64)


def pose_quantile_flags(
    landmarks: np.ndarray,
    visibility: np.ndarray,
    flip_permutation: np.ndarray,
    quantiles: Sequence[float],
) -> dict[str, np.ndarray]:
    """Pose bins of a set of faces from their own |pose coefficient| quantiles.

    The default :class:`PoseBalance` coefficient of each face (fitted on the faces given, e.g.
    a test set's ground truth) is cut at the ``quantiles`` of its absolute value, giving flags
    such as ``pose_q0_50`` (the more frontal half), ``pose_q50_90`` and ``pose_q90_100`` (the
    10% most turned faces) for ``quantiles = [0.5, 0.9]``: a pose axis for data without a
    ground-truth head pose.

    Args:
        landmarks: ``(N, L, 2)`` shapes (pixels).
        visibility: ``(N, L)`` bool.
        flip_permutation: ``(L,)`` the scheme's flip permutation.
        quantiles: increasing cut points strictly between 0 and 1.

    Returns:
        ``{name: (N,) bool}``, one flag per bin, each face in exactly one bin.
    """
    cuts = [float(q) for q in quantiles]
    if not cuts or any(not 0.0 < q < 1.0 for q in cuts) or sorted(set(cuts)) != cuts:
        raise ValueError(
            f"data.pose_quantiles: expected increasing numbers strictly between 0 and 1, "
            f"got {list(quantiles)}"
        )
    magnitude = np.abs(PoseBalance().plan(landmarks, visibility, flip_permutation).coefficient)
    edges = np.quantile(magnitude, cuts)
    bins = np.searchsorted(edges, magnitude, side="right")
    percents = [0, *(round(100 * q) for q in cuts), 100]
    return {
        f"pose_q{low}_{high}": bins == b
        for b, (low, high) in enumerate(itertools.pairwise(percents))
    }
