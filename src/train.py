"""Train a landmark regressor: ``python src/train.py loss=wing loss.w=10 loss.eps=2``."""

from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import hydra
from omegaconf import DictConfig

from wingface.config import CONFIG_DIR, load_dotenv_file, register_resolvers
from wingface.pipeline import train

register_resolvers()
load_dotenv_file()


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Run one training job; returns the best validation NME (for Hydra sweepers)."""
    metrics = train(cfg)
    return metrics.get("val/nme_best")


if __name__ == "__main__":
    main()
