"""AFLW-19 (AFLW without the ears): the scheme, the annotation CSVs and the shapes-only arrays.

AFLW annotates up to 21 points per face (1-based, "left" = image left): 1-3 left brow, 4-6 right
brow, 7-9 left eye, 10-12 right eye, 13 left ear, 14-16 nose, 17 right ear, 18-20 mouth, 21 chin.
The 19-point protocol (AFLW-Full / AFLW-Frontal) drops the two ears and comes with coordinates for
every point, the invisible ones included (they were added by hand for that protocol).

Annotation CSV layout (``face_landmarks_aflw_train.csv``, ``face_landmarks_aflw_test.csv``,
``face_landmarks_aflw_test_frontal.csv``): a header line, then one face per line with
``5 + 2 * 19 = 43`` comma-separated columns::

    image_name, scale, box_size, center_w, center_h, x1, y1, x2, y2, ..., x19, y19

``image_name`` is a path relative to the image folder (e.g. ``flickr/0/image00002.jpg``),
``scale`` is the crop scale of the reference loader (side ``200 * scale`` pixels; unused here),
``box_size`` is the side of the face box in pixels (the normaliser of AFLW's NME) and
``center_w``/``center_h`` its centre ``(x, y)``; the points follow in :data:`AFLW19` order.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from wingface.data.checks import BadSamples, check_landmarks_in_image
from wingface.data.faces import FaceSet
from wingface.data.files import read_image_rgb, read_text_lines
from wingface.landmarks import AFLW19

AFLW19_NAMES: tuple[str, ...] = (
    "left_brow_left_corner",
    "left_brow_centre",
    "left_brow_right_corner",
    "right_brow_left_corner",
    "right_brow_centre",
    "right_brow_right_corner",
    "left_eye_left_corner",
    "left_eye_centre",
    "left_eye_right_corner",
    "right_eye_left_corner",
    "right_eye_centre",
    "right_eye_right_corner",
    "nose_left",
    "nose_centre",
    "nose_right",
    "mouth_left_corner",
    "mouth_centre",
    "mouth_right_corner",
    "chin_centre",
)
"""The 19 point names in order; "left"/"right" are image left/right."""

AFLW21_TO_19: tuple[int, ...] = (*range(12), 13, 14, 15, 17, 18, 19, 20)
"""0-based indices into AFLW's 21 points of the 19 kept ones (ears, 0-based 12 and 16, dropped)."""

CSV_META_COLUMNS = ("image_name", "scale", "box_size", "center_w", "center_h")
"""The columns before the ``x, y`` pairs in the AFLW-19 CSV files."""

_FLOAT32_MAX = float(np.finfo(np.float32).max)

INVISIBLE_X = -1.0
INVISIBLE_Y = 452.0
"""How the shapes-only arrays mark a point without a position: ``x = -1``, ``y = 452``."""


# --------------------------------------------------------------------------- CSV


def _column_name(column: int) -> str:
    """The name of 0-based CSV ``column`` (``box_size``, ``x3``, ``y19`` ...)."""
    if column < len(CSV_META_COLUMNS):
        return CSV_META_COLUMNS[column]
    point, axis = divmod(column - len(CSV_META_COLUMNS), 2)
    return f"{'xy'[axis]}{point + 1}"


def _parse_value(token: str, where: str, column: int) -> float:
    """A finite float from CSV cell ``token`` (``where`` names file and line)."""
    name = _column_name(column)
    try:
        value = float(token)
    except ValueError:
        raise ValueError(
            f"{where}, column {column + 1} ({name}): expected a number, found {token!r}"
        ) from None
    if not math.isfinite(value) or abs(value) > _FLOAT32_MAX:
        raise ValueError(
            f"{where}, column {column + 1} ({name}): expected a finite number within float32 "
            f"range, found {token!r}"
        )
    return value


def _is_number(text: str) -> bool:
    """True when ``text`` parses as a float."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def _is_header(cells: list[str]) -> bool:
    """True when a first CSV line is a header: none of its cells after the first is a number."""
    return len(cells) > 1 and not any(_is_number(cell) for cell in cells[1:])


def _parse_row(cells: list[str], where: str, num_points: int) -> tuple[str, np.ndarray, np.ndarray]:
    """``(image name, (L, 2) float64 points, (4,) float64 box)`` of one CSV row."""
    expected = len(CSV_META_COLUMNS) + 2 * num_points
    if len(cells) != expected:
        raise ValueError(
            f"{where}: expected {expected} comma-separated columns (image_name, scale, "
            f"box_size, center_w, center_h and {num_points} x, y pairs), found {len(cells)}"
        )
    name = cells[0].strip()
    if not name:
        raise ValueError(f"{where}, column 1 (image_name): expected an image path, found ''")
    values = [_parse_value(cell.strip(), where, i) for i, cell in enumerate(cells) if i > 0]
    box_size, centre_x, centre_y = values[1], values[2], values[3]
    if box_size <= 0:
        raise ValueError(
            f"{where}, column 3 (box_size): expected a positive box size, found {cells[2]!r}"
        )
    half = box_size / 2.0
    box = np.array([centre_x - half, centre_y - half, centre_x + half, centre_y + half])
    return name, np.array(values[4:], dtype=np.float64).reshape(num_points, 2), box


def _parse_csv(
    csv_path: Path, num_points: int, bad: BadSamples | None = None
) -> tuple[list[str], np.ndarray, np.ndarray, list[int]]:
    """Names, ``(N, L, 2)`` points, ``(N, 4)`` boxes and 1-based line numbers of a CSV's faces.

    A malformed row raises, or is handed to ``bad`` (the ``data.on_bad_sample`` policy).
    """
    lines, _ = read_text_lines(csv_path)
    if lines and _is_header(_split_csv(lines[0].text, f"{csv_path}, line {lines[0].number}")):
        lines = lines[1:]
    if not lines:
        raise ValueError(
            f"{csv_path}: no faces found (expected one line per face after the header)"
        )
    rows, numbers = [], []
    for line in lines:
        try:
            where = f"{csv_path}, line {line.number}"
            rows.append(_parse_row(_split_csv(line.text, where), where, num_points))
        except ValueError as error:
            if bad is None:
                raise
            bad.drop(error)
            continue
        numbers.append(line.number)
    if bad is not None:
        bad.check_some_left(len(rows), f"AFLW CSV {csv_path}")
    return (
        [name for name, _, _ in rows],
        np.stack([points for _, points, _ in rows]).astype(np.float32),
        np.stack([box for _, _, box in rows]).astype(np.float32),
        numbers,
    )


def _split_csv(text: str, where: str) -> list[str]:
    """The cells of one CSV line (quoted cells may hold commas).

    Raises:
        ValueError: naming ``where`` (file and line) when the line is not CSV (e.g. a carriage
            return inside an unquoted cell).
    """
    try:
        return next(csv.reader([text]))
    except csv.Error as error:
        raise ValueError(f"{where}: not a CSV line ({error})") from error


def read_aflw_csv(
    csv_path: str | Path, num_points: int = 19
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Parse an AFLW-19 annotation CSV file (no images are read).

    A first line without any number after its first cell is a header and is skipped; blank lines
    are skipped; LF or CRLF line ends.

    Args:
        csv_path: the CSV file.
        num_points: landmarks per row ``L`` (19 for AFLW-19).

    Returns:
        ``(image names, landmarks (N, L, 2) float32, boxes (N, 4) float32)``: landmarks as
        given in the file, boxes the squares of side ``box_size`` centred on
        ``(center_w, center_h)``, i.e. ``(cx - s/2, cy - s/2, cx + s/2, cy + s/2)``.

    Raises:
        ValueError: naming the file and the 1-based line number, for a wrong column count,
            a non-numeric or non-finite value, an empty image name, a non-positive box size or
            text that is not UTF-8; and for a file without faces.
    """
    names, landmarks, boxes, _ = _parse_csv(Path(csv_path), num_points)
    return names, landmarks, boxes


def load_aflw_csv(
    csv_path: str | Path,
    image_root: str | Path,
    num_points: int = 19,
    on_bad_sample: str = "error",
) -> FaceSet:
    """Load the faces of an AFLW-19 annotation CSV file with their images.

    Coordinates are used as given. The files do not say which pixel origin they use; they are
    taken to be 0-based pixels with the centre of pixel ``i`` at ``i`` (the reference loader that
    ships with these files uses them unchanged as well). The files carry no visibility flags
    (every point, the invisible ones included, has a position in this protocol), so
    ``visibility`` is all True.

    Args:
        csv_path: ``face_landmarks_aflw_{train,test,test_frontal}.csv``.
        image_root: the folder the CSV's ``image_name`` paths are relative to.
        num_points: landmarks per face (19).
        on_bad_sample: ``"error"`` raises at the first bad face (a malformed row, a missing or
            corrupt image, landmarks more than one image side outside the image); ``"skip"``
            leaves it out and lists it in ``FaceSet.dropped`` (:mod:`wingface.data.checks`).

    Returns:
        A FaceSet: ``images`` a list of ``(H_i, W_i, 3)`` uint8 RGB arrays, ``landmarks``
        ``(N, 19, 2)`` float32 pixels, ``visibility`` all True, ``boxes`` the square face boxes
        ``(cx - s/2, cy - s/2, cx + s/2, cy + s/2)`` with ``s = box_size`` (so the box side
        ``x1 - x0`` is the normaliser of AFLW's face-size NME), ``names`` the CSV image names,
        ``flip_permutation`` the :data:`AFLW19` one. ``poses`` and ``occluded`` are None.

    Raises:
        ValueError: a malformed CSV (file and 1-based line named, see :func:`read_aflw_csv`),
            a corrupt image, landmarks far outside the image (``error`` policy for these),
            a CSV without any usable face, ``num_points`` other than 19.
        FileNotFoundError: an image named in the CSV is missing (file, line and path named).
    """
    if num_points != AFLW19.num_points:
        raise ValueError(
            f"load_aflw_csv reads the 19-point AFLW scheme only; got num_points={num_points}"
        )
    csv_path, image_root = Path(csv_path), Path(image_root)
    bad = BadSamples(on_bad_sample)
    names, landmarks, boxes, line_numbers = _parse_csv(csv_path, num_points, bad)
    images: list[np.ndarray] = []
    kept: list[int] = []
    for index, (name, number) in enumerate(zip(names, line_numbers, strict=True)):
        where = f"{csv_path}, line {number}"
        try:
            images.append(_read_face_image(image_root, name, where, landmarks[index]))
        except (ValueError, OSError) as error:
            bad.drop(error, where)
            continue
        kept.append(index)
    bad.check_some_left(len(kept), f"AFLW CSV {csv_path}")
    return FaceSet(
        images=images,
        landmarks=landmarks[kept],
        visibility=np.ones((len(kept), landmarks.shape[1]), dtype=bool),
        boxes=boxes[kept],
        flip_permutation=AFLW19.flip_array(),
        names=[names[i] for i in kept],
        dropped=bad.dropped,
    )


def _read_face_image(image_root: Path, name: str, where: str, landmarks: np.ndarray) -> np.ndarray:
    """The ``(H, W, 3)`` uint8 RGB image of one CSV row, its landmarks checked against it."""
    path = image_root / name
    if not path.is_file():
        raise FileNotFoundError(f"{where}: image not found: {path}; image_root={image_root}")
    try:
        image = read_image_rgb(path)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None
    check_landmarks_in_image(landmarks, image.shape, f"{where} (image {name})")
    return image


def load_aflw_test(
    csv_path: str | Path,
    frontal_csv_path: str | Path,
    image_root: str | Path,
    on_bad_sample: str = "error",
) -> FaceSet:
    """The AFLW-Full test faces, each flagged ``attributes["frontal"]`` when it is also in the
    AFLW-Frontal list (matched on image name and face box).

    Under ``on_bad_sample="skip"`` frontal faces dropped from the full list (they are listed in
    ``FaceSet.dropped``) are allowed to be missing."""
    faces = load_aflw_csv(csv_path, image_root, on_bad_sample=on_bad_sample)
    frontal_names, _, frontal_boxes = read_aflw_csv(frontal_csv_path)
    frontal = {
        (n, tuple(np.round(b, 3))) for n, b in zip(frontal_names, frontal_boxes, strict=True)
    }
    flags = np.array(
        [
            (n, tuple(np.round(b, 3))) in frontal
            for n, b in zip(faces.names, faces.boxes, strict=True)
        ]
    )
    missing = len(frontal) - int(flags.sum())
    if missing and not 0 < missing <= len(faces.dropped):
        raise ValueError(
            f"{frontal_csv_path}: {len(frontal)} frontal faces listed, {int(flags.sum())} of them "
            f"found in {csv_path}"
        )
    faces.attributes["frontal"] = flags
    return faces


# --------------------------------------------------------------------------- shapes only


def _load_array(path: str | Path, what: str) -> np.ndarray:
    """``np.load`` without pickles; errors name the file."""
    try:
        return np.load(Path(path), allow_pickle=False)
    except (ValueError, OSError) as err:
        if isinstance(err, FileNotFoundError):
            raise FileNotFoundError(f"AFLW {what} file not found: {path}") from None
        raise ValueError(f"cannot read AFLW {what} file {path}: {err}") from None


def load_aflw_shapes(
    npy_pts: str | Path, npy_yaws: str | Path
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read the shapes-only AFLW release (21 points per face, a 450x450 crop frame, and yaw).

    ``npy_pts`` holds an ``(N, 2, 21)`` float array (an x row and a y row per face, points in
    AFLW's 21-point order, a point without a position coded ``x = -1, y = 452``); ``npy_yaws``
    an ``(N,)`` array of head yaws in degrees.

    Returns:
        ``(landmarks, visibility, yaw)``: ``(N, 19, 2)`` float32 ``(x, y)`` pixels of the crop in
        :data:`AFLW19` order (ears dropped; points without a position are set to 0.0 and must be
        masked with ``visibility``), ``(N, 19)`` bool True where a point has a position, and
        ``(N,)`` float32 yaw in degrees.

    Raises:
        ValueError: naming the file, for wrong shapes, a face-count mismatch or non-finite values.
    """
    pts = _load_array(npy_pts, "landmark")
    yaws = _load_array(npy_yaws, "yaw")
    if pts.ndim != 3 or pts.shape[1:] != (2, 21) or not np.issubdtype(pts.dtype, np.floating):
        raise ValueError(
            f"{npy_pts}: expected a float array of shape (N, 2, 21), got {pts.dtype} {pts.shape}"
        )
    if yaws.shape != (len(pts),) or not np.issubdtype(yaws.dtype, np.number):
        raise ValueError(
            f"{npy_yaws}: expected a numeric array of shape ({len(pts)},) to match {npy_pts}, "
            f"got {yaws.dtype} {yaws.shape}"
        )
    shapes = np.transpose(pts, (0, 2, 1))[:, AFLW21_TO_19, :].astype(np.float32)
    visibility = ~((shapes[..., 0] == INVISIBLE_X) & (shapes[..., 1] == INVISIBLE_Y))
    bad = ~np.isfinite(shapes).all(axis=2) & visibility
    if bad.any():
        face = int(np.argwhere(bad)[0, 0])
        raise ValueError(f"{npy_pts}: face {face} has NaN or infinite landmark coordinates")
    if not np.isfinite(yaws).all():
        face = int(np.argwhere(~np.isfinite(yaws))[0, 0])
        raise ValueError(f"{npy_yaws}: face {face} has a NaN or infinite yaw")
    shapes[~visibility] = 0.0
    return shapes, visibility, yaws.astype(np.float32)
