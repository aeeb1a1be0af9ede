"""Model options through the real entry point: cascade, timm backbones, channels_last, compile."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from wingface.models.cnn import LandmarkCNN
from wingface.module import LandmarkModule
from wingface.pipeline import train


@pytest.mark.parametrize(
    "model",
    [
        ["model=cascade", "model.stage2_training=predicted"],
        ["model=cascade", "model.stage2_training=ground_truth"],
        ["model=timm", "model.backbone=resnet18", "model.input_size=64"],
    ],
    ids=["cascade-predicted", "cascade-ground_truth", "timm-resnet18"],
)
@pytest.mark.slow
def test_models_train_one_epoch(compose_train, small_data: list[str], model: list[str]) -> None:
    cfg = compose_train(
        *model,
        "logger=none",
        "trainer.max_epochs=1",
        "trainer.accelerator=cpu",
        "callbacks.landmark_panel.every_n_epochs=1",
        *small_data,
    )
    metrics = train(cfg)
    assert math.isfinite(metrics["test/nme"]) and math.isfinite(metrics["train/loss_epoch"])


def _module(**options: bool) -> LandmarkModule:
    torch.manual_seed(0)
    net = LandmarkCNN(68, 64, [8, 16, 32, 64, 64], fc_dim=64)
    torch.nn.init.normal_(net.head[-1].weight, std=0.01)  # a non-trivial output
    return LandmarkModule(net, torch.nn.L1Loss(), torch.optim.SGD, None, **options)


def test_checkpoints_load_the_same_with_or_without_compile(tmp_path: Path) -> None:
    eager = _module()
    fast = _module(channels_last=True, compile=True)
    assert list(fast.state_dict()) == list(eager.state_dict())  # no "_orig_mod." prefixes
    path = tmp_path / "weights.pt"
    torch.save(fast.state_dict(), path)  # saved by the compiled, channels-last module ...
    reloaded = _module()
    reloaded.net.head[-1].weight.data.zero_()
    reloaded.load_state_dict(torch.load(path, weights_only=True))  # ... loads into eager
    images = torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        expected = eager(images)
        torch.testing.assert_close(reloaded(images), expected)
        torch.testing.assert_close(fast(images), expected, atol=1e-3, rtol=1e-4)
    assert fast.net.features[0].weight.is_contiguous(memory_format=torch.channels_last)
