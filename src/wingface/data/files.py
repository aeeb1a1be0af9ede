"""Reading the files every dataset reader needs: images (OpenCV) and text with line numbers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
"""Image file suffixes (compared case-insensitively) that the readers and ``predict.py`` take."""


@dataclass(frozen=True)
class TextLine:
    """One non-blank line of a text file: its 1-based number and its stripped text."""

    number: int
    text: str


def read_text_lines(path: Path) -> tuple[list[TextLine], int]:
    """The non-blank stripped lines of a UTF-8 text file and its total line count.

    Lines are split on ``\\n`` only (a trailing ``\\r`` is stripped with the other whitespace),
    so the numbers match what an editor shows for both LF and CRLF files.

    Raises:
        ValueError: if the file is not UTF-8 text (naming the file and line).
    """
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ValueError(
            f"{path}, line {line}: expected UTF-8 text, found byte 0x{data[err.start]:02x}"
        ) from None
    raw = text.split("\n")
    lines = [TextLine(i, s.strip()) for i, s in enumerate(raw, start=1)]
    return [line for line in lines if line.text], len(raw)


def read_image_rgb(path: str | Path) -> np.ndarray:
    """Decode an image file with OpenCV.

    Returns:
        ``(H, W, 3)`` uint8 RGB; grey images are repeated over 3 channels, alpha is dropped
        and 16-bit images are reduced to 8 bits.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: naming the file, if it cannot be read or decoded.
    """
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise FileNotFoundError(f"image not found: {path}") from None
    except OSError as err:
        raise ValueError(f"cannot read image {path}: {err}") from None
    image = None
    if data.size:
        try:
            image = cv2.imdecode(data, cv2.IMREAD_COLOR)
        except cv2.error:
            image = None
    if image is None or image.size == 0:
        raise ValueError(f"cannot decode image {path} (corrupt, empty or not an image)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
