"""Heatmap regression: a timm backbone, a SimpleBaseline deconvolution head, sub-pixel decoding.

Coordinate convention (shared with :class:`~wingface.losses.AdaptiveWingLoss`): pixel centres at
integer coordinates, 0-based, on both grids; a landmark at input pixel ``x`` sits at heatmap pixel
``x / stride`` with ``stride = input_size / heatmap side``.
"""

from __future__ import annotations

import math

import timm
import torch
from torch import Tensor, nn

from wingface.models.backbone import load_backbone_weights


def refine_peaks(heatmaps: Tensor) -> Tensor:
    """Sub-pixel maxima of heatmaps: the argmax refined by a parabola through the log values.

    On each axis the log heatmap at the argmax and its two neighbours is fitted by a parabola
    and its vertex taken: with ``a = ln H(u) - ln H(u-1)`` and ``b = ln H(u) - ln H(u+1)`` (both
    >= 0 at the argmax) the offset is ``(a - b) / (2 (a + b))``, always within ``[-0.5, 0.5]``.
    The log of a Gaussian is a parabola, so an axis-aligned Gaussian peak is recovered exactly.
    Values are clamped to ``>= 1e-10`` before the log; on the border (no neighbour) or a flat
    peak the offset on that axis is 0. Not differentiable (argmax).

    Args:
        heatmaps: ``(B, L, h, w)`` heatmaps, any real values.

    Returns:
        ``(B, L, 2)`` float32 (float64 for float64 input) ``(x, y)`` peaks in heatmap pixels,
        pixel centres at integer coordinates, 0-based.
    """
    b, n, h, w = heatmaps.shape
    dtype = torch.promote_types(heatmaps.dtype, torch.float32)
    logs = heatmaps.detach().to(dtype).clamp_min(1e-10).log().reshape(b, n, h * w)
    flat = logs.argmax(dim=-1)  # (B, L)
    u, v = flat % w, torch.div(flat, w, rounding_mode="floor")

    def offset(at: Tensor, size: int, step: int) -> Tensor:
        """Parabola vertex along one axis (``step`` = 1 for x, ``w`` for y)."""
        inside = (at > 0) & (at < size - 1)
        centre = logs.gather(-1, flat.unsqueeze(-1)).squeeze(-1)
        before = logs.gather(-1, (flat - step * inside).unsqueeze(-1)).squeeze(-1)
        after = logs.gather(-1, (flat + step * inside).unsqueeze(-1)).squeeze(-1)
        rise, fall = centre - before, centre - after
        total = rise + fall
        safe = torch.where(total > 0, total, torch.ones_like(total))
        return torch.where(inside & (total > 0), (rise - fall) / (2 * safe), 0.0)

    x = u.to(dtype) + offset(u, w, 1)
    y = v.to(dtype) + offset(v, h, w)
    return torch.stack((x, y), dim=-1)


class HeatmapRegressor(nn.Module):
    """A timm backbone's last feature map, SimpleBaseline deconvolutions, one heatmap per point.

    The head (Xiao et al., ECCV 2018) is ``num_deconv`` blocks of ``ConvTranspose2d(4×4,
    stride 2) → BN → ReLU`` with ``deconv_channels`` channels, then a 1×1 convolution to ``L``
    heatmaps; ``num_deconv = log2(backbone reduction / heatmap_stride)`` (3 for ResNets with
    stride 4). Heatmaps are trained to peak at 1 (see :class:`~wingface.losses.AdaptiveWingLoss`)
    and decoded by :func:`refine_peaks`; :meth:`forward` returns the decoded coordinates, so the
    model plugs into metrics, evaluation and prediction like a coordinate regressor.

    Args:
        num_points: landmarks ``L``.
        input_size: side ``S`` of the square input in pixels (``model.input_size``); must be a
            multiple of the backbone's reduction (32 for ResNets).
        backbone: timm model name (``model.backbone``), built with ``features_only=True``.
        pretrained_path: a local weights file for the backbone (``model.pretrained_path``);
            None starts from random weights. Nothing is downloaded.
        heatmap_stride: input pixels per heatmap pixel (``model.heatmap_stride``), a power of 2
            dividing the backbone's reduction.
        deconv_channels: channels of the deconvolution blocks (``model.deconv_channels``).

    Shapes:
        input ``(B, 3, S, S)`` normalised float; heatmaps ``(B, L, S/stride, S/stride)``;
        output ``(B, L, 2)`` ``(x, y)`` input pixels.
    """

    def __init__(
        self,
        num_points: int,
        input_size: int,
        backbone: str = "resnet18",
        pretrained_path: str | None = None,
        heatmap_stride: int = 4,
        deconv_channels: int = 256,
    ) -> None:
        super().__init__()
        if not timm.is_model(backbone):
            raise ValueError(
                f"model.backbone: unknown timm model {backbone!r} (see timm.list_models(), "
                "e.g. resnet18, resnet50, efficientnet_b0)"
            )
        if deconv_channels <= 0:
            raise ValueError(f"model.deconv_channels must be > 0, got {deconv_channels}")
        self.backbone = timm.create_model(backbone, features_only=True, pretrained=False)
        if pretrained_path:
            load_backbone_weights(self.backbone, pretrained_path)
        reduction = int(self.backbone.feature_info.reduction()[-1])
        if input_size <= 0 or input_size % reduction:
            raise ValueError(
                f"model.input_size={input_size} must be a positive multiple of the reduction "
                f"{reduction} of model.backbone={backbone}"
            )
        num_deconv = math.log2(reduction / heatmap_stride) if heatmap_stride > 0 else -1.0
        if num_deconv < 0 or not num_deconv.is_integer():
            raise ValueError(
                f"model.heatmap_stride must be a power of 2 dividing the reduction {reduction} "
                f"of model.backbone={backbone}, got {heatmap_stride}"
            )
        self.num_points = num_points
        self.input_size = input_size
        self.heatmap_stride = heatmap_stride
        blocks: list[nn.Module] = []
        channels = int(self.backbone.feature_info.channels()[-1])
        for _ in range(int(num_deconv)):
            blocks += [
                nn.ConvTranspose2d(channels, deconv_channels, 4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(deconv_channels),
                nn.ReLU(inplace=True),
            ]
            channels = deconv_channels
        self.deconv = nn.Sequential(*blocks)
        self.output = nn.Conv2d(channels, num_points, 1)
        self._initialise()

    def _initialise(self) -> None:
        """SimpleBaseline's head initialisation: small normal weights, zero biases."""
        for module in [*self.deconv.modules(), self.output]:
            if isinstance(module, nn.ConvTranspose2d | nn.Conv2d):
                nn.init.normal_(module.weight, std=0.001)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def heatmaps(self, images: Tensor) -> Tensor:
        """``(B, 3, S, S)`` normalised images → ``(B, L, S/stride, S/stride)`` heatmaps."""
        features = self.backbone(images)[-1]
        return self.output(self.deconv(features))

    def decode(self, heatmaps: Tensor) -> Tensor:
        """``(B, L, h, w)`` heatmaps → ``(B, L, 2)`` ``(x, y)`` input pixels (sub-pixel).

        Heatmap peaks (:func:`refine_peaks`) times the stride ``input_size / w`` (``/ h`` for y).
        """
        h, w = heatmaps.shape[-2:]
        peaks = refine_peaks(heatmaps)
        return peaks * peaks.new_tensor([self.input_size / w, self.input_size / h])

    def forward(self, images: Tensor) -> Tensor:
        """``(B, 3, S, S)`` normalised images → ``(B, L, 2)`` landmark input pixels."""
        return self.decode(self.heatmaps(images))
