"""What a sweep leaves in W&B, read back from the offline run files: tags, NME curves, the
validation panel, per-landmark NME, the CED curve and table, NME per pose, the sweep summary."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from entry_points import run_script
from wandb_records import OfflineRun
from wingface.metrics import CED_STEPS
from wingface.wandb_run import run_tags

# Under pytest -n (make test) in one test process: the tests share one trained sweep.
pytestmark = pytest.mark.xdist_group("wandb-dashboard-sweep")


@pytest.fixture(scope="module")
def sweep(
    tmp_path_factory: pytest.TempPathFactory, subprocess_env: dict[str, str], small_data: list[str]
) -> Path:
    """A finished 2-job multirun (Wing w=10 eps=2, then L1) of 2 epochs, W&B offline."""
    sweep_dir = tmp_path_factory.mktemp("dashboard") / "sweep"
    run_script(
        "train.py",
        ["-m", "loss=wing,l1", "trainer.max_epochs=2", *small_data, f"hydra.sweep.dir={sweep_dir}"],
        subprocess_env,
    )
    return sweep_dir


def job_folders(sweep_dir: Path) -> list[Path]:
    return sorted(p for p in sweep_dir.iterdir() if p.is_dir() and p.name[0].isdigit())


def offline_run(folder: Path) -> OfflineRun:
    runs = list((folder / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, f"expected one offline W&B run in {folder}, got {runs}"
    return OfflineRun(runs[0])


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_runs_are_grouped_by_sweep_and_tagged_with_their_choices(sweep: Path) -> None:
    wing, l1 = (offline_run(job) for job in job_folders(sweep))
    for run in (wing, l1):
        assert run.run.run_group == sweep.name
        assert {"data=synthetic", "model=cnn6", "balance=none", "augment=default"} <= set(
            run.run.tags
        )
    assert {"loss=wing", "w=10", "eps=2"} <= set(wing.run.tags)
    assert "loss=l1" in l1.run.tags and not any(t.startswith("w=") for t in l1.run.tags)


@pytest.mark.slow
def test_each_run_holds_nme_curves_and_the_final_validation_panel(sweep: Path) -> None:
    for job in job_folders(sweep):
        run = offline_run(job)
        metrics = json.loads((job / "metrics.json").read_text())
        val_nme = run.series("val/nme")
        assert len(val_nme) == 2  # one point per epoch: the NME curve
        assert min(val_nme) == pytest.approx(metrics["val/nme_best"], rel=1e-6)
        assert len(run.series("train/loss_epoch")) == 2  # the training-loss curve
        # panel every 5 epochs by default, and after the last one: 2 epochs → logged once
        assert len(run.series("val/panel/count")) == 1
        assert len(run.media("images", "val/panel")) == 8


@pytest.mark.slow
def test_per_landmark_nme_table_matches_the_csv_and_averages_to_the_nme(sweep: Path) -> None:
    job = job_folders(sweep)[0]
    run = offline_run(job)
    rows = read_csv(job / "nme_per_landmark.csv")
    assert [int(r["landmark"]) for r in rows] == list(range(68))
    (table_file,) = run.media("table", "test/nme_per_landmark")
    table = json.loads(table_file.read_text())
    assert table["columns"] == ["landmark", "faces", "nme %"]
    assert [[int(r["landmark"]), int(r["faces"]), float(r["nme %"])] for r in rows] == [
        [int(a), int(b), float(c)] for a, b, c in table["data"]
    ]
    assert run.media("images", "test/nme_per_landmark_plot")
    # the synthetic faces have every point visible: the mean over landmarks of the
    # per-landmark NME equals the mean over faces of the per-face NME
    assert {int(r["faces"]) for r in rows} == {32}
    test_nme = json.loads((job / "metrics.json").read_text())["test/nme"]
    per_landmark = np.array([float(r["nme %"]) for r in rows]) / 100
    assert per_landmark.mean() == pytest.approx(test_nme, abs=1e-5)


@pytest.mark.slow
def test_ced_table_is_the_share_of_faces_below_each_error(sweep: Path) -> None:
    job = job_folders(sweep)[0]
    run = offline_run(job)
    nmes = np.array([float(r["nme_inter_ocular"]) for r in read_csv(job / "test_per_image.csv")])
    (table_file,) = run.media("table", "test/ced_table")
    table = json.loads(table_file.read_text())
    assert table["columns"] == ["curve", "nme %", "share of faces"]
    curve = [(x, share) for name, x, share in table["data"] if name == "all"]
    assert len(curve) == CED_STEPS and curve[-1][0] == pytest.approx(10.0)
    for x, share in curve:
        assert share == pytest.approx(np.mean(nmes <= x / 100 + 1e-9), abs=1e-6)
    assert run.media("images", "test/ced")
    # the native W&B line chart: CED per curve, drawn from its own copy of the table
    chart = run.charts()["test/ced_chart"]["panel_config"]
    assert chart["panelDefId"] == "wandb/line/v0"
    assert chart["fieldSettings"] == {"x": "nme %", "y": "share of faces", "stroke": "curve"}
    assert run.series("test/ced_chart_table/nrows") == [len(table["data"])]
    assert run.media("table", "test/nme_per_pose") and run.media("images", "test/nme_per_pose_plot")


@pytest.mark.slow
def test_sweep_ends_with_a_summary_run_and_report(sweep: Path) -> None:
    summaries = list((sweep / "wandb").glob("offline-run-*"))
    assert len(summaries) == 1
    run = OfflineRun(summaries[0])
    assert run.run.run_group == sweep.name and run.run.job_type == "sweep-summary"
    (table_file,) = run.media("table", "sweep/summary")
    table = json.loads(table_file.read_text())
    assert len(table["data"]) == 2
    nme_column = next(i for i, c in enumerate(table["columns"]) if "nme_inter_ocular" in c)
    for row, job in zip(table["data"], job_folders(sweep), strict=True):
        expected = json.loads((job / "metrics.json").read_text())["test/nme"]
        assert float(row[nme_column]) == pytest.approx(100 * expected, abs=0.01)
    assert (sweep / "report.md").is_file()
    assert run.media("images", "sweep/ced")


def test_tags_without_hydra_come_from_the_config_targets() -> None:
    cfg = OmegaConf.create(
        {
            "loss": {"_target_": "wingface.losses.WingLoss", "w": 10.0, "eps": 0.5},
            "model": {"_target_": "wingface.models.cnn.CNN6"},
        }
    )
    assert run_tags(cfg, ["mine"]) == ["mine", "model=cnn6", "loss=wingloss", "w=10", "eps=0.5"]
    choices = {"loss": "wing", "model": "cnn6", "data": "300w"}
    assert run_tags(cfg, [], choices)[:3] == ["data=300w", "model=cnn6", "loss=wing"]
    long_tag = OmegaConf.create({"loss": {"_target_": "x." + "y" * 70}})
    with pytest.raises(ValueError, match="at most 64"):
        run_tags(long_tag)
