"""AFLW-19: the scheme, the annotation CSV files and the shapes-only arrays."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from shared_data import REAL_AFLW_SHAPES, needs_real_aflw_shapes
from wingface.data.formats.aflw import (
    AFLW19_NAMES,
    AFLW21_TO_19,
    load_aflw_csv,
    load_aflw_shapes,
    read_aflw_csv,
)
from wingface.landmarks import AFLW19

REAL_SHAPES = REAL_AFLW_SHAPES
needs_real_shapes = needs_real_aflw_shapes

HEADER = "image_name,scale,box_size,center_w,center_h," + ",".join(
    f"original_{i}_x,original_{i}_y" for i in range(1, 20)
)


# --------------------------------------------------------------------------- scheme


def _swap_sides(name: str) -> str:
    return name.replace("left", "@").replace("right", "left").replace("@", "right")


def test_aflw19_scheme() -> None:
    perm = AFLW19.flip_array()
    assert AFLW19.num_points == 19
    assert len(AFLW19_NAMES) == 19
    assert perm.dtype == np.int64
    np.testing.assert_array_equal(perm[perm], np.arange(19))  # an involution
    for i, j in enumerate(perm):
        assert AFLW19_NAMES[j] == _swap_sides(AFLW19_NAMES[i]), (i, j)
    fixed = [AFLW19_NAMES[i] for i in range(19) if perm[i] == i]
    assert fixed == ["nose_centre", "mouth_centre", "chin_centre"]
    assert AFLW19_NAMES[AFLW19.right_eye[0]] == "left_eye_centre"  # subject's right = image left
    assert AFLW19_NAMES[AFLW19.left_eye[0]] == "right_eye_centre"
    a, b = AFLW19.outer_eye_corners
    assert (AFLW19_NAMES[a], AFLW19_NAMES[b]) == ("left_eye_left_corner", "right_eye_right_corner")
    assert AFLW21_TO_19 == (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 17, 18, 19, 20)


def _mirror_symmetric_face() -> np.ndarray:
    """A left/right symmetric 19-point face about x = 50 in AFLW19 order."""
    half = {  # image-left member of each pair, and the centre points
        0: (20, 30), 1: (30, 26), 2: (40, 28), 6: (25, 40), 7: (31, 40), 8: (37, 41),
        12: (42, 60), 15: (35, 75),
    }  # fmt: skip
    points = np.zeros((19, 2), np.float32)
    perm = AFLW19.flip_array()
    for i, (x, y) in half.items():
        points[i] = (x, y)
        points[perm[i]] = (100 - x, y)
    points[13], points[16], points[18] = (50, 62), (50, 76), (50, 95)
    return points


def test_aflw19_flip_maps_a_symmetric_face_onto_itself() -> None:
    face = _mirror_symmetric_face()
    mirrored = face.copy()
    mirrored[:, 0] = 100 - mirrored[:, 0]
    np.testing.assert_array_equal(mirrored[AFLW19.flip_array()], face)
    assert not np.array_equal(mirrored, face)
    outer = face[list(AFLW19.outer_eye_corners), 0]
    assert outer[0] < face[AFLW19.right_eye[0], 0] < face[AFLW19.left_eye[0], 0] < outer[1]


# --------------------------------------------------------------------------- CSV


def _row(name: str, points: np.ndarray, box_size: float, centre: tuple[float, float]) -> str:
    values = [1.0 * box_size / 200, box_size, *centre, *points.reshape(-1).tolist()]
    return ",".join([name, *(repr(float(v)) for v in values)])


@pytest.fixture
def tiny_aflw(tmp_path: Path) -> tuple[Path, Path, dict[str, np.ndarray]]:
    """Three faces in ``flickr/<k>/`` folders (jpg and png) and their CSV."""
    root = tmp_path / "images"
    rng = np.random.default_rng(0)
    faces = {}
    rows = []
    for k, (name, size) in enumerate(
        [("flickr/0/image00002.jpg", (40, 60)), ("flickr/2/image13.png", (30, 30)),
         ("flickr/3/image00035.jpg", (50, 44))]
    ):  # fmt: skip
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        image = np.full((*size, 3), 40 * (k + 1), np.uint8)
        assert cv2.imwrite(str(root / name), image)
        points = np.round(rng.uniform(0, min(size), size=(19, 2)), 4)
        points[0] = (0.0, 0.0)  # touching the border
        faces[name] = points
        rows.append(_row(name, points, box_size=20.0 + k, centre=(15.5 + k, 14.0)))
    csv_path = tmp_path / "face_landmarks_aflw_test.csv"
    csv_path.write_text("\n".join([HEADER, *rows]) + "\n")
    return csv_path, root, faces


def test_load_aflw_csv(tiny_aflw: tuple[Path, Path, dict[str, np.ndarray]]) -> None:
    csv_path, root, truth = tiny_aflw
    faces = load_aflw_csv(csv_path, root)
    assert faces.names == list(truth)
    assert faces.num_points == 19
    assert faces.landmarks.dtype == np.float32
    expected = np.stack(list(truth.values())).astype(np.float32)
    np.testing.assert_array_equal(faces.landmarks, expected)  # as given, no offset
    assert faces.visibility.dtype == bool
    assert faces.visibility.all()
    np.testing.assert_array_equal(
        faces.boxes,
        np.array([[5.5, 4, 25.5, 24], [6, 3.5, 27, 24.5], [6.5, 3, 28.5, 25]], np.float32),
    )
    np.testing.assert_array_equal(faces.boxes[:, 2] - faces.boxes[:, 0], [20, 21, 22])
    np.testing.assert_array_equal(faces.flip_permutation, AFLW19.flip_array())
    assert [image.shape for image in faces.images] == [(40, 60, 3), (30, 30, 3), (50, 44, 3)]
    assert faces.images[1].dtype == np.uint8
    assert (faces.images[1] == 80).all()
    assert faces.attributes == {}
    assert faces.poses is None


def test_read_aflw_csv_crlf_blank_lines_no_header(
    tiny_aflw: tuple[Path, Path, dict[str, np.ndarray]],
) -> None:
    csv_path, _, truth = tiny_aflw
    rows = csv_path.read_text().splitlines()[1:]
    csv_path.write_text("\r\n" + "\r\n\r\n".join(rows) + "\r\n\r\n", newline="")
    names, landmarks, boxes = read_aflw_csv(csv_path)
    assert names == list(truth)
    np.testing.assert_array_equal(landmarks, np.stack(list(truth.values())).astype(np.float32))
    assert boxes.shape == (3, 4)


def _replace_line(csv_path: Path, number: int, text: str) -> None:
    lines = csv_path.read_text().splitlines()
    lines[number - 1] = text
    csv_path.write_text("\n".join(lines) + "\n")


def _cells(csv_path: Path, number: int) -> list[str]:
    return csv_path.read_text().splitlines()[number - 1].split(",")


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda c: c[:-1], "expected 43 comma-separated columns"),
        (lambda c: [*c, "1.0"], "found 44"),
        (lambda c: [*c[:7], "abc", *c[8:]], "column 8 (x2): expected a number, found 'abc'"),
        (lambda c: [*c[:2], "big", *c[3:]], "column 3 (box_size): expected a number"),
        (lambda c: [*c[:5], "nan", *c[6:]], "column 6 (x1): expected a finite number"),
        (lambda c: [*c[:2], "0", *c[3:]], "expected a positive box size"),
        (lambda c: [*c[:-1], "1e39"], "column 43 (y19): expected a finite number"),
        (lambda c: ["", *c[1:]], "expected an image path"),
    ],
)
def test_read_aflw_csv_errors_name_file_and_line(
    tiny_aflw: tuple[Path, Path, dict[str, np.ndarray]], edit, expected: str
) -> None:
    csv_path, root, _ = tiny_aflw
    _replace_line(csv_path, 3, ",".join(edit(_cells(csv_path, 3))))
    with pytest.raises(ValueError) as info:
        load_aflw_csv(csv_path, root)
    assert f"{csv_path}, line 3" in str(info.value)
    assert expected in str(info.value)


def test_load_aflw_csv_missing_image(tiny_aflw: tuple[Path, Path, dict[str, np.ndarray]]) -> None:
    csv_path, root, _ = tiny_aflw
    (root / "flickr/3/image00035.jpg").unlink()
    with pytest.raises(FileNotFoundError) as info:
        load_aflw_csv(csv_path, root)
    message = str(info.value)
    assert f"{csv_path}, line 4: image not found: {root / 'flickr/3/image00035.jpg'}" in message


def test_load_aflw_csv_corrupt_image(tiny_aflw: tuple[Path, Path, dict[str, np.ndarray]]) -> None:
    csv_path, root, _ = tiny_aflw
    (root / "flickr/2/image13.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(ValueError, match="cannot decode image") as info:
        load_aflw_csv(csv_path, root)
    assert str(root / "flickr/2/image13.png") in str(info.value)


def test_read_aflw_csv_bad_first_row_is_not_a_header(
    tiny_aflw: tuple[Path, Path, dict[str, np.ndarray]],
) -> None:
    csv_path, _, _ = tiny_aflw
    rows = csv_path.read_text().splitlines()[1:]
    cells = rows[0].split(",")
    rows[0] = ",".join([*cells[:1], "oops", *cells[2:]])
    csv_path.write_text("\n".join(rows) + "\n")
    with pytest.raises(ValueError, match=r"line 1, column 2 \(scale\): expected a number"):
        read_aflw_csv(csv_path)


def test_read_aflw_csv_empty_and_scheme_errors(tmp_path: Path) -> None:
    csv_path = tmp_path / "empty.csv"
    csv_path.write_text(HEADER + "\n\n")
    with pytest.raises(ValueError, match="no faces found") as info:
        read_aflw_csv(csv_path)
    assert str(csv_path) in str(info.value)
    with pytest.raises(ValueError, match="19-point"):
        load_aflw_csv(csv_path, tmp_path, num_points=21)


# --------------------------------------------------------------------------- shapes only


def _shapes_file(tmp_path: Path, pts: np.ndarray, yaws: np.ndarray) -> tuple[Path, Path]:
    np.save(tmp_path / "AFLW_GT_pts21.npy", pts)
    np.save(tmp_path / "AFLW_GT_crop_yaws.npy", yaws)
    return tmp_path / "AFLW_GT_pts21.npy", tmp_path / "AFLW_GT_crop_yaws.npy"


def test_load_aflw_shapes_small(tmp_path: Path) -> None:
    n = 4
    shapes21 = np.stack(
        [np.stack([np.arange(21) + 100 * k, np.arange(21) + 1000 * k + 0.5]) for k in range(n)]
    ).astype(np.float32)  # (N, 2, 21): an x row and a y row
    shapes21[0, :, 12] = (-1, 452)  # left ear invisible (dropped anyway)
    shapes21[1, :, 7] = (-1, 452)  # left eye centre invisible
    shapes21[2, :, 20] = (-1, 452)  # chin invisible
    shapes21[3, 0, 3] = -1  # x = -1 alone is a position, not the invisible code
    yaws = np.array([-95.0, -10.0, 0.0, 45.5], np.float32)
    landmarks, visibility, yaw = load_aflw_shapes(*_shapes_file(tmp_path, shapes21, yaws))
    assert landmarks.shape == (n, 19, 2)
    assert landmarks.dtype == np.float32
    assert visibility.shape == (n, 19)
    assert visibility.dtype == bool
    np.testing.assert_array_equal(yaw, yaws)
    assert yaw.dtype == np.float32
    kept = np.array(AFLW21_TO_19)
    for k in range(n):
        for j in range(19):
            if visibility[k, j]:
                np.testing.assert_array_equal(landmarks[k, j], shapes21[k, :, kept[j]])
    assert visibility[0].all()
    assert np.flatnonzero(~visibility[1]).tolist() == [7]
    assert np.flatnonzero(~visibility[2]).tolist() == [18]
    assert visibility[3].all()
    assert landmarks[3, 3, 0] == -1
    np.testing.assert_array_equal(landmarks[~visibility], 0.0)
    assert np.isfinite(landmarks).all()


def test_load_aflw_shapes_errors(tmp_path: Path) -> None:
    pts = np.zeros((3, 2, 21), np.float32)
    with pytest.raises(ValueError, match=r"shape \(N, 2, 21\)"):
        load_aflw_shapes(*_shapes_file(tmp_path, np.zeros((3, 21, 2), np.float32), np.zeros(3)))
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        load_aflw_shapes(*_shapes_file(tmp_path, pts, np.zeros(4)))
    bad = pts.copy()
    bad[2, 1, 5] = np.nan
    with pytest.raises(ValueError, match="face 2 has NaN"):
        load_aflw_shapes(*_shapes_file(tmp_path, bad, np.zeros(3)))
    with pytest.raises(FileNotFoundError, match="not found"):
        load_aflw_shapes(tmp_path / "missing.npy", tmp_path / "AFLW_GT_crop_yaws.npy")
    (tmp_path / "junk.npy").write_bytes(b"junk")
    with pytest.raises(ValueError, match="junk.npy"):
        load_aflw_shapes(tmp_path / "junk.npy", tmp_path / "AFLW_GT_crop_yaws.npy")


@needs_real_shapes
def test_real_aflw_shapes() -> None:
    landmarks, visibility, yaw = load_aflw_shapes(
        REAL_SHAPES / "AFLW_GT_pts21.npy", REAL_SHAPES / "AFLW_GT_crop_yaws.npy"
    )
    assert landmarks.shape == (21080, 19, 2)
    assert visibility.shape == (21080, 19)
    assert yaw.shape == (21080,)
    assert (np.abs(yaw) < 15).sum() == 7009
    assert (np.abs(yaw) > 90).sum() == 805
    missing = 1.0 - visibility.mean(axis=0)
    assert missing.max() <= 0.6
    visible = landmarks[visibility]
    assert (visible >= -10).all()
    assert (visible <= 460).all()
    # "left" is image left: on frontal faces the left eye centre lies left of the right one.
    frontal = (np.abs(yaw) < 15) & visibility[:, 7] & visibility[:, 10]
    assert (landmarks[frontal, 7, 0] < landmarks[frontal, 10, 0]).mean() > 0.99
    # Mirroring frontal mean shapes with the flip permutation gives back (nearly) the same shape.
    full = (np.abs(yaw) < 10) & visibility.all(axis=1)
    mean = landmarks[full].mean(axis=0)
    mirrored = mean.copy()
    mirrored[:, 0] = 2 * mean[:, 0].mean() - mirrored[:, 0]
    assert np.abs(mirrored[AFLW19.flip_array()] - mean).max() < 10.0
