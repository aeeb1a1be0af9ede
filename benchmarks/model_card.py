"""Model card numbers: parameters, multiply-adds and inference throughput of every model config.

Usage:
    python benchmarks/model_card.py [--models cnn6 cnn7 cascade timm resnet50 heatmap]
                                    [--device cpu|cuda] [--batch 32] [--seconds 3]

Builds each ``conf/model/<name>.yaml`` for the 68-point scheme, counts its parameters and its
multiply-adds for one image at the model's input size (``torch.utils.flop_counter``: FLOPs / 2),
and measures inference images/s (eval mode, no gradients, batches of ``--batch`` random images,
after warm-up, for about ``--seconds`` per model). Prints a Markdown table. Throughput on a
shared machine is noisy: compare models within one run, and quote absolute numbers only from a
dedicated machine.
"""

from __future__ import annotations

import argparse
import time

import torch
from hydra.utils import instantiate
from torch.utils.flop_counter import FlopCounterMode

from wingface.config import compose_config, register_resolvers

DEFAULT_MODELS = ("cnn6", "cnn7", "cascade", "timm", "resnet50", "heatmap")


def build(name: str) -> torch.nn.Module:
    """The network of ``model=<name>`` for the default data (68 points)."""
    return instantiate(compose_config([f"model={name}"]).model)


def multiply_adds(net: torch.nn.Module, size: int) -> float:
    """Multiply-adds of one forward pass on one ``size`` x ``size`` image."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        net(torch.randn(1, 3, size, size))
    return counter.get_total_flops() / 2.0


def throughput(net: torch.nn.Module, size: int, batch: int, seconds: float, device: str) -> float:
    """Inference images/s on random ``(batch, 3, size, size)`` inputs."""
    images = torch.randn(batch, 3, size, size, device=device)
    with torch.no_grad():
        for _ in range(2):
            net(images)
        if device == "cuda":
            torch.cuda.synchronize()
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            net(images)
            done += batch
        if device == "cuda":
            torch.cuda.synchronize()
        return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    register_resolvers()
    print(f"device: {args.device} ({torch.get_num_threads()} CPU threads), batch {args.batch}\n")
    print("| model | input px | parameters (M) | multiply-adds (G) | inference images/s |")
    print("|---|---|---|---|---|")
    for name in args.models:
        net = build(name).eval()
        size = net.input_size
        params = sum(p.numel() for p in net.parameters()) / 1e6
        macs = multiply_adds(net, size) / 1e9
        speed = throughput(net.to(args.device), size, args.batch, args.seconds, args.device)
        print(f"| {name} | {size} | {params:.2f} | {macs:.3f} | {speed:,.0f} |")


if __name__ == "__main__":
    main()
