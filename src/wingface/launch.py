"""Running training jobs under Hydra launchers: Lightning DDP inside a job, and SLURM settings.

Lightning's DDP launcher starts the ranks 1..N-1 of a job by running a command again. With
Hydra, Lightning rebuilds that command from ``sys.argv``, so inside a multirun
(``python src/train.py -m ...``) every rank process would start the whole sweep again (extra
sweep folders, extra jobs), and in a launcher's worker (joblib, submitit) ``sys.argv`` is not
even the training script. :func:`ddp_ranks_run_this_job` makes the rank processes run exactly
the current Hydra job instead (:func:`ddp_rank_command`), and leaves the process ready for the
sweep's next job.

:func:`slurm_batch_script` checks the settings of ``hydra/launcher=slurm`` with submitit's SLURM
executor and makes the batch script SLURM would get, without a cluster; the launcher
``hydra/launcher=slurm_local`` (``hydra_plugins.wingface_launcher``) uses it before running the
jobs with submitit's local executor.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from omegaconf import OmegaConf

log = logging.getLogger(__name__)

# Lightning modules whose ``_hydra_subprocess_cmd`` builds the command of the rank processes.
LIGHTNING_LAUNCHER_MODULES = (
    "lightning.fabric.strategies.launchers.subprocess_script",
    "lightning.pytorch.strategies.launchers.subprocess_script",
)
# Environment variables Lightning's DDP launcher sets in the process of rank 0.
DDP_ENVIRONMENT = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")
# Hydra overrides that only make sense for the sweep, or that the rank command sets itself.
SWEEP_ONLY_HYDRA_KEYS = ("hydra.mode", "hydra.run.dir", "hydra.job.name", "hydra.output_subdir")
SWEEP_ONLY_HYDRA_PREFIXES = (
    "hydra.sweep",
    "hydra.sweeper",
    "hydra/sweeper",
    "hydra.launcher",
    "hydra/launcher",
)


PROCESS_POOL_LAUNCHERS = ("parallel", "joblib")
"""``hydra/launcher`` options that run a sweep's jobs in a shared pool of worker processes."""


def runs_in_a_process_pool() -> bool:
    """Whether this process runs a job of a multirun whose launcher shares worker processes
    between jobs (:data:`PROCESS_POOL_LAUNCHERS`): there a job that ends the process (as
    ``SystemExit`` does) makes the pool abort and kill the jobs running beside it."""
    if not HydraConfig.initialized():
        return False
    hydra_cfg = HydraConfig.get()
    launcher = hydra_cfg.runtime.choices.get("hydra/launcher")
    return hydra_cfg.mode == RunMode.MULTIRUN and launcher in PROCESS_POOL_LAUNCHERS


def hydra_quote(value: str) -> str:
    """``value`` as a single-quoted Hydra override value that parses back to ``value`` exactly
    (commas, ``=``, spaces, quotes, backslashes and ``${`` included)."""
    out: list[str] = []
    backslashes = 0
    for index, char in enumerate(value):
        if char == "\\":
            backslashes += 1
            continue
        escape = char == "'" or (char == "$" and value[index + 1 : index + 2] == "{")
        # backslashes before an escaped character are escaped themselves
        out.append("\\" * (backslashes * (2 if escape else 1)))
        backslashes = 0
        out.append("\\" + char if escape else char)
    out.append("\\" * (2 * backslashes))  # before the closing quote
    return "'" + "".join(out) + "'"


def _is_sweep_only(override: str) -> bool:
    """Whether the Hydra override ``override`` concerns the sweep rather than the job."""
    (parsed,) = OverridesParser.create().parse_overrides([override])
    key = parsed.key_or_group
    return key in SWEEP_ONLY_HYDRA_KEYS or key.startswith(SWEEP_ONLY_HYDRA_PREFIXES)


def ddp_rank_command(script: str | Path, local_rank: int) -> tuple[list[str], str]:
    """The command (and working folder) that runs DDP rank ``local_rank`` of the current Hydra
    job: ``script`` as a single run with the job's config (its config name and folders, its
    overrides, the Hydra overrides that are not about the sweep), in the job's own folder, without
    writing the job's ``.hydra`` folder again and logging to ``<job name>_ddp_process_<rank>.log``.
    """
    hydra_cfg = HydraConfig.get()
    command = [sys.executable, str(Path(script).resolve())]
    for source in hydra_cfg.runtime.config_sources:
        if source.schema != "file":
            continue
        if source.provider == "main":
            command += ["--config-path", source.path]
        elif source.provider == "command-line":
            command += ["--config-dir", source.path]
    command += ["--config-name", hydra_cfg.job.config_name]
    command += list(hydra_cfg.overrides.task)
    command += [o for o in hydra_cfg.overrides.hydra if not _is_sweep_only(o)]
    command += [
        f"hydra.run.dir={hydra_quote(str(hydra_cfg.runtime.output_dir))}",
        f"hydra.job.name={hydra_cfg.job.name}_ddp_process_{local_rank}",
        "hydra.output_subdir=null",
    ]
    return command, str(hydra_cfg.runtime.cwd)


@contextmanager
def ddp_ranks_run_this_job(script: str | Path) -> Iterator[None]:
    """Within this context, Lightning's DDP launcher starts each rank process with
    :func:`ddp_rank_command` (the current job of ``script``, not the command line of the
    process); on leaving it, the process group this job opened is closed and the variables
    Lightning's launcher set (``MASTER_PORT``, ``LOCAL_RANK``, ..., ``OMP_NUM_THREADS``) and the
    torch thread count are restored, so that the next job of a multirun starts its own ranks.
    """

    def command(local_rank: int) -> tuple[list[str], str]:
        cmd, cwd = ddp_rank_command(script, local_rank)
        log.info("DDP rank %d of this job: %s", local_rank, " ".join(cmd))
        return cmd, cwd

    import torch

    modules = [importlib.import_module(name) for name in LIGHTNING_LAUNCHER_MODULES]
    for module in modules:
        if not hasattr(module, "_hydra_subprocess_cmd"):
            raise RuntimeError(
                f"{module.__name__} has no _hydra_subprocess_cmd: this Lightning version starts "
                "DDP ranks differently; wingface.launch needs updating"
            )
    originals = [module._hydra_subprocess_cmd for module in modules]
    environment = {key: os.environ.get(key) for key in (*DDP_ENVIRONMENT, "OMP_NUM_THREADS")}
    threads = torch.get_num_threads()
    distributed = torch.distributed.is_available()
    opened_here = distributed and not torch.distributed.is_initialized()
    for module in modules:
        module._hydra_subprocess_cmd = command
    try:
        yield
    finally:
        for module, original in zip(modules, originals, strict=True):
            module._hydra_subprocess_cmd = original
        if opened_here and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        for key, value in environment.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        torch.set_num_threads(threads)


def _offline_slurm_executor(folder: str | Path, max_num_timeout: int) -> Any:
    """submitit's SLURM executor on a machine without SLURM: it checks parameters and writes
    batch scripts (nothing here submits with it)."""
    from submitit.slurm.slurm import SlurmExecutor

    class OfflineSlurmExecutor(SlurmExecutor):
        @classmethod
        def affinity(cls) -> int:
            return 1  # the real one is -1 where ``srun`` is missing

    return OfflineSlurmExecutor(folder, max_num_timeout=max_num_timeout)


def slurm_batch_script(params: Mapping[str, Any], num_jobs: int) -> str:
    """The ``sbatch`` script of a job array of ``num_jobs`` jobs that the Hydra submitit
    launcher would submit with the launcher settings ``params`` (``hydra.launcher`` without
    ``_target_``), made by submitit's SLURM executor, which rejects unknown or invalid settings
    as on a cluster."""
    from submitit.slurm.slurm import _make_sbatch_string

    generic = set(OmegaConf.structured(BaseQueueConf).keys()) - {"submitit_folder"}
    init_keys = {"submitit_folder", "max_num_timeout"}
    executor = _offline_slurm_executor(
        params["submitit_folder"], int(params.get("max_num_timeout") or 0)
    )
    given = {k: v for k, v in params.items() if v is not None and k not in init_keys}
    # the translation submitit's AutoExecutor makes: generic names, then SLURM-specific ones
    settings = executor._convert_parameters({k: v for k, v in given.items() if k in generic})
    settings.update({k: v for k, v in given.items() if k not in generic})
    executor.update_parameters(**settings)
    return _make_sbatch_string(
        command=executor._submitit_command_str,
        folder=executor.folder,
        map_count=num_jobs,
        **executor.parameters,
    )
