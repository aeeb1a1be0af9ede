"""Hydra/OmegaConf helpers: resolvers, config loading and W&B mode selection."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

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


WANDB_DEFAULT_URL = "https://api.wandb.ai"
"""The W&B server used when ``WANDB_BASE_URL`` is not set."""

WANDB_CONNECT_TIMEOUT = 5.0
"""Seconds to wait for a connection to the W&B server before logging offline instead."""


def wandb_server_error(url: str, timeout: float = WANDB_CONNECT_TIMEOUT) -> str | None:
    """Why a TCP connection to the W&B server at ``url`` cannot be opened, or None if it can."""
    parsed = urlparse(url)
    host = parsed.hostname
    if not host:
        return f"WANDB_BASE_URL={url!r} names no host"
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as error:
        return f"{type(error).__name__}: {error}"
    return None


def choose_wandb_mode() -> str:
    """Set ``WANDB_MODE`` for this run and return it (``online``, ``offline``, ``disabled``).

    Without a key or an explicit mode, W&B logs offline. Online, the W&B server
    (``WANDB_BASE_URL``, default :data:`WANDB_DEFAULT_URL`) must accept a connection within
    :data:`WANDB_CONNECT_TIMEOUT` seconds; otherwise (no network, a firewall) the run logs
    offline with a warning instead of stalling and failing in ``wandb.init``, and can be
    synced later with ``wandb sync``.
    """
    if not os.environ.get("WANDB_MODE") and not os.environ.get("WANDB_API_KEY"):
        os.environ["WANDB_MODE"] = "offline"
        log.info("W&B: no WANDB_API_KEY, logging offline (sync later with `wandb sync <dir>`)")
    mode = os.environ.get("WANDB_MODE", "online")
    if mode == "online":
        url = os.environ.get("WANDB_BASE_URL") or WANDB_DEFAULT_URL
        error = wandb_server_error(url)
        if error is not None:
            os.environ["WANDB_MODE"] = mode = "offline"
            log.warning(
                "W&B: cannot reach %s (%s): logging offline instead; sync the run later with "
                "`wandb sync <run folder>/wandb/offline-run-*`",
                url,
                error,
            )
    return mode


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
