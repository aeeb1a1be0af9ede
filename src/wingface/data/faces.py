"""The in-memory face set every dataset reader produces."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class FaceSet:
    """A set of ``N`` faces with ``L`` landmarks each, held as numpy arrays.

    Attributes:
        images: ``(N, H, W, 3)`` uint8 RGB images (all the same size), or a list of
            ``(H_i, W_i, 3)`` uint8 arrays when sizes differ.
        landmarks: ``(N, L, 2)`` float32 ``(x, y)`` in 0-based pixels of each image
            (the centre of pixel ``i`` is at ``i``).
        visibility: ``(N, L)`` bool, True where the point has a ground-truth position
            (used as the loss weight and the metric mask).
        boxes: ``(N, 4)`` float32 face boxes ``(x0, y0, x1, y1)`` in the same pixel frame.
        flip_permutation: ``(L,)`` int64, the scheme's horizontal-flip re-indexing.
        poses: ``(N, 3)`` float32 head pose ``(yaw, pitch, roll)`` in degrees, or None when unknown.
        occluded: ``(N, L)`` bool, True where a point is hidden (self-occlusion or an occluder),
            or None when unknown.
        names: per-face identifiers (file names or synthetic indices).
        attributes: named ``(N,)`` bool flags for evaluation subsets (e.g. WFLW's ``pose``,
            ``occlusion``); empty when the dataset has none.
        dropped: one ``"<file or face>: <reason>"`` line per face the reader left out under
            ``data.on_bad_sample=skip`` (see :mod:`wingface.data.checks`); empty otherwise.
            Kept by :meth:`subset` (it describes the files the set was read from).

    Raises:
        ValueError: for inconsistent shapes, or a NaN or infinite landmark or box of a face
            (naming the face).
    """

    images: np.ndarray | list[np.ndarray]
    landmarks: np.ndarray
    visibility: np.ndarray
    boxes: np.ndarray
    flip_permutation: np.ndarray
    poses: np.ndarray | None = None
    occluded: np.ndarray | None = None
    names: list[str] = field(default_factory=list)
    attributes: dict[str, np.ndarray] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.landmarks.ndim != 3 or self.landmarks.shape[0] != n or self.landmarks.shape[2] != 2:
            raise ValueError(
                f"landmarks must have shape ({n}, L, 2), got {tuple(self.landmarks.shape)}"
            )
        num_points = self.landmarks.shape[1]
        if self.visibility.shape != (n, num_points):
            raise ValueError(
                f"visibility must have shape ({n}, {num_points}), got {self.visibility.shape}"
            )
        if self.boxes.shape != (n, 4):
            raise ValueError(f"boxes must have shape ({n}, 4), got {self.boxes.shape}")
        if self.flip_permutation.shape != (num_points,):
            raise ValueError(
                f"flip_permutation must have shape ({num_points},), "
                f"got {self.flip_permutation.shape}"
            )
        if not self.names:
            self.names = [str(i) for i in range(n)]
        for key, flags in self.attributes.items():
            if np.shape(flags) != (n,):
                raise ValueError(f"attribute {key!r} must have shape ({n},), got {np.shape(flags)}")
        self._check_finite()

    def _check_finite(self) -> None:
        """Raise naming the first face with a NaN or infinite visible landmark or box value."""
        visible = np.asarray(self.visibility, dtype=bool)
        bad_points = (~np.isfinite(self.landmarks).all(axis=2) & visible).any(axis=1)
        bad = np.flatnonzero(bad_points | ~np.isfinite(self.boxes).all(axis=1))
        if len(bad):
            raise ValueError(
                f"face {self.names[bad[0]]!r} has NaN or infinite landmark or box values "
                f"({len(bad)} face(s) affected)"
            )

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_points(self) -> int:
        """Number of landmarks ``L``."""
        return int(self.landmarks.shape[1])

    def subset(self, indices: np.ndarray) -> FaceSet:
        """The faces at ``indices`` (an int array), as a new FaceSet sharing no index state."""
        indices = np.asarray(indices, dtype=np.int64)
        images = (
            self.images[indices]
            if isinstance(self.images, np.ndarray)
            else [self.images[i] for i in indices]
        )
        return FaceSet(
            images=images,
            landmarks=self.landmarks[indices],
            visibility=self.visibility[indices],
            boxes=self.boxes[indices],
            flip_permutation=self.flip_permutation,
            poses=None if self.poses is None else self.poses[indices],
            occluded=None if self.occluded is None else self.occluded[indices],
            names=[self.names[i] for i in indices],
            attributes={key: flags[indices] for key, flags in self.attributes.items()},
            dropped=list(self.dropped),
        )
