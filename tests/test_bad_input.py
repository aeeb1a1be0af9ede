"""Bad input: each gets an error naming the file (and line) or the config key, or, under
``data.on_bad_sample=skip``, is left out and listed, never silently dropped."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import lightning as L
import numpy as np
import pytest
import torch
from hydra.errors import InstantiationException, MissingConfigException
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from entry_points import call_script
from wingface.callbacks.run_record import RunRecord
from wingface.data.checks import (
    OUTSIDE_TOLERANCE,
    BadSamples,
    check_landmarks_in_image,
    check_policy,
)
from wingface.data.faces import FaceSet
from wingface.data.formats.aflw import load_aflw_csv, read_aflw_csv
from wingface.data.formats.cofw import load_cofw
from wingface.data.formats.face300w import load_300w, write_pts
from wingface.data.formats.wflw import load_wflw
from wingface.inference.files import read_boxes_file
from wingface.metrics import normalising_distance, normalising_distances
from wingface.pipeline import prepare_run

W, H = 80, 90  # image size of the generated 300-W faces (pixels)


def _face(folder: Path, stem: str, seed: int, points: np.ndarray | None = None) -> None:
    """Write ``stem.jpg`` (W x H noise) and ``stem.pts`` (68 plausible points) into ``folder``."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(folder / f"{stem}.jpg"), rng.integers(0, 255, (H, W, 3), np.uint8))
    write_pts(folder / f"{stem}.pts", rng.uniform(15, 65, (68, 2)) if points is None else points)


def _folder(root: Path, name: str, count: int, seed: int = 0) -> Path:
    for i in range(count):
        _face(root / name, f"face_{i:03d}", seed + i)
    return root / name


def _pts_text(lines: list[str]) -> str:
    return "version: 1\nn_points: 68\n{\n" + "\n".join(lines) + "\n}\n"


GOOD_LINES = [f"{20 + i % 40}.5 {30 + i % 30}.25" for i in range(68)]


# --------------------------------------------------------------------------- images


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"this is not an image\n", id="text"),
        pytest.param("truncated", id="truncated-jpeg"),
    ],
)
def test_unreadable_image_names_the_file(tmp_path: Path, content: bytes | str) -> None:
    folder = _folder(tmp_path, "afw", 3)
    image = folder / "face_001.jpg"
    data = image.read_bytes()
    image.write_bytes(data[: len(data) // 3] if content == "truncated" else content)
    with pytest.raises(ValueError, match=r"cannot decode image .*face_001\.jpg"):
        load_300w(tmp_path, ["afw"])


def test_missing_image_of_a_csv_row_names_file_and_line(tmp_path: Path) -> None:
    csv_path = tmp_path / "face_landmarks_aflw_train.csv"
    row = ",".join(["missing/img.jpg", "0.1", "20", "15", "15", *["10"] * 38])
    csv_path.write_text(row + "\n")
    with pytest.raises(FileNotFoundError, match=r"train\.csv, line 1: image not found: .*img"):
        load_aflw_csv(csv_path, tmp_path)


# --------------------------------------------------------------------------- annotations


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (GOOD_LINES[:67], r"line 2: header says n_points: 68 but the point list"),
        ([*GOOD_LINES[:10], "12.5 abc", *GOOD_LINES[11:]], r"line 14: expected a number"),
        ([*GOOD_LINES[:10], "nan 3", *GOOD_LINES[11:]], r"line 14: expected a finite number"),
        ([*GOOD_LINES[:5], "1 -inf", *GOOD_LINES[6:]], r"line 9: expected a finite number"),
    ],
    ids=["wrong-count", "non-numeric", "nan", "inf"],
)
def test_bad_pts_names_file_and_line(tmp_path: Path, lines: list[str], expected: str) -> None:
    folder = _folder(tmp_path, "afw", 2)
    (folder / "face_001.pts").write_text(_pts_text(lines))
    with pytest.raises(ValueError, match=r"face_001\.pts, " + expected):
        load_300w(tmp_path, ["afw"])


def test_headerless_pts_with_the_wrong_point_count(tmp_path: Path) -> None:
    folder = _folder(tmp_path, "afw", 2)
    (folder / "face_000.pts").write_text("\n".join(GOOD_LINES[:60]) + "\n")
    with pytest.raises(
        ValueError, match=r"face_000\.pts, lines 1-60: expected 68 points, found 60"
    ):
        load_300w(tmp_path, ["afw"])


def test_nan_landmarks_are_rejected_by_the_face_set() -> None:
    landmarks = np.zeros((2, 3, 2), np.float32)
    landmarks[1, 2, 0] = np.nan
    visibility = np.ones((2, 3), bool)
    kwargs = {
        "images": [np.zeros((4, 4, 3), np.uint8)] * 2,
        "boxes": np.zeros((2, 4), np.float32),
        "flip_permutation": np.arange(3),
        "names": ["a.jpg", "b.jpg"],
    }
    with pytest.raises(ValueError, match=r"face 'b\.jpg' has NaN or infinite"):
        FaceSet(landmarks=landmarks, visibility=visibility, **kwargs)
    visibility[1, 2] = False  # a point without a position may hold anything
    assert len(FaceSet(landmarks=landmarks, visibility=visibility, **kwargs)) == 2


# --------------------------------------------------------------------------- far outside


def test_outside_tolerance_is_one_image_side() -> None:
    assert OUTSIDE_TOLERANCE == 1.0
    shape = (H, W, 3)
    edge = np.array([[-W - 0.5, -H - 0.5], [2 * W - 0.5, 2 * H - 0.5]])
    check_landmarks_in_image(edge, shape, "f.pts")  # exactly one side out: allowed
    for point in ((-W - 0.6, 0.0), (0.0, 2 * H - 0.4)):
        with pytest.raises(ValueError, match=r"f\.pts: landmark 1 at .* more than 1 image side"):
            check_landmarks_in_image(np.array([[5.0, 5.0], point]), shape, "f.pts")
    far = np.array([[5.0, 5.0], [1e6, 5.0]])
    check_landmarks_in_image(far, shape, "f.pts", visibility=np.array([True, False]))
    with pytest.raises(ValueError, match="NaN or infinite"):
        check_landmarks_in_image(np.array([[np.inf, 0.0]]), shape, "f.pts")


def test_landmarks_far_outside_the_image_name_the_file(tmp_path: Path) -> None:
    folder = _folder(tmp_path, "afw", 2)
    points = np.random.default_rng(0).uniform(15, 65, (68, 2))
    write_pts(folder / "face_001.pts", points * 4)  # e.g. coordinates of the uncropped photo
    with pytest.raises(ValueError, match=r"face_001\.pts \(image face_001\.jpg\): landmark \d+"):
        load_300w(tmp_path, ["afw"])


def _wflw_line(points: np.ndarray, image: str) -> str:
    values = [*points.reshape(-1).tolist(), 0.0, 0.0, 30.0, 30.0]
    return " ".join([*(repr(float(v)) for v in values), *["0"] * 6, image])


@pytest.fixture
def wflw_list(tmp_path: Path) -> tuple[Path, Path]:
    """A WFLW list of three faces on one 40 x 40 picture, and its image folder."""
    images = tmp_path / "WFLW_images"
    (images / "0--Parade").mkdir(parents=True)
    cv2.imwrite(str(images / "0--Parade/a.jpg"), np.full((40, 40, 3), 90, np.uint8))
    rng = np.random.default_rng(1)
    lines = [_wflw_line(rng.uniform(5, 35, (98, 2)), "0--Parade/a.jpg") for _ in range(3)]
    path = tmp_path / "list_98pt_rect_attr_train.txt"
    path.write_text("\n".join(lines) + "\n")
    return path, images


def test_wflw_landmarks_far_outside_name_file_and_line(wflw_list: tuple[Path, Path]) -> None:
    path, images = wflw_list
    lines = path.read_text().splitlines()
    lines[1] = _wflw_line(np.full((98, 2), 500.0), "0--Parade/a.jpg")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"train\.txt, line 2 \(0--Parade/a\.jpg\): landmark 0"):
        load_wflw(path, images)


# --------------------------------------------------------------------------- folders


def test_empty_or_wrong_folder(tmp_path: Path) -> None:
    (tmp_path / "afw").mkdir()
    with pytest.raises(ValueError, match=r"no images .* in 300W folder .*afw \(empty\)"):
        load_300w(tmp_path, ["afw"])
    (tmp_path / "afw" / "notes.txt").write_text("x")
    (tmp_path / "afw" / "WFLW_images").mkdir()
    with pytest.raises(ValueError, match=r"other entries: WFLW_images/, notes\.txt"):
        load_300w(tmp_path, ["afw"])
    with pytest.raises(FileNotFoundError, match=r"300W folder not found: .*helen"):
        load_300w(tmp_path, ["helen"])


def test_unpaired_files_name_the_file(tmp_path: Path) -> None:
    folder = _folder(tmp_path, "afw", 3)
    (folder / "face_001.pts").unlink()
    with pytest.raises(FileNotFoundError, match=r"no landmark file for .*face_001\.jpg"):
        load_300w(tmp_path, ["afw"])
    _face(folder, "face_001", 1)
    (folder / "face_002.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"landmark file .*face_002\.pts has no image"):
        load_300w(tmp_path, ["afw"])


def test_annotation_files_of_another_format(tmp_path: Path, wflw_list: tuple[Path, Path]) -> None:
    wflw_path, images = wflw_list
    # a WFLW list read as an AFLW CSV, and an AFLW CSV read as a WFLW list
    with pytest.raises(ValueError, match=r"train\.txt, line 1: expected 43 comma-separated"):
        load_aflw_csv(wflw_path, images)
    csv_path = tmp_path / "face_landmarks_aflw_train.csv"
    csv_path.write_text(",".join(["a.jpg", "0.1", "20", "15", "15", *["10"] * 38]) + "\n")
    with pytest.raises(ValueError, match=r"train\.csv, line 1: expected 207 fields .* got 1"):
        load_wflw(csv_path, images)
    # a .pts file read as a WFLW list
    pts = tmp_path / "face.pts"
    pts.write_text(_pts_text(GOOD_LINES))
    with pytest.raises(ValueError, match=r"face\.pts, line 1: expected 207 fields"):
        load_wflw(pts, images)


def test_data_option_pointed_at_another_dataset(compose_train, tmp_path: Path) -> None:
    _folder(tmp_path / "300w", "afw", 2)
    cfg = compose_train("data=wflw", f"data.root={tmp_path / '300w'}", "logger=none")
    datamodule = prepare_run(cfg).datamodule
    with pytest.raises(FileNotFoundError, match=r"WFLW annotation file not found: .*train\.txt"):
        datamodule.setup("fit")
    cfg = compose_train("data=300w", f"data.root={tmp_path / '300w'}", "logger=none")
    datamodule = prepare_run(cfg).datamodule
    with pytest.raises(FileNotFoundError, match=r"300W folder not found: .*helen/trainset"):
        datamodule.setup("fit")


# --------------------------------------------------------------------------- config values


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["loss=wing", "loss.w=0"], "loss.w must be > 0, got 0"),
        (["loss=wing", "loss.w=-1"], "loss.w must be > 0, got -1"),
        (["loss=wing", "loss.eps=0"], "loss.eps must be > 0, got 0"),
        (["loss=rwing", "loss.r=10"], r"loss.r must be < loss.w \(10.0\), got 10"),
        (["balance=pdb", "balance.num_bins=0"], "balance.num_bins: expected an integer >= 1"),
        (["model.input_size=60"], r"model.input_size=60 must be divisible by .*=32"),
        (["data.input_size=128"], "data.input_size=128 does not match model.input_size=64"),
        (["data.on_bad_sample=ignore"], "data.on_bad_sample must be one of error, skip"),
        (["trainer.max_epochs=-1"], r"trainer.max_epochs=-1 sets no epoch limit, so trainer"),
        (["trainer.max_epochs=0"], r"trainer.max_epochs must be a whole number >= 1"),
        (["trainer.max_steps=0"], r"trainer.max_steps must be a whole number >= 1, or -1"),
        (["optim.optimizer.lr=-1"], r"optim.optimizer.lr must be a finite number > 0, got -1"),
        (["optim.optimizer.lr=0"], r"optim.optimizer.lr must be a finite number > 0, got 0"),
        (["seed=abc"], r"seed must be a whole number, got 'abc'"),
        (["data.context_oversample=0"], r"data.context_oversample must be a whole number >= 1"),
        (["data.context_oversample=1.5"], r"data.context_oversample must be a whole number >= 1"),
    ],
)
def test_invalid_config_values_name_the_key(compose_train, overrides, expected: str) -> None:
    cfg = compose_train(*overrides, "logger=none")
    # Hydra wraps errors raised by a _target_ in an InstantiationException quoting them
    with pytest.raises((ValueError, InstantiationException), match=expected):
        prepare_run(cfg)


def test_max_epochs_minus_one_with_a_step_budget_is_accepted(compose_train) -> None:
    prepare_run(compose_train("trainer.max_epochs=-1", "trainer.max_steps=50", "logger=none"))


def test_a_text_file_as_ckpt_path_is_named(compose_train, tmp_path: Path) -> None:
    text = tmp_path / "notes.ckpt"
    text.write_text("experiment notes\n")
    with pytest.raises(ValueError, match=r"ckpt_path: .*notes\.ckpt is not a checkpoint"):
        prepare_run(compose_train("logger=none"), text)
    with pytest.raises(FileNotFoundError, match=r"ckpt_path: no checkpoint file at .*gone"):
        prepare_run(compose_train("logger=none"), tmp_path / "gone.ckpt")


def test_a_checkpoint_of_another_model_says_which_model_it_holds(
    compose_train, tmp_path: Path
) -> None:
    cnn7 = compose_train("model=cnn7", "logger=none")
    module = prepare_run(cnn7).module
    trainer = L.Trainer(
        default_root_dir=tmp_path,
        logger=False,
        accelerator="cpu",
        callbacks=[RunRecord(tmp_path, tmp_path, OmegaConf.to_container(cnn7.model), "cnn7")],
    )
    trainer.strategy.connect(module)
    path = tmp_path / "cnn7.ckpt"
    trainer.save_checkpoint(path)
    with pytest.raises(ValueError) as info:
        prepare_run(compose_train("model=cnn6", "logger=none"), path)
    message = str(info.value)
    assert "holds model=cnn7 (wingface.models.cnn.LandmarkCNN, input_size=128" in message
    assert "the config builds model=cnn6 (" in message and "input_size=64" in message


def test_unknown_loss_names_the_option(compose_train) -> None:
    with pytest.raises(MissingConfigException, match=r"'loss/nonexistent'") as info:
        compose_train("loss=nonexistent")
    assert "Available options in 'loss'" in str(info.value) and "wing" in str(info.value)


def test_policy_values() -> None:
    assert check_policy("skip") == "skip"
    with pytest.raises(ValueError, match="data.on_bad_sample"):
        BadSamples("warn")


# --------------------------------------------------------------------------- skip policy


@pytest.fixture
def bad_300w(tmp_path: Path) -> Path:
    """``root/afw``: 4 good faces and 5 bad ones; ``root/lfpw/testset``: 3 good faces."""
    root = tmp_path / "data"
    folder = _folder(root, "afw", 9)
    (folder / "face_001.jpg").write_bytes(b"not a jpeg")  # corrupt image
    (folder / "face_003.pts").write_text(_pts_text([*GOOD_LINES[:10], "nan 1", *GOOD_LINES[11:]]))
    (folder / "face_005.pts").unlink()  # image without landmarks
    (folder / "face_007.jpg").unlink()  # landmarks without image
    write_pts(folder / "face_008.pts", np.full((68, 2), 1000.0))  # far outside
    _folder(root, "lfpw/testset", 3, seed=50)
    return root


BAD_FILES = ["face_001.jpg", "face_003.pts", "face_005.jpg", "face_007.pts", "face_008.pts"]


def test_skip_drops_and_lists_every_bad_face(bad_300w: Path) -> None:
    faces = load_300w(bad_300w, ["afw"], on_bad_sample="skip")
    assert faces.names == [f"afw/face_{i:03d}.jpg" for i in (0, 2, 4, 6)]
    assert len(faces.dropped) == 5
    for name in BAD_FILES:
        assert sum(name in entry for entry in faces.dropped) == 1, name


def test_error_raises_at_the_first_bad_face(bad_300w: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no landmark file for .*face_005\.jpg"):
        load_300w(bad_300w, ["afw"])


def test_skip_with_nothing_left_is_an_error(tmp_path: Path) -> None:
    folder = _folder(tmp_path, "afw", 2)
    for pts in folder.glob("*.pts"):
        pts.write_text("garbage\n")
    with pytest.raises(ValueError, match=r"afw: no usable face, all 2 were bad .*face_000\.pts"):
        load_300w(tmp_path, ["afw"], on_bad_sample="skip")


def _data_overrides(root: Path, policy: str) -> list[str]:
    return [
        "data=300w",
        f"data.root={root}",
        "data.source.train.folders=[afw]",
        "data.source.test.folders=[lfpw/testset]",
        "data.source.val_fraction=0.25",
        f"data.on_bad_sample={policy}",
        "data.num_workers=0",
        "logger=none",
    ]


def test_datamodule_skip_warns_and_writes_bad_samples_txt(
    compose_train, bad_300w: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = compose_train(*_data_overrides(bad_300w, "skip"))
    datamodule = prepare_run(cfg).datamodule
    with caplog.at_level(logging.WARNING, logger="wingface.data.datamodule"):
        datamodule.setup("fit")
        datamodule.setup("test")
    assert len(datamodule.crops["train"]) + len(datamodule.crops["val"]) == 4
    assert len(datamodule.crops["test"]) == 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "5 bad sample(s) dropped" in warnings[0]
    listed = (tmp_path / "run" / "bad_samples.txt").read_text().splitlines()
    assert len(listed) == 5
    for name in BAD_FILES:
        assert any(name in line for line in listed) and name in warnings[0]


def _degenerate_300w(root: Path) -> None:
    """``afw``: 6 faces, face_002's landmarks all at one point; ``lfpw/testset``: 3 faces,
    face_001 with its outer eye corners (36, 45) at one point (inter-ocular distance 0)."""
    _folder(root, "afw", 6)
    write_pts(root / "afw" / "face_002.pts", np.full((68, 2), 40.0))
    _folder(root, "lfpw/testset", 3, seed=50)
    points = np.random.default_rng(7).uniform(15, 65, (68, 2))
    points[45] = points[36]
    write_pts(root / "lfpw" / "testset" / "face_001.pts", points)


def test_degenerate_faces_are_named_at_load_time(compose_train, tmp_path: Path) -> None:
    _degenerate_300w(tmp_path / "data")
    datamodule = prepare_run(compose_train(*_data_overrides(tmp_path / "data", "error"))).datamodule
    with pytest.raises(ValueError, match=r"afw/face_002\.jpg: face box .* has no extent"):
        datamodule.setup("fit")
    datamodule = prepare_run(compose_train(*_data_overrides(tmp_path / "data", "error"))).datamodule
    with pytest.raises(ValueError, match=r"lfpw/testset/face_001\.jpg: inter_ocular normalising"):
        datamodule.setup("test")


def test_degenerate_faces_are_skipped_and_listed(compose_train, tmp_path: Path) -> None:
    _degenerate_300w(tmp_path / "data")
    datamodule = prepare_run(compose_train(*_data_overrides(tmp_path / "data", "skip"))).datamodule
    datamodule.setup("fit")
    datamodule.setup("test")
    assert len(datamodule.crops["train"]) + len(datamodule.crops["val"]) == 5
    assert datamodule.crops["test"].names == [
        "lfpw/testset/face_000.jpg",
        "lfpw/testset/face_002.jpg",
    ]
    listed = (tmp_path / "run" / "bad_samples.txt").read_text().splitlines()
    assert len(listed) == 2
    assert "afw/face_002.jpg" in listed[0] and "no extent" in listed[0]
    assert "lfpw/testset/face_001.jpg" in listed[1] and "inter_ocular" in listed[1]


def test_no_metric_divides_by_zero() -> None:
    target = torch.rand(2, 68, 2) * 50
    target[1, 45] = target[1, 36]
    for kind in ("inter_ocular", "box"):
        same = target.clone()
        if kind == "box":
            same[1] = 7.0
        distances, usable = normalising_distances(same, None, kind, "300w")
        assert usable.tolist() == [True, False] and float(distances[1]) == 0.0
        with pytest.raises(ValueError, match=f"{kind} normalising distance of sample 1 is 0"):
            normalising_distance(same, None, kind, "300w")


@pytest.mark.slow
def test_a_bad_test_face_stops_the_run_before_training(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    root = tmp_path / "data"
    _folder(root, "afw", 8)
    _folder(root, "lfpw/testset", 3, seed=50)
    write_pts(root / "lfpw" / "testset" / "face_001.pts", np.full((68, 2), 1000.0))
    run_dir = tmp_path / "run"
    result = call_script(
        "train.py", [*_data_overrides(root, "error"), f"hydra.run.dir={run_dir}"], subprocess_env
    )
    assert result.returncode != 0
    assert "lfpw/testset/face_001.pts" in result.stderr and "outside" in result.stderr
    assert not (run_dir / "checkpoints").exists() and not (run_dir / "metrics.json").exists()
    assert "epoch 0" not in (run_dir / "train.log").read_text()


def test_datamodule_error_policy_raises(compose_train, bad_300w: Path, tmp_path: Path) -> None:
    cfg = compose_train(*_data_overrides(bad_300w, "error"))
    datamodule = prepare_run(cfg).datamodule
    with pytest.raises(FileNotFoundError, match=r"face_005\.jpg"):
        datamodule.setup("fit")
    assert not (tmp_path / "run" / "bad_samples.txt").exists()


def test_skip_in_the_wflw_aflw_and_cofw_readers(tmp_path: Path, wflw_list) -> None:
    path, images = wflw_list
    lines = path.read_text().splitlines()
    lines[0] = lines[0].replace("0--Parade/a.jpg", "0--Parade/gone.jpg")
    lines[2] = "1 2 3"
    path.write_text("\n".join(lines) + "\n")
    faces = load_wflw(path, images, on_bad_sample="skip")
    assert len(faces) == 1 and len(faces.dropped) == 2
    assert any("line 1: image file not found" in entry for entry in faces.dropped)
    assert any("line 3: expected 207 fields" in entry for entry in faces.dropped)

    csv_path = tmp_path / "aflw.csv"
    cv2.imwrite(str(tmp_path / "ok.jpg"), np.zeros((30, 30, 3), np.uint8))
    rows = [
        ",".join([name, "0.1", "20", "15", "15", *["10"] * 38])
        for name in ("ok.jpg", "gone.jpg", "ok.jpg")
    ]
    rows[2] = rows[2].replace(",10,", ",ten,", 1)
    csv_path.write_text("\n".join(rows) + "\n")
    faces = load_aflw_csv(csv_path, tmp_path, on_bad_sample="skip")
    assert faces.names == ["ok.jpg"] and len(faces.dropped) == 2
    assert sorted(entry.split(":")[0].split(", ")[1] for entry in faces.dropped) == [
        "line 2",
        "line 3",
    ]
    assert any("line 2: image not found" in entry for entry in faces.dropped)

    scipy_io = pytest.importorskip("scipy.io")
    rng = np.random.default_rng(0)
    cells = np.empty((3, 1), dtype=object)
    for i in range(3):
        cells[i, 0] = rng.integers(0, 255, (40, 40), dtype=np.uint8)
    phis = np.concatenate([rng.uniform(5, 35, (3, 58)), np.zeros((3, 29))], axis=1)
    phis[1, 4] = np.nan
    boxes = np.tile([5.0, 5.0, 30.0, 30.0], (3, 1))
    mat = tmp_path / "COFW_train.mat"
    scipy_io.savemat(str(mat), {"IsTr": cells, "phisTr": phis, "bboxesTr": boxes})
    with pytest.raises(ValueError, match=r"'phisTr': non-finite value at row 2, column 5"):
        load_cofw(mat, "train")
    faces = load_cofw(mat, "train", on_bad_sample="skip")
    assert faces.names == ["cofw_train_0001", "cofw_train_0003"]
    assert "row 2" in faces.dropped[0]


# --------------------------------------------------------------------------- fuzzing

FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
CSV_TOKENS = ["a.jpg", "", "1", "-2.5", "0", "nan", "inf", "1e39", "x", '"q,w"', " 3 ", "\t"]


def _parse_or_value_error(call, *args) -> object:
    """``call(*args)``, or None when it raised a ValueError naming the file ``args[0]``."""
    try:
        return call(*args)
    except ValueError as error:
        assert str(args[0]) in str(error), str(error)
        return None


def test_aflw_csv_line_that_is_not_csv_names_file_and_line(tmp_path: Path) -> None:
    """A carriage return inside an unquoted cell (found by the fuzz test below) is a
    ValueError naming the file and line, not the csv module's own error."""
    path = tmp_path / "face_landmarks_aflw_train.csv"
    path.write_bytes(b"a.jpg,1\r2,3\n")
    with pytest.raises(ValueError, match=r"train\.csv, line 1: not a CSV line"):
        read_aflw_csv(path)


@FUZZ
@given(data=st.binary(max_size=400))
def test_fuzz_aflw_csv_arbitrary_bytes(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "fuzz.csv"
    path.write_bytes(data)
    _check_aflw(_parse_or_value_error(read_aflw_csv, path))


@FUZZ
@given(
    rows=st.lists(
        st.lists(st.sampled_from(CSV_TOKENS), min_size=40, max_size=46), min_size=1, max_size=3
    ),
    sep=st.sampled_from([",", ", ", ";"]),
)
def test_fuzz_aflw_csv_near_valid_rows(tmp_path: Path, rows: list[list[str]], sep: str) -> None:
    path = tmp_path / "fuzz.csv"
    path.write_text("\n".join(sep.join(row) for row in rows) + "\n")
    _check_aflw(_parse_or_value_error(read_aflw_csv, path))


def _check_aflw(result: object) -> None:
    if result is None:
        return
    names, landmarks, boxes = result
    assert landmarks.shape == (len(names), 19, 2) and boxes.shape == (len(names), 4)
    assert np.isfinite(landmarks).all() and np.isfinite(boxes).all()


@FUZZ
@given(text=st.text(max_size=300))
def test_fuzz_box_csv_text(tmp_path: Path, text: str) -> None:
    path = tmp_path / "boxes.csv"
    path.write_text("image,x0,y0,x1,y1\n" + text, encoding="utf-8")
    _check_boxes(_parse_or_value_error(read_boxes_file, path, ["a.jpg", "b.png"]))


@FUZZ
@given(data=st.binary(max_size=300), suffix=st.sampled_from([".json", ".csv"]))
def test_fuzz_box_files_arbitrary_bytes(tmp_path: Path, data: bytes, suffix: str) -> None:
    path = tmp_path / f"boxes{suffix}"
    path.write_bytes(data)
    _check_boxes(_parse_or_value_error(read_boxes_file, path, ["a.jpg", "b.png"]))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(), children),
    max_leaves=12,
)


@FUZZ
@given(value=st.dictionaries(st.sampled_from(["a.jpg", "b.png"]), JSON_VALUES))
def test_fuzz_box_files_json_structures(tmp_path: Path, value: dict) -> None:
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps(value))
    _check_boxes(_parse_or_value_error(read_boxes_file, path, ["a.jpg", "b.png"]))


def _check_boxes(result: object) -> None:
    if result is None:
        return
    for boxes in result.values():
        assert boxes.ndim == 2 and boxes.shape[1] == 4 and np.isfinite(boxes).all()
