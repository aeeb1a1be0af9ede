"""Whole training runs of two code trees, interleaved: wall time, and the data-wait share.

Usage:
    git worktree add /tmp/wingface-base <commit>        # the code to compare against
    python benchmarks/train_speed.py --base /tmp/wingface-base --repeats 2 \\
        [--variant NAME=OVERRIDES ...] [-- OVERRIDES FOR EVERY RUN]

Runs ``src/train.py`` of the base tree and of this tree (and of this tree with each
``--variant``'s extra overrides) one after the other, ``--repeats`` rounds, alternating the
order each round, with the same overrides, the same synthetic-face cache and Lightning's simple
profiler. Reports per run: the wall time of the whole command (start-up, fit, test), the time
in training batches and the time blocked in the training data loader's ``next()``; the
*data-wait share* is ``loader next / (loader next + training batch)`` (the share of the
training step time spent waiting for data). Prints the median wall time of each variant and
its ratio to the base (> 1: faster than the base). On a shared machine the interleaving and
the medians are what make the ratio meaningful: quote ratios, not absolute times.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_ROW = re.compile(
    r"^\|\s+(?P<action>\S.*?)\s+\|\s+(?P<mean>\S+)\s+\|\s+(?P<calls>\d+)\s+\|\s+(?P<total>\S+)"
)


@dataclass
class Run:
    """One timed run: wall seconds, seconds in training batches and in the loader's next()."""

    wall: float
    batches: float
    data_wait: float

    @property
    def wait_share(self) -> float:
        """Share of the training step time spent waiting for the next batch."""
        return self.data_wait / max(self.data_wait + self.batches, 1e-12)


def profiler_totals(output: str) -> dict[str, float]:
    """Total seconds per action from the simple profiler's table in ``output``."""
    totals = {}
    for line in output.splitlines():
        match = _ROW.match(line.strip())
        if match:
            try:
                totals[match["action"].strip()] = float(match["total"])
            except ValueError:
                continue
    return totals


def run_once(tree: Path, overrides: list[str], cache_dir: str, out_dir: Path) -> Run:
    """Run ``<tree>/src/train.py`` with ``overrides`` and the simple profiler."""
    env = dict(os.environ)
    env.update(
        {
            "PYTHONPATH": str(tree / "src"),
            "WINGFACE_CACHE_DIR": cache_dir,
            "NO_ALBUMENTATIONS_UPDATE": "1",
            "WANDB_MODE": env.get("WANDB_MODE", "offline"),
        }
    )
    command = [
        sys.executable,
        str(tree / "src" / "train.py"),
        *overrides,
        "+trainer.profiler=simple",
        "trainer.enable_progress_bar=false",
        f"hydra.run.dir={out_dir}",
    ]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-4000:] + done.stderr[-4000:])
        raise SystemExit(f"run failed in {tree}: {' '.join(command)}")
    totals = profiler_totals(done.stdout + done.stderr)
    return Run(
        wall=wall,
        batches=totals.get("run_training_batch", float("nan")),
        data_wait=totals.get("[_TrainingEpochLoop].train_dataloader_next", float("nan")),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, required=True, help="the code tree to compare with")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="NAME=OVERRIDES (space-separated) for an extra run of this tree",
    )
    parser.add_argument("overrides", nargs="*", help="overrides for every run")
    args = parser.parse_args()
    cache_dir = os.environ.get("WINGFACE_CACHE_DIR", str(ROOT / ".cache"))
    variants: list[tuple[str, Path, list[str]]] = [
        ("base", args.base.resolve(), []),
        ("this", ROOT, []),
    ]
    for spec in args.variant:
        name, _, extra = spec.partition("=")
        variants.append((name, ROOT, extra.split()))
    runs: dict[str, list[Run]] = {name: [] for name, _, _ in variants}
    print(f"overrides for every run: {' '.join(args.overrides) or '(none)'}", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        for round_index in range(args.repeats):
            order = variants if round_index % 2 == 0 else variants[::-1]
            for name, tree, extra in order:
                out_dir = Path(scratch) / f"{name}_{round_index}"
                run = run_once(tree, [*args.overrides, *extra], cache_dir, out_dir)
                runs[name].append(run)
                print(
                    f"round {round_index} {name:>10}: wall {run.wall:7.1f} s, training batches "
                    f"{run.batches:7.1f} s, waiting for data {run.data_wait:6.2f} s "
                    f"({100 * run.wait_share:.1f}% of step time)",
                    flush=True,
                )
    base_wall = statistics.median(r.wall for r in runs["base"])
    print("\n| variant | extra overrides | median wall s | speed vs base | data-wait share |")
    print("|---|---|---|---|---|")
    for name, _, extra in variants:
        wall = statistics.median(r.wall for r in runs[name])
        share = statistics.median(r.wait_share for r in runs[name])
        print(
            f"| {name} | {' '.join(extra) or '-'} | {wall:.1f} | {base_wall / wall:.3f}x "
            f"| {100 * share:.1f}% |"
        )


if __name__ == "__main__":
    main()
