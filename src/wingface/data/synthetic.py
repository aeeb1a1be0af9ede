"""Synthetic faces: the embedded default dataset, rendered from a 3-D landmark face model.

Each face is a random identity and expression of a 68-point 3-D mean face (300W/iBUG scheme),
posed with a long-tailed yaw distribution, projected with weak perspective and rendered as an RGB
cartoon face whose parts (brows, eyes, nose, lips, jaw) are drawn at the landmarks, over a
cluttered background, with lighting, occluders, blur, noise and colour changes.

Head frame (units: the half-width of the face at the ears is about 1): ``x`` to the image right
for a frontal face (towards the subject's left), ``y`` down, ``z`` towards the camera.
Pose angles are in degrees: positive yaw turns the nose towards the image right, positive pitch
raises the nose (the face looks up), positive roll turns the head clockwise in the image.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import tempfile
import time
import zipfile
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from wingface.data.faces import FaceSet
from wingface.landmarks import IBUG68, tight_boxes

logger = logging.getLogger(__name__)

SYNTHETIC_VERSION = 1
"""Bumped whenever the generator changes, so that stale caches are not reused."""

NUM_POINTS = 68

# Landmark groups (0-based, iBUG 68).
JAW = np.arange(0, 17)
BROW_R = np.arange(17, 22)
BROW_L = np.arange(22, 27)
NOSE_BRIDGE = np.arange(27, 31)
NOSE_BASE = np.arange(31, 36)
EYE_R = np.arange(36, 42)
EYE_L = np.arange(42, 48)
LIPS_OUTER = np.arange(48, 60)
LIPS_INNER = np.arange(60, 68)
NOSE = np.arange(27, 36)

# Auxiliary (non-landmark) 3-D points used for rendering only; M = NUM_MODEL_POINTS in all.
ALA_R, ALA_L, ROOT_R, ROOT_L, EAR_R, EAR_L = range(68, 74)
FOREHEAD, GLABELLA, SULCUS, CHIN_FRONT = range(74, 78)  # midline profile
NUM_MODEL_POINTS = 78
CHIN = np.concatenate([JAW, [SULCUS, CHIN_FRONT]])  # points that drop with the jaw
PROFILE = np.array([FOREHEAD, GLABELLA, 27, 28, 29, 30, 33, 51, 57, SULCUS, CHIN_FRONT, 8])

# Right half (image left, x <= 0) and midline of the frontal mean face: index -> (x, y, z).
_HALF_FACE: dict[int, tuple[float, float, float]] = {
    # jaw contour, ear (0) to chin (8)
    0: (-1.0, -0.27, -0.5),
    1: (-1.0, 0.0, -0.5),
    2: (-0.97, 0.265, -0.48),
    3: (-0.915, 0.53, -0.42),
    4: (-0.815, 0.78, -0.3),
    5: (-0.655, 0.995, -0.1),
    6: (-0.465, 1.175, 0.12),
    7: (-0.245, 1.325, 0.33),
    8: (0.0, 1.37, 0.45),
    # right brow, outer (17) to inner (21)
    17: (-0.795, -0.465, 0.40),
    18: (-0.67, -0.565, 0.52),
    19: (-0.505, -0.59, 0.60),
    20: (-0.33, -0.56, 0.64),
    21: (-0.165, -0.495, 0.65),
    # nose bridge, top to tip
    27: (0.0, -0.29, 0.60),
    28: (0.0, -0.12, 0.72),
    29: (0.0, 0.05, 0.84),
    30: (0.0, 0.23, 0.97),
    # nose base
    31: (-0.195, 0.343, 0.66),
    32: (-0.10, 0.38, 0.74),
    33: (0.0, 0.414, 0.78),
    # right eye: outer corner, upper lid, inner corner, lower lid
    36: (-0.595, -0.278, 0.38),
    37: (-0.49, -0.34, 0.48),
    38: (-0.363, -0.338, 0.50),
    39: (-0.255, -0.255, 0.46),
    40: (-0.374, -0.232, 0.47),
    41: (-0.498, -0.234, 0.45),
    # outer lips: corner, upper lip, top of upper lip; lower lip
    48: (-0.39, 0.658, 0.55),
    49: (-0.248, 0.601, 0.68),
    50: (-0.104, 0.576, 0.75),
    51: (0.0, 0.60, 0.76),
    59: (-0.254, 0.803, 0.66),
    58: (-0.112, 0.868, 0.71),
    57: (0.0, 0.88, 0.72),
    # inner lips
    60: (-0.328, 0.668, 0.56),
    61: (-0.105, 0.655, 0.70),
    62: (0.0, 0.665, 0.72),
    67: (-0.105, 0.675, 0.68),
    66: (0.0, 0.685, 0.70),
    # auxiliary: nose ala, nose root side, ear centre
    ALA_R: (-0.22, 0.26, 0.64),
    ROOT_R: (-0.10, -0.25, 0.56),
    EAR_R: (-1.05, 0.0, -0.6),
    FOREHEAD: (0.0, -0.85, 0.64),
    GLABELLA: (0.0, -0.5, 0.66),
    SULCUS: (0.0, 1.0, 0.62),
    CHIN_FRONT: (0.0, 1.2, 0.64),
}

# Ellipsoids in the head frame: (centre, semi-axes).
_CRANIUM = (np.array([0.0, -0.55, -0.6]), np.array([1.04, 1.3, 1.28]))
_SHADING = (np.array([0.0, 0.0, -0.3]), np.array([1.0, 1.55, 1.0]))

# Jaw-contour marching: how far towards the face front the contour points may slide.
_MARCH_FRONT_Z = 0.55
_MARCH_MAX_ANGLE = np.deg2rad(85.0)
_MARCH_STEPS = 48

_PARALLEL_MIN_FACES = 1000  # below this, worker start-up costs more than it saves

_SHIFT = 4  # sub-pixel bits for cv2 drawing
_ONE = float(1 << _SHIFT)


# --------------------------------------------------------------------------------------------
# The 3-D face model
# --------------------------------------------------------------------------------------------


def model_flip_permutation() -> np.ndarray:
    """``(M,)`` int64 flip permutation of the ``M`` model points (landmarks, then the
    auxiliary render points)."""
    aux = [ALA_L, ALA_R, ROOT_L, ROOT_R, EAR_L, EAR_R, FOREHEAD, GLABELLA, SULCUS, CHIN_FRONT]
    return np.concatenate([IBUG68.flip_array(), np.asarray(aux, dtype=np.int64)])


def _mirror(points: np.ndarray) -> np.ndarray:
    """Mirror ``(P, 3)`` head-frame vectors in x and re-index them with the flip permutation."""
    mirrored = points[model_flip_permutation()].copy()
    mirrored[:, 0] *= -1.0
    return mirrored


def _contour_normals(points: np.ndarray) -> np.ndarray:
    """``(17, 3)`` outward unit normals of the frontal jaw contour (in the image plane)."""
    xy = points[JAW, :2]
    tangent = np.gradient(xy, axis=0)
    normal = np.stack([tangent[:, 1], -tangent[:, 0], np.zeros(len(xy))], axis=1)
    normal[:, :2] *= -1.0  # the contour runs clockwise on screen (y down); point outwards
    return normal / np.linalg.norm(normal, axis=1, keepdims=True)


def _surface_normals(points: np.ndarray) -> np.ndarray:
    """``(M, 3)`` unit surface normals of the model points (hand-set per face part)."""
    x = points[:, 0]
    normals = np.zeros_like(points)
    normals[:, 2] = 1.0
    normals[:, 0] = 0.6 * x  # the face surface turns away from the midline
    normals[NOSE_BASE, 0] = 2.8 * x[NOSE_BASE]
    normals[NOSE_BASE, 1] = 0.6
    normals[LIPS_OUTER, 0] = 1.2 * x[LIPS_OUTER]
    normals[LIPS_INNER, 0] = 1.2 * x[LIPS_INNER]
    normals[[ALA_R, ALA_L], 0] = 3.0 * x[[ALA_R, ALA_L]]
    normals[[EAR_R, EAR_L], 0] = 1.3 * np.sign(x[[EAR_R, EAR_L]])
    normals[[EAR_R, EAR_L], 2] = 0.7
    normals[JAW] = _contour_normals(points)
    return normals / np.linalg.norm(normals, axis=1, keepdims=True)


@lru_cache(maxsize=1)
def _mean_model() -> tuple[np.ndarray, np.ndarray]:
    """The symmetric mean model: ``(M, 3)`` points and ``(M, 3)`` unit normals."""
    points = np.full((NUM_MODEL_POINTS, 3), np.nan)
    for index, xyz in _HALF_FACE.items():
        points[index] = xyz
    perm = model_flip_permutation()
    missing = np.isnan(points[:, 0])
    points[missing] = points[perm[missing]] * np.array([-1.0, 1.0, 1.0])
    points = 0.5 * (points + _mirror(points))  # exact symmetry
    normals = _surface_normals(points)
    normals = 0.5 * (normals + _mirror(normals))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    points.setflags(write=False)
    normals.setflags(write=False)
    return points, normals


def mean_face_3d() -> np.ndarray:
    """``(68, 3)`` float64 mean face in the head frame, symmetric under the flip permutation."""
    return _mean_model()[0][:NUM_POINTS].copy()


# --------------------------------------------------------------------------------------------
# Identity, expression and pose
# --------------------------------------------------------------------------------------------


@dataclass
class _Identity:
    """Head-shape scale factors that the head ellipsoids follow."""

    width: float
    height: float


def _scale_about(points: np.ndarray, idx: np.ndarray, factor: np.ndarray | float) -> None:
    """Scale the points ``idx`` in place about their centroid by ``factor`` (scalar or (3,))."""
    centre = points[idx].mean(axis=0)
    points[idx] = centre + (points[idx] - centre) * factor


def _apply_identity(points: np.ndarray, rng: np.random.Generator) -> _Identity:
    """Deform ``(M, 3)`` model points in place with symmetric random shape modes: face width
    and height, jaw width, eye spacing and size, nose length and width, mouth width, brow
    height and chin length."""
    c = np.clip(rng.standard_normal(10), -2.5, 2.5)
    x, y = points[:, 0], points[:, 1]
    sign = np.sign(x)
    width, height = 1.0 + 0.07 * c[0], 1.0 + 0.06 * c[1]
    lower = np.clip((y - 0.3) / 1.07, 0.0, 1.0)
    x *= 1.0 + 0.1 * c[2] * lower  # jaw width
    eyes = np.concatenate([EYE_R, EYE_L, [ROOT_R, ROOT_L]])
    x[eyes] += sign[eyes] * 0.04 * c[3]  # eye spacing
    for eye in (EYE_R, EYE_L):
        _scale_about(points, eye, 1.0 + 0.1 * c[4])  # eye size
    y[[30, 31, 32, 33, 34, 35, ALA_R, ALA_L]] += 0.05 * c[5]  # nose length
    y[[28, 29]] += np.array([0.017, 0.034]) * c[5]
    points[[29, 30], 2] += 0.05 * c[5]
    x[[31, 32, 34, 35, ALA_R, ALA_L]] *= 1.0 + 0.12 * c[6]  # nose width
    mouth = np.concatenate([LIPS_OUTER, LIPS_INNER])
    x[mouth] *= 1.0 + 0.09 * c[7]  # mouth width
    y[np.concatenate([BROW_R, BROW_L])] -= 0.04 * c[8]  # brow height
    y[CHIN] += 0.06 * c[9] * lower[CHIN] ** 2  # chin length
    x *= width
    y *= height
    return _Identity(width=float(width), height=float(height))


def _mouth_taper(x: np.ndarray, half_width: float) -> np.ndarray:
    """Weight 1 at the mouth centre falling to 0 at the corners."""
    return np.sqrt(np.clip(1.0 - (x / half_width) ** 2, 0.0, 1.0))


def _apply_expression(points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Deform ``(M, 3)`` model points in place with a random expression; returns the gaze.

    Mouth opening, smile, brow raise and eye closure, each slightly asymmetric.
    """
    opening = rng.uniform(0.05, 1.0) ** 1.5 if rng.random() < 0.4 else 0.0
    smile = float(np.clip(rng.normal(0.15, 0.5), -0.6, 1.5))
    brow = float(np.clip(rng.normal(0.0, 1.0), -2.0, 2.0))
    closure = rng.uniform(0.7, 1.0) if rng.random() < 0.12 else rng.uniform(0.0, 0.35)
    asym = rng.normal(0.0, 0.12, size=3)
    gaze = np.clip(rng.normal(0.0, 0.35, size=2), -0.8, 0.8)

    x, y = points[:, 0], points[:, 1]
    side = np.sign(x)
    half_width = abs(points[48, 0])
    # mouth opening: the lower lip and the jaw drop
    drop = 0.34 * opening
    taper = _mouth_taper(x, half_width)
    y[[65, 66, 67]] += drop * taper[[65, 66, 67]]
    y[[55, 56, 57, 58, 59]] += drop * (0.25 + 0.75 * taper[[55, 56, 57, 58, 59]])
    y[[61, 62, 63]] -= 0.06 * drop * taper[[61, 62, 63]]
    y[[49, 50, 51, 52, 53]] -= 0.04 * drop
    y[[48, 54, 60, 64]] += 0.2 * drop
    x[np.concatenate([LIPS_OUTER, LIPS_INNER])] *= 1.0 - 0.08 * opening
    jaw_weight = np.clip((y[CHIN] - 0.3) / 1.07, 0.0, 1.0)
    y[CHIN] += 0.75 * drop * jaw_weight
    # smile: corners up and out
    smile_side = smile * (1.0 + asym[0] * side)
    corners = np.array([48, 54, 60, 64])
    y[corners] -= 0.08 * smile_side[corners]
    x[corners] += 0.05 * smile_side[corners] * side[corners]
    near = np.array([49, 53, 55, 59, 61, 63, 65, 67])
    y[near] -= 0.035 * smile_side[near]
    lower_lids = np.array([40, 41, 46, 47])
    y[lower_lids] -= 0.012 * np.maximum(smile_side[lower_lids], 0.0)
    # brows raised or lowered
    brows = np.concatenate([BROW_R, BROW_L])
    y[brows] -= 0.05 * brow * (1.0 + asym[1] * side[brows])
    # eye closure: upper lid moves down to the lower lid
    for upper, lower in ((37, 41), (38, 40), (43, 47), (44, 46)):
        amount = np.clip(closure * (1.0 + asym[2] * side[upper]), 0.0, 1.0)
        y[upper] += 0.95 * amount * (y[lower] - y[upper])
    return gaze


def sample_yaw(rng: np.random.Generator) -> float:
    """Yaw in degrees: 80% Laplace(0, 12°) plus 20% uniform on ±90°, clipped to ±90°."""
    yaw = rng.laplace(0.0, 12.0) if rng.random() < 0.8 else rng.uniform(-90.0, 90.0)
    return float(np.clip(yaw, -90.0, 90.0))


def sample_pose(rng: np.random.Generator) -> np.ndarray:
    """``(3,)`` (yaw, pitch, roll) in degrees: long-tailed yaw, pitch N(0, 10°) clipped to ±30°,
    roll N(0, 10°) clipped to ±40°."""
    yaw = sample_yaw(rng)
    pitch = float(np.clip(rng.normal(0.0, 10.0), -30.0, 30.0))
    roll = float(np.clip(rng.normal(0.0, 10.0), -40.0, 40.0))
    return np.array([yaw, pitch, roll])


def rotation_matrix(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """``(3, 3)`` head-to-camera rotation ``Rz(roll) @ Rx(pitch) @ Ry(yaw)``; angles in degrees."""
    a, b, c = np.deg2rad([yaw, pitch, roll])
    ry = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ rx @ ry


# --------------------------------------------------------------------------------------------
# Geometry of one posed face
# --------------------------------------------------------------------------------------------


@dataclass
class _Geometry:
    """A posed, projected face.

    Attributes:
        points: ``(M, 3)`` head-frame model points (jaw contour after marching).
        normals: ``(M, 3)`` head-frame unit normals.
        rotation: ``(3, 3)`` head-to-camera rotation.
        scale: pixels per head unit.
        offset: ``(2,)`` pixel position of the head origin.
        image: ``(M, 2)`` projected pixel coordinates.
        depth: ``(M,)`` camera-frame z (larger is nearer).
        hidden: ``(68,)`` bool, self-occluded landmarks.
        identity: head-shape scale factors.
        gaze: ``(2,)`` iris offset in units of the eye size.
    """

    points: np.ndarray
    normals: np.ndarray
    rotation: np.ndarray
    scale: float
    offset: np.ndarray
    image: np.ndarray
    depth: np.ndarray
    hidden: np.ndarray
    identity: _Identity
    gaze: np.ndarray

    def project(self, points: np.ndarray) -> np.ndarray:
        """Project ``(P, 3)`` head-frame points to ``(P, 2)`` pixels."""
        return (points @ self.rotation[:2].T) * self.scale + self.offset

    def facing(self, normals: np.ndarray) -> np.ndarray:
        """Camera-frame z of ``(P, 3)`` head-frame normals (positive: facing the camera)."""
        return normals @ self.rotation[2]


def _march_contour(
    points: np.ndarray, normals: np.ndarray, rotation: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Slide far-side jaw points along the cheek to the visible silhouette.

    Each contour point may move along a horizontal elliptic arc towards the face front; the
    silhouette point is the arc point that projects furthest outwards. Points whose arc never
    reaches the silhouette are reported as hidden.

    Returns:
        ``(17, 3)`` contour points, ``(17, 3)`` their normals, ``(17,)`` bool hidden.
    """
    contour = points[JAW]
    x, y, z = contour.T
    side = np.sign(np.round(x, 6))
    depth = np.maximum(_MARCH_FRONT_Z - z, 0.05)
    angles = np.linspace(0.0, _MARCH_MAX_ANGLE, _MARCH_STEPS)
    cos_a, sin_a = np.cos(angles)[None, :], np.sin(angles)[None, :]
    arc = np.stack(
        [
            x[:, None] * cos_a,
            np.broadcast_to(y[:, None], (len(y), _MARCH_STEPS)),
            z[:, None] + depth[:, None] * sin_a,
        ],
        axis=-1,
    )  # (17, J, 3)
    outward_dir = rotation[:2, 0] / max(float(np.linalg.norm(rotation[:2, 0])), 1e-9)
    score = (arc @ rotation[:2].T) @ outward_dir * side[:, None]  # (17, J)
    best = np.argmax(score, axis=1)
    frac = np.zeros(17)
    inner = (best > 0) & (best < _MARCH_STEPS - 1)
    rows = np.nonzero(inner)[0]
    if rows.size:
        s0, s1, s2 = (score[rows, best[rows] + k] for k in (-1, 0, 1))
        curvature = s0 - 2.0 * s1 + s2
        frac[rows] = np.where(curvature < 0, 0.5 * (s0 - s2) / np.minimum(curvature, -1e-12), 0)
    t = np.clip(best + frac, 0, _MARCH_STEPS - 1) / (_MARCH_STEPS - 1) * _MARCH_MAX_ANGLE
    marched = np.stack([x * np.cos(t), y, z + depth * np.sin(t)], axis=1)
    marched[side == 0] = contour[side == 0]
    horiz = np.stack([np.cos(t) / np.maximum(np.abs(x), 1e-3) * side, np.sin(t) / depth], axis=1)
    horiz /= np.maximum(np.linalg.norm(horiz, axis=1, keepdims=True), 1e-9)
    planar = np.sqrt(np.clip(1.0 - normals[JAW, 1] ** 2, 0.0, 1.0))
    new_normals = np.stack([horiz[:, 0] * planar, normals[JAW, 1], horiz[:, 1] * planar], axis=1)
    new_normals[side == 0] = normals[JAW][side == 0]
    hidden = (best == _MARCH_STEPS - 1) & (side != 0)
    return marched, new_normals, hidden


def _inside_convex(points: np.ndarray, hull: np.ndarray) -> np.ndarray:
    """``(P,)`` bool: which ``(P, 2)`` points lie inside the convex polygon ``(H, 2)``."""
    edges = np.roll(hull, -1, axis=0) - hull
    rel = points[:, None, :] - hull[None, :, :]
    cross = edges[None, :, 0] * rel[..., 1] - edges[None, :, 1] * rel[..., 0]
    return np.all(cross > 0, axis=1) | np.all(cross < 0, axis=1)


def _nose_hull(image: np.ndarray) -> np.ndarray:
    """``(H, 2)`` convex hull of the projected nose points (landmarks and auxiliary points)."""
    idx = np.concatenate([NOSE, [ALA_R, ALA_L, ROOT_R, ROOT_L]])
    return cv2.convexHull(image[idx].astype(np.float32)).reshape(-1, 2).astype(np.float64)


def _self_occlusion(geo: _Geometry, contour_hidden: np.ndarray) -> np.ndarray:
    """``(68,)`` bool: landmarks facing away from the camera or behind the nose."""
    hidden = geo.facing(geo.normals[:NUM_POINTS]) < 0.0
    hidden[JAW] = contour_hidden
    hull = _nose_hull(geo.image)
    others = np.setdiff1d(np.arange(NUM_POINTS), NOSE)
    behind = geo.depth[others] < geo.depth[NOSE].mean()
    hidden[others] |= _inside_convex(geo.image[others], hull) & behind
    return hidden


def _place(rng: np.random.Generator, rotated: np.ndarray, size: int) -> tuple[float, np.ndarray]:
    """Random scale (landmark box 40–60% of the side) and offset keeping the face in view."""
    lo, hi = rotated.min(axis=0), rotated.max(axis=0)
    extent = float(np.max(hi - lo))
    scale = rng.uniform(0.4, 0.6) * size / extent
    box = (hi - lo) * scale
    slack = np.maximum(size - box, 0.0) / 2.0
    shift = rng.uniform(-0.7, 0.7, size=2) * slack
    centre = (size - 1) / 2.0 + shift
    offset = centre - scale * (lo + hi) / 2.0
    return scale, offset


def _sample_geometry(rng: np.random.Generator, size: int) -> tuple[_Geometry, np.ndarray]:
    """A random identity, expression and pose, projected into a ``size`` px image.

    Returns the geometry and the ``(3,)`` pose in degrees.
    """
    mean_points, mean_normals = _mean_model()
    points = mean_points.copy()
    identity = _apply_identity(points, rng)
    gaze = _apply_expression(points, rng)
    pose = sample_pose(rng)
    rotation = rotation_matrix(*pose)
    normals = mean_normals.copy()
    contour, contour_normals, contour_hidden = _march_contour(points, normals, rotation)
    points[JAW], normals[JAW] = contour, contour_normals
    scale, offset = _place(rng, points[:NUM_POINTS] @ rotation[:2].T, size)
    geo = _Geometry(
        points=points,
        normals=normals,
        rotation=rotation,
        scale=scale,
        offset=offset,
        image=(points @ rotation[:2].T) * scale + offset,
        depth=points @ rotation[2],
        hidden=np.zeros(NUM_POINTS, dtype=bool),
        identity=identity,
        gaze=gaze,
    )
    geo.hidden = _self_occlusion(geo, contour_hidden)
    return geo, pose


# --------------------------------------------------------------------------------------------
# Drawing helpers: anti-aliased cv2 primitives at sub-pixel precision
# --------------------------------------------------------------------------------------------


def _fixed(points: np.ndarray) -> np.ndarray:
    """Pixel coordinates ``(P, 2)`` as cv2 fixed-point int32 (``_SHIFT`` fractional bits)."""
    return np.round(np.asarray(points, dtype=np.float64) * _ONE).astype(np.int32)


def _as_colour(colour: np.ndarray) -> tuple[float, float, float]:
    r, g, b = (float(v) for v in np.clip(colour, 0.0, 255.0))
    return r, g, b


def _mix(base: np.ndarray, colour: np.ndarray, amount: float) -> np.ndarray:
    """``colour`` laid over ``base`` with opacity ``amount`` (RGB floats)."""
    return base + (np.asarray(colour, dtype=np.float64) - base) * amount


def _draw_ellipse(
    image: np.ndarray, centre: np.ndarray, axes: Sequence[float], angle: float, colour
) -> None:
    """A filled anti-aliased ellipse (semi-axes in pixels, angle in degrees), in place."""
    c = _fixed(centre)
    ax = np.maximum(_fixed(np.asarray(axes, dtype=np.float64)), 1)
    cv2.ellipse(
        image,
        (int(c[0]), int(c[1])),
        (int(ax[0]), int(ax[1])),
        float(angle),
        0,
        360,
        colour,
        -1,
        cv2.LINE_AA,
        _SHIFT,
    )


class _Layer:
    """The head layer: ``rgb`` ``(S, S, 3)`` uint8 albedo and ``mask`` ``(S, S)`` uint8
    coverage, painted in place with anti-aliased cv2 primitives (pixel coordinates)."""

    def __init__(self, size: int, colour: np.ndarray) -> None:
        self.size = size
        self.rgb = np.empty((size, size, 3), np.uint8)
        self.rgb[:] = np.clip(np.rint(colour), 0, 255).astype(np.uint8)
        self.mask = np.zeros((size, size), np.uint8)

    def fill(self, polygons: Sequence[np.ndarray], colour: np.ndarray, solid: bool = False):
        """Filled polygons (even-odd); ``solid`` ones also add to the coverage."""
        pts = [_fixed(p) for p in polygons]
        cv2.fillPoly(self.rgb, pts, _as_colour(colour), cv2.LINE_AA, _SHIFT)
        if solid:
            cv2.fillPoly(self.mask, pts, 255, cv2.LINE_AA, _SHIFT)

    def stroke(self, points: np.ndarray, colour: np.ndarray, thickness: int = 1) -> None:
        """An open polyline ``thickness`` pixels wide."""
        pts = [_fixed(points)]
        cv2.polylines(self.rgb, pts, False, _as_colour(colour), thickness, cv2.LINE_AA, _SHIFT)

    def ellipse(
        self,
        centre: np.ndarray,
        axes: Sequence[float],
        angle: float,
        colour: np.ndarray,
        solid: bool = False,
    ) -> None:
        _draw_ellipse(self.rgb, centre, axes, angle, _as_colour(colour))
        if solid:
            _draw_ellipse(self.mask, centre, axes, angle, 255)

    def blend(self, colour: np.ndarray, weight: np.ndarray) -> None:
        """Blend a per-pixel ``(S, S, 3)`` uint8 colour with ``(S, S)`` float32 weights."""
        self.rgb = cv2.blendLinear(colour, self.rgb, weight, 1.0 - weight)
        np.maximum(self.mask, cv2.convertScaleAbs(weight, alpha=255.0), out=self.mask)


@lru_cache(maxsize=8)
def _pixel_grid(size: int, step: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """x and y full-resolution pixel coordinates ``(S/step, S/step)`` float32 of the centres of
    ``step`` x ``step`` pixel blocks."""
    n = -(-size // step)
    centres = (np.arange(n, dtype=np.float32) * step + (step - 1) / 2.0).astype(np.float32)
    xs, ys = np.meshgrid(centres, centres)
    return xs, ys


def _upsample(values: np.ndarray, size: int) -> np.ndarray:
    """Resize a coarse ``(n, n)`` map to ``(S, S)`` (pixel-centre aligned, bilinear)."""
    if values.shape[0] == size:
        return values
    return cv2.resize(values, (size, size), interpolation=cv2.INTER_LINEAR)


@dataclass
class _EllipsoidView:
    """Per-pixel view of an ellipsoid on a ``(n, n)`` grid: coverage ``(n, n)``, camera-frame
    unit normals ``(n, n, 3)`` (silhouette normals outside) and head-frame surface points
    ``(n, n, 3)``."""

    coverage: np.ndarray
    normals: np.ndarray
    surface: np.ndarray


def _view_ellipsoid(
    geo: _Geometry, centre: np.ndarray, axes: np.ndarray, size: int, step: int = 1
) -> _EllipsoidView:
    """Ray-cast a head-frame ellipsoid (orthographic camera looking along -z) on the pixel grid
    of :func:`_pixel_grid`."""
    xs, ys = _pixel_grid(size, step)
    rot = geo.rotation
    c = rot @ centre
    quad = ((rot * (1.0 / axes**2)) @ rot.T).astype(np.float32)
    inv = np.float32(1.0 / geo.scale)
    dx = (xs - np.float32(geo.offset[0] + c[0] * geo.scale)) * inv
    dy = (ys - np.float32(geo.offset[1] + c[1] * geo.scale)) * inv
    a = quad[2, 2]
    b = quad[0, 2] * dx + quad[1, 2] * dy
    g = quad[0, 0] * dx * dx + (2.0 * quad[0, 1]) * dx * dy + quad[1, 1] * dy * dy - b * b / a
    w = (np.sqrt(np.maximum(1.0 - g, 0.0) * a) - b) / a
    radius = np.float32(geo.scale / step) * np.sqrt(dx * dx + dy * dy)
    edge = radius * (1.0 / np.sqrt(np.maximum(g, 1e-12)) - 1.0)
    coverage = np.clip(edge + 0.5, 0.0, 1.0)
    d = np.stack([dx, dy, w], axis=-1)
    normals = d @ quad.T
    normals /= np.sqrt(np.sum(normals * normals, axis=-1, keepdims=True)) + 1e-9
    surface = (d + c.astype(np.float32)) @ rot.astype(np.float32)  # camera to head frame
    return _EllipsoidView(coverage, normals, surface)


def _silhouette(
    geo: _Geometry, centre: np.ndarray, axes: np.ndarray
) -> tuple[np.ndarray, tuple[float, float], float]:
    """The image outline of a head-frame ellipsoid: an ellipse ``(centre px, semi-axes px,
    angle in degrees)``."""
    rot = geo.rotation
    quad = (rot * (1.0 / axes**2)) @ rot.T
    flat = quad[:2, :2] - np.outer(quad[:2, 2], quad[:2, 2]) / quad[2, 2]
    eigvals, eigvecs = np.linalg.eigh(flat)
    semi = geo.scale / np.sqrt(eigvals)
    angle = float(np.degrees(np.arctan2(eigvecs[1, 0], eigvecs[0, 0])))
    return geo.project(centre[None])[0], (float(semi[0]), float(semi[1])), angle


def _smoothstep(v: np.ndarray) -> np.ndarray:
    v = np.clip(v, 0.0, 1.0)
    return v * v * (3.0 - 2.0 * v)


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------

_HAIR_COLOURS = np.array(
    [[25, 20, 18], [55, 38, 25], [105, 72, 45], [190, 160, 105], [140, 65, 35], [150, 148, 145]],
    dtype=np.float64,
)
_IRIS_COLOURS = np.array(
    [[70, 45, 25], [35, 25, 18], [70, 105, 145], [75, 100, 65], [115, 85, 45]], dtype=np.float64
)


@dataclass
class _Palette:
    """Colours (RGB floats in 0–255) and lighting of one face."""

    skin: np.ndarray
    hair: np.ndarray
    brow: np.ndarray
    lips: np.ndarray
    mouth: np.ndarray
    sclera: np.ndarray
    iris: np.ndarray
    clothes: np.ndarray
    light: np.ndarray
    ambient: float
    hair_style: int  # 0 bald, 1 short, 2 long
    hairline: float
    hair_volume: float


def _jitter(rng: np.random.Generator, colour: np.ndarray, amount: float) -> np.ndarray:
    return np.clip(colour * (1.0 + rng.normal(0.0, amount, size=3)), 0.0, 255.0)


def _sample_palette(rng: np.random.Generator) -> _Palette:
    tone = rng.uniform(0.0, 1.0)
    skin = _jitter(
        rng, (1 - tone) * np.array([238, 204, 178]) + tone * np.array([92, 60, 42]), 0.05
    )
    hair = _jitter(rng, _HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))], 0.12)
    brow = np.minimum(hair, 0.55 * skin) * rng.uniform(0.6, 1.0)
    lips = _jitter(rng, 0.45 * skin + 0.55 * np.array([185, 70, 80]), 0.08)
    light = np.array([rng.uniform(-1, 1), rng.uniform(-1.0, 0.4), rng.uniform(0.5, 1.6)])
    style = int(rng.choice(3, p=[0.1, 0.6, 0.3]))
    return _Palette(
        skin=skin,
        hair=hair,
        brow=brow,
        lips=lips,
        mouth=_jitter(rng, np.array([70, 22, 28]), 0.2),
        sclera=_jitter(rng, np.array([238, 236, 228]) * rng.uniform(0.85, 1.0), 0.03),
        iris=_jitter(rng, _IRIS_COLOURS[rng.integers(len(_IRIS_COLOURS))], 0.1),
        clothes=rng.uniform(0, 255, size=3),
        light=light / np.linalg.norm(light),
        ambient=float(rng.uniform(0.35, 0.65)),
        hair_style=style,
        hairline=float(rng.uniform(-1.2, -0.9)),
        hair_volume=float(rng.uniform(1.04, 1.14)),
    )


def _random_colour(rng: np.random.Generator) -> tuple[float, float, float]:
    r, g, b = rng.uniform(0, 255, size=3)
    return float(r), float(g), float(b)


def _draw_clutter(rng: np.random.Generator, image: np.ndarray) -> None:
    """Random ellipses, rectangles, lines and polygons drawn in place on a uint8 image."""
    size = image.shape[0]
    for _ in range(int(rng.integers(4, 14))):
        kind = int(rng.integers(4))
        colour = _random_colour(rng)
        centre = rng.uniform(-0.1, 1.1, size=2) * size
        extent = rng.uniform(0.04, 0.35, size=2) * size
        angle = float(rng.uniform(0, 180))
        if kind == 0:
            _draw_ellipse(image, centre, extent, angle, colour)
        elif kind == 1:
            corners = cv2.boxPoints((tuple(centre), tuple(2 * extent), angle))
            cv2.fillPoly(image, [_fixed(corners)], colour, cv2.LINE_AA, _SHIFT)
        elif kind == 2:
            ends = centre + np.array([[-1.0], [1.0]]) * extent * rng.choice([-1, 1], size=2)
            thickness = 1 + int(rng.random() * max(size // 32 - 1, 1))
            cv2.polylines(image, [_fixed(ends)], False, colour, thickness, cv2.LINE_AA, _SHIFT)
        else:
            count = int(rng.integers(3, 7))
            pts = centre + rng.uniform(-1, 1, size=(count, 2)) * extent
            cv2.fillPoly(image, [_fixed(pts)], colour, cv2.LINE_AA, _SHIFT)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """``(S, S, 3)`` uint8 background: colour gradient, low-frequency noise and clutter."""
    theta = rng.uniform(0, 2 * np.pi)
    grid = np.linspace(0.0, 1.0, 5)
    ramp = np.cos(theta) * grid[None, :] + np.sin(theta) * grid[:, None]
    ramp = (ramp - ramp.min()) / np.ptp(ramp)
    c0, c1 = rng.uniform(0, 255, size=(2, 3))
    coarse = c0 + (c1 - c0) * ramp[..., None] + rng.normal(0.0, 25.0, size=(5, 5, 3))
    coarse = np.clip(coarse, 0, 255).astype(np.float32)
    # a 5x5 field stretched over the image: the gradient plus low-frequency colour noise
    image = cv2.resize(coarse[1:-1, 1:-1], (size, size), interpolation=cv2.INTER_CUBIC)
    image = np.clip(image + 0.5, 0, 255).astype(np.uint8)
    _draw_clutter(rng, image)
    return image


def _draw_body(image: np.ndarray, geo: _Geometry, palette: _Palette) -> None:
    """Neck (turning with the head) and shoulders (following its roll), in place on uint8."""
    neck_axis = geo.project(np.array([[0.0, 0.5, -0.3], [0.0, 3.0, -0.3]]))
    direction = neck_axis[1] - neck_axis[0]
    across = np.array([-direction[1], direction[0]]) / max(float(np.linalg.norm(direction)), 1e-6)
    half = 0.6 * geo.identity.width * geo.scale * across
    neck = np.stack(
        [neck_axis[0] + half, neck_axis[1] + half, neck_axis[1] - half, neck_axis[0] - half]
    )
    roll = float(np.arctan2(geo.rotation[1, 0], geo.rotation[0, 0]))
    c, s = np.cos(0.5 * roll), np.sin(0.5 * roll)
    torso = np.array([[-0.6, 0.0], [0.6, 0.0], [2.5, 0.7], [3.2, 5.0], [-3.2, 5.0], [-2.5, 0.7]])
    torso = torso * np.array([geo.identity.width, 1.0]) @ np.array([[c, s], [-s, c]])
    torso = torso * geo.scale + geo.project(np.array([[0.0, 1.75, -0.45]]))
    cv2.fillPoly(image, [_fixed(neck)], _as_colour(palette.skin * 0.72), cv2.LINE_AA, _SHIFT)
    cv2.fillPoly(image, [_fixed(torso)], _as_colour(palette.clothes), cv2.LINE_AA, _SHIFT)


def _head_ellipsoid(geo: _Geometry, base: tuple[np.ndarray, np.ndarray], grow: float = 1.0):
    """A head-frame ellipsoid ``(centre, axes)`` scaled to the identity's head size."""
    stretch = np.array([geo.identity.width, geo.identity.height, 1.0])
    return base[0] * stretch, base[1] * stretch * grow


_UNIT_CIRCLE = np.linspace(0.0, 2.0 * np.pi, 16, endpoint=False)
_IRIS_DARK = np.array([12.0, 10.0, 10.0])
_LASH = np.array([30.0, 22.0, 20.0])
_TEETH = np.array([202.0, 198.0, 185.0])


def _ear_outline(geo: _Geometry, index: int, shrink: float = 1.0) -> np.ndarray:
    """``(16, 2)`` projected outline of the ear around model point ``index``."""
    nx, _, nz = geo.normals[index]
    across = np.array([-nz, 0.0, nx]) / np.hypot(nx, nz)  # normal x up
    up = np.array([0.0, 1.0, 0.0])
    ring = np.outer(np.sin(_UNIT_CIRCLE), 0.27 * up) + np.outer(np.cos(_UNIT_CIRCLE), 0.17 * across)
    return geo.project(geo.points[index] + ring * (shrink * geo.identity.height))


def _draw_ear(layer: _Layer, geo: _Geometry, palette: _Palette, index: int) -> None:
    layer.fill([_ear_outline(geo, index)], palette.skin * 0.85, solid=True)
    if geo.facing(geo.normals[index])[()] > 0.2:
        inner = _ear_outline(geo, index, shrink=0.6)
        layer.stroke(inner[2:13], _mix(palette.skin * 0.85, palette.skin * 0.55, 0.6))


def _hair_mask(geo: _Geometry, palette: _Palette, size: int) -> np.ndarray | None:
    """``(S, S)`` float32 hair coverage on a slightly inflated cranium (None when bald)."""
    if palette.hair_style == 0:
        return None
    centre, axes = _head_ellipsoid(geo, _CRANIUM, palette.hair_volume)
    step = 2 if size >= 96 else 1
    view = _view_ellipsoid(geo, centre + np.array([0.0, -0.04, -0.03]), axes, size, step)
    x, y, z = view.surface[..., 0], view.surface[..., 1], view.surface[..., 2]
    top = _smoothstep((palette.hairline + 0.4 * x * x - y) * 10.0)
    back_z, nape = (-0.65, 0.9) if palette.hair_style == 2 else (-0.8, 0.0)
    back = _smoothstep((back_z - z) * 6.0) * _smoothstep((nape - y) * 6.0)
    return _upsample(view.coverage * np.maximum(top, back), size)


def _draw_hair(layer: _Layer, geo: _Geometry, palette: _Palette, rng: np.random.Generator):
    """Textured hair over the cranium (the texture is drawn even when bald, for a fixed
    random stream)."""
    size = layer.size
    texture = rng.normal(1.0, 0.12, size=(16, 16)).astype(np.float32)
    coverage = _hair_mask(geo, palette, size)
    if coverage is None:
        return
    texture = cv2.resize(texture, (size, size), interpolation=cv2.INTER_LINEAR)
    colour = cv2.transform(texture[..., None], palette.hair.reshape(3, 1).astype(np.float32))
    layer.blend(cv2.convertScaleAbs(colour), coverage)


def _shading(geo: _Geometry, palette: _Palette, size: int) -> np.ndarray:
    """``(S, S)`` float32 Lambertian shading in [0, 1] of a head-sized ellipsoid."""
    centre, axes = _head_ellipsoid(geo, _SHADING)
    view = _view_ellipsoid(geo, centre, axes, size, step=max(size // 32, 1))
    lambert = np.maximum(view.normals @ palette.light.astype(np.float32), 0.0)
    return _upsample(np.float32(palette.ambient) + np.float32(1 - palette.ambient) * lambert, size)


def _visible_runs(hidden: np.ndarray) -> list[np.ndarray]:
    """Index arrays of the runs of at least two consecutive visible points."""
    runs, current = [], []
    for i, h in enumerate(hidden):
        if not h:
            current.append(i)
            continue
        if len(current) > 1:
            runs.append(np.asarray(current))
        current = []
    if len(current) > 1:
        runs.append(np.asarray(current))
    return runs


def _draw_jaw_line(layer: _Layer, geo: _Geometry, palette: _Palette) -> None:
    """Subtle darker line along the visible jaw contour."""
    colour = _mix(palette.skin, palette.skin * 0.7, 0.35)
    for run in _visible_runs(geo.hidden[JAW]):
        layer.stroke(geo.image[JAW[run]], colour)


def _draw_iris(
    layer: _Layer,
    outline: np.ndarray,
    centre: np.ndarray,
    axes: np.ndarray,
    angle: float,
    palette: _Palette,
) -> None:
    """Iris and pupil discs clipped to the eye opening ``outline`` ``(6, 2)``."""
    lo = np.maximum(np.floor(outline.min(axis=0)).astype(int) - 1, 0)
    hi = np.minimum(np.ceil(outline.max(axis=0)).astype(int) + 2, layer.size)
    if np.any(hi <= lo):
        return
    shape = (hi[1] - lo[1], hi[0] - lo[0])
    opening = np.zeros(shape, np.uint8)
    cv2.fillPoly(opening, [_fixed(outline - lo)], 255, cv2.LINE_AA, _SHIFT)
    roi = layer.rgb[lo[1] : hi[1], lo[0] : hi[0]].astype(np.float32)
    for frac, colour in ((1.0, palette.iris), (0.45, _IRIS_DARK)):
        disc = np.zeros(shape, np.uint8)
        _draw_ellipse(disc, centre - lo, axes * frac, angle, 255)
        weight = (disc.astype(np.float32) * opening * np.float32(1.0 / 65025.0))[..., None]
        roi += (colour.astype(np.float32) - roi) * weight
    layer.rgb[lo[1] : hi[1], lo[0] : hi[0]] = np.clip(roi + 0.5, 0, 255).astype(np.uint8)


def _draw_eye(layer: _Layer, geo: _Geometry, palette: _Palette, idx: np.ndarray) -> None:
    """Sclera polygon, clipped iris and pupil, lash line and lower lid."""
    if np.count_nonzero(~geo.hidden[idx]) < 3:
        return
    outline = geo.image[idx]
    layer.fill([outline], palette.sclera)
    pts = geo.points[idx]
    half_w = 0.5 * float(np.linalg.norm(pts[3] - pts[0]))
    normal = geo.normals[idx].mean(axis=0)
    normal /= np.linalg.norm(normal)
    centre = pts.mean(axis=0) + 0.02 * normal
    centre[:2] += geo.gaze * np.array([0.3 * half_w, 0.12 * half_w])
    n_cam = geo.rotation @ normal
    radius = 0.46 * half_w * geo.scale
    axes = np.array([max(radius * abs(n_cam[2]), 0.3), radius])
    angle = float(np.degrees(np.arctan2(n_cam[1], n_cam[0])))
    _draw_iris(layer, outline, geo.project(centre[None])[0], axes, angle, palette)
    layer.stroke(outline[[0, 1, 2, 3]], _mix(palette.skin, _LASH, 0.9), max(1, layer.size // 128))
    layer.stroke(outline[[3, 4, 5, 0]], _mix(palette.skin, palette.skin * 0.55, 0.5))


def _draw_brow(layer: _Layer, geo: _Geometry, palette: _Palette, idx: np.ndarray) -> None:
    """A tapered brow band whose upper part runs through the landmarks."""
    if np.count_nonzero(~geo.hidden[idx]) < 3:
        return
    pts = geo.image[idx]
    tangent = np.gradient(pts, axis=0)
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True) + 1e-9
    eye = EYE_R if idx[0] == BROW_R[0] else EYE_L
    if np.sum(normal * (geo.image[eye].mean(axis=0) - pts)) < 0:
        normal = -normal
    profile = np.array([0.55, 0.85, 1.0, 1.0, 0.95])  # outer to inner
    if idx[0] == BROW_L[0]:
        profile = profile[::-1]
    width = (0.09 * geo.scale * profile)[:, None]
    band = np.concatenate([pts - 0.3 * width * normal, (pts + 0.7 * width * normal)[::-1]])
    layer.fill([band], palette.brow)


def _draw_nose(layer: _Layer, geo: _Geometry, palette: _Palette) -> None:
    """Nose sides shaded by the light, bridge highlight, nostrils and nose base line."""
    skin = palette.skin
    layer.fill([_nose_hull(geo.image)], skin, solid=True)
    face_light = float(geo.rotation[2] @ palette.light)
    halves = []
    for sign, ala, root, base in (
        (-1, ALA_R, ROOT_R, [31, 32, 33]),
        (1, ALA_L, ROOT_L, [33, 34, 35]),
    ):
        idx = np.array([27, 28, 29, 30, *base, ala, root])
        side_normal = geo.rotation @ np.array([0.8 * sign, 0.1, 0.6]) / np.sqrt(1.01)
        shade = np.clip(1.0 + 0.45 * (float(side_normal @ palette.light) - face_light), 0.7, 1.25)
        halves.append((float(geo.depth[idx].mean()), idx, shade))
    for _, idx, shade in sorted(halves, key=lambda h: h[0]):
        hull = cv2.convexHull(geo.image[idx].astype(np.float32)).reshape(-1, 2)
        layer.fill([hull.astype(np.float64)], skin * shade)
    layer.stroke(geo.image[NOSE_BRIDGE], _mix(skin, skin * 1.15, 0.45))
    for pair in ([31, 32], [34, 35]):
        if geo.hidden[pair].all():
            continue
        a, b = geo.image[pair]
        centre = geo.project(geo.points[pair].mean(axis=0)[None] + [[0, -0.02, 0]])[0]
        major = 0.55 * float(np.linalg.norm(b - a))
        angle = float(np.degrees(np.arctan2(b[1] - a[1], b[0] - a[0])))
        axes = (max(major, 0.5), max(0.4 * major, 0.5))
        layer.ellipse(centre, axes, angle, _mix(skin, skin * 0.3, 0.85))
    for run in _visible_runs(geo.hidden[NOSE_BASE]):
        layer.stroke(geo.image[NOSE_BASE[run]], _mix(skin, skin * 0.5, 0.5))


def _draw_mouth(layer: _Layer, geo: _Geometry, palette: _Palette) -> None:
    """Upper and lower lips, the mouth opening with teeth, and the line between the lips."""
    if np.count_nonzero(~geo.hidden[LIPS_OUTER]) < 4:
        return
    p = geo.image
    layer.fill([p[LIPS_OUTER]], palette.lips, solid=True)
    layer.fill([p[[48, 49, 50, 51, 52, 53, 54, 64, 63, 62, 61, 60]]], palette.lips * 0.82)
    layer.fill([p[[54, 55, 56, 57, 58, 59, 48, 60, 67, 66, 65, 64]]], palette.lips * 1.05)
    gap = p[[67, 66, 65]] - p[[61, 62, 63]]
    if float(np.linalg.norm(gap, axis=1).max()) > 1.0:
        layer.fill([p[LIPS_INNER]], palette.mouth)
        top = p[[60, 61, 62, 63, 64]]
        drop = 0.4 * (p[66] - p[62]) * np.array([0.0, 0.8, 1.0, 0.8, 0.0])[:, None]
        layer.fill([np.concatenate([top, (top + drop)[::-1]])], _TEETH)
    layer.stroke(p[[60, 61, 62, 63, 64]], _mix(palette.lips, palette.mouth, 0.7))


def _render_head(
    geo: _Geometry, palette: _Palette, rng: np.random.Generator, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """The shaded head layer: ``(S, S, 3)`` uint8 colour and ``(S, S)`` float32 coverage.

    Painted back to front: far ear, cranium, hair, face (jaw contour region and midline
    profile), near ear, then the face parts ordered by depth.
    """
    layer = _Layer(size, palette.skin)
    ears = sorted((EAR_R, EAR_L), key=lambda i: float(geo.facing(geo.normals[i])))
    behind = [e for e in ears if geo.facing(geo.normals[e]) <= 0.0]
    for ear in behind:
        _draw_ear(layer, geo, palette, ear)
    layer.ellipse(*_silhouette(geo, *_head_ellipsoid(geo, _CRANIUM)), palette.skin, solid=True)
    _draw_hair(layer, geo, palette, rng)
    layer.fill([geo.image[JAW]], palette.skin, solid=True)
    # midline profile (forehead, nose, lips, chin) fanned to the head centre: the front
    # silhouette of a turned face
    centre = geo.project(np.array([[0.0, 0.3, -0.4]]))
    layer.fill([np.concatenate([geo.image[PROFILE], centre])], palette.skin, solid=True)
    _draw_jaw_line(layer, geo, palette)
    for ear in ears:
        if ear not in behind:
            _draw_ear(layer, geo, palette, ear)
    parts = [
        (geo.depth[EYE_R].mean(), lambda: _draw_eye(layer, geo, palette, EYE_R)),
        (geo.depth[EYE_L].mean(), lambda: _draw_eye(layer, geo, palette, EYE_L)),
        (geo.depth[BROW_R].mean(), lambda: _draw_brow(layer, geo, palette, BROW_R)),
        (geo.depth[BROW_L].mean(), lambda: _draw_brow(layer, geo, palette, BROW_L)),
        (geo.depth[29], lambda: _draw_nose(layer, geo, palette)),
        (geo.depth[LIPS_OUTER].mean(), lambda: _draw_mouth(layer, geo, palette)),
    ]
    for _, draw in sorted(parts, key=lambda part: part[0]):
        draw()
    shade = cv2.convertScaleAbs(_shading(geo, palette, size), alpha=255.0)
    rgb = cv2.multiply(layer.rgb, cv2.merge([shade, shade, shade]), scale=1.0 / 255.0)
    return rgb, layer.mask.astype(np.float32) * np.float32(1.0 / 255.0)


def _ellipse_polygon(centre: np.ndarray, axes: np.ndarray, angle: float) -> np.ndarray:
    """``(32, 2)`` polygon of an ellipse (semi-axes in pixels, angle in degrees)."""
    t = np.linspace(0.0, 2.0 * np.pi, 32, endpoint=False)
    c, s = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    local = np.stack([axes[0] * np.cos(t), axes[1] * np.sin(t)], axis=1)
    return centre + local @ np.array([[c, s], [-s, c]])


def _draw_occluder(
    rng: np.random.Generator, image: np.ndarray, geo: _Geometry, palette: _Palette
) -> np.ndarray:
    """Paint a random occluder over the face in place (uint8); returns its ``(S, S)`` uint8
    coverage."""
    coverage = np.zeros(image.shape[:2], np.uint8)
    kind = int(rng.random() * 3)
    pts = geo.image[:NUM_POINTS]
    extent = float(np.max(pts.max(axis=0) - pts.min(axis=0)))
    colour = rng.uniform(0, 255, size=3)
    if kind == 0:  # sunglasses bar across the eyes
        a, b = pts[36], pts[45]
        centre = pts[36:48].mean(axis=0)
        length = max(float(np.linalg.norm(b - a)), 0.2 * extent) * rng.uniform(1.2, 1.5)
        angle = float(np.degrees(np.arctan2(b[1] - a[1], b[0] - a[0])))
        height = extent * rng.uniform(0.12, 0.2)
        shape = cv2.boxPoints((tuple(centre), (length, height), angle)).astype(np.float64)
        colour = rng.uniform(0, 70, size=3)
    else:
        centre = pts[17 + int(rng.random() * 51)] + rng.normal(0.0, 0.1 * extent, size=2)
        axes = rng.uniform(0.1, 0.3, size=2) * extent
        angle = float(rng.uniform(0, 180))
        if kind == 1:  # a hand or a round object
            if rng.random() < 0.5:
                colour = _jitter(rng, palette.skin, 0.1)
            shape = _ellipse_polygon(centre, axes, angle)
        else:  # a long object
            axes[1] *= rng.uniform(2.0, 3.5)
            shape = cv2.boxPoints((tuple(centre), tuple(2 * axes), angle)).astype(np.float64)
    pts_fixed = [_fixed(shape)]
    cv2.fillPoly(image, pts_fixed, _as_colour(colour), cv2.LINE_AA, _SHIFT)
    edge = max(1, image.shape[0] // 128)
    cv2.polylines(image, pts_fixed, True, _as_colour(colour * 0.7), edge, cv2.LINE_AA, _SHIFT)
    cv2.fillPoly(coverage, pts_fixed, 255, cv2.LINE_AA, _SHIFT)
    return coverage


def _apply_nuisance(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Colour cast, contrast, brightness, blur and noise on a float image; returns uint8."""
    size = image.shape[0]
    gains = 1.0 + rng.normal(0.0, 0.08, size=3)
    contrast = rng.uniform(0.7, 1.3)
    brightness = rng.normal(0.0, 20.0)
    mixing = np.eye(3) + rng.normal(0.0, 0.03, size=(3, 3))  # slight channel cross-talk
    linear = gains[:, None] * contrast * mixing
    shift = gains * (128.0 * (1.0 - contrast * mixing.sum(axis=1)) + brightness)
    image = cv2.transform(image, np.hstack([linear, shift[:, None]]).astype(np.float32))
    if rng.random() < 0.7:
        sigma = rng.uniform(0.3, 1.5) * size / 128.0
        image = cv2.GaussianBlur(image, (0, 0), sigma)
    image += _noise(rng, size) * np.float32(rng.uniform(0.0, 10.0))
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)


@lru_cache(maxsize=4)
def _noise_bank(size: int) -> np.ndarray:
    """A fixed ``(2S, 2S, 3)`` float32 table of standard normal noise."""
    return np.random.default_rng(20_240_601).standard_normal((2 * size, 2 * size, 3), np.float32)


def _noise(rng: np.random.Generator, size: int) -> np.ndarray:
    """``(S, S, 3)`` float32 unit Gaussian noise: a random window of the noise table, randomly
    flipped (cheaper than drawing fresh noise for every image)."""
    y0, x0 = (rng.random(2) * (size + 1)).astype(int)
    window = _noise_bank(size)[y0 : y0 + size, x0 : x0 + size]
    flip_y, flip_x = rng.choice([-1, 1], size=2)
    return window[::flip_y, ::flip_x]


def _sample_at(mask: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``(P,)`` mask values at the nearest pixels of ``(P, 2)`` points (0 outside the image)."""
    size = mask.shape[0]
    ij = np.rint(points).astype(int)
    inside = np.all((ij >= 0) & (ij < size), axis=1)
    values = np.zeros(len(points), mask.dtype)
    values[inside] = mask[ij[inside, 1], ij[inside, 0]]
    return values


def render_face(
    index: int, seed: int, image_size: int = 128
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Generate synthetic face ``index`` of the set with ``seed``.

    Returns:
        image ``(S, S, 3)`` uint8 RGB, landmarks ``(68, 2)`` float32 pixels, occluded ``(68,)``
        bool and pose ``(3,)`` float32 (yaw, pitch, roll) in degrees.
    """
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))
    geo, pose = _sample_geometry(rng, image_size)
    palette = _sample_palette(rng)
    background = _background(rng, image_size)
    _draw_body(background, geo, palette)
    rgb, alpha = _render_head(geo, palette, rng, image_size)
    image = cv2.blendLinear(rgb, background, alpha, 1.0 - alpha)
    landmarks = geo.image[:NUM_POINTS]
    occluded = geo.hidden.copy()
    if rng.random() < 0.2:
        cover = _draw_occluder(rng, image, geo, palette)
        occluded |= _sample_at(cover, landmarks) > 127
    image = _apply_nuisance(rng, image.astype(np.float32))
    return image, landmarks.astype(np.float32), occluded, pose.astype(np.float32)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def _render_range(
    start: int, stop: int, seed: int, image_size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Faces ``start..stop-1`` stacked: images, landmarks, occluded, poses."""
    faces = [render_face(i, seed, image_size) for i in range(start, stop)]
    return tuple(np.stack([face[k] for face in faces]) for k in range(4))  # type: ignore[return-value]


def _available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _render_parallel(
    num_faces: int, seed: int, image_size: int, workers: int
) -> tuple[np.ndarray, ...]:
    """Render in chunks on ``workers`` spawned processes (results identical to serial).

    Spawned, not forked: a fork taken after torch, OpenCV or OpenMP have started their thread
    pools (any training or test process) can deadlock in the child.
    """
    chunk = max(64, -(-num_faces // (4 * workers)))
    bounds = [(i, min(i + chunk, num_faces)) for i in range(0, num_faces, chunk)]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=_init_worker
    ) as pool:
        futures = [pool.submit(_render_range, a, b, seed, image_size) for a, b in bounds]
        parts = [future.result() for future in futures]
    return tuple(np.concatenate([part[k] for part in parts]) for k in range(4))


def _init_worker() -> None:
    """One OpenCV thread per worker process: the workers already use every core."""
    cv2.setNumThreads(1)


def _can_spawn_workers() -> bool:
    """Worker processes are allowed (daemonic processes, e.g. data-loader workers, may not
    have children)."""
    return not multiprocessing.current_process().daemon


def _render_all(
    num_faces: int, seed: int, image_size: int, num_workers: int | None
) -> tuple[np.ndarray, ...]:
    """All faces, stacked; in parallel chunks for large sets where worker processes are allowed."""
    if num_workers is None:
        num_workers = min(_available_cores(), 8) if num_faces >= _PARALLEL_MIN_FACES else 1
    num_workers = max(1, min(num_workers, num_faces // 64 or 1))
    if num_workers > 1 and _can_spawn_workers():
        try:
            return _render_parallel(num_faces, seed, image_size, num_workers)
        except (OSError, RuntimeError, BrokenProcessPool) as error:
            logger.warning("Parallel face generation failed (%s); generating serially", error)
    return _render_range(0, num_faces, seed, image_size)


def generate_synthetic_faces(
    num_faces: int, seed: int, image_size: int = 128, *, num_workers: int | None = None
) -> FaceSet:
    """Generate ``num_faces`` synthetic faces, deterministically from ``seed``.

    Face ``i`` depends only on ``(seed, i, image_size)``: not on ``num_faces`` nor on how many
    worker processes render the set (``num_workers``; None: all available cores for large sets,
    one process below 1,000 faces). Parallel rendering spawns worker processes.

    Returns:
        A FaceSet with images ``(N, S, S, 3)`` uint8 RGB, landmarks ``(N, 68, 2)`` float32
        pixels, visibility all True, occluded ``(N, 68)`` bool, boxes ``(N, 4)`` float32 tight
        landmark boxes ``(x0, y0, x1, y1)``, poses ``(N, 3)`` float32 (yaw, pitch, roll) in
        degrees and names ``synthetic_{seed}_{i}``.
    """
    if num_faces < 0:
        raise ValueError(f"num_faces must be >= 0, got {num_faces}")
    if image_size < 32:
        raise ValueError(f"image_size must be >= 32, got {image_size}")
    if num_faces == 0:
        images = np.zeros((0, image_size, image_size, 3), np.uint8)
        landmarks = np.zeros((0, NUM_POINTS, 2), np.float32)
        occluded = np.zeros((0, NUM_POINTS), bool)
        poses = np.zeros((0, 3), np.float32)
    else:
        images, landmarks, occluded, poses = _render_all(num_faces, seed, image_size, num_workers)
    boxes = tight_boxes(landmarks)
    return FaceSet(
        images=images,
        landmarks=landmarks,
        visibility=np.ones((num_faces, NUM_POINTS), dtype=bool),
        boxes=boxes.astype(np.float32),
        flip_permutation=IBUG68.flip_array(),
        poses=poses,
        occluded=occluded,
        names=[f"synthetic_{seed}_{i}" for i in range(num_faces)],
    )


def cache_path(cache_dir: str | Path, num_faces: int, seed: int, image_size: int = 128) -> Path:
    """Where :func:`load_or_generate_synthetic` caches a set."""
    name = f"synthetic_s{seed}_n{num_faces}_px{image_size}_v{SYNTHETIC_VERSION}.npz"
    return Path(cache_dir) / name


def _save(path: Path, faces: FaceSet) -> None:
    """Write ``faces`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(
                handle,
                images=faces.images,
                landmarks=faces.landmarks,
                visibility=faces.visibility,
                occluded=faces.occluded,
                boxes=faces.boxes,
                poses=faces.poses,
                flip_permutation=faces.flip_permutation,
                names=np.asarray(faces.names, dtype=str),
            )
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load(path: Path) -> FaceSet:
    with np.load(path, allow_pickle=False) as data:
        return FaceSet(
            images=data["images"],
            landmarks=data["landmarks"],
            visibility=data["visibility"],
            boxes=data["boxes"],
            flip_permutation=data["flip_permutation"],
            poses=data["poses"],
            occluded=data["occluded"],
            names=[str(n) for n in data["names"]],
        )


def load_or_generate_synthetic(
    cache_dir: str | Path, num_faces: int, seed: int, image_size: int = 128
) -> FaceSet:
    """Load the synthetic set from ``cache_dir`` or generate it and cache it there.

    The cache file is ``synthetic_s{seed}_n{num_faces}_px{image_size}_v{SYNTHETIC_VERSION}.npz``.
    """
    path = cache_path(cache_dir, num_faces, seed, image_size)
    if path.is_file():
        logger.info("Loading %d synthetic faces from %s", num_faces, path)
        try:
            return _load(path)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
            logger.warning("Unreadable cache %s (%s); generating it again", path, error)
    logger.info("Generating %d synthetic faces (seed %d, %d px)", num_faces, seed, image_size)
    start = time.perf_counter()
    faces = generate_synthetic_faces(num_faces, seed, image_size)
    logger.info("Generated %d synthetic faces in %.1f s", num_faces, time.perf_counter() - start)
    _save(path, faces)
    logger.info("Cached synthetic faces at %s", path)
    return faces
