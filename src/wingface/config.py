"""Hydra/OmegaConf helpers: resolvers, ``.env`` loading and composing configs outside an app."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = PROJECT_ROOT / "conf"


def register_resolvers() -> None:
    """Register ``${wingface_root:}`` (the repository root) once per process."""
    if not OmegaConf.has_resolver("wingface_root"):
        OmegaConf.register_new_resolver("wingface_root", lambda: str(PROJECT_ROOT))


def load_dotenv_file() -> None:
    """Read ``<root>/.env`` (if present) into the environment without overriding set values."""
    from dotenv import load_dotenv

    load_dotenv(PROJECT_ROOT / ".env", override=False)


def compose_config(
    overrides: list[str] | tuple[str, ...] = (),
    config_name: str = "train",
    with_hydra: bool = False,
) -> DictConfig:
    """``conf/<config_name>.yaml`` composed with ``overrides`` outside a Hydra app (tests,
    benchmarks, experiment scripts), as the entry point would compose it; with ``with_hydra``
    the ``hydra`` node is kept (``return_hydra_config``)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
            return compose(config_name, overrides=list(overrides), return_hydra_config=with_hydra)
    finally:
        GlobalHydra.instance().clear()


EVAL_OWN_KEYS = ("ckpt_path", "split", "task_name", "paths", "hydra")
"""Keys of ``conf/eval.yaml`` itself; every other override of ``src/eval.py`` changes the run's
config."""

GLOBAL_GROUPS = ("experiment", "budget", "debug", "hparams_search")
"""Config groups that change many keys at once (``@package _global_``): not applied to a
finished run's config."""


def split_eval_arguments(arguments: list[str]) -> tuple[list[str], list[str]]:
    """Split ``src/eval.py``'s command line into Hydra's own arguments (flags, ``ckpt_path``,
    ``task_name``, ``paths.*``, ``hydra.*``, flags and their values) and overrides of the
    run's config (every other ``key=value``, ``+key=value`` or ``~key``)."""
    own: list[str] = []
    run: list[str] = []
    for argument in arguments:
        key = argument.split("=", 1)[0].lstrip("+~").split("/", 1)[0].split(".", 1)[0]
        is_override = argument.startswith("~") or ("=" in argument and argument[0] != "-")
        (run if is_override and key not in EVAL_OWN_KEYS else own).append(argument)
    return own, run


def apply_run_overrides(
    run_cfg: DictConfig, overrides: list[str], recorded_overrides: list[str]
) -> None:
    """Apply command-line ``overrides`` to a finished run's recorded config, in place.

    Key overrides (``data.root=…``, ``+key=…``, ``~key``, lists, quoting) follow Hydra's
    grammar and rules: a key the run's config lacks is an error unless added with ``+``. A
    group override (``data=300w``) replaces that group's node with the option as the run's own
    overrides (``recorded_overrides``, from ``.hydra/overrides.yaml``) plus the group overrides
    compose it; the key overrides then apply, so ``data=300w data.root=…`` evaluates a run on
    another dataset.

    Raises:
        ValueError: a global group (``experiment=…``) or an unknown group.
    """
    from hydra import compose
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    groups = [o for o in parsed if "/" in o.key_or_group or _is_group(o.key_or_group)]
    keys = [o for o in parsed if o not in groups]
    if groups:
        names = [o.key_or_group for o in groups]
        global_groups = [name for name in names if name in GLOBAL_GROUPS]
        if global_groups:
            raise ValueError(
                f"{global_groups[0]}=… changes many keys of the run at once: evaluate with key "
                "overrides (e.g. data.root=…) or a group such as data=…"
            )
        kept = [o for o in recorded_overrides if not o.startswith(("hydra.", "ckpt_path="))]
        # the key overrides are applied to the run's config below, not to this composition
        composed = compose("train", overrides=[*kept, *(o.input_line for o in groups)])
        for name in names:
            run_cfg[name] = composed[name]
    if keys:
        struct = OmegaConf.is_struct(run_cfg)
        OmegaConf.set_struct(run_cfg, True)
        try:
            ConfigLoaderImpl._apply_overrides_to_config(keys, run_cfg)
        finally:
            OmegaConf.set_struct(run_cfg, struct)


def _is_group(name: str) -> bool:
    """Whether ``name`` is a config group of ``conf/`` (a folder of option files)."""
    return "." not in name and (CONFIG_DIR / name).is_dir()
