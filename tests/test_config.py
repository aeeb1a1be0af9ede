"""Every config option composes and instantiates into working objects."""

from __future__ import annotations

import math
import socket

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from wingface.config import CONFIG_DIR, apply_run_overrides, split_eval_arguments
from wingface.data.datamodule import FaceDataModule
from wingface.pipeline import build_callbacks, build_loggers, build_module, flatten_config

LOSSES = sorted(path.stem for path in (CONFIG_DIR / "loss").glob("*.yaml"))


@pytest.mark.parametrize("loss", LOSSES)
def test_every_loss_builds_from_its_config(compose_train, loss: str) -> None:
    """Each ``conf/loss`` option gives a positive float32 loss for landmarks 3 px off (a
    heatmap loss on the heatmaps of the heatmap model it needs)."""
    module = instantiate(compose_train(f"loss={loss}").loss)
    target = torch.full((2, 68, 2), 20.0)
    if getattr(module, "needs_heatmaps", False):
        cfg = compose_train(f"loss={loss}", "model=heatmap")
        net, module = instantiate(cfg.model), instantiate(cfg.loss)
        pred = net.heatmaps(torch.zeros(2, 3, net.input_size, net.input_size))
    else:
        pred = target
    value = module(pred, target + 3.0, torch.ones(2, 68))
    assert value.dtype == torch.float32 and value.item() > 0


def test_wing_overrides_reach_the_loss(compose_train) -> None:
    """``loss.w=5 loss.eps=0.5``: each coordinate 3 px off costs w ln(1 + 3 / eps) (3 < w),
    summed over the 68 x 2 coordinates of a face (the paper's formula, by hand)."""
    loss = instantiate(compose_train("loss=wing", "loss.w=5", "loss.eps=0.5").loss)
    target = torch.zeros(1, 68, 2)
    expected = 68 * 2 * 5.0 * math.log(1.0 + 3.0 / 0.5)
    assert loss(target + 3.0, target).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("model,size", [("cnn6", 64), ("cnn7", 128)])
def test_models_take_their_input_size(compose_train, model: str, size: int) -> None:
    cfg = compose_train(f"model={model}")
    net = instantiate(cfg.model)
    assert cfg.data.input_size == size
    out = net(torch.zeros(2, 3, size, size))
    assert out.shape == (2, 68, 2)


@pytest.mark.parametrize("trainer", ["default", "cpu", "gpu", "ddp"])
def test_trainer_options_compose(compose_train, trainer: str) -> None:
    cfg = compose_train(f"trainer={trainer}", "trainer.precision=bf16-mixed")
    assert cfg.trainer.precision == "bf16-mixed"
    assert cfg.trainer._target_.endswith("Trainer")


def test_cpu_trainer_instantiates_with_mixed_precision(compose_train) -> None:
    cfg = compose_train("trainer=cpu", "trainer.precision=bf16-mixed")
    trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    assert "bf16" in str(trainer.precision)


@pytest.mark.parametrize("logger,kind", [("wandb", "WandbLogger"), ("csv", "CSVLogger")])
def test_logger_options_build(compose_train, logger: str, kind: str) -> None:
    cfg = compose_train(f"logger={logger}")
    loggers = build_loggers(cfg)
    assert [type(x).__name__ for x in loggers] == [kind]


def test_logger_none_builds_nothing(compose_train) -> None:
    cfg = compose_train("logger=none")
    assert build_loggers(cfg) == []


@pytest.mark.parametrize("optim", ["adam_onecycle", "sgd_paper"])
def test_optim_options_build_optimizer_and_schedule(compose_train, optim: str) -> None:
    cfg = compose_train(f"optim={optim}")
    module = build_module(cfg)
    optimizer = instantiate(cfg.optim.optimizer)(params=module.parameters())
    scheduler = instantiate(cfg.optim.scheduler)(optimizer=optimizer, total_steps=100)
    lrs = []
    for _ in range(100):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert max(lrs) == pytest.approx(cfg.optim.optimizer.lr, rel=1e-3)
    assert lrs[-1] < lrs[0] or optim == "adam_onecycle"
    assert lrs[-1] < max(lrs) / 10


@pytest.mark.parametrize("augment", ["default", "none"])
def test_datamodule_builds_with_augment_option(compose_train, augment: str) -> None:
    cfg = compose_train(f"augment={augment}")
    datamodule = instantiate(cfg.data)
    assert isinstance(datamodule, FaceDataModule)
    assert datamodule.input_size == 64


def test_callbacks_build(compose_train) -> None:
    cfg = compose_train()
    names = sorted(type(c).__name__ for c in build_callbacks(cfg))
    assert names == [
        "BestAndLastCheckpoint",
        "FitClock",
        "InterruptCheckpoint",
        "LandmarkPanel",
        "LearningRateMonitor",
        "RunRecord",
        "StepRandomness",
        "TestReport",
    ]


def test_debug_and_experiment_configs(compose_train) -> None:
    cfg = compose_train("debug=fdr")
    assert cfg.trainer.fast_dev_run == 1
    cfg = compose_train("experiment=paper_cnn6_wing")
    assert cfg.optim.optimizer._target_ == "torch.optim.SGD"
    assert cfg.trainer.max_epochs == 800


def test_lfpw_antialias_is_lfpw_converged_with_its_two_changes(compose_train) -> None:
    """The headline ablation's jobs were launched as ``experiment=lfpw_converged`` plus two
    overrides; the named recipe must compose to exactly their recorded config."""
    named = compose_train("experiment=lfpw_antialias", "data.root=/faces")
    spelled_out = compose_train(
        "experiment=lfpw_converged",
        "model.antialias=true",
        "optim.optimizer.lr=0.002",
        "data.root=/faces",
    )

    def run_config(cfg) -> dict:  # without Hydra's own record of the command line
        return {k: v for k, v in OmegaConf.to_container(cfg).items() if k != "hydra"}

    assert named.model.antialias is True
    assert run_config(named) == run_config(spelled_out)
    assert run_config(named) != run_config(
        compose_train("experiment=lfpw_converged", "data.root=/faces")
    )


def test_config_resolves_completely(compose_train) -> None:
    cfg = compose_train()
    container = OmegaConf.to_container(cfg, resolve=True)
    assert container["paths"]["output_dir"].endswith("run")
    assert container["data"]["augment"]["rotate"] == 30.0


def test_flattened_config_has_dotted_keys(compose_train) -> None:
    flat = flatten_config(compose_train("loss=rwing", "loss.r=0.5"))
    assert flat["loss.r"] == 0.5 and flat["loss.w"] == 10.0
    assert flat["model.channels"] == [32, 64, 128, 256, 512]
    assert not any(isinstance(v, dict) and v for v in flat.values())


@pytest.mark.parametrize(
    "data,reader",
    [
        ("300w", "load_300w"),
        ("aflw", "load_aflw_csv"),
        ("wflw", "load_wflw"),
        ("cofw", "load_cofw"),
    ],
)
def test_real_dataset_configs_build_and_name_missing_files(
    compose_train, tmp_path, data: str, reader: str
) -> None:
    cfg = compose_train(f"data={data}", f"data.root={tmp_path}")
    datamodule = instantiate(cfg.data)
    assert datamodule.source.train.func.__name__ == reader
    assert datamodule.scheme.num_points == cfg.data.num_points
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        datamodule.setup("fit")


def test_missing_dataset_root_names_the_config_key(compose_train, tmp_path) -> None:
    cfg = compose_train("data=300w", f"data.root={tmp_path / 'absent'}")
    # Hydra wraps the error; the message the user reads names the key and the folder.
    with pytest.raises(InstantiationException, match="data.root: dataset folder not found"):
        instantiate(cfg.data)


def test_wandb_runs_of_a_multirun_are_named_and_grouped_by_the_sweep(
    compose_train, tmp_path
) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import open_dict

    cfg = compose_train("logger=wandb")
    OmegaConf.set_readonly(cfg.hydra, False)
    with open_dict(cfg):
        cfg.hydra.mode = RunMode.MULTIRUN
        cfg.hydra.sweep.dir = str(tmp_path / "loss_ablation")
        cfg.hydra.runtime.output_dir = str(tmp_path / "loss_ablation" / "2_loss=wing")
    HydraConfig.instance().set_config(cfg)
    (wandb_logger,) = build_loggers(cfg)
    init = wandb_logger._wandb_init  # the arguments the run is started with
    assert (init["group"], init["name"]) == ("loss_ablation", "2_loss=wing")


def test_wandb_is_offline_without_a_key_and_online_with_one(monkeypatch) -> None:
    from wingface.wandb_run import choose_wandb_mode

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert choose_wandb_mode() == "offline"
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    with socket.socket() as server:  # a reachable W&B server (see test_wandb_network.py)
        server.bind(("127.0.0.1", 0))
        server.listen()
        monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{server.getsockname()[1]}")
        assert choose_wandb_mode() == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert choose_wandb_mode() == "disabled"


def test_pose_balancing_expands_the_training_epoch(compose_train, small_data) -> None:
    cfg = compose_train("balance=pdb", *small_data)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    repeats = datamodule.train_repeats
    assert repeats.min() >= 1 and repeats.max() <= cfg.balance.max_repeat
    assert len(datamodule.dataset("train")) == repeats.sum() > len(datamodule.crops["train"])


def test_eval_arguments_split_into_hydra_and_run_overrides() -> None:
    own = ["ckpt_path=a/b.ckpt", "split=val", "hydra.run.dir=x", "paths.output_dir=y"]
    own += ["--cfg", "job"]
    run = ["data.root=/faces", "data.source.test.folders=[lfpw/testset]", "+model.extra=1"]
    run += ["~data.pose_quantiles", "data=300w"]
    assert split_eval_arguments(own + run) == (own, run)
    assert split_eval_arguments(run[:2] + own[:2] + run[2:] + own[2:]) == (own, run)


def test_run_overrides_follow_hydra_grammar_on_the_recorded_config() -> None:
    run_cfg = OmegaConf.create(
        {"data": {"root": None, "batch_size": 64, "source": {"test": {"folders": ["a"]}}}}
    )
    apply_run_overrides(
        run_cfg,
        ["data.root=/faces", "data.source.test.folders=[lfpw/testset,helen/testset]", "+x=2"],
        recorded_overrides=[],
    )
    assert run_cfg.data.root == "/faces"
    assert list(run_cfg.data.source.test.folders) == ["lfpw/testset", "helen/testset"]
    assert run_cfg.x == 2
    apply_run_overrides(run_cfg, ["~data.batch_size"], recorded_overrides=[])
    assert "batch_size" not in run_cfg.data
    with pytest.raises(Exception, match="data.rooot"):
        apply_run_overrides(run_cfg, ["data.rooot=/x"], recorded_overrides=[])
    assert not OmegaConf.is_struct(run_cfg)


def test_run_group_override_composes_the_option_with_the_runs_overrides() -> None:
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        run_cfg = compose("train", overrides=["loss=l1"])
        apply_run_overrides(
            run_cfg, ["data=300w", "data.root=/faces"], recorded_overrides=["loss=l1"]
        )
        expected = compose("train", overrides=["loss=l1", "data=300w", "data.root=/faces"])
        assert run_cfg.data == expected.data
        assert run_cfg.loss == expected.loss
        with pytest.raises(ValueError, match="experiment"):
            apply_run_overrides(run_cfg, ["experiment=gpu_fast"], recorded_overrides=[])


def test_run_group_and_new_key_overrides_together() -> None:
    """A key the run's config lacks (an older run) is added with ``+`` beside a group override:
    the key overrides apply to the run's config, not to the group's composition."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        run_cfg = compose("train", overrides=["loss=l1", "~test_time_flip"])  # an older run
        apply_run_overrides(run_cfg, ["logger=none", "+test_time_flip=true"], ["loss=l1"])
        assert run_cfg.test_time_flip is True
        assert run_cfg.logger == compose("train", overrides=["logger=none"]).logger
