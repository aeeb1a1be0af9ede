"""Training-set balancing strategies: how many times each training face is repeated per epoch."""

from __future__ import annotations

import numpy as np


class NoBalance:
    """Every training face once per epoch (``balance=none``)."""

    def __call__(
        self, landmarks: np.ndarray, visibility: np.ndarray, flip_permutation: np.ndarray
    ) -> np.ndarray:
        """Repeat counts ``(N,)`` int64, all ones, for ``(N, L, 2)`` training shapes."""
        del visibility, flip_permutation
        return np.ones(len(landmarks), dtype=np.int64)
