"""Hydra launcher plugin of wingface: ``hydra/launcher=slurm_local`` (Hydra instantiates launchers
only from the ``hydra_plugins`` namespace package; found in a checkout through ``src/``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher
from omegaconf import OmegaConf

from wingface.launch import slurm_batch_script

log = logging.getLogger(__name__)


class LocalSlurmLauncher(BaseSubmititLauncher):
    """The SLURM launcher's settings run on this machine by submitit's local executor.

    Each sweep launch first writes ``<submitit folder>/slurm_array.sbatch``, the batch script
    SLURM would get (:func:`wingface.launch.slurm_batch_script`, which also rejects invalid SLURM
    settings), then runs the jobs through the Hydra submitit launcher with the settings shared by
    all submitit executors (time limit, GPUs per node, ...). One task per job: without SLURM,
    Lightning starts a DDP job's rank processes itself (``trainer=ddp trainer.devices=N``).
    """

    _EXECUTOR = "local"

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.slurm_params = dict(self.params)
        shared = set(OmegaConf.structured(BaseQueueConf).keys())
        self.params = {k: v for k, v in self.slurm_params.items() if k in shared}
        self.params["tasks_per_node"] = 1

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        """Write the SLURM batch script of these jobs, then run them locally."""
        from submitit.core.utils import JobPaths

        script = slurm_batch_script(self.slurm_params, len(job_overrides))
        folder = JobPaths.get_first_id_independent_folder(Path(self.params["submitit_folder"]))
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "slurm_array.sbatch"
        path.write_text(script)
        log.info("SLURM batch script of these jobs (not submitted): %s", path)
        return super().launch(job_overrides, initial_job_idx)
