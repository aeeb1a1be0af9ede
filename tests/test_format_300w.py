"""iBUG ``.pts`` files and the 300-W folder layout: parsing, 1-based to 0-based, errors, loading."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared_data import REAL_300W, needs_real_300w
from wingface.data.files import read_image_rgb
from wingface.data.formats.face300w import load_300w, read_pts, write_pts
from wingface.landmarks import IBUG68

FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _write(path: Path, text: str) -> Path:
    """Write ``text`` byte-exactly (no newline translation)."""
    path.write_bytes(text.encode("utf-8"))
    return path


def _pts_text(values: list[tuple[str, str]], header: bool = True, eol: str = "\n") -> str:
    """A ``.pts`` file body from 1-based coordinate strings."""
    lines = [f"{x} {y}" for x, y in values]
    if header:
        lines = ["version: 1", f"n_points: {len(values)}", "{", *lines, "}"]
    return eol.join(lines) + eol


# --------------------------------------------------------------------------- read_pts


def test_read_pts_header_is_one_based(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.pts", _pts_text([("1", "1"), ("10.5", "20.25"), ("0", "-3")]))
    points = read_pts(path)
    assert points.dtype == np.float32
    assert points.shape == (3, 2)
    np.testing.assert_array_equal(points, [[0, 0], [9.5, 19.25], [-1, -4]])


@pytest.mark.parametrize(
    "text",
    [
        "1 2\n3.5 4\n",  # header-less
        "1 2\r\n3.5 4\r\n",  # header-less CRLF
        "version: 1\r\nn_points: 2\r\n{\r\n1 2\r\n3.5 4\r\n}\r\n",  # CRLF
        "\n\n  version:  1 \nn_points:   2\n\n{\n\n\t1\t2  \n  3.5   4\n\n}\n\n\n",  # blanks
        "version: 1\nn_points: 2\n{\n1 2\n3.5 4\n}",  # no final newline
        "\ufeffversion: 1\nn_points: 2\n{\n1 2\n3.5 4\n}\n",  # byte-order mark
        "{\n1 2\n3.5 4\n}\n",  # braces without a header
        "1.0e0 +2\n.35E1 4.\n",  # number spellings
    ],
)
def test_read_pts_layouts(tmp_path: Path, text: str) -> None:
    points = read_pts(_write(tmp_path / "a.pts", text), num_points=2)
    np.testing.assert_array_equal(points, np.array([[0, 1], [2.5, 3]], dtype=np.float32))


def test_read_pts_68_points(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    one_based = np.round(rng.uniform(1, 200, size=(68, 2)), 3)
    text = _pts_text([(f"{x:.3f}", f"{y:.3f}") for x, y in one_based])
    points = read_pts(_write(tmp_path / "a.pts", text), num_points=68)
    np.testing.assert_array_equal(points, (one_based - 1).astype(np.float32))


@pytest.mark.parametrize("header", [True, False])
def test_write_read_round_trip(tmp_path: Path, header: bool) -> None:
    rng = np.random.default_rng(1)
    points = rng.uniform(-50, 3000, size=(68, 2)).astype(np.float32)
    points[0] = (0.0, 0.0)
    points[1] = (-0.5, 2999.5)
    write_pts(tmp_path / "a.pts", points, header=header)
    text = (tmp_path / "a.pts").read_text()
    assert text.startswith("version: 1\nn_points: 68\n{\n") == header
    assert text.splitlines()[3 if header else 0] == "1.0 1.0"  # written 1-based
    back = read_pts(tmp_path / "a.pts", num_points=68)
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, points)


def test_write_pts_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"shape \(L, 2\)"):
        write_pts(tmp_path / "a.pts", np.zeros((3, 3)))
    with pytest.raises(ValueError, match="NaN or infinite"):
        write_pts(tmp_path / "a.pts", np.array([[0.0, np.nan]]))


BAD_PTS = [
    # (text, line named in the message, what the message says was expected)
    ("version: 1\nn_points: 2\n{\n1 2\n3 abc\n}\n", 5, "expected a number, found 'abc'"),
    ("1 2\n3 4 5\n", 2, "expected 2 values 'x y', found 3"),
    ("version: 1\nn_points: 2\n{\n1 2\n3\n}\n", 5, "expected 2 values 'x y', found 1"),
    ("version: 1\nn_points: 3\n{\n1 2\n3 4\n}\n", 2, "n_points: 3 but the point list"),
    ("version: 1\nn_points: 2\n1 2\n3 4\n}\n", 3, "expected '{'"),
    ("version: 1\nn_points: 2\n{\n1 2\n3 4\n", 6, "expected '}'"),
    ("version: 1\nn_points: 2\n{\n1 2\n3 4", 5, "expected '}'"),
    ("version: 1\nn_points: 2\n", 2, "expected '{' after the header"),
    ("version: 1\nn_points: 2\n{\n1 2\n3 4\n}\n5 6\n", 7, "expected nothing after the closing"),
    ("1 2\nnan 4\n", 2, "NaN or infinite"),
    ("1 2\n3 -inf\n", 2, "NaN or infinite"),
    ("1 2\n3 Infinity\n", 2, "NaN or infinite"),
    ("1 2\n3 1e999\n", 2, "within float32 range"),
    ("1 2\n3 1e39\n", 2, "within float32 range"),
    ("version: 2\nn_points: 2\n{\n1 2\n3 4\n}\n", 1, "expected 'version: 1'"),
    ("version: 1\nn_points: two\n{\n1 2\n3 4\n}\n", 2, "whole number of points"),
    ("version: 1\nversion: 1\n{\n1 2\n}\n", 2, "given twice"),
    ("\n\n", 3, "found an empty file"),
    ("1 2\n1_0 3\n", 2, "expected a number, found '1_0'"),
]


@pytest.mark.parametrize(("text", "line", "expected"), BAD_PTS)
def test_read_pts_errors_name_file_and_line(
    tmp_path: Path, text: str, line: int, expected: str
) -> None:
    path = _write(tmp_path / "bad.pts", text)
    with pytest.raises(ValueError) as info:
        read_pts(path)
    message = str(info.value)
    assert str(path) in message
    assert re.search(rf"\blines? (\d+-)?{line}\b", message), message
    assert expected in message


def test_read_pts_num_points_mismatch(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.pts", _pts_text([("1", "2")] * 67))
    with pytest.raises(ValueError, match="expected 68 points, found 67") as info:
        read_pts(path, num_points=68)
    assert str(path) in str(info.value)
    assert "lines 4-70" in str(info.value)


def test_read_pts_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "a.pts"
    path.write_bytes(b"1 2\n3 \xff\n")
    with pytest.raises(ValueError, match=r"line 2: expected UTF-8 text") as info:
        read_pts(path)
    assert str(path) in str(info.value)


def _check_never_crashes(path: Path) -> None:
    """``read_pts`` returns ``(L, 2)`` finite float32 or raises a ValueError naming ``path``."""
    try:
        points = read_pts(path)
    except ValueError as err:
        assert str(path) in str(err)
    else:
        assert points.dtype == np.float32
        assert points.ndim == 2
        assert points.shape[1] == 2
        assert np.isfinite(points).all()


@FUZZ
@given(text=st.text())
def test_fuzz_read_pts_arbitrary_text(tmp_path: Path, text: str) -> None:
    _check_never_crashes(_write(tmp_path / "fuzz.pts", text))


@FUZZ
@given(data=st.binary())
def test_fuzz_read_pts_arbitrary_bytes(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "fuzz.pts"
    path.write_bytes(data)
    _check_never_crashes(path)


PIECES = [
    "version: 1",
    "version: 2",
    "n_points: 2",
    "n_points: 0",
    "n_points:",
    "{",
    "}",
    "1 2",
    "-3.5 1e3",
    "nan 1",
    "1",
    "1 2 3",
    "a b",
    "",
    "  ",
    "\t",
    "1e400 1",
]


@FUZZ
@given(
    lines=st.lists(st.sampled_from(PIECES), max_size=12),
    eols=st.lists(st.sampled_from(["\n", "\r\n", "\r"]), min_size=12, max_size=12),
)
def test_fuzz_read_pts_near_valid(tmp_path: Path, lines: list[str], eols: list[str]) -> None:
    text = "".join(line + eol for line, eol in zip(lines, eols, strict=False))
    _check_never_crashes(_write(tmp_path / "fuzz.pts", text))


_COORD = st.floats(min_value=-1e4, max_value=1e5, allow_nan=False, allow_infinity=False)
_SPELLING = st.sampled_from(["{:.0f}", "{!r}", "{:.3f}", "{:.6e}", "{:+.2f}", "{:.9g}"])


@FUZZ
@given(
    values=st.lists(st.tuples(_COORD, _COORD, _SPELLING), min_size=1, max_size=80),
    header=st.booleans(),
    eol=st.sampled_from(["\n", "\r\n"]),
    blank=st.sampled_from(["", "\n", "  \n"]),
)
def test_fuzz_valid_pts_parse_exactly(
    tmp_path: Path, values: list[tuple[float, float, str]], header: bool, eol: str, blank: str
) -> None:
    texts = [(spelling.format(x), spelling.format(y)) for x, y, spelling in values]
    text = blank + _pts_text(texts, header=header, eol=eol) + blank
    points = read_pts(_write(tmp_path / "valid.pts", text), num_points=len(values))
    expected = np.array([[float(x) - 1.0, float(y) - 1.0] for x, y in texts], dtype=np.float32)
    np.testing.assert_array_equal(points, expected)


@FUZZ
@given(
    points=st.lists(
        st.tuples(st.integers(-(2**20), 2**22), st.integers(-(2**20), 2**22)),
        min_size=1,
        max_size=70,
    ),
    header=st.booleans(),
)
def test_fuzz_write_read_round_trip(
    tmp_path: Path, points: list[tuple[int, int]], header: bool
) -> None:
    landmarks = (np.array(points, dtype=np.float64) / 256.0).astype(np.float32)
    write_pts(tmp_path / "a.pts", landmarks, header=header)
    np.testing.assert_array_equal(read_pts(tmp_path / "a.pts"), landmarks)


# --------------------------------------------------------------------------- load_300w


def _face_points(width: int, height: int, seed: int) -> np.ndarray:
    """68 random 0-based points strictly inside a ``width`` x ``height`` image."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.uniform(2, width - 3, 68), rng.uniform(2, height - 3, 68)], axis=1).astype(
        np.float32
    )


def _add_face(folder: Path, name: str, image: np.ndarray, points: np.ndarray) -> None:
    """Write ``image`` (BGR or grey, as cv2 expects) and its ``.pts`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(folder / name), image)
    write_pts(folder / (Path(name).stem + ".pts"), points)


@pytest.fixture
def tiny_300w(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """A 300-W layout: afw (2 jpg), lfpw/testset (png colour + grey + border face), helen."""
    root = tmp_path / "300w"
    truth: dict[str, np.ndarray] = {}

    def add(folder: str, name: str, image: np.ndarray, points: np.ndarray) -> None:
        _add_face(root / folder, name, image, points)
        truth[f"{folder}/{name}"] = points

    add("afw", "b_face.jpg", np.full((40, 50, 3), 90, np.uint8), _face_points(50, 40, 1))
    add("afw", "a_face.JPG", np.full((30, 30, 3), 60, np.uint8), _face_points(30, 30, 2))
    colour = np.zeros((20, 24, 3), np.uint8)
    colour[..., 2] = 255  # BGR red
    add("lfpw/testset", "image_0001.png", colour, _face_points(24, 20, 3))
    grey = np.arange(20 * 16, dtype=np.uint8).reshape(20, 16)
    add("lfpw/testset", "image_0002.png", grey, _face_points(16, 20, 4))
    border = _face_points(32, 24, 5)
    border[0] = (0.0, 0.0)  # .pts "1 1", the top-left pixel centre
    border[1] = (31.0, 23.0)  # the bottom-right pixel centre
    border[2] = (-0.5, 23.5)  # the image corner
    add("lfpw/testset", "image_0003.jpeg", np.full((24, 32, 3), 200, np.uint8), border)
    add("helen/trainset", "100_1.jpg", np.full((36, 28, 3), 10, np.uint8), _face_points(28, 36, 6))
    (root / "afw" / "notes.txt").write_text("not a face")
    return root, truth


def test_load_300w_faces(tiny_300w: tuple[Path, dict[str, np.ndarray]]) -> None:
    root, truth = tiny_300w
    faces = load_300w(root, ["lfpw/testset", "afw/"])
    assert faces.names == [
        "lfpw/testset/image_0001.png",
        "lfpw/testset/image_0002.png",
        "lfpw/testset/image_0003.jpeg",
        "afw/a_face.JPG",
        "afw/b_face.jpg",
    ]
    assert len(faces) == 5
    assert faces.num_points == 68
    assert faces.landmarks.dtype == np.float32
    np.testing.assert_array_equal(faces.landmarks, np.stack([truth[n] for n in faces.names]))
    assert faces.visibility.dtype == bool
    assert faces.visibility.all()
    np.testing.assert_array_equal(faces.flip_permutation, IBUG68.flip_array())
    np.testing.assert_array_equal(faces.boxes[:, :2], faces.landmarks.min(axis=1))
    np.testing.assert_array_equal(faces.boxes[:, 2:], faces.landmarks.max(axis=1))
    assert faces.boxes.dtype == np.float32
    assert faces.poses is None
    assert faces.occluded is None
    assert isinstance(faces.images, list)
    assert [image.shape for image in faces.images] == [
        (20, 24, 3),
        (20, 16, 3),
        (24, 32, 3),
        (30, 30, 3),
        (40, 50, 3),
    ]
    assert all(image.dtype == np.uint8 for image in faces.images)


def test_load_300w_rgb_grey_and_border(tiny_300w: tuple[Path, dict[str, np.ndarray]]) -> None:
    root, _ = tiny_300w
    faces = load_300w(root, ["lfpw/testset"])
    red, grey, border = faces.images[0], faces.images[1], faces.images[2]
    assert (red == np.array([255, 0, 0], np.uint8)).all()  # decoded to RGB
    np.testing.assert_array_equal(grey[..., 0], np.arange(320, dtype=np.uint8).reshape(20, 16))
    assert (grey[..., 0] == grey[..., 1]).all()
    assert (grey[..., 0] == grey[..., 2]).all()
    assert border.shape == (24, 32, 3)
    np.testing.assert_array_equal(faces.landmarks[2, :3], [[0, 0], [31, 23], [-0.5, 23.5]])
    np.testing.assert_array_equal(faces.boxes[2], [-0.5, 0.0, 31.0, 23.5])


def test_load_300w_folder_attributes(tiny_300w: tuple[Path, dict[str, np.ndarray]]) -> None:
    root, _ = tiny_300w
    faces = load_300w(root, ["afw", "helen/trainset", "lfpw/testset"])
    assert set(faces.attributes) == {"afw", "helen/trainset", "lfpw/testset"}
    for key, flags in faces.attributes.items():
        assert flags.dtype == bool
        assert flags.shape == (len(faces),)
        assert [name for name, flag in zip(faces.names, flags, strict=True) if flag] == [
            name for name in faces.names if name.startswith(key + "/")
        ]
    assert faces.attributes["afw"].sum() == 2
    assert faces.attributes["helen/trainset"].sum() == 1
    assert faces.attributes["lfpw/testset"].sum() == 3
    sub = faces.subset(np.flatnonzero(faces.attributes["lfpw/testset"]))
    assert sub.names == [n for n in faces.names if n.startswith("lfpw/testset/")]


def test_load_300w_missing_folder(tiny_300w: tuple[Path, dict[str, np.ndarray]]) -> None:
    root, _ = tiny_300w
    with pytest.raises(FileNotFoundError) as info:
        load_300w(root, ["afw", "ibug"])
    assert str(info.value) == (
        f"300W folder not found: {root / 'ibug'}; data.root={root} holds the image folders: "
        "afw, helen/trainset, lfpw/testset "
        "(choose with data.source.train.folders / data.source.test.folders)"
    )
    with pytest.raises(FileNotFoundError, match=r"holds the image folders: none \("):
        load_300w(root / "absent", ["afw"])


def test_load_300w_folder_without_images(tmp_path: Path) -> None:
    (tmp_path / "ibug").mkdir()
    (tmp_path / "ibug" / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match="no images") as info:
        load_300w(tmp_path, ["ibug"])
    assert str(tmp_path / "ibug") in str(info.value)


def test_load_300w_image_without_pts(tiny_300w: tuple[Path, dict[str, np.ndarray]]) -> None:
    root, _ = tiny_300w
    (root / "afw" / "a_face.pts").unlink()
    with pytest.raises(FileNotFoundError, match="no landmark file") as info:
        load_300w(root, ["afw"])
    assert str(root / "afw" / "a_face.JPG") in str(info.value)
    assert str(root / "afw" / "a_face.pts") in str(info.value)


def test_load_300w_pts_without_image(tiny_300w: tuple[Path, dict[str, np.ndarray]]) -> None:
    root, _ = tiny_300w
    write_pts(root / "afw" / "orphan.pts", _face_points(30, 30, 7))
    with pytest.raises(FileNotFoundError, match="has no image") as info:
        load_300w(root, ["afw"])
    assert str(root / "afw" / "orphan.pts") in str(info.value)


@pytest.mark.parametrize("content", [b"", b"not an image at all", b"\xff\xd8\xff\xe0garbage"])
def test_load_300w_corrupt_image(
    tiny_300w: tuple[Path, dict[str, np.ndarray]], content: bytes
) -> None:
    root, _ = tiny_300w
    (root / "afw" / "b_face.jpg").write_bytes(content)
    with pytest.raises(ValueError, match="cannot decode image") as info:
        load_300w(root, ["afw"])
    assert str(root / "afw" / "b_face.jpg") in str(info.value)


def test_load_300w_bad_pts_names_file_and_line(
    tiny_300w: tuple[Path, dict[str, np.ndarray]],
) -> None:
    root, _ = tiny_300w
    path = root / "afw" / "a_face.pts"
    lines = path.read_text().splitlines()
    del lines[10]
    lines[1] = "n_points: 67"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="expected 68 points, found 67") as info:
        load_300w(root, ["afw"])
    assert str(path) in str(info.value)
    assert "lines 4-70" in str(info.value)


def test_load_300w_argument_errors(tiny_300w: tuple[Path, dict[str, np.ndarray]]) -> None:
    root, _ = tiny_300w
    (root / "afw" / "a_face.png").write_bytes(b"")
    with pytest.raises(ValueError, match="two files share the name 'a_face'"):
        load_300w(root, ["afw"])
    with pytest.raises(ValueError, match="more than once"):
        load_300w(root, ["lfpw/testset", "lfpw/testset/"])
    with pytest.raises(ValueError, match="list of folder names"):
        load_300w(root, "afw")
    with pytest.raises(ValueError, match="at least one folder"):
        load_300w(root, [])
    with pytest.raises(ValueError, match="inside data.root"):
        load_300w(root, ["../300w"])
    with pytest.raises(ValueError, match="68-point"):
        load_300w(root, ["lfpw/testset"], num_points=51)


def test_read_image_rgb_missing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="image not found"):
        read_image_rgb(tmp_path / "nope.jpg")


# --------------------------------------------------------------------------- real data


@needs_real_300w
def test_real_300w_counts() -> None:
    train = load_300w(REAL_300W, ["afw", "helen/trainset", "lfpw/trainset"])
    assert len(train) == 2012
    assert {k: int(v.sum()) for k, v in train.attributes.items()} == {
        "afw": 337,
        "helen/trainset": 870,
        "lfpw/trainset": 805,
    }
    test = load_300w(REAL_300W, ["lfpw/testset"])
    assert len(test) == 224
    assert test.names[0] == "lfpw/testset/image_0001.jpg"
    for faces in (train, test):
        for image, points in zip(faces.images, faces.landmarks, strict=True):
            height, width = image.shape[:2]
            assert points[:, 0].min() >= -0.5
            assert points[:, 1].min() >= -0.5
            assert points[:, 0].max() <= width - 0.5
            assert points[:, 1].max() <= height - 0.5


def _edge_strength(faces_images: list[np.ndarray], landmarks: np.ndarray, dx: float, dy: float):
    """Mean image gradient magnitude sampled (bilinearly) at the landmarks shifted by (dx, dy)."""
    total = 0.0
    for image, points in zip(faces_images, landmarks, strict=True):
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
        magnitude = np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))
        map_x = (points[:, 0] + dx).reshape(1, -1).astype(np.float32)
        map_y = (points[:, 1] + dy).reshape(1, -1).astype(np.float32)
        sampled = cv2.remap(magnitude, map_x, map_y, cv2.INTER_LINEAR, cv2.BORDER_REPLICATE)
        total += float(sampled.mean())
    return total / len(faces_images)


@needs_real_300w
def test_real_300w_zero_based_landmarks_sit_on_edges() -> None:
    """Landmarks lie on image edges; keeping the files' 1-based values would put them 1 px off."""
    faces = load_300w(REAL_300W, ["lfpw/testset"])
    at = _edge_strength(faces.images, faces.landmarks, 0.0, 0.0)
    one_based = _edge_strength(faces.images, faces.landmarks, 1.0, 1.0)
    two_off = _edge_strength(faces.images, faces.landmarks, -1.0, -1.0)
    assert at > 1.05 * one_based
    assert at > two_off
