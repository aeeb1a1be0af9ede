"""WFLW: the 98-point Wider Facial Landmarks in-the-Wild annotation lists.

The release ships ``WFLW_images/`` (WIDER FACE pictures) and ``WFLW_annotations/`` with
``list_98pt_rect_attr_train_test/list_98pt_rect_attr_{train,test}.txt`` and, beside them,
``list_98pt_test/list_98pt_test_{largepose,expression,illumination,makeup,occlusion,blur}.txt``
(the test-set faces that carry each attribute). All of these files share one line layout:
one face per line, fields separated by spaces, ``207 = 196 + 4 + 6 + 1`` fields for 98 points::

    x0 y0 x1 y1 ... x97 y97                 landmark coordinates (pixels)
    x_min y_min x_max y_max                 face rectangle (pixels)
    pose expression illumination make-up occlusion blur    attribute flags, 0 or 1
    image path                              relative to ``WFLW_images/``

The coordinates are used as they are: they are 0-based pixel coordinates (the centre of pixel
``i`` at ``i``), the convention of the toolchains that read the lists. One picture can hold
several annotated faces, so a path can appear on several lines.

98-point layout (0-based; "right" is the subject's right, on the image's left):

- 0-32 face contour, from the right temple over the chin (16) to the left temple;
- 33-41 right brow (33-37 upper edge outward-in, 38-41 lower edge), 42-50 left brow
  (42-46 upper edge inward-out, 47-50 lower edge);
- 51-54 nose bridge, 55-59 lower nose from right to left (57 in the middle);
- 60-67 right eye (60 outer corner, 64 inner corner), 68-75 left eye (68 inner corner,
  72 outer corner);
- 76-87 outer lip contour (76 right corner, 82 left corner), 88-95 inner lip contour
  (88 right corner, 92 left corner);
- 96 right pupil, 97 left pupil.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wingface.data.checks import BadSamples, check_landmarks_in_image
from wingface.data.faces import FaceSet
from wingface.data.files import read_image_rgb
from wingface.landmarks import IBUG68, WFLW98, LandmarkScheme

WFLW_ATTRIBUTES: tuple[str, ...] = (
    "pose",
    "expression",
    "illumination",
    "makeup",
    "occlusion",
    "blur",
)
"""The six attribute flags in file order (the README calls the fourth one ``make-up``)."""

WFLW_TEST_SUBSETS: dict[str, str] = {
    "largepose": "pose",
    "expression": "expression",
    "illumination": "illumination",
    "makeup": "makeup",
    "occlusion": "occlusion",
    "blur": "blur",
}
"""Subset list ``list_98pt_test_<key>.txt`` -> the attribute flag that defines it."""

_NUM_BOX = 4
_BOX_NAMES = ("x_min", "y_min", "x_max", "y_max")
_FIELD_SEPARATOR = re.compile(r"[ \t\r\f\v]+")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_NON_FINITE = re.compile(r"[+-]?(?:nan|inf|infinity)", re.ASCII | re.IGNORECASE)


@dataclass(frozen=True)
class WflwAnnotation:
    """One parsed line of a WFLW list.

    Attributes:
        landmarks: ``(L, 2)`` float64 ``(x, y)`` in 0-based pixels.
        box: ``(4,)`` float64 ``(x_min, y_min, x_max, y_max)`` in pixels.
        flags: ``(6,)`` bool, in the order of ``WFLW_ATTRIBUTES``.
        image: the image path relative to ``WFLW_images/``.
    """

    landmarks: np.ndarray
    box: np.ndarray
    flags: np.ndarray
    image: str


def expected_field_count(num_points: int = 98) -> int:
    """Fields on one line: ``2 * num_points`` coordinates, 4 box values, 6 flags, 1 path."""
    return 2 * num_points + _NUM_BOX + len(WFLW_ATTRIBUTES) + 1


def _parse_number(token: str, field: int, what: str) -> float:
    """``token`` as a finite float; ``field`` is the 1-based field number for messages."""
    if _NON_FINITE.fullmatch(token):
        raise ValueError(f"field {field} ({what}): expected a finite number, got {token!r}")
    if not _NUMBER.fullmatch(token):
        raise ValueError(f"field {field} ({what}): expected a number, got {token!r}")
    value = float(token)
    if not math.isfinite(value):
        raise ValueError(f"field {field} ({what}): expected a finite number, got {token!r}")
    return value


def _parse_flag(token: str, field: int, name: str) -> bool:
    value = _parse_number(token, field, f"attribute {name}")
    if value not in (0.0, 1.0):
        raise ValueError(f"field {field} (attribute {name}): flag must be 0 or 1, got {token!r}")
    return value == 1.0


def _split_fields(line: str) -> list[str]:
    stripped = line.strip(" \t\r\n\f\v")
    return _FIELD_SEPARATOR.split(stripped) if stripped else []


def parse_wflw_line(line: str, num_points: int = 98) -> WflwAnnotation:
    """Parse one annotation line (trailing ``\\r``/``\\n`` allowed).

    Fields are separated by ASCII spaces or tabs. Raises ``ValueError`` saying which field is
    wrong and what was expected (a message without file name or line number).
    """
    if num_points < 1:
        raise ValueError(f"num_points must be >= 1, got {num_points}")
    fields = _split_fields(line)
    expected = expected_field_count(num_points)
    if len(fields) != expected:
        raise ValueError(
            f"expected {expected} fields ({2 * num_points} landmark coordinates, "
            f"{_NUM_BOX} box values, {len(WFLW_ATTRIBUTES)} attribute flags, 1 image path), "
            f"got {len(fields)}"
        )
    coords = [
        _parse_number(fields[i], i + 1, f"{'xy'[i % 2]}{i // 2}") for i in range(2 * num_points)
    ]
    start = 2 * num_points
    box = [_parse_number(fields[start + k], start + k + 1, _BOX_NAMES[k]) for k in range(4)]
    if box[2] < box[0] or box[3] < box[1]:
        raise ValueError(
            f"fields {start + 1}-{start + 4}: box must have x_max >= x_min and y_max >= y_min, "
            f"got {fields[start : start + 4]}"
        )
    start += _NUM_BOX
    flags = [
        _parse_flag(fields[start + k], start + k + 1, name)
        for k, name in enumerate(WFLW_ATTRIBUTES)
    ]
    return WflwAnnotation(
        landmarks=np.asarray(coords, dtype=np.float64).reshape(num_points, 2),
        box=np.asarray(box, dtype=np.float64),
        flags=np.asarray(flags, dtype=bool),
        image=fields[-1],
    )


def scheme_for(num_points: int) -> LandmarkScheme:
    """The landmark scheme of a WFLW list with ``num_points`` points (98, or a 68-point remap)."""
    schemes = {WFLW98.num_points: WFLW98, IBUG68.num_points: IBUG68}
    if num_points not in schemes:
        raise ValueError(
            f"no landmark scheme for {num_points}-point WFLW lists; "
            f"expected one of {sorted(schemes)}"
        )
    return schemes[num_points]


def _read_lines(path: Path) -> list[str]:
    """The lines of ``path`` split on ``\\n`` only (a ``\\r`` before it is dropped later)."""
    if not path.is_file():
        raise FileNotFoundError(f"WFLW annotation file not found: {path}")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err})") from None
    return text.split("\n")


def _parse_file(
    path: Path, num_points: int, bad: BadSamples | None = None
) -> tuple[list[WflwAnnotation], list[int]]:
    """Parsed non-blank lines of ``path`` and their 1-based line numbers.

    A malformed line raises, or is handed to ``bad`` (the ``data.on_bad_sample`` policy).
    """
    records: list[WflwAnnotation] = []
    line_numbers: list[int] = []
    for number, line in enumerate(_read_lines(path), start=1):
        if not line.strip(" \t\r\f\v"):
            continue
        try:
            records.append(parse_wflw_line(line, num_points))
        except ValueError as err:
            error = ValueError(f"{path}, line {number}: {err}")
            if bad is None:
                raise error from None
            bad.drop(error)
            continue
        line_numbers.append(number)
    if bad is not None:
        bad.check_some_left(len(records), f"WFLW list {path}")
    if not records:
        raise ValueError(f"{path}: no annotation lines (expected one face per line)")
    return records, line_numbers


def _load_images(
    records: list[WflwAnnotation],
    line_numbers: list[int],
    path: Path,
    image_root: Path,
    bad: BadSamples,
) -> tuple[list[np.ndarray], list[int]]:
    """One RGB array per usable face and the indices of those faces.

    Each distinct file is decoded once and shared by its faces. A missing or undecodable image,
    or landmarks more than one image side outside it, raise or go to ``bad``.
    """
    decoded: dict[str, np.ndarray | Exception] = {}
    images: list[np.ndarray] = []
    kept: list[int] = []
    for index, (record, number) in enumerate(zip(records, line_numbers, strict=True)):
        where = f"{path}, line {number}"
        if record.image not in decoded:
            decoded[record.image] = _decode(image_root, record.image)
        image = decoded[record.image]
        try:
            if isinstance(image, Exception):
                raise type(image)(f"{where}: {image}")
            check_landmarks_in_image(record.landmarks, image.shape, f"{where} ({record.image})")
        except (ValueError, FileNotFoundError) as error:
            bad.drop(error)
            continue
        images.append(image)
        kept.append(index)
    return images, kept


def _decode(image_root: Path, name: str) -> np.ndarray | Exception:
    """The ``(H, W, 3)`` uint8 RGB image ``image_root/name``, or the error that explains why not."""
    image_path = image_root / name
    if not image_path.is_file():
        return FileNotFoundError(
            f"image file not found: {image_path} (expected {name!r} under {image_root})"
        )
    try:
        return read_image_rgb(image_path)
    except ValueError:
        return ValueError(f"could not decode image {image_path}")


def load_wflw(
    annotation_file: str | Path,
    image_root: str | Path,
    num_points: int = 98,
    on_bad_sample: str = "error",
) -> FaceSet:
    """Read a WFLW list (train, test or a test subset) and its images.

    Args:
        annotation_file: a ``list_98pt_*.txt`` file (LF or CRLF line ends; blank lines skipped).
        image_root: the ``WFLW_images`` folder the image paths are relative to.
        num_points: landmarks per line (98; 68 for lists already remapped to the 300W scheme).
        on_bad_sample: ``"error"`` raises at the first bad face (a malformed line, a missing or
            undecodable image, landmarks more than one image side outside the image);
            ``"skip"`` leaves it out and lists it in ``FaceSet.dropped``
            (:mod:`wingface.data.checks`).

    Returns:
        A FaceSet in file order: ``images`` a list of ``(H, W, 3)`` uint8 RGB arrays (faces of
        the same picture share one array: copy before writing into it), ``landmarks``
        ``(N, L, 2)`` float32 0-based pixels (points may lie outside the image, by at most
        :data:`~wingface.data.checks.OUTSIDE_TOLERANCE` image sides), ``visibility``
        all True, ``boxes`` the file's rectangles, ``occluded`` None (WFLW flags occlusion per
        face, not per point), ``names`` the relative image paths (not unique), ``attributes``
        the six flags as ``(N,)`` bool arrays named as in ``WFLW_ATTRIBUTES``.

    Raises:
        FileNotFoundError: the annotation file or an image file is missing.
        ValueError: a malformed line (the message names the file, the 1-based line number and
            the field), an undecodable image, landmarks far outside the image (``error`` policy
            for these), a list without any usable face, or an unsupported ``num_points``.
    """
    path = Path(annotation_file)
    scheme = scheme_for(num_points)
    bad = BadSamples(on_bad_sample)
    records, line_numbers = _parse_file(path, num_points, bad)
    images, kept = _load_images(records, line_numbers, path, Path(image_root), bad)
    bad.check_some_left(len(kept), f"WFLW list {path}")
    records = [records[i] for i in kept]
    flags = np.stack([record.flags for record in records])
    return FaceSet(
        images=images,
        landmarks=np.stack([record.landmarks for record in records]).astype(np.float32),
        visibility=np.ones((len(records), num_points), dtype=bool),
        boxes=np.stack([record.box for record in records]).astype(np.float32),
        flip_permutation=scheme.flip_array(),
        names=[record.image for record in records],
        attributes={name: flags[:, k].copy() for k, name in enumerate(WFLW_ATTRIBUTES)},
        dropped=bad.dropped,
    )
