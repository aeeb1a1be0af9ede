"""Re-evaluate a finished run: ``python src/eval.py ckpt_path=<run>/checkpoints/<file>.ckpt``."""

from __future__ import annotations

import logging
import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import hydra
from omegaconf import DictConfig, OmegaConf

from wingface.config import (
    CONFIG_DIR,
    load_dotenv_file,
    register_resolvers,
    run_config_of_checkpoint,
)
from wingface.pipeline import evaluate

register_resolvers()
load_dotenv_file()
log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="eval")
def main(cfg: DictConfig) -> None:
    """Load the run's own config beside the checkpoint, apply overrides and test."""
    run_cfg = run_config_of_checkpoint(cfg.ckpt_path)
    run_cfg.merge_with_dotlist(list(cfg.overrides))
    run_cfg.paths = cfg.paths
    run_cfg.task_name = cfg.task_name
    metrics = evaluate(run_cfg, cfg.ckpt_path)
    log.info("%s", OmegaConf.to_yaml({k: round(v, 6) for k, v in sorted(metrics.items())}))


if __name__ == "__main__":
    main()
