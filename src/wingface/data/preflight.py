"""Checks of a composed run config that need no data: run before anything is loaded or built."""

from __future__ import annotations

from omegaconf import DictConfig

from wingface.data.checks import check_policy


def _positive_int(value: object, key: str) -> int:
    """``value`` as an int > 0, or a ValueError naming the config ``key``."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{key} must be a positive whole number of pixels, got {value!r}")
    return value


def check_run_config(cfg: DictConfig) -> None:
    """Fail fast on data/model settings that cannot work together.

    Checks ``data.on_bad_sample`` (``error`` or ``skip``) and that the crops the data module
    makes (``data.input_size``, pixels) are the network's input (``model.input_size``,
    pixels): a model fed crops of another size fails or, with global pooling, silently
    predicts in the wrong pixel frame. Keys a config does not have are not checked; the
    model's own constraints (e.g. CNN-6's input side divisible by 32) are checked when it is
    built, also before any data is read.

    Raises:
        ValueError: naming the config key(s), the value(s) and what was expected.
    """
    data = cfg.get("data")
    model = cfg.get("model")
    if data is None:
        return
    if "on_bad_sample" in data:
        check_policy(data.on_bad_sample)
    if model is None or "input_size" not in data or "input_size" not in model:
        return
    data_size = _positive_int(data.input_size, "data.input_size")
    model_size = _positive_int(model.input_size, "model.input_size")
    if data_size != model_size:
        raise ValueError(
            f"data.input_size={data_size} does not match model.input_size={model_size}: the "
            f"data module crops faces to the network's input size; leave data.input_size at "
            f"${{model.input_size}} and set model.input_size"
        )
