"""Every option of every config group and every ``experiment=`` recipe, found from the
``conf/`` tree: each composes, and each runs one training, validation and test batch
(``debug=fdr``) where this machine has what it needs (a GPU for GPU trainers, the dataset's
folder for real datasets). Options that cannot run here are composed and their data module
and model are built, so a broken option is still found."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from conftest import SMALL_DATA
from shared_data import SHARED_DATA
from wingface.config import CONFIG_DIR, PROJECT_ROOT
from wingface.launch import ddp_ranks_run_this_job
from wingface.pipeline import build_module, train

SMALL_BATCHES = ["data.batch_size=8", "data.eval_batch_size=8"]
"""One batch of 8 faces per stage: enough to run every layer, cheap for ResNet-50 at 256 px."""

LAUNCHER_GROUP = "hydra/launcher"
"""Hydra's launcher options: they decide how jobs start, exercised in ``test_launchers.py``."""


def config_options() -> list[tuple[str, str]]:
    """``(group, option)`` for every ``conf/<group>/<option>.yaml`` (and Hydra launchers)."""
    found = []
    for folder in sorted(p for p in CONFIG_DIR.iterdir() if p.is_dir()):
        groups = [LAUNCHER_GROUP] if folder.name == "hydra" else [folder.name]
        for group in groups:
            found += [(group, p.stem) for p in sorted((CONFIG_DIR / group).glob("*.yaml"))]
    return [(g, o) for g, o in found if (g, o) != ("hydra", "default")]


def overrides_for(group: str, option: str) -> list[str]:
    """The overrides that select ``group=option`` for one batch (with what the option needs
    beside it: a heatmap loss and a heatmap model go together)."""
    overrides = [f"{group}={option}", "debug=fdr"]
    if (group, option) == ("loss", "awing"):
        overrides.append("model=heatmap")
    if (group, option) == ("model", "heatmap"):
        overrides.append("loss=awing")
    return overrides


def runnable_here(cfg) -> str | None:
    """Why ``cfg`` cannot train on this machine, or None when it can."""
    accelerator = str(OmegaConf.select(cfg, "trainer.accelerator", default="cpu"))
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        return "needs a GPU"
    root = OmegaConf.select(cfg, "data.root", default=None)
    if root is not None and not Path(root).is_dir():
        return f"dataset folder {root} not on this machine"
    return None


@pytest.mark.slow
@pytest.mark.parametrize(
    ("group", "option"), [pytest.param(g, o, id=f"{g}={o}") for g, o in config_options()]
)
def test_every_option_composes_and_runs_one_batch(compose_train, group: str, option: str) -> None:
    overrides = overrides_for(group, option)
    cfg = compose_train(*overrides, f"paths.data_dir={SHARED_DATA}")
    if OmegaConf.select(cfg, "data.source._target_", default="").endswith("SyntheticSource"):
        cfg = compose_train(*overrides, *SMALL_DATA, *SMALL_BATCHES)
    elif "300w" in str(OmegaConf.select(cfg, "data.root", default="")):
        cfg = compose_train(
            *overrides,
            f"paths.data_dir={SHARED_DATA}",
            "data.source.train.folders=[afw]",
            "data.source.test.folders=[lfpw/testset]",
            "data.num_workers=0",
            *SMALL_BATCHES,
        )
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
    assert build_module(cfg).net.num_points == cfg.data.num_points
    reason = runnable_here(cfg)
    if reason is not None or group == LAUNCHER_GROUP:
        if reason is None or "dataset" not in reason:
            instantiate(cfg.data)  # the data module checks its settings when built
        print(f"{group}={option}: composed and built ({reason or 'a launcher'}), not run")
        return
    # as src/train.py does: a DDP job's process group and variables end with the job
    with ddp_ranks_run_this_job(PROJECT_ROOT / "src" / "train.py"):
        metrics = train(cfg)
    assert {"val/nme", "test/nme"} <= set(metrics), sorted(metrics)
