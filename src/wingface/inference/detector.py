"""Face detection with dlib's HOG face detector, and the box calibration it needs.

The detector (``dlib.get_frontal_face_detector``: a HOG + linear SVM sliding-window detector
with five filters, for faces looking ahead, to the left, to the right, and ahead rotated left
and right) is compiled into dlib, so no model file is downloaded. Its window is 80x80 pixels:
images are upsampled so that faces down to ``min_size`` of the shorter image side are found.

Boxes are ``(x0, y0, x1, y1)`` in the pixel frame of :mod:`wingface.data.transforms` (the
centre of pixel ``i`` at ``i``): a dlib rectangle ``(left, top, right, bottom)`` with inclusive
pixel bounds covers ``[left - 0.5, right + 0.5]``.

A detector box is not the box a landmark model was trained on (on 300-W: the tight box of the 68
landmarks, which reaches lower and wider, to the jaw line), so detector boxes go through a
:class:`BoxCalibration` before cropping; :data:`DLIB_TO_300W_BOX` was measured on real 300-W
faces (``experiments/box_calibration.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

DLIB_WINDOW = 80
"""Side in pixels of the smallest face dlib's HOG detector finds without upsampling."""

MAX_UPSAMPLE = 3
"""At most this many 2x upsamplings (each quadruples the detection time)."""


def box_iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """``(N,)`` intersection over union of a ``(4,)`` box with ``(N, 4)`` boxes
    (``x0, y0, x1, y1``)."""
    lo = np.maximum(box[:2], others[:, :2])
    hi = np.minimum(box[2:], others[:, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
    area = np.prod(box[2:] - box[:2]) + np.prod(others[:, 2:] - others[:, :2], axis=1) - inter
    return inter / area


def overlap_of_smaller(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """``(N,)`` intersection of a ``(4,)`` box with ``(N, 4)`` boxes over the smaller area."""
    lo = np.maximum(box[:2], others[:, :2])
    hi = np.minimum(box[2:], others[:, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
    area = np.prod(box[2:] - box[:2])
    return inter / np.minimum(area, np.prod(others[:, 2:] - others[:, :2], axis=1))


def drop_overlapping(boxes: np.ndarray, max_overlap: float) -> np.ndarray:
    """Indices of the ``(N, 4)`` boxes (largest first) to keep: a box is dropped when it covers
    more than ``max_overlap`` of its area with a larger kept box."""
    keep: list[int] = []
    for i, box in enumerate(boxes):
        if not keep or overlap_of_smaller(box, boxes[keep]).max() <= max_overlap:
            keep.append(i)
    return np.asarray(keep, dtype=np.int64)


@dataclass(frozen=True)
class Detection:
    """One detected face.

    Attributes:
        box: ``(4,)`` float64 ``(x0, y0, x1, y1)`` in image pixels.
        score: dlib's detection score (higher: more certain; 0 at dlib's threshold).
    """

    box: np.ndarray
    score: float


class DlibFaceDetector:
    """Faces in RGB images, largest first (dlib's HOG detector).

    Args:
        min_size: smallest face side to find, as a fraction of the shorter image side; the
            image is upsampled (2x, at most :data:`MAX_UPSAMPLE` times) until such a face
            fills dlib's 80-pixel window.
        max_side: images with a longer side are shrunk to it before detection (speed); the
            boxes are mapped back to the full image.
        threshold: added to dlib's detection threshold (0: dlib's own; negative finds more
            faces and more false ones).
        max_overlap: a face covering more than this fraction of its area with a larger face is
            dropped (1 keeps all).
    """

    def __init__(
        self,
        min_size: float = 0.4,
        max_side: int = 800,
        threshold: float = 0.0,
        max_overlap: float = 0.1,
    ) -> None:
        if not 0.0 < min_size <= 1.0:
            raise ValueError(f"detector.min_size must be in (0, 1], got {min_size}")
        if max_side < DLIB_WINDOW:
            raise ValueError(f"detector.max_side must be >= {DLIB_WINDOW} pixels, got {max_side}")
        if not 0.0 <= max_overlap <= 1.0:
            raise ValueError(f"detector.max_overlap must be in [0, 1], got {max_overlap}")
        import dlib  # a compiled extension: loaded when a detector is made, not on import

        self.detector = dlib.get_frontal_face_detector()
        self.min_size = min_size
        self.max_side = max_side
        self.threshold = threshold
        self.max_overlap = max_overlap

    def upsamplings(self, height: int, width: int) -> int:
        """2x upsamplings that bring a face of ``min_size`` × the shorter side of an
        ``height`` × ``width`` image to dlib's window (0 to :data:`MAX_UPSAMPLE`)."""
        smallest_face = self.min_size * min(height, width)
        return min(MAX_UPSAMPLE, max(0, math.ceil(math.log2(DLIB_WINDOW / smallest_face))))

    def __call__(self, image: np.ndarray) -> list[Detection]:
        """Detect faces in a ``(H, W, 3)`` uint8 RGB (or ``(H, W)`` grey) image.

        Returns:
            Detections sorted by box area, largest first, without those overlapping a larger one
            by more than ``max_overlap``.
        """
        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise ValueError(f"expected a uint8 RGB image, got {image.dtype} {image.shape}")
        small = image
        shrink = min(1.0, self.max_side / max(image.shape[:2]))
        if shrink < 1.0:
            size = (round(image.shape[1] * shrink), round(image.shape[0] * shrink))
            small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        upsample = self.upsamplings(*small.shape[:2])
        rects, scores, _ = self.detector.run(np.ascontiguousarray(small), upsample, self.threshold)
        boxes = np.array(
            [[r.left() - 0.5, r.top() - 0.5, r.right() + 0.5, r.bottom() + 0.5] for r in rects],
            dtype=np.float64,
        ).reshape(-1, 4)
        if shrink < 1.0:  # pixel-centre frame: p_full = (p_small + 0.5) / shrink - 0.5
            ratio = np.array(image.shape[1::-1], float) / np.array(small.shape[1::-1], float)
            boxes = (boxes + 0.5) * np.tile(ratio[:2], 2) - 0.5
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        order = np.argsort(-areas, kind="stable")
        order = order[drop_overlapping(boxes[order], self.max_overlap)]
        return [Detection(boxes[i], float(scores[i])) for i in order]


@dataclass(frozen=True)
class BoxCalibration:
    """A fixed map from a detector's face box to the box a landmark model was trained on.

    The crop only depends on the box centre and longer side, so the result is a square box:
    centre ``c + (shift_x, shift_y) * s`` and side ``side * s``, where ``c`` and ``s`` are the
    detector box's centre and longer side.
    """

    side: float = 1.0
    shift_x: float = 0.0
    shift_y: float = 0.0

    def __post_init__(self) -> None:
        if not self.side > 0:
            raise ValueError(f"box calibration side must be > 0, got {self.side}")

    def __call__(self, boxes: np.ndarray) -> np.ndarray:
        """``(N, 4)`` detector boxes → ``(N, 4)`` model boxes, ``(x0, y0, x1, y1)`` pixels."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        size = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        centre_x = (boxes[:, 0] + boxes[:, 2]) / 2 + self.shift_x * size
        centre_y = (boxes[:, 1] + boxes[:, 3]) / 2 + self.shift_y * size
        half = self.side * size / 2
        return np.stack(
            [centre_x - half, centre_y - half, centre_x + half, centre_y + half], axis=1
        )


IDENTITY_CALIBRATION = BoxCalibration()
"""For boxes already in the model's convention."""

DLIB_TO_300W_BOX = BoxCalibration(side=1.02, shift_x=0.0, shift_y=0.09)
"""dlib box → tight 68-landmark box (300-W, the synthetic faces). Medians over the 1,922 of 2,012
real 300-W training faces (afw, helen/trainset, lfpw/trainset) that the detector found: the
landmark box's longer side is 1.016 of the dlib box side (quartiles 0.890–1.024) and its centre
lies 0.093 sides lower (0.056–0.116) and 0.007 to the right (taken as 0: faces are symmetric).
See ``experiments/box_calibration.py``."""
