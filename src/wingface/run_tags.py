"""W&B tags that say what a run is: ``loss=wing``, ``w=10``, ``eps=2``, ``data=synthetic``, ...

Runs of a sweep are then filtered and grouped by these tags in the W&B interface without
opening their configs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from omegaconf import DictConfig

# config groups whose chosen option becomes a tag, e.g. ``model=cnn6``
TAGGED_GROUPS = ("data", "model", "loss", "balance", "augment")
# scalar loss parameters that become tags, e.g. ``w=10`` (every loss of the zoo that has them)
TAGGED_LOSS_KEYS = ("w", "eps", "r", "w1", "w2", "beta", "omega", "theta", "epsilon", "alpha")
# W&B refuses tags longer than this
MAX_TAG_LENGTH = 64


def _format(value: Any) -> str:
    """``10.0`` → ``10``, ``0.5`` → ``0.5``; other values as ``str``."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _option_from_target(node: Any) -> str | None:
    """A group's option name guessed from its ``_target_`` class (``WingLoss`` → ``wingloss``),
    for configs composed without Hydra's record of the chosen options."""
    if isinstance(node, Mapping | DictConfig) and "_target_" in node:
        return str(node["_target_"]).rsplit(".", 1)[-1].lower()
    return None


def run_tags(
    cfg: DictConfig, base: Sequence[str] = (), choices: Mapping[str, Any] | None = None
) -> list[str]:
    """``base`` (the logger's configured tags) followed by one tag per chosen config option and
    loss parameter, without duplicates.

    Args:
        cfg: the composed run config.
        base: tags configured by hand (``logger.wandb.tags``, the run's ``tags`` by default).
        choices: Hydra's chosen option per config group (``HydraConfig.get().runtime.choices``);
            None guesses the options from the groups' ``_target_`` classes.
    """
    tags = [str(t) for t in base]
    for group in TAGGED_GROUPS:
        option = (choices or {}).get(group) or _option_from_target(cfg.get(group))
        if option is not None:
            tags.append(f"{group}={option}")
    loss = cfg.get("loss") or {}
    for key in TAGGED_LOSS_KEYS:
        value = loss.get(key) if isinstance(loss, Mapping | DictConfig) else None
        if isinstance(value, int | float) and not isinstance(value, bool):
            tags.append(f"{key}={_format(value)}")
    unique = list(dict.fromkeys(tags))
    too_long = [t for t in unique if len(t) > MAX_TAG_LENGTH]
    if too_long:
        raise ValueError(f"tags: W&B tags must be at most {MAX_TAG_LENGTH} characters: {too_long}")
    return unique
