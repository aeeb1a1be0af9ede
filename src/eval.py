"""Re-evaluate a finished run, or a model file, with its own config:

    python src/eval.py ckpt_path=<run>/checkpoints/<file>.ckpt [override ...]
    python src/eval.py data.root=<300-W layout folder> [override ...]   # the bundled model
    python src/eval.py ckpt_path=… split=val test_time_flip=true         # on the validation faces

Overrides other than ``ckpt_path``, ``task_name``, ``paths.*`` and ``hydra.*`` change the run's
config as on ``src/train.py``'s command line, e.g. ``data.eval_batch_size=64`` or
``data.root=… 'data.source.test.folders=[lfpw/testset]'``.
"""

from __future__ import annotations

import logging
import os
import sys

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import hydra
from omegaconf import DictConfig, OmegaConf

from wingface.config import (
    CONFIG_DIR,
    apply_run_overrides,
    load_dotenv_file,
    register_resolvers,
    split_eval_arguments,
)
from wingface.inference.model_file import checkpoint_or_bundled_model, checkpoint_run_config
from wingface.pipeline import evaluate

register_resolvers()
load_dotenv_file()
log = logging.getLogger(__name__)


def main() -> None:
    """Hydra takes its own arguments; the rest are applied to the run's recorded config."""
    own, run_overrides = split_eval_arguments(sys.argv[1:])
    sys.argv = [sys.argv[0], *own]

    @hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="eval")
    def evaluate_run(cfg: DictConfig) -> None:
        ckpt_path = checkpoint_or_bundled_model(cfg.ckpt_path)
        run_cfg, recorded = checkpoint_run_config(ckpt_path)
        apply_run_overrides(run_cfg, run_overrides, recorded)
        run_cfg.paths = cfg.paths
        run_cfg.task_name = cfg.task_name
        metrics = evaluate(run_cfg, str(ckpt_path), cfg.split, run_overrides)
        log.info("%s", OmegaConf.to_yaml({k: round(v, 6) for k, v in sorted(metrics.items())}))

    evaluate_run()


if __name__ == "__main__":
    main()
