"""Dataset sources: objects that load a split of faces as a FaceSet."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np

from wingface.data.faces import FaceSet
from wingface.data.synthetic import load_or_generate_synthetic

SPLITS = ("train", "val", "test")

YAW_BINS: tuple[tuple[int, int], ...] = ((0, 30), (30, 60), (60, 90))
"""|yaw| ranges in degrees flagged on synthetic faces (``yaw_0_30`` ...; 90 is included in the
last one), so that test metrics can be reported per pose."""


def yaw_bin_flags(poses: np.ndarray, prefix: str = "yaw") -> dict[str, np.ndarray]:
    """``<prefix>_<lo>_<hi>`` bool flags ``(N,)`` from ``(N, 3)`` poses (yaw first, degrees);
    a NaN yaw (unknown) is in no bin."""
    yaw = np.abs(poses[:, 0])
    flags = {}
    for low, high in YAW_BINS:
        upper = yaw <= high if high == YAW_BINS[-1][1] else yaw < high
        flags[f"{prefix}_{low}_{high}"] = (yaw >= low) & upper
    return flags


class FaceSource(Protocol):
    """Anything that loads a named split (``train``, ``val``, ``test``) as a FaceSet."""

    def load(self, split: str) -> FaceSet: ...


class SyntheticSource:
    """The embedded synthetic faces: three independent seeded splits, cached on disk.

    Split ``k`` (train 0, val 1, test 2) is generated with seed ``seed + k``. Every face is
    flagged with its true |yaw| range (:data:`YAW_BINS`) for per-pose evaluation.

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
        faces = load_or_generate_synthetic(
            self.cache_dir,
            num_faces=self.sizes[split],
            seed=self.seed + SPLITS.index(split),
            image_size=self.image_size,
        )
        faces.attributes.update(yaw_bin_flags(faces.poses))
        return faces


def split_off_validation(faces: FaceSet, fraction: float, seed: int) -> tuple[FaceSet, FaceSet]:
    """Hold out a seeded random ``fraction`` of ``faces`` as a validation set.

    Returns ``(train, val)``; both keep the original order of their faces.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"data.source.val_fraction must be in (0, 1), got {fraction}")
    num_val = max(1, round(len(faces) * fraction))
    order = np.random.default_rng(seed).permutation(len(faces))
    val = np.sort(order[:num_val])
    train = np.sort(order[num_val:])
    return faces.subset(train), faces.subset(val)


class TrainTestSource:
    """A dataset with official training and test files; validation is held out from training.

    Most landmark benchmarks (300-W, AFLW, WFLW, COFW) publish a training and a test set but
    no validation set, so a seeded ``val_fraction`` of the training faces is held out for model
    selection and the test set is only used for the final numbers.

    Args:
        train: loads the training faces (a reader from ``wingface.data.formats`` with its
            arguments bound, e.g. ``load_300w(root, folders=[afw, ...])``).
        test: loads the test faces; their attribute flags define the protocol's subsets.
        val_fraction: share of the training faces held out for validation.
        seed: seed of the validation split.
    """

    def __init__(
        self,
        train: Callable[[], FaceSet],
        test: Callable[[], FaceSet],
        val_fraction: float = 0.05,
        seed: int = 0,
    ) -> None:
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"data.source.val_fraction must be in (0, 1), got {val_fraction}")
        self.train = train
        self.test = test
        self.val_fraction = val_fraction
        self.seed = seed
        self._train_val: tuple[FaceSet, FaceSet] | None = None

    def load(self, split: str) -> FaceSet:
        """Read the faces of ``split`` (the training files are read once for train and val)."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        if split == "test":
            return self.test()
        if self._train_val is None:
            self._train_val = split_off_validation(self.train(), self.val_fraction, self.seed)
        return self._train_val[0] if split == "train" else self._train_val[1]
