"""Plain CNN regressors of the Wing loss paper: CNN-6 (64 px) and CNN-7 (128 px)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class MaxBlurPool2d(nn.Module):
    """Anti-aliased 2x max pooling (Zhang, "Making Convolutional Networks Shift-Invariant
    Again", ICML 2019): a stride-1 2x2 max, then timm's ``BlurPool2d`` (binomial
    ``[1, 2, 1] ⊗ [1, 2, 1] / 16`` blur per channel, reflected borders, keep every second
    pixel): the output moves smoothly when the input moves by one pixel. ``(B, C, H, W)`` →
    ``(B, C, H / 2, W / 2)`` for even ``H``, ``W``, as ``nn.MaxPool2d(2)``, and, like it, no
    parameters.

    Args:
        channels: ``C``.
    """

    def __init__(self, channels: int) -> None:
        from timm.layers import BlurPool2d  # imported on use: timm is slow to import

        super().__init__()
        self.max = nn.MaxPool2d(2, stride=1)
        self.blur = BlurPool2d(channels, filt_size=3, stride=2)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.blur(self.max(features))


class LandmarkCNN(nn.Module):
    """A stack of ``conv3x3 → [BN] → ReLU → maxpool2x2`` blocks, then ``FC → ReLU → FC(2L)``.

    With ``channels = (32, 64, 128, 256, 512)``, ``input_size = 64`` and no batch norm this is the
    paper's CNN-6. The output is in pixels of the network input: the last layer predicts offsets
    in units of the input size from the input centre, so a zero output is the image centre.

    Args:
        num_points: number of landmarks ``L``.
        input_size: side of the square input in pixels; must be divisible by ``2**len(channels)``.
        channels: output channels of the conv blocks.
        fc_dim: width of the hidden fully connected layer.
        batch_norm: add BatchNorm after each convolution (not in the paper).
        dropout: dropout probability before the output layer (0 disables it).
        antialias: each block's ``maxpool2x2`` becomes :class:`MaxBlurPool2d` (not in the
            paper): the prediction moves smoothly with whole-pixel moves of the input. Same
            parameters and state-dict keys.

    Shapes:
        input ``(B, 3, input_size, input_size)`` float, output ``(B, L, 2)`` pixels.
    """

    def __init__(
        self,
        num_points: int,
        input_size: int,
        channels: Sequence[int],
        fc_dim: int = 1024,
        batch_norm: bool = False,
        dropout: float = 0.0,
        antialias: bool = False,
    ) -> None:
        super().__init__()
        stride = 2 ** len(channels)
        if input_size % stride:
            raise ValueError(
                f"model.input_size={input_size} must be divisible by "
                f"2**len(model.channels)={stride}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"model.dropout must be in [0, 1), got {dropout}")
        self.num_points = num_points
        self.input_size = input_size
        blocks: list[nn.Module] = []
        in_channels = 3
        for out_channels in channels:
            blocks.append(nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=not batch_norm))
            if batch_norm:
                blocks.append(nn.BatchNorm2d(out_channels))
            pool = MaxBlurPool2d(out_channels) if antialias else nn.MaxPool2d(2)
            blocks += [nn.ReLU(inplace=True), pool]
            in_channels = out_channels
        self.features = nn.Sequential(*blocks)
        feature_side = input_size // stride
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_channels * feature_side * feature_side, fc_dim),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(fc_dim, 2 * num_points),
        )
        self._initialise()

    def _initialise(self) -> None:
        """He initialisation for the ReLU layers (keeps activations at scale without batch norm);
        the output layer starts at zero, so every landmark starts at the input centre."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        nn.init.zeros_(self.head[-1].weight)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Map ``(B, 3, S, S)`` images to ``(B, L, 2)`` landmark pixels."""
        offsets = self.head(self.features(images)).view(-1, self.num_points, 2)
        return (offsets + 0.5) * self.input_size - 0.5
