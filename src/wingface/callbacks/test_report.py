"""The test report of a run: files in the run folder and the same tables and plots in W&B.

After ``trainer.test`` the :class:`~wingface.module.LandmarkModule` leaves its results in
``test_outcome`` (:class:`TestOutcome`); :class:`TestReport` writes them, on rank 0:

- ``ced_test.png``: the cumulative error distribution of every test subset (W&B: ``test/ced``,
  and ``test/ced_table`` with a native line chart ``test/ced_chart``);
- ``test_per_image.csv``: each test face's NME per normalisation (for CED plots across runs);
- ``nme_per_pose.csv`` / ``.png``: the protocol's pose subsets (W&B: ``test/nme_per_pose``);
- ``nme_per_landmark.csv`` / ``.png``: the NME of each landmark (W&B: ``test/nme_per_landmark``).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
from lightning.pytorch.loggers import WandbLogger

from wingface.evaluation import EvaluationProtocol
from wingface.plots import plot_ced, plot_nme_per_landmark, plot_nme_per_pose
from wingface.wandb_run import log_ced_chart, wandb_loggers

PER_LANDMARK_COLUMNS = ["landmark", "faces", "nme %"]


@dataclass
class TestOutcome:
    """What one test epoch measured.

    Attributes:
        protocol: the evaluation protocol it was measured with.
        indices: ``(N,)`` test face indices, in the order of the per-image arrays.
        per_image: normalisation → ``(N,)`` per-face NME (fractions).
        curves: ``all`` and each non-empty subset → ``(n,)`` NMEs of the primary normalisation.
        sizes: subset → number of test faces in it.
        values: the logged test scalars (``test/...``).
        per_landmark_nme: ``(L,)`` mean NME of each landmark (primary normalisation).
        per_landmark_faces: ``(L,)`` faces where each landmark was visible.
    """

    protocol: EvaluationProtocol
    indices: np.ndarray
    per_image: dict[str, np.ndarray]
    curves: dict[str, np.ndarray]
    sizes: dict[str, int]
    values: dict[str, float]
    per_landmark_nme: np.ndarray
    per_landmark_faces: np.ndarray


class TestReport(L.Callback):
    """Writes the test report of the module's ``test_outcome`` into the run folder
    (``trainer.default_root_dir``) and sends its tables and plots to the W&B loggers."""

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        outcome: TestOutcome | None = getattr(pl_module, "test_outcome", None)
        if outcome is None or not trainer.is_global_zero:
            return
        folder = Path(trainer.default_root_dir)
        folder.mkdir(parents=True, exist_ok=True)
        loggers = wandb_loggers(trainer)
        names = getattr(trainer.datamodule, "test_names", lambda: None)()
        write_per_image_csv(outcome, names, folder / "test_per_image.csv")
        save_ced(outcome, folder, loggers)
        save_nme_per_pose(outcome, folder, loggers)
        save_nme_per_landmark(outcome, folder, loggers)


def write_per_image_csv(outcome: TestOutcome, names: list[str] | None, path: Path) -> None:
    """``test_per_image.csv``: index, face name (empty when unknown) and NME per normalisation."""
    norms = list(outcome.per_image)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["index", "name", *(f"nme_{n}" for n in norms)])
        for row, index in enumerate(outcome.indices):
            values = [f"{outcome.per_image[n][row]:.6f}" for n in norms]
            writer.writerow([int(index), names[int(index)] if names else "", *values])


def save_ced(outcome: TestOutcome, folder: Path, loggers: list[WandbLogger]) -> None:
    """Plot the CED curves into ``ced_test.png`` and log them to W&B (image, table, chart)."""
    protocol = outcome.protocol
    threshold = max(protocol.thresholds)
    title = f"test CED ({protocol.primary})"
    path = plot_ced(outcome.curves, threshold, folder / "ced_test.png", title)
    for logger in loggers:
        logger.log_image(key="test/ced", images=[str(path)])
        log_ced_chart(logger, outcome.curves, threshold)


def save_nme_per_pose(outcome: TestOutcome, folder: Path, loggers: list[WandbLogger]) -> None:
    """``nme_per_pose.csv`` and ``.png`` (the protocol's pose subsets), and W&B table + image."""
    protocol = outcome.protocol
    columns, rows = protocol.pose_rows(outcome.values, outcome.sizes)
    if not rows:
        return
    with (folder / "nme_per_pose.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows([r[:2] + [f"{v:.4f}" for v in r[2:]] for r in rows])
    title = f"test NME per pose ({protocol.primary})"
    path = plot_nme_per_pose(columns, rows, folder / "nme_per_pose.png", title)
    for logger in loggers:
        logger.log_table(key="test/nme_per_pose", columns=columns, data=rows)
        logger.log_image(key="test/nme_per_pose_plot", images=[str(path)])


def save_nme_per_landmark(outcome: TestOutcome, folder: Path, loggers: list[WandbLogger]) -> None:
    """``nme_per_landmark.csv`` and ``.png`` (primary normalisation), and W&B table + image."""
    rows = per_landmark_rows(outcome.per_landmark_nme, outcome.per_landmark_faces)
    write_per_landmark_csv(rows, folder / "nme_per_landmark.csv")
    title = f"test NME per landmark ({outcome.protocol.primary})"
    path = plot_nme_per_landmark(rows, folder / "nme_per_landmark.png", title)
    for logger in loggers:
        logger.log_table(key="test/nme_per_landmark", columns=PER_LANDMARK_COLUMNS, data=rows)
        logger.log_image(key="test/nme_per_landmark_plot", images=[str(path)])


def per_landmark_rows(nmes: np.ndarray, counts: np.ndarray) -> list[list]:
    """One ``[landmark index, faces where it is visible, NME %]`` row per landmark.

    Args:
        nmes: ``(L,)`` mean normalised error per landmark (fractions).
        counts: ``(L,)`` number of test faces in which each landmark is visible.
    """
    return [
        [int(i), int(c), round(100.0 * float(v), 4)]
        for i, (v, c) in enumerate(zip(nmes, counts, strict=True))
    ]


def write_per_landmark_csv(rows: list[list], path: Path) -> Path:
    """Write :func:`per_landmark_rows` to ``path`` with :data:`PER_LANDMARK_COLUMNS` as header."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(PER_LANDMARK_COLUMNS)
        writer.writerows(rows)
    return path
