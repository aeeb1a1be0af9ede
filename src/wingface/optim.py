"""Learning-rate schedules, built per optimisation step from the run's total step count."""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR

log = logging.getLogger(__name__)

LR_SCALING = ("none", "linear", "sqrt")
"""Rules for the learning rate at another batch size (``optim.lr_scaling``)."""


def scaled_lr(lr: float, batch_size: int, base_batch_size: int, rule: str) -> float:
    """The learning rate for ``batch_size`` from ``lr`` tuned at ``base_batch_size``.

    ``none`` keeps ``lr``; ``linear`` multiplies it by ``batch_size / base_batch_size`` (SGD's
    usual rule); ``sqrt`` by the square root of that ratio (the usual rule for Adam).

    Raises:
        ValueError: naming ``optim.lr_scaling`` or ``optim.base_batch_size``.
    """
    if rule not in LR_SCALING:
        raise ValueError(f"optim.lr_scaling must be one of {LR_SCALING}, got {rule!r}")
    if isinstance(base_batch_size, bool) or not isinstance(base_batch_size, int):
        raise ValueError(f"optim.base_batch_size must be a whole number, got {base_batch_size!r}")
    if base_batch_size < 1:
        raise ValueError(f"optim.base_batch_size must be >= 1, got {base_batch_size}")
    ratio = batch_size / base_batch_size
    return lr * {"none": 1.0, "linear": ratio, "sqrt": math.sqrt(ratio)}[rule]


def scale_optimizer_lr(
    optimizer: Callable[..., Optimizer],
    batch_size: int,
    base_batch_size: int = 64,
    rule: str = "none",
) -> Callable[..., Optimizer]:
    """The optimizer factory (``optim.optimizer``, a partial with ``lr``) with its learning
    rate scaled from ``base_batch_size`` to ``batch_size`` by ``rule`` (:func:`scaled_lr`).

    The batch size is the per-process ``data.batch_size``; under DDP each update averages
    over all processes, so scale ``optim.base_batch_size`` accordingly.
    """
    lr = scaled_lr(1.0, batch_size, base_batch_size, rule)  # validates the options
    if rule == "none":
        return optimizer
    if not isinstance(optimizer, functools.partial) or "lr" not in optimizer.keywords:
        raise ValueError(
            f"optim.lr_scaling={rule} needs optim.optimizer to set lr (a partial optimizer)"
        )
    base_lr = float(optimizer.keywords["lr"])
    lr = scaled_lr(base_lr, batch_size, base_batch_size, rule)
    log.info(
        "learning rate %.3g for batch %d (%s scaling of %.3g at batch %d)",
        lr,
        batch_size,
        rule,
        base_lr,
        base_batch_size,
    )
    return functools.partial(optimizer.func, *optimizer.args, **{**optimizer.keywords, "lr": lr})


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
