"""Landmarks for faces in any image, from a trained checkpoint, in one call.

    predictor = LandmarkPredictor.from_checkpoint("run/checkpoints/last.ckpt")
    faces = predictor(image_rgb)  # (H, W, 3) uint8 → list of FaceLandmarks, largest face first

Each face is cropped exactly as the test-time pipeline crops it (:class:`ContextCrops` then the
central window): a square of ``data.crop_scale`` × the longer side of the face box, centred on
the box and resampled to ``data.input_size`` pixels (:func:`crop_matrix`, :func:`warp_crop`). The
model predicts in crop pixels and the inverse crop transform maps the points back to the image.

Face boxes must follow the convention the model was trained with. Models trained on 300-W or the
synthetic faces use the tight box of the 68 landmarks, which no detector gives: boxes from the
face detector (dlib's HOG detector, when ``boxes`` is not given) go through a fixed
:class:`BoxCalibration` measured on real 300-W faces (:data:`DLIB_TO_300W_BOX`), and the face is
then re-cropped ``refine`` times around the tight box of its predicted landmarks, which is
exactly the training convention. Given boxes are used as they are.

A model file exported with ``--calibrate-offset`` stores its mean signed error on the validation
faces (:mod:`wingface.inference.model_file`); the predictor subtracts it from every prediction in
network-input pixels, as ``src/eval.py calibrate_offset=true`` does on a test set.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch
from torch import nn

from wingface.data.transforms import crop_matrix, transform_points, warp_crop
from wingface.inference.detector import (
    DLIB_TO_300W_BOX,
    IDENTITY_CALIBRATION,
    BoxCalibration,
    Detection,
    DlibFaceDetector,
)
from wingface.landmarks import tight_boxes

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from wingface.module import LandmarkModule

log = logging.getLogger(__name__)

FaceDetector = Callable[[np.ndarray], list[Detection]]
"""Maps a ``(H, W, 3)`` uint8 RGB image to detections, largest first."""

LANDMARK_BOX_SCHEMES = ("300w",)
"""Schemes whose datasets (300-W, synthetic) define the face box as the tight landmark box."""


@dataclass(frozen=True)
class FaceLandmarks:
    """The landmarks of one face.

    Attributes:
        box: ``(4,)`` float64 ``(x0, y0, x1, y1)`` image pixels: the detector's or the given box.
        landmarks: ``(L, 2)`` float32 ``(x, y)`` image pixels (centre of pixel ``i`` at ``i``).
        score: the detector's score (merged windows), None for a given box.
        crop_box: ``(4,)`` float64, the box in the model's convention that the final crop was
            cut around (for a detection: calibrated, then refined; ``box`` itself when given).
    """

    box: np.ndarray
    landmarks: np.ndarray
    score: float | None
    crop_box: np.ndarray


def as_boxes(boxes: np.ndarray | Sequence[Sequence[float]], where: str = "boxes") -> np.ndarray:
    """Validate face boxes: ``(N, 4)`` float64 ``(x0, y0, x1, y1)`` with ``x1 > x0, y1 > y0``.

    Raises:
        ValueError: naming ``where`` and the first bad box.
    """
    array = np.asarray(boxes, dtype=np.float64)
    if array.size == 0:
        return array.reshape(0, 4)
    if array.ndim == 1 and array.shape[0] == 4:
        array = array[None]
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"{where}: expected boxes (x0, y0, x1, y1), got shape {array.shape}")
    bad = ~np.isfinite(array).all(axis=1) | (array[:, 2] <= array[:, 0])
    bad |= array[:, 3] <= array[:, 1]
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{where}: box {index} {array[index].tolist()} is not (x0, y0, x1, y1) "
            f"with x1 > x0 and y1 > y0"
        )
    return array


MIN_REFINED_SIDE = 0.1
"""A re-crop box from predicted landmarks is used only when both its sides are at least this
fraction of the box it replaces (and 1 px): smaller means the prediction collapsed (a weak or
mismatched model) and the previous box is kept."""


def usable_refined_boxes(proposed: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """``(N,)`` bool: which ``(N, 4)`` ``proposed`` re-crop boxes are finite and no smaller than
    :data:`MIN_REFINED_SIDE` of the ``(N, 4)`` ``previous`` boxes' sides (and 1 px)."""
    sides = proposed[:, 2:] - proposed[:, :2]
    previous_sides = previous[:, 2:] - previous[:, :2]
    minimum = np.maximum(MIN_REFINED_SIDE * previous_sides, 1.0)
    return np.isfinite(proposed).all(axis=1) & (sides >= minimum).all(axis=1)


def crop_faces(
    image: np.ndarray, boxes: np.ndarray, crop_scale: float, input_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Cut the network inputs of faces out of one image.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        boxes: ``(N, 4)`` face boxes in the model's convention, image pixels.
        crop_scale: crop side as a multiple of the longer box side (``data.crop_scale``).
        input_size: network input side ``S`` in pixels.

    Returns:
        ``(N, S, S, 3)`` uint8 crops and ``(N, 2, 3)`` float64 image → crop matrices.
    """
    matrices = np.stack([crop_matrix(box, crop_scale, input_size) for box in boxes])
    crops = np.stack([warp_crop(image, m, input_size) for m in matrices])
    return crops, matrices


def crop_points_to_image(points: np.ndarray, matrices: np.ndarray) -> np.ndarray:
    """Map ``(N, L, 2)`` crop pixels back to the image through the inverse ``(N, 2, 3)`` crops.

    Returns ``(N, L, 2)`` float32 image pixels.
    """
    return np.stack(
        [
            transform_points(p.astype(np.float64), cv2.invertAffineTransform(m))
            for p, m in zip(points, matrices, strict=True)
        ]
    )


def load_landmark_module(
    ckpt_path: str | Path,
    device: str | torch.device = "cpu",
    test_time_flip: bool | None = None,
    test_time_shift: int | None = None,
) -> tuple[LandmarkModule, DictConfig]:
    """The LightningModule of a checkpoint, built from the run config saved beside it (or, for
    a model file, in it); ``test_time_flip`` / ``test_time_shift`` replace the run's settings
    of those switches (None keeps them; :mod:`wingface.test_time`).

    Returns:
        ``(module in eval mode on device, run config)``.

    Raises:
        FileNotFoundError: naming ``ckpt_path`` when the file or its run config is missing.
    """
    from omegaconf import open_dict

    from wingface.config import register_resolvers
    from wingface.inference.model_file import checkpoint_run_config
    from wingface.pipeline import build_module

    register_resolvers()
    run_cfg, _ = checkpoint_run_config(ckpt_path)
    switches = {"test_time_flip": test_time_flip, "test_time_shift": test_time_shift}
    with open_dict(run_cfg):
        run_cfg.update({key: value for key, value in switches.items() if value is not None})
    module = build_module(run_cfg)
    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    if "state_dict" not in checkpoint:
        raise ValueError(f"ckpt_path: {ckpt_path} is not a Lightning checkpoint (no state_dict)")
    module.load_state_dict(checkpoint["state_dict"])
    return module.to(device).eval(), run_cfg


class LandmarkPredictor:
    """Detect (or take) face boxes, crop, predict and map landmarks back to the image.

    Args:
        model: maps ``(B, 3, S, S)`` uint8 crops to ``(B, L, 2)`` crop pixels (a
            :class:`~wingface.module.LandmarkModule`); put in eval mode here.
        input_size: network input side ``S`` (``data.input_size``).
        crop_scale: crop side / longer box side (``data.crop_scale``).
        detector: finds faces when no boxes are given (None: a :class:`DlibFaceDetector`,
            made on first use).
        calibration: maps detector boxes to the model's box convention.
        refine: re-crops of detected faces around their predicted landmarks' tight box (only
            for models trained on landmark boxes; 0 for others).
        device: where the model runs.
        batch_size: crops per forward pass.
        prediction_offset: ``(x, y)`` network-input pixels subtracted from every prediction
            (a model file's validation offset, :mod:`wingface.inference.model_file`).
    """

    def __init__(
        self,
        model: nn.Module,
        input_size: int,
        crop_scale: float,
        detector: FaceDetector | None = None,
        calibration: BoxCalibration = IDENTITY_CALIBRATION,
        refine: int = 0,
        device: str | torch.device = "cpu",
        batch_size: int = 64,
        prediction_offset: Sequence[float] = (0.0, 0.0),
    ) -> None:
        if input_size < 1 or not crop_scale > 0 or batch_size < 1 or refine < 0:
            raise ValueError(
                f"need input_size >= 1, crop_scale > 0, batch_size >= 1 and refine >= 0, got "
                f"{input_size}, {crop_scale}, {batch_size}, {refine}"
            )
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.input_size = int(input_size)
        self.crop_scale = float(crop_scale)
        self._detector = detector
        self.calibration = calibration
        self.refine = int(refine)
        self.batch_size = batch_size
        offset = np.asarray(prediction_offset, dtype=np.float32)
        if offset.shape != (2,) or not np.isfinite(offset).all():
            raise ValueError(
                f"prediction_offset: expected two finite numbers (x, y), got {prediction_offset}"
            )
        self.prediction_offset = offset

    @classmethod
    def from_checkpoint(
        cls,
        ckpt_path: str | Path,
        device: str | torch.device = "cpu",
        detector: FaceDetector | None = None,
        calibration: BoxCalibration | None = None,
        refine: int | None = None,
        batch_size: int = 64,
        test_time_flip: bool | None = None,
        test_time_shift: int | None = None,
        calibrate_offset: bool | None = None,
    ) -> LandmarkPredictor:
        """A predictor for a training checkpoint (its run's ``.hydra/config.yaml`` beside it)
        or a model file; ``test_time_flip`` / ``test_time_shift`` replace the run's settings
        (None keeps them). ``calibrate_offset`` subtracts the model file's stored validation
        offset from every prediction: None when the file has one, True requires one (a
        ValueError naming the file otherwise), False never.

        For models of the 68-point 300-W scheme (trained on landmark boxes), ``calibration``
        None picks :data:`DLIB_TO_300W_BOX` and ``refine`` None two re-crops; for other schemes
        no calibration (with a warning) and no re-crop.
        """
        from wingface.inference.model_file import stored_prediction_offset

        offset = stored_prediction_offset(ckpt_path) if calibrate_offset is not False else None
        if calibrate_offset and offset is None:
            raise ValueError(
                f"calibrate_offset: {ckpt_path} stores no prediction offset; write a model file "
                "that does with python experiments/export_model.py <checkpoint> <file> "
                "--calibrate-offset"
            )
        module, run_cfg = load_landmark_module(ckpt_path, device, test_time_flip, test_time_shift)
        scheme = str(run_cfg.data.scheme)
        landmark_box = scheme in LANDMARK_BOX_SCHEMES
        if refine is None:
            refine = 2 if landmark_box else 0
        if calibration is None:
            if landmark_box:
                calibration = DLIB_TO_300W_BOX
            else:
                log.warning(
                    "no detector-box calibration is known for scheme %r: detector boxes are "
                    "used as they are (give calibration= or boxes= for best results)",
                    scheme,
                )
                calibration = IDENTITY_CALIBRATION
        return cls(
            module,
            input_size=int(run_cfg.data.input_size),
            crop_scale=float(run_cfg.data.crop_scale),
            detector=detector,
            calibration=calibration,
            refine=refine,
            device=device,
            batch_size=batch_size,
            prediction_offset=(0.0, 0.0) if offset is None else offset,
        )

    @property
    def detector(self) -> FaceDetector:
        """The face detector used when no boxes are given."""
        if self._detector is None:
            self._detector = DlibFaceDetector()
        return self._detector

    @torch.inference_mode()
    def landmarks_in_boxes(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """``(N, L, 2)`` float32 image-pixel landmarks of the faces in ``(N, 4)`` model boxes."""
        boxes = as_boxes(boxes)
        crops, matrices = crop_faces(image, boxes, self.crop_scale, self.input_size)
        preds = []
        for start in range(0, len(crops), self.batch_size):
            batch = torch.from_numpy(crops[start : start + self.batch_size])
            batch = batch.permute(0, 3, 1, 2).contiguous().to(self.device)
            preds.append(self.model(batch).float().cpu().numpy())
        return crop_points_to_image(np.concatenate(preds) - self.prediction_offset, matrices)

    def landmarks_of_detections(
        self, image: np.ndarray, boxes: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Landmarks of faces in ``(N, 4)`` detector boxes: calibrate, predict, re-crop.

        Returns:
            ``(N, L, 2)`` float32 image-pixel landmarks and the ``(N, 4)`` final crop boxes.
        """
        crop_boxes = self.calibration(as_boxes(boxes))
        landmarks = self.landmarks_in_boxes(image, crop_boxes)
        for _ in range(self.refine):
            proposed = tight_boxes(landmarks)
            usable = usable_refined_boxes(proposed, crop_boxes)
            if not usable.all():
                log.warning(
                    "%d face(s): predicted landmarks collapsed (box side below %g of the "
                    "crop box); keeping the previous box for them",
                    int((~usable).sum()),
                    MIN_REFINED_SIDE,
                )
            if not usable.any():
                break
            crop_boxes = np.where(usable[:, None], proposed, crop_boxes)
            landmarks = landmarks.copy()
            landmarks[usable] = self.landmarks_in_boxes(image, crop_boxes[usable])
        return landmarks, crop_boxes

    def __call__(
        self,
        image: np.ndarray,
        boxes: np.ndarray | Sequence[Sequence[float]] | None = None,
    ) -> list[FaceLandmarks]:
        """Landmarks of every face in an image.

        Args:
            image: ``(H, W, 3)`` uint8 RGB.
            boxes: ``(N, 4)`` face boxes ``(x0, y0, x1, y1)`` in the model's convention; None:
                detect faces (largest first), calibrate their boxes and refine.

        Returns:
            One :class:`FaceLandmarks` per face (empty when no face is found).
        """
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(
                f"expected a (H, W, 3) uint8 RGB image, got {image.dtype} {image.shape}"
            )
        if boxes is None:
            detections = self.detector(image)
            given = as_boxes([d.box for d in detections])
            scores: list[float | None] = [d.score for d in detections]
        else:
            given = as_boxes(boxes)
            scores = [None] * len(given)
        if len(given) == 0:
            return []
        if boxes is None:
            landmarks, crop_boxes = self.landmarks_of_detections(image, given)
        else:
            crop_boxes = given
            landmarks = self.landmarks_in_boxes(image, crop_boxes)
        return [
            FaceLandmarks(box=b, landmarks=p, score=s, crop_box=c)
            for b, p, s, c in zip(given, landmarks, scores, crop_boxes, strict=True)
        ]
