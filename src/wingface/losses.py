"""Landmark regression losses: L2, L1, smooth L1 and the Wing family.

Every loss takes ``pred`` and ``target`` of shape ``(B, L, 2)`` holding landmark coordinates in
pixels of the network input, and an optional ``(B, L)`` per-landmark ``weight`` (0 = ignore the
point), broadcast over x and y. A per-coordinate function ``f`` is applied to the differences
``x = pred - target``, multiplied by the weight, summed over the ``2L`` coordinates of each face
and averaged over the batch::

    loss = 1/B * sum_b sum_l weight[b, l] * (f(x[b, l, 0]) + f(x[b, l, 1]))

The sum is not divided by the number of visible points. The maths always runs in at least
float32 with autocast disabled, so mixed-precision training does not degrade the loss.

The constants of the Wing family are in pixels of the network input as well, so they only mean
what the paper intends for the input resolution they were tuned for.

:class:`AdaptiveWingLoss` is the exception: a heatmap loss (``needs_heatmaps = True``) that takes
``(B, L, h, w)`` predicted heatmaps, renders the target heatmaps from the ``(B, L, 2)``
landmarks itself and compares them pixel by pixel; see its docstring.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = [
    "LOSSES",
    "AdaptiveWingLoss",
    "L1Loss",
    "L2Loss",
    "LandmarkLoss",
    "RectifiedWingLoss",
    "SmoothL1Loss",
    "SoftWingLoss",
    "WingLoss",
    "gaussian_heatmaps",
]


def _as_float(name: str, value: object) -> float:
    """``value`` as a finite float, or a ``ValueError`` naming the config key ``loss.<name>``."""
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"loss.{name} must be a number, got {value!r}") from None
    if not math.isfinite(out):
        raise ValueError(f"loss.{name} must be finite, got {value}")
    return out


def _positive(name: str, value: object) -> float:
    """``value`` as a float that must be > 0."""
    out = _as_float(name, value)
    if out <= 0:
        raise ValueError(f"loss.{name} must be > 0, got {value}")
    return out


@contextlib.contextmanager
def _autocast_disabled(device_type: str) -> Iterator[None]:
    """Disable autocast for ``device_type`` (no-op for devices autocast does not know)."""
    is_available = getattr(torch.amp, "is_autocast_available", None)
    if is_available is not None and not is_available(device_type):
        yield
        return
    try:
        ctx = torch.autocast(device_type=device_type, enabled=False)
    except RuntimeError:
        ctx = contextlib.nullcontext()
    with ctx:
        yield


class LandmarkLoss(nn.Module):
    """Base class: weighting, reduction and float32 promotion for per-coordinate losses.

    Subclasses implement :meth:`elementwise`, the per-coordinate function ``f(x)`` of the
    difference ``x = pred - target`` (pixels of the network input).
    """

    def elementwise(self, x: Tensor) -> Tensor:
        """Per-coordinate loss ``f(x)`` for a float tensor of differences, any shape."""
        raise NotImplementedError

    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        """Weighted loss summed over coordinates and averaged over the batch.

        Args:
            pred: ``(B, L, 2)`` predicted landmarks, pixels of the network input.
            target: ``(B, L, 2)`` ground-truth landmarks, same units.
            weight: optional ``(B, L)`` per-landmark weight; 0 ignores the point.

        Returns:
            Scalar tensor, float32 (float64 if an input is float64).
        """
        if pred.dim() != 3 or pred.shape[-1] != 2:
            raise ValueError(f"pred must have shape (B, L, 2), got {tuple(pred.shape)}")
        if target.shape != pred.shape:
            raise ValueError(
                f"target shape {tuple(target.shape)} does not match pred shape {tuple(pred.shape)}"
            )
        if weight is not None and weight.shape != pred.shape[:2]:
            raise ValueError(
                f"weight must have shape (B, L) = {tuple(pred.shape[:2])}, "
                f"got {tuple(weight.shape)}"
            )
        dtype = torch.promote_types(torch.promote_types(pred.dtype, target.dtype), torch.float32)
        with _autocast_disabled(pred.device.type):
            x = pred.to(dtype) - target.to(device=pred.device, dtype=dtype)
            per_coord = self.elementwise(x)
            if weight is not None:
                w = weight.to(device=pred.device, dtype=dtype)
                per_coord = per_coord * w.unsqueeze(-1)
            return per_coord.sum(dim=(1, 2)).mean()


class L2Loss(LandmarkLoss):
    """Squared error ``f(x) = x² / 2``, with ``x`` in pixels of the network input."""

    def elementwise(self, x: Tensor) -> Tensor:
        """``x² / 2``."""
        return 0.5 * x * x


class L1Loss(LandmarkLoss):
    """Absolute error ``f(x) = |x|``, with ``x`` in pixels of the network input."""

    def elementwise(self, x: Tensor) -> Tensor:
        """``|x|``."""
        return x.abs()


class SmoothL1Loss(LandmarkLoss):
    """Smooth L1: ``f(x) = x² / (2β)`` if ``|x| < β`` else ``|x| - β/2``.

    ``x`` and ``beta`` are in pixels of the network input. ``beta = 1`` gives the usual form
    ``x²/2`` if ``|x| < 1`` else ``|x| - 1/2``.
    """

    def __init__(self, beta: float = 1.0) -> None:
        super().__init__()
        self.beta = _positive("beta", beta)

    def elementwise(self, x: Tensor) -> Tensor:
        """``x²/(2β)`` inside ``|x| < β``, ``|x| - β/2`` outside."""
        ax = x.abs()
        return torch.where(ax < self.beta, 0.5 * x * x / self.beta, ax - 0.5 * self.beta)

    def extra_repr(self) -> str:
        return f"beta={self.beta}"


class WingLoss(LandmarkLoss):
    """Wing loss (Feng et al., CVPR 2018).

    ``f(x) = w · ln(1 + |x|/ε)`` if ``|x| < w`` else ``|x| - C``, with
    ``C = w - w · ln(1 + w/ε)`` making ``f`` continuous at ``|x| = w``. ``x``, ``w`` and ``ε``
    are in pixels of the network input. The gradient magnitude ``w / (ε + |x|)`` is large for
    small errors (``w/ε`` at 0), unlike L1 and L2.
    """

    def __init__(self, w: float = 10.0, eps: float = 2.0) -> None:
        super().__init__()
        self.w = _positive("w", w)
        self.eps = _positive("eps", eps)
        self.C = self.w - self.w * math.log1p(self.w / self.eps)

    def elementwise(self, x: Tensor) -> Tensor:
        """``w·ln(1 + |x|/ε)`` inside ``|x| < w``, ``|x| - C`` outside."""
        ax = x.abs()
        inner = self.w * torch.log1p(ax / self.eps)
        return torch.where(ax < self.w, inner, ax - self.C)

    def extra_repr(self) -> str:
        return f"w={self.w}, eps={self.eps}, C={self.C:.6g}"


class RectifiedWingLoss(LandmarkLoss):
    """Rectified Wing loss: Wing with a flat zone ``|x| < r`` that ignores tiny errors.

    ``f(x) = 0`` if ``|x| < r``; ``w · ln(1 + (|x| - r)/ε)`` if ``r ≤ |x| < w``;
    ``|x| - C`` otherwise, with ``C = w - w · ln(1 + (w - r)/ε)``. ``x``, ``w``, ``ε`` and
    ``r`` are in pixels of the network input; requires ``0 ≤ r < w``.
    """

    def __init__(self, w: float = 10.0, eps: float = 2.0, r: float = 0.2) -> None:
        super().__init__()
        self.w = _positive("w", w)
        self.eps = _positive("eps", eps)
        self.r = _as_float("r", r)
        if self.r < 0:
            raise ValueError(f"loss.r must be >= 0, got {r}")
        if self.r >= self.w:
            raise ValueError(f"loss.r must be < loss.w ({self.w}), got {r}")
        self.C = self.w - self.w * math.log1p((self.w - self.r) / self.eps)

    def elementwise(self, x: Tensor) -> Tensor:
        """0 for ``|x| < r``, ``w·ln(1 + (|x|-r)/ε)`` up to ``w``, ``|x| - C`` beyond."""
        ax = x.abs()
        # Clamping keeps the unused branch finite (and its gradient zero) below r.
        inner = self.w * torch.log1p((ax - self.r).clamp_min(0.0) / self.eps)
        outer = torch.where(ax < self.w, inner, ax - self.C)
        return torch.where(ax < self.r, torch.zeros_like(ax), outer)

    def extra_repr(self) -> str:
        return f"w={self.w}, eps={self.eps}, r={self.r}, C={self.C:.6g}"


class SoftWingLoss(LandmarkLoss):
    """Soft Wing loss: L1 for small errors, a logarithmic wing for large ones.

    ``f(x) = |x|`` if ``|x| < ω1`` else ``ω2 · ln(1 + |x|/ε) + B``, with
    ``B = ω1 - ω2 · ln(1 + ω1/ε)`` making ``f`` continuous at ``|x| = ω1``. ``x``, ``ω1``,
    ``ω2`` and ``ε`` are in pixels of the network input.
    """

    def __init__(self, w1: float = 2.0, w2: float = 20.0, eps: float = 0.5) -> None:
        super().__init__()
        self.w1 = _positive("w1", w1)
        self.w2 = _positive("w2", w2)
        self.eps = _positive("eps", eps)
        self.B = self.w1 - self.w2 * math.log1p(self.w1 / self.eps)

    def elementwise(self, x: Tensor) -> Tensor:
        """``|x|`` inside ``|x| < ω1``, ``ω2·ln(1 + |x|/ε) + B`` outside."""
        ax = x.abs()
        outer = self.w2 * torch.log1p(ax / self.eps) + self.B
        return torch.where(ax < self.w1, ax, outer)

    def extra_repr(self) -> str:
        return f"w1={self.w1}, w2={self.w2}, eps={self.eps}, B={self.B:.6g}"


LOSSES: dict[str, type[LandmarkLoss]] = {
    "l2": L2Loss,
    "l1": L1Loss,
    "smooth_l1": SmoothL1Loss,
    "wing": WingLoss,
    "rwing": RectifiedWingLoss,
    "soft_wing": SoftWingLoss,
}


# --------------------------------------------------------------------------- heatmap losses


def gaussian_heatmaps(points: Tensor, height: int, width: int, sigma: float) -> Tensor:
    """Unnormalised Gaussian heatmaps peaking (value 1) at sub-pixel ``points``.

    Heatmap pixel centres sit at integer coordinates, 0-based: pixel ``(row v, column u)`` is at
    ``(x, y) = (u, v)``. Each heatmap is ``exp(-((u - x)² + (v - y)²) / (2σ²))`` over the whole
    grid (not truncated), so a point between pixel centres gives a grid maximum below 1.

    Args:
        points: ``(..., 2)`` ``(x, y)`` positions in heatmap pixels.
        height: heatmap rows ``h``.
        width: heatmap columns ``w``.
        sigma: standard deviation in heatmap pixels.

    Returns:
        ``(..., h, w)`` heatmaps in ``[0, 1]``, the dtype and device of ``points``.
    """
    u = torch.arange(width, dtype=points.dtype, device=points.device)
    v = torch.arange(height, dtype=points.dtype, device=points.device)
    gx = torch.exp(-((u - points[..., 0:1]) ** 2) / (2 * sigma**2))  # (..., w)
    gy = torch.exp(-((v - points[..., 1:2]) ** 2) / (2 * sigma**2))  # (..., h)
    return gy.unsqueeze(-1) * gx.unsqueeze(-2)


class AdaptiveWingLoss(nn.Module):
    """Adaptive Wing loss (Wang et al., ICCV 2019) on heatmaps, with its weighted loss map.

    Per pixel, with target ``y ∈ [0, 1]``, prediction ``ŷ`` and ``d = |y - ŷ|``::

        f = ω · ln(1 + (d/ε)^(α-y))   if d < θ
        f = A · d - C                 otherwise
        A = ω · (α-y) · (θ/ε)^(α-y-1) / (ε · (1 + (θ/ε)^(α-y)))
        C = θ · A - ω · ln(1 + (θ/ε)^(α-y))

    ``A`` and ``C`` make ``f`` and its slope continuous at ``d = θ``; with ``α - y > 1`` the slope
    is 0 at ``d = 0``. ``d``, ``θ`` and ``ε`` are in heatmap intensity units (targets peak at 1).

    Target heatmaps are rendered from the landmarks (:func:`gaussian_heatmaps`, ``σ = sigma``
    heatmap pixels). A landmark at input pixel ``x`` sits at heatmap pixel ``x / stride`` with
    ``stride = input_size / w`` (``input_size / h`` for ``y``); both grids have pixel centres at
    integer coordinates, 0-based. The decoder of
    :class:`~wingface.models.heatmap.HeatmapRegressor` inverts the same mapping.

    Each pixel's loss is multiplied by the weight map ``W = 1 + mask_weight · M``, where ``M`` is
    the binary mask ``target > mask_threshold`` dilated by a ``mask_dilation × mask_dilation``
    max filter (the paper: threshold 0.2, weight 10, 3 × 3).

    Reduction, as in the paper: the mean over the ``h · w`` pixels of each heatmap, times the
    ``(B, L)`` per-landmark weight (0 ignores a point, whose target is then never rendered), then
    the mean over all ``B · L`` heatmaps. Like the coordinate losses, the sum is not divided by the
    number of visible points. The maths runs in at least float32 with autocast disabled.

    Args:
        input_size: side of the square network input in pixels (``loss.input_size``, normally
            ``${model.input_size}``).
        omega: ``ω``, scale of the loss (``loss.omega``), > 0.
        theta: ``θ``, where the log part turns linear (``loss.theta``), > 0.
        epsilon: ``ε`` (``loss.epsilon``), > 0.
        alpha: ``α`` (``loss.alpha``), >= 2 so that ``α - y >= 1`` for every ``y ∈ [0, 1]``.
        sigma: Gaussian σ of the targets in heatmap pixels (``loss.sigma``), > 0.
        mask_threshold: target value above which a pixel is foreground
            (``loss.mask_threshold``), in ``[0, 1)``.
        mask_weight: extra weight ``w`` of the dilated foreground (``loss.mask_weight``), >= 0;
            0 turns the weight map off.
        mask_dilation: side of the square max filter that dilates the mask
            (``loss.mask_dilation``), odd, >= 1; 1 does not dilate.
    """

    needs_heatmaps = True

    def __init__(
        self,
        input_size: int,
        omega: float = 14.0,
        theta: float = 0.5,
        epsilon: float = 1.0,
        alpha: float = 2.1,
        sigma: float = 1.5,
        mask_threshold: float = 0.2,
        mask_weight: float = 10.0,
        mask_dilation: int = 3,
    ) -> None:
        super().__init__()
        if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size <= 0:
            raise ValueError(f"loss.input_size must be a positive integer, got {input_size!r}")
        self.input_size = input_size
        self.omega = _positive("omega", omega)
        self.theta = _positive("theta", theta)
        self.epsilon = _positive("epsilon", epsilon)
        self.alpha = _as_float("alpha", alpha)
        if self.alpha < 2:
            raise ValueError(
                f"loss.alpha must be >= 2 (so that alpha - y >= 1 for targets y in [0, 1]), "
                f"got {alpha}"
            )
        self.sigma = _positive("sigma", sigma)
        self.mask_threshold = _as_float("mask_threshold", mask_threshold)
        if not 0 <= self.mask_threshold < 1:
            raise ValueError(f"loss.mask_threshold must be in [0, 1), got {mask_threshold}")
        self.mask_weight = _as_float("mask_weight", mask_weight)
        if self.mask_weight < 0:
            raise ValueError(f"loss.mask_weight must be >= 0, got {mask_weight}")
        if (
            isinstance(mask_dilation, bool)
            or not isinstance(mask_dilation, int)
            or mask_dilation < 1
            or mask_dilation % 2 == 0
        ):
            raise ValueError(
                f"loss.mask_dilation must be an odd integer >= 1, got {mask_dilation!r}"
            )
        self.mask_dilation = mask_dilation

    def elementwise(self, pred: Tensor, target: Tensor) -> Tensor:
        """Per-pixel AWing of float heatmaps ``pred`` and ``target`` (same shape, any)."""
        d = (target - pred).abs()
        power = self.alpha - target  # α - y, >= 1 for y <= 1
        ratio = self.theta / self.epsilon
        t = ratio**power
        a = self.omega * power * ratio ** (power - 1) / (self.epsilon * (1 + t))
        c = self.theta * a - self.omega * torch.log1p(t)
        inner = self.omega * torch.log1p((d / self.epsilon) ** power)
        return torch.where(d < self.theta, inner, a * d - c)

    def weight_map(self, target: Tensor) -> Tensor:
        """``W = 1 + mask_weight · dilate(target > mask_threshold)`` for ``(B, L, h, w)``
        targets; same shape and dtype."""
        mask = (target > self.mask_threshold).to(target.dtype)
        if self.mask_dilation > 1:
            b, n, h, w = mask.shape
            mask = F.max_pool2d(
                mask.reshape(b * n, 1, h, w), self.mask_dilation, 1, self.mask_dilation // 2
            ).reshape(b, n, h, w)
        return 1 + self.mask_weight * mask

    def render(self, landmarks: Tensor, height: int, width: int) -> Tensor:
        """Target heatmaps ``(B, L, h, w)`` for ``(B, L, 2)`` landmarks in input pixels."""
        stride = landmarks.new_tensor([self.input_size / width, self.input_size / height])
        return gaussian_heatmaps(landmarks / stride, height, width, self.sigma)

    def forward(
        self, pred_heatmaps: Tensor, target_landmarks: Tensor, weight: Tensor | None = None
    ) -> Tensor:
        """Weighted AWing between predicted heatmaps and heatmaps rendered from the landmarks.

        Args:
            pred_heatmaps: ``(B, L, h, w)`` predicted heatmaps, target scale (peak 1).
            target_landmarks: ``(B, L, 2)`` ground-truth ``(x, y)`` in input pixels.
            weight: optional ``(B, L)`` per-landmark weight; 0 ignores the point.

        Returns:
            Scalar tensor, float32 (float64 if an input is float64).
        """
        if pred_heatmaps.dim() != 4:
            raise ValueError(
                f"pred_heatmaps must have shape (B, L, h, w), got {tuple(pred_heatmaps.shape)}"
            )
        b, n, h, w = pred_heatmaps.shape
        if target_landmarks.shape != (b, n, 2):
            raise ValueError(
                f"target_landmarks must have shape (B, L, 2) = {(b, n, 2)}, "
                f"got {tuple(target_landmarks.shape)}"
            )
        if weight is not None and weight.shape != (b, n):
            raise ValueError(f"weight must have shape (B, L) = {(b, n)}, got {tuple(weight.shape)}")
        dtype = torch.promote_types(
            torch.promote_types(pred_heatmaps.dtype, target_landmarks.dtype), torch.float32
        )
        device = pred_heatmaps.device
        with _autocast_disabled(device.type):
            pred = pred_heatmaps.to(dtype)
            points = target_landmarks.to(device=device, dtype=dtype)
            if weight is not None:
                wt = weight.to(device=device, dtype=dtype)
                # ignored points may hold placeholders (even NaN): never render them
                points = points.masked_fill((wt == 0).unsqueeze(-1), 0.0)
            target = self.render(points, h, w)
            per_pixel = self.weight_map(target) * self.elementwise(pred, target)
            per_point = per_pixel.mean(dim=(-2, -1))  # (B, L)
            if weight is not None:
                per_point = per_point * wt
            return per_point.mean()

    def extra_repr(self) -> str:
        return (
            f"input_size={self.input_size}, omega={self.omega}, theta={self.theta}, "
            f"epsilon={self.epsilon}, alpha={self.alpha}, sigma={self.sigma}, "
            f"mask_threshold={self.mask_threshold}, mask_weight={self.mask_weight}, "
            f"mask_dilation={self.mask_dilation}"
        )
