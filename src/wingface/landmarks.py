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


def _flip_permutation(num_points: int, pairs: list[tuple[int, int]]) -> tuple[int, ...]:
    """The involution swapping each ``(a, b)`` pair and fixing every other index."""
    perm = list(range(num_points))
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return tuple(perm)


_IBUG68_PAIRS = [(i, 16 - i) for i in range(8)]  # jaw
_IBUG68_PAIRS += [(17 + i, 26 - i) for i in range(5)]  # brows
_IBUG68_PAIRS += [(31, 35), (32, 34)]  # nose
_IBUG68_PAIRS += [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]  # eyes
_IBUG68_PAIRS += [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58), (60, 64), (61, 63), (65, 67)]

IBUG68 = LandmarkScheme(
    name="300w",
    num_points=68,
    flip_permutation=_flip_permutation(68, _IBUG68_PAIRS),
    right_eye=tuple(range(36, 42)),
    left_eye=tuple(range(42, 48)),
    outer_eye_corners=(36, 45),
)
"""300-W / iBUG 68 points (0-based): 0-16 jaw, 17-21 right brow, 22-26 left brow, 27-35 nose,
36-41 right eye, 42-47 left eye, 48-67 mouth ("right" = the subject's right = image left)."""

AFLW19 = LandmarkScheme(
    name="aflw19",
    num_points=19,
    flip_permutation=_flip_permutation(
        19, [(0, 5), (1, 4), (2, 3), (6, 11), (7, 10), (8, 9), (12, 14), (15, 17)]
    ),
    right_eye=(7,),
    left_eye=(10,),
    outer_eye_corners=(6, 11),
)
"""AFLW-19: AFLW's 21 points without the ears. 0-based order ("left" = image left):
0-2 left brow (left corner, centre, right corner), 3-5 right brow (same), 6-8 left eye (left
corner, centre, right corner), 9-11 right eye (same), 12-14 nose (left, centre, right), 15-17
mouth (left corner, centre, right corner), 18 chin centre. ``right_eye``/``left_eye`` are the two
eye centres (the subject's right eye is the image-left one); AFLW's usual NME divides by the
face-box size instead."""

_WFLW98_PAIRS = [(i, 32 - i) for i in range(16)]  # contour; 16 (chin) stays
_WFLW98_PAIRS += [(33 + i, 46 - i) for i in range(5)]  # upper brow edges 33-37 <-> 46-42
_WFLW98_PAIRS += [(38 + i, 50 - i) for i in range(4)]  # lower brow edges 38-41 <-> 50-47
_WFLW98_PAIRS += [(55, 59), (56, 58)]  # lower nose; 51-54 and 57 stay
_WFLW98_PAIRS += [(60 + i, 72 - i) for i in range(5)]  # eye corners and upper lids
_WFLW98_PAIRS += [(65 + i, 75 - i) for i in range(3)]  # lower lids 65-67 <-> 75-73
_WFLW98_PAIRS += [(76 + i, 82 - i) for i in range(3)]  # outer upper lip; 79 stays
_WFLW98_PAIRS += [(83, 87), (84, 86)]  # outer lower lip; 85 stays
_WFLW98_PAIRS += [(88, 92), (89, 91), (93, 95)]  # inner lip; 90 and 94 stay
_WFLW98_PAIRS += [(96, 97)]  # pupils

WFLW98 = LandmarkScheme(
    name="wflw",
    num_points=98,
    flip_permutation=_flip_permutation(98, _WFLW98_PAIRS),
    right_eye=(96,),
    left_eye=(97,),
    outer_eye_corners=(60, 72),
)
"""WFLW 98 points: 0-32 contour, 33-50 brows, 51-59 nose, 60-67 right eye (60 outer corner),
68-75 left eye (72 outer corner), 76-95 mouth, 96/97 pupils. Inter-ocular NME uses (60, 72);
``right_eye``/``left_eye`` are the annotated pupils."""

_COFW29_PAIRS = [(0, 1), (2, 3), (4, 6), (5, 7)]  # brows
_COFW29_PAIRS += [(8, 9), (10, 11), (12, 14), (13, 15), (16, 17)]  # eyes and pupils
_COFW29_PAIRS += [(18, 19), (22, 23)]  # nose wings, mouth corners

COFW29 = LandmarkScheme(
    name="cofw",
    num_points=29,
    flip_permutation=_flip_permutation(29, _COFW29_PAIRS),
    right_eye=(16,),
    left_eye=(17,),
    outer_eye_corners=(8, 9),
)
"""COFW 29 points: (8, 9) are the outer eye corners (the usual inter-ocular normalisation),
(16, 17) the pupils (their side assignment is not confirmed by the release; distances do not
depend on it)."""

SCHEMES: dict[str, LandmarkScheme] = {s.name: s for s in (IBUG68, AFLW19, WFLW98, COFW29)}


def scheme_with_points(num_points: int) -> LandmarkScheme:
    """The landmark scheme of ``num_points`` points (each scheme has its own count).

    Raises:
        ValueError: no scheme has that many points.
    """
    for scheme in SCHEMES.values():
        if scheme.num_points == num_points:
            return scheme
    counts = {s.name: s.num_points for s in SCHEMES.values()}
    raise ValueError(f"no landmark scheme has {num_points} points (schemes: {counts})")


def get_scheme(name: str) -> LandmarkScheme:
    """Look up a landmark scheme by name; raises ``KeyError`` naming the known schemes."""
    if name not in SCHEMES:
        raise KeyError(f"unknown landmark scheme {name!r}; expected one of {sorted(SCHEMES)}")
    return SCHEMES[name]


def tight_boxes(landmarks: np.ndarray) -> np.ndarray:
    """``(N, 4)`` float64 tight boxes ``(x0, y0, x1, y1)`` of ``(N, L, 2)`` landmarks (pixels):
    the face box convention of 300-W and the synthetic faces."""
    landmarks = np.asarray(landmarks, dtype=np.float64)
    return np.concatenate([landmarks.min(axis=1), landmarks.max(axis=1)], axis=1)
