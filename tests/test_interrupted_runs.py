"""Interrupted runs: a run killed (SIGKILL) or stopped (SIGTERM) at any point and resumed with
``ckpt_path=last`` ends exactly like an uninterrupted one, with the default loader settings
(workers, persistent workers) and the balanced sampler; SIGTERM saves a checkpoint, logs the
resume command and exits non-zero; checkpoint writes are all or nothing."""

from __future__ import annotations

import errno
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.demos.boring_classes import BoringModel

from entry_points import call_script, run_script
from wingface.callbacks.checkpoints import BestAndLastCheckpoint
from wingface.config import PROJECT_ROOT
from wingface.fault_tolerance import AtomicCheckpointIO, step_seed, write_atomically

TESTS = Path(__file__).parent
RUN = [
    "data.source.num_train=256",
    "data.source.num_val=32",
    "data.source.num_test=32",
    "data.batch_size=32",
    "data.eval_batch_size=32",
    "trainer.max_epochs=3",
    "trainer.enable_progress_bar=false",
    "callbacks.landmark_panel.every_n_epochs=100",
]
"""3 epochs of 8 batches with the default loader (2 persistent workers), logged to W&B offline."""

COMPARED = ("test/nme", "test/nme_inter_pupil", "test/fr_0.10", "test/auc_0.10", "val/nme_best")


def signal_overrides(signum: int, epoch: int, batch: int, marker: Path) -> list[str]:
    """Add :class:`signal_at.SignalAt` to the run's callbacks."""
    prefix = "+callbacks.signal_at"
    return [
        f"{prefix}._target_=signal_at.SignalAt",
        f"{prefix}.signum={int(signum)}",
        f"{prefix}.epoch={epoch}",
        f"{prefix}.batch={batch}",
        f"{prefix}.marker={marker}",
    ]


@pytest.fixture(scope="module")
def env_with_tests(subprocess_env: dict[str, str]) -> dict[str, str]:
    env = dict(subprocess_env)
    env["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT / "src"), str(TESTS)])
    return env


def metrics_of(run_dir: Path) -> dict[str, float]:
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.fixture(scope="module")
def uninterrupted(
    tmp_path_factory: pytest.TempPathFactory, env_with_tests: dict[str, str]
) -> Callable[[list[str]], dict[str, float]]:
    """The metrics of an uninterrupted run with extra overrides (each run once per module)."""
    done: dict[tuple[str, ...], dict[str, float]] = {}

    def metrics(extra: list[str]) -> dict[str, float]:
        if tuple(extra) not in done:
            run_dir = tmp_path_factory.mktemp("uninterrupted")
            run_script("train.py", [*RUN, *extra, f"hydra.run.dir={run_dir}"], env_with_tests)
            done[tuple(extra)] = metrics_of(run_dir)
        return done[tuple(extra)]

    return metrics


SHARES_DEFAULT_RUN = pytest.mark.xdist_group("uninterrupted-default-run")
"""Cases compared with the same uninterrupted run: one test process under pytest -n."""


def offline_run_ids(run_dir: Path) -> set[str]:
    """Run ids of the offline W&B runs in a run folder."""
    return {p.name.rsplit("-", 1)[1] for p in (run_dir / "wandb").glob("offline-run-*")}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "epoch", "batch", "extra", "resumes_at"),
    [
        pytest.param(
            signal.SIGKILL, 1, 0, [], None, id="SIGKILL-after-epoch-0", marks=SHARES_DEFAULT_RUN
        ),
        pytest.param(
            signal.SIGTERM, 1, 3, ["balance=pdb", "augment=gpu"], 1, id="SIGTERM-mid-epoch-pdb-gpu"
        ),  # stops after batch 3 of epoch 1
        pytest.param(
            signal.SIGTERM,
            0,
            7,
            [],
            1,
            id="SIGTERM-last-batch-of-epoch-0",
            marks=SHARES_DEFAULT_RUN,
        ),
    ],
)
def test_interrupted_run_resumes_exactly(
    tmp_path: Path,
    env_with_tests: dict[str, str],
    uninterrupted: Callable[[list[str]], dict[str, float]],
    signum: int,
    epoch: int,
    batch: int,
    extra: list[str],
    resumes_at: int | None,
) -> None:
    expected = uninterrupted(extra)

    run_dir = tmp_path / "interrupted"
    args = [*RUN, *extra, *signal_overrides(signum, epoch, batch, tmp_path / "signalled")]
    first = call_script("train.py", [*args, f"hydra.run.dir={run_dir}"], env_with_tests)
    assert not (run_dir / "metrics.json").exists()  # it really did not finish
    log = (run_dir / "train.log").read_text()
    if signum == signal.SIGKILL:
        assert first.returncode == -signal.SIGKILL
        resume = [*args, f"hydra.run.dir={run_dir}", "ckpt_path=last"]
    else:
        assert first.returncode == 143, first.stderr[-3000:]
        assert f"interrupted at epoch {resumes_at}" in log
        saved = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
        assert saved["FaceDataModule"] == {"train_epoch": epoch, "train_batches_done": batch + 1}
        command = re.search(r"resume with:\n\s+(.+)\n", log).group(1)  # the logged command
        resume = shlex.split(command)[2:]
        assert shlex.split(command)[:2] == ["python", "src/train.py"]
    run_id = (run_dir / "wandb_run_id.txt").read_text().strip()
    started = json.loads((run_dir / "run_info.json").read_text())
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    steps_done = last["global_step"]
    run_script("train.py", resume, env_with_tests)
    got = metrics_of(run_dir)
    info = json.loads((run_dir / "run_info.json").read_text())  # both launches recorded
    assert info["git"] == started["git"] and info["from_step"] == 0
    assert [r["from_step"] for r in info["resumes"]] == [steps_done]
    for key in COMPARED:
        print(f"{key}: uninterrupted {expected[key]:.8f}, resumed {got[key]:.8f}")
        assert got[key] == pytest.approx(expected[key], abs=1e-6), key
    assert offline_run_ids(run_dir) == {run_id}  # both launches logged to the same W&B run


@pytest.mark.slow
def test_ckpt_path_last_without_a_checkpoint_starts_fresh(
    tmp_path: Path, subprocess_env: dict[str, str], small_data: list[str]
) -> None:
    run_dir = tmp_path / "run"
    args = [*small_data, "trainer.max_epochs=1", "logger=csv", "ckpt_path=last"]
    run_script("train.py", [*args, f"hydra.run.dir={run_dir}"], subprocess_env)
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    info = json.loads((run_dir / "run_info.json").read_text())
    assert info["git"]["commit"] is None or len(info["git"]["commit"]) == 40
    assert info["packages"]["torch"] == torch.__version__.split("+")[0] or info["packages"][
        "torch"
    ].startswith(torch.__version__.split("+")[0])
    assert info["data"]["train_faces"] == 96 and len(info["data"]["train_sha256"]) == 16
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert saved["model_option"] == "cnn6" and saved["model_config"]["input_size"] == 64


def test_step_seeds_depend_on_seed_epoch_and_batch_only() -> None:
    seeds = {step_seed(s, e, b) for s in (0, 1) for e in (0, 1) for b in (0, 1)}
    assert len(seeds) == 8 and all(0 <= s < 2**63 for s in seeds)
    assert step_seed(42, 3, 5) == step_seed(42, 3, 5)


# --------------------------------------------------------------------------- atomic writes


class _Tiny(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)


def _trainer(folder: Path) -> L.Trainer:
    trainer = L.Trainer(
        default_root_dir=folder,
        logger=False,
        enable_checkpointing=False,
        accelerator="cpu",
        plugins=[AtomicCheckpointIO()],
    )
    trainer.strategy.connect(_Tiny())
    return trainer


def test_a_write_failing_part_way_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trainer = _trainer(tmp_path)
    path = tmp_path / "checkpoints" / "last.ckpt"
    trainer.save_checkpoint(path)
    before = path.read_bytes()
    original = torch.save

    def save_half_then_fail(obj, handle, *args, **kwargs) -> None:
        original(obj, handle, *args, **kwargs)
        handle.seek(len(before) // 2)
        handle.truncate()
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", save_half_then_fail)
    with pytest.raises(OSError, match="No space left"):
        trainer.save_checkpoint(path)
    with pytest.raises(OSError, match="No space left"):
        trainer.save_checkpoint(path.parent / "epoch_001.ckpt")  # a new file: nothing left
    monkeypatch.undo()
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]  # no partial file
    assert path.read_bytes() == before
    assert "state_dict" in torch.load(path, map_location="cpu", weights_only=False)


@pytest.mark.slow
def test_a_real_write_error_leaves_no_partial_file(tmp_path: Path) -> None:
    """The operating system refuses the write part-way (a file size limit, as a full disk
    would): the previous file stays whole and no temporary file is left."""
    script = textwrap.dedent(
        f"""
        import resource, signal, sys
        from pathlib import Path
        from wingface.fault_tolerance import write_atomically
        path = Path({str(tmp_path / "last.ckpt")!r})
        write_atomically(path, lambda f: f.write(b"old" * 1000))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
        try:
            write_atomically(path, lambda f: f.write(b"n" * 1_000_000))
        except OSError as error:
            print("refused:", error)
            sys.exit(0)
        sys.exit("the oversized write went through")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT / "src")},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "File too large" in done.stdout
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]
    assert (tmp_path / "last.ckpt").read_bytes() == b"old" * 1000


def test_write_atomically_replaces_whole_files(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "metrics.json"
    write_atomically(path, lambda f: f.write(b"first"))
    write_atomically(path, lambda f: f.write(b"second"))
    assert path.read_bytes() == b"second"
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]


@pytest.mark.slow
def test_slurm_preemption_signal_stops_like_sigterm(
    tmp_path: Path, env_with_tests: dict[str, str]
) -> None:
    """Under SLURM without Lightning's auto-requeue, the pre-emption signal (SIGUSR1) saves a
    resumable checkpoint and exits 143, as SIGTERM does (instead of dying without one)."""
    run_dir = tmp_path / "run"
    args = [*RUN, "trainer.max_epochs=2", "logger=csv"]
    args += signal_overrides(signal.SIGUSR1, 0, 2, tmp_path / "signalled")
    env = {**env_with_tests, "SLURM_JOB_ID": "4242"}
    result = call_script("train.py", [*args, f"hydra.run.dir={run_dir}"], env)
    assert result.returncode == 143, result.stderr[-3000:]
    assert "interrupted at epoch 0" in (run_dir / "train.log").read_text()
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert saved["FaceDataModule"] == {"train_epoch": 0, "train_batches_done": 3}


class _ConstantValidation(BoringModel):
    """A model whose validation NME never improves after the first epoch."""

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        self.log("val/nme", 1.0)


def _fit_constant(
    kind: type[ModelCheckpoint], folder: Path, epochs: int, resume: Path | None = None
) -> ModelCheckpoint:
    """Fit :class:`_ConstantValidation` for ``epochs`` epochs of 4 batches, checkpointed into
    ``folder`` by a ``kind`` callback (best by ``val/nme`` and last); returns the callback."""
    checkpoint = kind(dirpath=folder, monitor="val/nme", save_top_k=1, save_last=True)
    trainer = L.Trainer(
        max_epochs=epochs,
        limit_train_batches=4,
        limit_val_batches=2,
        callbacks=[checkpoint],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(_ConstantValidation(), ckpt_path=resume)
    return checkpoint


@pytest.mark.parametrize("kind", [BestAndLastCheckpoint, ModelCheckpoint])
def test_last_checkpoint_follows_every_epoch_not_only_the_best(
    tmp_path: Path, kind: type[ModelCheckpoint]
) -> None:
    """``last.ckpt`` is the final epoch even when the best epoch was the first; Lightning's own
    ``ModelCheckpoint`` leaves it at the best epoch, from which ``ckpt_path=last`` would train
    the later epochs again."""
    checkpoint = _fit_constant(kind, tmp_path, 3)
    last = torch.load(tmp_path / "last.ckpt", weights_only=False)
    best = torch.load(checkpoint.best_model_path, weights_only=False)
    assert best["epoch"] == 0 and best["global_step"] == 4
    if kind is BestAndLastCheckpoint:
        assert last["epoch"] == 2 and last["global_step"] == 12
    else:
        assert last["epoch"] == 0  # Lightning 2.6's own behaviour, the reason for the subclass


def test_best_checkpoint_is_known_after_resuming_a_stock_checkpoint(tmp_path: Path) -> None:
    """A run checkpointed by Lightning's ``ModelCheckpoint`` and resumed with
    ``BestAndLastCheckpoint`` (or the other way round) keeps its best checkpoint: the state is
    stored under the same key."""
    first = _fit_constant(ModelCheckpoint, tmp_path, 1)
    assert first.state_key == BestAndLastCheckpoint(monitor="val/nme").state_key
    resumed = _fit_constant(BestAndLastCheckpoint, tmp_path, 3, tmp_path / "last.ckpt")
    assert Path(resumed.best_model_path).name == "epoch=0-step=4.ckpt"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch=0-step=4.ckpt", "last.ckpt"]
    assert torch.load(tmp_path / "last.ckpt", weights_only=False)["epoch"] == 2


@pytest.mark.slow
def test_sigterm_to_one_job_of_a_parallel_sweep_spares_the_other(
    tmp_path: Path, env_with_tests: dict[str, str], small_data: list[str]
) -> None:
    """A job of ``hydra/launcher=parallel`` stopped by SIGTERM saves its checkpoint and fails
    (the sweep's exit status says so, with the job's resume command); the job running beside
    it in another process is not killed with it but finishes."""
    sweep_dir = tmp_path / "sweep"
    signal_at = signal_overrides(signal.SIGTERM, 0, 2, tmp_path / "signalled")
    signal_at = [o for o in signal_at if ".epoch=" not in o]
    args = [
        "-m",
        "hydra/launcher=parallel",
        "+callbacks.signal_at.epoch=0,99",  # job 0 is signalled in its first epoch, job 1 never
        *signal_at,
        *small_data,
        "trainer.max_epochs=3",
        "logger=none",
        "test=false",
        "trainer.enable_progress_bar=false",
        f"hydra.sweep.dir={sweep_dir}",
        "hydra.sweep.subdir=${hydra.job.num}",  # the marker's path would nest the job folders
    ]
    result = call_script("train.py", args, env_with_tests)
    output = result.stdout + result.stderr
    assert result.returncode != 0, "an interrupted job must fail the sweep"
    interrupted, spared = sweep_dir / "0", sweep_dir / "1"
    assert "interrupted at epoch" in (interrupted / "train.log").read_text()
    assert (interrupted / "checkpoints" / "last.ckpt").is_file()
    assert not (interrupted / "metrics.json").exists()
    assert "resume with" in output and str(interrupted) in output
    assert json.loads((spared / "metrics.json").read_text())["val/nme_best"] > 0, output[-3000:]
