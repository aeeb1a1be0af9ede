"""Files of ``src/predict.py``: the input images, optional box files and the results.

Results: ``landmarks.json`` (per image: size and faces with box, score and landmarks),
``landmarks.csv`` (one row per landmark: image, face, point, x, y) and ``overlays/<image name>``
(the image with each face's box and landmark dots, :func:`wingface.plots.draw_overlay`).
Coordinates are 0-based image pixels with the centre of pixel ``i`` at ``i``.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from wingface.data.files import IMAGE_SUFFIXES
from wingface.fault_tolerance import write_atomically
from wingface.inference.predictor import FaceLandmarks, as_boxes


def list_images(input_path: str | Path | None) -> list[tuple[str, Path]]:
    """``(name, path)`` of the image ``input_path`` or of every image in that folder.

    Names are file names (the folder is not searched recursively), sorted.

    Raises:
        ValueError: when ``input`` is not given or the folder holds no image.
        FileNotFoundError: when ``input`` does not exist.
    """
    suffixes = "/".join(IMAGE_SUFFIXES)
    if input_path is None or str(input_path) == "":
        raise ValueError(
            f"input: give an image or a folder of {suffixes} images, e.g. input=photos/"
        )
    path = Path(input_path)
    if not path.exists():
        raise FileNotFoundError(f"input: {path} does not exist (expected an image or a folder)")
    if path.is_file():
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise ValueError(f"input: {path} is not a {suffixes} image")
        return [(path.name, path)]
    images = [
        (p.name, p)
        for p in sorted(path.iterdir())
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not images:
        raise ValueError(f"input: no {suffixes} images found in folder {path}")
    return images


def _boxes_from_json(path: Path) -> dict[str, list[Any]]:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"boxes: {path} is not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise ValueError(
            f'boxes: {path} must hold an object {{"<image name>": [[x0, y0, x1, y1], ...]}}'
        )
    return data


def _boxes_from_csv(path: Path) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        columns = ["image", "x0", "y0", "x1", "y1"]
        if reader.fieldnames is None or not set(columns) <= set(reader.fieldnames):
            raise ValueError(f"boxes: {path} needs the CSV columns {','.join(columns)}")
        for line, row in enumerate(reader, start=2):
            try:
                box = [float(row[key]) for key in columns[1:]]
            except (TypeError, ValueError):
                raise ValueError(f"boxes: {path}, line {line}: x0..y1 must be numbers") from None
            found.setdefault(row["image"], []).append(box)
    return found


def read_boxes_file(path: str | Path, image_names: list[str]) -> dict[str, np.ndarray]:
    """Face boxes per image from a JSON or CSV file (see ``conf/predict.yaml``).

    Returns:
        ``{image name: (N, 4) float64 boxes}`` for the images the file lists.

    Raises:
        FileNotFoundError: if the file is missing.
        ValueError: naming the file, for a bad format, bad boxes or unknown image names.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"boxes: no file at {path}")
    if path.suffix.lower() not in (".json", ".csv"):
        raise ValueError(f"boxes: {path} must be a .json or .csv file")
    try:
        raw = _boxes_from_json(path) if path.suffix.lower() == ".json" else _boxes_from_csv(path)
        unknown = sorted(set(raw) - set(image_names))
        if unknown:
            raise ValueError(
                f"boxes: {path} names images that are not in the input: {unknown[:5]} "
                f"(expected names such as {image_names[:3]})"
            )
        return {
            name: as_boxes(boxes, f"boxes: {path}, image {name}") for name, boxes in raw.items()
        }
    except (UnicodeDecodeError, TypeError, ValueError, AttributeError) as error:
        if str(path) in str(error):
            raise
        raise ValueError(
            f"boxes: {path}: not a valid box file ({error.__class__.__name__}: {error}); "
            "expected {image name: [[x0, y0, x1, y1], ...]} (JSON) or image,x0,y0,x1,y1 rows (CSV)"
        ) from error


def face_record(face: FaceLandmarks, source: str) -> dict[str, Any]:
    """One face of ``landmarks.json``; ``source`` is ``"detector"`` or ``"given"``."""
    return {
        "box": [round(float(v), 2) for v in face.box],
        "source": source,
        "score": face.score,
        "crop_box": [round(float(v), 2) for v in face.crop_box],
        "landmarks": [[round(float(x), 3), round(float(y), 3)] for x, y in face.landmarks],
    }


def write_json(path: Path, results: dict[str, dict[str, Any]], meta: dict[str, Any]) -> Path:
    """Write ``{**meta, "images": results}`` as indented JSON (replaced whole or not at all)."""
    text = (json.dumps({**meta, "images": results}, indent=1) + "\n").encode()
    return write_atomically(path, lambda handle: handle.write(text))


def write_csv(path: Path, results: dict[str, dict[str, Any]]) -> Path:
    """Write one row per landmark: ``image, face, point, x, y`` (face and point 0-based;
    replaced whole or not at all)."""
    rows = io.StringIO(newline="")
    writer = csv.writer(rows)
    writer.writerow(["image", "face", "point", "x", "y"])
    for name, result in results.items():
        for face_index, face in enumerate(result["faces"]):
            for point, (x, y) in enumerate(face["landmarks"]):
                writer.writerow([name, face_index, point, x, y])
    text = rows.getvalue().encode()
    return write_atomically(path, lambda handle: handle.write(text))


def write_image(path: Path, image: np.ndarray) -> Path:
    """Write a ``(H, W, 3)`` uint8 RGB image (format from the suffix; JPEG at quality 95)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ok = cv2.imwrite(
        str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95]
    )
    if not ok:
        raise OSError(f"cannot write image {path}")
    return path
