"""Running the entry points (``src/*.py``) as a user does, from tests."""

from __future__ import annotations

import subprocess
import sys

import pytest

from wingface.config import PROJECT_ROOT


def script_command(script: str, args: list[str]) -> list[str]:
    """The command line of ``python src/<script> <args>``."""
    return [sys.executable, str(PROJECT_ROOT / "src" / script), *args]


def call_script(script: str, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run ``src/<script>`` with ``args`` and capture its output (any exit status)."""
    return subprocess.run(
        script_command(script, args),
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def run_script(script: str, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run ``src/<script>`` with ``args``; fail the test with its output on a non-zero exit."""
    result = call_script(script, args, env)
    if result.returncode != 0:
        pytest.fail(
            f"{script} {' '.join(args)} exited {result.returncode}:\n{result.stderr[-4000:]}"
        )
    return result
