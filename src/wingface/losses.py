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
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
from torch import Tensor, nn

__all__ = [
    "LOSSES",
    "L1Loss",
    "L2Loss",
    "LandmarkLoss",
    "RectifiedWingLoss",
    "SmoothL1Loss",
    "SoftWingLoss",
    "WingLoss",
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
