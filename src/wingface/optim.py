"""Learning-rate schedules, built per optimisation step from the run's total step count."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR


def one_cycle(
    optimizer: Optimizer, total_steps: int, pct_start: float = 0.3, div_factor: float = 25.0
) -> LRScheduler:
    """One-cycle schedule peaking at the optimizer's learning rate (``optim.optimizer.lr``)."""
    peak = [group["lr"] for group in optimizer.param_groups]
    return OneCycleLR(
        optimizer,
        max_lr=peak,
        total_steps=max(total_steps, 1),
        pct_start=pct_start,
        div_factor=div_factor,
    )


def log_linear_decay(optimizer: Optimizer, total_steps: int, final_lr: float) -> LRScheduler:
    """Decay the learning rate geometrically from its initial value to ``final_lr``.

    The paper's schedule: e.g. 3e-3 → 3e-6 over the whole run for CNN-6.
    """
    initial = optimizer.param_groups[0]["lr"]
    if not 0 < final_lr <= initial:
        raise ValueError(
            f"optim.scheduler.final_lr must be in (0, optim.optimizer.lr={initial}], got {final_lr}"
        )
    log_ratio = math.log(final_lr / initial)
    steps = max(total_steps - 1, 1)
    return LambdaLR(optimizer, lambda step: math.exp(log_ratio * min(step, steps) / steps))
