"""Landmark accuracy metrics: normalised mean error, failure rate and the CED curve.

Conventions:

* Landmarks are ``(B, L, 2)`` ``(x, y)`` coordinates in pixels; ``visibility`` is an optional
  ``(B, L)`` bool mask, True where a point has a ground-truth position (``None`` = all points).
* The per-image NME is the mean Euclidean point error over the visible landmarks divided by a
  per-image normalising distance. It is returned as a **fraction** of that distance
  (multiply by 100 for the percentages quoted in papers).
* Normalising distances (see :func:`normalising_distance`) are measured on the ground truth.

The functions are stateless and differentiable where that makes sense; the ``Metric`` classes
accumulate per-image NMEs across batches (and processes) and always compute in float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

from wingface.landmarks import LandmarkScheme, get_scheme

__all__ = [
    "CEDAUC",
    "DEFAULT_NORMALISATIONS",
    "NORMALISATIONS",
    "FailureRate",
    "LandmarkNME",
    "MeanOffset",
    "PerLandmarkNME",
    "ced_auc",
    "ced_curve",
    "failure_rate",
    "normalising_distance",
    "normalising_distances",
    "per_image_nme",
]

NORMALISATIONS: tuple[str, ...] = ("inter_ocular", "inter_pupil", "box", "box_diag")
"""Accepted values of the ``kind`` / ``normalisation`` argument."""

DEFAULT_NORMALISATIONS: tuple[str, ...] = ("inter_ocular", "inter_pupil", "box")
"""What an evaluation reports when its protocol does not say (the first is the primary one)."""


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """At least float32 (float64 stays float64; half / bfloat16 / integers become float32)."""
    return torch.promote_types(dtype, torch.float32) if dtype.is_floating_point else torch.float32


def _resolve_scheme(scheme: LandmarkScheme | str) -> LandmarkScheme:
    return get_scheme(scheme) if isinstance(scheme, str) else scheme


def _check_kind(kind: str, argument: str) -> None:
    if kind not in NORMALISATIONS:
        raise ValueError(f"unknown {argument} {kind!r}; expected one of {list(NORMALISATIONS)}")


def _check_points(points: Tensor, name: str) -> None:
    if points.ndim != 3 or points.shape[-1] != 2:
        raise ValueError(f"{name} must have shape (B, L, 2), got {tuple(points.shape)}")


def _visibility_mask(visibility: Tensor | None, target: Tensor) -> Tensor:
    """The ``(B, L)`` bool mask, all True when ``visibility`` is None."""
    batch, num_points = target.shape[:2]
    if visibility is None:
        return torch.ones(batch, num_points, dtype=torch.bool, device=target.device)
    if visibility.shape != (batch, num_points):
        raise ValueError(
            f"visibility must have shape ({batch}, {num_points}), got {tuple(visibility.shape)}"
        )
    if visibility.dtype != torch.bool:
        raise ValueError(f"visibility must be a bool tensor, got {visibility.dtype}")
    return visibility


def _as_nmes(nmes: Tensor | Sequence[float]) -> Tensor:
    """Per-image NMEs as a non-empty, NaN-free 1-D float tensor (at least float32)."""
    if isinstance(nmes, Tensor):
        values = nmes.detach().to(_compute_dtype(nmes.dtype)).flatten()
    else:  # Python floats are double precision; keep them exact
        values = torch.as_tensor(nmes, dtype=torch.float64).flatten()
    if values.numel() == 0:
        raise ValueError("nmes is empty; need at least one per-image NME")
    if torch.isnan(values).any():
        raise ValueError("nmes contains NaN")
    return values


def _check_threshold(threshold: float) -> float:
    threshold = float(threshold)
    if not threshold > 0:
        raise ValueError(f"threshold must be > 0, got {threshold}")
    return threshold


# ---------------------------------------------------------------------------------------------
# pure functions
# ---------------------------------------------------------------------------------------------


def normalising_distances(
    target: Tensor,
    visibility: Tensor | None = None,
    kind: str = "inter_ocular",
    scheme: LandmarkScheme | str = "300w",
) -> tuple[Tensor, Tensor]:
    """Per-image normalising distances and whether each image has a usable one.

    Same arguments as :func:`normalising_distance`. Returns ``(distances, usable)``: ``(B,)``
    distances in pixels (at least float32) and ``(B,)`` bool, False where an eye-based kind
    lacks a visible eye point or the distance is not > 0. Raises only for an unknown ``kind``
    or bad shapes; data checks use it to find every unusable face at once.
    """
    _check_kind(kind, "kind")
    _check_points(target, "target")
    mask = _visibility_mask(visibility, target)
    pts = target.to(_compute_dtype(target.dtype))

    if kind in ("inter_ocular", "inter_pupil"):
        sch = _resolve_scheme(scheme)
        if pts.shape[1] != sch.num_points:
            raise ValueError(
                f"target has {pts.shape[1]} landmarks but scheme {sch.name!r} has {sch.num_points}"
            )
        a_idx, b_idx = _eye_points(kind, sch)
        needed = mask[:, a_idx + b_idx].all(dim=1)
        dist = (pts[:, a_idx].mean(dim=1) - pts[:, b_idx].mean(dim=1)).norm(dim=-1)
    else:
        vis = mask.unsqueeze(-1)
        inf = torch.tensor(float("inf"), dtype=pts.dtype, device=pts.device)
        upper = torch.where(vis, pts, -inf).amax(dim=1)  # (B, 2)
        lower = torch.where(vis, pts, inf).amin(dim=1)
        size = torch.where(mask.any(dim=1, keepdim=True), upper - lower, torch.zeros_like(upper))
        w, h = size.unbind(dim=-1)
        dist = (w * h).sqrt() if kind == "box" else (w.square() + h.square()).sqrt()
        needed = torch.ones_like(dist, dtype=torch.bool)
    return dist, needed & (dist > 0) & torch.isfinite(dist)


def _eye_points(kind: str, scheme: LandmarkScheme) -> tuple[list[int], list[int]]:
    """The two groups of points whose means an eye-based normalisation measures between."""
    if kind == "inter_ocular":
        return [scheme.outer_eye_corners[0]], [scheme.outer_eye_corners[1]]
    return list(scheme.right_eye), list(scheme.left_eye)


def normalising_distance(
    target: Tensor,
    visibility: Tensor | None = None,
    kind: str = "inter_ocular",
    scheme: LandmarkScheme | str = "300w",
) -> Tensor:
    """Per-image normalising distance, in pixels, measured on the ground truth.

    Args:
        target: ``(B, L, 2)`` ground-truth landmarks in pixels.
        visibility: ``(B, L)`` bool, True where a point has a ground-truth position;
            ``None`` means every point is visible.
        kind: one of
            ``"inter_ocular"`` -- distance between the two outer eye corners
            (``scheme.outer_eye_corners``, points 36 and 45 in the 68-point scheme);
            ``"inter_pupil"`` -- distance between the eye centres, each the mean of that eye's
            contour points (``scheme.right_eye`` / ``scheme.left_eye``);
            ``"box"`` -- ``sqrt(w * h)`` of the tight axis-aligned box around the *visible*
            ground-truth landmarks (``w``/``h`` = max - min of their x / y coordinates);
            ``"box_diag"`` -- ``sqrt(w**2 + h**2)``, the diagonal of that same box.
        scheme: a :class:`~wingface.landmarks.LandmarkScheme` or its name; only the eye-based
            kinds use it.

    Returns:
        ``(B,)`` distances in pixels, in ``target``'s dtype promoted to at least float32.

    Raises:
        ValueError: for an unknown ``kind``, bad shapes, an eye-based kind whose eye points are
            not all visible, or a zero distance (the offending sample index is named); the
            data module screens every evaluated face for these at load time, naming its file.
    """
    dist, usable = normalising_distances(target, visibility, kind, scheme)
    if bool(usable.all()):
        return dist
    sample = int((~usable).nonzero()[0, 0])
    if kind in ("inter_ocular", "inter_pupil"):
        a_idx, b_idx = _eye_points(kind, _resolve_scheme(scheme))
        if not bool(_visibility_mask(visibility, target)[sample, a_idx + b_idx].all()):
            raise ValueError(
                f"{kind} normalisation needs eye points {a_idx + b_idx} to be visible, "
                f"but sample {sample} lacks some of them"
            )
    raise ValueError(
        f"{kind} normalising distance of sample {sample} is {float(dist[sample])} (must be > 0)"
    )


def per_image_nme(
    pred: Tensor,
    target: Tensor,
    visibility: Tensor | None,
    norm: Tensor,
) -> Tensor:
    """Per-image normalised mean error.

    Args:
        pred: ``(B, L, 2)`` predicted landmarks in pixels.
        target: ``(B, L, 2)`` ground-truth landmarks in pixels.
        visibility: ``(B, L)`` bool mask of the points that count, or ``None`` for all.
        norm: ``(B,)`` normalising distances in pixels (see :func:`normalising_distance`).

    Returns:
        ``(B,)`` mean Euclidean error over the visible points divided by ``norm``, as a
        fraction (not a percentage), in at least float32.

    Raises:
        ValueError: on shape mismatches or an image with no visible landmark.
    """
    _check_points(target, "target")
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}"
        )
    mask = _visibility_mask(visibility, target)
    dtype = torch.promote_types(_compute_dtype(pred.dtype), _compute_dtype(target.dtype))
    norm = torch.as_tensor(norm, device=target.device).to(dtype)
    if norm.shape not in ((target.shape[0],), ()):
        raise ValueError(f"norm must have shape ({target.shape[0]},), got {tuple(norm.shape)}")

    counts = mask.sum(dim=1)
    if bool((counts == 0).any()):
        sample = int((counts == 0).nonzero()[0, 0])
        raise ValueError(f"sample {sample} has no visible landmarks; its NME is undefined")
    err = (pred.to(dtype) - target.to(dtype)).norm(dim=-1)  # (B, L)
    err = torch.where(mask, err, torch.zeros_like(err))
    return err.sum(dim=1) / counts.to(dtype) / norm


def failure_rate(nmes: Tensor | Sequence[float], threshold: float) -> float:
    """Share of images whose NME is strictly greater than ``threshold`` (both fractions).

    Args:
        nmes: ``(N,)`` per-image NMEs.
        threshold: failure threshold, e.g. ``0.10``.

    Returns:
        The failure rate in ``[0, 1]``.
    """
    threshold = _check_threshold(threshold)
    values = _as_nmes(nmes)
    return float((values > threshold).to(torch.float64).mean())


CED_STEPS = 501
"""Grid points of a plotted or logged CED curve (NME 0 to the threshold, both ends included)."""


def ced_curve(
    nmes: Tensor | Sequence[float], threshold: float, num_steps: int = CED_STEPS
) -> tuple[Tensor, Tensor]:
    """Cumulative error distribution sampled on a uniform grid.

    Args:
        nmes: ``(N,)`` per-image NMEs (fractions).
        threshold: right end of the grid.
        num_steps: number of grid points (``>= 2``), including both ends.

    Returns:
        ``(x, y)``, each ``(num_steps,)``: ``x`` runs from 0 to ``threshold``; ``y[k]`` is the
        share of images with ``NME <= x[k]``.
    """
    threshold = _check_threshold(threshold)
    if int(num_steps) < 2:
        raise ValueError(f"num_steps must be >= 2, got {num_steps}")
    values = torch.sort(_as_nmes(nmes)).values
    x = torch.linspace(0.0, threshold, int(num_steps), dtype=values.dtype, device=values.device)
    y = torch.searchsorted(values, x, right=True).to(values.dtype) / values.numel()
    return x, y


def ced_auc(nmes: Tensor | Sequence[float], threshold: float) -> float:
    """Area under the CED curve on ``[0, threshold]``, divided by ``threshold``.

    The CED ``F(x) = mean_i [nme_i <= x]`` is a step function, so its integral is exact in
    closed form: ``AUC = mean_i max(0, threshold - nme_i) / threshold``. No numerical grid is
    involved. The result lies in ``[0, 1]``; 1 means every image has NME 0, 0 means every
    image has NME ``>= threshold``.

    Args:
        nmes: ``(N,)`` per-image NMEs (fractions).
        threshold: upper integration limit, e.g. ``0.10``.
    """
    threshold = _check_threshold(threshold)
    values = _as_nmes(nmes).to(torch.float64)
    return float((threshold - values).clamp(min=0).mean() / threshold)


# ---------------------------------------------------------------------------------------------
# torchmetrics classes
# ---------------------------------------------------------------------------------------------


class _PerImageNMEMetric(Metric):
    """Base class: accumulates float32 per-image NMEs in the ``nmes`` list state."""

    is_differentiable = False
    full_state_update = False

    nmes: list[Tensor]

    def __init__(
        self, normalisation: str = "inter_ocular", scheme: str = "300w", **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        _check_kind(normalisation, "normalisation")
        self.normalisation = normalisation
        self.scheme = get_scheme(scheme)
        self.add_state("nmes", default=[], dist_reduce_fx="cat")

    def update(self, pred: Tensor, target: Tensor, visibility: Tensor | None = None) -> None:
        """Add a batch.

        Args:
            pred: ``(B, L, 2)`` predicted landmarks in pixels (any float dtype).
            target: ``(B, L, 2)`` ground-truth landmarks in pixels.
            visibility: optional ``(B, L)`` bool mask of the points that count.
        """
        pred = pred.detach().to(torch.float32)
        target = target.detach().to(torch.float32)
        if visibility is not None:
            visibility = visibility.detach()
        norm = normalising_distance(target, visibility, self.normalisation, self.scheme)
        self.nmes.append(per_image_nme(pred, target, visibility, norm))

    def _values(self) -> Tensor:
        """All per-image NMEs in the current (local or synced) state, ``(N,)`` float32."""
        if isinstance(self.nmes, Tensor):
            return self.nmes
        if len(self.nmes) == 0:
            return torch.zeros(0, dtype=torch.float32, device=self.device)
        return dim_zero_cat(self.nmes)

    def compute(self) -> Tensor:
        """The metric over every image seen (NaN if none was)."""
        values = self._values()
        if values.numel() == 0:
            return torch.tensor(float("nan"), dtype=torch.float32, device=self.device)
        return self._summarise(values)

    def _summarise(self, values: Tensor) -> Tensor:
        """The metric from the ``(N,)`` float32 per-image NMEs (N >= 1)."""
        raise NotImplementedError

    def per_image(self) -> Tensor:
        """``(N,)`` float32 per-image NMEs (fractions) of every image seen since the last reset.

        In a distributed run the values of all processes are gathered, as in ``compute``.
        """
        if self._is_synced:
            return self._values().clone()
        with self.sync_context(
            dist_sync_fn=self.dist_sync_fn,
            should_sync=self._to_sync,
            should_unsync=self._should_unsync,
        ):
            return self._values().clone()


class LandmarkNME(_PerImageNMEMetric):
    """Mean per-image NME over every image seen, as a fraction of the normalising distance.

    Args:
        normalisation: one of :data:`NORMALISATIONS` (see :func:`normalising_distance`).
        scheme: landmark scheme name, e.g. ``"300w"``.
        kwargs: passed to :class:`torchmetrics.Metric`.
    """

    higher_is_better = False

    def _summarise(self, values: Tensor) -> Tensor:
        """Scalar float32 mean NME."""
        return values.mean()


class _ThresholdedNMEMetric(_PerImageNMEMetric):
    """A per-image NME metric summarised against a threshold (a fraction, ``> 0``)."""

    def __init__(
        self,
        threshold: float = 0.10,
        normalisation: str = "inter_ocular",
        scheme: str = "300w",
        **kwargs: Any,
    ) -> None:
        checked = _check_threshold(threshold)
        super().__init__(normalisation=normalisation, scheme=scheme, **kwargs)
        self.threshold = checked


class FailureRate(_ThresholdedNMEMetric):
    """Share of images with NME strictly above ``threshold``.

    Args:
        threshold: failure threshold as a fraction (``> 0``), e.g. ``0.10``.
        normalisation: one of :data:`NORMALISATIONS`.
        scheme: landmark scheme name.
        kwargs: passed to :class:`torchmetrics.Metric`.
    """

    higher_is_better = False

    def _summarise(self, values: Tensor) -> Tensor:
        """Scalar float32 failure rate in ``[0, 1]``."""
        return (values > self.threshold).to(torch.float32).mean()


class CEDAUC(_ThresholdedNMEMetric):
    """Exact area under the CED curve up to ``threshold``, normalised to ``[0, 1]``.

    See :func:`ced_auc` for the closed form.

    Args:
        threshold: integration limit as a fraction (``> 0``), e.g. ``0.10``.
        normalisation: one of :data:`NORMALISATIONS`.
        scheme: landmark scheme name.
        kwargs: passed to :class:`torchmetrics.Metric`.
    """

    higher_is_better = True

    def _summarise(self, values: Tensor) -> Tensor:
        """Scalar float32 AUC in ``[0, 1]``."""
        return (self.threshold - values).clamp(min=0).mean() / self.threshold


class PerLandmarkNME(Metric):
    """Mean normalised error of each landmark over every image where it is visible.

    Landmark ``l``'s value is the mean over those images of ``‖p_l − g_l‖ / d`` with ``d`` the
    image's normalising distance (:func:`normalising_distance`): a fraction, like the NME. The
    mean of a landmark's values is not the NME (that averages per image first), but the two
    agree when every point is visible.

    Args:
        num_points: landmarks per face ``L``.
        normalisation: one of :data:`NORMALISATIONS`.
        scheme: landmark scheme name, e.g. ``"300w"``.
        kwargs: passed to :class:`torchmetrics.Metric`.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    error_sum: Tensor
    count: Tensor

    def __init__(
        self,
        num_points: int,
        normalisation: str = "inter_ocular",
        scheme: str = "300w",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        _check_kind(normalisation, "normalisation")
        self.normalisation = normalisation
        self.scheme = get_scheme(scheme)
        zeros = torch.zeros(num_points, dtype=torch.float32)
        self.add_state("error_sum", default=zeros.clone(), dist_reduce_fx="sum")
        self.add_state("count", default=zeros.clone(), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor, visibility: Tensor | None = None) -> None:
        """Add a batch: ``pred`` and ``target`` ``(B, L, 2)`` pixels, ``visibility`` optional
        ``(B, L)`` bool."""
        pred = pred.detach().to(torch.float32)
        target = target.detach().to(torch.float32)
        mask = _visibility_mask(None if visibility is None else visibility.detach(), target)
        norm = normalising_distance(target, mask, self.normalisation, self.scheme)
        errors = (pred - target).norm(dim=-1) / norm[:, None]  # (B, L)
        self.error_sum += torch.where(mask, errors, torch.zeros_like(errors)).sum(dim=0)
        self.count += mask.sum(dim=0).to(torch.float32)

    def compute(self) -> dict[str, Tensor]:
        """``{"nme": (L,) float32 mean normalised error per landmark (NaN for a landmark never
        visible), "faces": (L,) number of images in which each landmark was visible}``."""
        return {"nme": self.error_sum / self.count, "faces": self.count.clone()}


class MeanOffset(Metric):
    """The mean signed error ``pred − target`` of the visible points, per axis: a model's
    systematic offset, in the pixels of its input (e.g. ``(-0.24, -0.06)``: predictions sit a
    quarter pixel left of the annotations on average).

    Args:
        kwargs: passed to :class:`torchmetrics.Metric`.
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False

    error_sum: Tensor
    count: Tensor

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        zero = torch.zeros((), dtype=torch.float64)
        self.add_state("error_sum", default=zero.repeat(2), dist_reduce_fx="sum")
        self.add_state("count", default=zero.clone(), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor, visibility: Tensor | None = None) -> None:
        """Add a batch: ``pred`` and ``target`` ``(B, L, 2)`` pixels, ``visibility`` optional
        ``(B, L)`` bool."""
        _check_points(pred, "pred")
        _check_points(target, "target")
        mask = _visibility_mask(None if visibility is None else visibility.detach(), target)
        errors = pred.detach().to(torch.float64) - target.detach().to(torch.float64)
        self.error_sum += torch.where(mask[..., None], errors, torch.zeros_like(errors)).sum((0, 1))
        self.count += mask.sum().to(torch.float64)

    def compute(self) -> Tensor:
        """``(2,)`` float32 mean ``(x, y)`` signed error (NaN before any visible point)."""
        return (self.error_sum / self.count).to(torch.float32)
