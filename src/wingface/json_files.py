"""Reading the JSON records a run folder holds (``metrics.json``, ``run_info.json``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_json_object(path: Path, expected: str) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None when there is no such file.

    Args:
        path: the file.
        expected: what the object holds, for the error message (e.g. "a JSON object of metrics").

    Raises:
        ValueError: naming the file, when it is not valid JSON or not a JSON object.
    """
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(record, dict):
        raise ValueError(f"{path}: expected {expected}")
    return record
