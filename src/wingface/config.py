"""Hydra/OmegaConf helpers: resolvers, config loading and W&B mode selection."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = PROJECT_ROOT / "conf"


def register_resolvers() -> None:
    """Register ``${wingface_root:}`` (the repository root) once per process."""
    if not OmegaConf.has_resolver("wingface_root"):
        OmegaConf.register_new_resolver("wingface_root", lambda: str(PROJECT_ROOT))


def load_dotenv_file() -> None:
    """Read ``<root>/.env`` (if present) into the environment without overriding set values."""
    from dotenv import load_dotenv

    load_dotenv(PROJECT_ROOT / ".env", override=False)


def choose_wandb_mode() -> str:
    """Set ``WANDB_MODE`` to ``offline`` unless a key or an explicit mode is configured.

    Returns the mode in force (``online``, ``offline`` or ``disabled``).
    """
    if not os.environ.get("WANDB_MODE") and not os.environ.get("WANDB_API_KEY"):
        os.environ["WANDB_MODE"] = "offline"
        log.info("W&B: no WANDB_API_KEY, logging offline (sync later with `wandb sync <dir>`)")
    return os.environ.get("WANDB_MODE", "online")


def run_config_of_checkpoint(ckpt_path: str | Path) -> DictConfig:
    """Load the resolved training config saved beside a checkpoint.

    Looks for ``.hydra/config.yaml`` in the checkpoint's run folder (the checkpoint's parent's
    parent, as laid out by ``callbacks.model_checkpoint.dirpath``).
    """
    ckpt_path = Path(ckpt_path)
    if not ckpt_path.is_file():
        raise FileNotFoundError(f"ckpt_path: no checkpoint file at {ckpt_path}")
    config_path = ckpt_path.resolve().parent.parent / ".hydra" / "config.yaml"
    if not config_path.is_file():
        raise FileNotFoundError(
            f"ckpt_path: expected the run's config at {config_path} (a run folder made by "
            f"src/train.py holds checkpoints/ and .hydra/ side by side)"
        )
    cfg = OmegaConf.load(config_path)
    assert isinstance(cfg, DictConfig)
    return cfg
