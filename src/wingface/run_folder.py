"""A training run's folder: one launch at a time, and a recorded config that always describes
what the folder's checkpoints were trained with.

- :func:`claim_run_folder` takes an exclusive lock on ``<run>/run.lock`` (``flock``: the
  kernel releases it when the process ends, however it ends, so a lock left by a dead process
  never blocks a resume). A second launch into a folder in use stops at once, naming the
  process that holds it.
- :func:`check_resume` compares the new config with the one recorded in ``.hydra/`` by an
  earlier launch, before anything is written: a launch that would mix two experiments in one
  folder stops with the list of keys that differ. Keys that do not define the experiment
  (:data:`NON_EXPERIMENT_KEYS`: the training length, logging, loader workers, paths) may
  change; ``allow_config_change=true`` accepts any change, and the differences are logged.
- :func:`record_run_config` then writes ``.hydra/{config,hydra,overrides}.yaml`` (the training
  entry point sets ``hydra.output_subdir: null`` so that Hydra does not write them before
  these checks; a refused launch leaves the recorded config untouched).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shlex
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from wingface.fault_tolerance import remove_unfinished_writes, write_atomically
from wingface.launch import hydra_quote

log = logging.getLogger(__name__)

RECORD_FOLDER = ".hydra"
"""The folder of a run's recorded config, as Hydra names it."""

CONFIG_FILE = "config.yaml"
"""The recorded run config (interpolations unresolved), read by ``src/eval.py``."""

OVERRIDES_FILE = "overrides.yaml"
"""The recorded command-line overrides of the run."""

EVALUATION_RECORD = "evaluation.yaml"
"""What a ``src/eval.py`` evaluation measured, beside its ``metrics.json``: the checkpoint, the
split, the overrides applied to the run's recorded config and the config that resulted."""

LOCK_FILE = "run.lock"
"""The lock of a run folder; it holds a line naming the process that holds it."""

CHECKPOINT_FOLDER = "checkpoints"
"""The run's checkpoint folder (``callbacks.model_checkpoint.dirpath``)."""

NON_EXPERIMENT_KEYS = (
    "trainer.max_epochs",
    "trainer.max_steps",
    "trainer.enable_progress_bar",
    "trainer.log_every_n_steps",
    "data.num_workers",
    "data.pin_memory",
    "data.eval_batch_size",
    "data.root",
    "data.output_dir",
    "data.pose_quantiles",
    "data.estimated_yaw_bins",
    "data.protocol.subsets",
    "data.protocol.pose_subsets",
    "logger",
    "paths",
    "ckpt_path",
    "test",
    "tags",
    "callbacks.landmark_panel",
    "callbacks.model_checkpoint",
    "allow_config_change",
)
"""Config keys (and key prefixes) that may differ when a run is resumed: how long it trains,
how it logs, how its data is loaded, where files are and which test subsets it reports, but not
what it trains."""


LATER_KEY_DEFAULTS: dict[str, Any] = {
    "channels_last": True,
    "compile": False,
    "skip_nonfinite_loss": False,
    "test_time_flip": False,
    "test_time_shift": 0,
    "calibrate_offset": False,
    "data.context_oversample": 1,
}
"""Switches added after runs were recorded, with the behaviour of a run config that lacks them
(what such a run trained with): :func:`~wingface.pipeline.build_module` applies these to old
run configs, and a resume that sets one of them to this value changes nothing."""


def with_later_key_defaults(run_cfg: DictConfig) -> DictConfig:
    """``run_cfg`` (in place) with each :data:`LATER_KEY_DEFAULTS` key it lacks set to that
    default, so that a run recorded before a switch existed takes ``key=value`` overrides
    (``python src/eval.py ... test_time_flip=true``) like a newer one."""
    with open_dict(run_cfg):
        for key, value in LATER_KEY_DEFAULTS.items():
            parent, _, name = key.rpartition(".")
            node = OmegaConf.select(run_cfg, parent) if parent else run_cfg
            if isinstance(node, DictConfig) and name not in node:
                node[name] = value
    return run_cfg


class RunFolderBusyError(RuntimeError):
    """Another live process holds the run folder."""


class ConfigMismatchError(ValueError):
    """A launch into an existing run folder would change what the run trains."""


def launch_rank() -> int:
    """This process's rank in a multi-process launch (0 for the process that owns the run
    folder; DDP rank processes and SLURM tasks other than the first get > 0)."""
    for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID"):
        value = os.environ.get(key)
        if value and value.isdigit():
            return int(value)
    return 0


@contextlib.contextmanager
def claim_run_folder(folder: str | Path) -> Iterator[None]:
    """Hold ``folder``'s lock for the duration of the context. Once it holds the lock, the
    temporary files of writes a killed launch left unfinished there are removed (logged).

    Raises:
        RunFolderBusyError: another process holds it (its pid, host, start time and command are in
            the message).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    handle = (folder / LOCK_FILE).open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "a process that has not written its name yet"
        handle.close()
        raise RunFolderBusyError(
            f"run folder {folder} is in use by another launch ({holder}); wait for it to end "
            f"or give this launch another folder (hydra.run.dir=...)"
        ) from None
    try:
        handle.seek(0)
        handle.truncate()
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        command = shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])
        handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {started}: {command}\n")
        handle.flush()
        for path in remove_unfinished_writes(folder):
            log.warning("removed %s, the unfinished write of a launch that was killed", path)
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    """A config container as ``{"dotted.key": leaf}`` (empty mappings and lists are leaves)."""
    if isinstance(node, dict) and node:
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: node}


def _is_non_experiment(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in NON_EXPERIMENT_KEYS)


def config_differences(recorded: DictConfig, new: DictConfig) -> dict[str, tuple[Any, Any]]:
    """``{key: (recorded value, new value)}`` for every leaf that differs (interpolations
    compared as written, e.g. ``${model.input_size}``); a missing key reads ``<absent>``. A
    key of :data:`LATER_KEY_DEFAULTS` missing from ``recorded`` and set to its default in
    ``new`` is no difference: the recorded run trained with that behaviour."""
    old_flat = _flat(OmegaConf.to_container(recorded, resolve=False))
    new_flat = _flat(OmegaConf.to_container(new, resolve=False))
    missing = "<absent>"
    differences = {
        key: (old_flat.get(key, missing), new_flat.get(key, missing))
        for key in sorted(set(old_flat) | set(new_flat))
        if old_flat.get(key, missing) != new_flat.get(key, missing)
    }
    return {
        key: (old, value)
        for key, (old, value) in differences.items()
        if not (old == missing and key in LATER_KEY_DEFAULTS and value == LATER_KEY_DEFAULTS[key])
    }


def run_folder_of_checkpoint(ckpt_path: str | Path) -> Path:
    """The run folder a checkpoint file belongs to (the parent of its ``checkpoints/``)."""
    ckpt_path = Path(ckpt_path)
    if not ckpt_path.is_file():
        raise FileNotFoundError(f"ckpt_path: no checkpoint file at {ckpt_path}")
    return ckpt_path.resolve().parent.parent


def run_config_of_checkpoint(ckpt_path: str | Path) -> DictConfig:
    """The training config recorded in a checkpoint's run folder (``.hydra/config.yaml``)."""
    folder = run_folder_of_checkpoint(ckpt_path)
    cfg = recorded_config(folder)
    if cfg is None:
        raise FileNotFoundError(
            f"ckpt_path: expected the run's config at {folder / RECORD_FOLDER / CONFIG_FILE} "
            f"(a run folder made by src/train.py holds {CHECKPOINT_FOLDER}/ and "
            f"{RECORD_FOLDER}/ side by side)"
        )
    return cfg


def recorded_overrides(folder: str | Path) -> list[str]:
    """The command-line overrides the run in ``folder`` was launched with
    (``.hydra/overrides.yaml``; empty if none were recorded)."""
    path = Path(folder) / RECORD_FOLDER / OVERRIDES_FILE
    if not path.is_file():
        return []
    return [str(o) for o in OmegaConf.load(path)]


def recorded_config(folder: str | Path) -> DictConfig | None:
    """The config an earlier launch recorded in ``folder``, or None."""
    path = Path(folder) / RECORD_FOLDER / CONFIG_FILE
    if not path.is_file():
        return None
    cfg = OmegaConf.load(path)
    assert isinstance(cfg, DictConfig)
    return cfg


def _checkpoints(folder: Path) -> list[str]:
    return sorted(p.name for p in (folder / CHECKPOINT_FOLDER).glob("*.ckpt"))


def check_resume(cfg: DictConfig, folder: str | Path) -> None:
    """Refuse a launch into ``folder`` that would mix two runs; log accepted changes.

    With a recorded config in ``folder``: every differing key must be one of
    :data:`NON_EXPERIMENT_KEYS` (or ``allow_config_change`` be true), and a launch that does
    not resume (``ckpt_path`` null) must find no checkpoints there.

    Raises:
        ConfigMismatchError: naming the keys that differ (recorded → new) or the checkpoints found.
    """
    folder = Path(folder)
    recorded = recorded_config(folder)
    if recorded is None:
        return
    differences = config_differences(recorded, cfg)
    defining = {k: v for k, v in differences.items() if not _is_non_experiment(k)}
    lines = "\n".join(f"  {k}: {old!r} -> {new!r}" for k, (old, new) in defining.items())
    if defining and not cfg.get("allow_config_change", False):
        raise ConfigMismatchError(
            f"run folder {folder} holds a run recorded with another config "
            f"({folder / RECORD_FOLDER / CONFIG_FILE}); these keys differ (recorded -> "
            f"now):\n{lines}\nResume with the recorded settings, start a new run in another "
            f"folder, or pass allow_config_change=true to continue with the new ones. Keys "
            f"that may change on a resume: {', '.join(NON_EXPERIMENT_KEYS)}"
        )
    if cfg.get("ckpt_path") is None and (found := _checkpoints(folder)):
        raise ConfigMismatchError(
            f"run folder {folder} already holds checkpoints of an earlier launch "
            f"({', '.join(found)}): resume it with ckpt_path=last, or start a new run in "
            f"another folder"
        )
    if differences:
        changes = "\n".join(f"  {k}: {old!r} -> {new!r}" for k, (old, new) in differences.items())
        log.warning("continuing run %s with changed settings (recorded -> now):\n%s", folder,
                    changes)  # fmt: skip


def record_run_config(cfg: DictConfig, folder: str | Path) -> None:
    """Write ``.hydra/config.yaml`` (``cfg``), ``hydra.yaml`` and ``overrides.yaml`` into
    ``folder``, each file replaced whole, as Hydra lays them out."""
    record = Path(folder) / RECORD_FOLDER
    files: dict[str, Any] = {CONFIG_FILE: cfg}
    if HydraConfig.initialized():
        hydra_cfg = HydraConfig.get()
        files["hydra.yaml"] = OmegaConf.create({"hydra": hydra_cfg})
        files[OVERRIDES_FILE] = hydra_cfg.overrides.task
    for name, content in files.items():
        text = OmegaConf.to_yaml(content).encode()
        write_atomically(record / name, lambda handle, text=text: handle.write(text))


def resume_command(folder: str | Path) -> str:
    """The command that continues the current Hydra job in ``folder``: the same script and
    overrides as a single run there, with ``ckpt_path=last``."""
    script = Path(sys.argv[0])
    overrides: list[str] = []
    if HydraConfig.initialized():
        overrides = [
            o
            for o in HydraConfig.get().overrides.task
            if not o.startswith(("ckpt_path=", "hydra.run.dir="))
        ]
    if script.suffix == ".py" and script.parent.name == "src":
        script = Path("src") / script.name
    run_dir = f"hydra.run.dir={hydra_quote(str(Path(folder).resolve()))}"
    return shlex.join(["python", str(script), *overrides, run_dir, "ckpt_path=last"])
