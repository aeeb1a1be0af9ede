"""A non-finite training loss stops the run naming the batch, or skips it when asked to."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from wingface.losses import WingLoss
from wingface.module import LandmarkModule


class _Constant(nn.Module):
    """Predicts ``value`` for every landmark of every face."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.num_points = 3
        self.value = value
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.scale * torch.full((len(images), 3, 2), self.value)


def _batch() -> dict[str, torch.Tensor]:
    return {
        "image": torch.zeros(2, 3, 8, 8, dtype=torch.uint8),
        "landmarks": torch.ones(2, 3, 2),
        "visibility": torch.ones(2, 3),
        "index": torch.tensor([17, 42]),
    }


def test_nan_loss_stops_with_the_batch_named() -> None:
    module = LandmarkModule(_Constant(float("nan")), WingLoss(), torch.optim.SGD, None)
    with pytest.raises(FloatingPointError, match=r"batch 5 \(face indices \[17, 42\]\)"):
        module.training_step(_batch(), 5)


def test_nan_loss_is_skipped_when_asked(caplog: pytest.LogCaptureFixture) -> None:
    module = LandmarkModule(
        _Constant(float("inf")), WingLoss(), torch.optim.SGD, None, skip_nonfinite_loss=True
    )
    assert module.training_step(_batch(), 3) is None  # Lightning makes no update for None
    assert module.skipped_batches == 1
    assert "face indices [17, 42]" in caplog.text and "skipped" in caplog.text
    finite = LandmarkModule(_Constant(2.0), WingLoss(), torch.optim.SGD, None)
    assert torch.isfinite(finite.training_step(_batch(), 0))
