"""Checks of a composed run config that need no data: run before anything is loaded or built."""

from __future__ import annotations

import math
import zipfile
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from wingface.data.checks import check_policy


def _positive_int(value: object, key: str) -> int:
    """``value`` as an int > 0, or a ValueError naming the config ``key``."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{key} must be a positive whole number of pixels, got {value!r}")
    return value


def check_run_config(cfg: DictConfig) -> None:
    """Fail fast on data/model settings that cannot work together.

    Checks ``data.on_bad_sample`` (``error`` or ``skip``) and that the crops the data module
    makes (``data.input_size``, pixels) are the network's input (``model.input_size``,
    pixels): a model fed crops of another size fails or, with global pooling, silently
    predicts in the wrong pixel frame. Keys a config does not have are not checked; the
    model's own constraints (e.g. CNN-6's input side divisible by 32) are checked when it is
    built, also before any data is read.

    Raises:
        ValueError: naming the config key(s), the value(s) and what was expected.
    """
    check_run_settings(cfg)
    data = cfg.get("data")
    model = cfg.get("model")
    if data is None:
        return
    if "on_bad_sample" in data:
        check_policy(data.on_bad_sample)
    if model is None or "input_size" not in data or "input_size" not in model:
        return
    data_size = _positive_int(data.input_size, "data.input_size")
    model_size = _positive_int(model.input_size, "model.input_size")
    if data_size != model_size:
        raise ValueError(
            f"data.input_size={data_size} does not match model.input_size={model_size}: the "
            f"data module crops faces to the network's input size; leave data.input_size at "
            f"${{model.input_size}} and set model.input_size"
        )


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_run_settings(cfg: DictConfig) -> None:
    """Check ``seed``, the training length and the learning rate before anything is built.

    ``seed`` must be a whole number; ``trainer.max_epochs`` a whole number >= 1, or -1 (no
    epoch limit) with ``trainer.max_steps`` >= 1, since every schedule is planned over the
    whole run; ``trainer.max_steps`` a whole number >= 1 or -1 (none);
    ``optim.optimizer.lr`` a finite number > 0 and ``optim.optimizer.weight_decay`` >= 0.

    Raises:
        ValueError: naming the config key, the value given and what is expected.
    """
    seed = cfg.get("seed")
    if "seed" in cfg and not _whole(seed):
        raise ValueError(f"seed must be a whole number, got {seed!r}")
    trainer = cfg.get("trainer") or {}
    max_epochs = trainer.get("max_epochs", 1)
    max_steps = trainer.get("max_steps", -1)
    if max_steps is None:
        max_steps = -1
    if not _whole(max_steps) or not (max_steps == -1 or max_steps >= 1):
        raise ValueError(
            f"trainer.max_steps must be a whole number >= 1, or -1 for no step limit, "
            f"got {max_steps!r}"
        )
    if max_epochs is None or (_whole(max_epochs) and max_epochs == -1):
        if max_steps == -1:
            raise ValueError(
                f"trainer.max_epochs={max_epochs} sets no epoch limit, so trainer.max_steps "
                f"must be >= 1 (the learning-rate schedule is planned over the whole run), "
                f"got trainer.max_steps={max_steps}"
            )
    elif not _whole(max_epochs) or max_epochs < 1:
        raise ValueError(
            f"trainer.max_epochs must be a whole number >= 1 (or -1 with trainer.max_steps), "
            f"got {max_epochs!r}"
        )
    optimizer = OmegaConf.select(cfg, "optim.optimizer", default=None) or {}
    for key, low, strict in (("lr", 0.0, True), ("weight_decay", 0.0, False)):
        if key not in optimizer:
            continue
        value = optimizer.get(key)
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or not math.isfinite(value) or value < low or (strict and value == low):
            relation = ">" if strict else ">="
            raise ValueError(
                f"optim.optimizer.{key} must be a finite number {relation} {low:g}, got {value!r}"
            )


def load_checkpoint_file(path: str | Path) -> dict[str, Any]:
    """Load a Lightning checkpoint file onto the CPU, checking that it is one.

    Raises:
        FileNotFoundError: ``ckpt_path`` names no file.
        ValueError: the file is not a checkpoint written by ``torch.save`` (e.g. a text file,
            a truncated download) or holds no ``state_dict``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ckpt_path: no checkpoint file at {path}")
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"ckpt_path: {path} is not a checkpoint (not a file written by torch.save; "
            f"expected a .ckpt from a run's checkpoints/ folder)"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception as error:
        raise ValueError(f"ckpt_path: {path} cannot be loaded as a checkpoint: {error}") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(
            f"ckpt_path: {path} holds no state_dict: not a Lightning checkpoint of a wingface run"
        )
    return checkpoint


def _describe_model(model_config: Any, option: str | None) -> str:
    """``model=<option> (<target>, input_size=..., channels=...)`` of a ``model`` mapping."""
    name = f"model={option}" if option else "a model"
    if not isinstance(model_config, dict):
        return name if option else "an unrecorded model"
    details = [str(model_config.get("_target_", "?"))]
    details += [
        f"{key}={model_config[key]}"
        for key in ("input_size", "channels", "backbone", "stage1", "stage2")
        if model_config.get(key) is not None
    ]
    return f"{name} ({', '.join(details)})"


def check_checkpoint_matches(
    module: torch.nn.Module,
    ckpt_path: str | Path,
    model_config: Any,
    model_option: str | None = None,
) -> None:
    """Check that ``ckpt_path`` is a checkpoint whose weights fit ``module``.

    Compares parameter names and shapes; the message names the model the checkpoint holds
    (recorded in it by :class:`~wingface.callbacks.run_record.RunRecord`, else its recorded
    run config) and the one the config builds.

    Raises:
        FileNotFoundError, ValueError: see :func:`load_checkpoint_file`; ValueError when the
            weights do not fit.
    """
    from wingface.callbacks.run_record import MODEL_CONFIG_KEY, MODEL_OPTION_KEY

    checkpoint = load_checkpoint_file(ckpt_path)
    stored = checkpoint["state_dict"]
    expected = module.state_dict()
    missing = sorted(set(expected) - set(stored))
    unexpected = sorted(set(stored) - set(expected))
    resized = [
        f"{k} {tuple(stored[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in stored and tuple(stored[k].shape) != tuple(v.shape)
    ]
    if not (missing or unexpected or resized):
        return
    held, held_option = checkpoint.get(MODEL_CONFIG_KEY), checkpoint.get(MODEL_OPTION_KEY)
    if held is None:
        held, held_option = _recorded_model(Path(ckpt_path))
    configured = model_config
    if isinstance(model_config, DictConfig):
        configured = OmegaConf.to_container(model_config)
    details = "; ".join(
        part
        for part in (
            f"missing {', '.join(missing[:3])}" if missing else "",
            f"unexpected {', '.join(unexpected[:3])}" if unexpected else "",
            f"other shapes: {', '.join(resized[:3])}" if resized else "",
        )
        if part
    )
    raise ValueError(
        f"ckpt_path: {ckpt_path} holds {_describe_model(held, held_option)}, but the config "
        f"builds {_describe_model(configured, model_option)}: the weights do not fit "
        f"({details})"
    )


def _recorded_model(ckpt_path: Path) -> tuple[Any, str | None]:
    """The ``model`` mapping and ``model=`` option of the run recorded beside a checkpoint
    (its run folder's ``.hydra/``), or ``(None, None)``."""
    from wingface.run_folder import RECORD_FOLDER, recorded_config

    run_folder = ckpt_path.resolve().parent.parent
    recorded = recorded_config(run_folder)
    if recorded is None or recorded.get("model") is None:
        return None, None
    hydra_file = run_folder / RECORD_FOLDER / "hydra.yaml"
    option = None
    if hydra_file.is_file():
        option = OmegaConf.select(
            OmegaConf.load(hydra_file), "hydra.runtime.choices.model", default=None
        )
    return OmegaConf.to_container(recorded.model), option
