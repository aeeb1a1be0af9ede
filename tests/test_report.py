"""Sweep reports (``wingface.report``, ``src/report.py``) on multirun folders in the real format.

The fake sweeps are written the way ``src/train.py -m`` writes them: the job configs are composed
from ``conf/`` with the same overrides, ``.hydra/{config,hydra,overrides}.yaml`` are saved as Hydra
saves them, and ``metrics.json``, ``test_per_image.csv`` and ``nme_per_pose.csv`` follow
``pipeline.write_metrics`` and ``LandmarkModule``'s writers. Expected values are written out by
hand from the numbers put into those files.
"""

from __future__ import annotations

import csv
import json
import math
import re
import runpy
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf, open_dict

from entry_points import run_script
from wingface.callbacks.sweep_summary import SweepSummary
from wingface.config import PROJECT_ROOT, apply_run_overrides, compose_config
from wingface.pipeline import write_evaluation_record
from wingface.report import (
    LAST_FIFTH_COLUMN,
    build_report,
    last_fifth_gain,
    load_jobs,
    nme_grids,
    pose_bars,
    seed_groups,
    validation_curve,
    worst_faces,
    write_report,
)

POSE_HEADER = ["pose", "faces", "nme %", "nme_inter_pupil %", "nme_box %", "fr_0.08 %", "fr_0.10 %"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
REPORT_SCRIPT = PROJECT_ROOT / "src" / "report.py"


def write_job(
    sweep: Path,
    num: int,
    overrides: Sequence[str],
    metrics: dict[str, float] | None = None,
    per_image: Sequence[tuple[str, float, float, float]] = (),
    pose: Sequence[tuple[str, int, float]] = (),
) -> Path:
    """Write job ``num`` of a multirun into ``sweep`` as ``src/train.py -m`` does.

    Args:
        sweep: the sweep folder.
        num: Hydra job number.
        overrides: the job's command-line overrides (composed with ``conf/train.yaml``).
        metrics: ``metrics.json`` content (fractions, seconds); ``None`` = not finished.
        per_image: ``test_per_image.csv`` rows ``(name, nme_inter_ocular, nme_inter_pupil,
            nme_box)`` (fractions).
        pose: ``nme_per_pose.csv`` rows ``(pose bin, faces, primary NME %)``.

    Returns:
        The job folder ``<sweep>/<num>_<override_dirname>``.
    """
    cfg = compose_config(overrides, with_hydra=True)
    job = sweep / f"{num}_{cfg.hydra.job.override_dirname}"
    hydra_cfg = cfg.hydra
    with open_dict(cfg):
        hydra_cfg.job.num = num
        hydra_cfg.job.id = str(num)
        hydra_cfg.job.name = "train"
        hydra_cfg.mode = "MULTIRUN"
        hydra_cfg.sweep.dir = str(sweep)
        hydra_cfg.runtime.output_dir = str(job)
        del cfg["hydra"]
    (job / ".hydra").mkdir(parents=True)
    OmegaConf.save(cfg, job / ".hydra" / "config.yaml")
    OmegaConf.save(OmegaConf.create({"hydra": hydra_cfg}), job / ".hydra" / "hydra.yaml")
    OmegaConf.save(hydra_cfg.overrides.task, job / ".hydra" / "overrides.yaml")
    if metrics is None:
        return job
    (job / "metrics.json").write_text(json.dumps(dict(sorted(metrics.items())), indent=2) + "\n")
    with (job / "test_per_image.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["index", "name", "nme_inter_ocular", "nme_inter_pupil", "nme_box"])
        for index, (name, *nmes) in enumerate(per_image):
            writer.writerow([index, name, *(f"{v:.6f}" for v in nmes)])
    if pose:
        with (job / "nme_per_pose.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(POSE_HEADER)
            for name, faces, nme in pose:
                writer.writerow([name, faces, f"{nme:.4f}", f"{1.4 * nme:.4f}", f"{0.6 * nme:.4f}",
                                 "10.0000", "5.0000"])  # fmt: skip
    return job


def metrics_of(nme: float, fit_seconds: float = 600.0, **extra: float) -> dict[str, float]:
    """A full ``metrics.json`` of a synthetic-data job whose primary test NME is ``nme``."""
    metrics = {
        "lr-Adam": 4e-9,
        "test/auc_0.08": 0.40,
        "test/auc_0.10": 0.52,
        "test/fr_0.08": 0.03,
        "test/fr_0.10": 0.01,
        "test/nme": nme,
        "test/nme_box": 0.6 * nme,
        "test/nme_inter_pupil": 1.4 * nme,
        "test/nme_mean_shape": 0.33,
        "test/yaw_0_30/nme": 0.9 * nme,
        "test/yaw_0_30/fr_0.10": 0.0,
        "time/fit_seconds": fit_seconds,
        "train/epoch_samples": 96.0,
        "train/loss": 600.0,
        "val/loss": 560.0,
        "val/nme": 1.1 * nme,
        "val/nme_best": 1.05 * nme,
    }
    metrics.update(extra)
    return metrics


def write_evaluation(
    job: Path, name: str, overrides: Sequence[str], metrics: dict[str, float], split: str = "test"
) -> Path:
    """Write what ``src/eval.py ckpt_path=<job's best> split=<split> <overrides>
    hydra.run.dir=<job>/<name>`` leaves: Hydra's record of eval.py's own config, the evaluation
    record (:func:`write_evaluation_record`, the job's recorded config with ``overrides``
    applied by eval.py's :func:`apply_run_overrides`) and ``metrics.json``."""
    folder = job / name
    run_cfg = OmegaConf.load(job / ".hydra" / "config.yaml")
    apply_run_overrides(run_cfg, list(overrides), recorded_overrides=[])
    run_cfg.paths.output_dir = str(folder)
    write_evaluation_record(run_cfg, str(job / "checkpoints" / "epoch_005.ckpt"), split, overrides)
    (folder / ".hydra").mkdir()
    hydra_record = OmegaConf.create({"hydra": {"job": {"name": "eval"}}})
    OmegaConf.save(hydra_record, folder / ".hydra" / "hydra.yaml")
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


FACES = [("face_a", 0.02, 0.03, 0.01), ("face_b", 0.12, 0.17, 0.07), ("face_c", 0.05, 0.07, 0.03)]


# ------------------------------------------------------------------------------------- table


def test_table_has_every_job_its_normalisations_and_the_unfinished_one(tmp_path: Path) -> None:
    wing = {
        "lr-Adam": 4e-9,
        "test/auc_0.08": 0.4033,
        "test/auc_0.10": 0.5198,
        "test/common/nme": 0.0500,
        "test/common/fr_0.10": 0.01,
        "test/fr_0.08": 0.0268,
        "test/fr_0.10": 0.0089,
        "test/nme": 0.0480,
        "test/nme_box": 0.0289,
        "test/nme_inter_pupil": 0.0663,
        "test/nme_mean_shape": 0.1575,
        "test/yaw_0_30/nme": 0.0400,  # a pose bin: in the pose plot, not the table
        "time/fit_seconds": 960.0,
        "train/loss": 618.0,
        "val/nme": 0.0540,
        "val/nme_best": 0.0538,
    }
    pupil_first = {  # primary normalisation inter_pupil: its test/nme is the inter-pupil NME
        "test/auc_0.08": 0.30,
        "test/auc_0.10": 0.45,
        "test/fr_0.08": 0.10,
        "test/fr_0.10": 0.05,
        "test/nme": 0.0700,
        "test/nme_box_diag": 0.0200,
        "time/fit_seconds": 90.0,
        "val/nme_best": 0.0750,
    }
    sweep = tmp_path / "sweep"
    write_job(sweep, 0, ["loss=wing"], wing, FACES)
    write_job(sweep, 1, ["loss=l1", "data.protocol.normalisations=[inter_pupil,box_diag]"],
              pupil_first, FACES)  # fmt: skip
    write_job(sweep, 2, ["loss=l2"])  # still running: no metrics.json yet

    report = build_report(sweep)

    assert report.columns == [
        "job", "status", "nme_inter_ocular %", "nme_inter_pupil %", "nme_box %", "nme_box_diag %",
        "fr_0.08 %", "fr_0.10 %", "auc_0.08", "auc_0.10", "common/nme %", "nme_mean_shape %",
        "val/nme_best %", "fit time (min)",
    ]  # fmt: skip
    expected = [
        ["loss=wing", "finished", 4.80, 6.63, 2.89, None, 2.68, 0.89, 0.4033, 0.5198, 5.00,
         15.75, 5.38, 16.0],
        ["loss=l1 data.protocol.normalisations=[inter_pupil,box_diag]", "finished", None, 7.00,
         None, 2.00, 10.0, 5.0, 0.30, 0.45, None, None, 7.50, 1.5],
        ["loss=l2", "not finished", *[None] * 12],
    ]  # fmt: skip
    assert len(report.rows) == 3
    for row, want in zip(report.rows, expected, strict=True):
        assert row[:2] == want[:2]
        for column, value, wanted in zip(report.columns[2:], row[2:], want[2:], strict=True):
            assert (value is None) == (wanted is None), (row[0], column, value)
            if wanted is not None:
                assert value == pytest.approx(wanted, abs=1e-9), (row[0], column)
    for row in report.rows:
        assert all(v is None or type(v) in (str, int, float) for v in row)
    lines = report.markdown.splitlines()
    assert (
        "| loss=wing | finished | 4.80 | 6.63 | 2.89 |  | 2.68 | 0.89 | 0.4033 | 0.5198 | 5.00 "
        "| 15.75 | 5.38 | 16.0 |"
    ) in lines
    unfinished = next(line for line in lines if line.startswith("| loss=l2 "))
    assert [c.strip() for c in unfinished.split("|")[1:-1]] == ["loss=l2", "not finished"] + [
        ""
    ] * 12
    assert "3 jobs, 2 finished." in report.markdown
    assert report.figures == {}
    assert not (sweep / "report.md").exists()  # build_report writes nothing


def test_evaluations_inside_a_job_folder_are_its_columns_not_jobs(tmp_path: Path) -> None:
    """eval.py runs written into a job's folder add a column each, named by the overrides that
    changed the job's config; a validation-split evaluation adds none, and no evaluation is
    taken for a job of its own."""
    sweep = tmp_path / "sweep"
    wing = write_job(sweep, 0, ["loss=wing", "seed=3"], metrics_of(0.05))
    write_job(sweep, 1, ["loss=l1", "seed=3"], metrics_of(0.06))
    switches = ["seed=3", "test_time_flip=true", "data.eval_batch_size=7", "test_time_shift=2"]
    write_evaluation(wing, "eval_switches", switches, {"test/nme": 0.045, "test/nme_box": 0.03})
    write_evaluation(wing, "eval_again", [], {"test/nme": 0.05})
    write_evaluation(wing, "eval_val", ["test_time_flip=true"], {"val/nme": 0.04}, split="val")
    # evaluate() pointed at a training job's own folder: the job stays a job, with no column
    l1_cfg = OmegaConf.load(sweep / "1_loss=l1,seed=3" / ".hydra" / "config.yaml")
    l1_cfg.paths.output_dir = str(sweep / "1_loss=l1,seed=3")
    write_evaluation_record(l1_cfg, "epoch_005.ckpt", "test", ["test_time_flip=true"])
    jobs = load_jobs(sweep)
    assert [job.path for job in jobs] == [wing, sweep / "1_loss=l1,seed=3"]
    assert [e.label for e in jobs[0].evaluations] == ["", "test_time_flip=true test_time_shift=2"]
    assert jobs[0].evaluations[1].path == wing / "eval_switches"

    report = build_report(sweep)
    flip = "nme_inter_ocular % with test_time_flip=true test_time_shift=2"
    again = "nme_inter_ocular % with no change"
    assert report.columns[:7] == [
        "job", "status", "nme_inter_ocular %", "nme_inter_pupil %", "nme_box %", again, flip
    ]  # fmt: skip
    rows = {row[0]: dict(zip(report.columns, row, strict=True)) for row in report.rows}
    assert rows["loss=wing"][flip] == pytest.approx(4.5)
    assert rows["loss=wing"][again] == pytest.approx(5.0)
    assert rows["loss=l1"][flip] is None
    assert flip in report.markdown


def test_seed_groups_summarise_the_evaluations_every_seed_has(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    flip = ["test_time_flip=true"]
    for num, (loss, seed, nme, flipped) in enumerate(
        [("wing", 0, 0.050, 0.046), ("wing", 1, 0.048, 0.043), ("l1", 0, 0.052, 0.047),
         ("l1", 1, 0.051, None)]
    ):  # fmt: skip
        job = write_job(sweep, num, [f"loss={loss}", f"seed={seed}"], metrics_of(nme))
        if flipped is not None:
            write_evaluation(job, "eval_flip", flip, {"test/nme": flipped})
    groups = {g.label: g for g in seed_groups(load_jobs(sweep))}
    assert groups["loss=wing"].evaluations == {"test_time_flip=true": [4.6, pytest.approx(4.3)]}
    assert groups["loss=l1"].evaluations == {}  # seed 1 was not re-evaluated
    markdown = build_report(sweep).markdown
    assert "| with test_time_flip=true: mean | spread |" in markdown
    wing_row = next(line for line in markdown.splitlines() if line.startswith("| loss=wing | 0, 1"))
    assert wing_row.endswith("| 4.45 | 0.30 |")
    l1_row = next(line for line in markdown.splitlines() if line.startswith("| loss=l1 | 0, 1"))
    assert l1_row.endswith("|  |  |")


def test_paired_differences_average_each_face_over_seeds(tmp_path: Path) -> None:
    """experiments/paired_difference.py: per-face NMEs averaged over each group's seeds, then
    group − baseline per face (percentage points), written out by hand."""
    sweep = tmp_path / "sweep"
    faces = {  # (loss, seed) → per-face inter-ocular NME of faces a, b, c
        ("wing", 0): (0.02, 0.04, 0.10),
        ("wing", 1): (0.04, 0.04, 0.08),
        ("l1", 0): (0.03, 0.05, 0.11),
        ("l1", 1): (0.05, 0.05, 0.09),  # every face 1 point worse than Wing's seed mean
        ("l2", 0): (0.03, 0.02, 0.12),
        ("l2", 1): (0.03, 0.04, 0.12),  # differences +0, -1, +3 points
    }
    for num, ((loss, seed), nmes) in enumerate(faces.items()):
        per_image = [(name, nme, nme, nme) for name, nme in zip("abc", nmes, strict=True)]
        write_job(sweep, num, [f"loss={loss}", f"seed={seed}"], metrics_of(0.05), per_image)
    script = runpy.run_path(str(PROJECT_ROOT / "experiments" / "paired_difference.py"))
    groups = script["group_face_nmes"](sweep)
    assert groups["loss=wing"] == pytest.approx({0: 3.0, 1: 4.0, 2: 9.0})
    l1, l2 = script["paired_differences"](groups, "loss=wing", resamples=2000)
    assert (l1.label, l1.faces) == ("loss=l1", 3)
    assert (l1.mean, l1.low, l1.high) == pytest.approx((1.0, 1.0, 1.0))  # the same on every face
    assert l1.baseline_better == 1.0
    assert l2.mean == pytest.approx(2 / 3) and l2.baseline_better == pytest.approx(1 / 3)
    assert -1.0 <= l2.low < l2.mean < l2.high <= 3.0
    with pytest.raises(ValueError, match="loss=wing"):
        script["paired_differences"](groups, "wing")


def test_table_is_a_valid_wandb_table(tmp_path: Path) -> None:
    wandb = pytest.importorskip("wandb")
    sweep = tmp_path / "sweep"
    write_job(sweep, 0, ["loss=wing"], metrics_of(0.05), FACES)
    write_job(sweep, 1, ["loss=l1"])
    report = build_report(sweep)
    table = wandb.Table(columns=report.columns, data=report.rows)
    assert table.columns == report.columns
    assert [row[:2] for row in table.data] == [
        ["loss=wing", "finished"],
        ["loss=l1", "not finished"],
    ]


def test_a_lone_job_is_labelled_without_infrastructure_overrides(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    write_job(sweep, 0, ["experiment=lfpw_subset", "data.root=/data/300w", "balance=pdb",
                         "trainer.max_epochs=20"], metrics_of(0.05))  # fmt: skip
    (job,) = load_jobs(sweep)
    assert job.label == "balance=pdb"


def test_a_continued_job_is_labelled_and_grouped_as_if_launched_once(tmp_path: Path) -> None:
    """Jobs continued with ``ckpt_path=last`` (or loaded and logged differently) record those
    overrides; they train the same thing, so labels and seed groups leave them out."""
    sweep = tmp_path / "sweep"
    write_job(sweep, 0, ["loss=l2", "seed=0", "ckpt_path=last", "data.num_workers=0"],
              metrics_of(0.0434), FACES)  # fmt: skip
    write_job(sweep, 1, ["loss=wing", "seed=0", "ckpt_path=last", "logger=csv"],
              metrics_of(0.0411), FACES)  # fmt: skip
    write_job(sweep, 2, ["loss=l2", "seed=1", "trainer.log_every_n_steps=5"],
              metrics_of(0.0422), FACES)  # fmt: skip

    jobs = load_jobs(sweep)

    assert [j.label for j in jobs] == ["loss=l2 seed=0", "loss=wing seed=0", "loss=l2 seed=1"]
    l2, wing = seed_groups(jobs)
    assert (l2.label, l2.seeds, wing.label, wing.seeds) == ("loss=l2", [0, 1], "loss=wing", [0])


def test_jobs_launched_alone_into_a_sweep_keep_their_folder_number_and_label_order(
    tmp_path: Path,
) -> None:
    """Jobs of one sweep run as separate launches (each its own job 0, or a single run, in a
    folder named ``<num>_<overrides>``) take their place from the folder name, and their
    labels name the keys in one order whatever order each command line gave them in."""
    sweep = tmp_path / "sweep"
    launched = [(3, ["seed=0", "loss=l2"], 0.0401), (4, ["seed=1", "loss=wing"], 0.0378),
                (0, ["loss=wing", "seed=0"], 0.0384)]  # fmt: skip
    for place, overrides, nme in launched:
        alone = write_job(sweep, 0, overrides, metrics_of(nme), FACES)
        alone.rename(sweep / f"{place}_{alone.name.split('_', 1)[1]}")
    single = next(sweep.glob("0_*"))
    hydra_yaml = single / ".hydra" / "hydra.yaml"
    recorded = OmegaConf.load(hydra_yaml)
    recorded.hydra.job.num = None  # a single run (train.py without -m) has no job number
    OmegaConf.save(recorded, hydra_yaml)

    jobs = load_jobs(sweep)

    assert [j.number for j in jobs] == [0, 3, 4]
    assert [j.label for j in jobs] == ["loss=wing seed=0", "loss=l2 seed=0", "loss=wing seed=1"]


def test_a_value_written_two_ways_is_one_override(tmp_path: Path) -> None:
    """A multirun records ``model.antialias=True`` where a single run recorded ``=true``, and
    ``2e-3`` is ``0.002``: the same setting, so the same label and seed group."""
    sweep = tmp_path / "sweep"
    runs = [("0", "true", "2e-3", 0.0390), ("1", "True", "0.002", 0.0385),
            ("0", "false", "0.002", 0.0411)]  # fmt: skip
    for num, (seed, antialias, lr, nme) in enumerate(runs):
        overrides = ["loss=wing", f"seed={seed}", f"model.antialias={antialias}",
                     f"optim.optimizer.lr={lr}"]  # fmt: skip
        write_job(sweep, num, overrides, metrics_of(nme), FACES)

    jobs = load_jobs(sweep)

    assert [j.label for j in jobs] == [
        "seed=0 model.antialias=true",
        "seed=1 model.antialias=true",
        "seed=0 model.antialias=false",
    ]
    with_blur, without = seed_groups(jobs)
    assert (with_blur.label, with_blur.seeds) == ("model.antialias=true", [0, 1])
    assert (without.label, without.seeds) == ("model.antialias=false", [0])


def test_jobs_nested_by_a_slash_in_an_override_are_found(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    write_job(sweep, 0, ["loss=wing", "+note=a/b"], metrics_of(0.05))
    write_job(sweep, 1, ["loss=l1", "+note=a/b"], metrics_of(0.06))
    write_job(sweep, 2, ["loss=l2", "+note=a/c"])
    jobs = load_jobs(sweep)
    assert [j.path.relative_to(sweep).parts[1:] for j in jobs] == [
        ("b,loss=wing",),
        ("b,loss=l1",),
        ("c,loss=l2",),
    ]  # folders "<num>_+note=a" / "b,loss=..." as Hydra nests them
    assert [j.label for j in jobs] == [
        "loss=wing +note=a/b",
        "loss=l1 +note=a/b",
        "loss=l2 +note=a/c",
    ]
    assert [j.finished for j in jobs] == [True, True, False]


def test_unreadable_sweeps_are_errors_naming_the_folder_or_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such folder"):
        build_report(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no Hydra job folders"):
        build_report(tmp_path / "empty")
    job = write_job(tmp_path / "sweep", 0, ["loss=wing"], metrics_of(0.05))
    (job / "metrics.json").write_text('{"test/nme": 0.0')  # cut short
    with pytest.raises(ValueError, match=re.escape(str(job / "metrics.json"))):
        build_report(tmp_path / "sweep")


# ------------------------------------------------------------------------------------- plots


def test_w_eps_grid_per_group_with_blank_cells(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    cells = [  # (balance, w, eps, test NME or None = not finished)
        ("none", 5, 1, 0.050), ("none", 5, 2, 0.048), ("none", 10, 1, 0.047),
        ("none", 10, 2, None), ("none", 20, 2, 0.052),  # (20, 1) never run
        ("pdb", 5, 2, 0.046), ("pdb", 10, 2, 0.045),
    ]  # fmt: skip
    for num, (balance, w, eps, nme) in enumerate(cells):
        overrides = ["loss=wing", f"loss.w={w}", f"loss.eps={eps}", f"balance={balance}"]
        write_job(sweep, num, overrides, None if nme is None else metrics_of(nme), FACES)
    write_job(sweep, len(cells), ["loss=l1", "balance=none"], metrics_of(0.06), FACES)  # no w

    grids = nme_grids(load_jobs(sweep))

    assert [g.group for g in grids] == ["loss=wing balance=none", "loss=wing balance=pdb"]
    none, pdb = grids
    assert none.w == [5, 10, 20] and none.eps == [1, 2]
    np.testing.assert_allclose(none.nme, [[5.0, 4.7, np.nan], [4.8, np.nan, 5.2]])
    assert pdb.w == [5, 10] and pdb.eps == [2]
    np.testing.assert_allclose(pdb.nme, [[4.6, 4.5]])

    report = write_report(sweep)
    assert set(report.figures) == {"ced", "nme_heatmap_w_eps"}  # no per-pose results
    lines = report.markdown.splitlines()
    assert "## Test NME (%) over loss.w × loss.eps (loss=wing balance=none)" in lines
    assert "| 1 | 5.00 | 4.70 |  |" in lines and "| 2 | 4.80 |  | 5.20 |" in lines


def test_seeds_of_each_loss_are_summarised_with_their_spread(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    runs = [("wing", 0, 0.0411), ("l1", 0, 0.0406), ("wing", 1, 0.0395), ("l1", 1, None),
            ("wing", 2, 0.0402), ("l1", 2, 0.0420), ("l2", 0, 0.0434)]  # fmt: skip
    for num, (loss, seed, nme) in enumerate(runs):
        metrics = None if nme is None else metrics_of(nme, **{"val/nme_best": nme + 0.002})
        write_job(sweep, num, [f"loss={loss}", f"seed={seed}"], metrics, FACES)

    wing, l1, l2 = seed_groups(load_jobs(sweep))

    assert (wing.label, wing.seeds) == ("loss=wing", [0, 1, 2])
    assert (l1.label, l1.seeds) == ("loss=l1", [0, 2])
    np.testing.assert_allclose(wing.nme, [4.11, 3.95, 4.02])
    np.testing.assert_allclose(wing.val_best, [4.31, 4.15, 4.22])
    assert wing.spread == pytest.approx(0.16) and l1.spread == pytest.approx(0.14)
    lines = build_report(sweep).markdown.splitlines()
    assert "## Across seeds" in lines
    assert "| loss=wing | 0, 1, 2 | 4.03 | 3.95 | 4.11 | 0.16 | 4.23 |" in lines
    assert "| loss=l1 | 0, 2 | 4.13 | 4.06 | 4.20 | 0.14 | 4.33 |" in lines
    assert l2.seeds == [0] and math.isnan(l2.spread)  # one seed: no spread
    assert "| loss=l2 | 0 | 4.34 | 4.34 | 4.34 |  | 4.54 |" in lines


def test_no_seed_summary_without_two_finished_seeds_of_one_group(tmp_path: Path) -> None:
    one_seed = tmp_path / "one_seed"
    write_job(one_seed, 0, ["loss=wing", "seed=0"], metrics_of(0.04), FACES)
    write_job(one_seed, 1, ["loss=l1", "seed=0"], metrics_of(0.04), FACES)
    unfinished = tmp_path / "unfinished"
    write_job(unfinished, 0, ["loss=wing", "seed=0"], metrics_of(0.04), FACES)
    write_job(unfinished, 1, ["loss=wing", "seed=1"], None, FACES)
    for sweep in (one_seed, unfinished):
        assert seed_groups(load_jobs(sweep)) == []
        assert "## Across seeds" not in build_report(sweep).markdown


def test_no_heat_map_when_the_sweep_keeps_w_and_eps(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    write_job(sweep, 0, ["loss=wing"], metrics_of(0.05), FACES)
    write_job(sweep, 1, ["loss=rwing"], metrics_of(0.05), FACES)  # w, eps in its config too
    write_job(sweep, 2, ["loss=l1"], metrics_of(0.05), FACES)
    assert nme_grids(load_jobs(sweep)) == []
    report = write_report(sweep)
    assert set(report.figures) == {"ced"}
    assert not (sweep / "nme_heatmap_w_eps.png").exists()


def test_pose_bars_one_series_per_job_named_by_balance(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    write_job(
        sweep,
        0,
        ["balance=none"],
        metrics_of(0.05),
        FACES,
        [("yaw_0_30", 24, 5.1234), ("yaw_30_60", 5, 8.0), ("yaw_60_90", 3, 12.5)],
    )
    write_job(
        sweep,
        1,
        ["balance=pdb"],
        metrics_of(0.05),
        FACES,
        [("yaw_0_30", 24, 5.3), ("yaw_30_60", 5, 7.1)],
    )  # no face in the last bin
    write_job(sweep, 2, ["balance=pdb", "loss=l1"])  # not finished

    bars = pose_bars(load_jobs(sweep))

    assert bars is not None
    assert bars.bins == ["yaw_0_30", "yaw_30_60", "yaw_60_90"]
    assert bars.faces == [24, 5, 3]
    assert list(bars.series) == ["balance=none", "balance=pdb"]
    np.testing.assert_allclose(bars.series["balance=none"], [5.1234, 8.0, 12.5])
    np.testing.assert_allclose(bars.series["balance=pdb"], [5.3, 7.1, np.nan])


def test_pose_bars_name_the_balance_a_label_leaves_out(tmp_path: Path) -> None:
    pose = [("yaw_0_30", 24, 5.0), ("yaw_30_60", 5, 8.0)]
    sweep = tmp_path / "sweep"
    write_job(sweep, 0, ["loss=wing", "balance=pdb"], metrics_of(0.05), FACES, pose)
    write_job(sweep, 1, ["loss=l1"], metrics_of(0.05), FACES, pose)  # default: balance none
    bars = pose_bars(load_jobs(sweep))
    assert bars is not None and bars.note == ""
    assert list(bars.series) == ["loss=wing balance=pdb", "loss=l1 balance=none"]

    same = tmp_path / "same"
    write_job(same, 0, ["loss=wing", "balance=pdb"], metrics_of(0.05), FACES, pose)
    write_job(same, 1, ["loss=l1", "balance=pdb"], metrics_of(0.05), FACES, pose)
    bars = pose_bars(load_jobs(same))
    assert bars is not None and bars.note == "balance=pdb"
    assert list(bars.series) == ["loss=wing", "loss=l1"]

    without = tmp_path / "without"
    write_job(without, 0, ["loss=wing"], metrics_of(0.05), FACES)
    assert pose_bars(load_jobs(without)) is None


def test_worst_faces_come_from_the_per_image_file(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    write_job(sweep, 0, ["loss=wing"], metrics_of(0.05), FACES)
    write_job(sweep, 1, ["loss=l1"])
    columns, rows = worst_faces(load_jobs(sweep), count=2)
    assert columns == ["job", "rank", "index", "name", "nme_inter_ocular %"]
    assert rows == [["loss=wing", 1, 1, "face_b", pytest.approx(12.0)],
                    ["loss=wing", 2, 2, "face_c", pytest.approx(5.0)]]  # fmt: skip


# --------------------------------------------------------------------------------- the CLI


def write_grid_sweep(sweep: Path) -> Path:
    """A fake Wing sweep: w in {5, 10} x balance in {none, pdb} finished (test NME 5-8%, pose
    bins yaw_0_30 and yaw_30_60), and a fifth job (w=20) not finished; returns ``sweep``."""
    pose = [("yaw_0_30", 24, 5.0), ("yaw_30_60", 5, 8.0)]
    for num, (w, balance) in enumerate([(5, "none"), (10, "none"), (5, "pdb"), (10, "pdb")]):
        overrides = ["loss=wing", f"loss.w={w}", "loss.eps=2", f"balance={balance}"]
        write_job(sweep, num, overrides, metrics_of(0.05 + num / 100), FACES, pose)
    write_job(sweep, 4, ["loss=wing", "loss.w=20", "loss.eps=2", "balance=none"])
    return sweep


def run_cli(args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Run ``src/report.py <args>`` as ``__main__`` in this process (no interpreter start-up)."""
    monkeypatch.setattr(sys, "argv", [str(REPORT_SCRIPT), *args])
    runpy.run_path(str(REPORT_SCRIPT), run_name="__main__")


def test_cli_writes_report_md_and_the_plots_that_apply(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = write_grid_sweep(tmp_path / "sweep")

    run_cli([str(sweep)], monkeypatch)
    printed = capsys.readouterr().out

    markdown = (sweep / "report.md").read_text()
    rows = [line for line in markdown.splitlines() if line.startswith("| loss.w=")]
    assert [r.split("|")[1].strip() for r in rows] == [
        "loss.w=5 balance=none", "loss.w=10 balance=none", "loss.w=5 balance=pdb",
        "loss.w=10 balance=pdb", "loss.w=20 balance=none",
    ]  # fmt: skip
    assert rows[4].split("|")[2].strip() == "not finished"
    assert rows[1].split("|")[3].strip() == "6.00"  # nme_inter_ocular % of job 1
    for name in ("ced.png", "nme_heatmap_w_eps.png", "nme_per_pose_by_job.png"):
        assert f"]({name})" in markdown
        data = (sweep / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 5000, name
    assert rows[0] in printed

    with pytest.raises(SystemExit) as exit_info:
        run_cli([str(tmp_path / "missing")], monkeypatch)
    assert exit_info.value.code == 2 and "no such folder" in capsys.readouterr().err


# ----------------------------------------------------------------- a real (tiny) multirun


@pytest.mark.slow
def test_report_of_a_real_tiny_multirun_over_w_and_eps(
    tmp_path: Path, subprocess_env: dict[str, str], small_data: list[str]
) -> None:
    sweep = tmp_path / "sweep"
    # one training batch per job; a constant, large learning rate makes that one step tell the
    # four losses apart
    run_script(
        "train.py",
        ["-m", "loss=wing", "loss.w=5,10", "loss.eps=1,2", "debug=fdr", "logger=none",
         "optim.scheduler=null", "optim.optimizer.lr=0.01", *small_data,
         f"hydra.sweep.dir={sweep}"],
        subprocess_env,
    )  # fmt: skip
    # the reference: each job's metrics.json, its w and eps read off its folder name
    expected = {}
    for metrics_file in sweep.glob("*/metrics.json"):
        w = float(re.search(r"loss\.w=([\d.]+)", metrics_file.parent.name)[1])
        eps = float(re.search(r"loss\.eps=([\d.]+)", metrics_file.parent.name)[1])
        expected[(w, eps)] = 100 * json.loads(metrics_file.read_text())["test/nme"]
    assert len(expected) == 4

    report = write_report(sweep)

    (grid,) = nme_grids(load_jobs(sweep))
    assert grid.w == [5, 10] and grid.eps == [1, 2]
    for (w, eps), nme in expected.items():
        assert grid.nme[grid.eps.index(eps), grid.w.index(w)] == pytest.approx(nme)
    labels = [row[0] for row in report.rows]
    assert labels == ["loss.w=5 loss.eps=1", "loss.w=5 loss.eps=2", "loss.w=10 loss.eps=1",
                      "loss.w=10 loss.eps=2"]  # fmt: skip
    column = report.columns.index("nme_inter_ocular %")
    for row in report.rows:
        w, eps = (float(v.split("=")[1]) for v in row[0].split())
        assert row[column] == pytest.approx(expected[(w, eps)])
    with next(sweep.glob("0_*/nme_per_pose.csv")).open() as handle:
        bins = [r["pose"] for r in csv.DictReader(handle)]
    bars = pose_bars(load_jobs(sweep))
    assert bars is not None and bars.bins == bins and len(bars.series) == 4
    assert set(report.figures) == {"ced", "nme_heatmap_w_eps", "nme_per_pose_by_job"}
    assert all(path.is_file() for path in report.figures.values())
    assert len(set(expected.values())) == 4  # four different results, each in its own cell


def test_sweep_summary_callback_writes_the_report_and_a_wandb_summary_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    sweep = write_grid_sweep(tmp_path / "sweep")
    wandb_logger = {"_target_": "lightning.pytorch.loggers.wandb.WandbLogger", "project": "wf"}
    config = OmegaConf.create(
        {"hydra": {"sweep": {"dir": str(sweep)}}, "logger": {"wandb": wandb_logger}}
    )
    SweepSummary().on_multirun_end(config)
    assert "5 jobs, 4 finished" in (sweep / "report.md").read_text()
    (summary,) = (sweep / "wandb").glob("offline-run-*")
    assert list(summary.glob("*.wandb"))  # the summary run's records


def write_csv_log(job: Path, version: int, rows: Sequence[tuple[int, float]]) -> None:
    """A ``logger=csv`` metrics file of one launch: a training row then a validation row per
    epoch, as Lightning's CSVLogger writes them (empty cells for the other metrics)."""
    folder = job / "csv" / f"version_{version}"
    folder.mkdir(parents=True)
    with (folder / "metrics.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["epoch", "step", "train/loss_epoch", "val/nme", "val/nme_best"])
        for epoch, nme in rows:
            writer.writerow([epoch, 10 * epoch + 9, 500.0, "", ""])
            writer.writerow([epoch, 10 * epoch + 9, "", nme, nme])


def test_validation_curves_join_resumed_launches_and_measure_the_last_fifth(
    tmp_path: Path,
) -> None:
    sweep = tmp_path / "sweep"
    job = write_job(sweep, 0, ["loss=wing"], metrics_of(0.05))
    # epochs 0-5 in the first launch; the resumed launch repeats epoch 5 and goes on to 9
    write_csv_log(job, 0, [(e, 0.30 - 0.02 * e) for e in range(6)])
    write_csv_log(job, 1, [(5, 0.19), *((e, 0.20 - 0.01 * e) for e in range(6, 10))])
    (loaded,) = load_jobs(sweep)
    epochs, nmes = validation_curve(loaded)
    np.testing.assert_array_equal(epochs, np.arange(10))
    assert nmes[5] == pytest.approx(0.19)  # the resumed launch's value
    # last fifth = epochs 8 and 9: best before 0.13 (epoch 7), best within 0.11 (epoch 9)
    assert last_fifth_gain(nmes) == pytest.approx(0.02)
    assert last_fifth_gain(np.array([0.3, 0.2, 0.1, 0.1, 0.12])) == pytest.approx(-0.02)
    assert np.isnan(last_fifth_gain(nmes[:4]))
    report = write_report(sweep)
    column = report.columns.index(LAST_FIFTH_COLUMN)
    assert report.rows[0][column] == pytest.approx(2.0)
    assert report.figures["val_nme_curves"].read_bytes()[:8] == PNG_SIGNATURE


def test_collected_results_rebuild_the_same_report(tmp_path: Path) -> None:
    """experiments/collect_sweep.py copies the finished jobs' small result files; the report of
    the copy has the same table as the report of the sweep."""
    sweep = tmp_path / "sweep"
    finished = write_job(sweep, 0, ["loss=wing"], metrics_of(0.05), per_image=FACES)
    write_csv_log(finished, 0, [(e, 0.3 - 0.02 * e) for e in range(6)])
    write_job(sweep, 1, ["loss=l1"])  # not finished
    write_evaluation(finished, "eval_flip", ["test_time_flip=true"], {"test/nme": 0.045})
    collect = runpy.run_path(str(PROJECT_ROOT / "experiments" / "collect_sweep.py"))["collect"]
    copied, unfinished = collect(sweep, tmp_path / "copy")
    assert copied == [finished.name] and unfinished == ["1_loss=l1"]
    assert (tmp_path / "copy" / finished.name / "csv" / "version_0" / "metrics.csv").is_file()
    original = build_report(sweep)
    copy = build_report(tmp_path / "copy")
    assert copy.rows == [row for row in original.rows if row[1] == "finished"]
    assert "nme_inter_ocular % with test_time_flip=true" in copy.columns
