"""End to end: the training and evaluation entry points as a user runs them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from entry_points import run_script
from wingface.config import apply_run_overrides
from wingface.inference.model_file import (
    checkpoint_run_config,
    export_model,
    stored_prediction_offset,
    validation_offset,
)
from wingface.inference.predictor import LandmarkPredictor
from wingface.pipeline import evaluate, train


@pytest.mark.slow
def test_train_command_as_written_saves_the_loss_parameters(
    tmp_path: Path, subprocess_env: dict[str, str], small_data: list[str]
) -> None:
    run_dir = tmp_path / "run"
    run_script(
        "train.py",
        [
            "loss=wing",
            "loss.w=10",
            "loss.eps=2",
            "debug=fdr",
            *small_data,
            f"hydra.run.dir={run_dir}",
        ],
        subprocess_env,
    )
    saved = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    assert saved.loss.w == 10 and saved.loss.eps == 2
    assert saved.loss._target_ == "wingface.losses.WingLoss"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0 < metrics["test/nme"] < 10


@pytest.mark.slow
def test_multirun_gives_each_loss_a_readable_folder_and_wandb_run(
    tmp_path: Path, subprocess_env: dict[str, str], small_data: list[str]
) -> None:
    sweep_dir = tmp_path / "sweep"
    run_script(
        "train.py",
        [
            "-m",
            "loss=l2,l1,smooth_l1,wing",
            "trainer.max_epochs=1",
            "callbacks.landmark_panel.every_n_epochs=1",
            *small_data,
            f"hydra.sweep.dir={sweep_dir}",
        ],
        subprocess_env,
    )
    jobs = sorted(p for p in sweep_dir.iterdir() if p.is_dir() and p.name[0].isdigit())
    # folders are "<job number>_<overrides>", e.g. "0_...,loss=l2"
    losses = {}
    for job in jobs:
        number, overrides = job.name.split("_", 1)
        losses[int(number)] = [o for o in overrides.split(",") if o.startswith("loss=")]
    assert losses == {0: ["loss=l2"], 1: ["loss=l1"], 2: ["loss=smooth_l1"], 3: ["loss=wing"]}
    run_ids = set()
    for job in jobs:
        offline_runs = list((job / "wandb").glob("offline-run-*"))
        assert len(offline_runs) == 1, f"{job.name}: expected one W&B run, got {offline_runs}"
        run_ids.add(offline_runs[0].name.rsplit("-", 1)[1])
        panel = list((offline_runs[0] / "files" / "media" / "images" / "val").glob("panel_*.png"))
        assert len(panel) == 8, f"{job.name}: expected the 8-face validation panel, got {panel}"
        assert (job / "checkpoints" / "last.ckpt").is_file()
        metrics = json.loads((job / "metrics.json").read_text())
        assert "test/nme" in metrics and "val/nme_best" in metrics
        assert metrics["train/epoch_samples"] == 96  # no balancing: every training face once
        # NME per pose bin: CSV and plot in the job folder, table and plot in the W&B run
        with (job / "nme_per_pose.csv").open() as handle:
            pose_rows = list(csv.DictReader(handle))
        assert [r["pose"] for r in pose_rows] == [
            s for s in ("yaw_0_30", "yaw_30_60", "yaw_60_90") if f"test/{s}/nme" in metrics
        ]
        for row in pose_rows:
            expected = 100 * metrics[f"test/{row['pose']}/nme"]
            assert float(row["nme %"]) == pytest.approx(expected, abs=1e-4)  # 4 decimals
        media = offline_runs[0] / "files" / "media"
        tables = list((media / "table" / "test").glob("nme_per_pose_*.table.json"))
        assert len(tables) == 1, f"{job.name}: expected the per-pose W&B table, got {tables}"
        table = json.loads(tables[0].read_text())
        assert table["columns"][:3] == ["pose", "faces", "nme %"]
        assert [row[0] for row in table["data"]] == [r["pose"] for r in pose_rows]
        assert list((media / "images" / "test").glob("nme_per_pose_plot_*.png"))
    assert len(run_ids) == 4

    printed = run_script("report.py", [str(sweep_dir)], subprocess_env).stdout
    rows = [line for line in (sweep_dir / "report.md").read_text().splitlines() if "loss=" in line]
    assert [row.split("|")[1].strip().split()[0] for row in rows] == [
        "loss=l2",
        "loss=l1",
        "loss=smooth_l1",
        "loss=wing",
    ]
    assert rows[0] in printed
    assert (sweep_dir / "ced.png").stat().st_size > 1000


def evaluate_as_eval_py(
    ckpt: Path, output_dir: Path, overrides: tuple[str, ...] | list[str] = (), split: str = "test"
) -> dict[str, float]:
    """What ``src/eval.py ckpt_path=<ckpt> split=<split> <overrides>`` measures, in this process."""
    run_cfg, recorded = checkpoint_run_config(ckpt)
    apply_run_overrides(run_cfg, list(overrides), recorded)
    run_cfg.paths.output_dir = str(output_dir)
    return evaluate(run_cfg, str(ckpt), split=split)


def test_eval_reproduces_the_test_numbers_of_training(
    tmp_path: Path, subprocess_env: dict[str, str], small_data: list[str]
) -> None:
    run_dir = tmp_path / "run"
    run_script(
        "train.py",
        ["trainer.max_epochs=2", "logger=csv", *small_data, f"hydra.run.dir={run_dir}"],
        subprocess_env,
    )
    trained = json.loads((run_dir / "metrics.json").read_text())
    best = sorted((run_dir / "checkpoints").glob("epoch_*.ckpt"))
    assert len(best) == 1
    eval_dir = tmp_path / "eval"
    eval_args = [f"ckpt_path={best[0]}", "data.eval_batch_size=7", f"hydra.run.dir={eval_dir}"]
    run_script("eval.py", eval_args, subprocess_env)
    evaluated = json.loads((eval_dir / "metrics.json").read_text())
    # the folder records what was measured: the checkpoint, the split, the run overrides and
    # the config they made
    record = OmegaConf.load(eval_dir / "evaluation.yaml")
    assert record.checkpoint == str(best[0].resolve()) and record.split == "test"
    assert list(record.overrides) == ["data.eval_batch_size=7"]
    assert record.config.data.eval_batch_size == 7
    recorded_run = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    assert record.config.data.source == recorded_run.data.source
    for key in ("test/nme", "test/nme_inter_pupil", "test/fr_0.10", "test/auc_0.10"):
        assert evaluated[key] == pytest.approx(trained[key], abs=1e-6), key
    assert evaluated["test/nme_mean_shape"] == pytest.approx(trained["test/nme_mean_shape"])
    with (run_dir / "test_per_image.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 32
    mean = sum(float(r["nme_inter_ocular"]) for r in rows) / len(rows)
    assert mean == pytest.approx(trained["test/nme"], abs=1e-5)
    assert (run_dir / "ced_test.png").is_file()

    # plain overrides change the run's config as on eval.py's command line (as eval.py applies
    # them, in this process): the first 16 test faces (face i depends only on the seed and i),
    # in batches of 5
    overrides = ["data.eval_batch_size=5", "data.source.num_test=16"]
    subset = evaluate_as_eval_py(best[0], tmp_path / "eval_subset", overrides=overrides)
    first = [float(r["nme_inter_ocular"]) for r in rows[:16]]
    assert subset["test/nme"] == pytest.approx(sum(first) / 16, abs=1e-5)

    # the validation split: the best checkpoint's validation NME, as training measured it
    on_val = evaluate_as_eval_py(best[0], tmp_path / "eval_val", split="val")
    assert on_val["val/nme"] == pytest.approx(trained["val/nme_best"], abs=1e-6)
    assert not any(key.startswith("test/") for key in on_val)

    # calibrate_offset: the validation faces' mean signed error (measured above) is subtracted
    # from every test prediction, which moves the test faces' mean signed error by as much
    calibrated = evaluate_as_eval_py(best[0], tmp_path / "eval_cal", ["calibrate_offset=true"])
    for axis in "xy":
        offset = on_val[f"val/offset_{axis}"]
        assert abs(offset) > 1e-3  # two epochs leave an offset to calibrate
        assert calibrated[f"calibration/offset_{axis}"] == pytest.approx(offset, abs=1e-6)
        moved = trained[f"test/offset_{axis}"] - offset
        assert calibrated[f"test/offset_{axis}"] == pytest.approx(moved, abs=1e-5)

    # the run as a model file (float16 weights, the run's config inside), away from its run
    # folder: evaluated and used for prediction as the checkpoint is, up to float16 rounding
    model = export_model(best[0], tmp_path / "elsewhere" / "model.ckpt")
    assert model.stat().st_size < 0.6 * best[0].stat().st_size
    from_model = evaluate_as_eval_py(model, tmp_path / "eval_model")
    assert from_model["test/nme"] == pytest.approx(trained["test/nme"], abs=2e-3)
    assert from_model["test/nme"] != trained["test/nme"]  # the weights are float16
    images = torch.randint(0, 256, (2, 128, 128, 3), dtype=torch.uint8).numpy()
    boxes = np.array([[30.0, 30.0, 98.0, 98.0]])
    for image in images:
        expected = LandmarkPredictor.from_checkpoint(best[0])(image, boxes)[0].landmarks
        found = LandmarkPredictor.from_checkpoint(model)(image, boxes)[0].landmarks
        np.testing.assert_allclose(found, expected, atol=0.1)

    # --calibrate-offset: the file stores the validation offset eval.py measured above, and
    # the predictor subtracts it (input pixels, so offset / scale image pixels) unless told not to
    measured = validation_offset(best[0])
    assert measured == pytest.approx([on_val["val/offset_x"], on_val["val/offset_y"]], abs=1e-6)
    calibrated_model = export_model(best[0], tmp_path / "elsewhere" / "calibrated.ckpt", measured)
    assert stored_prediction_offset(calibrated_model) == measured
    assert stored_prediction_offset(model) is None
    with pytest.raises(ValueError, match="stores no prediction offset"):
        LandmarkPredictor.from_checkpoint(model, calibrate_offset=True)
    data_cfg = checkpoint_run_config(model)[0].data
    scale = data_cfg.input_size / (data_cfg.crop_scale * (boxes[0, 2] - boxes[0, 0]))
    plain = LandmarkPredictor.from_checkpoint(model)(images[0], boxes)[0].landmarks
    calibrated = LandmarkPredictor.from_checkpoint(calibrated_model)(images[0], boxes)[0]
    moved = plain - np.asarray(measured, dtype=np.float32) / scale
    np.testing.assert_allclose(calibrated.landmarks, moved, atol=1e-4)
    unapplied = LandmarkPredictor.from_checkpoint(calibrated_model, calibrate_offset=False)
    np.testing.assert_allclose(unapplied(images[0], boxes)[0].landmarks, plain, atol=1e-6)


@pytest.mark.slow
def test_calibrated_training_run_tests_with_the_best_epochs_validation_offset(
    compose_train, small_data: list[str]
) -> None:
    """``calibrate_offset=true`` on train.py: after fitting, the best checkpoint's validation
    offset is measured (here the only epoch's, which training logged), subtracted from the
    test predictions and recorded; the calibration pass adds nothing to the run's logs."""
    cfg = compose_train("trainer.max_epochs=1", "logger=csv", "calibrate_offset=true", *small_data)
    metrics = train(cfg)
    recorded = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    for axis in "xy":
        offset = metrics[f"val/offset_{axis}"]
        assert metrics[f"calibration/offset_{axis}"] == pytest.approx(offset, abs=1e-6)
        assert recorded[f"calibration/offset_{axis}"] == pytest.approx(offset, abs=1e-6)
    evaluated = evaluate_as_eval_py(
        next(Path(cfg.paths.output_dir, "checkpoints").glob("epoch_*.ckpt")),
        Path(cfg.paths.output_dir) / "eval",
    )
    assert evaluated["test/nme"] == pytest.approx(metrics["test/nme"], abs=1e-6)
    logged = list(Path(cfg.paths.output_dir).glob("csv/version_*/metrics.csv"))
    with logged[0].open() as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("val/nme")]
    assert len(rows) == 1  # the fit's one validation, not the calibration pass
    # measured on the faces it was fitted on, no offset is left
    best = next(Path(cfg.paths.output_dir, "checkpoints").glob("epoch_*.ckpt"))
    on_val = evaluate_as_eval_py(best, Path(cfg.paths.output_dir) / "eval_val", split="val")
    for axis in "xy":
        assert on_val[f"calibration/offset_{axis}"] == pytest.approx(metrics[f"val/offset_{axis}"])
        assert on_val[f"val/offset_{axis}"] == pytest.approx(0.0, abs=1e-5)


@pytest.mark.slow
def test_training_beats_the_mean_shape(compose_train) -> None:
    cfg = compose_train(
        "logger=none",
        "trainer.max_epochs=5",
        "trainer.accelerator=cpu",
        "model.batch_norm=true",
        "augment=none",
        "data.source.num_train=512",
        "data.source.num_val=32",
        "data.source.num_test=64",
        "data.num_workers=0",
        "data.batch_size=32",
        "callbacks.landmark_panel.every_n_epochs=1",
    )
    metrics = train(cfg)
    assert metrics["test/nme"] < metrics["test/nme_mean_shape"]
    assert metrics["val/nme_best"] <= metrics["val/nme"] + 1e-9
    # per-pose results from the synthetic faces' true yaw
    assert {"test/yaw_0_30/nme", "test/yaw_30_60/nme"} <= set(metrics)
    assert metrics["test/yaw_0_30/nme"] < metrics["test/nme_mean_shape"]


@pytest.mark.slow
def test_every_zoo_loss_runs_one_batch_and_saves_its_config(
    tmp_path: Path, subprocess_env: dict[str, str], small_data: list[str]
) -> None:
    sweep_dir = tmp_path / "sweep"
    losses = ["l2", "l1", "smooth_l1", "wing", "rwing", "soft_wing"]
    run_script(
        "train.py",
        [
            "-m",
            f"loss={','.join(losses)}",
            "debug=fdr",
            *small_data,
            f"hydra.sweep.dir={sweep_dir}",
        ],
        subprocess_env,
    )
    from wingface.losses import LOSSES

    for number, name in enumerate(losses):
        (job,) = sweep_dir.glob(f"{number}_*")
        saved = OmegaConf.load(job / ".hydra" / "config.yaml")
        assert saved.loss._target_ == f"wingface.losses.{LOSSES[name].__name__}"
        assert json.loads((job / "metrics.json").read_text())["test/nme"] > 0
