"""How often the face detector of ``src/predict.py`` finds labelled faces, by pose.

Usage:
    python experiments/detection_rate.py [--root ../shared/data/300w] [--folders lfpw/testset]
        [--synthetic 500] [--json out.json]

A face counts as found when a detection overlaps its tight landmark box with IoU >= 0.3 (the
match rule of ``experiments/box_calibration.py``); a detection overlapping no labelled face
counts as a false detection. Measured on 300-W folders (faces of an image without landmark
files are not labelled, so false detections there are an upper bound) and on the synthetic
test faces (one face per image, true yaw known), by |yaw| band.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np

from wingface.config import PROJECT_ROOT
from wingface.data.faces import FaceSet
from wingface.data.formats.face300w import load_300w
from wingface.data.sources import YAW_BINS
from wingface.data.synthetic import load_or_generate_synthetic
from wingface.inference.detector import DlibFaceDetector, box_iou

MATCH_IOU = 0.3


def detect_faces(detector: DlibFaceDetector, faces: FaceSet) -> tuple[np.ndarray, int, float]:
    """``(N,)`` bool found per face, the number of false detections, seconds per image.

    Faces sharing an image (the same name) are matched against that image's detections.
    """
    found = np.zeros(len(faces), bool)
    false_detections = 0
    by_image: dict[str, list[int]] = {}
    for i, name in enumerate(faces.names):
        by_image.setdefault(name, []).append(i)
    start = time.perf_counter()
    for indices in by_image.values():
        detections = detector(faces.images[indices[0]])
        boxes = np.stack([d.box for d in detections]) if detections else np.zeros((0, 4))
        matched = np.zeros(len(boxes), bool)
        for i in indices:
            if len(boxes):
                overlap = box_iou(faces.boxes[i].astype(np.float64), boxes)
                found[i] = overlap.max() >= MATCH_IOU
                matched |= overlap >= MATCH_IOU
        false_detections += int((~matched).sum())
    return found, false_detections, (time.perf_counter() - start) / len(by_image)


def yaw_bands(yaw: np.ndarray) -> dict[str, np.ndarray]:
    """``|yaw|`` band masks (degrees) named ``0-30`` ... ``60-90``."""
    yaw = np.abs(yaw)
    last = YAW_BINS[-1][1]
    return {
        f"{lo}-{hi}": (yaw >= lo) & ((yaw <= hi) if hi == last else (yaw < hi))
        for lo, hi in YAW_BINS
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("../shared/data/300w"))
    parser.add_argument("--folders", nargs="*", default=["lfpw/testset"])
    parser.add_argument("--synthetic", type=int, default=500, help="synthetic test faces")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()

    detector = DlibFaceDetector()
    results: dict[str, dict[str, float]] = {}
    if args.root.is_dir():
        faces = load_300w(args.root, args.folders)
        found, false, seconds = detect_faces(detector, faces)
        results["300-W " + ",".join(args.folders)] = {
            "faces": len(faces), "found %": 100 * found.mean(), "false": false,
            "s/image": seconds,
        }  # fmt: skip
    cache = os.environ.get("WINGFACE_CACHE_DIR", str(PROJECT_ROOT / ".cache"))
    synthetic = load_or_generate_synthetic(cache, args.synthetic, seed=2)
    found, false, seconds = detect_faces(detector, synthetic)
    row: dict[str, float] = {"faces": len(synthetic), "found %": 100 * found.mean()}
    for band, mask in yaw_bands(synthetic.poses[:, 0]).items():
        row[f"|yaw| {band} found %"] = 100 * found[mask].mean() if mask.any() else float("nan")
    results["synthetic test"] = row | {"false": false, "s/image": seconds}
    for name, numbers in results.items():
        print(name + ": " + ", ".join(f"{k} {v:.3g}" for k, v in numbers.items()))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
