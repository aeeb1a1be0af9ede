"""Build a run from a composed config, train, test and re-evaluate."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

import lightning as L
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from wingface.callbacks.fit_clock import FitClock
from wingface.callbacks.run_record import RunRecord
from wingface.callbacks.test_report import TestReport
from wingface.evaluation import EvaluationProtocol
from wingface.fault_tolerance import (
    LAST_CHECKPOINT,
    AtomicCheckpointIO,
    InterruptCheckpoint,
    RunInterruptedError,
    StepRandomness,
    interrupted_exit_code,
    write_atomically,
)
from wingface.launch import hydra_quote, runs_in_a_process_pool
from wingface.module import LandmarkModule
from wingface.optim import scale_optimizer_lr
from wingface.preflight import check_checkpoint_matches, check_run_config
from wingface.run_folder import (
    CHECKPOINT_FOLDER,
    EVALUATION_RECORD,
    LATER_KEY_DEFAULTS,
    check_resume,
    claim_run_folder,
    launch_rank,
    record_run_config,
    resume_command,
)
from wingface.wandb_run import finish_wandb_runs, is_wandb_logger_config, wandb_logger_settings

log = logging.getLogger(__name__)


def job_identity() -> tuple[str | None, str | None]:
    """``(run name, group)`` for the current Hydra job.

    A multirun job is named after its sub-folder (``<num>_<overrides>``) and grouped by the
    sweep folder's name; a single run is named after its folder and has no group.
    """
    if not HydraConfig.initialized():
        return None, None
    hydra_cfg = HydraConfig.get()
    output_dir = Path(hydra_cfg.runtime.output_dir)
    if hydra_cfg.mode == RunMode.MULTIRUN:
        return output_dir.name, Path(hydra_cfg.sweep.dir).name
    return output_dir.name, None


def hydra_choices() -> dict[str, str] | None:
    """The option chosen for each config group of the running Hydra job (None without Hydra)."""
    if not HydraConfig.initialized():
        return None
    return {k: v for k, v in HydraConfig.get().runtime.choices.items() if isinstance(v, str)}


def build_loggers(cfg: DictConfig) -> list[Logger]:
    """Instantiate every logger under ``cfg.logger`` (a mapping name → config, possibly empty)."""
    loggers: list[Logger] = []
    for name, logger_cfg in (cfg.get("logger") or {}).items():
        if not isinstance(logger_cfg, DictConfig) or "_target_" not in logger_cfg:
            raise ValueError(f"logger.{name} must be a config with a _target_")
        if is_wandb_logger_config(logger_cfg):
            run_name, group = job_identity()
            settings = wandb_logger_settings(
                cfg, logger_cfg, run_name, group, hydra_choices(), Path(cfg.paths.output_dir)
            )
            loggers.append(instantiate(logger_cfg, **settings))
            continue
        loggers.append(instantiate(logger_cfg))
    return loggers


def checkpoint_folder(cfg: DictConfig) -> Path:
    """The run's checkpoint folder (``callbacks.model_checkpoint.dirpath``, else
    ``<run>/checkpoints``)."""
    folder = OmegaConf.select(cfg, "callbacks.model_checkpoint.dirpath", default=None)
    return Path(folder) if folder else Path(cfg.paths.output_dir) / CHECKPOINT_FOLDER


def build_callbacks(cfg: DictConfig, with_logger: bool = True) -> list[L.Callback]:
    """Instantiate every callback under ``cfg.callbacks``, plus, always, the run's provenance
    record (:class:`~wingface.callbacks.run_record.RunRecord`), the test report
    (:class:`~wingface.callbacks.test_report.TestReport`), step-keyed training randomness
    (:class:`~wingface.fault_tolerance.StepRandomness`), the checkpoint on SIGTERM
    (:class:`~wingface.fault_tolerance.InterruptCheckpoint`) and the fitting time over all
    launches (:class:`~wingface.callbacks.fit_clock.FitClock`).

    Without an experiment logger (``logger=none``) the learning-rate monitor, which can only
    write to a logger, is left out.
    """
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    model_option = (hydra_choices() or {}).get("model")
    callbacks.append(
        RunRecord(
            cfg.paths.output_dir,
            Path(__file__).parent,
            OmegaConf.to_container(cfg.model),
            model_option,
        )
    )
    callbacks.append(TestReport())
    callbacks.append(StepRandomness(cfg.seed))
    callbacks.append(InterruptCheckpoint(checkpoint_folder(cfg)))
    callbacks.append(FitClock())
    if not with_logger:
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    return callbacks


def build_protocol(cfg: DictConfig) -> EvaluationProtocol:
    """The evaluation protocol of ``data.protocol`` (the default protocol for run configs
    that predate it)."""
    return instantiate(cfg.data.protocol) if "protocol" in cfg.data else EvaluationProtocol()


def build_module(
    cfg: DictConfig,
    mean_shape: torch.Tensor | None = None,
    test_subsets: dict[str, np.ndarray] | None = None,
) -> LandmarkModule:
    """The LightningModule of ``cfg``: ``model``, ``loss`` and ``optim`` groups (the learning
    rate scaled to ``data.batch_size`` by ``optim.lr_scaling``), the evaluation protocol and
    landmark scheme of ``data``, and the ``channels_last`` / ``compile`` / ``test_time_flip`` /
    ``test_time_shift`` switches (for run configs that predate them:
    :data:`~wingface.run_folder.LATER_KEY_DEFAULTS`);
    ``mean_shape`` and ``test_subsets`` are what it needs from the data (:func:`data_inputs`)."""
    return LandmarkModule(
        net=instantiate(cfg.model),
        loss=instantiate(cfg.loss),
        optimizer=scale_optimizer_lr(
            instantiate(cfg.optim.optimizer),
            batch_size=int(OmegaConf.select(cfg, "data.batch_size", default=1)),
            base_batch_size=cfg.optim.get("base_batch_size", 64),
            rule=cfg.optim.get("lr_scaling", "none"),
        ),
        scheduler=instantiate(cfg.optim.scheduler) if cfg.optim.get("scheduler") else None,
        channels_last=bool(cfg.get("channels_last", LATER_KEY_DEFAULTS["channels_last"])),
        compile=bool(cfg.get("compile", LATER_KEY_DEFAULTS["compile"])),
        skip_nonfinite_loss=bool(
            cfg.get("skip_nonfinite_loss", LATER_KEY_DEFAULTS["skip_nonfinite_loss"])
        ),
        protocol=build_protocol(cfg),
        scheme=str(cfg.data.get("scheme", "300w")),
        mean_shape=mean_shape,
        test_subsets=test_subsets,
        test_time_flip=bool(cfg.get("test_time_flip", LATER_KEY_DEFAULTS["test_time_flip"])),
        test_time_shift=cfg.get("test_time_shift", LATER_KEY_DEFAULTS["test_time_shift"]),
    )


def data_inputs(
    datamodule: L.LightningDataModule, protocol: EvaluationProtocol, stages: Sequence[str]
) -> dict[str, Any]:
    """What the module takes from the data splits read for ``stages``, when the data module
    offers it: the training mean shape (``train_mean_shape()``, after ``fit``) and the test
    subsets' face masks (the protocol's subsets of ``test_attributes()``, after ``test``)."""
    inputs: dict[str, Any] = {}
    if "fit" in stages and hasattr(datamodule, "train_mean_shape"):
        inputs["mean_shape"] = datamodule.train_mean_shape()
    if "test" in stages and hasattr(datamodule, "test_attributes"):
        size = len(datamodule.dataset("test"))
        inputs["test_subsets"] = protocol.subset_masks(datamodule.test_attributes(), size)
    return inputs


def flatten_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as one level of dotted keys, e.g. ``{"loss.w": 10.0, ...}``."""
    flat: dict[str, Any] = {}

    def visit(prefix: str, node: Any) -> None:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                visit(f"{prefix}.{key}" if prefix else str(key), value)
        else:
            flat[prefix] = node

    visit("", OmegaConf.to_container(cfg, resolve=True))
    return flat


def record_config(loggers: list[Logger], cfg: DictConfig) -> None:
    """Send the resolved, flattened config to every logger."""
    flat = flatten_config(cfg)
    for logger in loggers:
        logger.log_hyperparams(flat)


def write_metrics(cfg: DictConfig, metrics: dict[str, float], keep_earlier: bool = False) -> Path:
    """Write ``metrics`` to ``<paths.output_dir>/metrics.json`` (read by reports and tests).

    With ``keep_earlier``, metrics an earlier launch of the run wrote there and this launch did
    not log stay (a finished run launched again trains nothing, so it logs no training or
    validation metrics; its test metrics replace the earlier ones)."""
    path = Path(cfg.paths.output_dir) / "metrics.json"
    if keep_earlier and path.is_file():
        metrics = {**json.loads(path.read_text()), **metrics}
    text = (json.dumps(dict(sorted(metrics.items())), indent=2) + "\n").encode()
    return write_atomically(path, lambda f: f.write(text))


def resolved_checkpoint(cfg: DictConfig) -> Path | None:
    """The checkpoint file ``ckpt_path`` names: ``last`` is ``<checkpoints>/last.ckpt`` when
    it exists (None: a fresh start), anything else a path."""
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path is None:
        return None
    if ckpt_path == "last":
        last = checkpoint_folder(cfg) / "last.ckpt"
        return last if last.is_file() else None
    return Path(str(ckpt_path))


class PreparedRun(NamedTuple):
    """A run ready to fit or test (:func:`prepare_run`)."""

    datamodule: L.LightningDataModule
    module: LandmarkModule
    loggers: list[Logger]
    data_seconds: float
    """Time spent reading, checking and cropping the data splits."""


def prepare_run(
    cfg: DictConfig, ckpt_path: str | Path | None = None, stages: Sequence[str] = ()
) -> PreparedRun:
    """Check the config (:func:`~wingface.preflight.check_run_config`), read the data splits
    ``stages`` need (``fit``: train and val, ``test``: test; none by default), build the
    LightningModule with what it needs from them (seeded: the same initial weights whatever
    was read), check that ``ckpt_path`` (if any) holds its weights, and build the loggers."""
    check_run_config(cfg)
    L.seed_everything(cfg.seed, workers=True)
    protocol = build_protocol(cfg)
    datamodule = instantiate(cfg.data)
    start = time.perf_counter()
    for stage in stages:
        datamodule.setup(stage)
    data_seconds = time.perf_counter() - start
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    module = build_module(cfg, **data_inputs(datamodule, protocol, stages))
    if ckpt_path is not None:
        check_checkpoint_matches(module, ckpt_path, cfg.model, (hydra_choices() or {}).get("model"))
    return PreparedRun(datamodule, module, build_loggers(cfg), data_seconds)


def train(cfg: DictConfig) -> dict[str, float]:
    """Train in the run folder ``paths.output_dir``, held for this launch alone.

    Before anything is written: the folder is locked (:func:`~wingface.run_folder.
    claim_run_folder`), the config is compared with the one an earlier launch recorded there
    (:func:`~wingface.run_folder.check_resume`) and checked (:func:`prepare_run`); only then
    is it recorded in ``.hydra/``. DDP rank processes and further SLURM tasks of the same job
    use the folder of the launch that started them.
    """
    output_dir = Path(cfg.paths.output_dir)
    if launch_rank() != 0:
        return fit_and_test(cfg)
    with claim_run_folder(output_dir):
        check_resume(cfg, output_dir)
        return fit_and_test(cfg, record_in=output_dir)


def fit_and_test(cfg: DictConfig, record_in: Path | None = None) -> dict[str, float]:
    """Fit, then test the best checkpoint; returns every logged metric as a float.

    Every split is read and checked before the first training step. On SIGTERM (or SLURM
    pre-emption) a resumable checkpoint is saved, the command that resumes the run is logged
    and the process exits with status 143 (0 when SLURM requeued the job).

    Args:
        cfg: the run config.
        record_in: the run folder to record the config in once it passed its checks.
    """
    stages = ("fit", "test") if cfg.get("test") else ("fit",)
    datamodule, module, loggers, data_seconds = prepare_run(cfg, resolved_checkpoint(cfg), stages)
    if record_in is not None:
        record_run_config(cfg, record_in)
    try:
        callbacks = build_callbacks(cfg, bool(loggers))
        trainer: L.Trainer = instantiate(
            cfg.trainer,
            callbacks=callbacks,
            logger=loggers or False,
            plugins=[AtomicCheckpointIO()],
        )
        times = {"time/data_seconds": data_seconds}
        record_config(loggers, cfg)
        try:
            trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
        except SIGTERMException:
            interrupt = next(c for c in callbacks if isinstance(c, InterruptCheckpoint))
            exit_interrupted(cfg, interrupt)
        times["time/fit_seconds"] = next(c for c in callbacks if isinstance(c, FitClock)).seconds
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        calibration: dict[str, float] = {}
        start = time.perf_counter()
        if cfg.get("test"):
            best = best_checkpoint(trainer, checkpoint_folder(cfg))
            try:
                if cfg.get("calibrate_offset"):
                    calibration = calibrate_prediction_offset(cfg, module, datamodule, best)
                trainer.test(module, datamodule=datamodule, ckpt_path=best or None)
            except SIGTERMException:
                stop_interrupted(
                    "interrupted while testing (the fit had finished); test the best "
                    f"checkpoint with: python src/eval.py ckpt_path={hydra_quote(best)}",
                    interrupted_exit_code(None),
                )
            metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
            if best:
                metrics_line = ", ".join(
                    f"{k}={v:.4f}" for k, v in sorted(metrics.items()) if k.startswith("test/")
                )
                log.info("best checkpoint %s: %s", best, metrics_line)
        times["time/test_seconds"] = time.perf_counter() - start
        metrics.update(times | calibration)
        for logger in loggers:
            logger.log_metrics(times | calibration)
        log.info(
            "time: data %.1f s, fit %.1f s, test %.1f s",
            *(times[f"time/{k}_seconds"] for k in ("data", "fit", "test")),
        )
        if trainer.is_global_zero:  # every DDP rank gets here; one file, one writer
            log.info("metrics written to %s", write_metrics(cfg, metrics, keep_earlier=True))
        return metrics
    finally:
        finish_wandb_runs(loggers)


def calibrate_prediction_offset(
    cfg: DictConfig, module: LandmarkModule, datamodule: L.LightningDataModule, ckpt_path: str
) -> dict[str, float]:
    """Measure the mean signed error (``val/offset_x``, ``val/offset_y``, input pixels) that
    ``ckpt_path`` (the module's current weights when empty) makes on the validation faces and
    set it as ``module.prediction_offset``, subtracted from later validation and test
    predictions (``calibrate_offset=true``).

    The validation pass runs on a trainer of the run's ``trainer`` config without loggers or
    callbacks, so the run's logs and checkpoints see nothing of it.

    Returns:
        ``{"calibration/offset_x": …, "calibration/offset_y": …}`` (input pixels).
    """
    module.prediction_offset.zero_()
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        logger=False,
        callbacks=[],
        enable_checkpointing=False,
        enable_progress_bar=False,
        fast_dev_run=False,
    )
    trainer.validate(module, datamodule=datamodule, ckpt_path=ckpt_path or None, verbose=False)
    offset = [float(trainer.callback_metrics[f"val/offset_{axis}"]) for axis in "xy"]
    module.prediction_offset.copy_(torch.tensor(offset))
    log.info(
        "calibrate_offset: validation predictions are offset by (%.3f, %.3f) input pixels; "
        "subtracted from the test predictions",
        *offset,
    )
    return {"calibration/offset_x": offset[0], "calibration/offset_y": offset[1]}


def best_checkpoint(trainer: L.Trainer, folder: Path) -> str:
    """The best checkpoint the fit recorded ('' when there is none to test: ``fast_dev_run``,
    no checkpoint callback, no validation; the current weights are tested then).

    Raises:
        RuntimeError: epoch checkpoints lie in ``folder`` but the fit knows no best one (its
            checkpoint state was not restored on resume): testing the current weights would
            silently report another epoch.
    """
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if best:
        return best
    written = sorted(p.name for p in folder.glob("*.ckpt") if p.name != LAST_CHECKPOINT)
    if written and not trainer.fast_dev_run:
        raise RuntimeError(
            f"the fit knows no best checkpoint although {folder} holds {written}: the resumed "
            "checkpoint lacks the checkpoint callback's state; test one with python "
            "src/eval.py ckpt_path=<file>"
        )
    log.warning("no best checkpoint (e.g. fast_dev_run): testing the current weights")
    return ""


def exit_interrupted(cfg: DictConfig, interrupt: InterruptCheckpoint) -> NoReturn:
    """Log where a SIGTERMed fit stopped and how to resume it, then exit (status 143, or 0
    when SLURM requeued the job; see :func:`stop_interrupted`)."""
    code = interrupted_exit_code(interrupt)
    if interrupt.requeued:
        log.warning("interrupted at epoch %s; SLURM requeued the job", interrupt.epoch)
        raise SystemExit(code)
    saved = f" (checkpoint {interrupt.saved})" if interrupt.saved else ""
    stop_interrupted(
        f"interrupted at epoch {interrupt.epoch}{saved}; resume with:\n  "
        f"{resume_command(cfg.paths.output_dir)}",
        code,
    )


def stop_interrupted(message: str, code: int) -> NoReturn:
    """Log ``message`` and end the interrupted run: ``SystemExit(code)``, or, in a job of a
    sweep whose jobs share worker processes (``hydra/launcher=parallel``), ``RunInterruptedError``,
    which fails that job alone instead of ending the process its pool would then kill with
    the jobs running beside it."""
    log.error(message)
    if runs_in_a_process_pool():
        raise RunInterruptedError(message)
    raise SystemExit(code)


EVAL_SPLITS = ("test", "val")
"""Splits ``src/eval.py`` measures (``split=``): the test set with its report, or the
validation faces, where evaluation-time switches (``test_time_flip=true``) are chosen."""


def write_evaluation_record(
    run_cfg: DictConfig, ckpt_path: str, split: str, overrides: Sequence[str]
) -> Path:
    """Write :data:`EVALUATION_RECORD` into ``<paths.output_dir>`` (whole or not at all):
    ``checkpoint`` (absolute path), ``split``, ``overrides`` (as given on eval.py's command
    line) and ``config`` (the evaluated run config, interpolations unresolved)."""
    record = OmegaConf.create(
        {
            "checkpoint": str(Path(ckpt_path).resolve()),
            "split": split,
            "overrides": [str(o) for o in overrides],
            "config": OmegaConf.to_container(run_cfg, resolve=False),
        }
    )
    text = OmegaConf.to_yaml(record).encode()
    path = Path(run_cfg.paths.output_dir) / EVALUATION_RECORD
    return write_atomically(path, lambda handle: handle.write(text))


def evaluate(
    run_cfg: DictConfig, ckpt_path: str, split: str = "test", overrides: Sequence[str] = ()
) -> dict[str, float]:
    """Measure ``ckpt_path`` on ``split`` (:data:`EVAL_SPLITS`) with the data and model of the
    run config ``run_cfg`` (the run's recorded config with ``overrides`` applied); returns the
    logged metrics (``test/*`` or ``val/*``), written to ``metrics.json`` beside
    :data:`EVALUATION_RECORD`."""
    if split not in EVAL_SPLITS:
        raise ValueError(f"split: expected one of {list(EVAL_SPLITS)}, got {split!r}")
    write_evaluation_record(run_cfg, ckpt_path, split, overrides)
    stage = "test" if split == "test" else "validate"
    calibrate = bool(run_cfg.get("calibrate_offset"))
    stages = ("validate", stage) if calibrate and stage == "test" else (stage,)
    datamodule, module, loggers, _ = prepare_run(run_cfg, ckpt_path, stages=stages)
    try:
        calibration = {}
        if calibrate:
            if split == "val":
                log.warning(
                    "calibrate_offset on split=val: the offset is fitted on the faces it is "
                    "then measured on (two numbers); the test split measures it fairly"
                )
            calibration = calibrate_prediction_offset(run_cfg, module, datamodule, ckpt_path)
        trainer: L.Trainer = instantiate(
            run_cfg.trainer,
            logger=loggers or False,
            callbacks=[TestReport()] if split == "test" else [],
            fast_dev_run=False,
        )
        run_stage = trainer.test if split == "test" else trainer.validate
        run_stage(module, datamodule=datamodule, ckpt_path=ckpt_path)
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()} | calibration
        log.info("metrics written to %s", write_metrics(run_cfg, metrics))
        return metrics
    finally:
        finish_wandb_runs(loggers)
