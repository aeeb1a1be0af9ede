"""Face detector boxes vs the landmark boxes a 300-W model is trained on: calibration and NME.

Usage:
    python experiments/box_calibration.py ../shared/data/300w [folder ...] [--ckpt <file>.ckpt]

For every face of the folders (default: the 300-W training folders afw, helen/trainset,
lfpw/trainset) the detection overlapping its tight 68-landmark box most (IoU >= 0.3) is
matched. Printed: the medians of the landmark box's longer side and centre offset, in units of
the detection's side (the constants of ``wingface.inference.detector.DLIB_TO_300W_BOX``).
With ``--ckpt``, also the model's mean NME (%) when cropping around the ground-truth landmark
box, the raw detector box, the calibrated detector box, and the calibrated box refined twice
around the predicted landmarks as ``LandmarkPredictor`` does (``--csv`` writes them per face).
"""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np
import torch

from wingface.data.formats.face300w import load_300w
from wingface.inference.detector import DlibFaceDetector, box_iou
from wingface.inference.predictor import LandmarkPredictor
from wingface.metrics import normalising_distance, per_image_nme

TRAIN_FOLDERS = ["afw", "helen/trainset", "lfpw/trainset"]
NORMS = ("inter_ocular", "inter_pupil")
REFINE = 2  # re-crops around the predicted landmarks, as LandmarkPredictor does for 300-W


def nme_percent(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Per-face NME (%) of ``(L, 2)`` points for each normalisation of :data:`NORMS`."""
    p, t = torch.from_numpy(pred[None]).double(), torch.from_numpy(truth[None]).double()
    return {
        n: 100 * float(per_image_nme(p, t, None, normalising_distance(t, None, n, "300w")))
        for n in NORMS
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="the 300-W root folder")
    parser.add_argument("folders", nargs="*", default=TRAIN_FOLDERS)
    parser.add_argument("--ckpt", type=Path, help="also measure this checkpoint's NME")
    parser.add_argument("--csv", type=Path, help="per-face NMEs (with --ckpt)")
    args = parser.parse_args()

    faces = load_300w(args.root, args.folders)
    detector = DlibFaceDetector()
    predictor = LandmarkPredictor.from_checkpoint(args.ckpt) if args.ckpt else None
    shapes, rows = [], []
    for name, image, box, truth in zip(
        faces.names, faces.images, faces.boxes.astype(np.float64), faces.landmarks, strict=True
    ):
        detections = detector(image)
        boxes = np.stack([d.box for d in detections]) if detections else np.zeros((0, 4))
        overlap = box_iou(box, boxes) if len(boxes) else np.zeros(1)
        found = overlap.max() >= 0.3
        det = boxes[int(overlap.argmax())] if found else None
        if found:
            side = det[2] - det[0]
            centre_shift = ((box[:2] + box[2:]) - (det[:2] + det[2:])) / 2 / side
            shapes.append([max(box[2] - box[0], box[3] - box[1]) / side, *centre_shift])
        if predictor is not None:
            row = {"name": name, "detected": int(found)}
            preds = {"truth_box": predictor.landmarks_in_boxes(image, box[None])[0]}
            if found:
                preds["detector_raw"] = predictor.landmarks_in_boxes(image, det[None])[0]
                for label, passes in (("detector_calibrated", 0), ("detector_refined", REFINE)):
                    predictor.refine = passes
                    preds[label] = predictor.landmarks_of_detections(image, det[None])[0][0]
            for label, pred in preds.items():
                row |= {f"{label}_{n}": v for n, v in nme_percent(pred, truth).items()}
            rows.append(row)
    values = np.asarray(shapes)
    print(f"{len(values)} of {len(faces)} faces matched a detection (IoU >= 0.3)")
    for name, column in zip(("side", "shift_x", "shift_y"), values.T, strict=True):
        q25, q50, q75 = np.percentile(column, [25, 50, 75])
        print(f"{name}: median {q50:.3f} (quartiles {q25:.3f} .. {q75:.3f})")
    if not rows:
        return
    detected = [r for r in rows if r["detected"]]
    for norm in NORMS:
        print(
            f"mean NME {norm} (%): ground-truth box, all {len(rows)} faces: "
            f"{np.mean([r[f'truth_box_{norm}'] for r in rows]):.2f}"
        )
        for label in ("truth_box", "detector_raw", "detector_calibrated", "detector_refined"):
            mean = np.mean([r[f"{label}_{norm}"] for r in detected])
            print(f"  on the {len(detected)} detected faces, {label}: {mean:.2f}")
    if args.csv:
        columns = sorted({key for row in rows for key in row}, key=lambda k: (k != "name", k))
        with args.csv.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)


if __name__ == "__main__":
    main()
