"""Pose-based data balancing on the real AFLW shapes: does it flatten the yaw distribution?

Usage:
    python experiments/pdb_aflw.py [--data ../shared/data/aflw_shapes] [--sweep]

Loads the 21,080 AFLW shapes (19 points, invisible points flagged) with their head yaw, runs
``PoseBalance`` in the paper mode (component index 1, the authors' choice for 19-point AFLW,
K = 9), in the improved mode and in the pose3d mode (|yaw| of a 3-D template fit), prints the
pose3d mode's yaw estimation error against the provided yaw (MAE overall and per |yaw| band),
then Markdown tables: the share of faces per |yaw| range
before and after balancing (after = weighted by the repeat counts), the median |pose
coefficient| per |yaw| range, and with ``--sweep`` the improved mode's result per repeat cap.
The yaw is only used to evaluate; balancing sees the shapes alone. The row "oracle" balances
on the true |yaw| with the same bins and cap: what a perfect pose coefficient would give; the
"linear fit" rows balance on the |yaw| predicted by a least-squares fit *to the true yaw* from
the same shape vectors: the best any single linear shape direction could do.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from wingface.data.balance import (
    DEFAULT_MAX_REPEAT,
    DEFAULT_VISIBILITY_WEIGHT,
    PoseBalance,
    fill_invisible,
    histogram_repeats,
    procrustes_align,
    shape_vectors,
)
from wingface.data.formats.aflw import load_aflw_shapes
from wingface.data.head_pose import MIN_FIT_POINTS, face_template, fit_head_pose
from wingface.landmarks import AFLW19

YAW_RANGES = ((0.0, 30.0), (30.0, 60.0), (60.0, 90.0), (90.0, np.inf))
"""|yaw| ranges in degrees, lower bound inclusive."""

BANDS = (*((float(a), float(a + 15)) for a in range(0, 105, 15)), (105.0, np.inf))
"""Finer |yaw| bands (degrees) for the coefficient-versus-yaw table."""


def default_data() -> Path:
    """``$WINGFACE_DATA_ROOT/aflw_shapes`` or ``../shared/data/aflw_shapes`` from the repo."""
    root = os.environ.get("WINGFACE_DATA_ROOT")
    if root:
        return Path(root) / "aflw_shapes"
    return Path(__file__).resolve().parents[1].parent / "shared" / "data" / "aflw_shapes"


def range_name(low: float, high: float) -> str:
    """``"30-60"`` or ``">=90"`` for a |yaw| range in degrees."""
    return f">={low:g}" if np.isinf(high) else f"{low:g}-{high:g}"


def shares(abs_yaw: np.ndarray, weights: np.ndarray) -> list[float]:
    """Weighted share (%) of faces in each of :data:`YAW_RANGES`, then the share >= 60 deg."""
    total = weights.sum()
    out = [100.0 * weights[(abs_yaw >= a) & (abs_yaw < b)].sum() / total for a, b in YAW_RANGES]
    return [*out, 100.0 * weights[abs_yaw >= 60.0].sum() / total]


def summary_row(name: str, component: str, r: str, abs_yaw: np.ndarray, repeats: np.ndarray) -> str:
    """One Markdown row: shares per |yaw| range, balanced set size and largest repeat."""
    cells = [f"{s:.1f}" for s in shares(abs_yaw, repeats.astype(np.float64))]
    size = int(repeats.sum())
    return (
        f"| {name} | {component} | {r} | {' | '.join(cells)} | {size:,} "
        f"({size / len(repeats):.2f} N) | {int(repeats.max())} |"
    )


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two ``(N,)`` arrays, over the entries finite in both."""
    finite = np.isfinite(a) & np.isfinite(b)
    return float(np.corrcoef(a[finite], b[finite])[0, 1])


def yaw_errors(landmarks: np.ndarray, visibility: np.ndarray, yaw: np.ndarray) -> None:
    """Print the 3-D template fit's yaw error against the provided yaw (Markdown)."""
    pose = fit_head_pose(landmarks, visibility, face_template("aflw19"))
    estimate, fitted = pose.angles[:, 0], pose.fitted
    # AFLW's yaw is positive for faces turned the other way from the fit's (Ry) convention
    sign = -1.0 if pearson(estimate, yaw) < 0 else 1.0
    print(
        f"pose3d: {int((~fitted).sum())} of {len(yaw):,} faces ({100 * (~fitted).mean():.1f}%) "
        f"have fewer than {MIN_FIT_POINTS} visible points and are not fitted; AFLW yaw = "
        f"{sign:+.0f} x fitted yaw (r = {pearson(sign * estimate, yaw):.3f})\n"
    )
    abs_yaw = np.abs(yaw)
    print("| true abs yaw | faces | MAE signed yaw (deg) | MAE abs yaw (deg) | median estimate |")
    print("|---|---|---|---|---|")
    for low, high in ((0.0, np.inf), *YAW_RANGES):
        band = fitted & (abs_yaw >= low) & (abs_yaw < high)
        signed = np.abs(sign * estimate[band] - yaw[band]).mean()
        absolute = np.abs(np.abs(estimate[band]) - abs_yaw[band]).mean()
        median = np.median(np.abs(estimate[band]))
        name = "all" if high == np.inf and low == 0 else range_name(low, high)
        print(f"| {name} | {int(band.sum()):,} | {signed:.1f} | {absolute:.1f} | {median:.1f} |")
    print()


def supervised_ceiling(
    landmarks: np.ndarray, visibility: np.ndarray, yaw: np.ndarray, weight: float
) -> np.ndarray:
    """|yaw| predicted by least squares from the improved mode's shape vectors (uses the yaw!).

    Not a balancing method: the best any *linear* function of the aligned coordinates and the
    visibility pattern can do, i.e. an upper bound for a single principal component.

    Returns:
        ``(N,)`` absolute predicted yaw (degrees).
    """
    aligned, mean = procrustes_align(landmarks, visibility)
    vectors = shape_vectors(fill_invisible(aligned, visibility, mean), visibility, weight)
    design = np.concatenate([vectors, np.ones((len(vectors), 1))], axis=1)
    solution, *_ = np.linalg.lstsq(design, yaw, rcond=None)
    return np.abs(design @ solution)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=default_data(), help="aflw_shapes folder")
    parser.add_argument("--bins", type=int, default=9, help="histogram bins K")
    parser.add_argument("--sweep", action="store_true", help="also sweep the repeat cap")
    args = parser.parse_args()

    landmarks, visibility, yaw = load_aflw_shapes(
        args.data / "AFLW_GT_pts21.npy", args.data / "AFLW_GT_crop_yaws.npy"
    )
    abs_yaw = np.abs(yaw.astype(np.float64))
    flip = AFLW19.flip_array()
    n = len(landmarks)
    print(
        f"{n:,} faces, {100 * (~visibility).mean():.1f}% of points invisible, "
        f"K = {args.bins}, max_repeat default = {DEFAULT_MAX_REPEAT}\n"
    )

    strategies = {
        "paper": PoseBalance("paper", num_bins=args.bins, component=1),
        "improved": PoseBalance("improved", num_bins=args.bins),
        "improved, visibility_weight=0": PoseBalance(
            "improved", num_bins=args.bins, visibility_weight=0
        ),
        "improved, fill=mirror": PoseBalance("improved", num_bins=args.bins, fill="mirror"),
        "pose3d": PoseBalance("pose3d", num_bins=args.bins),
    }
    yaw_errors(landmarks, visibility, yaw.astype(np.float64))
    plans = {name: s.plan(landmarks, visibility, flip) for name, s in strategies.items()}

    ranges = " | ".join(f"{range_name(a, b)} %" for a, b in YAW_RANGES)
    print(f"| mode | component | r(abs c, abs yaw) | {ranges} | >=60 % | faces | max repeat |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(summary_row("before", "-", "-", abs_yaw, np.ones(n, dtype=np.int64)))
    for name, plan in plans.items():
        r = f"{pearson(np.abs(plan.coefficient), abs_yaw):.3f}"
        print(summary_row(name, str(plan.component), r, abs_yaw, plan.repeats))
    oracle, _, _ = histogram_repeats(abs_yaw, args.bins, DEFAULT_MAX_REPEAT)
    print(summary_row(f"oracle: true abs yaw, cap {DEFAULT_MAX_REPEAT}", "-", "1", abs_yaw, oracle))
    for weight in (0.0, DEFAULT_VISIBILITY_WEIGHT):
        predicted = supervised_ceiling(landmarks, visibility, yaw.astype(np.float64), weight)
        repeats, _, _ = histogram_repeats(predicted, args.bins, DEFAULT_MAX_REPEAT)
        r = f"{pearson(predicted, abs_yaw):.3f}"
        name = f"linear fit to yaw, visibility_weight={weight:g}"
        print(summary_row(name, "-", r, abs_yaw, repeats))

    print("\nMedian |coefficient| per |yaw| band, relative to the median over all faces:\n")
    bands = [(abs_yaw >= a) & (abs_yaw < b) for a, b in BANDS]
    print("| mode | " + " | ".join(range_name(a, b) for a, b in BANDS) + " |")
    print("|---" * (len(BANDS) + 1) + "|")
    print("| faces | " + " | ".join(f"{int(m.sum()):,}" for m in bands) + " |")
    for name, plan in plans.items():
        magnitude = np.abs(plan.coefficient)
        scale = np.nanmedian(magnitude)
        cells = [f"{np.nanmedian(magnitude[m]) / scale:.2f}" for m in bands]
        print(f"| {name} | " + " | ".join(cells) + " |")

    if args.sweep:
        print("\nImproved mode per repeat cap:\n")
        magnitude = np.abs(plans["improved"].coefficient)
        counts = np.bincount(plans["improved"].bins, minlength=args.bins)
        uncapped = np.rint(counts.max() / np.maximum(counts, 1)).astype(np.int64)
        print(f"faces per bin: {counts.tolist()}; uncapped repeats: {uncapped.tolist()}\n")
        print("| max_repeat | >=30 % | >=60 % | faces (x N) |")
        print("|---|---|---|---|")
        for cap in (1, 2, 4, 8, 12, 16, 20, 25, 32, None):
            repeats, _, _ = histogram_repeats(magnitude, args.bins, cap)
            weights = repeats.astype(np.float64)
            share30 = 100.0 * weights[abs_yaw >= 30.0].sum() / weights.sum()
            share60 = shares(abs_yaw, weights)[-1]
            print(f"| {cap} | {share30:.1f} | {share60:.1f} | {weights.sum() / n:.2f} |")


if __name__ == "__main__":
    main()
