"""COFW: the 29-point Caltech Occluded Faces in the Wild ``.mat`` files.

Each split is a MATLAB file with three variables (``Tr`` for train, ``T`` for test):

- ``IsTr`` / ``IsT``: an ``N x 1`` cell array of uint8 images, ``H x W`` (grey) or
  ``H x W x 3`` (RGB);
- ``phisTr`` / ``phisT``: ``N x 87`` double, the 29 x coordinates, the 29 y coordinates, then
  29 occlusion flags (1 = the point is hidden; every point still has a position);
- ``bboxesTr`` / ``bboxesT``: ``N x 4`` double face boxes ``(x, y, width, height)``.

Coordinates are MATLAB's 1-based pixel coordinates (the centre of the top-left pixel is (1, 1));
they are shifted by -1 to the 0-based frame. The colour release (``COFW_train_color.mat``,
``COFW_test_color.mat``) is a MATLAB v7.3 file, which is HDF5: each variable is a dataset
stored with its dimensions reversed, and a cell array is a dataset of object references to
datasets under ``#refs#``. Older MATLAB v5 files are read with ``scipy.io.loadmat``. Reading v7.3
files needs the optional ``h5py`` package.

29-point order (0-based), the LFPW 29-point layout; each pair below is a left/right pair:

- (0, 1) outer brow corners, (2, 3) inner brow corners, (4, 6) upper brow middles,
  (5, 7) lower brow middles;
- (8, 9) outer eye corners, (10, 11) inner eye corners, (12, 14) upper eyelid middles,
  (13, 15) lower eyelid middles, (16, 17) pupils;
- (18, 19) nose wings, 20 nose tip, 21 below the nose;
- (22, 23) mouth corners, 24 upper lip top, 25 upper lip bottom, 26 lower lip top,
  27 lower lip bottom; 28 chin.

Which member of each pair is on the subject's right is not stated in the release; distances
between pair members (inter-ocular 8-9, inter-pupil 16-17) do not depend on it.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io

from wingface.data.checks import BadSamples, check_landmarks_in_image
from wingface.data.faces import FaceSet
from wingface.landmarks import COFW29

COFW_NUM_POINTS = 29

COFW_VARIABLES: dict[str, tuple[str, str, str]] = {
    "train": ("IsTr", "phisTr", "bboxesTr"),
    "test": ("IsT", "phisT", "bboxesT"),
}
"""Split -> (images, shapes, boxes) variable names."""

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _is_hdf5(path: Path) -> bool:
    """True if ``path`` holds an HDF5 signature at offset 0, 512, 1024, ... (a v7.3 MAT-file)."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        offset = 0
        while offset + len(_HDF5_SIGNATURE) <= size:
            handle.seek(offset)
            if handle.read(len(_HDF5_SIGNATURE)) == _HDF5_SIGNATURE:
                return True
            offset = 512 if offset == 0 else 2 * offset
    return False


def _missing_variable(path: Path, name: str, split: str, found: list[str]) -> ValueError:
    expected = ", ".join(COFW_VARIABLES[split])
    return ValueError(
        f"{path}: variable {name!r} not found (a COFW {split} file holds {expected}; "
        f"found {sorted(found)})"
    )


def _read_v5(path: Path, split: str) -> tuple[list[Any], Any, Any]:
    """Raw (images, shapes, boxes) from a MATLAB v5 file, in MATLAB's shapes."""
    names = COFW_VARIABLES[split]
    try:
        contents = scipy.io.loadmat(str(path), variable_names=list(names))
    except Exception as err:
        raise ValueError(f"{path}: not a readable MATLAB file ({err})") from err
    for name in names:
        if name not in contents:
            found = [entry[0] for entry in scipy.io.whosmat(str(path))]
            raise _missing_variable(path, name, split, found)
    cell = contents[names[0]]
    if not isinstance(cell, np.ndarray) or cell.dtype != object:
        raise ValueError(f"{path}: variable {names[0]!r}: expected a cell array of images")
    return list(cell.ravel(order="F")), contents[names[1]], contents[names[2]]


def _import_h5py(path: Path) -> Any:
    try:
        return importlib.import_module("h5py")
    except ImportError as err:
        raise ImportError(
            f"{path} is a MATLAB v7.3 (HDF5) file; reading it needs the h5py package"
        ) from err


def _read_v73(path: Path, split: str) -> tuple[list[Any], Any, Any]:
    """Raw (images, shapes, boxes) from a MATLAB v7.3 file, transposed back to MATLAB's shapes."""
    h5py = _import_h5py(path)
    names = COFW_VARIABLES[split]
    with h5py.File(path, "r") as handle:
        for name in names:
            if not isinstance(handle.get(name), h5py.Dataset):
                found = [key for key in handle if key != "#refs#"]
                raise _missing_variable(path, name, split, found)
        cell = handle[names[0]]
        if h5py.check_ref_dtype(cell.dtype) is None:
            raise ValueError(f"{path}: variable {names[0]!r}: expected a cell array of images")
        images = []
        # the stored (reversed) shape read in C order is MATLAB's column-major order
        for index, ref in enumerate(np.asarray(cell[()]).ravel()):
            try:
                images.append(np.asarray(handle[ref][()]).T)
            except (ValueError, KeyError, TypeError) as err:
                raise ValueError(
                    f"{path}: variable {names[0]!r}, cell {index + 1}: unreadable reference ({err})"
                ) from err
        shapes = np.asarray(handle[names[1]][()]).T
        boxes = np.asarray(handle[names[2]][()]).T
    return images, shapes, boxes


def _to_rgb(image: Any, path: Path, name: str, index: int) -> np.ndarray:
    """One cell of the image variable as ``(H, W, 3)`` uint8 RGB (grey replicated)."""
    where = f"{path}: variable {name!r}, cell {index + 1}"
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] != 3 or 0 in array.shape:
        raise ValueError(f"{where}: expected an H x W or H x W x 3 image, got shape {array.shape}")
    if array.dtype != np.uint8:
        if array.dtype.kind not in "biuf" or not np.all(np.isfinite(array)):
            raise ValueError(f"{where}: expected uint8 pixels, got {array.dtype}")
        if array.min() < 0 or array.max() > 255 or not np.all(array == np.round(array)):
            raise ValueError(f"{where}: expected integer pixels in 0..255 ({array.dtype})")
        array = array.astype(np.uint8)
    return np.ascontiguousarray(array)


def _numeric_matrix(value: Any, path: Path, name: str, columns: int) -> np.ndarray:
    """``value`` as a float64 ``(N, columns)`` array, or a ValueError naming it (the values
    are checked row by row by :func:`_check_row`)."""
    array = np.asarray(value)
    if array.dtype.kind not in "biuf" or array.ndim != 2 or array.shape[1] != columns:
        raise ValueError(
            f"{path}: variable {name!r}: expected a numeric N x {columns} matrix, "
            f"got {array.dtype} with shape {array.shape}"
        )
    return array.astype(np.float64)


def _check_row(shape: np.ndarray, box: np.ndarray, row: int, path: Path, split: str) -> None:
    """Raise for non-finite values, occlusion flags other than 0/1 or a negative box size in
    0-based ``row`` of the ``(87,)`` shape and ``(4,)`` box values."""
    shape_name, box_name = COFW_VARIABLES[split][1:]
    for name, values in ((shape_name, shape), (box_name, box)):
        bad = np.flatnonzero(~np.isfinite(values))
        if len(bad):
            raise ValueError(
                f"{path}: variable {name!r}: non-finite value at row {row + 1}, column {bad[0] + 1}"
            )
    flags = shape[2 * COFW_NUM_POINTS :]
    bad = np.flatnonzero((flags != 0) & (flags != 1))
    if len(bad):
        raise ValueError(
            f"{path}: variable {shape_name!r}: occlusion flag at row {row + 1}, column "
            f"{2 * COFW_NUM_POINTS + bad[0] + 1} must be 0 or 1, got {flags[bad[0]]}"
        )
    if box[2] < 0 or box[3] < 0:
        raise ValueError(
            f"{path}: variable {box_name!r}: row {row + 1} has a negative width or height "
            f"(expected x, y, width, height)"
        )


def _boxes_xyxy(boxes: np.ndarray) -> np.ndarray:
    """1-based ``(x, y, w, h)`` rows -> 0-based ``(x0, y0, x1, y1)`` float32."""
    x0, y0 = boxes[:, 0] - 1.0, boxes[:, 1] - 1.0
    return np.stack([x0, y0, x0 + boxes[:, 2], y0 + boxes[:, 3]], axis=1).astype(np.float32)


def _points(shapes: np.ndarray) -> np.ndarray:
    """``(N, 87)`` shape rows -> ``(N, 29, 2)`` float64 0-based ``(x, y)``."""
    xs, ys = shapes[:, :COFW_NUM_POINTS], shapes[:, COFW_NUM_POINTS : 2 * COFW_NUM_POINTS]
    return np.stack([xs, ys], axis=2) - 1.0


def load_cofw(mat_path: str | Path, split: str, on_bad_sample: str = "error") -> FaceSet:
    """Read one COFW split from a MATLAB v5 or v7.3 ``.mat`` file.

    Args:
        mat_path: e.g. ``COFW_train_color.mat`` or ``COFW_test_color.mat``.
        split: ``"train"`` (variables ``IsTr``, ``phisTr``, ``bboxesTr``) or ``"test"``
            (``IsT``, ``phisT``, ``bboxesT``).
        on_bad_sample: ``"error"`` raises at the first bad face (a malformed image cell, a
            non-finite value, an occlusion flag other than 0/1, a negative box size, landmarks
            more than one image side outside the image); ``"skip"`` leaves it out and lists it
            in ``FaceSet.dropped`` (:mod:`wingface.data.checks`).

    Returns:
        A FaceSet in file order: ``images`` a list of ``(H, W, 3)`` uint8 RGB arrays,
        ``landmarks`` ``(N, 29, 2)`` float32 0-based pixels, ``visibility`` all True (every point
        is annotated), ``occluded`` ``(N, 29)`` bool from the flags, ``boxes`` ``(N, 4)`` float32
        ``(x0, y0, x1, y1)`` 0-based, ``names`` ``cofw_<split>_0001``, ... (1-based: the cell
        number, also for the faces kept after others were dropped).

    Raises:
        FileNotFoundError: ``mat_path`` does not exist.
        ValueError: unknown split, unreadable file, a missing or malformed variable, a bad face
            (``error`` policy) or no usable face (the message names the file and the variable).
        ImportError: a v7.3 file and no ``h5py``.
    """
    if split not in COFW_VARIABLES:
        raise ValueError(f"unknown COFW split {split!r}; expected one of {sorted(COFW_VARIABLES)}")
    path = Path(mat_path)
    if not path.is_file():
        raise FileNotFoundError(f"COFW file not found: {path}")
    image_name, shape_name, box_name = COFW_VARIABLES[split]
    reader = _read_v73 if _is_hdf5(path) else _read_v5
    raw_images, raw_shapes, raw_boxes = reader(path, split)
    shapes = _numeric_matrix(raw_shapes, path, shape_name, 3 * COFW_NUM_POINTS)
    boxes = _numeric_matrix(raw_boxes, path, box_name, 4)
    if len(shapes) == 0:
        raise ValueError(f"{path}: variable {shape_name!r} holds no faces")
    if not len(raw_images) == len(shapes) == len(boxes):
        raise ValueError(
            f"{path}: variables {image_name!r}, {shape_name!r}, {box_name!r} disagree on the "
            f"number of faces ({len(raw_images)}, {len(shapes)}, {len(boxes)})"
        )
    bad = BadSamples(on_bad_sample)
    points = _points(shapes)
    images: list[np.ndarray] = []
    kept: list[int] = []
    for i, raw in enumerate(raw_images):
        try:
            _check_row(shapes[i], boxes[i], i, path, split)
            image = _to_rgb(raw, path, image_name, i)
            where = f"{path}: variable {shape_name!r}, row {i + 1}"
            check_landmarks_in_image(points[i], image.shape, where)
        except ValueError as error:
            bad.drop(error)
            continue
        images.append(image)
        kept.append(i)
    bad.check_some_left(len(kept), f"COFW file {path}")
    return FaceSet(
        images=images,
        landmarks=points[kept].astype(np.float32),
        visibility=np.ones((len(kept), COFW_NUM_POINTS), dtype=bool),
        boxes=_boxes_xyxy(boxes[kept]),
        flip_permutation=COFW29.flip_array(),
        occluded=shapes[kept, 2 * COFW_NUM_POINTS :] == 1,
        names=[f"cofw_{split}_{i + 1:04d}" for i in kept],
        dropped=bad.dropped,
    )
