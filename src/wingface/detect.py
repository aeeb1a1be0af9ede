"""Face detection with OpenCV's frontal-face Haar cascade, and the box calibration it needs.

The cascade (``haarcascade_frontalface_default.xml``, Viola-Jones/Lienhart, 24x24 windows)
ships with OpenCV 4 in ``cv2.data.haarcascades``; OpenCV 5 dropped both the file and
``cv2.CascadeClassifier`` from its main package. The package therefore carries a copy of the
file (``wingface/assets``, with its licence header) and evaluates it here with NumPy, following
``cv2.CascadeClassifier.detectMultiScale`` step by step: the same image pyramid (bilinear
``INTER_LINEAR_EXACT`` resizes by ``scale_factor``), window grid (step 2 below scale 2, else 1,
with OpenCV's skip after a first-stage rejection), variance normalisation, stump thresholds and
rectangle grouping (``groupRectangles`` with ``eps=0.2``), so it returns OpenCV's boxes.

Boxes are ``(x0, y0, x1, y1)`` in the pixel frame of :mod:`wingface.data.transforms` (the
centre of pixel ``i`` at ``i``): an OpenCV rectangle ``(x, y, w, h)`` covers
``[x - 0.5, x + w - 0.5]``.

A Haar face box is not the box a landmark model was trained on (on 300-W: the tight box of the
68 landmarks, which sits lower and is smaller), so detector boxes go through a
:class:`BoxCalibration` before cropping; :data:`HAAR_TO_300W_BOX` was measured on real 300-W
faces (``experiments/box_calibration.py``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

CASCADE_NAME = "haarcascade_frontalface_default.xml"
BUNDLED_CASCADE = Path(__file__).resolve().parent / "assets" / CASCADE_NAME
"""The package's copy of OpenCV's frontal-face cascade."""

_THRESHOLD_EPS = np.float32(1e-5)  # OpenCV lowers every stage threshold by this
_GROUP_EPS = 0.2  # OpenCV's rectangle-grouping tolerance in detectMultiScale
_CHUNK = 1 << 21  # gathered rectangle sums per NumPy batch (memory bound)


def default_cascade_path() -> Path:
    """The frontal-face cascade file: the package's copy, else OpenCV's own (OpenCV 4).

    Raises:
        FileNotFoundError: naming both places when neither holds the file.
    """
    candidates = [BUNDLED_CASCADE]
    opencv_data = getattr(getattr(cv2, "data", None), "haarcascades", None)
    if opencv_data:
        candidates.append(Path(opencv_data) / CASCADE_NAME)
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"face detector: cascade file {CASCADE_NAME} not found (looked in "
        f"{', '.join(str(p.parent) for p in candidates)}); reinstall wingface, point "
        f"detector.cascade at a copy of the file, or give face boxes instead (boxes=...)"
    )


@dataclass(frozen=True)
class HaarCascade:
    """A stump-based Haar cascade read from an OpenCV XML file.

    Attributes:
        window: ``(width, height)`` of the detection window in pixels.
        stage_sizes: number of stumps in each stage.
        stage_thresholds: ``(S,)`` float32 stage thresholds (``- 1e-5`` as OpenCV applies them).
        stump_features: ``(T,)`` index of each stump's feature.
        stump_thresholds: ``(T,)`` float32; a stump gives ``left`` when the normalised feature
            value is below its threshold, else ``right``.
        left, right: ``(T,)`` float32 leaf values.
        rects: ``(F, 3, 4)`` int64 ``(x, y, w, h)`` of each feature's rectangles (unused: 0).
        weights: ``(F, 3)`` float32 rectangle weights (unused: 0).
    """

    window: tuple[int, int]
    stage_sizes: tuple[int, ...]
    stage_thresholds: np.ndarray
    stump_features: np.ndarray
    stump_thresholds: np.ndarray
    left: np.ndarray
    right: np.ndarray
    rects: np.ndarray
    weights: np.ndarray


def _numbers(node: ET.Element | None, path: Path, what: str) -> list[float]:
    if node is None or node.text is None:
        raise ValueError(f"{path}: cascade {what} missing")
    return [float(v) for v in node.text.split()]


@lru_cache(maxsize=4)
def load_cascade(path: str | Path) -> HaarCascade:
    """Read an OpenCV (new-format) Haar cascade XML file of decision stumps.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: naming the file, if it is not a stump-based, untilted Haar cascade.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"face detector: cascade file not found: {path}")
    try:
        cascade = ET.parse(path).getroot().find("cascade")
    except ET.ParseError as err:
        raise ValueError(f"{path}: not an OpenCV cascade XML file ({err})") from None
    if cascade is None or (cascade.findtext("featureType") or "").strip() != "HAAR":
        raise ValueError(f"{path}: expected an OpenCV cascade with <featureType>HAAR")
    window = (int(cascade.findtext("width") or 0), int(cascade.findtext("height") or 0))
    stage_sizes, stage_thresholds, nodes, leaves = [], [], [], []
    for stage in cascade.find("stages") or []:
        stage_thresholds.append(_numbers(stage.find("stageThreshold"), path, "stage threshold"))
        weak = list(stage.find("weakClassifiers") or [])
        for classifier in weak:
            node = _numbers(classifier.find("internalNodes"), path, "internalNodes")
            if len(node) != 4:
                raise ValueError(f"{path}: only decision-stump cascades are supported")
            nodes.append(node)
            leaves.append(_numbers(classifier.find("leafValues"), path, "leafValues"))
        stage_sizes.append(len(weak))
    features = list(cascade.find("features") or [])
    rects = np.zeros((len(features), 3, 4), dtype=np.int64)
    weights = np.zeros((len(features), 3), dtype=np.float32)
    for i, feature in enumerate(features):
        if int(feature.findtext("tilted") or 0):
            raise ValueError(f"{path}: tilted Haar features are not supported")
        for j, rect in enumerate(feature.find("rects") or []):
            values = _numbers(rect, path, "rect")
            rects[i, j] = values[:4]
            weights[i, j] = values[4]
    if not stage_sizes or min(window) < 3 or not features:
        raise ValueError(f"{path}: cascade has no stages, features or window size")
    node_array = np.asarray(nodes, dtype=np.float64)
    leaf_array = np.asarray(leaves, dtype=np.float32)
    return HaarCascade(
        window=window,
        stage_sizes=tuple(stage_sizes),
        stage_thresholds=np.float32(np.ravel(stage_thresholds)) - _THRESHOLD_EPS,
        stump_features=node_array[:, 2].astype(np.int64),
        stump_thresholds=node_array[:, 3].astype(np.float32),
        left=leaf_array[:, 0],
        right=leaf_array[:, 1],
        rects=rects,
        weights=weights,
    )


class _ScaleLevel:
    """One pyramid level: integral images of the resized image and window evaluation."""

    def __init__(self, cascade: HaarCascade, gray: np.ndarray, scale: float) -> None:
        height, width = gray.shape
        self.scale = scale
        size = (round(width / scale), round(height / scale))
        resized = cv2.resize(gray, size, interpolation=cv2.INTER_LINEAR_EXACT)
        total, squares = cv2.integral2(resized, sdepth=cv2.CV_32S, sqdepth=cv2.CV_64F)
        self.stride = size[0] + 1
        self.sums = total.astype(np.int64).ravel()
        self.squares = squares.ravel()
        self.cascade = cascade
        win_w, win_h = cascade.window
        # windows fit while x + win_w < width + 1 (OpenCV's working size)
        self.grid = (max(size[0] + 1 - win_w, 0), max(size[1] + 1 - win_h, 0))
        rx, ry, rw, rh = (cascade.rects[..., k] for k in range(4))
        top_left = ry * self.stride + rx
        # corner offsets (F, 3) of each rectangle relative to the window's top-left corner
        self.corners = (top_left, top_left + rw, top_left + rh * self.stride)
        self.corners += (self.corners[2] + rw,)
        norm = np.array([1, 1, win_w - 2, win_h - 2])
        norm_tl = norm[1] * self.stride + norm[0]
        self.norm_corners = (norm_tl, norm_tl + norm[2], norm_tl + norm[3] * self.stride)
        self.norm_corners += (self.norm_corners[2] + norm[2],)
        self.norm_area = float(norm[2] * norm[3])

    def _box_sum(self, table: np.ndarray, base: np.ndarray, corners: tuple) -> np.ndarray:
        tl, tr, bl, br = corners
        return table[base + br] - table[base + tr] - table[base + bl] + table[base + tl]

    def normalisers(self, base: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(valid, 1 / std * area)`` float32 for windows at flat integral offsets ``base``.

        Windows of (nearly) constant intensity are invalid, as in OpenCV.
        """
        total = self._box_sum(self.sums, base, self.norm_corners).astype(np.float64)
        squares = self._box_sum(self.squares, base, self.norm_corners)
        spread = self.norm_area * squares - total * total
        positive = spread > 0
        factor = np.ones_like(spread, dtype=np.float32)
        factor[positive] = (1.0 / np.sqrt(spread[positive])).astype(np.float32)
        valid = positive & (self.norm_area * factor.astype(np.float64) < 0.1)
        return valid, factor

    def stage_passes(self, stage: int, base: np.ndarray, factor: np.ndarray) -> np.ndarray:
        """Whether each window (flat offsets ``base``, ``(N,)``) passes stage ``stage``."""
        cascade = self.cascade
        start = sum(cascade.stage_sizes[:stage])
        stumps = slice(start, start + cascade.stage_sizes[stage])
        features = cascade.stump_features[stumps]
        corners = tuple(c[features] for c in self.corners)  # (T, 3) each
        weights = cascade.weights[features]  # (T, 3)
        totals = np.empty(len(base), dtype=np.float64)
        step = max(1, _CHUNK // (3 * len(features)))
        for lo in range(0, len(base), step):
            chunk = base[lo : lo + step, None, None]
            rect_sums = self._box_sum(self.sums, chunk, corners).astype(np.float32)
            values = (rect_sums * weights).sum(axis=2, dtype=np.float32)
            values *= factor[lo : lo + step, None]
            leaves = np.where(
                values < cascade.stump_thresholds[stumps],
                cascade.left[stumps],
                cascade.right[stumps],
            )
            totals[lo : lo + step] = leaves.sum(axis=1, dtype=np.float64)
        return totals >= cascade.stage_thresholds[stage]

    def detect(self) -> np.ndarray:
        """``(K, 2)`` ``(x, y)`` positions (pixels of this level) of accepted windows."""
        grid_w, grid_h = self.grid
        if grid_w == 0 or grid_h == 0:
            return np.zeros((0, 2), dtype=np.int64)
        step = 1 if self.scale >= 2 else 2
        xs = np.arange(0, grid_w, step)
        ys = np.arange(0, grid_h, step)
        base = (ys[:, None] * self.stride + xs[None, :]).ravel()
        valid, factor = self.normalisers(base)
        passed = np.zeros(len(base), dtype=bool)
        passed[valid] = self.stage_passes(0, base[valid], factor[valid])
        rejected_first = (valid & ~passed).reshape(len(ys), len(xs))
        # OpenCV's row scan skips the next window after a first-stage rejection
        scanned = np.zeros_like(rejected_first)
        for row, rejected in enumerate(rejected_first.tolist()):
            col = 0
            while col < len(rejected):
                scanned[row, col] = True
                col += 2 if rejected[col] else 1
        alive = np.flatnonzero(passed & scanned.ravel())
        for stage in range(1, len(self.cascade.stage_sizes)):
            if alive.size == 0:
                break
            alive = alive[self.stage_passes(stage, base[alive], factor[alive])]
        return np.stack([base[alive] % self.stride, base[alive] // self.stride], axis=1)


def _similar(rects: np.ndarray, eps: float) -> np.ndarray:
    """``(N, N)`` OpenCV ``SimilarRects``: all four edges within ``eps`` of the mean size."""
    x, y, w, h = rects.T
    delta = eps * (np.minimum(w[:, None], w) + np.minimum(h[:, None], h)) * 0.5
    near = np.abs(x[:, None] - x) <= delta
    near &= np.abs(y[:, None] - y) <= delta
    near &= np.abs((x + w)[:, None] - (x + w)) <= delta
    return near & (np.abs((y + h)[:, None] - (y + h)) <= delta)


def group_rectangles(
    rects: np.ndarray, min_neighbors: int, eps: float = _GROUP_EPS
) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV's ``groupRectangles``: merge overlapping raw detections.

    Args:
        rects: ``(N, 4)`` int ``(x, y, w, h)`` raw window detections.
        min_neighbors: clusters of at most this many windows are dropped.
        eps: similarity tolerance.

    Returns:
        ``(K, 4)`` int64 averaged rectangles and ``(K,)`` their window counts; clusters lying
        inside a stronger one are dropped.
    """
    rects = np.asarray(rects, dtype=np.int64).reshape(-1, 4)
    if len(rects) == 0 or min_neighbors <= 0:
        return rects, np.ones(len(rects), dtype=np.int64)
    rows, cols = np.nonzero(_similar(rects, eps))
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(rects),) * 2)
    num, labels = connected_components(graph, directed=False)
    counts = np.bincount(labels, minlength=num)
    sums = np.zeros((num, 4), dtype=np.float64)
    np.add.at(sums, labels, rects)
    inverse = (np.float32(1.0) / counts.astype(np.float32))[:, None]
    means = np.rint(sums.astype(np.float32) * inverse).astype(np.int64)
    keep_rects, keep_counts = [], []
    for i in range(num):
        if counts[i] <= min_neighbors:
            continue
        x1, y1, w1, h1 = means[i]
        inside_stronger = False
        for j in range(num):
            if j == i or counts[j] <= min_neighbors:
                continue
            x2, y2, w2, h2 = means[j]
            dx, dy = round(w2 * eps), round(h2 * eps)
            if (
                x1 >= x2 - dx
                and y1 >= y2 - dy
                and x1 + w1 <= x2 + w2 + dx
                and y1 + h1 <= y2 + h2 + dy
                and (counts[j] > max(3, counts[i]) or counts[i] < 3)
            ):
                inside_stronger = True
                break
        if not inside_stronger:
            keep_rects.append(means[i])
            keep_counts.append(counts[i])
    return (
        np.asarray(keep_rects, dtype=np.int64).reshape(-1, 4),
        np.asarray(keep_counts, dtype=np.int64),
    )


def detect_multiscale(
    cascade: HaarCascade,
    gray: np.ndarray,
    scale_factor: float = 1.1,
    min_neighbors: int = 5,
    min_size: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """``cv2.CascadeClassifier.detectMultiScale`` on a ``(H, W)`` uint8 grey image.

    Returns:
        ``(K, 4)`` int64 ``(x, y, w, h)`` rectangles and ``(K,)`` their neighbour counts.
    """
    if gray.ndim != 2 or gray.dtype != np.uint8:
        raise ValueError(f"expected a (H, W) uint8 grey image, got {gray.dtype} {gray.shape}")
    if scale_factor <= 1.0:
        raise ValueError(f"detector.scale_factor must be > 1, got {scale_factor}")
    height, width = gray.shape
    win_w, win_h = cascade.window
    raw = []
    factor = 1.0
    while round(win_w * factor) <= width and round(win_h * factor) <= height:
        scale = float(np.float32(factor))
        size = (round(win_w * scale), round(win_h * scale))
        if min(size) >= min_size:
            for x, y in _ScaleLevel(cascade, gray, scale).detect():
                raw.append((round(x * scale), round(y * scale), *size))
        factor *= scale_factor
    return group_rectangles(np.asarray(raw).reshape(-1, 4), min_neighbors)


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
        score: the number of raw detection windows merged into it (higher: more certain).
    """

    box: np.ndarray
    score: float


class HaarFaceDetector:
    """Frontal faces in RGB images, largest first.

    Args:
        cascade: the cascade XML file (None: :func:`default_cascade_path`).
        scale_factor: pyramid step between window sizes (> 1).
        min_neighbors: raw windows a face needs beyond the first (OpenCV's ``minNeighbors``).
        min_size: smallest face side as a fraction of the shorter image side.
        max_side: images with a longer side are shrunk to it before detection (speed); the
            boxes are mapped back to the full image.
        max_overlap: a face covering more than this fraction of its area with a larger face is
            dropped (1 keeps all). The cascade often fires on the chin and neck below a face;
            on lfpw/testset 0.1 removes all 11 such boxes and no face.
    """

    def __init__(
        self,
        cascade: str | Path | None = None,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        min_size: float = 0.1,
        max_side: int = 800,
        max_overlap: float = 0.1,
    ) -> None:
        if not 0.0 <= min_size <= 1.0:
            raise ValueError(f"detector.min_size must be in [0, 1], got {min_size}")
        if max_side < 24:
            raise ValueError(f"detector.max_side must be >= 24 pixels, got {max_side}")
        if not 0.0 <= max_overlap <= 1.0:
            raise ValueError(f"detector.max_overlap must be in [0, 1], got {max_overlap}")
        self.cascade_path = Path(cascade) if cascade else default_cascade_path()
        self.cascade = load_cascade(self.cascade_path)
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_size = min_size
        self.max_side = max_side
        self.max_overlap = max_overlap

    def __call__(self, image: np.ndarray) -> list[Detection]:
        """Detect faces in a ``(H, W, 3)`` uint8 RGB (or ``(H, W)`` grey) image.

        Returns:
            Detections sorted by box area, largest first, without those overlapping a larger one
            by more than ``max_overlap``.
        """
        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise ValueError(f"expected a uint8 RGB image, got {image.dtype} {image.shape}")
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        shrink = min(1.0, self.max_side / max(gray.shape))
        if shrink < 1.0:
            size = (round(gray.shape[1] * shrink), round(gray.shape[0] * shrink))
            gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
        min_size = round(self.min_size * min(gray.shape))
        rects, counts = detect_multiscale(
            self.cascade, gray, self.scale_factor, self.min_neighbors, min_size
        )
        x, y, w, h = rects.T.astype(np.float64)
        boxes = np.stack([x - 0.5, y - 0.5, x + w - 0.5, y + h - 0.5], axis=1)
        if shrink < 1.0:  # pixel-centre frame: p_full = (p_small + 0.5) / shrink - 0.5
            ratio = np.array(image.shape[1::-1], float) / np.array(gray.shape[1::-1], float)
            boxes = (boxes + 0.5) * np.tile(ratio, 2) - 0.5
        order = np.argsort(-(w * h), kind="stable")
        order = order[drop_overlapping(boxes[order], self.max_overlap)]
        return [Detection(boxes[i], float(counts[i])) for i in order]


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

HAAR_TO_300W_BOX = BoxCalibration(side=0.87, shift_x=0.0, shift_y=0.15)
"""Haar box → tight 68-landmark box (300-W, the synthetic faces). Medians over the 1,835 of 2,012
real 300-W training faces (afw, helen/trainset, lfpw/trainset) that the detector found: the
landmark box's longer side is 0.870 of the Haar box side (quartiles 0.825–0.927) and its centre
lies 0.151 sides lower (0.125–0.177) and 0.007 to the right (taken as 0: faces are symmetric);
lfpw/testset gives 0.864, 0.163 and 0.009. See ``experiments/box_calibration.py``."""
