"""Every figure the framework draws: the report charts (matplotlib, written as PNG files) and
the landmark drawings on face images (OpenCV, returned as RGB arrays).

Charts: :func:`plot_ced` (cumulative error distributions), :func:`plot_nme_per_pose`,
:func:`plot_nme_per_landmark`, :func:`plot_value_grids` (heat maps over a parameter grid, e.g.
Wing's w and ε), :func:`plot_grouped_bars` and :func:`plot_curves` (e.g. validation NME per
epoch). Drawings: :func:`draw_landmarks` (truth and
prediction on a face crop), :func:`draw_overlay` (boxes and landmarks on a photo) and
:func:`tile_grid` (a contact sheet).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import cv2
import numpy as np

from wingface.metrics import ced_auc, ced_curve

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from wingface.inference.predictor import FaceLandmarks

GROUND_TRUTH_RGB = (40, 220, 40)
PREDICTION_RGB = (240, 40, 40)


def tile_grid(tiles: list[np.ndarray], columns: int) -> np.ndarray:
    """``(H, W, 3)`` images of equal size laid out ``columns`` wide, blank (white) tiles filling
    the last row."""
    tiles = list(tiles)
    while len(tiles) % columns:
        tiles.append(np.full_like(tiles[0], 255))
    rows = [np.concatenate(tiles[r : r + columns], axis=1) for r in range(0, len(tiles), columns)]
    return np.concatenate(rows, axis=0)


def draw_landmarks(
    image: np.ndarray, truth: np.ndarray, pred: np.ndarray, upscale: int = 4
) -> np.ndarray:
    """Draw ``(L, 2)`` ground-truth (green) and predicted (red) points on an upscaled copy.

    Args:
        image: ``(S, S, 3)`` uint8 RGB.
        truth, pred: ``(L, 2)`` pixels of ``image``.
        upscale: integer magnification of the returned ``(S*upscale, S*upscale, 3)`` image.
    """
    canvas = cv2.resize(image, None, fx=upscale, fy=upscale, interpolation=cv2.INTER_NEAREST).copy()
    for points, colour in ((truth, GROUND_TRUTH_RGB), (pred, PREDICTION_RGB)):
        # Pixel centre i of the input lies at upscale * i + (upscale - 1) / 2 on the canvas.
        scaled = (points * upscale + (upscale - 1) / 2.0) * 16
        for x, y in np.round(scaled).astype(np.int64):
            cv2.circle(canvas, (int(x), int(y)), 2 * 16, colour, -1, cv2.LINE_AA, shift=4)
    return canvas


def draw_overlay(
    image: np.ndarray, faces: list[FaceLandmarks], dot_radius: float = 0.012
) -> np.ndarray:
    """A copy of a ``(H, W, 3)`` uint8 RGB image with each face's box and landmark dots.

    Args:
        dot_radius: dot radius as a fraction of the face box's longer side (at least 1 px).
    """
    canvas = image.copy()
    frac = 16  # sub-pixel drawing: coordinates in 1/16 px (cv2 shift=4)
    thickness = max(1, round(min(image.shape[:2]) / 300))
    for face in faces:
        x0, y0, x1, y1 = face.box
        # a box edge at x0 - 0.5 .. x1 - 0.5 pixel boundaries: draw through the centre pixels
        corner0 = (round((x0 + 0.5) * frac), round((y0 + 0.5) * frac))
        corner1 = (round((x1 - 0.5) * frac), round((y1 - 0.5) * frac))
        cv2.rectangle(canvas, corner0, corner1, GROUND_TRUTH_RGB, thickness, cv2.LINE_AA, 4)
        radius = max(1.0, dot_radius * max(x1 - x0, y1 - y0))
        for x, y in face.landmarks:
            centre = (round(float(x) * frac), round(float(y) * frac))
            cv2.circle(canvas, centre, round(radius * frac), PREDICTION_RGB, -1, cv2.LINE_AA, 4)
    return canvas


def _pyplot() -> ModuleType:
    """``matplotlib.pyplot`` on the non-interactive Agg backend (safe in workers and CI)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_figure(fig: Figure, ax: Axes, path: str | Path, title: str) -> Path:
    """Title ``ax``, save ``fig`` as ``path`` (folders created) and close it."""
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    _pyplot().close(fig)
    return path


def plot_nme_per_pose(
    columns: Sequence[str], rows: Sequence[Sequence], path: str | Path, title: str = ""
) -> Path:
    """Save a bar chart of the primary NME (third column of :meth:`pose_rows`) per pose bin.

    Each bar is labelled with its NME (%) and its number of faces.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=100)
    labels = [str(row[0]) for row in rows]
    nmes = [float(row[2]) for row in rows]
    bars = ax.bar(labels, nmes, color="#4c72b0")
    for bar, row in zip(bars, rows, strict=True):
        ax.annotate(
            f"{float(row[2]):.2f}\n({int(row[1])} faces)",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.set_ylabel(columns[2])
    ax.set_ylim(0, max(nmes, default=1.0) * 1.25)
    ax.grid(axis="y", alpha=0.3)
    return _save_figure(fig, ax, path, title)


def plot_ced(
    curves: Mapping[str, np.ndarray], threshold: float, path: str | Path, title: str = ""
) -> Path:
    """Save the cumulative error distribution of each named ``(N,)`` NME array as a PNG.

    The x axis is the NME in percent up to ``threshold``; the y axis the share of images.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
    for label, nmes in curves.items():
        x, y = ced_curve(np.asarray(nmes, dtype=np.float64), threshold)
        auc = ced_auc(np.asarray(nmes, dtype=np.float64), threshold)
        ax.plot(np.asarray(x) * 100, np.asarray(y), label=f"{label} (AUC {auc:.3f})")
    ax.set_xlim(0, threshold * 100)
    ax.set_ylim(0, 1)
    ax.set_xlabel("NME (%)")
    ax.set_ylabel("share of images")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _save_figure(fig, ax, path, title)


def plot_value_grids(
    grids: Sequence[tuple[str, Sequence[float], Sequence[float], np.ndarray]],
    path: str | Path,
    title: str = "",
    x_label: str = "w",
    y_label: str = "ε",
    value_label: str = "NME (%)",
) -> Path:
    """Save heat maps of values over a 2-D parameter grid, one panel per grid, as a PNG.

    Args:
        grids: ``(panel title, x values (C,), y values (R,), values (R, C))`` per panel; a NaN
            value leaves its cell blank. Every cell with a value is annotated with it (2
            decimals; small print on grids wider than 8 cells, e.g. an Optuna search's
            scattered values). All panels share one colour scale.
        path: PNG to write (folders created).
        title: figure title.
        x_label: name of the x (column) parameter.
        y_label: name of the y (row) parameter.
        value_label: colour bar label.
    """
    plt = _pyplot()
    finite = [
        v for _, _, _, g in grids for v in np.asarray(g, dtype=float).ravel() if np.isfinite(v)
    ]
    vmin, vmax = (min(finite), max(finite)) if finite else (0.0, 1.0)
    if vmin == vmax:
        vmin, vmax = vmin - 0.5, vmax + 0.5
    cmap = plt.get_cmap("viridis_r").with_extremes(bad="white")
    columns = max((len(xs) for _, xs, _, _ in grids), default=1)
    rows = max((len(ys) for _, _, ys, _ in grids), default=1)
    panel_width, height = max(3.6, 1.5 + 0.45 * columns), max(3.6, 1.5 + 0.3 * rows)
    fig, axes = plt.subplots(
        1, len(grids), figsize=(1.2 + panel_width * len(grids), height), dpi=100, squeeze=False
    )
    fontsize = 8 if columns <= 8 else 6
    image = None
    for ax, (panel, xs, ys, values) in zip(axes[0], grids, strict=True):
        values = np.ma.masked_invalid(np.asarray(values, dtype=float))
        image = ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax, origin="lower", aspect="auto")
        ax.set_xticks(range(len(xs)), [f"{x:.3g}" for x in xs], fontsize=fontsize,
                      rotation=0 if len(xs) <= 8 else 90)  # fmt: skip
        ax.set_yticks(range(len(ys)), [f"{y:.3g}" for y in ys], fontsize=fontsize)
        ax.set_xlabel(x_label)
        ax.set_ylabel(y_label)
        for (row, col), value in np.ndenumerate(values.filled(np.nan)):
            if np.isfinite(value):
                red, green, blue, _ = cmap((value - vmin) / (vmax - vmin))
                dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5
                ax.text(col, row, f"{value:.2f}", ha="center", va="center", fontsize=fontsize,
                        color="white" if dark else "black")  # fmt: skip
        if panel:
            ax.set_title(panel, fontsize=8)
    if image is not None:
        fig.colorbar(image, ax=list(axes[0]), label=value_label)
    if title:
        fig.suptitle(title, fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_grouped_bars(
    groups: Sequence[str],
    series: Mapping[str, Sequence[float]],
    path: str | Path,
    y_label: str,
    title: str = "",
) -> Path:
    """Save grouped bars as a PNG: one group per ``groups`` entry, one bar colour per series.

    Args:
        groups: ``G`` group names along the x axis (e.g. pose bins).
        series: series name → ``(G,)`` values; a NaN leaves its bar out. Bars are labelled
            with their value (2 decimals) when there are at most four series.
        path: PNG to write (folders created).
        y_label: y axis label, with its unit.
        title: figure title.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 + 0.5 * len(groups) * max(len(series), 1)), 3.8))
    width = 0.8 / max(len(series), 1)
    top = 0.0
    for k, (name, values) in enumerate(series.items()):
        values = np.asarray(values, dtype=float)
        x = np.arange(len(groups)) - 0.4 + width * (k + 0.5)
        keep = np.isfinite(values)
        bars = ax.bar(x[keep], values[keep], width, label=name)
        top = max(top, float(values[keep].max(initial=0.0)))
        if len(series) <= 4:
            ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks(range(len(groups)), list(groups), fontsize=8)
    ax.set_ylabel(y_label)
    ax.set_ylim(0, (top or 1.0) * 1.2)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return _save_figure(fig, ax, path, title)


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


def plot_curves(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    path: str | Path,
    x_label: str,
    y_label: str,
    title: str = "",
) -> Path:
    """Save one line per named ``(x (N,), y (N,))`` curve as a PNG (e.g. validation NME per
    epoch of each job of a sweep); the y axis spans the curves' 2nd to 98th percentiles so
    that early epochs do not flatten the end."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    values = np.concatenate([np.asarray(y, dtype=float) for _, y in curves.values()])
    for label, (x, y) in curves.items():
        ax.plot(np.asarray(x), np.asarray(y), label=label, linewidth=1.2)
    if values.size:
        low, high = np.percentile(values, [2, 98])
        ax.set_ylim(low - 0.05 * (high - low), high + 0.05 * (high - low))
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save_figure(fig, ax, path, title)
