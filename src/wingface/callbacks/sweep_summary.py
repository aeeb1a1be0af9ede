"""End of a multirun: the sweep's report in its folder and a summary run in W&B.

Registered as a Hydra callback in ``conf/hydra/default.yaml`` (``hydra.callbacks``), so every
``python src/train.py -m ...`` ends by writing ``report.md`` and its plots into the sweep folder
(see :mod:`wingface.report`) and, when the runs log to W&B, one more W&B run in the sweep's
group (``job_type: sweep-summary``) holding the table ``sweep/summary`` (one row per job) and
the report's plots: the sweep-level view beside the per-job runs. Offline without a key, like
the jobs; ``wandb sync`` uploads it with them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from wingface.config import choose_wandb_mode
from wingface.report import SweepReport, write_report

log = logging.getLogger(__name__)


def wandb_logger_config(config: DictConfig) -> DictConfig | None:
    """The W&B logger's config among ``config.logger`` (None when the runs do not use W&B)."""
    for logger_cfg in (config.get("logger") or {}).values():
        if isinstance(logger_cfg, DictConfig) and "WandbLogger" in str(logger_cfg.get("_target_")):
            return logger_cfg
    return None


def log_summary_run(report: SweepReport, sweep_dir: Path, wandb_cfg: DictConfig) -> str:
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


class SweepSummary(Callback):
    """Hydra callback: after the last job of a multirun, report the sweep (see module doc).

    A report that cannot be built (e.g. no job finished) is logged as an error; the jobs'
    own results are untouched either way.
    """

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            report = write_report(sweep_dir)
        except (FileNotFoundError, ValueError) as error:
            log.error("sweep report for %s not written: %s", sweep_dir, error)
            return
        log.info("sweep report: %s", sweep_dir / "report.md")
        wandb_cfg = wandb_logger_config(config)
        if wandb_cfg is not None:
            folder = log_summary_run(report, sweep_dir, wandb_cfg)
            log.info("sweep summary logged to W&B (%s)", folder)
