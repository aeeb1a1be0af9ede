"""Evaluation protocols: which normalisations, thresholds and test subsets a dataset reports.

A protocol turns per-image NMEs (one array per normalisation, fractions) into the numbers papers
report: mean NME per normalisation, failure rate and CED AUC at each threshold for the primary
(first) normalisation, for the whole test split and for each named subset of it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from wingface.metrics import NORMALISATIONS, ced_auc, ced_curve, failure_rate

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)


@dataclass
class EvaluationProtocol:
    """What to report on a test split.

    Attributes:
        normalisations: NME normalisations; the first is the primary one (``val/nme``,
            ``test/nme``, the checkpoint monitor and the one FR/AUC use).
        thresholds: failure-rate and CED-AUC limits (fractions), e.g. ``[0.08, 0.10]``.
        subsets: named test subsets, each the union of faces carrying any of the listed
            attribute flags (e.g. ``common: [helen/testset, lfpw/testset]``).
        pose_subsets: the subsets that form the pose axis, from frontal to the largest poses
            (e.g. ``[yaw_0_30, yaw_30_60, yaw_60_90]``); reported together as the NME-per-pose
            table and plot. Each must be one of ``subsets``.
    """

    normalisations: Sequence[str] = ("inter_ocular", "inter_pupil", "box")
    thresholds: Sequence[float] = (0.08, 0.10)
    subsets: Mapping[str, Sequence[str]] = field(default_factory=dict)
    pose_subsets: Sequence[str] = ()

    def __post_init__(self) -> None:
        self.pose_subsets = tuple(self.pose_subsets)
        unknown = [name for name in self.pose_subsets if name not in dict(self.subsets)]
        if unknown:
            raise ValueError(
                f"data.protocol.pose_subsets: {unknown} are not among data.protocol.subsets "
                f"{list(dict(self.subsets))}"
            )
        self.normalisations = tuple(self.normalisations)
        self.thresholds = tuple(float(t) for t in self.thresholds)
        self.subsets = {name: tuple(flags) for name, flags in dict(self.subsets).items()}
        if not self.normalisations:
            raise ValueError("data.protocol.normalisations must list at least one normalisation")
        for norm in self.normalisations:
            if norm not in NORMALISATIONS:
                raise ValueError(
                    f"data.protocol.normalisations: unknown {norm!r}; "
                    f"expected {list(NORMALISATIONS)}"
                )
        for threshold in self.thresholds:
            if not threshold > 0:
                raise ValueError(f"data.protocol.thresholds must be > 0, got {threshold}")

    @property
    def primary(self) -> str:
        """The primary normalisation."""
        return self.normalisations[0]

    def metric_name(self, norm: str) -> str:
        """``nme`` for the primary normalisation, ``nme_<norm>`` for the others."""
        return "nme" if norm == self.primary else f"nme_{norm}"

    def subset_masks(
        self, attributes: Mapping[str, np.ndarray], size: int
    ) -> dict[str, np.ndarray]:
        """``(size,)`` bool masks of the subsets whose attribute flags the test split carries.

        A subset is reported only when every flag it names is present, so a partial copy of a
        dataset never passes off part of a subset as the whole (it is logged and left out).
        """
        masks = {}
        for name, flags in self.subsets.items():
            missing = [f for f in flags if f not in attributes]
            if missing:
                log.info("test subset %r left out: the test split has no %s", name, missing)
                continue
            present = [np.asarray(attributes[f], dtype=bool) for f in flags]
            masks[name] = np.logical_or.reduce(present)
        for name, mask in masks.items():
            if mask.shape != (size,):
                raise ValueError(f"subset {name!r} mask has shape {mask.shape}, expected ({size},)")
        return masks

    def summarise(self, per_image: Mapping[str, np.ndarray], prefix: str) -> dict[str, float]:
        """Report numbers for one set of faces.

        Args:
            per_image: normalisation → ``(N,)`` per-image NMEs (fractions).
            prefix: metric name prefix, e.g. ``"test/"`` or ``"test/common/"``.

        Returns:
            ``{prefix}nme`` (primary), ``{prefix}nme_<norm>`` (others), and for the primary
            normalisation ``{prefix}fr_<t>`` and ``{prefix}auc_<t>`` for each threshold ``t``
            (formatted with two decimals, e.g. ``fr_0.10``).
        """
        out = {
            f"{prefix}{self.metric_name(norm)}": float(np.mean(per_image[norm]))
            for norm in self.normalisations
        }
        primary = np.asarray(per_image[self.primary], dtype=np.float64)
        for threshold in self.thresholds:
            out[f"{prefix}fr_{threshold:.2f}"] = failure_rate(primary, threshold)
            out[f"{prefix}auc_{threshold:.2f}"] = ced_auc(primary, threshold)
        return out

    def pose_rows(
        self, values: Mapping[str, float], sizes: Mapping[str, int], prefix: str = "test/"
    ) -> tuple[list[str], list[list]]:
        """The NME-per-pose table from summarised values (see :meth:`summarise`).

        Args:
            values: ``{prefix}{subset}/nme...`` numbers for the pose subsets (fractions).
            sizes: faces per subset.
            prefix: the prefix the values were summarised with.

        Returns:
            ``(columns, rows)``: ``pose``, ``faces``, then NME per normalisation and FR per
            threshold in percent; one row per pose subset present in ``values``, in
            :attr:`pose_subsets` order.
        """
        names = [self.metric_name(norm) for norm in self.normalisations]
        failures = [f"fr_{t:.2f}" for t in self.thresholds]
        columns = ["pose", "faces", *(f"{n} %" for n in names), *(f"{f} %" for f in failures)]
        rows = []
        for subset in self.pose_subsets:
            if f"{prefix}{subset}/nme" not in values:
                continue
            numbers = [100.0 * values[f"{prefix}{subset}/{k}"] for k in (*names, *failures)]
            rows.append([subset, int(sizes[subset]), *numbers])
        return columns, rows


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
