"""Read an offline W&B run's ``run-<id>.wandb`` file: the records the W&B service wrote.

The file is a 7-byte header (``:W&B``, a magic number and a version) followed by the LevelDB log
format: 32 KiB blocks of chunks, each with a 7-byte header (CRC32C, length, type: 1 full,
2 first, 3 middle, 4 last) carrying serialised ``wandb_internal_pb2.Record`` messages.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2

BLOCK_SIZE = 32 * 1024
HEADER_SIZE = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_records(path: Path) -> list[wandb_internal_pb2.Record]:
    """Every record of the ``.wandb`` file ``path``, in order."""
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    records, pending, pos = [], b"", HEADER_SIZE
    while pos + HEADER_SIZE <= len(data):
        if BLOCK_SIZE - pos % BLOCK_SIZE < HEADER_SIZE:  # block trailer: skip to the next block
            pos += BLOCK_SIZE - pos % BLOCK_SIZE
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER_SIZE])
        chunk = data[pos + HEADER_SIZE : pos + HEADER_SIZE + length]
        pos += HEADER_SIZE + length
        if kind == 0 and length == 0:
            break
        if kind in (FULL, FIRST):
            pending = chunk
        elif kind in (MIDDLE, LAST):
            pending += chunk
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


class OfflineRun:
    """The run, history and summary of one ``offline-run-*`` folder."""

    def __init__(self, folder: Path) -> None:
        files = list(folder.glob("run-*.wandb"))
        assert len(files) == 1, f"expected one run file in {folder}, got {files}"
        self.folder = folder
        self.records = read_records(files[0])
        runs = [r.run for r in self.records if r.WhichOneof("record_type") == "run"]
        assert runs, f"no run record in {files[0]}"
        self.run = runs[0]
        self.history: list[dict[str, Any]] = [
            {_key(item): json.loads(item.value_json) for item in r.history.item}
            for r in self.records
            if r.WhichOneof("record_type") == "history"
        ]

    def charts(self) -> dict[str, dict[str, Any]]:
        """Native W&B charts (``wandb.plot.*``) by key: their panel configs from the run config."""
        charts = {}
        for record in self.records:
            if record.WhichOneof("record_type") != "config":
                continue
            for item in record.config.update:
                if list(item.nested_key[:2]) == ["_wandb", "visualize"]:
                    charts[item.nested_key[2]] = json.loads(item.value_json)
        return charts

    def series(self, key: str) -> list[Any]:
        """Every logged value of ``key``, in logging order."""
        return [row[key] for row in self.history if key in row]

    def media(self, kind: str, key: str) -> list[Path]:
        """Files W&B stored for media ``key`` (e.g. ``kind="table"``, ``key="test/ced_table"``)."""
        folder, name = key.rsplit("/", 1)
        return sorted((self.folder / "files" / "media" / kind / folder).glob(f"{name}_*"))


def _key(item: Any) -> str:
    return item.key or "/".join(item.nested_key)
