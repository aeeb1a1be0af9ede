"""What produced a run: code version, package versions and a fingerprint of the data.

Every training run writes ``run_info.json`` to its folder (beside ``.hydra/config.yaml``, the
resolved config) and sends the same record to its loggers, so a result can be traced back to the
exact code, environment and data. A launch that continues the run from a checkpoint keeps the
record of the launch that started it and adds its own under ``"resumes"``: the weights of a
resumed run were trained by every launch listed, and a finished run relaunched (to re-test it)
appears there with ``from_step`` equal to its number of optimizer steps.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np

from wingface.fault_tolerance import write_atomically
from wingface.json_files import read_json_object

PACKAGES = (
    "torch",
    "torchvision",
    "lightning",
    "torchmetrics",
    "hydra-core",
    "omegaconf",
    "wandb",
    "albumentations",
    "opencv-python-headless",
    "timm",
    "numpy",
)
"""Distributions whose versions are recorded."""

RUN_INFO_FILE = "run_info.json"
"""The provenance record in a run folder."""

log = logging.getLogger(__name__)


def git_state(folder: Path) -> dict[str, Any]:
    """``{"commit": sha or None, "dirty": bool or None}`` of the repository holding ``folder``."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=folder, capture_output=True, text=True, timeout=10, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip()

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def package_versions() -> dict[str, str | None]:
    """Installed version of each of :data:`PACKAGES` (None when not installed)."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def array_fingerprint(*arrays: np.ndarray | list[np.ndarray]) -> str:
    """First 16 hex digits of the SHA-256 of the arrays' shapes, dtypes and bytes."""
    digest = hashlib.sha256()
    for array in arrays:
        for part in array if isinstance(array, list) else [array]:
            part = np.ascontiguousarray(part)
            digest.update(f"{part.shape}{part.dtype}".encode())
            digest.update(part.tobytes())
    return digest.hexdigest()[:16]


def data_fingerprints(datamodule: Any) -> dict[str, Any]:
    """Per loaded split: number of faces and the fingerprint of its crops (images, landmarks,
    visibility), i.e. of the faces exactly as the network gets them before augmentation."""
    out: dict[str, Any] = {}
    for split, crops in sorted(getattr(datamodule, "crops", {}).items()):
        out[f"{split}_faces"] = len(crops)
        out[f"{split}_sha256"] = array_fingerprint(crops.images, crops.landmarks, crops.visibility)
    return out


def run_record(datamodule: Any, code_folder: Path) -> dict[str, Any]:
    """The provenance record of a run: git state, Python/package versions, data fingerprints.

    Args:
        datamodule: the run's data module (its loaded ``crops`` are fingerprinted).
        code_folder: a folder inside the code's git checkout.
    """
    return {
        "git": git_state(code_folder),
        "python": platform.python_version(),
        "packages": package_versions(),
        "data": data_fingerprints(datamodule),
    }


def read_run_info(path: Path) -> dict[str, Any] | None:
    """The record in ``path`` (a run folder's ``run_info.json``), or None when there is none.

    Raises:
        ValueError: naming the file when it is not a run record.
    """
    expected = "a run record (a JSON object with a 'git' entry)"
    record = read_json_object(path, expected)
    if record is not None and "git" not in record:
        raise ValueError(f"{path}: expected {expected}")
    return record


def combined_record(
    earlier: dict[str, Any] | None, launch: dict[str, Any], resumed: bool
) -> dict[str, Any]:
    """The run's record after ``launch``: ``launch`` itself when it starts the run (or nothing
    was recorded before), else (``resumed``: it continues from a checkpoint) ``earlier`` with
    ``launch`` appended to its ``"resumes"``.

    A resume whose data fingerprints differ from the recorded ones is kept and logged as a
    warning (the faces the network sees changed between launches).
    """
    if earlier is None or not resumed:
        return launch
    if launch["data"] != earlier.get("data"):
        log.warning("this launch's data fingerprints %s differ from the run's recorded ones %s",
                    launch["data"], earlier.get("data"))  # fmt: skip
    return {**earlier, "resumes": [*earlier.get("resumes", []), launch]}


MODEL_CONFIG_KEY = "model_config"
"""Checkpoint entry holding the ``model`` config the weights were trained with."""

MODEL_OPTION_KEY = "model_option"
"""Checkpoint entry holding the ``model=`` option the weights were trained with (e.g. cnn6)."""


class RunRecord(L.Callback):
    """Writes ``run_info.json`` into the run folder when fitting starts, logs the record
    (flattened under ``run/``) to every logger, and stores the run's ``model`` config in every
    checkpoint (under :data:`MODEL_CONFIG_KEY`), so a checkpoint says which model it holds.

    Args:
        output_dir: the run folder.
        code_folder: a folder inside the code's git checkout.
        model_config: the run's ``model`` config as a plain mapping (None: not stored).
        model_option: the ``model=`` option chosen (None: unknown).
    """

    def __init__(
        self,
        output_dir: str | Path,
        code_folder: str | Path,
        model_config: Any | None = None,
        model_option: str | None = None,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.code_folder = Path(code_folder)
        self.model_config = model_config
        self.model_option = model_option
        self._resumed_from: int | None = None  # optimizer steps before this launch, if resumed

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self._resumed_from = int(checkpoint.get("global_step", 0))

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if self.model_config is not None:
            checkpoint[MODEL_CONFIG_KEY] = self.model_config
        if self.model_option is not None:
            checkpoint[MODEL_OPTION_KEY] = self.model_option

    def _record(self, trainer: L.Trainer) -> None:
        if not trainer.is_global_zero:
            return
        resumed = self._resumed_from is not None
        launch = {
            **run_record(trainer.datamodule, self.code_folder),
            "from_step": self._resumed_from or 0,
        }
        path = self.output_dir / RUN_INFO_FILE
        record = combined_record(read_run_info(path), launch, resumed)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        text = (json.dumps(record, indent=2) + "\n").encode()
        write_atomically(path, lambda handle: handle.write(text))
        flat = {
            "run/git_commit": record["git"]["commit"],
            "run/git_dirty": record["git"]["dirty"],
            "run/python": record["python"],
            **{f"run/version/{k}": v for k, v in record["packages"].items()},
            **{f"run/data/{k}": v for k, v in record["data"].items()},
            "run/launches": 1 + len(record.get("resumes", [])),
            "run/last_launch_git_commit": launch["git"]["commit"],
        }
        for logger in trainer.loggers:
            logger.log_hyperparams(flat)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._record(trainer)
