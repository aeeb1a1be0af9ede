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

from wingface.report import write_report
from wingface.wandb_run import log_sweep_summary, wandb_logger_config

log = logging.getLogger(__name__)


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
            folder = log_sweep_summary(report, sweep_dir, wandb_cfg)
            log.info("sweep summary logged to W&B (%s)", folder)
