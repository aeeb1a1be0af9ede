"""Paired test-face differences between the seed groups of a sweep, with bootstrap intervals.

Usage:
    python experiments/paired_difference.py <sweep or collected folder> --baseline loss=wing

The spread between seeds measures how much training noise moves a result; the test set's
finite sample moves it too. Both models of a pair are measured on the same faces, so the
per-face difference removes what the faces share. For every seed group (the jobs that differ
only in ``seed``, as in the report's "Across seeds" table) each test face's primary NME is
averaged over the group's seeds; then for every other group the mean per-face difference to
the baseline group (other − baseline, percentage points: positive = the baseline is better),
its 95% interval from resampling the test faces (percentile bootstrap) and the share of faces
the baseline predicts better are printed as a Markdown table.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wingface.report import load_jobs, seed_groups, test_face_nmes


@dataclass
class PairedDifference:
    """One group against the baseline on the faces both were tested on.

    Attributes:
        label: the group's distinguishing overrides (``loss=l1``).
        faces: number of test faces in the comparison.
        mean: mean per-face NME difference, group − baseline (percentage points).
        low, high: its 95% percentile-bootstrap interval (percentage points).
        baseline_better: share of faces where the baseline's NME is lower (fraction).
    """

    label: str
    faces: int
    mean: float
    low: float
    high: float
    baseline_better: float


def group_face_nmes(sweep: Path) -> dict[str, dict[int, float]]:
    """Seed-group label → test index → the face's primary NME (%) averaged over the seeds
    (the faces every seed of the group was tested on)."""
    groups = seed_groups(load_jobs(sweep))
    if not groups:
        raise ValueError(f"{sweep}: no seed groups (jobs that differ only in their seed)")
    result = {}
    for group in groups:
        tables = [{i: 100 * nme for i, _, nme in test_face_nmes(p)[1]} for p in group.paths]
        shared = set.intersection(*(set(t) for t in tables))
        result[group.label] = {i: float(np.mean([t[i] for t in tables])) for i in sorted(shared)}
    return result


def paired_differences(
    groups: dict[str, dict[int, float]], baseline: str, resamples: int = 10_000, seed: int = 0
) -> list[PairedDifference]:
    """Every group other than ``baseline`` against it (see the module docstring)."""
    if baseline not in groups:
        raise ValueError(f"--baseline {baseline!r}: expected one of {sorted(groups)}")
    rng = np.random.default_rng(seed)
    results = []
    for label, nmes in groups.items():
        if label == baseline:
            continue
        faces = sorted(set(nmes) & set(groups[baseline]))
        if not faces:
            raise ValueError(f"{label} and {baseline} share no test face (test split index)")
        diff = np.array([nmes[i] - groups[baseline][i] for i in faces])
        draws = rng.integers(0, len(diff), size=(resamples, len(diff)))
        means = diff[draws].mean(axis=1)
        low, high = np.percentile(means, [2.5, 97.5])
        results.append(
            PairedDifference(
                label,
                len(faces),
                float(diff.mean()),
                float(low),
                float(high),
                float(np.mean(diff > 0)),
            )
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", type=Path, help="a sweep folder or its collected copy")
    parser.add_argument("--baseline", required=True, help="the baseline group, e.g. loss=wing")
    parser.add_argument("--resamples", type=int, default=10_000, help="bootstrap resamples")
    args = parser.parse_args()
    results = paired_differences(group_face_nmes(args.sweep), args.baseline, args.resamples)
    print(f"| group − {args.baseline} | faces | mean difference (pp) | 95% interval | "
          f"faces {args.baseline} is better on |")  # fmt: skip
    print("|---|---|---|---|---|")
    for r in results:
        print(f"| {r.label} | {r.faces} | {r.mean:+.3f} | [{r.low:+.3f}, {r.high:+.3f}] | "
              f"{100 * r.baseline_better:.0f}% |")  # fmt: skip


if __name__ == "__main__":
    main()
