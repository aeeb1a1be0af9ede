"""The speed benchmarks run end to end and read Lightning's profiler correctly (no timings
are asserted: speed is measured by the benchmarks themselves)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType

import lightning as L
import pytest
import torch
from lightning.pytorch.profilers import SimpleProfiler
from torch.utils.data import DataLoader, TensorDataset

from wingface.config import register_resolvers

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def throughput() -> ModuleType:
    register_resolvers()
    return load_script("throughput")


def test_throughput_benchmark_measures_every_path(
    throughput: ModuleType, cache_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "rows.json"
    rows = throughput.main(
        [
            "--device", "cpu", "--quick", "--models", "cnn6", "--settings", "32-cl",
            "--seconds", "0", "--min-steps", "2", "--warmup", "1", "--batch", "4",
            "--faces", "24", "--workers", "0", "--cache-dir", str(cache_dir),
            "--json", str(out),
        ]
    )  # fmt: skip
    assert len(rows) == 1
    row = rows[0]
    assert set(row.train) == {
        "model-only", "loop default", "loop gpu", "loop on-device", "fit on-device",
    }  # fmt: skip
    assert set(row.eval) == {"model-only", "loader", "on-device"}
    for value in [*row.train.values(), *row.eval.values()]:
        assert math.isfinite(value) and value > 0
    assert all(0 <= share < 1 for share in row.wait_share.values())
    assert json.loads(out.read_text())[0]["train"] == pytest.approx(row.train)
    table = capsys.readouterr().out
    ratio = row.train["loop on-device"] / row.train["model-only"]
    assert f"| cnn6 | 32-cl | 4 | loop on-device | {row.train['loop on-device']:,.0f} " in table
    assert f"| {ratio:.2f} |" in table


def test_settings_parse_and_reject_unknown_names(throughput: ModuleType) -> None:
    setting = throughput.Setting.parse("bf16-cl-compile")
    assert (setting.precision, setting.channels_last, setting.compile) == ("bf16-mixed", True, True)
    assert throughput.Setting.parse("32").precision == "32-true"
    with pytest.raises(SystemExit, match="--settings"):
        throughput.Setting.parse("fp64-cl")


class _Tiny(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self.layer(batch[0]).square().mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_train_speed_reads_the_simple_profiler_report(tmp_path: Path) -> None:
    """The data-wait share comes from Lightning's own profiler table: parse a real one."""
    train_speed = load_script("train_speed")
    profiler = SimpleProfiler(dirpath=tmp_path, filename="profile")
    trainer = L.Trainer(
        accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, profiler=profiler,
    )  # fmt: skip
    data = DataLoader(TensorDataset(torch.randn(12, 2)), batch_size=4)
    trainer.fit(_Tiny(), data)
    report = (tmp_path / "fit-profile.txt").read_text()
    totals = train_speed.profiler_totals(report)
    assert totals["run_training_batch"] > 0
    assert 0 < totals["[_TrainingEpochLoop].train_dataloader_next"] < totals["run_training_epoch"]
    run = train_speed.Run(wall=1.0, batches=3.0, data_wait=1.0)
    assert run.wait_share == pytest.approx(0.25)
