"""Copy the recorded results of a sweep's finished jobs into the repository (small text files only).

Usage:
    python experiments/collect_sweep.py <multirun folder> experiments/<name>

For every finished job (one with ``metrics.json``) the folder ``<dest>/<job folder name>/``
receives ``metrics.json``, ``test_per_image.csv``, ``nme_per_pose.csv``,
``nme_per_landmark.csv``, ``run_info.json``, the CSV logs (``csv/version_*/metrics.csv``, the
validation curves), ``.hydra/{config,hydra,overrides}.yaml`` and, for each ``src/eval.py``
evaluation written inside the job folder, its ``evaluation.yaml`` and ``metrics.json``: enough
for ``python src/report.py <dest>`` to rebuild the sweep's report (table with the evaluations'
columns, CED, per-pose bars, validation curves) without checkpoints. Jobs already copied are
refreshed; unfinished jobs are listed and skipped.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from wingface.report import evaluation_folders
from wingface.run_folder import EVALUATION_RECORD

RESULT_FILES = (
    "metrics.json",
    "test_per_image.csv",
    "nme_per_pose.csv",
    "nme_per_landmark.csv",
    "run_info.json",
    ".hydra/config.yaml",
    ".hydra/hydra.yaml",
    ".hydra/overrides.yaml",
)


def collect(sweep: Path, dest: Path) -> tuple[list[str], list[str]]:
    """Copy the finished jobs' result files; returns ``(copied jobs, unfinished jobs)``."""
    copied, unfinished = [], []
    for job in sorted(p for p in sweep.iterdir() if (p / ".hydra").is_dir()):
        if not (job / "metrics.json").is_file():
            unfinished.append(job.name)
            continue
        logs = sorted(job.glob("csv/version_*/metrics.csv"))
        evaluations = [
            folder / name
            for folder in evaluation_folders(job)
            for name in (EVALUATION_RECORD, "metrics.json")
        ]
        extra = [str(p.relative_to(job)) for p in [*logs, *evaluations]]
        for name in [*RESULT_FILES, *extra]:
            source = job / name
            if source.is_file():
                target = dest / job.name / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
        copied.append(job.name)
    return copied, unfinished


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", type=Path, help="the multirun folder")
    parser.add_argument("dest", type=Path, help="where the copies go (one folder per job)")
    args = parser.parse_args()
    if not args.sweep.is_dir():
        parser.error(f"no sweep folder at {args.sweep}")
    copied, unfinished = collect(args.sweep, args.dest)
    print(f"copied {len(copied)} finished job(s) to {args.dest}: {', '.join(copied) or '-'}")
    if unfinished:
        print(f"not finished (skipped): {', '.join(unfinished)}")


if __name__ == "__main__":
    main()
