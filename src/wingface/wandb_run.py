"""Everything the framework does with Weights & Biases.

- The mode: online with an API key and a reachable server, else offline (:func:`choose_wandb_mode`;
  ``wandb sync`` uploads an offline run later).
- The run's logger settings (:func:`wandb_logger_settings`): named after the job, grouped by
  the sweep, tagged with what the run is (:func:`run_tags`: ``loss=wing``, ``w=10``, ...) and
  given the run folder's own id (``wandb_run_id.txt``) so that a resumed run continues the same
  W&B run.
- What the callbacks log beside their files: the test CED as a native line chart
  (:func:`log_ced_chart`) and the sweep's summary run (:func:`log_sweep_summary`).
- Closing the runs at the end of a job (:func:`finish_wandb_runs`), so that the next job of a
  multirun starts a fresh one.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import string
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import lightning as L
import numpy as np
from lightning.pytorch.loggers import Logger, WandbLogger
from omegaconf import DictConfig

from wingface.metrics import ced_curve

if TYPE_CHECKING:
    from wingface.report import SweepReport

log = logging.getLogger(__name__)

RUN_ID_FILE = "wandb_run_id.txt"
"""The run folder's W&B run id (written at the first start, read when resumed)."""

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


# config groups whose chosen option becomes a tag, e.g. ``model=cnn6``
TAGGED_GROUPS = ("data", "model", "loss", "balance", "augment")
# scalar loss parameters that become tags, e.g. ``w=10`` (every loss of the zoo that has them)
TAGGED_LOSS_KEYS = ("w", "eps", "r", "w1", "w2", "beta", "omega", "theta", "epsilon", "alpha")
# W&B refuses tags longer than this
MAX_TAG_LENGTH = 64


def _format(value: Any) -> str:
    """``10.0`` → ``10``, ``0.5`` → ``0.5``; other values as ``str``."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _option_from_target(node: Any) -> str | None:
    """A group's option name guessed from its ``_target_`` class (``WingLoss`` → ``wingloss``),
    for configs composed without Hydra's record of the chosen options."""
    if isinstance(node, Mapping | DictConfig) and "_target_" in node:
        return str(node["_target_"]).rsplit(".", 1)[-1].lower()
    return None


def run_tags(
    cfg: DictConfig, base: Sequence[str] = (), choices: Mapping[str, Any] | None = None
) -> list[str]:
    """``base`` (the logger's configured tags) followed by one tag per chosen config option and
    loss parameter, without duplicates.

    Args:
        cfg: the composed run config.
        base: tags configured by hand (``logger.wandb.tags``, the run's ``tags`` by default).
        choices: Hydra's chosen option per config group (``HydraConfig.get().runtime.choices``);
            None guesses the options from the groups' ``_target_`` classes.
    """
    tags = [str(t) for t in base]
    for group in TAGGED_GROUPS:
        option = (choices or {}).get(group) or _option_from_target(cfg.get(group))
        if option is not None:
            tags.append(f"{group}={option}")
    loss = cfg.get("loss") or {}
    for key in TAGGED_LOSS_KEYS:
        value = loss.get(key) if isinstance(loss, Mapping | DictConfig) else None
        if isinstance(value, int | float) and not isinstance(value, bool):
            tags.append(f"{key}={_format(value)}")
    unique = list(dict.fromkeys(tags))
    too_long = [t for t in unique if len(t) > MAX_TAG_LENGTH]
    if too_long:
        raise ValueError(f"tags: W&B tags must be at most {MAX_TAG_LENGTH} characters: {too_long}")
    return unique


def wandb_logger_settings(
    cfg: DictConfig,
    logger_cfg: DictConfig,
    run_name: str | None,
    group: str | None,
    choices: Mapping[str, Any] | None,
    output_dir: Path,
) -> dict[str, Any]:
    """The settings a ``WandbLogger`` config leaves open, filled for this job (after choosing
    the mode): ``name`` (``run_name``) and ``group`` unless set, the run's tags, and, unless an
    ``id`` is set, the run folder's id with ``resume="allow"``."""
    choose_wandb_mode()
    settings: dict[str, Any] = {}
    if logger_cfg.get("name") is None:
        settings["name"] = run_name
    if logger_cfg.get("group") is None:
        settings["group"] = group
    settings["tags"] = run_tags(cfg, logger_cfg.get("tags") or [], choices)
    if logger_cfg.get("id") is None:
        settings["id"] = wandb_run_id(output_dir)
        settings["resume"] = "allow"
    return settings


def wandb_run_id(output_dir: Path) -> str:
    """The W&B run id of the run folder ``output_dir``: read from its ``wandb_run_id.txt``, or
    made and written there on the first start, so a resumed run continues the same W&B run."""
    path = output_dir / RUN_ID_FILE
    if path.is_file() and path.read_text().strip():
        return path.read_text().strip()
    alphabet = string.ascii_lowercase + string.digits
    run_id = "".join(secrets.choice(alphabet) for _ in range(8))
    output_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(run_id + "\n")
    return run_id


def wandb_loggers(trainer: L.Trainer) -> list[WandbLogger]:
    """The trainer's W&B loggers (none without W&B)."""
    return [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]


def log_ced_chart(logger: WandbLogger, curves: dict[str, np.ndarray], threshold: float) -> None:
    """Log the CED curves as a W&B table (``test/ced_table``: curve, NME %, share of faces) and
    a native W&B line chart over it (``test/ced_chart``), one line per curve."""
    import wandb

    data = []
    for name, nmes in curves.items():
        x, y = ced_curve(np.asarray(nmes, dtype=np.float64), threshold)
        data += [[name, round(100.0 * float(a), 4), float(b)] for a, b in zip(x, y, strict=True)]
    table = wandb.Table(columns=["curve", "nme %", "share of faces"], data=data)
    chart = wandb.plot.line(table, "nme %", "share of faces", stroke="curve", title="test CED")
    logger.experiment.log({"test/ced_table": table, "test/ced_chart": chart})


def is_wandb_logger_config(logger_cfg: Any) -> bool:
    """Whether a ``logger.<name>`` config builds Lightning's ``WandbLogger``."""
    return isinstance(logger_cfg, DictConfig) and "WandbLogger" in str(logger_cfg.get("_target_"))


def wandb_logger_config(config: DictConfig) -> DictConfig | None:
    """The W&B logger's config among ``config.logger`` (None when the runs do not use W&B)."""
    for logger_cfg in (config.get("logger") or {}).values():
        if is_wandb_logger_config(logger_cfg):
            return logger_cfg
    return None


def log_sweep_summary(report: SweepReport, sweep_dir: Path, wandb_cfg: DictConfig) -> str:
    """Log ``report`` as one W&B run grouped with the sweep's jobs; returns the run's folder."""
    import wandb

    choose_wandb_mode()
    run = wandb.init(
        project=wandb_cfg.get("project"),
        entity=wandb_cfg.get("entity"),
        group=sweep_dir.name,
        job_type="sweep-summary",
        name=f"{sweep_dir.name}_summary",
        dir=str(sweep_dir),
        tags=["sweep-summary"],
        reinit="finish_previous",
    )
    try:
        payload: dict[str, Any] = {
            "sweep/summary": wandb.Table(columns=report.columns, data=report.rows)
        }
        payload.update({f"sweep/{name}": wandb.Image(str(p)) for name, p in report.figures.items()})
        run.log(payload)
        return str(Path(run.dir).parent)
    finally:
        run.finish()


def finish_wandb_runs(loggers: Sequence[Logger]) -> None:
    """Close the W&B run of any W&B logger among ``loggers``, so that the next job of a
    multirun starts a fresh one."""
    if any(isinstance(logger, WandbLogger) for logger in loggers):
        import wandb

        if wandb.run is not None:
            wandb.finish()
