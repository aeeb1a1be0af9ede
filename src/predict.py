"""Landmarks for your images: ``python src/predict.py ckpt_path=<file>.ckpt input=<image|folder>``.

See ``conf/predict.yaml`` for the options and ``wingface.inference.files`` for the files written.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import hydra
from omegaconf import DictConfig, OmegaConf

from wingface.config import CONFIG_DIR, load_dotenv_file, register_resolvers
from wingface.data.files import read_image_rgb
from wingface.inference.detector import BoxCalibration, DlibFaceDetector
from wingface.inference.files import (
    face_record,
    list_images,
    read_boxes_file,
    write_csv,
    write_image,
    write_json,
)
from wingface.inference.model_file import checkpoint_or_bundled_model
from wingface.inference.predictor import LandmarkPredictor
from wingface.plots import draw_overlay

register_resolvers()
load_dotenv_file()
log = logging.getLogger(__name__)


def build_predictor(cfg: DictConfig, checkpoint: Path) -> LandmarkPredictor:
    """The predictor of ``checkpoint`` with the configured detector and calibration."""
    calibration = None
    if cfg.get("calibration") is not None:
        values = OmegaConf.to_container(cfg.calibration)
        if not isinstance(values, dict) or not set(values) <= {"side", "shift_x", "shift_y"}:
            raise ValueError(f"calibration: expected {{side, shift_x, shift_y}}, got {values}")
        calibration = BoxCalibration(**values)
    return LandmarkPredictor.from_checkpoint(
        checkpoint,
        device=cfg.device,
        detector=DlibFaceDetector(**cfg.detector),
        calibration=calibration,
        refine=cfg.get("refine"),
        batch_size=cfg.batch_size,
        test_time_flip=cfg.test_time_flip,
        test_time_shift=cfg.test_time_shift,
        calibrate_offset=cfg.calibrate_offset,
    )


EXIT_UNREADABLE = 1
"""Exit status when some input images could not be read (the others' results are written)."""


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="predict")
def main(cfg: DictConfig) -> None:
    """Predict every face of every readable input image; write JSON, CSV and overlays.

    An image that cannot be read is reported (logged, listed under ``unreadable`` in
    ``landmarks.json``) and the run exits with status 1 after writing every other result.
    """
    images = list_images(cfg.get("input"))
    given = read_boxes_file(cfg.boxes, [name for name, _ in images]) if cfg.boxes else {}
    checkpoint = checkpoint_or_bundled_model(cfg.get("ckpt_path"))
    predictor = build_predictor(cfg, checkpoint)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    unreadable: dict[str, str] = {}
    for name, path in images:
        try:
            image = read_image_rgb(path)
        except (OSError, ValueError) as error:
            log.error("%s: skipped, %s", name, error)
            unreadable[name] = str(error)
            continue
        faces = predictor(image, given.get(name))
        source = "given" if name in given else "detector"
        log.info("%s: %d face(s) (%s boxes)", name, len(faces), source)
        results[name] = {
            "width": image.shape[1],
            "height": image.shape[0],
            "faces": [face_record(face, source) for face in faces],
        }
        write_image(out / "overlays" / name, draw_overlay(image, faces, cfg.dot_radius))
    meta = {
        "checkpoint": str(checkpoint),
        "input": str(cfg.input),
        # network-input pixels subtracted from every prediction (calibrate_offset)
        "prediction_offset": predictor.prediction_offset.tolist(),
        "unreadable": unreadable,
    }
    write_json(out / "landmarks.json", results, meta)
    write_csv(out / "landmarks.csv", results)
    total = sum(len(r["faces"]) for r in results.values())
    log.info("%d face(s) in %d image(s): results in %s", total, len(results), out)
    if unreadable:
        log.error(
            "%d of %d image(s) could not be read: %s",
            len(unreadable),
            len(images),
            ", ".join(unreadable),
        )
        raise SystemExit(EXIT_UNREADABLE)


if __name__ == "__main__":
    main()
