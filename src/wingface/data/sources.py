"""Dataset sources: objects that load a split of faces as a FaceSet."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from wingface.data.faces import FaceSet
from wingface.data.synthetic import load_or_generate_synthetic

SPLITS = ("train", "val", "test")


class FaceSource(Protocol):
    """Anything that loads a named split (``train``, ``val``, ``test``) as a FaceSet."""

    def load(self, split: str) -> FaceSet: ...


class SyntheticSource:
    """The embedded synthetic faces: three independent seeded splits, cached on disk.

    Split ``k`` (train 0, val 1, test 2) is generated with seed ``seed + k``.

    Args:
        cache_dir: folder for the generated ``.npz`` files.
        num_train, num_val, num_test: faces per split.
        image_size: side of the rendered images in pixels.
        seed: base seed.
    """

    def __init__(
        self,
        cache_dir: str | Path,
        num_train: int,
        num_val: int,
        num_test: int,
        image_size: int = 128,
        seed: int = 0,
    ) -> None:
        sizes = {"train": num_train, "val": num_val, "test": num_test}
        for split, size in sizes.items():
            if size < 1:
                raise ValueError(f"data.source.num_{split} must be >= 1, got {size}")
        self.cache_dir = Path(cache_dir)
        self.sizes = sizes
        self.image_size = image_size
        self.seed = seed

    def load(self, split: str) -> FaceSet:
        """Generate (or read from the cache) the faces of ``split``."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        return load_or_generate_synthetic(
            self.cache_dir,
            num_faces=self.sizes[split],
            seed=self.seed + SPLITS.index(split),
            image_size=self.image_size,
        )
