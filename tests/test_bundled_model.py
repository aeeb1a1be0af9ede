"""The bundled model (models/cnn6_wing_300w.ckpt): a float16 CNN-6 + Wing on the 300-W subset
that predict.py and eval.py use when no checkpoint is given."""

from __future__ import annotations

import numpy as np
import torch

from shared_data import REAL_300W, needs_real_300w
from wingface.config import apply_run_overrides
from wingface.data.formats.face300w import load_300w
from wingface.inference.model_file import (
    BUNDLED_MODEL,
    checkpoint_run_config,
    stored_prediction_offset,
)
from wingface.inference.predictor import LandmarkPredictor
from wingface.landmarks import tight_boxes
from wingface.metrics import normalising_distance, per_image_nme


def test_the_bundled_model_is_a_small_float16_model_file() -> None:
    assert BUNDLED_MODEL.is_file()
    assert BUNDLED_MODEL.stat().st_size < 10 * 2**20
    checkpoint = torch.load(BUNDLED_MODEL, map_location="cpu", weights_only=True)
    weights = [v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")]
    assert weights and all(w.dtype == torch.float16 for w in weights if w.is_floating_point())
    run_cfg, overrides = checkpoint_run_config(BUNDLED_MODEL)
    assert run_cfg.data.scheme == "300w" and "loss=wing" in overrides
    assert run_cfg.loss.w == 10 and run_cfg.loss.eps == 2
    # recorded before test_time_flip existed: the switch reads as what it trained with, and
    # takes a plain override like a newer run's
    assert run_cfg.test_time_flip is False and run_cfg.test_time_shift == 0
    apply_run_overrides(run_cfg, ["test_time_flip=true", "test_time_shift=2"], overrides)
    assert run_cfg.test_time_flip is True and run_cfg.test_time_shift == 2


@needs_real_300w
def test_the_bundled_model_finds_real_faces_landmarks() -> None:
    """On 20 lfpw/testset faces, cropped at their landmark box as in training, the bundled
    model's mean inter-ocular NME is below 6% (the model card reports the whole test set)."""
    faces = load_300w(REAL_300W, ["lfpw/testset"])
    predictor = LandmarkPredictor.from_checkpoint(BUNDLED_MODEL)
    boxes = tight_boxes(faces.landmarks[:20])
    nmes = []
    for index in range(20):
        image = faces.images[index]
        (face,) = predictor(image, boxes[index : index + 1])
        truth = torch.from_numpy(faces.landmarks[index : index + 1]).float()
        pred = torch.from_numpy(np.asarray(face.landmarks)[None]).float()
        distance = normalising_distance(truth, None, "inter_ocular", "300w")
        nmes.append(float(per_image_nme(pred, truth, None, distance)))
    assert np.mean(nmes) < 0.06


def test_predictor_takes_the_test_time_switches_over_the_recorded_ones() -> None:
    """``predict.py test_time_flip=true test_time_shift=1``: the loaded model averages its 18
    passes (``wingface.test_time``, checked against an independent reference in
    test_test_time.py) although the model's recorded config has neither switch."""
    plain = LandmarkPredictor.from_checkpoint(BUNDLED_MODEL)
    averaged = LandmarkPredictor.from_checkpoint(
        BUNDLED_MODEL, test_time_flip=True, test_time_shift=1
    )
    assert (plain.model.test_time_flip, plain.model.test_time_shift) == (False, 0)
    assert (averaged.model.test_time_flip, averaged.model.test_time_shift) == (True, 1)
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (120, 100, 3), dtype=np.uint8)
    box = np.array([[25.0, 30.0, 75.0, 90.0]])
    (face_plain,) = plain(image, box)
    (face_averaged,) = averaged(image, box)
    assert not np.allclose(face_averaged.landmarks, face_plain.landmarks, atol=1e-3)
    plain.model.test_time_flip, plain.model.test_time_shift = True, 1
    (face_switched,) = plain(image, box)
    np.testing.assert_allclose(face_switched.landmarks, face_averaged.landmarks, atol=1e-4)


def test_predictor_subtracts_the_bundled_models_validation_offset_unless_told_not_to() -> None:
    """The bundled model stores its validation offset (a few tenths of an input pixel, the
    model card's numbers); the predictor's landmarks move by it, in image pixels the offset
    divided by the crop's scale."""
    offset = stored_prediction_offset(BUNDLED_MODEL)
    assert offset is not None and 0.05 < -offset[0] < 0.5 and abs(offset[1]) < 0.5
    calibrated = LandmarkPredictor.from_checkpoint(BUNDLED_MODEL)
    plain = LandmarkPredictor.from_checkpoint(BUNDLED_MODEL, calibrate_offset=False)
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (120, 100, 3), dtype=np.uint8)
    box = np.array([[25.0, 30.0, 75.0, 90.0]])
    scale = plain.input_size / (plain.crop_scale * 60.0)  # input pixels per image pixel
    (face_calibrated,) = calibrated(image, box)
    (face_plain,) = plain(image, box)
    moved = face_plain.landmarks - np.asarray(offset, dtype=np.float32) / scale
    np.testing.assert_allclose(face_calibrated.landmarks, moved, atol=1e-4)
