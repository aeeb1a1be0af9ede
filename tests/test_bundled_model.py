"""The bundled model (models/cnn6_wing_300w.ckpt): a float16 CNN-6 + Wing on the 300-W subset
that predict.py and eval.py use when no checkpoint is given."""

from __future__ import annotations

import numpy as np
import torch

from shared_data import REAL_300W, needs_real_300w
from wingface.config import apply_run_overrides
from wingface.data.formats.face300w import load_300w
from wingface.inference.model_file import BUNDLED_MODEL, checkpoint_run_config
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
