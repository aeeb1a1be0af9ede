"""WFLW annotation lists: exact parsing, images, attributes, errors, the 98-point flip."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wingface.data.formats import wflw
from wingface.data.formats.wflw import (
    WFLW98,
    WFLW_ATTRIBUTES,
    expected_field_count,
    load_wflw,
    parse_wflw_line,
)

# Left/right pairs as listed by two independent public WFLW flip tables (0-based).
WFLW_PAIRS = (
    [(i, 32 - i) for i in range(16)]
    + [(33, 46), (34, 45), (35, 44), (36, 43), (37, 42), (38, 50), (39, 49), (40, 48), (41, 47)]
    + [(55, 59), (56, 58)]
    + [(60, 72), (61, 71), (62, 70), (63, 69), (64, 68), (65, 75), (66, 74), (67, 73)]
    + [(76, 82), (77, 81), (78, 80), (83, 87), (84, 86), (88, 92), (89, 91), (93, 95), (96, 97)]
)
WFLW_CENTRE = [16, 51, 52, 53, 54, 57, 79, 85, 90, 94]
# Points on the image's left (the subject's right) by region, written from the point layout.
IMAGE_LEFT = [*range(16), *range(33, 42), 55, 56, *range(60, 68), 76, 77, 78, 86, 87, 88, 89, 95]
IMAGE_LEFT += [96]


def _fmt(value: float) -> str:
    return repr(float(value))


def _line(
    points: np.ndarray, box: tuple[float, ...], flags: tuple[int, ...], image: str, end: str = "\n"
) -> str:
    fields = [_fmt(v) for v in points.reshape(-1)] + [_fmt(v) for v in box]
    fields += [str(f) for f in flags] + [image]
    return " ".join(fields) + end


def _points(seed: int, width: int, height: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pts = rng.uniform([0, 0], [width - 1, height - 1], size=(98, 2))
    return np.round(pts, 6)


@pytest.fixture
def wflw_root(tmp_path: Path) -> dict:
    """A three-line list in the official layout with real images written by cv2."""
    images = tmp_path / "WFLW_images"
    (images / "1--Handshaking").mkdir(parents=True)
    (images / "2--Demonstration").mkdir(parents=True)
    rng = np.random.default_rng(0)
    colour = rng.integers(0, 256, size=(40, 60, 3), dtype=np.uint8)  # RGB
    grey = rng.integers(0, 256, size=(30, 50), dtype=np.uint8)
    cv2.imwrite(str(images / "1--Handshaking/two_faces.png"), colour[:, :, ::-1])
    cv2.imwrite(str(images / "2--Demonstration/grey.png"), grey)
    first = _points(1, 60, 40)
    border = _points(2, 50, 30)
    border[0] = (-1.5, 3.25)  # outside the image on the left
    border[32] = (50.75, 29.0)  # beyond the right edge
    border[16] = (0.0, 29.5)  # on the bottom border
    second_face = _points(3, 60, 40)
    rows = [
        (first, (1.0, 2.0, 40.0, 30.0), (1, 0, 0, 1, 0, 0), "1--Handshaking/two_faces.png", "\n"),
        (border, (-2.0, 0.0, 49.0, 29.0), (0, 1, 1, 0, 1, 1), "2--Demonstration/grey.png", "\r\n"),
        (
            second_face,
            (20.0, 5.0, 59.0, 39.0),
            (0, 0, 0, 0, 0, 1),
            "1--Handshaking/two_faces.png",
            "\n",
        ),
    ]
    text = "".join(_line(*row) for row in rows)
    annotation = tmp_path / "list_98pt_rect_attr_test.txt"
    annotation.write_bytes(text.encode())
    return {
        "file": annotation,
        "images": images,
        "rows": rows,
        "colour": colour,
        "grey": grey,
    }


def test_layout_has_207_fields() -> None:
    assert expected_field_count(98) == 207
    assert expected_field_count(68) == 147


def test_load_gives_exact_coordinates_boxes_and_attributes(wflw_root: dict) -> None:
    faces = load_wflw(wflw_root["file"], wflw_root["images"])
    rows = wflw_root["rows"]
    assert len(faces) == 3 and faces.num_points == 98
    for i, row in enumerate(rows):
        points, box, flags, image = row[:4]
        np.testing.assert_array_equal(faces.landmarks[i], points.astype(np.float32))
        np.testing.assert_array_equal(faces.boxes[i], np.asarray(box, np.float32))
        for k, name in enumerate(WFLW_ATTRIBUTES):
            assert faces.attributes[name][i] == bool(flags[k])
        assert faces.names[i] == image
    assert faces.landmarks.dtype == np.float32 and faces.boxes.dtype == np.float32
    assert faces.visibility.all() and faces.visibility.shape == (3, 98)
    assert faces.occluded is None and faces.poses is None
    assert set(faces.attributes) == set(WFLW_ATTRIBUTES)
    assert all(flags.dtype == bool for flags in faces.attributes.values())
    np.testing.assert_array_equal(faces.flip_permutation, WFLW98.flip_array())
    # the face near the border keeps its out-of-image points unchanged (0-based, no shift)
    np.testing.assert_array_equal(faces.landmarks[1, 0], [-1.5, 3.25])
    np.testing.assert_array_equal(faces.landmarks[1, 32], [50.75, 29.0])


def test_images_are_rgb_and_shared_by_faces_of_one_picture(wflw_root: dict) -> None:
    faces = load_wflw(wflw_root["file"], wflw_root["images"])
    np.testing.assert_array_equal(faces.images[0], wflw_root["colour"])
    assert faces.images[1].shape == (30, 50, 3) and faces.images[1].dtype == np.uint8
    for channel in range(3):
        np.testing.assert_array_equal(faces.images[1][:, :, channel], wflw_root["grey"])
    np.testing.assert_array_equal(faces.images[2], wflw_root["colour"])
    assert faces.names[0] == faces.names[2]


def test_each_image_file_is_decoded_once(wflw_root: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real_read = wflw.read_image_rgb

    def counting_read(path: Path) -> np.ndarray:
        calls.append(str(path))
        return real_read(path)

    monkeypatch.setattr(wflw, "read_image_rgb", counting_read)
    load_wflw(wflw_root["file"], wflw_root["images"])
    assert len(calls) == 2 and len(set(calls)) == 2


def test_subset_order_and_blank_lines(tmp_path: Path, wflw_root: dict) -> None:
    lines = wflw_root["file"].read_text().split("\n")
    subset = tmp_path / "list_98pt_test_blur.txt"
    subset.write_text("\n" + lines[2] + "\n\n" + lines[1] + "\n   \n")
    faces = load_wflw(subset, wflw_root["images"])
    assert len(faces) == 2
    assert faces.names == ["1--Handshaking/two_faces.png", "2--Demonstration/grey.png"]
    assert faces.attributes["blur"].tolist() == [True, True]


def _error(tmp_path: Path, wflw_root: dict, line: str, lineno: int = 2) -> str:
    lines = wflw_root["file"].read_text().split("\n")[:3]
    lines[lineno - 1] = line
    bad = tmp_path / "bad_list.txt"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError) as info:
        load_wflw(bad, wflw_root["images"])
    message = str(info.value)
    assert str(bad) in message and f"line {lineno}" in message
    return message


def _fields(wflw_root: dict) -> list[str]:
    return wflw_root["file"].read_text().split("\n")[0].split()


def test_error_wrong_field_count(tmp_path: Path, wflw_root: dict) -> None:
    fields = _fields(wflw_root)
    message = _error(tmp_path, wflw_root, " ".join(fields[:-2]))
    assert "expected 207 fields" in message and "got 205" in message


def test_error_non_numeric(tmp_path: Path, wflw_root: dict) -> None:
    fields = _fields(wflw_root)
    fields[7] = "1,5"
    message = _error(tmp_path, wflw_root, " ".join(fields), lineno=3)
    assert "field 8 (y3)" in message and "expected a number" in message and "'1,5'" in message


@pytest.mark.parametrize("token", ["nan", "-inf", "Infinity", "1e999"])
def test_error_non_finite(tmp_path: Path, wflw_root: dict, token: str) -> None:
    fields = _fields(wflw_root)
    fields[197] = token
    message = _error(tmp_path, wflw_root, " ".join(fields), lineno=1)
    assert "field 198 (y_min)" in message and "finite" in message


@pytest.mark.parametrize("token", ["2", "-1", "0.5", "yes"])
def test_error_flag_not_binary(tmp_path: Path, wflw_root: dict, token: str) -> None:
    fields = _fields(wflw_root)
    fields[203] = token  # the fourth flag: make-up
    message = _error(tmp_path, wflw_root, " ".join(fields))
    assert "field 204 (attribute makeup)" in message


def test_error_inverted_box(tmp_path: Path, wflw_root: dict) -> None:
    fields = _fields(wflw_root)
    fields[196], fields[198] = "50", "10"
    assert "x_max >= x_min" in _error(tmp_path, wflw_root, " ".join(fields))


def test_error_missing_image(tmp_path: Path, wflw_root: dict) -> None:
    fields = _fields(wflw_root)
    fields[-1] = "9--Press/missing.jpg"
    bad = tmp_path / "missing_image.txt"
    lines = wflw_root["file"].read_text().split("\n")
    bad.write_text(lines[0] + "\n" + " ".join(fields) + "\n")
    with pytest.raises(FileNotFoundError, match=r"line 2: image file not found") as info:
        load_wflw(bad, wflw_root["images"])
    assert str(bad) in str(info.value) and "9--Press/missing.jpg" in str(info.value)


def test_error_undecodable_image(tmp_path: Path, wflw_root: dict) -> None:
    (wflw_root["images"] / "broken.jpg").write_bytes(b"not an image")
    fields = _fields(wflw_root)
    fields[-1] = "broken.jpg"
    bad = tmp_path / "broken.txt"
    bad.write_text(" ".join(fields) + "\n")
    with pytest.raises(ValueError, match=r"line 1: could not decode image"):
        load_wflw(bad, wflw_root["images"])


def test_error_missing_or_empty_annotation_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere.txt"):
        load_wflw(tmp_path / "nowhere.txt", tmp_path)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n")
    with pytest.raises(ValueError, match=r"empty\.txt: no annotation lines"):
        load_wflw(empty, tmp_path)


def test_error_unsupported_point_count(wflw_root: dict) -> None:
    with pytest.raises(ValueError, match="no landmark scheme for 19-point"):
        load_wflw(wflw_root["file"], wflw_root["images"], num_points=19)


def test_68_point_lists_use_the_300w_scheme(tmp_path: Path, wflw_root: dict) -> None:
    points = _points(5, 60, 40)[:68]
    remapped = tmp_path / "list_68pt.txt"
    remapped.write_text(_line(points, (0, 0, 59, 39), (0,) * 6, "1--Handshaking/two_faces.png"))
    faces = load_wflw(remapped, wflw_root["images"], num_points=68)
    assert faces.landmarks.shape == (1, 68, 2)
    assert len(faces.flip_permutation) == 68
    with pytest.raises(ValueError, match="expected 147 fields"):
        load_wflw(wflw_root["file"], wflw_root["images"], num_points=68)


# --- the line parser under fuzzing -------------------------------------------------------

TOKENS = ["0", "1", "1.5", "-2e3", "nan", "inf", "x", "", "1,5", "0x1", "\u00a0", "1e999", "a.jpg"]


@settings(max_examples=150, deadline=None)
@given(st.text())
def test_arbitrary_text_raises_only_value_error(text: str) -> None:
    with contextlib.suppress(ValueError):
        parse_wflw_line(text)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), min_size=200, max_size=210), st.sampled_from(" \t"))
def test_near_valid_token_lists_raise_only_value_error(tokens: list[str], sep: str) -> None:
    with contextlib.suppress(ValueError):
        parse_wflw_line(sep.join(tokens))


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
path_text = st.text(alphabet="abcXYZ019_-./", min_size=1, max_size=30)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(finite, min_size=196, max_size=196),
    st.tuples(finite, finite, finite, finite),
    st.lists(st.booleans(), min_size=6, max_size=6),
    path_text,
    st.sampled_from(["", "\n", "\r\n", "  \t\r\n"]),
)
def test_valid_generated_lines_parse_back_exactly(
    coords: list[float], box: tuple, flags: list[bool], image: str, end: str
) -> None:
    x0, x1 = sorted(box[::2])
    y0, y1 = sorted(box[1::2])
    line = _line(np.asarray(coords), (x0, y0, x1, y1), tuple(int(f) for f in flags), image, end)
    record = parse_wflw_line(line)
    np.testing.assert_array_equal(record.landmarks, np.asarray(coords).reshape(98, 2))
    np.testing.assert_array_equal(record.box, [x0, y0, x1, y1])
    assert record.flags.tolist() == flags
    assert record.image == image


def test_parser_messages_name_the_field() -> None:
    fields = ["1"] * 206 + ["a.jpg"]
    fields[0] = "one"
    with pytest.raises(ValueError, match=re.escape("field 1 (x0): expected a number")):
        parse_wflw_line(" ".join(fields))


# --- the 98-point scheme -------------------------------------------------------------------


def test_flip_permutation_is_an_involution_pairing_the_published_pairs() -> None:
    perm = WFLW98.flip_array()
    assert perm.shape == (98,) and sorted(perm.tolist()) == list(range(98))
    np.testing.assert_array_equal(perm[perm], np.arange(98))
    for a, b in WFLW_PAIRS:
        assert perm[a] == b and perm[b] == a
    assert [i for i in range(98) if perm[i] == i] == WFLW_CENTRE


def test_flip_sends_image_left_points_to_image_right_points() -> None:
    perm = WFLW98.flip_array()
    left = set(IMAGE_LEFT)
    right = {int(perm[i]) for i in IMAGE_LEFT}
    assert len(left) == len(right) == 44
    assert not left & right
    assert left | right | set(WFLW_CENTRE) == set(range(98))


def test_eye_indices() -> None:
    assert WFLW98.outer_eye_corners == (60, 72)
    assert WFLW98.right_eye == (96,) and WFLW98.left_eye == (97,)
    perm = WFLW98.flip_array()
    assert perm[60] == 72 and perm[96] == 97


def _mirror(shapes: np.ndarray, width: float, perm: np.ndarray) -> np.ndarray:
    """Horizontal flip in the 0-based pixel frame: ``x -> width - 1 - x``, then re-index."""
    flipped = shapes.copy()
    flipped[..., 0] = width - 1 - flipped[..., 0]
    return flipped[..., perm, :]


def test_mirrored_mean_of_a_symmetric_set_maps_to_itself() -> None:
    rng = np.random.default_rng(7)
    width = 101.0
    centre = (width - 1) / 2
    template = np.zeros((98, 2))
    for a, b in WFLW_PAIRS:
        dx, y = rng.uniform(1, 40), rng.uniform(0, 100)
        template[a] = (centre - dx, y)
        template[b] = (centre + dx, y)
    for c in WFLW_CENTRE:
        template[c] = (centre, rng.uniform(0, 100))
    perm = WFLW98.flip_array()
    np.testing.assert_allclose(_mirror(template, width, perm), template)
    shapes = template + rng.normal(0, 2, size=(20, 98, 2))
    both = np.concatenate([shapes, _mirror(shapes, width, perm)])
    mean = both.mean(axis=0)
    np.testing.assert_allclose(_mirror(mean, width, perm), mean, atol=1e-9)
