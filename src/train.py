"""Train a landmark regressor: ``python src/train.py loss=wing loss.w=10 loss.eps=2``."""

from __future__ import annotations

import logging
import os
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import hydra
import torch
from omegaconf import DictConfig

from wingface.config import CONFIG_DIR, load_dotenv_file, register_resolvers
from wingface.launch import ddp_ranks_run_this_job
from wingface.pipeline import train

register_resolvers()
load_dotenv_file()

log = logging.getLogger(__name__)
# DDP rank processes run this script again, for the current job only (wingface.launch).
SCRIPT = Path(__file__).resolve()


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Run one training job; returns the best validation NME (for Hydra sweepers)."""
    # parallel jobs (hydra/launcher=joblib) share the CPU: OMP_NUM_THREADS sets this number
    log.info(
        "torch threads: %d (OMP_NUM_THREADS=%s)",
        torch.get_num_threads(),
        os.environ.get("OMP_NUM_THREADS", "unset"),
    )
    with ddp_ranks_run_this_job(SCRIPT):
        metrics = train(cfg)
    return metrics.get("val/nme_best")


if __name__ == "__main__":
    main()
