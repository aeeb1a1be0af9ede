"""W&B online without a reachable server: the run logs offline (with a warning saying how to
sync later) instead of stalling and failing in ``wandb.init``."""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from entry_points import run_script
from wingface.wandb_run import choose_wandb_mode


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def listening_port() -> Iterator[int]:
    """A loopback port that accepts connections."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


def _online(monkeypatch: pytest.MonkeyPatch, port: int) -> None:
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{port}")


def test_unreachable_server_falls_back_to_offline_at_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, closed_port: int
) -> None:
    _online(monkeypatch, closed_port)
    start = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="wingface.wandb_run"):
        assert choose_wandb_mode() == "offline"
    assert time.monotonic() - start < 10
    assert os.environ["WANDB_MODE"] == "offline"
    assert f"cannot reach http://127.0.0.1:{closed_port}" in caplog.text
    assert "wandb sync" in caplog.text


def test_reachable_server_stays_online(
    monkeypatch: pytest.MonkeyPatch, listening_port: int
) -> None:
    _online(monkeypatch, listening_port)
    assert choose_wandb_mode() == "online"


def test_no_key_means_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert choose_wandb_mode() == "offline"


@pytest.mark.slow
def test_a_run_online_without_network_trains_and_logs_offline(
    tmp_path: Path, subprocess_env: dict[str, str], small_data: list[str], closed_port: int
) -> None:
    env = {
        **subprocess_env,
        "WANDB_MODE": "online",
        "WANDB_API_KEY": "k" * 40,
        "WANDB_BASE_URL": f"http://127.0.0.1:{closed_port}",
    }
    run_dir = tmp_path / "run"
    start = time.monotonic()
    result = run_script(
        "train.py", [*small_data, "trainer.max_epochs=1", f"hydra.run.dir={run_dir}"], env
    )
    print(f"whole run: {time.monotonic() - start:.1f} s")
    assert "logging offline instead" in result.stderr + (run_dir / "train.log").read_text()
    assert list((run_dir / "wandb").glob("offline-run-*"))
    assert (run_dir / "metrics.json").is_file()
