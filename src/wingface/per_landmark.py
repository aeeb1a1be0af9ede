"""The test NME of each landmark: a CSV and a bar chart in the run folder."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from wingface.evaluation import _pyplot, _save_figure

PER_LANDMARK_COLUMNS = ["landmark", "faces", "nme %"]


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


def plot_nme_per_landmark(rows: list[list], path: Path, title: str = "") -> Path:
    """Save a bar chart of the NME (%) of each landmark (x: 0-based landmark index)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(5.0, 0.09 * len(rows) + 1.5), 3.2), dpi=100)
    ax.bar([r[0] for r in rows], [r[2] for r in rows], color="#4c72b0", width=0.8)
    ax.set_xlabel("landmark (0-based)")
    ax.set_ylabel("NME %")
    ax.set_xlim(-1, len(rows))
    ax.grid(axis="y", alpha=0.3)
    return _save_figure(fig, ax, path, title)
