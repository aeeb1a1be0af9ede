"""iBUG ``.pts`` landmark files and the 300-W folder layout.

A ``.pts`` file holds one face's landmarks as ``x y`` text lines in **1-based** pixel
coordinates (the centre of the top-left pixel is ``(1, 1)``), normally inside a small header::

    version: 1
    n_points: 68
    {
    64.790 77.555
    ...
    }

Header-less files of bare ``x y`` lines circulate too and are read the same way. Everything
returned here is in wingface's frame: 0-based pixels with the centre of pixel ``i`` at ``i``
(1 is subtracted from every coordinate on reading and added back on writing).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import numpy as np

from wingface.data.checks import BadSamples, check_landmarks_in_image
from wingface.data.faces import FaceSet
from wingface.data.files import IMAGE_SUFFIXES, TextLine, read_image_rgb, read_text_lines
from wingface.landmarks import IBUG68, tight_boxes

PTS_VERSION = "1"
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_HEADER = re.compile(r"([A-Za-z_]+)\s*:\s*(.*)")


# --------------------------------------------------------------------------- parsing helpers


def _parse_number(token: str, where: str) -> float:
    """A finite float from an ASCII decimal ``token``; ``where`` prefixes error messages."""
    if _NUMBER.fullmatch(token):
        value = float(token)
        if math.isfinite(value) and abs(value) <= _FLOAT32_MAX:
            return value
        raise ValueError(f"{where}: expected a number within float32 range, found {token!r}")
    try:
        value = float(token)
    except ValueError:
        value = 0.0
    if not math.isfinite(value):
        raise ValueError(f"{where}: expected a finite number, found {token!r} (NaN or infinite)")
    raise ValueError(f"{where}: expected a number, found {token!r}")


def _parse_point(path: Path, line: TextLine) -> tuple[float, float]:
    """The 1-based ``(x, y)`` of a point line ``"x y"``."""
    where = f"{path}, line {line.number}"
    tokens = line.text.split()
    if len(tokens) != 2:
        raise ValueError(
            f"{where}: expected 2 values 'x y', found {len(tokens)} in {_clip(line.text)!r}"
        )
    return _parse_number(tokens[0], where), _parse_number(tokens[1], where)


def _span(lines: list[TextLine]) -> str:
    """``"line N"`` or ``"lines A-B"`` for a non-empty run of lines, for error messages."""
    first, last = lines[0].number, lines[-1].number
    return f"line {first}" if first == last else f"lines {first}-{last}"


def _clip(text: str, limit: int = 40) -> str:
    """``text`` shortened to ``limit`` characters for an error message."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _parse_header(path: Path, lines: list[TextLine]) -> tuple[int | None, TextLine | None, int]:
    """Read ``key: value`` header lines up to the ``{``.

    Returns:
        ``(n_points or None, the n_points line or None, index of the "{" line in lines)``.
    """
    n_points: int | None = None
    n_points_line: TextLine | None = None
    seen: set[str] = set()
    for index, line in enumerate(lines):
        if line.text == "{":
            return n_points, n_points_line, index
        where = f"{path}, line {line.number}"
        match = _HEADER.fullmatch(line.text)
        key = match.group(1) if match else ""
        if key not in ("version", "n_points"):
            raise ValueError(
                f"{where}: expected '{{' to open the point list (or a 'version:' or "
                f"'n_points:' header line), found {_clip(line.text)!r}"
            )
        if key in seen:
            raise ValueError(f"{where}: header key {key!r} given twice")
        seen.add(key)
        value = match.group(2).strip() if match else ""
        if key == "version" and value != PTS_VERSION:
            raise ValueError(f"{where}: expected 'version: {PTS_VERSION}', found {value!r}")
        if key == "n_points":
            if not value.isascii() or not value.isdigit() or len(value) > 9:
                raise ValueError(f"{where}: expected a whole number of points, found {value!r}")
            n_points, n_points_line = int(value), line
    last = lines[-1].number
    raise ValueError(f"{path}, line {last}: expected '{{' after the header, found end of file")


def _parse_braced(path: Path, lines: list[TextLine], total: int) -> tuple[list[TextLine], str]:
    """The point lines of a ``version/n_points/{...}`` file and a description of where they are.

    Raises:
        ValueError: on a bad header, a missing ``{`` or ``}``, text after ``}`` or an
            ``n_points`` that disagrees with the number of point lines.
    """
    n_points, n_points_line, open_index = _parse_header(path, lines)
    open_line = lines[open_index]
    body = lines[open_index + 1 :]
    close = next((i for i, line in enumerate(body) if line.text == "}"), None)
    if close is None:
        raise ValueError(
            f"{path}, line {total}: expected '}}' to close the point list opened on line "
            f"{open_line.number}, found end of file"
        )
    points, trailing = body[:close], body[close + 1 :]
    if trailing:
        raise ValueError(
            f"{path}, line {trailing[0].number}: expected nothing after the closing '}}' "
            f"on line {body[close].number}, found {_clip(trailing[0].text)!r}"
        )
    where = _span(points) if points else f"line {body[close].number}"
    if n_points is not None and n_points_line is not None and n_points != len(points):
        raise ValueError(
            f"{path}, line {n_points_line.number}: header says n_points: {n_points} but the "
            f"point list ({where}) has {len(points)} point lines"
        )
    return points, where


# --------------------------------------------------------------------------- .pts files


def read_pts(path: str | Path, num_points: int | None = None) -> np.ndarray:
    """Read an iBUG ``.pts`` landmark file.

    Accepts the ``version: 1`` / ``n_points: L`` / ``{ ... }`` layout and header-less files of
    bare ``x y`` lines; LF or CRLF line ends, blank lines and surrounding whitespace are fine.

    Args:
        path: the ``.pts`` file (1-based pixel coordinates).
        num_points: the expected number of points ``L``, or None to accept any positive count
            (a ``{}`` block may hold zero points when its header says ``n_points: 0``).

    Returns:
        ``(L, 2)`` float32 ``(x, y)`` in 0-based pixels (the file's values minus 1).

    Raises:
        ValueError: naming the file and line number and what was expected, for non-numeric
            text, a line without exactly two values, NaN or infinite values, a bad or
            inconsistent header, a missing ``{`` or ``}``, or ``num_points`` disagreeing.
    """
    path = Path(path)
    lines, total = read_text_lines(path)
    if not lines:
        raise ValueError(
            f"{path}, line {total}: expected 'x y' point lines or a 'version: 1' header, "
            "found an empty file"
        )
    if lines[0].text == "{" or _HEADER.fullmatch(lines[0].text):
        point_lines, where = _parse_braced(path, lines, total)
    else:
        point_lines, where = lines, _span(lines)
    coords = np.array([_parse_point(path, line) for line in point_lines], dtype=np.float64)
    if num_points is not None and len(point_lines) != num_points:
        raise ValueError(f"{path}, {where}: expected {num_points} points, found {len(point_lines)}")
    return (coords.reshape(-1, 2) - 1.0).astype(np.float32)


def write_pts(path: str | Path, landmarks: np.ndarray, header: bool = True) -> None:
    """Write ``(L, 2)`` 0-based landmarks as a 1-based iBUG ``.pts`` file.

    Values are written with enough digits that :func:`read_pts` gives back the same float32
    numbers for pixel-range coordinates (``|x|`` between ``2**-28`` and ``2**28``, or 0).

    Args:
        path: the file to write (overwritten).
        landmarks: ``(L, 2)`` ``(x, y)`` in 0-based pixels.
        header: write the ``version``/``n_points``/``{}`` header (True) or bare lines.

    Raises:
        ValueError: if ``landmarks`` is not ``(L, 2)`` or holds non-finite values.
    """
    points = np.asarray(landmarks, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"landmarks must have shape (L, 2), got {points.shape}")
    if not np.isfinite(points).all():
        raise ValueError(f"landmarks for {path} hold NaN or infinite values")
    body = [f"{x + 1.0!r} {y + 1.0!r}" for x, y in points.tolist()]
    lines = (
        [f"version: {PTS_VERSION}", f"n_points: {len(body)}", "{", *body, "}"] if header else body
    )
    Path(path).write_text("\n".join(lines) + "\n", encoding="ascii")


# --------------------------------------------------------------------------- 300-W layout


def _folder_key(folder: str) -> str:
    """A folder name as a normalised relative POSIX path (``"helen/trainset/"`` -> ``...set``)."""
    key = PurePosixPath(str(folder).replace("\\", "/"))
    if key.is_absolute() or ".." in key.parts or not key.parts:
        raise ValueError(f"300W folders are paths inside data.root, got {folder!r}")
    return key.as_posix()


def _image_folders(root: Path, depth: int = 2) -> list[str]:
    """The folders under ``root``, at most ``depth`` levels down, that directly hold an image
    file, as sorted ``/``-separated keys (what ``load_300w``'s ``folders`` could list)."""
    if not root.is_dir():
        return []
    found = []
    for level in range(1, depth + 1):
        for folder in root.glob("/".join(["*"] * level)):
            if folder.is_dir() and any(
                entry.suffix.lower() in IMAGE_SUFFIXES for entry in folder.iterdir()
            ):
                found.append(folder.relative_to(root).as_posix())
    return sorted(found)


def _pair_folder(root: Path, key: str) -> tuple[list[tuple[Path, Path]], list[Exception]]:
    """The ``(image, .pts)`` pairs of ``root/key``, sorted by image file name, and one
    FileNotFoundError per image without its ``.pts`` or ``.pts`` without its image.

    Raises:
        FileNotFoundError: if the folder is missing.
        ValueError: if the folder holds no image (with a hint when it holds other files) or two
            images share a stem.
    """
    folder = root / key
    if not folder.is_dir():
        found = ", ".join(_image_folders(root)) or "none"
        raise FileNotFoundError(
            f"300W folder not found: {folder}; data.root={root} holds the image folders: "
            f"{found} (choose with data.source.train.folders / data.source.test.folders)"
        )
    images: dict[str, Path] = {}
    pts: dict[str, Path] = {}
    others: list[str] = []
    for entry in sorted(folder.iterdir()):
        suffix = entry.suffix.lower()
        if not entry.is_file() or suffix not in (*IMAGE_SUFFIXES, ".pts"):
            others.append(entry.name + ("/" if entry.is_dir() else ""))
            continue
        found = images if suffix in IMAGE_SUFFIXES else pts
        if entry.stem in found:
            raise ValueError(
                f"two files share the name {entry.stem!r} in {folder}: "
                f"{found[entry.stem].name} and {entry.name}"
            )
        found[entry.stem] = entry
    if not images:
        held = f"; it holds {len(pts)} .pts file(s)" if pts else ""
        if others:
            held += f"; other entries: {', '.join(others[:5])}{' ...' if len(others) > 5 else ''}"
        raise ValueError(
            f"no images ({', '.join(IMAGE_SUFFIXES)}) in 300W folder {folder}{held or ' (empty)'}"
            f"; data.root={root}"
        )
    unpaired: list[Exception] = [
        FileNotFoundError(f"no landmark file for {image}: expected {folder / stem}.pts")
        for stem, image in images.items()
        if stem not in pts
    ]
    unpaired += [
        FileNotFoundError(
            f"landmark file {points} has no image (expected {stem}.jpg, .jpeg or .png)"
        )
        for stem, points in pts.items()
        if stem not in images
    ]
    pairs = [
        (images[stem], pts[stem])
        for stem in sorted(images, key=lambda s: images[s].name)
        if stem in pts
    ]
    return pairs, unpaired


def read_300w_face(
    image_path: Path, pts_path: Path, num_points: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(image (H, W, 3) uint8 RGB, landmarks (L, 2) float32 0-based)`` of one 300-W face.

    Raises:
        FileNotFoundError: a missing file.
        ValueError: a malformed ``.pts`` (file and line named), an undecodable image, or a
            landmark more than :data:`~wingface.data.checks.OUTSIDE_TOLERANCE` image sides
            outside the image (the ``.pts`` file named).
    """
    landmarks = read_pts(pts_path, num_points)
    image = read_image_rgb(image_path)
    check_landmarks_in_image(landmarks, image.shape, f"{pts_path} (image {image_path.name})")
    return image, landmarks


def load_300w(
    root: str | Path, folders: Sequence[str], num_points: int = 68, on_bad_sample: str = "error"
) -> FaceSet:
    """Load 300-W faces from the official folder layout.

    Every ``.jpg``/``.jpeg``/``.png`` image (any case) of each ``root/folder`` (e.g. ``afw``,
    ``helen/trainset``, ``lfpw/testset``, ``ibug``, ``300W/01_Indoor``), sorted by file name, is
    paired with the ``.pts`` file of the same stem. Folders are not searched recursively.

    Args:
        root: the 300-W root folder (``data.root``).
        folders: sub-folders of ``root`` to load, in order.
        num_points: landmarks per face; only the 68-point iBUG scheme is supported.
        on_bad_sample: ``"error"`` raises at the first bad face (an image without its
            ``.pts`` or the reverse, an unreadable image, a malformed ``.pts``, landmarks far
            outside the image); ``"skip"`` leaves such faces out and lists them in
            ``FaceSet.dropped`` (see :mod:`wingface.data.checks`).

    Returns:
        A FaceSet of ``N`` faces: ``images`` a list of ``(H_i, W_i, 3)`` uint8 RGB arrays,
        ``landmarks`` ``(N, 68, 2)`` float32 0-based pixels, ``visibility`` all True,
        ``boxes`` the tight landmark boxes, ``names`` paths relative to ``root`` (POSIX, e.g.
        ``lfpw/testset/image_0001.png``), ``flip_permutation`` the iBUG-68 one, and
        ``attributes[folder]`` a bool flag per folder telling which faces came from it,
        ``dropped`` the faces left out under ``on_bad_sample="skip"``.

    Raises:
        FileNotFoundError: a missing folder, an image without its ``.pts`` or a ``.pts`` without
            its image (the path is named; ``error`` policy).
        ValueError: a folder without images, a corrupt image, a malformed ``.pts`` (file and
            line named), landmarks more than one image side outside the image (``error``
            policy for these three), repeated folders, a folder whose faces are all bad, an
            unknown ``on_bad_sample``, or ``num_points`` other than 68.
    """
    if num_points != IBUG68.num_points:
        raise ValueError(
            f"load_300w reads the 68-point iBUG scheme only (its flip permutation is known); "
            f"got num_points={num_points}"
        )
    if isinstance(folders, str):
        raise ValueError(f"300W folders must be a list of folder names, got the string {folders!r}")
    root = Path(root)
    keys = [_folder_key(folder) for folder in folders]
    if not keys:
        raise ValueError("load_300w needs at least one folder")
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise ValueError(f"300W folders listed more than once: {repeated}")
    bad = BadSamples(on_bad_sample)
    images: list[np.ndarray] = []
    landmarks: list[np.ndarray] = []
    names: list[str] = []
    counts: list[int] = []
    paired = {key: _pair_folder(root, key) for key in keys}  # every folder listed first
    for key in keys:
        for error in paired[key][1]:
            bad.drop(error)
    for key in keys:
        before, since = len(names), len(bad.dropped)
        for image_path, pts_path in paired[key][0]:
            try:
                image, points = read_300w_face(image_path, pts_path, num_points)
            except (ValueError, OSError) as error:
                bad.drop(error, str(pts_path))
                continue
            images.append(image)
            landmarks.append(points)
            names.append(f"{key}/{image_path.name}")
        counts.append(len(names) - before)
        unpaired = [str(error) for error in paired[key][1]]
        bad.check_some_left(counts[-1], f"300W folder {root / key}", unpaired + bad.dropped[since:])
    sources = np.repeat(np.arange(len(keys)), counts)
    points = np.stack(landmarks).astype(np.float32)
    return FaceSet(
        images=images,
        landmarks=points,
        visibility=np.ones(points.shape[:2], dtype=bool),
        boxes=tight_boxes(points).astype(np.float32),
        flip_permutation=IBUG68.flip_array(),
        names=names,
        attributes={key: sources == i for i, key in enumerate(keys)},
        dropped=bad.dropped,
    )
