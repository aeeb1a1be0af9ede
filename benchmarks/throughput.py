"""Training and evaluation throughput: model-only ceiling vs end-to-end through the data module.

Usage:
    python benchmarks/throughput.py [--device cpu|cuda] [--quick]
        [--models cnn6 cnn7 resnet50] [--settings 32 32-cl bf16-cl bf16-cl-compile]
        [--paths default gpu on-device] [--seconds 4] [--json results.json]

For each model (CNN-6 at 64 px, CNN-7 at 128 px, ResNet-50 at 256 px: ``conf/model/*.yaml``) and
each speed setting (precision, channels-last, ``torch.compile``; on a GPU by default fp32,
bf16-mixed + channels-last, and the same compiled), in one run:

* **model-only** training images/s: the LightningModule's own training step (normalisation,
  forward, loss, backward, Adam step) on one synthetic uint8 batch already on the device: the
  ceiling any data path can reach;
* **end-to-end** training images/s through the real data module (``conf/data/synthetic.yaml``
  composed with Hydra: faces pre-cropped once into in-memory uint8 context crops), for each data
  path: ``default`` (albumentations per sample in loader workers), ``gpu`` (loader serves context
  crops, pinned memory, non-blocking copy, ``augment=gpu`` batched after transfer) and
  ``on-device`` (crops kept on the device, batches indexed and augmented there; with
  ``-compile`` settings also the augmentation is compiled, ``augment.compile``, and only this
  path is measured). Measured in a
  plain loop (loader ``next()``, transfer, augmentation, the same step), reporting the share of
  the time blocked waiting for the next batch, and the on-device path also inside
  ``Trainer.fit`` (Lightning's loop and logging included);
* the **ratio** end-to-end / model-only;
* **evaluation** images/s: model-only inference and through the validation loader.

Each number is images per second over at least ``--seconds`` after warm-up steps. On a shared
machine absolute numbers are noisy: the ratios, measured in the same run, are what to quote.
``--quick`` uses a few hundred faces, small batches and short timings (a smoke run on a CPU).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict

from wingface.config import PROJECT_ROOT, compose_config, register_resolvers
from wingface.data.datamodule import FaceDataModule
from wingface.module import LandmarkModule
from wingface.pipeline import build_module

MODELS = {"cnn6": 64, "cnn7": 128, "resnet50": 256}
"""Model config name -> its input size in pixels."""

BATCH = {
    "cuda": {"cnn6": 1024, "cnn7": 512, "resnet50": 256},
    "cpu": {"cnn6": 64, "cnn7": 32, "resnet50": 8},
}
QUICK_BATCH = {"cnn6": 32, "cnn7": 8, "resnet50": 2}


@dataclass
class Setting:
    """A speed setting: ``32`` / ``bf16`` / ``16`` precision, ``-cl`` channels-last,
    ``-compile`` torch.compile (e.g. ``bf16-cl-compile``)."""

    name: str
    precision: str
    channels_last: bool
    compile: bool

    @classmethod
    def parse(cls, name: str) -> Setting:
        parts = name.split("-")
        precision = {"32": "32-true", "bf16": "bf16-mixed", "16": "16-mixed"}.get(parts[0])
        unknown = set(parts[1:]) - {"cl", "compile"}
        if precision is None or unknown:
            raise SystemExit(f"--settings: cannot read {name!r} (e.g. 32, bf16-cl-compile)")
        return cls(name, precision, "cl" in parts, "compile" in parts)

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        """The autocast context of the precision (none for fp32)."""
        if self.precision == "32-true":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision.startswith("bf16") else torch.float16
        return torch.autocast(device.type, dtype=dtype)


@dataclass
class Row:
    """One model × setting: images/s of each measurement and the derived ratios."""

    model: str
    setting: str
    batch: int
    train: dict[str, float] = field(default_factory=dict)
    wait_share: dict[str, float] = field(default_factory=dict)
    eval: dict[str, float] = field(default_factory=dict)


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(
    step: Callable[[], Any], device: torch.device, warmup: int, seconds: float, min_steps: int
) -> tuple[float, int]:
    """``(seconds, steps)`` of repeated ``step()`` after ``warmup`` calls, at least
    ``min_steps`` and ``seconds``."""
    for _ in range(warmup):
        step()
    synchronise(device)
    start, steps = time.perf_counter(), 0
    while steps < min_steps or time.perf_counter() - start < seconds:
        step()
        steps += 1
    synchronise(device)
    return time.perf_counter() - start, steps


def compose_run(overrides: list[str], cache_dir: str) -> DictConfig:
    """The training config with ``overrides`` (synthetic faces cached in ``cache_dir``)."""
    cfg = compose_config(overrides)
    with open_dict(cfg):
        cfg.paths.cache_dir = cache_dir
        cfg.paths.output_dir = str(Path(cache_dir) / "throughput_run")
    return cfg


def module_for(cfg: DictConfig, setting: Setting, device: torch.device) -> LandmarkModule:
    """The run's LightningModule (:func:`wingface.pipeline.build_module`) with the setting's
    memory format and compilation, on ``device``."""
    torch.manual_seed(0)
    with open_dict(cfg):
        cfg.channels_last = setting.channels_last
        cfg.compile = setting.compile
    return build_module(cfg).to(device)


class Stepper:
    """The module's training step, its backward and an optimiser step, under the setting's
    autocast (with a gradient scaler for 16-mixed)."""

    def __init__(self, module: LandmarkModule, setting: Setting, device: torch.device) -> None:
        self.module = module.train()
        self.setting = setting
        self.device = device
        self.optimizer = torch.optim.Adam(module.parameters(), lr=1e-4)
        self.scaler = torch.amp.GradScaler(enabled=setting.precision == "16-mixed")

    def __call__(self, batch: dict[str, torch.Tensor]) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        with self.setting.autocast(self.device):
            _, loss = self.module.prediction_and_loss(batch)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()


def synthetic_batch(
    batch: int, size: int, device: torch.device, generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """A training batch of random uint8 images and landmarks already on ``device``."""
    return {
        "image": torch.randint(
            0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=generator
        ).to(device),
        "landmarks": (torch.rand(batch, 68, 2, generator=generator) * size).to(device),
        "visibility": torch.ones(batch, 68, device=device),
        "index": torch.arange(batch, device=device),
    }


def attach_device(datamodule: FaceDataModule, device: torch.device) -> None:
    """A stand-in trainer for the plain loop: where ``data.on_device`` keeps the crops."""
    datamodule.trainer = SimpleNamespace(  # type: ignore[assignment]
        strategy=SimpleNamespace(root_device=device), world_size=1, global_rank=0
    )


def endless(loader: Any) -> Iterator[dict[str, torch.Tensor]]:
    """Batches of ``loader`` epoch after epoch (``set_epoch`` on its sampler as Lightning)."""
    epoch = 0
    while True:
        sampler = getattr(loader, "sampler", None)
        if callable(getattr(sampler, "set_epoch", None)):
            sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def loop_throughput(
    datamodule: FaceDataModule,
    step: Callable[[dict[str, torch.Tensor]], None],
    device: torch.device,
    args: argparse.Namespace,
) -> tuple[float, float]:
    """``(images/s, data-wait share)`` of training batches through the data module."""
    attach_device(datamodule, device)
    datamodule.setup("fit")
    batches = endless(datamodule.train_dataloader())
    waited = 0.0
    images = 0

    def one() -> None:
        nonlocal waited, images
        start = time.perf_counter()
        batch = next(batches)
        waited += time.perf_counter() - start
        batch = datamodule.transfer_batch_to_device(batch, device, 0)
        batch = datamodule.on_after_batch_transfer(batch, 0)
        images += len(batch["image"])
        step(batch)

    for _ in range(args.warmup):
        one()
    synchronise(device)
    waited, images = 0.0, 0
    seconds, _ = timed(one, device, 0, args.seconds, args.min_steps)
    return images / seconds, waited / seconds


class _Clock(L.Callback):
    """Times training batches after the first ``warmup`` ones (device synchronised)."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.start = 0.0
        self.seconds = float("nan")
        self.images = 0

    def on_train_batch_start(self, trainer: L.Trainer, module: Any, batch: Any, idx: int) -> None:
        if trainer.global_step == self.warmup:
            synchronise(module.device)
            self.start = time.perf_counter()
            self.images = 0

    def on_train_batch_end(
        self, trainer: L.Trainer, module: Any, out: Any, batch: Any, idx: int
    ) -> None:
        if trainer.global_step > self.warmup:
            self.images += len(batch["image"])

    def on_train_end(self, trainer: L.Trainer, module: Any) -> None:
        synchronise(module.device)
        self.seconds = time.perf_counter() - self.start


def fit_throughput(
    module: LandmarkModule,
    datamodule: FaceDataModule,
    setting: Setting,
    device: torch.device,
    steps: int,
    args: argparse.Namespace,
) -> float:
    """Training images/s inside ``Trainer.fit`` (Lightning's loop, logging, hooks)."""
    clock = _Clock(args.warmup)
    trainer = L.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=1,
        precision=setting.precision,
        max_steps=args.warmup + steps,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[clock],
        default_root_dir=args.cache_dir,
    )
    trainer.fit(module.train(), datamodule=datamodule)
    module.to(device)  # Lightning's teardown moves the module back to the CPU
    return clock.images / clock.seconds


def eval_throughput(
    datamodule: FaceDataModule,
    module: LandmarkModule,
    setting: Setting,
    device: torch.device,
    args: argparse.Namespace,
) -> float:
    """Inference images/s over the validation loader (transfer included)."""
    attach_device(datamodule, device)
    datamodule.setup("validate")
    batches = endless(datamodule.val_dataloader())
    module.eval()
    images = 0

    def one() -> None:
        nonlocal images
        batch = datamodule.transfer_batch_to_device(next(batches), device, 0)
        with torch.no_grad(), setting.autocast(device):
            module(batch["image"])
        images += len(batch["image"])

    for _ in range(args.warmup):
        one()
    images = 0
    seconds, _ = timed(one, device, 0, args.seconds, args.min_steps)
    return images / seconds


def measure_model(
    model: str, settings: list[Setting], device: torch.device, args: argparse.Namespace
) -> Iterator[Row]:
    """One row per setting for ``model``; its data modules (faces cropped once) are shared."""
    size = MODELS[model]
    batch = args.batch or (QUICK_BATCH if args.quick else BATCH[device.type])[model]
    faces = args.faces or (8 * batch if args.quick else (2048 if device.type == "cuda" else 4000))
    val_faces = 2 * batch if args.quick else max(batch, 500)
    base = [
        f"model={model}",
        f"data.batch_size={batch}",
        f"data.eval_batch_size={batch}",
        f"data.source.num_train={faces}",
        f"data.source.num_val={val_faces}",
        "data.source.num_test=8",
        f"data.num_workers={args.workers}",
    ]
    paths = {
        "default": ["augment=default"],
        "gpu": ["augment=gpu"],
        "on-device": ["augment=gpu", "data.on_device=true"],
    }
    if not albumentations_available():
        paths.pop("default")
    paths = {name: extra for name, extra in paths.items() if name in args.paths}
    cfg = compose_run(base, args.cache_dir)
    built: dict[tuple[str, bool], FaceDataModule] = {}

    def datamodule_of(name: str, compiled: bool) -> FaceDataModule:
        """The data module of a path (built once; augment.compile follows the setting)."""
        compiled = compiled and name != "default"
        if (name, compiled) not in built:
            extra = [*paths[name], *(["augment.compile=true"] if compiled else [])]
            built[name, compiled] = instantiate(compose_run(base + extra, args.cache_dir).data)
        return built[name, compiled]

    paths["loader"] = []
    paths["on-device eval"] = ["data.on_device=true"]
    generator = torch.Generator().manual_seed(0)
    fixed = synthetic_batch(batch, size, device, generator)
    for setting in settings:
        row = Row(model, setting.name, batch)
        module = module_for(cfg, setting, device)
        stepper = Stepper(module, setting, device)
        warmup = args.warmup + (3 if setting.compile else 0)
        seconds, steps = timed(
            lambda stepper=stepper: stepper(fixed), device, warmup, args.seconds, args.min_steps
        )
        row.train["model-only"] = steps * batch / seconds
        # compiled settings: the on-device path only (each data module compiles its own
        # augmentation, and the compilations would dominate a short GPU check)
        train_paths = [p for p in paths if p in args.paths]
        if setting.compile:
            train_paths = [p for p in train_paths if p == "on-device"]
        for name in train_paths:
            datamodule = datamodule_of(name, setting.compile)
            speed, wait = loop_throughput(datamodule, stepper, device, args)
            row.train[f"loop {name}"] = speed
            row.wait_share[f"loop {name}"] = wait
        if "on-device" in paths and "on-device" in args.paths and not args.no_fit:
            steps = max(args.min_steps, int(args.seconds * row.train["model-only"] / batch))
            row.train["fit on-device"] = fit_throughput(
                module, datamodule_of("on-device", setting.compile), setting, device, steps, args
            )
        with torch.no_grad(), setting.autocast(device):
            module.eval()
            seconds, steps = timed(
                lambda module=module: module(fixed["image"]),
                device,
                args.warmup,
                args.seconds,
                args.min_steps,
            )
        row.eval["model-only"] = steps * batch / seconds
        for name, path in (("loader", "loader"), ("on-device", "on-device eval")):
            datamodule = datamodule_of(path, False)
            row.eval[name] = eval_throughput(datamodule, module, setting, device, args)
        yield row


def albumentations_available() -> bool:
    try:
        import albumentations  # noqa: F401
    except ImportError:
        return False
    return True


def print_table(rows: list[Row], device: torch.device) -> None:
    """Markdown tables: training and evaluation images/s and ratios to model-only."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"\ndevice: {name}; torch {torch.__version__}; {torch.get_num_threads()} CPU threads")
    print("\ntraining images/s (ratio to model-only; data-wait share of the loop's time)\n")
    print("| model | setting | batch | measurement | images/s | ratio | data wait |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        ceiling = row.train["model-only"]
        for key, value in row.train.items():
            wait = row.wait_share.get(key)
            wait_text = f"{100 * wait:.1f}%" if wait is not None else ""
            print(
                f"| {row.model} | {row.setting} | {row.batch} | {key} | {value:,.0f} "
                f"| {value / ceiling:.2f} | {wait_text} |"
            )
    print("\nevaluation images/s (ratio to model-only)\n")
    print("| model | setting | batch | measurement | images/s | ratio |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        ceiling = row.eval["model-only"]
        for key, value in row.eval.items():
            print(
                f"| {row.model} | {row.setting} | {row.batch} | {key} | {value:,.0f} "
                f"| {value / ceiling:.2f} |"
            )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cuda = torch.cuda.is_available()
    parser.add_argument("--device", default="cuda" if cuda else "cpu")
    parser.add_argument("--quick", action="store_true", help="tiny data and timings (smoke run)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--settings", nargs="+", default=None)
    parser.add_argument(
        "--paths", nargs="+", default=["default", "gpu", "on-device"],
        choices=["default", "gpu", "on-device"],
    )  # fmt: skip
    parser.add_argument("--seconds", type=float, default=None, help="per measurement")
    parser.add_argument("--min-steps", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--batch", type=int, default=None, help="override every model's batch")
    parser.add_argument("--faces", type=int, default=None, help="synthetic training faces")
    parser.add_argument("--workers", type=int, default=None, help="loader workers")
    parser.add_argument("--no-fit", action="store_true", help="skip the Trainer.fit measurement")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument(
        "--cache-dir",
        default=os.environ.get("WINGFACE_CACHE_DIR", str(PROJECT_ROOT / ".cache")),
        help="synthetic faces cache",
    )
    args = parser.parse_args(argv)
    on_gpu = args.device.startswith("cuda")
    if args.settings is None:
        args.settings = ["32", "bf16-cl", "bf16-cl-compile"] if on_gpu else ["32", "32-cl"]
    if args.seconds is None:
        args.seconds = 0.5 if args.quick else (3.0 if on_gpu else 4.0)
    if args.min_steps is None:
        args.min_steps = 2 if args.quick else 5
    if args.warmup is None:
        args.warmup = 1 if args.quick else 3
    if args.workers is None:
        args.workers = min(8, max(1, (os.cpu_count() or 2) - 2)) if on_gpu else 2
    return args


def main(argv: list[str] | None = None) -> list[Row]:
    args = parse_args(argv)
    register_resolvers()
    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("wingface").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    settings = [Setting.parse(name) for name in args.settings]
    rows = []
    for model in args.models:
        start = time.perf_counter()
        for row in measure_model(model, settings, device, args):
            rows.append(row)
            speeds = ", ".join(f"{k} {v:,.0f}" for k, v in row.train.items())
            print(
                f"{model} {row.setting}: {speeds} images/s "
                f"({time.perf_counter() - start:.0f} s so far)",
                flush=True,
            )
    print_table(rows, device)
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
