"""Speed options as configs: learning-rate scaling with the batch size, the gpu_fast preset, the
device-resident data path through the real training entry point, and clear config errors."""

from __future__ import annotations

import math

import pytest
from hydra.utils import instantiate

from wingface.data.gpu_augment import BatchAugmentation
from wingface.optim import scaled_lr
from wingface.pipeline import build_module, train


def test_scaled_lr_rules() -> None:
    assert scaled_lr(1e-3, 256, 64, "none") == 1e-3
    assert scaled_lr(1e-3, 256, 64, "linear") == pytest.approx(4e-3)
    assert scaled_lr(1e-3, 256, 64, "sqrt") == pytest.approx(2e-3)
    assert scaled_lr(3e-3, 4, 8, "linear") == pytest.approx(1.5e-3)
    with pytest.raises(ValueError, match="optim.lr_scaling"):
        scaled_lr(1e-3, 256, 64, "cubic")
    with pytest.raises(ValueError, match="optim.base_batch_size"):
        scaled_lr(1e-3, 256, 0, "sqrt")


@pytest.mark.parametrize(
    "optim,rule,expected",
    [("adam_onecycle", "sqrt", 1e-3 * math.sqrt(4)), ("sgd_paper", "linear", 3e-3 * 32),
     ("adam_onecycle", "none", 1e-3)],
)  # fmt: skip
def test_the_run_optimizer_gets_the_scaled_rate(
    compose_train, optim: str, rule: str, expected: float
) -> None:
    cfg = compose_train(f"optim={optim}", f"optim.lr_scaling={rule}", "data.batch_size=256")
    module = build_module(cfg)
    optimizer = module.optimizer_factory(params=module.parameters())
    assert optimizer.param_groups[0]["lr"] == pytest.approx(expected)
    assert type(optimizer).__name__ == ("Adam" if optim == "adam_onecycle" else "SGD")


def test_gpu_fast_preset_composes(compose_train) -> None:
    cfg = compose_train("experiment=gpu_fast")
    assert cfg.trainer.precision == "bf16-mixed" and cfg.trainer.accelerator == "gpu"
    assert cfg.channels_last and cfg.data.on_device and cfg.optim.lr_scaling == "sqrt"
    datamodule = instantiate(cfg.data)
    augmentation = datamodule.augment(
        input_size=64, context_size=80, flip_permutation=datamodule.scheme.flip_array()
    )
    assert isinstance(augmentation, BatchAugmentation)


@pytest.mark.slow
def test_training_with_crops_and_augmentation_on_the_device(compose_train) -> None:
    """experiment=gpu_fast through the training pipeline (on the CPU here): it learns."""
    cfg = compose_train(
        "experiment=gpu_fast",
        "trainer.accelerator=cpu",
        "trainer.precision=32-true",
        "trainer.max_epochs=5",
        "model.batch_norm=true",
        "logger=none",
        "data.source.num_train=512",
        "data.source.num_val=32",
        "data.source.num_test=64",
        "data.batch_size=32",
        "data.eval_batch_size=32",
        "augment.rotate=5",
        "augment.occlusion_prob=0",
        "callbacks.landmark_panel.every_n_epochs=1",
    )
    metrics = train(cfg)
    assert metrics["train/epoch_samples"] == 512
    assert metrics["test/nme"] < metrics["test/nme_mean_shape"]


@pytest.mark.parametrize(
    "override,key",
    [("data.num_workers=-1", "data.num_workers"), ("data.batch_size=0", "data.batch_size"),
     ("data.on_device=maybe", "data.on_device")],
)  # fmt: skip
def test_bad_data_values_name_the_key(compose_train, override: str, key: str) -> None:
    cfg = compose_train(override)
    with pytest.raises(Exception, match=key):
        instantiate(cfg.data)


def test_on_device_with_the_per_sample_augmentation_names_both_keys(compose_train) -> None:
    cfg = compose_train("data.on_device=true", "augment=default", "data.source.num_train=8",
                        "data.source.num_val=4", "data.source.num_test=4")  # fmt: skip
    datamodule = instantiate(cfg.data)
    with pytest.raises(ValueError, match=r"data.on_device=true .*augment=gpu"):
        datamodule.train_dataloader()
