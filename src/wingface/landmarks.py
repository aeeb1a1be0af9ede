"""Landmark schemes: point counts, flip permutations and eye indices.

Coordinates everywhere in wingface are 0-based pixels with the centre of pixel ``i`` at ``i``
(so the image spans ``[-0.5, W - 0.5]``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LandmarkScheme:
    """A landmark annotation scheme.

    Attributes:
        name: scheme name, e.g. ``"300w"``.
        num_points: number of landmarks ``L``.
        flip_permutation: ``(L,)`` indices; after a horizontal flip, point ``i`` of the flipped
            face is point ``flip_permutation[i]`` of the original.
        right_eye: 0-based indices of the subject's right eye (image left) contour points.
        left_eye: 0-based indices of the subject's left eye (image right) contour points.
        outer_eye_corners: the two outer eye corner indices used for inter-ocular distance.
    """

    name: str
    num_points: int
    flip_permutation: tuple[int, ...]
    right_eye: tuple[int, ...]
    left_eye: tuple[int, ...]
    outer_eye_corners: tuple[int, int]

    def flip_array(self) -> np.ndarray:
        """The flip permutation as an ``(L,)`` int64 array."""
        return np.asarray(self.flip_permutation, dtype=np.int64)


def _ibug68_flip_permutation() -> tuple[int, ...]:
    pairs = [(i, 16 - i) for i in range(8)]  # jaw
    pairs += [(17 + i, 26 - i) for i in range(5)]  # brows
    pairs += [(31, 35), (32, 34)]  # nose
    pairs += [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]  # eyes
    pairs += [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58), (60, 64), (61, 63), (65, 67)]
    perm = list(range(68))
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return tuple(perm)


IBUG68 = LandmarkScheme(
    name="300w",
    num_points=68,
    flip_permutation=_ibug68_flip_permutation(),
    right_eye=tuple(range(36, 42)),
    left_eye=tuple(range(42, 48)),
    outer_eye_corners=(36, 45),
)

SCHEMES: dict[str, LandmarkScheme] = {IBUG68.name: IBUG68}


def get_scheme(name: str) -> LandmarkScheme:
    """Look up a landmark scheme by name; raises ``KeyError`` naming the known schemes."""
    if name not in SCHEMES:
        raise KeyError(f"unknown landmark scheme {name!r}; expected one of {sorted(SCHEMES)}")
    return SCHEMES[name]
