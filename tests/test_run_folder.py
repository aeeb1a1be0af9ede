"""One launch per run folder, and a recorded config that always describes what the folder's
checkpoints were trained with: mismatching resumes are refused before anything is written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from entry_points import call_script, run_script
from wingface.callbacks.run_record import combined_record, read_run_info
from wingface.config import PROJECT_ROOT
from wingface.run_folder import (
    LOCK_FILE,
    ConfigMismatchError,
    RunFolderBusyError,
    check_resume,
    claim_run_folder,
    config_differences,
    record_run_config,
    with_later_key_defaults,
)


def _recorded(folder: Path, **overrides) -> None:
    cfg = OmegaConf.create(
        {
            "seed": 42,
            "ckpt_path": None,
            "loss": {"_target_": "wingface.losses.WingLoss", "w": 10.0, "eps": 2.0},
            "model": {"_target_": "wingface.models.cnn.LandmarkCNN", "input_size": 64},
            "trainer": {"max_epochs": 12},
            "data": {"num_workers": 2, "root": None, "input_size": "${model.input_size}"},
            "logger": {"wandb": {"project": "wingface"}},
        }
    )
    record_run_config(cfg, folder)
    return cfg


def test_experiment_keys_that_differ_are_refused_and_listed(tmp_path: Path) -> None:
    cfg = _recorded(tmp_path)
    before = (tmp_path / ".hydra" / "config.yaml").read_bytes()
    changed = OmegaConf.merge(cfg, {"loss": {"_target_": "wingface.losses.L1Loss"}, "seed": 1})
    changed.ckpt_path = "last"
    with pytest.raises(ConfigMismatchError) as info:
        check_resume(changed, tmp_path)
    message = str(info.value)
    assert "loss._target_: 'wingface.losses.WingLoss' -> 'wingface.losses.L1Loss'" in message
    assert "seed: 42 -> 1" in message and "allow_config_change=true" in message
    assert "ckpt_path" not in message.split("Keys that may change")[0]
    assert (tmp_path / ".hydra" / "config.yaml").read_bytes() == before
    changed.allow_config_change = True
    check_resume(changed, tmp_path)  # the user asked for it


def test_non_experiment_keys_may_change_on_resume(tmp_path: Path) -> None:
    cfg = _recorded(tmp_path)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"x")
    longer = OmegaConf.merge(
        cfg,
        {
            "ckpt_path": "last",
            "trainer": {"max_epochs": 20},
            "data": {"num_workers": 0, "root": "/elsewhere"},
            "logger": {"csv": {"save_dir": "x"}},
        },
    )
    check_resume(longer, tmp_path)
    assert set(config_differences(cfg, longer)) == {
        "ckpt_path",
        "trainer.max_epochs",
        "data.num_workers",
        "data.root",
        "logger.csv.save_dir",
    }


def test_a_switch_added_later_at_its_old_behaviour_is_no_change() -> None:
    """A run recorded before ``test_time_flip`` existed trained without it: resuming with the
    switch off changes nothing, with it on changes the run."""
    recorded = OmegaConf.create({"seed": 1, "data": {"batch_size": 64}})
    assert config_differences(recorded, OmegaConf.merge(recorded, {"test_time_flip": False})) == {}
    on = OmegaConf.merge(recorded, {"test_time_flip": True})
    assert config_differences(recorded, on) == {"test_time_flip": ("<absent>", True)}
    removed = OmegaConf.create({"seed": 1, "data": {}})
    assert "data.batch_size" in config_differences(recorded, removed)
    # ... also inside a config group (data.context_oversample came after the first 300-W runs)
    plain = OmegaConf.merge(recorded, {"data": {"context_oversample": 1}})
    assert config_differences(recorded, plain) == {}
    sharp = OmegaConf.merge(recorded, {"data": {"context_oversample": 3}})
    assert config_differences(recorded, sharp) == {"data.context_oversample": ("<absent>", 3)}


def test_a_run_recorded_before_a_switch_reads_as_what_it_trained_with() -> None:
    recorded = OmegaConf.create({"seed": 1, "data": {"batch_size": 64}, "loss": {"w": 10}})
    run_cfg = with_later_key_defaults(recorded)
    assert run_cfg.test_time_flip is False and run_cfg.data.context_oversample == 1
    assert "context_oversample" not in run_cfg.loss
    newer = with_later_key_defaults(OmegaConf.create({"data": {"context_oversample": 3}}))
    assert newer.data.context_oversample == 3


def test_a_fresh_launch_into_a_folder_with_checkpoints_is_refused(tmp_path: Path) -> None:
    cfg = _recorded(tmp_path)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "epoch_003.ckpt").write_bytes(b"x")
    with pytest.raises(ConfigMismatchError, match=r"epoch_003\.ckpt.*ckpt_path=last"):
        check_resume(cfg, tmp_path)


def test_a_folder_without_a_recorded_run_is_free(tmp_path: Path) -> None:
    check_resume(OmegaConf.create({"seed": 1, "ckpt_path": None}), tmp_path)


HOLD = textwrap.dedent(
    """
    import sys, time
    from wingface.run_folder import claim_run_folder
    with claim_run_folder(sys.argv[1]):
        print("holding", flush=True)
        time.sleep(600)
    """
)


def _holder(folder: Path) -> subprocess.Popen:
    """A process that holds ``folder``'s lock (until killed)."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT / "src")},
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "holding"
    return process


def test_a_busy_folder_names_its_holder_and_a_dead_holder_blocks_nothing(tmp_path: Path) -> None:
    holder = _holder(tmp_path)
    try:
        with (
            pytest.raises(
                RunFolderBusyError, match=rf"in use by another launch \(pid {holder.pid} "
            ),
            claim_run_folder(tmp_path),
        ):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
    assert (tmp_path / LOCK_FILE).exists()  # the dead process's lock file is still there...
    with claim_run_folder(tmp_path):  # ... and does not block
        assert str(os.getpid()) in (tmp_path / LOCK_FILE).read_text()


@pytest.mark.slow
def test_a_second_launch_stops_at_once_without_writing(
    tmp_path: Path, subprocess_env: dict[str, str], small_data: list[str]
) -> None:
    run_dir = tmp_path / "run"
    holder = _holder(run_dir)
    try:
        start = time.monotonic()
        result = call_script(
            "train.py", [*small_data, "logger=csv", f"hydra.run.dir={run_dir}"], subprocess_env
        )
        elapsed = time.monotonic() - start
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
    assert result.returncode != 0
    assert f"is in use by another launch (pid {holder.pid} " in result.stderr
    assert not (run_dir / ".hydra").exists() and not (run_dir / "checkpoints").exists()
    print(f"refused after {elapsed:.1f} s")


def stamps(folder: Path) -> dict[str, int]:
    """Modification time (ns) of each file in ``folder``."""
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


@pytest.mark.slow
def test_resumes_that_change_the_experiment_are_refused_end_to_end(
    tmp_path: Path, subprocess_env: dict[str, str], small_data: list[str]
) -> None:
    run_dir = tmp_path / "run"
    base = [*small_data, "logger=csv", "trainer.max_epochs=1", f"hydra.run.dir={run_dir}"]
    run_script("train.py", base, subprocess_env)
    config = run_dir / ".hydra" / "config.yaml"
    recorded = config.read_bytes()
    checkpoints = stamps(run_dir / "checkpoints")

    for change, key in (("loss=l1", "loss._target_"), ("model=cnn7", "model.channels")):
        result = call_script("train.py", [*base, change, "ckpt_path=last"], subprocess_env)
        assert result.returncode != 0
        assert "these keys differ" in result.stderr and key in result.stderr, result.stderr[-2000:]
        assert config.read_bytes() == recorded  # the refused launch wrote nothing
    fresh = call_script("train.py", base, subprocess_env)
    assert fresh.returncode != 0 and "already holds checkpoints" in fresh.stderr
    assert checkpoints == {
        p.name: p.stat().st_mtime_ns for p in (run_dir / "checkpoints").iterdir()
    }

    # training longer is a resume with a larger max_epochs: the schedule is rebuilt for it
    run_script("train.py", [*base, "trainer.max_epochs=2", "ckpt_path=last"], subprocess_env)
    assert OmegaConf.load(config).trainer.max_epochs == 2
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["epoch"] == 1
    assert last["lr_schedulers"][0]["total_steps"] == 2 * 3  # 2 epochs of 3 batches
    log = (run_dir / "train.log").read_text()
    assert "trainer.max_epochs: 1 -> 2" in log


def test_relaunching_a_finished_run_tests_the_same_best_checkpoint(
    compose_train, small_data: list[str]
) -> None:
    """A finished run launched again with ``ckpt_path=last`` trains nothing, tests the best
    checkpoint it recorded (here the worst-validation epoch: ``mode=max``, so not the final
    weights) and reports the fitting time of both launches."""
    from wingface.pipeline import train

    cfg = compose_train(
        "logger=none",
        "trainer.max_epochs=3",
        "callbacks.model_checkpoint.mode=max",
        "callbacks.landmark_panel.every_n_epochs=100",
        *small_data,
    )
    first = train(cfg)
    folder = Path(cfg.paths.output_dir) / "checkpoints"
    files = sorted(p.name for p in folder.iterdir())
    started = json.loads((Path(cfg.paths.output_dir) / "run_info.json").read_text())
    cfg.ckpt_path = "last"
    again = train(cfg)
    assert again["test/nme"] == first["test/nme"]
    # the provenance of the weights stays the first launch's; the relaunch is listed after it
    info = json.loads((Path(cfg.paths.output_dir) / "run_info.json").read_text())
    assert started["from_step"] == 0 and "resumes" not in started
    assert {k: v for k, v in info.items() if k != "resumes"} == started
    assert [r["from_step"] for r in info["resumes"]] == [3 * 3]  # 3 epochs of 3 batches
    recorded = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert recorded["val/nme_best"] == first["val/nme_best"]  # the fit's metrics stay
    assert recorded["time/fit_seconds"] == again["time/fit_seconds"]
    # the count stored with the final epoch, plus the relaunch (the first launch's own count
    # ran a little past that checkpoint)
    stored = torch.load(folder / "last.ckpt", weights_only=False)["wingface_fit_seconds"]
    assert again["time/fit_seconds"] > stored > 0.5 * first["time/fit_seconds"]
    assert sorted(p.name for p in folder.iterdir()) == files


def test_a_fit_that_lost_its_best_checkpoint_is_not_tested_on_other_weights(
    tmp_path: Path,
) -> None:
    from types import SimpleNamespace

    from wingface.pipeline import best_checkpoint

    lost = SimpleNamespace(checkpoint_callback=SimpleNamespace(best_model_path=""), fast_dev_run=0)
    (tmp_path / "last.ckpt").write_bytes(b"x")
    assert best_checkpoint(lost, tmp_path) == ""  # nothing better to test than the weights
    (tmp_path / "epoch_007.ckpt").write_bytes(b"x")
    with pytest.raises(RuntimeError, match=r"knows no best checkpoint.*epoch_007\.ckpt"):
        best_checkpoint(lost, tmp_path)
    found = SimpleNamespace(checkpoint_callback=SimpleNamespace(best_model_path="b.ckpt"))
    assert best_checkpoint(found, tmp_path) == "b.ckpt"


def test_run_record_keeps_the_first_launch_and_lists_resumes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def launch(commit: str, step: int, faces: int = 10) -> dict:
        return {"git": {"commit": commit}, "data": {"train_faces": faces}, "from_step": step}

    first = launch("a" * 40, 0)
    assert combined_record(None, first, resumed=False) == first
    # a resume of a run recorded before: its own record is appended, the first one stays
    resumed = combined_record(first, launch("b" * 40, 7), resumed=True)
    assert resumed == {**first, "resumes": [launch("b" * 40, 7)]}
    twice = combined_record(resumed, launch("c" * 40, 9, faces=11), resumed=True)
    assert [r["git"]["commit"] for r in twice["resumes"]] == ["b" * 40, "c" * 40]
    assert "data fingerprints" in caplog.text  # 11 faces instead of 10: logged
    # a launch that starts the run again from scratch (no checkpoint) replaces the record
    assert combined_record(twice, launch("d" * 40, 0), resumed=False) == launch("d" * 40, 0)
    # a resume from a checkpoint saved before the first step is still a resume
    assert combined_record(first, launch("e" * 40, 0), resumed=True)["git"] == first["git"]
    # no record without a resume without a file; a broken file is named
    assert combined_record(None, launch("f" * 40, 4), resumed=True)["from_step"] == 4
    assert read_run_info(tmp_path / "run_info.json") is None
    (tmp_path / "run_info.json").write_text("{not json")
    with pytest.raises(ValueError, match="run_info.json: not valid JSON"):
        read_run_info(tmp_path / "run_info.json")
    (tmp_path / "run_info.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="expected a run record"):
        read_run_info(tmp_path / "run_info.json")


@pytest.mark.parametrize(
    "name", ["0_loss=wing,seed=0", "b c[1]", "it's", "x\\y", "end\\", "q\\'x", "x\\\\y'"]
)
def test_logged_resume_command_names_the_folder_for_hydra(tmp_path: Path, name: str) -> None:
    """The resume command a killed sweep job logs must reach its own folder, whatever
    characters of the override grammar (``=``, ``,`` of a job's folder name) the path holds."""
    import shlex

    from hydra.core.override_parser.overrides_parser import OverridesParser

    from wingface.run_folder import resume_command

    folder = tmp_path / name
    words = shlex.split(resume_command(folder))
    assert words[-1] == "ckpt_path=last"
    override = OverridesParser.create().parse_override(words[-2])
    assert override.key_or_group == "hydra.run.dir"
    assert override.value() == str(folder.resolve())


def test_claiming_a_folder_removes_the_unfinished_writes_of_a_killed_launch(
    tmp_path: Path,
) -> None:
    from wingface.fault_tolerance import UNFINISHED_WRITE, write_atomically

    names: list[str] = []  # the temporary file write_atomically really writes through
    target = tmp_path / "checkpoints" / "last.ckpt"
    write_atomically(target, lambda handle: names.extend(p.name for p in target.parent.iterdir()))
    assert len(names) == 1 and UNFINISHED_WRITE.match(names[0]) and target.is_file()

    left = tmp_path / "checkpoints" / names[0]  # as a SIGKILL during the write leaves it
    left.write_bytes(b"partial")
    kept = [tmp_path / ".notes.tmp", tmp_path / "wandb" / names[0], tmp_path / "metrics.json"]
    for path in kept:
        path.parent.mkdir(exist_ok=True)
        path.write_text("{}")
    with claim_run_folder(tmp_path):
        assert not left.exists()
    assert all(path.is_file() for path in kept) and target.read_bytes() == b""
