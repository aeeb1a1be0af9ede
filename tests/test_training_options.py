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


def test_unflipping_twice_is_the_identity() -> None:
    from wingface.landmarks import get_scheme
    from wingface.test_time import unflip_points

    flip = torch.from_numpy(get_scheme("300w").flip_array())
    points = torch.rand(3, 68, 2) * 63
    once = unflip_points(points, flip, 64)
    assert not torch.allclose(once, points)
    torch.testing.assert_close(unflip_points(once, flip, 64), points)
    # the right outer eye corner (36) of a mirrored face is the mirrored left one (45)
    torch.testing.assert_close(once[:, 36, 0], 63 - points[:, 45, 0])


def test_flip_averaged_predictions_are_mirror_equivariant() -> None:
    """With ``test_time_flip`` the prediction for a mirrored image is the mirrored prediction,
    whatever the network (it is not for the plain prediction), and a mirror-symmetric image gets
    a mirror-symmetric prediction; training steps keep the plain prediction."""
    from wingface.test_time import unflip_points

    plain, averaged = _module(), _module(test_time_flip=True)
    averaged.load_state_dict(plain.state_dict())
    plain.eval()
    averaged.eval()
    images = torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8)
    flip = averaged.flip_permutation
    with torch.no_grad():
        for module, equivariant in ((plain, False), (averaged, True)):
            expected = unflip_points(module(images), flip, 64)
            mirrored = module(images.flip(-1))
            assert torch.allclose(mirrored, expected, atol=1e-4) == equivariant
        symmetric = torch.cat([images[..., :32], images[..., :32].flip(-1)], dim=-1)
        pred = averaged(symmetric)
        torch.testing.assert_close(unflip_points(pred, flip, 64), pred, atol=1e-4, rtol=1e-5)
        averaged.train()
        torch.testing.assert_close(averaged(images), plain(images))


def test_ema_decay_must_be_a_fraction() -> None:
    from wingface.callbacks.ema import EMAWeights

    with pytest.raises(ValueError, match=r"callbacks.ema.decay must be in \[0, 1\], got 1.5"):
        EMAWeights(decay=1.5)
    assert EMAWeights(decay=0.99).should_update(step_idx=0)


@pytest.mark.slow
def test_ema_checkpoints_hold_the_average_and_are_tested_as_saved(
    compose_train, small_data
) -> None:
    """``callbacks=ema`` with an average that is never updated: the checkpoint holds the
    initial weights (the same seed builds them again), not the trained ones, and the test after
    training measures those saved weights, exactly as ``src/eval.py`` does."""
    from wingface.pipeline import build_module, evaluate

    cfg = compose_train(
        "callbacks=ema",
        "callbacks.ema.update_starting_at_step=1000000",
        "logger=none",
        "trainer.max_epochs=1",
        "data.num_workers=0",
        *small_data,
    )
    metrics = train(cfg)
    (best,) = Path(cfg.paths.output_dir, "checkpoints").glob("epoch_*.ckpt")
    checkpoint = torch.load(best, map_location="cpu", weights_only=False)
    torch.manual_seed(cfg.seed)
    initial = build_module(cfg).state_dict()
    weights = [k for k in initial if k.startswith("net.") and k.endswith("weight")]
    assert len(weights) >= 6
    for key in weights:
        torch.testing.assert_close(checkpoint["state_dict"][key], initial[key])
    trained = checkpoint["current_model_state"]
    assert not torch.equal(trained[weights[0]], initial[weights[0]])
    again = evaluate(cfg, str(best))
    assert again["test/nme"] == pytest.approx(metrics["test/nme"], rel=1e-6)
