"""The model-card benchmark counts multiply-adds exactly (checked against CNN-6 by hand)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from wingface.config import register_resolvers

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "model_card.py"


@pytest.fixture(scope="module")
def model_card():
    spec = importlib.util.spec_from_file_location("model_card", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["model_card"] = module
    spec.loader.exec_module(module)
    register_resolvers()
    return module


def test_cnn6_multiply_adds_match_the_closed_form(model_card) -> None:
    net = model_card.build("cnn6").eval()
    convs = 64 * 64 * 3 * 32 * 9 + sum(
        side * side * c_in * c_out * 9
        for side, c_in, c_out in ((32, 32, 64), (16, 64, 128), (8, 128, 256), (4, 256, 512))
    )
    fully_connected = 2 * 2 * 512 * 1024 + 1024 * 136
    assert model_card.multiply_adds(net, 64) == convs + fully_connected  # 81,272,832
    assert sum(p.numel() for p in net.parameters()) == (
        sum(c_in * c_out * 9 + c_out for c_in, c_out in
            ((3, 32), (32, 64), (64, 128), (128, 256), (256, 512)))
        + 2048 * 1024 + 1024 + 1024 * 136 + 136
    )  # fmt: skip


def test_throughput_runs(model_card) -> None:
    net = model_card.build("cnn6").eval()
    assert model_card.throughput(net, 64, batch=4, seconds=0.2, device="cpu") > 0
