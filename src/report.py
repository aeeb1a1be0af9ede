"""Summarise a multirun without W&B: ``python src/report.py <multirun folder>``.

Writes ``<folder>/report.md`` (one row per job, finished or not: its distinguishing overrides,
the test NME in every normalisation, FR and AUC per threshold, val/nme_best and the fit time)
and the plots that apply (see :mod:`wingface.report`): ``ced.png``, ``nme_heatmap_w_eps.png``
(sweeps over ``loss.w`` and ``loss.eps``), ``nme_per_pose_by_job.png`` (per-pose results);
then prints the report.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from wingface.report import write_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="the multirun folder")
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="CED plot limit (fraction); default the largest threshold the jobs report",
    )
    args = parser.parse_args()
    try:
        report = write_report(args.sweep_dir, threshold=args.threshold)
    except (FileNotFoundError, ValueError) as error:
        parser.error(str(error))
    print(report.markdown, end="")
    for path in report.figures.values():
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
