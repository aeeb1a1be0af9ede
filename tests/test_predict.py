"""Inference for users: crop geometry, the face detector and ``src/predict.py`` end to end."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from entry_points import call_script, run_script
from shared_data import REAL_300W, needs_real_300w
from wingface.data.dataset import ContextCrops, FaceCropDataset
from wingface.data.faces import FaceSet
from wingface.data.files import read_image_rgb
from wingface.data.formats.face300w import read_pts
from wingface.data.synthetic import generate_synthetic_faces
from wingface.data.transforms import crop_matrix, transform_points
from wingface.inference.detector import (
    DLIB_TO_300W_BOX,
    DLIB_WINDOW,
    MAX_UPSAMPLE,
    BoxCalibration,
    DlibFaceDetector,
    drop_overlapping,
)
from wingface.inference.files import read_boxes_file
from wingface.inference.model_file import BUNDLED_MODEL, stored_prediction_offset
from wingface.inference.predictor import LandmarkPredictor, crop_points_to_image

# Under pytest -n (make test) in one test process: the tests share one trained checkpoint.
pytestmark = pytest.mark.xdist_group("predict-checkpoint")

INPUT_SIZE = 64
CROP_SCALE = 1.28


class OracleNet(nn.Module):
    """A stand-in landmark model that is always right on the crops it was told about.

    It returns the test-time target (landmarks in network-input pixels) of the known crop
    closest to each input, and records how far the inputs were from those crops.
    """

    num_points = 68

    def __init__(self, crops: torch.Tensor, targets: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("crops", crops.float())
        self.register_buffer("targets", targets.float())
        self.worst_pixel_error = 0.0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        error = (images[:, None].float() - self.crops[None]).abs().amax(dim=(2, 3, 4))
        best = error.min(dim=1)
        self.worst_pixel_error = max(self.worst_pixel_error, float(best.values.max()))
        return self.targets[best.indices]


def faces_side_by_side(count: int) -> FaceSet:
    """``count`` synthetic faces pasted side by side into one image (repeated per face)."""
    faces = generate_synthetic_faces(count, seed=3, image_size=96)
    image = np.concatenate(list(faces.images), axis=1)
    shift = np.array([96.0, 0.0], dtype=np.float32) * np.arange(count)[:, None]
    landmarks = faces.landmarks + shift[:, None, :]
    return FaceSet(
        images=[image] * count,
        landmarks=landmarks,
        visibility=faces.visibility,
        boxes=np.concatenate([landmarks.min(axis=1), landmarks.max(axis=1)], axis=1),
        flip_permutation=faces.flip_permutation,
    )


@pytest.mark.parametrize("oversample", [1, 3])
def test_predictor_crops_like_the_test_pipeline_and_maps_back_to_the_image(
    oversample: int,
) -> None:
    faces = faces_side_by_side(3)
    crops = ContextCrops(faces, INPUT_SIZE, CROP_SCALE, context_scale=1.25, oversample=oversample)
    dataset = FaceCropDataset(crops, np.arange(len(faces)))
    samples = [dataset[i] for i in range(len(dataset))]
    oracle = OracleNet(
        torch.stack([s["image"] for s in samples]), torch.stack([s["landmarks"] for s in samples])
    )
    predictor = LandmarkPredictor(oracle, INPUT_SIZE, CROP_SCALE, batch_size=2)

    found = predictor(faces.images[0], boxes=faces.boxes)

    # the crops are the pixels the model saw at test time (warp rounding aside) ...
    assert oracle.worst_pixel_error <= 1.0
    assert len(found) == 3
    for face, truth, box in zip(found, faces.landmarks, faces.boxes, strict=True):
        # ... and a perfect crop prediction lands exactly on the face in the image
        assert np.abs(face.landmarks - truth).max() < 0.01
        assert face.score is None
        np.testing.assert_allclose(face.box, box)


def test_prediction_offset_is_subtracted_in_network_input_pixels() -> None:
    """A model file's validation offset (x, y input pixels) moves every image landmark by the
    offset divided by the crop's scale (input pixels per image pixel), against the offset."""
    faces = faces_side_by_side(2)
    crops = ContextCrops(faces, INPUT_SIZE, CROP_SCALE, context_scale=1.25)
    dataset = FaceCropDataset(crops, np.arange(len(faces)))
    samples = [dataset[i] for i in range(len(dataset))]
    oracle = OracleNet(
        torch.stack([s["image"] for s in samples]), torch.stack([s["landmarks"] for s in samples])
    )
    offset = (0.5, -0.25)
    predictor = LandmarkPredictor(oracle, INPUT_SIZE, CROP_SCALE, prediction_offset=offset)
    found = predictor(faces.images[0], boxes=faces.boxes)
    for face, truth, box in zip(found, faces.landmarks, faces.boxes, strict=True):
        scale = INPUT_SIZE / (CROP_SCALE * max(box[2] - box[0], box[3] - box[1]))
        np.testing.assert_allclose(
            face.landmarks - truth, -np.divide(offset, scale)[None].repeat(68, 0), atol=0.01
        )
    with pytest.raises(ValueError, match="prediction_offset: expected two finite numbers"):
        LandmarkPredictor(oracle, INPUT_SIZE, CROP_SCALE, prediction_offset=(np.nan, 0.0))


def test_crop_points_to_image_inverts_the_crop() -> None:
    rng = np.random.default_rng(0)
    boxes = np.array([[10.0, 20.0, 110.0, 90.0], [300.5, 7.25, 340.0, 80.0]])
    points = rng.uniform(0, 400, size=(2, 68, 2))
    matrices = np.stack([crop_matrix(box, CROP_SCALE, INPUT_SIZE) for box in boxes])
    in_crop = np.stack([transform_points(p, m) for p, m in zip(points, matrices, strict=True)])
    assert np.abs(crop_points_to_image(in_crop, matrices) - points).max() < 1e-3


def test_predictor_without_faces_returns_nothing() -> None:
    predictor = LandmarkPredictor(
        OracleNet(torch.zeros(1, 3, 8, 8), torch.zeros(1, 68, 2)),
        INPUT_SIZE,
        CROP_SCALE,
        detector=lambda image: [],
    )
    assert predictor(np.zeros((50, 60, 3), np.uint8)) == []
    with pytest.raises(ValueError, match="uint8 RGB"):
        predictor(np.zeros((50, 60), np.float32))
    with pytest.raises(ValueError, match=r"boxes: box 0 .* x1 > x0"):
        predictor(np.zeros((50, 60, 3), np.uint8), boxes=[[10, 10, 5, 20]])


def test_box_calibration_moves_and_scales_the_detector_box() -> None:
    calibrate = BoxCalibration(side=0.5, shift_x=0.1, shift_y=0.2)
    out = calibrate(np.array([[0.0, 0.0, 100.0, 80.0]]))
    # centre (50, 40) + (10, 20); side 0.5 * 100, square
    np.testing.assert_allclose(out, [[35.0, 35.0, 85.0, 85.0]])
    with pytest.raises(ValueError, match="side must be > 0"):
        BoxCalibration(side=0.0)


def test_boxes_inside_a_larger_face_are_dropped() -> None:
    face = [100.0, 100.0, 200.0, 200.0]
    chin = [130.0, 180.0, 170.0, 220.0]  # half of it inside the face box
    neighbour = [205.0, 110.0, 285.0, 190.0]  # another face beside it
    keep = drop_overlapping(np.array([face, neighbour, chin]), max_overlap=0.1)
    np.testing.assert_array_equal(keep, [0, 1])
    np.testing.assert_array_equal(drop_overlapping(np.zeros((0, 4)), 0.1), [])


def test_detector_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="detector.min_size"):
        DlibFaceDetector(min_size=0.0)
    with pytest.raises(ValueError, match="detector.max_side"):
        DlibFaceDetector(max_side=40)
    with pytest.raises(ValueError, match="detector.max_overlap"):
        DlibFaceDetector(max_overlap=1.5)
    with pytest.raises(ValueError, match="uint8 RGB"):
        DlibFaceDetector()(np.zeros((10, 10, 3), np.float32))


def test_small_images_are_upsampled_until_the_smallest_face_fills_the_window() -> None:
    detector = DlibFaceDetector(min_size=0.4)
    # faces of 0.4 x the shorter side against dlib's 80-pixel window, doubling each time
    assert detector.upsamplings(250, 300) == 0  # 100 px
    assert detector.upsamplings(128, 128) == 1  # 51 px -> 102
    assert detector.upsamplings(100, 60) == 2  # 24 px -> 96
    assert detector.upsamplings(20, 20) == MAX_UPSAMPLE  # capped
    assert DLIB_WINDOW == 80


SYNTHETIC_FRONTAL = 40  # synthetic test faces with |yaw| < 30 degrees


def test_detector_finds_most_frontal_synthetic_faces_at_their_landmark_box() -> None:
    faces = generate_synthetic_faces(120, seed=2, image_size=128, num_workers=1)
    frontal = np.flatnonzero(np.abs(faces.poses[:, 0]) < 30)[:SYNTHETIC_FRONTAL]
    detector = DlibFaceDetector()
    centre_errors = []
    for i in frontal:
        detections = detector(faces.images[i])
        if not detections:
            continue
        (box,) = DLIB_TO_300W_BOX(detections[0].box[None])
        truth = faces.boxes[i]
        side = max(truth[2] - truth[0], truth[3] - truth[1])
        offset = np.abs((box[:2] + box[2:]) / 2 - (truth[:2] + truth[2:]) / 2).max()
        centre_errors.append(offset / side)
    # experiments/detection_rate.py: 57% of 500 synthetic test faces found, 69% of the
    # frontal ones (Haar cascade: 45% and 58%)
    assert len(centre_errors) >= 0.5 * len(frontal)
    assert np.median(centre_errors) < 0.1


def test_boxes_of_a_shrunk_image_map_back_to_the_full_image() -> None:
    faces = generate_synthetic_faces(8, seed=2, image_size=128, num_workers=1)
    detector = DlibFaceDetector(max_side=800)
    for image in faces.images:
        small = detector(image)
        if not small:
            continue
        big_image = cv2.resize(image, (1024, 1024), interpolation=cv2.INTER_CUBIC)
        big = detector(big_image)  # detected at 800 px, boxes in 1024 px
        assert len(big) == len(small)
        # pixel-centre frame: p_big = (p + 0.5) * 8 - 0.5; dlib's pyramid steps differ by size
        expected = (small[0].box + 0.5) * 8 - 0.5
        side = expected[2] - expected[0]
        assert np.abs(big[0].box - expected).max() < 0.25 * side
        return
    pytest.fail("no synthetic face of the first 8 was found")


@needs_real_300w
@pytest.mark.parametrize("name", ["image_0001.jpg", "image_0050.jpg", "image_0100.jpg"])
def test_detector_finds_the_face_of_a_real_300w_image(name: str) -> None:
    path = REAL_300W / "lfpw" / "testset" / name
    detections = DlibFaceDetector()(read_image_rgb(path))
    assert len(detections) == 1
    assert detections[0].score > 0
    # calibrated, it is close to the landmark box the 300-W models were trained on
    points = read_pts(path.with_suffix(".pts"))
    truth = np.r_[points.min(axis=0), points.max(axis=0)]
    (box,) = DLIB_TO_300W_BOX(detections[0].box[None])
    truth_side = max(truth[2] - truth[0], truth[3] - truth[1])
    assert np.abs((box[:2] + box[2:]) / 2 - (truth[:2] + truth[2:]) / 2).max() < 0.1 * truth_side
    assert 0.8 < (box[2] - box[0]) / truth_side < 1.25


def test_boxes_file_errors_name_the_file(tmp_path: Path) -> None:
    bad_json = tmp_path / "boxes.json"
    bad_json.write_text(json.dumps({"other.jpg": [[0, 0, 10, 10]]}))
    with pytest.raises(ValueError, match=r"boxes\.json names images that are not in the input"):
        read_boxes_file(bad_json, ["a.jpg"])
    bad_json.write_text(json.dumps({"a.jpg": [[0, 0, 10]]}))
    with pytest.raises(ValueError, match=r"boxes\.json, image a\.jpg"):
        read_boxes_file(bad_json, ["a.jpg"])
    bad_csv = tmp_path / "boxes.csv"
    bad_csv.write_text("image,x0,y0\na.jpg,1,2\n")
    with pytest.raises(ValueError, match=r"boxes\.csv needs the CSV columns"):
        read_boxes_file(bad_csv, ["a.jpg"])


# ----------------------------------------------------------------------------- end to end


def run_predict(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run ``src/predict.py`` as a user would (the exit status is left to the caller)."""
    return call_script("predict.py", args, env)


def succeed(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    if result.returncode != 0:
        pytest.fail(f"predict.py exited {result.returncode}:\n{result.stderr[-4000:]}")
    return result


@pytest.fixture(scope="module")
def checkpoint(
    tmp_path_factory: pytest.TempPathFactory, subprocess_env: dict[str, str], small_data: list[str]
) -> Path:
    """The best checkpoint of a one-epoch training run on the small synthetic faces."""
    run_dir = tmp_path_factory.mktemp("train") / "run"
    args = ["trainer.max_epochs=1", "logger=none", "trainer.enable_progress_bar=false"]
    run_script("train.py", [*args, *small_data, f"hydra.run.dir={run_dir}"], subprocess_env)
    (best,) = sorted((run_dir / "checkpoints").glob("epoch_*.ckpt"))
    return best


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, FaceSet]:
    """Three synthetic face images (.png, .jpg, .png) and a file that is not an image."""
    folder = tmp_path_factory.mktemp("photos")
    faces = generate_synthetic_faces(3, seed=11, image_size=128)
    for index, suffix in enumerate([".png", ".jpg", ".png"]):
        bgr = cv2.cvtColor(faces.images[index], cv2.COLOR_RGB2BGR)
        cv2.imwrite(str(folder / f"face_{index}{suffix}"), bgr)
    (folder / "notes.txt").write_text("not an image\n")
    return folder, faces


@pytest.mark.slow
def test_predict_writes_json_csv_and_overlays_using_given_boxes(
    tmp_path: Path,
    subprocess_env: dict[str, str],
    checkpoint: Path,
    photo_folder: tuple[Path, FaceSet],
) -> None:
    folder, faces = photo_folder
    boxes = {
        "face_0.png": [faces.boxes[0].tolist()],
        # two boxes for one image: the face and a shifted copy
        "face_1.jpg": [faces.boxes[1].tolist(), (faces.boxes[1] + [5, 3, 5, 3]).tolist()],
    }
    boxes_json = tmp_path / "boxes.json"
    boxes_json.write_text(json.dumps(boxes))
    out = tmp_path / "out"
    succeed(
        run_predict(
            [
                f"ckpt_path={checkpoint}",
                f"input={folder}",
                f"boxes={boxes_json}",
                f"hydra.run.dir={out}",
            ],
            subprocess_env,
        )
    )
    results = json.loads((out / "landmarks.json").read_text())
    assert results["checkpoint"] == str(checkpoint)
    assert results["prediction_offset"] == [0.0, 0.0]  # a training checkpoint stores none
    images = results["images"]
    assert list(images) == ["face_0.png", "face_1.jpg", "face_2.png"]
    for name, given in boxes.items():
        record = images[name]
        assert (record["width"], record["height"]) == (128, 128)
        assert [f["source"] for f in record["faces"]] == ["given"] * len(given)
        for face, box in zip(record["faces"], given, strict=True):
            np.testing.assert_allclose(face["box"], box, atol=0.01)
            assert np.asarray(face["landmarks"]).shape == (68, 2)
    # face_2.png had no given box: the detector looked (cartoon faces may go unfound)
    assert all(f["source"] == "detector" for f in images["face_2.png"]["faces"])

    with (out / "landmarks.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    total_faces = sum(len(r["faces"]) for r in images.values())
    assert len(rows) == 68 * total_faces
    first = images["face_1.jpg"]["faces"][1]["landmarks"][67]
    row = next(r for r in rows if (r["image"], r["face"], r["point"]) == ("face_1.jpg", "1", "67"))
    assert [float(row["x"]), float(row["y"])] == pytest.approx(first)

    for name, record in images.items():
        overlay = cv2.imread(str(out / "overlays" / name))
        original = cv2.imread(str(folder / name))
        assert overlay is not None and overlay.shape == original.shape, name
        if record["faces"]:  # box and dots drawn
            changed = np.abs(overlay.astype(int) - original.astype(int)).max(axis=2) > 60
            assert changed.sum() > 200, name
    assert not (out / "overlays" / "notes.txt").exists()

    # the same boxes as CSV, for a single image: the same landmarks
    boxes_csv = tmp_path / "boxes.csv"
    boxes_csv.write_text(
        "image,x0,y0,x1,y1\nface_0.png," + ",".join(map(str, boxes["face_0.png"][0]))
    )
    single = tmp_path / "single"
    succeed(
        run_predict(
            [
                f"ckpt_path={checkpoint}",
                f"input={folder / 'face_0.png'}",
                f"boxes={boxes_csv}",
                f"hydra.run.dir={single}",
            ],
            subprocess_env,
        )
    )
    again = json.loads((single / "landmarks.json").read_text())["images"]
    assert list(again) == ["face_0.png"]
    np.testing.assert_allclose(
        again["face_0.png"]["faces"][0]["landmarks"],
        images["face_0.png"]["faces"][0]["landmarks"],
        atol=1e-3,
    )


@pytest.mark.slow
def test_predict_names_missing_inputs_and_defaults_to_the_bundled_model(
    tmp_path: Path, subprocess_env: dict[str, str], photo_folder: tuple[Path, FaceSet]
) -> None:
    folder, _ = photo_folder
    missing = run_predict(
        [f"ckpt_path={tmp_path / 'nope.ckpt'}", f"input={folder}", f"hydra.run.dir={tmp_path}/a"],
        subprocess_env,
    )
    assert missing.returncode != 0
    assert "ckpt_path: no checkpoint file at" in missing.stderr
    assert "nope.ckpt" in missing.stderr

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here\n")
    no_images = run_predict(
        [f"ckpt_path={tmp_path / 'nope.ckpt'}", f"input={empty}", f"hydra.run.dir={tmp_path}/b"],
        subprocess_env,
    )
    assert no_images.returncode != 0
    assert f"input: no .jpg/.jpeg/.png images found in folder {empty}" in no_images.stderr

    bundled = run_predict([f"input={folder}", f"hydra.run.dir={tmp_path}/c"], subprocess_env)
    assert bundled.returncode == 0, bundled.stderr  # no ckpt_path: the bundled model
    written = json.loads((tmp_path / "c" / "landmarks.json").read_text())
    assert written["checkpoint"].endswith("models/cnn6_wing_300w.ckpt")
    # the bundled model's validation offset was subtracted, and the results say so
    stored = stored_prediction_offset(BUNDLED_MODEL)
    assert written["prediction_offset"] == pytest.approx(stored, abs=1e-6)
    assert len(written["images"]) == 3


@pytest.mark.slow
def test_predict_reports_a_corrupt_image_and_keeps_every_other_result(
    tmp_path: Path,
    subprocess_env: dict[str, str],
    checkpoint: Path,
    photo_folder: tuple[Path, FaceSet],
) -> None:
    source, _ = photo_folder
    folder = tmp_path / "photos"
    folder.mkdir()
    for image in sorted(source.glob("face_*")):
        (folder / image.name).write_bytes(image.read_bytes())
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    out = tmp_path / "out"
    result = run_predict([f"ckpt_path={checkpoint}", f"input={folder}", f"hydra.run.dir={out}"],
                         subprocess_env)  # fmt: skip
    assert result.returncode == 1
    said = result.stdout + result.stderr
    assert "broken.jpg" in said and "1 of 4 image(s) could not be read" in said
    written = json.loads((out / "landmarks.json").read_text())
    assert list(written["images"]) == ["face_0.png", "face_1.jpg", "face_2.png"]
    assert list(written["unreadable"]) == ["broken.jpg"]
    assert "cannot decode image" in written["unreadable"]["broken.jpg"]
    with (out / "landmarks.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    faces_found = sum(len(r["faces"]) for r in written["images"].values())
    assert len(rows) == 68 * faces_found
    assert sorted(p.name for p in (out / "overlays").iterdir()) == [
        "face_0.png",
        "face_1.jpg",
        "face_2.png",
    ]


class CollapsingNet(nn.Module):
    """A model whose predictions collapse to one point (a weakly trained checkpoint)."""

    num_points = 68

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.full((len(images), 68, 2), 20.0)


def test_refine_keeps_the_previous_box_when_the_prediction_collapses() -> None:
    image = np.zeros((200, 200, 3), np.uint8)
    predictor = LandmarkPredictor(
        CollapsingNet(), input_size=INPUT_SIZE, crop_scale=CROP_SCALE, refine=2
    )
    detector_box = np.array([[50.0, 60.0, 150.0, 160.0]])
    landmarks, crop_boxes = predictor.landmarks_of_detections(image, detector_box)
    np.testing.assert_allclose(crop_boxes, predictor.calibration(detector_box))
    assert landmarks.shape == (1, 68, 2) and np.isfinite(landmarks).all()
