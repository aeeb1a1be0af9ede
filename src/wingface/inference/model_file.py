"""A trained model in one file, ready to use: float16 weights and the run config that built them.

    python experiments/export_model.py <run>/checkpoints/epoch_123.ckpt models/<name>.ckpt

A model file is a minimal Lightning checkpoint (``state_dict`` in float16, the Lightning
version) that also carries its run's recorded config and command-line overrides
(:data:`MODEL_RECORD_KEY`), so it needs no run folder beside it: ``src/predict.py``,
``src/eval.py`` and :class:`~wingface.inference.predictor.LandmarkPredictor` take it wherever
they take a training checkpoint (:func:`checkpoint_run_config` finds the config either way).
The weights load into the float32 network unchanged but for the float16 rounding.

A model file may also carry a *prediction offset* (:data:`PREDICTION_OFFSET_KEY`): the mean
signed error ``(x, y)`` in network-input pixels that its weights make on their run's validation
faces (``experiments/export_model.py --calibrate-offset``, :func:`validation_offset`), which
:class:`~wingface.inference.predictor.LandmarkPredictor` subtracts from every prediction, as
``calibrate_offset=true`` does in ``src/eval.py``.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning
import torch
from omegaconf import DictConfig, OmegaConf

from wingface.config import PROJECT_ROOT
from wingface.fault_tolerance import write_atomically
from wingface.preflight import load_checkpoint_file
from wingface.run_folder import (
    recorded_overrides,
    run_config_of_checkpoint,
    run_folder_of_checkpoint,
    with_later_key_defaults,
)

MODEL_RECORD_KEY = "wingface_model"
"""The key of a model file's record: ``{"config": run config, "overrides": [...]}`` and,
optionally, :data:`PREDICTION_OFFSET_KEY`."""

PREDICTION_OFFSET_KEY = "prediction_offset"
"""The record's ``[x, y]`` offset in network-input pixels, subtracted from predictions."""

BUNDLED_MODEL = PROJECT_ROOT / "models" / "cnn6_wing_300w.ckpt"
"""The model ``src/predict.py`` and ``src/eval.py`` use when no ``ckpt_path`` is given (see
``models/README.md``, its model card)."""


def export_model(
    ckpt_path: str | Path,
    out_path: str | Path,
    prediction_offset: Sequence[float] | None = None,
) -> Path:
    """Write the model file of a training checkpoint: its module's weights in float16 (other
    tensors as they are), its run's recorded config and overrides and, when given, the
    ``(x, y)`` ``prediction_offset`` (network-input pixels; :func:`validation_offset`).

    Raises:
        FileNotFoundError, ValueError: ``ckpt_path`` is not a checkpoint of a run folder, or
            ``prediction_offset`` is not two finite numbers.
    """
    offset = None if prediction_offset is None else _checked_offset(prediction_offset, "given")
    checkpoint = load_checkpoint_file(ckpt_path)
    run_cfg, overrides = _run_config(ckpt_path, checkpoint.get(MODEL_RECORD_KEY))
    weights = {
        name: value.to(torch.float16) if value.is_floating_point() else value
        for name, value in checkpoint["state_dict"].items()
    }
    record: dict[str, Any] = {
        "config": OmegaConf.to_container(run_cfg, resolve=False),
        "overrides": list(overrides),
    }
    if offset is not None:
        record[PREDICTION_OFFSET_KEY] = offset
    model = {
        "state_dict": weights,
        "pytorch-lightning_version": lightning.__version__,
        MODEL_RECORD_KEY: record,
    }
    return write_atomically(Path(out_path), lambda handle: torch.save(model, handle))


def model_record(ckpt_path: str | Path) -> dict[str, Any] | None:
    """The record of a model file (None for a training checkpoint)."""
    return load_checkpoint_file(ckpt_path).get(MODEL_RECORD_KEY)


def _checked_offset(values: Sequence[float], where: str) -> list[float]:
    """``values`` as a list of two finite floats, else a ValueError naming ``where``."""
    offset = [float(v) for v in values]
    if len(offset) != 2 or not all(math.isfinite(v) for v in offset):
        raise ValueError(
            f"prediction offset ({where}): expected two finite numbers (x, y), got {values}"
        )
    return offset


def stored_prediction_offset(ckpt_path: str | Path) -> list[float] | None:
    """The ``[x, y]`` prediction offset (network-input pixels) a model file carries; None for a
    model file without one and for a training checkpoint.

    Raises:
        ValueError: naming the file, for a stored offset that is not two finite numbers.
    """
    record = model_record(ckpt_path)
    if record is None or record.get(PREDICTION_OFFSET_KEY) is None:
        return None
    return _checked_offset(record[PREDICTION_OFFSET_KEY], str(ckpt_path))


def validation_offset(ckpt_path: str | Path, overrides: Sequence[str] = ()) -> list[float]:
    """Measure the ``[x, y]`` mean signed error (network-input pixels) that ``ckpt_path`` makes
    on its run's validation faces, as ``calibrate_offset=true`` does before testing.

    Args:
        ckpt_path: a training checkpoint or a model file.
        overrides: key overrides of the run's config (e.g. ``data.root=<300-W folder>`` when the
            data lies elsewhere than where the run read it).

    The measurement logs nowhere (the run's loggers are left out).
    """
    from wingface.config import apply_run_overrides
    from wingface.pipeline import calibrate_prediction_offset, prepare_run

    run_cfg, recorded = checkpoint_run_config(ckpt_path)
    apply_run_overrides(run_cfg, list(overrides), recorded)
    run_cfg.logger = None
    with tempfile.TemporaryDirectory(prefix="validation_offset_") as scratch:
        run_cfg.paths.output_dir = scratch  # the run's was Hydra's job folder
        prepared = prepare_run(run_cfg, ckpt_path, stages=("validate",))
        calibration = calibrate_prediction_offset(
            run_cfg, prepared.module, prepared.datamodule, str(ckpt_path)
        )
    return [calibration["calibration/offset_x"], calibration["calibration/offset_y"]]


def checkpoint_run_config(ckpt_path: str | Path) -> tuple[DictConfig, list[str]]:
    """``(run config, the run's command-line overrides)`` of a model file (from its record) or
    of a training checkpoint (from its run folder's ``.hydra/``).

    Raises:
        FileNotFoundError: naming ``ckpt_path`` or the run config it lacks.
    """
    return _run_config(ckpt_path, model_record(ckpt_path))


def _run_config(
    ckpt_path: str | Path, record: dict[str, Any] | None
) -> tuple[DictConfig, list[str]]:
    """:func:`checkpoint_run_config` given the file's model record (None: a training
    checkpoint), so that a caller holding the loaded file does not read it again."""
    if record is not None:
        run_cfg = OmegaConf.create(record["config"])
        assert isinstance(run_cfg, DictConfig)
        return with_later_key_defaults(run_cfg), [str(o) for o in record["overrides"]]
    folder = run_folder_of_checkpoint(ckpt_path)
    run_cfg = with_later_key_defaults(run_config_of_checkpoint(ckpt_path))
    return run_cfg, recorded_overrides(folder)


def checkpoint_or_bundled_model(ckpt_path: str | Path | None) -> Path:
    """``ckpt_path``, or the bundled model (:data:`BUNDLED_MODEL`) when it is None.

    Raises:
        FileNotFoundError: no ``ckpt_path`` and no bundled model in this copy.
    """
    if ckpt_path is not None:
        return Path(ckpt_path)
    if not BUNDLED_MODEL.is_file():
        raise FileNotFoundError(
            f"ckpt_path: none given and the bundled model {BUNDLED_MODEL} is missing: "
            "give ckpt_path=<run>/checkpoints/<file>.ckpt"
        )
    return BUNDLED_MODEL
