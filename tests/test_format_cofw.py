"""COFW .mat files (MATLAB v5 and v7.3/HDF5): coordinates, occlusion, boxes, errors, the flip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io

from wingface.data.formats import cofw
from wingface.data.formats.cofw import load_cofw
from wingface.landmarks import COFW29

L = 29
# Left/right pairs of the published COFW flip tables, 1-based as printed there.
COFW_PAIRS_1BASED = [(1, 2), (5, 7), (3, 4), (6, 8), (9, 10), (11, 12), (13, 15), (17, 18)]
COFW_PAIRS_1BASED += [(14, 16), (19, 20), (23, 24)]
COFW_PAIRS = [(a - 1, b - 1) for a, b in COFW_PAIRS_1BASED]
COFW_CENTRE = [20, 21, 24, 25, 26, 27, 28]


def _faces_data(seed: int = 0) -> dict:
    """Three faces: RGB, grey and RGB images of different, non-square sizes."""
    rng = np.random.default_rng(seed)
    images = [
        rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8),
        rng.integers(0, 256, size=(5, 7), dtype=np.uint8),
        rng.integers(0, 256, size=(4, 9, 3), dtype=np.uint8),
    ]
    xs = np.round(rng.uniform(1, 7, size=(3, L)), 3)
    ys = np.round(rng.uniform(1, 4, size=(3, L)), 3)
    flags = np.zeros((3, L))
    flags[0, [3, 17, 28]] = 1
    flags[2, :10] = 1
    phis = np.concatenate([xs, ys, flags], axis=1)
    boxes = np.array([[1.0, 1.0, 7.0, 5.0], [0.5, 2.0, 6.0, 3.0], [2.0, 1.5, 6.5, 2.5]])
    return {"images": images, "phis": phis, "boxes": boxes}


def _cell(images: list[np.ndarray]) -> np.ndarray:
    cell = np.empty((len(images), 1), dtype=object)
    for i, image in enumerate(images):
        cell[i, 0] = image
    return cell


def _write_v5(path: Path, data: dict, split: str = "train", **replace: object) -> Path:
    names = cofw.COFW_VARIABLES[split]
    variables = {
        names[0]: _cell(data["images"]),
        names[1]: data["phis"],
        names[2]: data["boxes"],
    }
    variables.update(replace)
    variables = {k: v for k, v in variables.items() if v is not None}
    scipy.io.savemat(str(path), variables, format="5")
    return path


def _write_v73(path: Path, data: dict, split: str = "train", header: bool = True) -> Path:
    """An HDF5 file laid out as MATLAB's ``save -v7.3`` writes it."""
    h5py = pytest.importorskip("h5py")
    names = cofw.COFW_VARIABLES[split]
    with h5py.File(path, "w", **({"userblock_size": 512} if header else {})) as handle:
        refs = handle.create_group("#refs#")
        empty = refs.create_dataset("a", data=np.array([0, 0], dtype=np.uint64))
        empty.attrs["MATLAB_class"] = np.bytes_("canonical empty")
        empty.attrs["MATLAB_empty"] = np.uint8(1)
        references = []
        for k, image in enumerate(data["images"]):
            item = refs.create_dataset(f"b{k}", data=np.asarray(image).T)  # dims reversed
            item.attrs["MATLAB_class"] = np.bytes_("uint8")
            references.append(item.ref)
        cell = handle.create_dataset(names[0], data=np.array([references], dtype=h5py.ref_dtype))
        cell.attrs["MATLAB_class"] = np.bytes_("cell")
        for name, value in ((names[1], data["phis"]), (names[2], data["boxes"])):
            matrix = handle.create_dataset(name, data=np.asarray(value, dtype=np.float64).T)
            matrix.attrs["MATLAB_class"] = np.bytes_("double")
    if header:
        text = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 "
        text += b"HDF5 schema 1.00 ."
        block = text.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"
        with path.open("r+b") as handle:
            handle.write(block.ljust(512, b"\x00"))
    return path


def _expected_rgb(image: np.ndarray) -> np.ndarray:
    return np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image


def _check_faces(faces, data: dict, split: str = "train") -> None:
    phis, boxes = data["phis"], data["boxes"]
    assert len(faces) == 3 and faces.num_points == L
    np.testing.assert_array_equal(faces.landmarks[:, :, 0], (phis[:, :L] - 1).astype(np.float32))
    np.testing.assert_array_equal(
        faces.landmarks[:, :, 1], (phis[:, L : 2 * L] - 1).astype(np.float32)
    )
    np.testing.assert_array_equal(faces.occluded, phis[:, 2 * L :] == 1)
    x0, y0 = boxes[:, 0] - 1, boxes[:, 1] - 1
    expected_boxes = np.stack([x0, y0, x0 + boxes[:, 2], y0 + boxes[:, 3]], axis=1)
    np.testing.assert_array_equal(faces.boxes, expected_boxes.astype(np.float32))
    assert faces.visibility.all() and faces.visibility.shape == (3, L)
    assert faces.landmarks.dtype == np.float32 and faces.occluded.dtype == bool
    assert faces.names == [f"cofw_{split}_0001", f"cofw_{split}_0002", f"cofw_{split}_0003"]
    for got, image in zip(faces.images, data["images"], strict=True):
        assert got.dtype == np.uint8 and got.flags.c_contiguous
        np.testing.assert_array_equal(got, _expected_rgb(image))
    np.testing.assert_array_equal(faces.flip_permutation, COFW29.flip_array())


def test_v5_train_file(tmp_path: Path) -> None:
    data = _faces_data()
    path = _write_v5(tmp_path / "COFW_train.mat", data)
    faces = load_cofw(path, "train")
    _check_faces(faces, data)
    assert faces.occluded.sum() == 13
    assert faces.poses is None and faces.attributes == {}


def test_split_picks_the_variable_names(tmp_path: Path) -> None:
    data = _faces_data(1)
    path = _write_v5(tmp_path / "COFW_test.mat", data, split="test")
    _check_faces(load_cofw(path, "test"), data, split="test")
    with pytest.raises(ValueError, match="variable 'IsTr' not found") as info:
        load_cofw(path, "train")
    assert str(path) in str(info.value) and "'IsT'" in str(info.value)


@pytest.mark.parametrize(
    ("replace", "pattern"),
    [
        ({"phisTr": None}, r"variable 'phisTr' not found"),
        ({"bboxesTr": None}, r"variable 'bboxesTr' not found"),
        ({"phisTr": np.zeros((3, 58))}, r"variable 'phisTr': expected a numeric N x 87 matrix"),
        ({"bboxesTr": np.zeros((3, 5))}, r"variable 'bboxesTr': expected a numeric N x 4 matrix"),
        ({"IsTr": np.zeros((3, 1))}, r"variable 'IsTr': expected a cell array of images"),
        ({"bboxesTr": np.zeros((2, 4))}, r"disagree on the number of faces \(3, 3, 2\)"),
        ({"phisTr": np.zeros((0, 87))}, r"variable 'phisTr' holds no faces"),
    ],
)
def test_v5_malformed_variables(tmp_path: Path, replace: dict, pattern: str) -> None:
    path = _write_v5(tmp_path / "bad.mat", _faces_data(), **replace)
    with pytest.raises(ValueError, match=pattern) as info:
        load_cofw(path, "train")
    assert str(path) in str(info.value)


def test_bad_values_are_located(tmp_path: Path) -> None:
    data = _faces_data()
    phis = data["phis"].copy()
    phis[1, 2 * L + 1] = 2
    path = _write_v5(tmp_path / "flags.mat", data, phisTr=phis)
    with pytest.raises(ValueError, match=r"'phisTr': occlusion flag at row 2, column 60 must be"):
        load_cofw(path, "train")
    phis = data["phis"].copy()
    phis[2, 30] = np.nan
    path = _write_v5(tmp_path / "nan.mat", data, phisTr=phis)
    with pytest.raises(ValueError, match=r"'phisTr': non-finite value at row 3, column 31"):
        load_cofw(path, "train")
    boxes = data["boxes"].copy()
    boxes[1, 3] = -1
    path = _write_v5(tmp_path / "box.mat", data, bboxesTr=boxes)
    with pytest.raises(ValueError, match=r"'bboxesTr': row 2 has a negative width or height"):
        load_cofw(path, "train")


def test_bad_image_cell_is_located(tmp_path: Path) -> None:
    data = _faces_data()
    data["images"][1] = np.zeros((4, 5, 2), dtype=np.uint8)
    path = _write_v5(tmp_path / "image.mat", data)
    with pytest.raises(ValueError, match=r"variable 'IsTr', cell 2: expected an H x W"):
        load_cofw(path, "train")
    data["images"][1] = np.full((4, 5), 300.0)
    path = _write_v5(tmp_path / "range.mat", data)
    with pytest.raises(ValueError, match=r"variable 'IsTr', cell 2: expected integer pixels"):
        load_cofw(path, "train")


def test_integer_valued_double_images_are_accepted(tmp_path: Path) -> None:
    data = _faces_data()
    data["images"][0] = data["images"][0].astype(np.float64)
    faces = load_cofw(_write_v5(tmp_path / "double.mat", data), "train")
    assert faces.images[0].dtype == np.uint8
    np.testing.assert_array_equal(faces.images[0], data["images"][0])


def test_missing_unreadable_and_bad_split(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothing.mat"):
        load_cofw(tmp_path / "nothing.mat", "train")
    junk = tmp_path / "junk.mat"
    junk.write_bytes(b"this is not a MATLAB file at all" * 10)
    with pytest.raises(ValueError, match=r"junk\.mat: not a readable MATLAB file"):
        load_cofw(junk, "train")
    with pytest.raises(ValueError, match="unknown COFW split 'val'"):
        load_cofw(junk, "val")


def test_v73_without_h5py_says_what_is_needed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "COFW_train_color.mat"
    fake.write_bytes(b"\x00" * 512 + b"\x89HDF\r\n\x1a\n" + b"\x00" * 64)

    def no_h5py(name: str) -> None:
        raise ImportError(f"No module named {name!r}")

    monkeypatch.setattr(cofw.importlib, "import_module", no_h5py)
    with pytest.raises(ImportError, match=r"COFW_train_color\.mat is a MATLAB v7\.3 .* h5py"):
        load_cofw(fake, "train")


@pytest.mark.parametrize("header", [True, False])
def test_v73_file_matches_the_v5_file(tmp_path: Path, header: bool) -> None:
    data = _faces_data(3)
    path = _write_v73(tmp_path / "COFW_train_color.mat", data, header=header)
    if header:
        assert scipy.io.matlab.matfile_version(str(path)) == (2, 0)
    faces = load_cofw(path, "train")
    _check_faces(faces, data)
    from_v5 = load_cofw(_write_v5(tmp_path / "v5.mat", data), "train")
    np.testing.assert_array_equal(faces.landmarks, from_v5.landmarks)
    np.testing.assert_array_equal(faces.boxes, from_v5.boxes)


def test_v73_test_split_and_missing_variable(tmp_path: Path) -> None:
    data = _faces_data(4)
    path = _write_v73(tmp_path / "COFW_test_color.mat", data, split="test")
    _check_faces(load_cofw(path, "test"), data, split="test")
    with pytest.raises(ValueError, match="variable 'IsTr' not found") as info:
        load_cofw(path, "train")
    assert str(path) in str(info.value) and "'phisT'" in str(info.value)


# --- the 29-point scheme -------------------------------------------------------------------


def test_flip_permutation_is_an_involution_pairing_the_published_pairs() -> None:
    perm = COFW29.flip_array()
    assert perm.shape == (L,) and sorted(perm.tolist()) == list(range(L))
    np.testing.assert_array_equal(perm[perm], np.arange(L))
    for a, b in COFW_PAIRS:
        assert perm[a] == b and perm[b] == a
    assert [i for i in range(L) if perm[i] == i] == COFW_CENTRE


def test_eye_indices_are_pairs() -> None:
    assert COFW29.outer_eye_corners == (8, 9)
    assert COFW29.right_eye == (16,) and COFW29.left_eye == (17,)
    perm = COFW29.flip_array()
    assert perm[8] == 9 and perm[16] == 17


def test_mirrored_mean_of_a_symmetric_set_maps_to_itself() -> None:
    rng = np.random.default_rng(5)
    width = 64.0
    centre = (width - 1) / 2
    template = np.zeros((L, 2))
    for a, b in COFW_PAIRS:
        dx, y = rng.uniform(1, 25), rng.uniform(0, 60)
        template[a], template[b] = (centre - dx, y), (centre + dx, y)
    for c in COFW_CENTRE:
        template[c] = (centre, rng.uniform(0, 60))
    perm = COFW29.flip_array()

    def mirror(shapes: np.ndarray) -> np.ndarray:
        flipped = shapes.copy()
        flipped[..., 0] = width - 1 - flipped[..., 0]
        return flipped[..., perm, :]

    np.testing.assert_allclose(mirror(template), template)
    shapes = template + rng.normal(0, 1.5, size=(16, L, 2))
    mean = np.concatenate([shapes, mirror(shapes)]).mean(axis=0)
    np.testing.assert_allclose(mirror(mean), mean, atol=1e-9)
