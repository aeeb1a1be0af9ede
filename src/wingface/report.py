"""Summarise a Hydra multirun (a sweep folder of training jobs) as a table, Markdown and plots.

A sweep folder holds one folder per job (``<num>_<overrides>``, nested deeper when an override
value holds a ``/``), each with ``.hydra/{config,hydra,overrides}.yaml`` and, once the job has
finished, ``metrics.json``, ``test_per_image.csv`` and (when the dataset has pose subsets)
``nme_per_pose.csv``; re-evaluations of its checkpoint by ``src/eval.py`` written into a folder
inside it (``hydra.run.dir=<job>/<name>``, with ``evaluation.yaml`` and ``metrics.json``) add
a column each. :func:`build_report` reads them all; :func:`write_report` also writes
``report.md`` and the plots that apply into the sweep folder:

* ``ced.png``: the test CED of every finished job, overlaid;
* ``nme_heatmap_w_eps.png``: test NME over the ``loss.w`` × ``loss.eps`` grid, when the sweep
  varies them (:func:`nme_grids`);
* ``nme_per_pose_by_job.png``: NME per pose bin, one bar per job (:func:`pose_bars`), e.g. with
  and without pose-based balancing.

Units: NMEs and failure rates in percent, CED AUCs as fractions of the threshold, fit time in
minutes. Jobs are labelled by the overrides that tell them apart (``loss=wing``).
"""

from __future__ import annotations

import csv
import functools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import OverrideParseException

from wingface.json_files import read_json_object
from wingface.metrics import NORMALISATIONS
from wingface.plots import plot_ced, plot_curves, plot_grouped_bars, plot_value_grids
from wingface.run_folder import (
    CONFIG_FILE,
    EVALUATION_RECORD,
    RECORD_FOLDER,
    recorded_overrides,
)

__all__ = [
    "FIGURES",
    "Evaluation",
    "Job",
    "NmeGrid",
    "PoseBars",
    "SeedGroup",
    "SweepReport",
    "build_report",
    "ced_curves",
    "distinguishing_labels",
    "evaluation_folders",
    "load_jobs",
    "markdown_table",
    "nme_grids",
    "pose_bars",
    "report_table",
    "seed_groups",
    "test_face_nmes",
    "worst_faces",
    "write_figures",
    "write_report",
]

FIGURES: dict[str, str] = {
    "ced": "ced.png",
    "nme_heatmap_w_eps": "nme_heatmap_w_eps.png",
    "nme_per_pose_by_job": "nme_per_pose_by_job.png",
    "val_nme_curves": "val_nme_curves.png",
}
"""Figure name → file name in the sweep folder (distinct from the per-job plots' names)."""

LAST_FIFTH_COLUMN = "val gain, last fifth (pp)"
"""Table column: :func:`last_fifth_gain` of the job's validation curve, in percentage points."""

NOT_FINISHED = "not finished"
FINISHED = "finished"

# Overrides that never change what a job trains or measures, left out of job labels (compared
# without "+"/"~"; a key also covers its sub-keys): how it shows progress and logs, how its data
# is loaded, and ``ckpt_path`` (a job continued with ``ckpt_path=last`` is the same job).
_IGNORED_KEYS = (
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "trainer.log_every_n_steps",
    "data.num_workers",
    "data.pin_memory",
    "data.eval_batch_size",
    "logger",
    "callbacks.landmark_panel",
    "ckpt_path",
    "allow_config_change",
)
_GRID_KEYS = ("loss.w", "loss.eps")
SEED_KEY = "seed"


def _value_at(config: Any, dotted: str) -> Any:
    """The value at ``dotted`` (e.g. ``loss.w``) of a nested dict, ``None`` where absent."""
    node = config
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


@dataclass
class Evaluation:
    """A test-split re-evaluation of a job's checkpoint by ``src/eval.py``, written into a
    folder inside the job's folder.

    Attributes:
        path: its folder (``evaluation.yaml``, ``metrics.json``).
        label: the overrides that changed the job's config (``test_time_flip=true``), in the
            order given; ``""`` for a plain re-test.
        metrics: its ``metrics.json`` (``test/*`` as fractions).
    """

    path: Path
    label: str
    metrics: dict[str, float]

    @property
    def nme(self) -> float | None:
        """Its primary test NME in percent, ``None`` where not reported."""
        return 100 * self.metrics["test/nme"] if "test/nme" in self.metrics else None


@dataclass
class Job:
    """One job folder of a sweep, as written by ``src/train.py``.

    Attributes:
        path: the job folder.
        number: the job's place in its sweep (:func:`sweep_position`; ``None`` for a single
            run).
        overrides: its command-line overrides, e.g. ``["loss=wing", "loss.w=5"]``.
        dirname_excluded: the keys Hydra leaves out of the job's folder name (infrastructure
            keys such as ``data.root``).
        config: the job's composed config (``.hydra/config.yaml``, interpolations unresolved).
        choices: config group → chosen option (``hydra.runtime.choices``, e.g. ``balance``).
        metrics: ``metrics.json`` (NMEs, FR, AUC as fractions), ``None`` until it finished.
        label: the overrides that tell this job apart from the others of the sweep.
        evaluations: the job's test-split re-evaluations (:func:`job_evaluations`).
    """

    path: Path
    number: int | None
    overrides: list[str]
    dirname_excluded: list[str]
    config: dict[str, Any]
    choices: dict[str, Any]
    metrics: dict[str, float] | None
    label: str = ""
    evaluations: list[Evaluation] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        """Whether the job wrote ``metrics.json``."""
        return self.metrics is not None

    def config_value(self, dotted: str) -> Any:
        """The config value at ``dotted`` (e.g. ``loss.w``), ``None`` where absent."""
        return _value_at(self.config, dotted)

    @property
    def normalisations(self) -> list[str]:
        """The job's NME normalisations, primary first (config, else ``test_per_image.csv``)."""
        norms = self.config_value("data.protocol.normalisations")
        if isinstance(norms, list) and norms and all(isinstance(n, str) for n in norms):
            return list(norms)
        header = _read_csv(self.path / "test_per_image.csv")[:1]
        return [c.removeprefix("nme_") for c in (header[0] if header else []) if c[:4] == "nme_"]

    @property
    def balance(self) -> str:
        """The chosen ``balance`` config option (e.g. ``none``, ``pdb``), else its class."""
        choice = self.choices.get("balance")
        if choice:
            return str(choice)
        target = self.config_value("balance._target_")
        return str(target).rsplit(".", 1)[-1] if target else "none"


@dataclass
class NmeGrid:
    """Test NME over the ``loss.w`` × ``loss.eps`` grid of the jobs sharing all other overrides.

    Attributes:
        group: those other distinguishing overrides (``""`` when they are the same for all).
        w: ``(C,)`` distinct ``loss.w`` values, ascending (pixels of the network input).
        eps: ``(R,)`` distinct ``loss.eps`` values, ascending (same units).
        nme: ``(R, C)`` primary test NME (%) of the job at ``(eps[r], w[c])``; NaN where no
            finished job has that pair (not run, or not finished).
    """

    group: str
    w: list[float]
    eps: list[float]
    nme: np.ndarray


@dataclass
class PoseBars:
    """Primary test NME per pose bin of each finished job that reported per-pose results.

    Attributes:
        bins: ``(P,)`` pose bins in protocol order (frontal first), e.g. ``yaw_0_30``.
        faces: ``(P,)`` test faces per bin (``None`` where jobs disagree).
        series: job label → ``(P,)`` NME (%) per bin, NaN where the job lacks the bin. The label
            names the job's ``balance`` option when the jobs differ in it.
        note: what the jobs share, for a title (e.g. ``balance=none``), or ``""``.
    """

    bins: list[str]
    faces: list[int | None]
    series: dict[str, list[float]]
    note: str = ""


@dataclass
class SeedGroup:
    """The finished jobs of a sweep that differ only in their seed, and their test NMEs.

    Attributes:
        label: the overrides that tell the group apart, without ``seed`` (``loss=wing``; ``""``
            when the sweep varies nothing else).
        seeds: ``(S,)`` the finished jobs' seeds, ascending.
        nme: ``(S,)`` their primary test NME (%), in ``seeds`` order.
        val_best: ``(S,)`` their best validation NME (%), NaN where not reported.
        evaluations: re-evaluation label (:attr:`Evaluation.label`) → ``(S,)`` primary test NME
            (%) of that re-evaluation, in ``seeds`` order, for the labels every seed has.
        paths: ``(S,)`` the jobs' folders, in ``seeds`` order.
    """

    label: str
    seeds: list[int]
    nme: list[float]
    val_best: list[float]
    evaluations: dict[str, list[float]] = field(default_factory=dict)
    paths: list[Path] = field(default_factory=list)

    @property
    def spread(self) -> float:
        """Largest minus smallest test NME over the seeds (percentage points); NaN for a
        group with one finished seed."""
        return max(self.nme) - min(self.nme) if len(self.nme) > 1 else math.nan


@dataclass
class SweepReport:
    """The summary of a sweep.

    Attributes:
        columns: table header (see :func:`report_table`).
        rows: one row per job: plain ``str`` / ``float`` / ``int`` values, ``None`` where a job
            has no value (e.g. a job that has not finished); a W&B table's ``data``.
        markdown: the report as Markdown (with links to the figures once written).
        figures: figure name → written PNG (empty before :func:`write_report`).
    """

    columns: list[str]
    rows: list[list]
    markdown: str
    figures: dict[str, Path] = field(default_factory=dict)


# --------------------------------------------------------------------------------- reading


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML ({error})") from None


def _read_csv(path: Path) -> list[list[str]]:
    """Rows of a CSV file (header first), ``[]`` if the file is absent."""
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return [row for row in csv.reader(handle) if row]


def _key(override: str) -> str:
    """The key of ``key=value``, without Hydra's ``+``/``++``/``~`` prefixes."""
    return override.split("=", 1)[0].lstrip("+~")


@functools.cache
def _override_parser() -> OverridesParser:
    """Hydra's override parser, built once (building it sets up its grammar)."""
    return OverridesParser.create()


def _canonical(override: str) -> str:
    """``override`` with a boolean or number value written one way (``model.antialias=True``
    and ``=true`` are the same override, as are ``lr=2e-3`` and ``lr=0.002``: Hydra's
    multirun records a swept value as it parsed it, a single run as it was typed); other
    overrides unchanged."""
    try:
        value = _override_parser().parse_override(override).value()
    except OverrideParseException:
        return override
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int | float):
        text = repr(value)
    else:
        return override
    return f"{override.split('=', 1)[0]}={text}"


def _ignored(key: str) -> bool:
    """Whether an override of ``key`` is left out of job labels (:data:`_IGNORED_KEYS`)."""
    return any(key == k or key.startswith(f"{k}.") for k in _IGNORED_KEYS)


_NUMBERED_FOLDER = re.compile(r"(\d+)_")


def sweep_position(folder_name: str, job_number: object) -> int | None:
    """A job's place in its sweep: the number its folder name starts with (the sweep folder
    pattern ``<num>_<overrides>``, which a job launched alone into the sweep folder keeps by
    naming its folder so, while its Hydra job number is 0), else Hydra's job number; ``None``
    for a single run."""
    numbered = _NUMBERED_FOLDER.match(folder_name)
    if numbered:
        return int(numbered.group(1))
    return job_number if isinstance(job_number, int) else None


def _load_job(path: Path) -> Job:
    hydra_cfg = (_read_yaml(path / ".hydra" / "hydra.yaml") or {}).get("hydra", {})
    job_cfg = hydra_cfg.get("job") or {}
    excluded = ((job_cfg.get("config") or {}).get("override_dirname") or {}).get("exclude_keys")
    overrides = recorded_overrides(path)
    config_path = path / RECORD_FOLDER / CONFIG_FILE
    config = (_read_yaml(config_path) or {}) if config_path.is_file() else {}
    return Job(
        path=path,
        number=sweep_position(path.name, job_cfg.get("num")),
        overrides=[
            _canonical(o)
            for o in overrides
            if not _key(o).startswith("hydra.") and not _ignored(_key(o))
        ],
        dirname_excluded=[str(k) for k in excluded or []],
        config=config,
        choices=dict((hydra_cfg.get("runtime") or {}).get("choices") or {}),
        metrics=read_json_object(path / "metrics.json", "a JSON object of metrics"),
        evaluations=job_evaluations(path, config),
    )


EVAL_JOB_NAME = "eval"
"""Hydra's job name (the script's) of ``src/eval.py`` runs."""


def _is_evaluation(folder: Path) -> bool:
    """Whether the Hydra output ``folder`` is a ``src/eval.py`` run."""
    hydra_cfg = (_read_yaml(folder / RECORD_FOLDER / "hydra.yaml") or {}).get("hydra") or {}
    return (hydra_cfg.get("job") or {}).get("name") == EVAL_JOB_NAME


def evaluation_folders(job_folder: Path) -> list[Path]:
    """The folders below ``job_folder`` (not the job folder itself) that hold an
    ``evaluation.yaml``, in path order."""
    return [p.parent for p in sorted(job_folder.glob(f"*/**/{EVALUATION_RECORD}"))]


def job_evaluations(path: Path, config: dict[str, Any]) -> list[Evaluation]:
    """The finished test-split evaluations in folders inside the job folder ``path`` (each an
    ``evaluation.yaml`` with its ``metrics.json``), in folder-name order. Each is labelled by
    the overrides that changed the job's recorded ``config``: an override that sets a key to
    the value the job already had (``data.root`` pointing where it trained) and the keys that
    never change what is measured (batch sizes, loaders, loggers) are left out."""
    evaluations = []
    for folder in evaluation_folders(path):
        record = _read_yaml(folder / EVALUATION_RECORD) or {}
        if record.get("split") != "test" or not (folder / "metrics.json").is_file():
            continue
        evaluated = record.get("config") or {}
        overrides = [str(o) for o in record.get("overrides") or []]
        changed = [
            _canonical(o)
            for o, key in zip(overrides, map(_key, overrides), strict=True)
            if not _ignored(key) and _value_at(evaluated, key) != _value_at(config, key)
        ]
        metrics = read_json_object(folder / "metrics.json", "a JSON object of metrics")
        evaluations.append(Evaluation(folder, " ".join(changed), metrics or {}))
    return evaluations


def distinguishing_labels(jobs: Sequence[Job]) -> list[str]:
    """Each job's overrides without those every job shares, space-separated (``loss=wing``),
    in one key order for all jobs (that of the keys' first appearance), whatever order each
    job's command line gave them in.

    A lone job is labelled by its overrides without the keys Hydra leaves out of folder names
    (e.g. ``data.root``); a job with no label of its own by its folder name.
    """
    if len(jobs) == 1:
        job = jobs[0]
        own = [o for o in job.overrides if _key(o) not in job.dirname_excluded]
        return [" ".join(own or job.overrides) or job.path.name]
    shared = set.intersection(*(set(job.overrides) for job in jobs))
    key_order = {key: rank for rank, key in enumerate(
        dict.fromkeys(_key(o) for job in jobs for o in job.overrides)
    )}  # fmt: skip
    labels = []
    for job in jobs:
        own = sorted(
            (o for o in job.overrides if o not in shared), key=lambda o: key_order[_key(o)]
        )
        labels.append(" ".join(own) or job.path.name)
    return labels


def load_jobs(sweep_dir: Path) -> list[Job]:
    """Every job folder (one holding ``.hydra/hydra.yaml``) under ``sweep_dir``, finished or
    not, in job-number order, each labelled (:func:`distinguishing_labels`).

    Searched recursively: an override value holding a ``/`` nests a job's folder deeper.
    Folders of ``src/eval.py`` evaluations are not jobs (those inside a job folder are its
    :attr:`Job.evaluations`). ``sweep_dir`` may also be a single run's folder.

    Raises:
        FileNotFoundError: ``sweep_dir`` is missing or holds no job folder.
        ValueError: a job's YAML or ``metrics.json`` cannot be read (the file is named).
    """
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"no such folder: {sweep_dir}")
    found = {p.parent.parent for p in sweep_dir.rglob("hydra.yaml") if p.parent.name == ".hydra"}
    paths = sorted(  # evaluations (inside a job folder or not) are not jobs
        p for p in found if not _is_evaluation(p) and not any(q in p.parents for q in found)
    )
    if not paths:
        raise FileNotFoundError(f"no Hydra job folders (with .hydra/hydra.yaml) in {sweep_dir}")
    jobs = [_load_job(path) for path in paths]
    jobs.sort(key=lambda j: (j.number is None, j.number or 0, str(j.path)))
    for job, label in zip(jobs, distinguishing_labels(jobs), strict=True):
        job.label = label
    return jobs


# --------------------------------------------------------------------------------- table


def _threshold_key(name: str) -> tuple[float, str]:
    """Sort ``fr_0.08``-style names by their threshold."""
    try:
        return float(name.rsplit("_", 1)[1]), name
    except (IndexError, ValueError):
        return math.inf, name


def _pose_subsets(job: Job) -> list[str]:
    """The job's pose subsets: the protocol's, else the rows of its ``nme_per_pose.csv``."""
    subsets = job.config_value("data.protocol.pose_subsets")
    if isinstance(subsets, list) and subsets:
        return [str(s) for s in subsets]
    return [row[0] for row in _read_csv(job.path / "nme_per_pose.csv")[1:]]


def _job_values(job: Job) -> dict[str, float]:
    """Table column → value for one finished job (percent, fraction or minutes)."""
    metrics = job.metrics or {}
    norms = job.normalisations
    primary = norms[0] if norms else ""
    pose = set(_pose_subsets(job))
    values: dict[str, float] = {}
    if "test/nme" in metrics:
        values[f"nme_{primary} %" if primary else "nme %"] = 100 * metrics["test/nme"]
    for norm in [*norms[1:], *(n for n in NORMALISATIONS if n not in norms)]:
        if f"test/nme_{norm}" in metrics:
            values[f"nme_{norm} %"] = 100 * metrics[f"test/nme_{norm}"]
    for kind in ("fr", "auc"):
        names = [k.removeprefix("test/") for k in metrics if k.startswith(f"test/{kind}_")]
        for name in sorted(names, key=_threshold_key):
            scale = 100 if kind == "fr" else 1
            values[f"{name} %" if kind == "fr" else name] = scale * metrics[f"test/{name}"]
    subsets = [
        k.split("/")[1]
        for k in metrics
        if k.startswith("test/") and k.count("/") == 2 and k.endswith("/nme")
    ]
    for subset in subsets:
        if subset not in pose:
            values[f"{subset}/nme %"] = 100 * metrics[f"test/{subset}/nme"]
    for evaluation in job.evaluations:
        if evaluation.nme is not None:
            values[_evaluation_column(primary, evaluation.label)] = evaluation.nme
    if "test/nme_mean_shape" in metrics:
        values["nme_mean_shape %"] = 100 * metrics["test/nme_mean_shape"]
    if "val/nme_best" in metrics:
        values["val/nme_best %"] = 100 * metrics["val/nme_best"]
    _, nmes = validation_curve(job)
    if len(nmes) >= 5:
        values[LAST_FIFTH_COLUMN] = 100 * last_fifth_gain(nmes)
    if "time/fit_seconds" in metrics:
        values["fit time (min)"] = metrics["time/fit_seconds"] / 60
    return values


EVALUATION_COLUMN = " with "
"""What names a re-evaluation's column: ``nme_inter_ocular % with test_time_flip=true``."""


def _evaluation_column(primary: str, label: str) -> str:
    """The column of a re-evaluation's primary test NME."""
    base = f"nme_{primary} %" if primary else "nme %"
    return f"{base}{EVALUATION_COLUMN}{label or 'no change'}"


def _column_rank(column: str) -> int:
    """Column order: NMEs, re-evaluations' NMEs, FRs, AUCs, subset NMEs, mean-shape NME,
    val/nme_best, the last fifth's validation gain, fit time."""
    if EVALUATION_COLUMN in column:
        return 1
    if column == "nme_mean_shape %":
        return 5
    if column == LAST_FIFTH_COLUMN:
        return 6
    for prefix, rank in (("fr_", 2), ("auc_", 3), ("val/", 6), ("fit ", 7)):
        if column.startswith(prefix):
            return rank
    return 4 if "/" in column else 0


def report_table(jobs: Sequence[Job]) -> tuple[list[str], list[list]]:
    """The sweep table: one row per job, finished or not.

    Columns, each present when some job reported it (discovered from ``metrics.json``):
    ``job`` (its distinguishing overrides), ``status`` (``finished`` / ``not finished``),
    ``nme_<norm> %`` for every normalisation (primary first; ``test/nme`` is named after the
    job's primary normalisation), ``nme_<primary> % with <overrides>`` for each of the job's
    re-evaluations (:attr:`Job.evaluations`), ``fr_<t> %`` and ``auc_<t>`` for each threshold
    (of the primary normalisation), ``<subset>/nme %`` for the test subsets other than pose bins,
    ``nme_mean_shape %`` (the mean-shape baseline), ``val/nme_best %``, the validation NME's gain
    over the last fifth of the epochs (:data:`LAST_FIFTH_COLUMN`, with CSV logs) and
    ``fit time (min)``.

    Returns:
        ``(columns, rows)``; a job without a value in a column has ``None`` there.
    """
    values = [_job_values(job) if job.finished else {} for job in jobs]
    metric_columns: list[str] = []
    for job_values in values:
        metric_columns += [c for c in job_values if c not in metric_columns]
    metric_columns.sort(key=_column_rank)  # stable: each kind keeps its order of discovery
    columns = ["job", "status", *metric_columns]
    rows = [
        [job.label, FINISHED if job.finished else NOT_FINISHED]
        + [job_values.get(c) for c in metric_columns]
        for job, job_values in zip(jobs, values, strict=True)
    ]
    return columns, rows


def _cell(column: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, float):
        digits = 4 if column.startswith("auc_") else 1 if column.startswith("fit ") else 2
        return f"{value:.{digits}f}"
    return str(value).replace("|", "\\|")


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A Markdown table: percentages with 2 decimals, AUCs 4, minutes 1, ``None`` blank."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [_cell(c, v) for c, v in zip(columns, row, strict=True)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------- plots


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def nme_grids(jobs: Sequence[Job]) -> list[NmeGrid]:
    """Test NME (%) over the ``loss.w`` × ``loss.eps`` grid, one grid per group of jobs.

    Jobs whose config (``.hydra/config.yaml``) has numeric ``loss.w`` and ``loss.eps`` are
    grouped by their distinguishing overrides other than those two keys (e.g. ``balance=pdb``).
    A group is returned when it holds at least two distinct ``(w, eps)`` pairs. Cells of pairs
    that no finished job has are NaN; two finished jobs on one cell give their mean.
    """
    groups: dict[str, dict[tuple[float, float], list[float]]] = {}
    for job in jobs:
        w, eps = (_number(job.config_value(k)) for k in _GRID_KEYS)
        if w is None or eps is None:
            continue
        group = " ".join(o for o in job.label.split() if _key(o) not in _GRID_KEYS)
        cell = groups.setdefault(group, {}).setdefault((w, eps), [])
        if job.metrics is not None and "test/nme" in job.metrics:
            cell.append(100 * job.metrics["test/nme"])
    grids = []
    for group, cells in groups.items():
        if len(cells) < 2:
            continue
        ws = sorted({w for w, _ in cells})
        epss = sorted({e for _, e in cells})
        nme = np.full((len(epss), len(ws)), np.nan)
        for (w, eps), values in cells.items():
            if values:
                nme[epss.index(eps), ws.index(w)] = float(np.mean(values))
        grids.append(NmeGrid(group=group, w=ws, eps=epss, nme=nme))
    return grids


def seed_groups(jobs: Sequence[Job]) -> list[SeedGroup]:
    """The finished jobs grouped by their distinguishing overrides other than ``seed``.

    Returned (in the order of each group's first job) when the sweep varies ``seed`` and some
    group has at least two finished seeds, else ``[]``: then the spread between seeds can be
    set against the differences between groups (``loss=wing`` against ``loss=l1``).
    """
    if not any(_key(o) == SEED_KEY for job in jobs for o in job.label.split()):
        return []
    groups: dict[str, list[tuple[int, Job]]] = {}
    for job in jobs:
        seed = job.config_value(SEED_KEY)
        if not job.finished or "test/nme" not in (job.metrics or {}) or seed is None:
            continue
        label = " ".join(o for o in job.label.split() if _key(o) != SEED_KEY)
        groups.setdefault(label, []).append((int(seed), job))
    if not any(len(runs) >= 2 for runs in groups.values()):
        return []
    result = []
    for label, runs in groups.items():
        runs.sort(key=lambda run: run[0])
        per_job = [
            {e.label: e.nme for e in job.evaluations if e.nme is not None} for _, job in runs
        ]
        shared = [name for name in per_job[0] if all(name in nmes for nmes in per_job)]
        result.append(
            SeedGroup(
                label=label,
                seeds=[seed for seed, _ in runs],
                nme=[100 * (job.metrics or {})["test/nme"] for _, job in runs],
                val_best=[
                    100 * (job.metrics or {}).get("val/nme_best", math.nan) for _, job in runs
                ],
                evaluations={name: [nmes[name] for nmes in per_job] for name in shared},
                paths=[job.path for _, job in runs],
            )
        )
    return result


def _seed_markdown(groups: Sequence[SeedGroup], primary: str) -> str:
    columns = [
        "jobs",
        "seeds",
        f"nme_{primary} % mean",
        "min",
        "max",
        "spread (max - min)",
        "val/nme_best % mean",
    ]
    evaluations = list(dict.fromkeys(name for group in groups for name in group.evaluations))
    for name in evaluations:
        columns += [f"with {name or 'no change'}: mean", "spread"]
    rows = []
    for group in groups:
        row = [
            group.label or "all",
            ", ".join(str(seed) for seed in group.seeds),
            float(np.mean(group.nme)),
            min(group.nme),
            max(group.nme),
            group.spread,
            float(np.mean(group.val_best)),
        ]
        for name in evaluations:
            nmes = group.evaluations.get(name)
            spread = max(nmes) - min(nmes) if nmes and len(nmes) > 1 else None
            row += [float(np.mean(nmes)) if nmes else None, spread]
        rows.append(row)
    return markdown_table(columns, rows)


def pose_bars(jobs: Sequence[Job]) -> PoseBars | None:
    """The primary test NME (%) per pose bin of each finished job, from ``nme_per_pose.csv``.

    Returns ``None`` when no job has per-pose results. Bins keep the order of the CSV files
    (the protocol's, frontal first). A series is named by the job's label, with
    ``balance=<option>`` added when the jobs differ in balancing and the label does not say.
    """
    tables = []
    for job in jobs:
        rows = _read_csv(job.path / "nme_per_pose.csv") if job.finished else []
        if len(rows) > 1:
            header = rows[0]
            # the third column is the primary NME (see EvaluationProtocol.pose_rows)
            tables.append((job, {r[0]: (int(r[1]), float(r[2])) for r in rows[1:]}, header))
    if not tables:
        return None
    bins: list[str] = []
    for _, table, _ in tables:
        bins += [b for b in table if b not in bins]
    faces: list[int | None] = []
    for name in bins:
        counts = {table[name][0] for _, table, _ in tables if name in table}
        faces.append(counts.pop() if len(counts) == 1 else None)
    balances = {job.balance for job, _, _ in tables}
    series: dict[str, list[float]] = {}
    for job, table, _ in tables:
        label = job.label
        if len(balances) > 1 and "balance=" not in label:
            label = f"{label} balance={job.balance}"
        series[label] = [table[b][1] if b in table else math.nan for b in bins]
    note = f"balance={balances.pop()}" if len(balances) == 1 else ""
    return PoseBars(bins=bins, faces=faces, series=series, note=note)


def validation_curve(job: Job) -> tuple[np.ndarray, np.ndarray]:
    """``(epochs, val/nme)`` of a job, from its CSV logs (``logger=csv``, alone or beside W&B:
    ``<job>/csv/version_*/metrics.csv``, one version per launch; a resumed launch's epochs
    replace the same epochs of earlier ones). Empty arrays without CSV logs."""
    by_epoch: dict[int, float] = {}
    versions = sorted(
        (job.path / "csv").glob("version_*/metrics.csv"),
        key=lambda p: int(p.parent.name.removeprefix("version_") or 0),
    )
    for path in versions:
        rows = _read_csv(path)
        if not rows or "val/nme" not in rows[0] or "epoch" not in rows[0]:
            continue
        epoch_col, nme_col = rows[0].index("epoch"), rows[0].index("val/nme")
        for row in rows[1:]:
            if len(row) > nme_col and row[nme_col] and row[epoch_col]:
                by_epoch[int(float(row[epoch_col]))] = float(row[nme_col])
    epochs = np.array(sorted(by_epoch), dtype=np.int64)
    return epochs, np.array([by_epoch[e] for e in epochs], dtype=np.float64)


def last_fifth_gain(nmes: np.ndarray) -> float:
    """How much the best validation NME improved over the last fifth of the epochs: the best
    before it minus the best within it (fractions; <= 0 means no improvement, NaN when fewer
    than five epochs). A converged run gains next to nothing there."""
    if len(nmes) < 5:
        return math.nan
    split = len(nmes) - len(nmes) // 5
    return float(np.min(nmes[:split]) - np.min(nmes[split:]))


def test_face_nmes(job_folder: Path) -> tuple[str, list[tuple[int, str, float]]]:
    """A job's per-face primary test NME, from its ``test_per_image.csv``.

    Returns:
        ``(column, faces)``: the NME column's name (``nme_inter_ocular``) and, per face,
        ``(test split index, image name, NME as a fraction)``; ``("", [])`` without the file.
    """
    rows = _read_csv(job_folder / "test_per_image.csv")
    if len(rows) < 2:
        return "", []
    column = next(i for i, c in enumerate(rows[0]) if c.startswith("nme_"))
    return rows[0][column], [(int(r[0]), r[1], float(r[column])) for r in rows[1:]]


def ced_curves(jobs: Sequence[Job]) -> dict[str, np.ndarray]:
    """Job label → ``(N,)`` per-face test NMEs (fractions, primary normalisation) of each
    finished job that wrote ``test_per_image.csv``."""
    curves = {}
    for job in jobs:
        faces = test_face_nmes(job.path)[1] if job.finished else []
        if faces:
            curves[job.label] = np.array([nme for _, _, nme in faces])
    return curves


def worst_faces(jobs: Sequence[Job], count: int = 10) -> tuple[list[str], list[list]]:
    """The ``count`` test faces with the largest primary NME of each finished job.

    Returns:
        ``(columns, rows)``: ``job``, ``rank`` (1 = worst), ``index`` (test split index),
        ``name`` (the face's image), ``nme_<norm> %``, from ``test_per_image.csv``.
    """
    rows: list[list] = []
    norm = ""
    for job in jobs:
        column, faces = test_face_nmes(job.path) if job.finished else ("", [])
        norm = norm or column
        worst = sorted(faces, key=lambda face: -face[2])[:count]
        rows += [
            [job.label, rank, index, name, 100 * nme]
            for rank, (index, name, nme) in enumerate(worst, start=1)
        ]
    return ["job", "rank", "index", "name", f"{norm or 'nme'} %"], rows


def _primary_name(jobs: Sequence[Job]) -> str:
    names = {job.normalisations[0] for job in jobs if job.finished and job.normalisations}
    return names.pop() if len(names) == 1 else "primary normalisation"


def _thresholds(jobs: Sequence[Job]) -> list[float]:
    found = {
        _threshold_key(k)[0]
        for job in jobs
        for k in (job.metrics or {})
        if k.startswith("test/auc_")
    }
    return sorted(t for t in found if math.isfinite(t))


def write_figures(
    jobs: Sequence[Job], folder: Path, title: str = "", threshold: float | None = None
) -> dict[str, Path]:
    """Write the plots that apply to ``jobs`` into ``folder`` (names in :data:`FIGURES`).

    Args:
        jobs: the sweep's jobs (:func:`load_jobs`).
        folder: where to write.
        title: prefix of the figure titles (e.g. the sweep name).
        threshold: CED limit (fraction); default the largest threshold the jobs report, else
            0.10.

    Returns:
        Figure name → written PNG, for the figures that apply.
    """
    folder = Path(folder)
    figures: dict[str, Path] = {}
    prefix = f"{title}: " if title else ""
    norm = _primary_name(jobs)
    curves = ced_curves(jobs)
    if curves:
        limit = threshold or max(_thresholds(jobs), default=0.10)
        figures["ced"] = plot_ced(
            curves, limit, folder / FIGURES["ced"], f"{prefix}test CED ({norm})"
        )
    grids = nme_grids(jobs)
    if grids:
        figures["nme_heatmap_w_eps"] = plot_value_grids(
            [(g.group, g.w, g.eps, g.nme) for g in grids],
            folder / FIGURES["nme_heatmap_w_eps"],
            f"{prefix}test NME (%, {norm}) over loss.w × loss.eps",
            x_label="loss.w (px)",
            y_label="loss.eps (px)",
            value_label="test NME (%)",
        )
    bars = pose_bars(jobs)
    if bars is not None:
        groups = [
            f"{b}\n({n} faces)" if n is not None else b
            for b, n in zip(bars.bins, bars.faces, strict=True)
        ]
        note = f", {bars.note}" if bars.note else ""
        figures["nme_per_pose_by_job"] = plot_grouped_bars(
            groups,
            bars.series,
            folder / FIGURES["nme_per_pose_by_job"],
            f"test NME (%, {norm})",
            f"{prefix}NME per pose bin{note}",
        )
    validation = {job.label or job.path.name: validation_curve(job) for job in jobs}
    validation = {label: curve for label, curve in validation.items() if len(curve[0])}
    if validation:
        figures["val_nme_curves"] = plot_curves(
            {label: (epochs, 100.0 * nmes) for label, (epochs, nmes) in validation.items()},
            folder / FIGURES["val_nme_curves"],
            x_label="epoch",
            y_label=f"validation NME (%, {norm})",
            title=f"{prefix}validation NME per epoch",
        )
    return figures


# --------------------------------------------------------------------------------- report


def _grid_markdown(grid: NmeGrid) -> str:
    columns = ["loss.eps \\ loss.w", *(f"{w:g}" for w in grid.w)]
    rows = [
        [f"{eps:g}", *(None if math.isnan(v) else float(v) for v in grid.nme[r])]
        for r, eps in enumerate(grid.eps)
    ]
    return markdown_table(columns, rows)


def _markdown(sweep_dir: Path, jobs: Sequence[Job], columns: list[str], rows: list[list]) -> str:
    finished = sum(job.finished for job in jobs)
    parts = [
        f"# {sweep_dir.name}",
        "",
        f"{len(jobs)} job{'s' if len(jobs) != 1 else ''}, {finished} finished. "
        "NME and failure rate (FR) in %; FR and the CED AUC (a fraction) of the primary "
        f"normalisation ({_primary_name(jobs)}); val/nme_best is the best validation NME; "
        "fit time in minutes.",
        "",
        markdown_table(columns, rows),
    ]
    for grid in nme_grids(jobs):
        heading = (
            f"## Test NME (%) over loss.w × loss.eps{f' ({grid.group})' if grid.group else ''}"
        )
        parts += ["", heading, "", _grid_markdown(grid)]
    groups = seed_groups(jobs)
    if groups:
        parts += [
            "",
            "## Across seeds",
            "",
            "Test NME (%) of the finished jobs that differ only in their seed: mean, smallest, "
            "largest and their spread. A difference between two groups' means that is smaller "
            "than their spreads is within the variation between seeds. A re-evaluation "
            '("with ...") is summarised for the groups whose every seed has it.',
            "",
            _seed_markdown(groups, _primary_name(jobs)),
        ]
    return "\n".join(parts) + "\n"


def build_report(sweep_dir: Path) -> SweepReport:
    """Read a sweep folder into its table and Markdown (nothing written).

    Raises:
        FileNotFoundError: ``sweep_dir`` is missing or holds no job folder.
        ValueError: a job's files cannot be read (the file is named).
    """
    sweep_dir = Path(sweep_dir)
    jobs = load_jobs(sweep_dir)
    columns, rows = report_table(jobs)
    return SweepReport(columns, rows, _markdown(sweep_dir, jobs, columns, rows))


def write_report(sweep_dir: Path, threshold: float | None = None) -> SweepReport:
    """:func:`build_report`, then write the plots that apply and ``report.md`` (the table and
    links to the plots) into ``sweep_dir``.

    Args:
        sweep_dir: the multirun folder.
        threshold: CED plot limit (fraction); default the largest threshold the jobs report.
    """
    sweep_dir = Path(sweep_dir)
    jobs = load_jobs(sweep_dir)
    columns, rows = report_table(jobs)
    figures = write_figures(jobs, sweep_dir, sweep_dir.name, threshold)
    captions = {
        "ced": "Test CED curves",
        "nme_heatmap_w_eps": "Test NME over loss.w × loss.eps",
        "nme_per_pose_by_job": "Test NME per pose bin",
        "val_nme_curves": "Validation NME per epoch",
    }
    markdown = _markdown(sweep_dir, jobs, columns, rows)
    if figures:
        markdown += (
            "\n## Plots\n\n"
            + "\n\n".join(f"![{captions[name]}]({path.name})" for name, path in figures.items())
            + "\n"
        )
    (sweep_dir / "report.md").write_text(markdown)
    return SweepReport(columns, rows, markdown, figures)
