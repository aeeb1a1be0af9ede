"""Summarise a finished multirun without W&B: ``python src/report.py <multirun folder>``.

Writes ``<folder>/report.md`` (one row per job: its overrides, the test metrics and the fit
time) and ``<folder>/ced.png`` (the test CED curves of all jobs overlaid), and prints the table.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import yaml

from wingface.evaluation import plot_ced

COLUMNS = (
    "test/nme",
    "test/nme_inter_pupil",
    "test/nme_box",
    "test/fr_0.08",
    "test/fr_0.10",
    "test/auc_0.08",
    "test/auc_0.10",
    "test/nme_mean_shape",
)


def job_number(job: Path) -> int:
    """The Hydra job number recorded in the job's ``.hydra/hydra.yaml``."""
    hydra_cfg = yaml.safe_load((job / ".hydra" / "hydra.yaml").read_text())
    return int(hydra_cfg["hydra"]["job"]["num"])


def job_folders(sweep_dir: Path) -> list[Path]:
    """Job folders of a multirun (those holding ``metrics.json``), in job-number order.

    Searched recursively: an override value holding a ``/`` nests a job's folder deeper.
    """
    jobs = [p.parent for p in sweep_dir.rglob("metrics.json") if (p.parent / ".hydra").is_dir()]
    if not jobs:
        raise FileNotFoundError(f"no finished jobs (metrics.json) in {sweep_dir}")
    return sorted(jobs, key=job_number)


def job_label(job: Path) -> str:
    """The job's command-line overrides, e.g. ``loss=wing``."""
    overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) or []
    return " ".join(o for o in overrides if not o.startswith(("hydra.", "+trainer.enable")))


def distinguishing_labels(jobs: list[Path]) -> list[str]:
    """Each job's overrides without those every job shares (e.g. ``loss=wing``)."""
    overrides = [job_label(job).split() for job in jobs]
    shared = set.intersection(*(set(o) for o in overrides)) if len(jobs) > 1 else set()
    return [" ".join(o for o in own if o not in shared) or " ".join(own) for own in overrides]


def table(jobs: list[Path]) -> str:
    """A Markdown table of the jobs' test metrics (NMEs in %, FR in %, AUC as a fraction)."""
    metrics = [json.loads((job / "metrics.json").read_text()) for job in jobs]
    columns = [c for c in COLUMNS if any(c in m for m in metrics)]
    header = ["job", *(c.removeprefix("test/") for c in columns), "fit time (min)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, values in zip(distinguishing_labels(jobs), metrics, strict=True):
        cells = [label]
        for column in columns:
            value = values.get(column)
            scale = 1 if "auc" in column else 100
            cells.append("" if value is None else f"{value * scale:.{4 if scale == 1 else 2}f}")
        cells.append(f"{values.get('time/fit_seconds', float('nan')) / 60:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def primary_nmes(job: Path) -> np.ndarray | None:
    """The job's per-face test NMEs (first normalisation column), if it wrote them."""
    path = job / "test_per_image.csv"
    if not path.is_file():
        return None
    with path.open() as handle:
        rows = list(csv.reader(handle))
    return np.array([float(r[2]) for r in rows[1:]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--threshold", type=float, default=0.10, help="CED plot limit")
    args = parser.parse_args()
    jobs = job_folders(args.sweep_dir)
    markdown = table(jobs)
    (args.sweep_dir / "report.md").write_text(markdown + "\n")
    labels = distinguishing_labels(jobs)
    curves = {
        label: nmes
        for label, job in zip(labels, jobs, strict=True)
        if (nmes := primary_nmes(job)) is not None
    }
    if curves:
        plot_ced(curves, args.threshold, args.sweep_dir / "ced.png", args.sweep_dir.name)
    print(markdown)


if __name__ == "__main__":
    main()
