"""Interrupted runs: a SIGKILLed training resumes in place and ends like an uninterrupted one;
checkpoint writes are atomic; every run records its provenance."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import fsspec.implementations.local
import lightning as L
import pytest
import torch

from entry_points import run_script, script_command
from wingface.config import PROJECT_ROOT

RUN = [
    "data.source.num_train=128",
    "data.source.num_val=32",
    "data.source.num_test=32",
    "data.num_workers=0",
    "data.batch_size=16",
    "data.eval_batch_size=32",
    "trainer.max_epochs=3",
    "trainer.deterministic=true",
    "trainer.enable_progress_bar=false",
    "callbacks.landmark_panel.every_n_epochs=100",
]
"""A CPU run of 3 short epochs (8 steps each), deterministic, logged to W&B offline."""


def kill_after_first_checkpoint(run_dir: Path, env: dict[str, str]) -> int:
    """Start training in ``run_dir``, SIGKILL it as soon as ``last.ckpt`` first appears (epoch 0
    done, epoch 1 starting) and return the epoch stored in ``last.ckpt`` afterwards."""
    last = run_dir / "checkpoints" / "last.ckpt"
    process = subprocess.Popen(
        script_command("train.py", [*RUN, f"hydra.run.dir={run_dir}"]),
        env=env,
        cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while not last.exists():
            assert process.poll() is None, "training ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 5 minutes"
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    assert not (run_dir / "metrics.json").exists()  # it really did not finish
    return int(torch.load(last, map_location="cpu", weights_only=False)["epoch"])


def offline_run_ids(run_dir: Path) -> set[str]:
    """Run ids of the offline W&B runs in a run folder."""
    return {p.name.rsplit("-", 1)[1] for p in (run_dir / "wandb").glob("offline-run-*")}


def test_killed_run_resumes_in_place_and_matches_an_uninterrupted_run(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    straight = tmp_path / "straight"
    run_script("train.py", [*RUN, f"hydra.run.dir={straight}"], subprocess_env)
    expected = json.loads((straight / "metrics.json").read_text())

    resumed = tmp_path / "resumed"
    killed_at = kill_after_first_checkpoint(resumed, subprocess_env)
    assert killed_at < 2
    run_id = (resumed / "wandb_run_id.txt").read_text().strip()
    run_script("train.py", [*RUN, f"hydra.run.dir={resumed}", "ckpt_path=last"], subprocess_env)
    got = json.loads((resumed / "metrics.json").read_text())
    for key in ("test/nme", "test/nme_inter_pupil", "test/fr_0.10", "val/nme_best"):
        print(f"{key}: uninterrupted {expected[key]:.8f}, killed after epoch {killed_at} and "
              f"resumed {got[key]:.8f}")  # fmt: skip
        assert got[key] == pytest.approx(expected[key], abs=1e-6), key
    assert offline_run_ids(resumed) == {run_id}  # both launches logged to the same W&B run
    assert offline_run_ids(straight) != {run_id}


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


class _Tiny(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)


def test_a_crash_while_saving_leaves_the_previous_checkpoint_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trainer = L.Trainer(
        default_root_dir=tmp_path, logger=False, enable_checkpointing=False, accelerator="cpu"
    )
    trainer.strategy.connect(_Tiny())
    path = tmp_path / "last.ckpt"
    trainer.save_checkpoint(path)
    before = path.read_bytes()

    original = fsspec.implementations.local.LocalFileOpener.write

    def write_half_then_die(self, data: bytes) -> int:
        original(self, data[: len(data) // 2])
        raise KeyboardInterrupt("killed while saving")

    monkeypatch.setattr(fsspec.implementations.local.LocalFileOpener, "write", write_half_then_die)
    with pytest.raises(KeyboardInterrupt):
        trainer.save_checkpoint(path)
    monkeypatch.undo()
    assert path.read_bytes() == before  # the old checkpoint, whole
    assert "state_dict" in torch.load(path, map_location="cpu", weights_only=False)
