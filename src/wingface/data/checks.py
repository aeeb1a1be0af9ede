"""Checks shared by the dataset readers: the bad-sample policy and landmark plausibility.

``data.on_bad_sample`` decides what a reader does with a face it cannot use (an unreadable or
missing image, an annotation that does not parse, landmarks far outside the image):

- ``error`` (the default): the first such face raises, naming the file (and line);
- ``skip``: the face is left out and recorded in :attr:`FaceSet.dropped`; the data module logs
  a warning naming every dropped face and writes the list to ``bad_samples.txt`` in the run
  folder, so nothing is dropped silently.

Problems with the dataset as a whole (a missing or empty folder, a missing annotation file, a
file in another dataset's format that yields no face at all) always raise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from wingface.data.faces import FaceSet
from wingface.landmarks import LandmarkScheme
from wingface.metrics import normalising_distances

BAD_SAMPLES_FILE = "bad_samples.txt"
"""The list of dropped faces in the run folder, one ``"<file or face>: <reason>"`` per line."""

ON_BAD_SAMPLE = ("error", "skip")
"""The values of ``data.on_bad_sample``."""

OUTSIDE_TOLERANCE = 1.0
"""How far outside its image a landmark may lie, in image sides.

With ``W x H`` images, an x coordinate must lie in ``[-t * W - 0.5, (1 + t) * W - 0.5]`` and
a y coordinate in ``[-t * H - 0.5, (1 + t) * H - 0.5]`` pixels (``t`` = this tolerance, 0-based
pixels whose centres are at integers). Points a little outside the picture are normal (faces
cut by the image border, 300-W crops clipped at the photo border); a point further out than the
image is wide is a wrong coordinate frame, wrong units or a corrupt annotation.
"""


def check_policy(policy: object) -> str:
    """``policy`` if it is one of :data:`ON_BAD_SAMPLE`, else a ValueError naming the key."""
    if policy not in ON_BAD_SAMPLE:
        raise ValueError(
            f"data.on_bad_sample must be one of {', '.join(ON_BAD_SAMPLE)}, got {policy!r}"
        )
    return str(policy)


def check_landmarks_in_image(
    landmarks: np.ndarray,
    image_shape: tuple[int, ...],
    where: str,
    visibility: np.ndarray | None = None,
) -> None:
    """Raise if a landmark is NaN, infinite or more than :data:`OUTSIDE_TOLERANCE` image sides
    outside its image.

    Args:
        landmarks: ``(L, 2)`` ``(x, y)`` in 0-based pixels of the image.
        image_shape: the image's ``(H, W, ...)`` shape.
        where: the file (and line) for the message.
        visibility: ``(L,)`` bool; points without a position (False) are not checked.

    Raises:
        ValueError: naming ``where``, the first offending point (0-based index) and the range.
    """
    height, width = int(image_shape[0]), int(image_shape[1])
    points = np.asarray(landmarks, dtype=np.float64)
    checked = np.ones(len(points), dtype=bool) if visibility is None else np.asarray(visibility)
    finite = np.isfinite(points).all(axis=1)
    bad = np.flatnonzero(checked & ~finite)
    if len(bad):
        raise ValueError(f"{where}: landmark {bad[0]} is NaN or infinite: {points[bad[0]]}")
    t = OUTSIDE_TOLERANCE
    low = np.array([-t * width - 0.5, -t * height - 0.5])
    high = np.array([(1 + t) * width - 0.5, (1 + t) * height - 0.5])
    outside = ((points < low) | (points > high)).any(axis=1) & checked
    bad = np.flatnonzero(outside)
    if len(bad):
        x, y = points[bad[0]]
        raise ValueError(
            f"{where}: landmark {bad[0]} at ({x:.6g}, {y:.6g}) lies more than {t:g} image "
            f"side(s) outside the {width}x{height} image (allowed x in [{low[0]:g}, {high[0]:g}], "
            f"y in [{low[1]:g}, {high[1]:g}]; {len(bad)} point(s) out of range): wrong "
            f"coordinate frame or a corrupt annotation?"
        )


class BadSamples:
    """Applies ``data.on_bad_sample`` while a reader goes through its faces.

    Args:
        policy: ``"error"`` or ``"skip"``.

    Attributes:
        dropped: one ``"<file or face>: <reason>"`` line per face left out (``skip`` only).
    """

    def __init__(self, policy: str) -> None:
        self.policy = check_policy(policy)
        self.dropped: list[str] = []

    def drop(self, error: Exception, name: str | None = None) -> None:
        """Leave out a face because of ``error``; re-raises ``error`` under ``error``.

        ``name`` (the file or face) prefixes the recorded reason unless the message names it.
        """
        if self.policy == "error":
            raise error
        reason = str(error)
        self.dropped.append(reason if name is None or name in reason else f"{name}: {reason}")

    def check_some_left(self, kept: int, what: str, dropped: list[str] | None = None) -> None:
        """Raise when ``kept == 0`` and faces of ``what`` were dropped (``dropped``, all of
        :attr:`dropped` by default): every face was bad, which means a wrong folder or format
        rather than a few bad files."""
        dropped = self.dropped if dropped is None else dropped
        if kept == 0 and dropped:
            raise ValueError(
                f"{what}: no usable face, all {len(dropped)} were bad (wrong folder or format "
                f"for this data= option?); first: {dropped[0]}"
            )


def degenerate_faces(
    faces: FaceSet, normalisations: list[str], scheme: LandmarkScheme
) -> dict[int, str]:
    """``{face index: reason}`` for the faces no crop or metric can use.

    A face is degenerate when its box has no extent (zero or negative width or height: every
    crop is cut around it), or, for each of ``normalisations`` (the protocol's, given for
    evaluated splits; empty for training), when its normalising distance is not > 0 or needs
    an eye point that has no position: an NME would divide by zero.
    """
    reasons: dict[int, list[str]] = {}
    boxes = np.asarray(faces.boxes, dtype=np.float64)
    extent = np.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], axis=1)
    for i in np.flatnonzero(~(extent > 0).all(axis=1)):
        box = ", ".join(f"{v:.6g}" for v in boxes[i])
        reasons.setdefault(int(i), []).append(
            f"face box ({box}) has no extent (width {extent[i, 0]:.6g}, height "
            f"{extent[i, 1]:.6g} px): landmarks all at one point or on one line?"
        )
    if len(faces) and normalisations:
        landmarks = torch.from_numpy(np.asarray(faces.landmarks, dtype=np.float32))
        visibility = torch.from_numpy(np.asarray(faces.visibility, dtype=bool))
        for kind in normalisations:
            distances, usable = normalising_distances(landmarks, visibility, kind, scheme)
            for i in np.flatnonzero(~usable.numpy()):
                reasons.setdefault(int(i), []).append(
                    f"{kind} normalising distance is {float(distances[i]):.6g} px or needs a "
                    f"landmark without a position: its NME would divide by zero"
                )
    return {i: "; ".join(r) for i, r in sorted(reasons.items())}


def screen_faces(
    faces: FaceSet,
    split: str,
    policy: str,
    normalisations: list[str],
    scheme: LandmarkScheme,
) -> FaceSet:
    """``faces`` without its degenerate ones (:func:`degenerate_faces`), under ``policy``.

    Under ``error`` the first degenerate face raises; under ``skip`` the degenerate faces are
    left out and added to the set's ``dropped`` list (so the data module lists them).

    Raises:
        ValueError: naming the split, the face (its file) and the reason; also when every
            face of the split is degenerate.
    """
    found = degenerate_faces(faces, normalisations, scheme)
    if not found:
        return faces
    bad = BadSamples(policy)
    for index, reason in found.items():
        bad.drop(ValueError(f"{split} face {faces.names[index]}: {reason}"))
    kept = np.setdiff1d(np.arange(len(faces)), np.fromiter(found, dtype=np.int64))
    bad.check_some_left(len(kept), f"{split} split")
    screened = faces.subset(kept)
    screened.dropped = [*faces.dropped, *bad.dropped]
    return screened


def bad_samples_path(output_dir: str | Path | None) -> Path | None:
    """``<output_dir>/bad_samples.txt`` (``data.output_dir``, the run folder), or None when no
    folder is given (the list is then only logged)."""
    if output_dir is None:
        return None
    return Path(output_dir) / BAD_SAMPLES_FILE
