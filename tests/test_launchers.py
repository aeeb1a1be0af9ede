"""Launchers and sweepers: SLURM settings run by submitit's local executor, parallel local jobs,
the Optuna search of the Wing loss parameters, and Lightning DDP inside a multirun."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from omegaconf.errors import ValidationError

from entry_points import run_script
from wingface.config import CONFIG_DIR, compose_config
from wingface.launch import ddp_rank_command, hydra_quote, slurm_batch_script

# Each job: one epoch on the small synthetic splits, no experiment logger, no test phase.
TINY = ["logger=none", "trainer.max_epochs=1", "trainer.enable_progress_bar=false", "test=false"]


def run_tiny_sweep(
    overrides: list[str], small_data: list[str], env: dict[str, str], location: str
) -> subprocess.CompletedProcess:
    """``python src/train.py -m <overrides>`` with tiny jobs (:data:`TINY`, ``small_data``);
    ``location`` places the sweep, e.g. ``hydra.sweep.dir=<folder>``."""
    return run_script("train.py", ["-m", *overrides, *TINY, *small_data, location], env)


def job_folders(sweep_dir: Path) -> list[Path]:
    """The job folders (``<num>_<overrides>``) of a sweep folder, by job number."""
    jobs = [p for p in sweep_dir.iterdir() if p.is_dir() and p.name.split("_", 1)[0].isdigit()]
    return sorted(jobs, key=lambda p: int(p.name.split("_", 1)[0]))


def loss_of(job: Path) -> str:
    """The ``loss=...`` override in a job folder's name."""
    (loss,) = [o for o in job.name.split("_", 1)[1].split(",") if o.startswith("loss=")]
    return loss


def metrics_of(job: Path) -> dict[str, float]:
    """The ``metrics.json`` of a job folder."""
    return json.loads((job / "metrics.json").read_text())


def log_times(log_file: Path) -> tuple[datetime, datetime]:
    """Time of the first and the last line of a Hydra job log."""
    stamps = re.findall(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]", log_file.read_text(), re.M)
    parsed = [datetime.strptime(s, "%Y-%m-%d %H:%M:%S,%f") for s in stamps]
    return parsed[0], parsed[-1]


def compose_launcher(*overrides: str) -> DictConfig:
    """``conf/train.yaml`` composed with ``overrides``, Hydra config included."""
    return compose_config(overrides, with_hydra=True)


def launcher_params(cfg: DictConfig) -> dict:
    """The settings the Hydra submitit launcher receives: ``hydra.launcher`` resolved."""
    params = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert isinstance(params, dict)
    params.pop("_target_")
    return params


# --- building blocks -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "/runs/0_loss=wing,loss.w=7.5",
        "it's here",
        "back\\slash\\",
        "a\\'b",
        "$HOME/${not_interpolated}",
        "a\\${b}",
        '[1,2] {x: y} "q"',
    ],
)
def test_hydra_quote_parses_back_to_the_same_string(tmp_path: Path, value: str) -> None:
    (tmp_path / "c.yaml").write_text("x: placeholder\n")
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(tmp_path)):
        cfg = compose("c", overrides=[f"x={hydra_quote(value)}"])
    GlobalHydra.instance().clear()
    assert cfg.x == value


def test_ddp_rank_command_reruns_the_job_alone(
    compose_train: Callable[..., DictConfig], tmp_path: Path
) -> None:
    cfg = compose_train(
        "loss=wing",
        "loss.w=7.5",
        "logger=none",
        "hydra.mode=MULTIRUN",
        "hydra.sweep.dir=/sweeps/x",
        "hydra/launcher=parallel",
        "hydra.job.chdir=false",
    )
    output_dir = tmp_path / "sweep" / "0_loss.w=7.5,loss=wing"
    with read_write(cfg.hydra), open_dict(cfg.hydra):
        cfg.hydra.runtime.output_dir = str(output_dir)
    HydraConfig.instance().set_config(cfg)

    command, cwd = ddp_rank_command("src/train.py", local_rank=1)

    assert command[1] == str(Path("src/train.py").resolve())
    assert command[2:6] == ["--config-path", str(CONFIG_DIR), "--config-name", "train"]
    args = command[6:]
    assert "-m" not in args and "--multirun" not in args
    # the job's overrides and its non-sweep Hydra overrides; nothing about the sweep
    assert args[:3] == ["loss=wing", "loss.w=7.5", "logger=none"]
    assert "hydra.job.chdir=false" in args
    assert not [a for a in args if a.startswith(("hydra.mode", "hydra.sweep", "hydra/launcher"))]
    job_name = f"hydra.job.name={cfg.hydra.job.name}_ddp_process_1"
    assert args[-2:] == [job_name, "hydra.output_subdir=null"]
    assert cwd == str(cfg.hydra.runtime.cwd)
    # composed as a single run, the command gives the job's config in the job's folder
    rank_cfg = compose_launcher(*args)
    assert rank_cfg.hydra.run.dir == str(output_dir)
    assert rank_cfg.loss.w == 7.5
    assert rank_cfg.loss._target_ == cfg.loss._target_
    assert rank_cfg.hydra.runtime.choices["hydra/launcher"] == "basic"


def test_slurm_settings_follow_the_trainer_and_make_a_valid_batch_script(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("WINGFACE_SLURM_PARTITION", "a100")
    overrides = [
        "hydra/launcher=slurm",
        "trainer=ddp",
        "trainer.devices=4",
        "trainer.num_nodes=2",
        f"hydra.sweep.dir={tmp_path}",
    ]
    params = launcher_params(compose_launcher(*overrides))
    assert (params["tasks_per_node"], params["gpus_per_node"], params["nodes"]) == (4, 4, 2)
    assert params["partition"] == "a100"
    assert params["submitit_folder"] == f"{tmp_path}/.submitit/%j"

    script = slurm_batch_script(params, num_jobs=3)
    for flag in (
        "--array=0-2%3",
        "--ntasks-per-node=4",
        "--gpus-per-node=4",
        "--nodes=2",
        "--partition=a100",
        "--cpus-per-task=8",
        "--mem=64GB",
        "--time=240",
        f"--job-name={params['name']}",
    ):
        assert f"#SBATCH {flag}\n" in script, flag
    assert "srun " in script and "-m submitit.core._submit" in script

    # the local variant is the same settings with another launcher class
    local = compose_launcher(*[o.replace("=slurm", "=slurm_local") for o in overrides])
    assert launcher_params(local) == params
    assert local.hydra.launcher._target_ == "hydra_plugins.wingface_launcher.LocalSlurmLauncher"
    # one GPU per task needs a device count, not "auto"
    with pytest.raises(ValidationError, match="tasks_per_node|gpus_per_node"):
        launcher_params(compose_launcher("hydra/launcher=slurm", "trainer=ddp"))


# --- sweeps, as a user runs them -------------------------------------------------------------


@pytest.mark.slow
def test_slurm_launcher_jobs_run_through_submitit_local_executor(
    tmp_path: Path, subprocess_env: dict[str, str], small_data: list[str]
) -> None:
    from submitit.core.utils import pickle_load

    sweep_dir = tmp_path / "sweep"
    run_tiny_sweep(
        ["hydra/launcher=slurm_local", "loss=wing,l1"],
        small_data,
        {**subprocess_env, "WINGFACE_SLURM_PARTITION": "testing"},
        f"hydra.sweep.dir={sweep_dir}",
    )
    jobs = job_folders(sweep_dir)
    assert [loss_of(j) for j in jobs] == ["loss=wing", "loss=l1"]
    # the batch script SLURM would have got for the two jobs
    script = (sweep_dir / ".submitit" / "slurm_array.sbatch").read_text()
    assert "#SBATCH --array=0-1%2\n" in script and "#SBATCH --partition=testing\n" in script
    assert "#SBATCH --ntasks-per-node=1\n" in script and "#SBATCH --gpus-per-node=1\n" in script
    # submitit ran each job in its own process and kept what the job returned
    results = sorted((sweep_dir / ".submitit").glob("*/*_0_result.pkl"))
    assert len(results) == 2
    returned = {}
    for path in results:
        status, job_return = pickle_load(path)
        assert status == "success"
        returned[job_return.hydra_cfg.hydra.runtime.output_dir] = job_return.return_value
    assert set(returned) == {str(j) for j in jobs}
    for job in jobs:
        metrics = metrics_of(job)
        assert 0 < metrics["val/nme_best"] < 10
        assert returned[str(job)] == pytest.approx(metrics["val/nme_best"], abs=1e-9)
    assert metrics_of(jobs[0]) != metrics_of(jobs[1])


@pytest.mark.slow
def test_parallel_launcher_runs_two_jobs_at_once_with_a_share_of_the_threads(
    tmp_path: Path, subprocess_env: dict[str, str], small_data: list[str]
) -> None:
    from joblib import cpu_count

    sweep_dir = tmp_path / "sweep"
    # thread limits left to joblib
    env = {k: v for k, v in subprocess_env.items() if not k.endswith("_NUM_THREADS")}
    result = run_tiny_sweep(
        ["hydra/launcher=parallel", "loss=l1,wing"], small_data, env, f"hydra.sweep.dir={sweep_dir}"
    )
    assert "Joblib.Parallel(n_jobs=2," in result.stdout + result.stderr
    jobs = job_folders(sweep_dir)
    assert len(jobs) == 2
    threads = max(cpu_count() // 2, 1)
    spans = []
    for job in jobs:
        assert 0 < metrics_of(job)["val/nme_best"] < 10
        log = (job / "train.log").read_text()
        assert f"torch threads: {threads} (OMP_NUM_THREADS={threads})" in log
        spans.append(log_times(job / "train.log"))
    (start0, end0), (start1, end1) = spans
    assert start0 < end1 and start1 < end0, f"the jobs did not overlap: {spans}"


@pytest.mark.slow
def test_optuna_search_of_w_and_eps_runs_four_trials_and_keeps_the_best(
    tmp_path: Path, subprocess_env: dict[str, str], small_data: list[str]
) -> None:
    sweep_dir = tmp_path / "sweep"
    run_tiny_sweep(
        ["hparams_search=wing_optuna", "hydra.sweeper.n_trials=4"],
        small_data,
        subprocess_env,
        f"hydra.sweep.dir={sweep_dir}",
    )
    jobs = job_folders(sweep_dir)
    assert len(jobs) == 4
    trials = []
    for job in jobs:
        config = OmegaConf.load(job / ".hydra" / "config.yaml")
        assert config.loss._target_ == "wingface.losses.WingLoss"
        assert 5 <= config.loss.w <= 15 and 0.5 <= config.loss.eps <= 3
        trials.append((config.loss.w, config.loss.eps, metrics_of(job)["val/nme_best"]))
    assert len({(w, eps) for w, eps, _ in trials}) == 4, trials

    results = OmegaConf.load(sweep_dir / "optimization_results.yaml")
    best_w, best_eps, best_nme = min(trials, key=lambda t: t[2])
    assert results.best_value == pytest.approx(best_nme, abs=1e-9)
    assert results.best_params == {"loss.w": best_w, "loss.eps": best_eps}


@pytest.mark.slow
def test_ddp_jobs_of_a_multirun_start_their_own_ranks_and_no_sweep(
    tmp_path: Path, subprocess_env: dict[str, str], small_data: list[str]
) -> None:
    log_dir = tmp_path / "logs"
    result = run_tiny_sweep(
        ["loss=wing,l1", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"],
        small_data,
        subprocess_env,
        f"paths.log_dir={log_dir}",  # default sweep folder: multiruns/<time> under it
    )
    output = result.stdout + result.stderr
    # one sweep, started once: a rank process re-running the sweep would launch it again
    assert output.count("Launching 2 jobs locally") == 1
    (sweep_dir,) = (log_dir / "train" / "multiruns").iterdir()
    jobs = job_folders(sweep_dir)
    assert [loss_of(j) for j in jobs] == ["loss=wing", "loss=l1"]
    assert sorted(log_dir.rglob("metrics.json")) == sorted(j / "metrics.json" for j in jobs)
    # each job opened its own 2-process group
    assert output.count("GLOBAL_RANK: 0, MEMBER: 1/2") == 2
    assert output.count("GLOBAL_RANK: 1, MEMBER: 2/2") == 2
    for job, loss in zip(jobs, ["wing", "l1"], strict=True):
        assert 0 < metrics_of(job)["val/nme_best"] < 10
        main_log = (job / "train.log").read_text()
        (rank_command,) = re.findall(r"DDP rank 1 of this job: (.*)", main_log)
        assert f" loss={loss} " in rank_command and " -m " not in rank_command
        # both ranks trained on their half of the epoch, rank 1 logging beside rank 0
        rank_log = (job / "train_ddp_process_1.log").read_text()
        for text in (main_log, rank_log):
            assert "balanced epoch: 96 samples from 96 faces; 48 per rank on 2 rank(s)" in text
