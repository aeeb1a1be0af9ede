"""Shared fixtures: composed configs in temporary folders, W&B offline, small synthetic data."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ["WANDB_MODE"] = "offline"
os.environ.setdefault("WANDB_SILENT", "true")

import torch
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from wingface.config import PROJECT_ROOT, compose_config, register_resolvers

register_resolvers()

if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    # pytest -n N (make test, make test-slow): each of the N test processes computes on its share
    # of the cores, as the parallel launcher's jobs do; more threads than cores make OpenMP spin.
    torch.set_num_threads(
        max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    )

# Small synthetic splits shared by the tests that train (generated once per session).
SMALL_DATA = [
    "data.source.num_train=96",
    "data.source.num_val=32",
    "data.source.num_test=32",
    "data.num_workers=0",
    "data.batch_size=32",
    "data.eval_batch_size=32",
]


@pytest.fixture(scope="session")
def small_data() -> list[str]:
    """Overrides for small synthetic splits (generated once per session)."""
    return list(SMALL_DATA)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A per-session cache folder for generated synthetic faces."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def compose_train(tmp_path: Path, cache_dir: Path) -> Iterator[Callable[..., DictConfig]]:
    """Compose ``conf/train.yaml`` with overrides, outputs in ``tmp_path``, as a run would."""

    def _compose(*overrides: str, config_name: str = "train") -> DictConfig:
        cfg = compose_config(overrides, config_name, with_hydra=True)
        with open_dict(cfg):
            cfg.paths.log_dir = str(tmp_path / "logs")
            cfg.paths.cache_dir = str(cache_dir)
            cfg.hydra.runtime.output_dir = str(tmp_path / "run")
            cfg.hydra.job.num = 0
        HydraConfig.instance().set_config(cfg)
        (tmp_path / "run").mkdir(exist_ok=True)
        return cfg

    yield _compose
    GlobalHydra.instance().clear()


@pytest.fixture(scope="session")
def subprocess_env(cache_dir: Path) -> dict[str, str]:
    """Environment for running ``src/train.py`` / ``src/eval.py`` as a user would."""
    env = dict(os.environ)
    env.update(
        {
            "WINGFACE_CACHE_DIR": str(cache_dir),
            "WANDB_MODE": "offline",
            "NO_ALBUMENTATIONS_UPDATE": "1",
            "PYTHONPATH": str(PROJECT_ROOT / "src"),
        }
    )
    env.pop("WANDB_API_KEY", None)
    # A W&B run started in this test process leaves its service's address in WANDB_SERVICE; a
    # script started from a shell has its own service (a killed run's id stays taken in a shared
    # one, so its resume would be refused).
    env.pop("WANDB_SERVICE", None)
    return env
