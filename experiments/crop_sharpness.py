"""Augmented training faces vs evaluation faces: the detail each keeps, and what a model sees.

Usage:
    python experiments/crop_sharpness.py ../shared/data/300w [--ckpt <file>] [--oversample 1 2 3]

1. *Detail kept by augmentation.* For each ``data.context_oversample`` value ``k``, the faces of
   lfpw/trainset are cropped as for training, augmented once with the geometry of ``augment=gpu``
   (rotation, scale, shift, flip; colour, blur and occlusion off), and the mean squared
   difference of neighbouring pixels of the augmented faces is divided by that of the
   evaluation crops (warped from the photo directly). Below 1: augmentation interpolated the
   faces a second time and training sees blurrier faces than evaluation.
2. *What a model trained at k = 1 prefers* (``--ckpt``, e.g. ``models/cnn6_wing_300w.ckpt``): its
   inter-ocular NME (%) on the lfpw/testset crops as evaluated and on the same crops resampled
   once more by a quarter- and a half-pixel shift (the interpolation an augmented training face
   went through; the landmarks are shifted with them). Lower NME on the resampled crops means
   the model learnt on blurrier faces than it is tested on.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np
import torch

from wingface.data.dataset import ContextCrops
from wingface.data.formats.face300w import load_300w
from wingface.data.gpu_augment import BatchAugmentation, sample_keys, warp_images
from wingface.inference.predictor import load_landmark_module
from wingface.landmarks import IBUG68
from wingface.metrics import normalising_distance, per_image_nme

INPUT_SIZE, CROP_SCALE, CONTEXT_SCALE = 64, 1.28, 1.25  # conf/data/300w.yaml, CNN-6
SHIFTS = (0.0, 0.25, 0.5)  # pixels, along x and y


def detail(images: np.ndarray) -> float:
    """Mean squared difference of horizontally and vertically neighbouring pixels of
    ``(N, 3, S, S)`` images (levels²)."""
    x = images.astype(np.float64)
    return float(np.mean(np.diff(x, axis=-1) ** 2) + np.mean(np.diff(x, axis=-2) ** 2))


def detail_kept(root: Path, oversample: int) -> float:
    """Detail of augmented lfpw/trainset faces over that of their evaluation crops."""
    faces = load_300w(root, ["lfpw/trainset"])
    crops = ContextCrops(faces, INPUT_SIZE, CROP_SCALE, CONTEXT_SCALE, oversample)
    augment = BatchAugmentation(
        INPUT_SIZE, crops.context_size, IBUG68.flip_array(), oversample=oversample,
        brightness=0, contrast=0, saturation=0, hue=0, blur_prob=0, occlusion_prob=0,
    )  # fmt: skip
    count = len(crops)
    images, _, _ = augment(
        torch.from_numpy(crops.images).permute(0, 3, 1, 2),
        torch.from_numpy(crops.landmarks),
        torch.ones(count, IBUG68.num_points),
        sample_keys(0, 0, torch.arange(count), torch.device("cpu")),
    )
    return detail(images.numpy()) / detail(crops.centre_images.transpose(0, 3, 1, 2))


def nme_on_resampled_test_crops(root: Path, ckpt: Path) -> dict[float, float]:
    """Shift (pixels) → the model's mean inter-ocular NME (%) on lfpw/testset crops resampled
    with that sub-pixel shift (0: the crops as evaluated, bit for bit)."""
    module, _ = load_landmark_module(ckpt)
    crops = ContextCrops(load_300w(root, ["lfpw/testset"]), INPUT_SIZE, CROP_SCALE, CONTEXT_SCALE)
    offset = (crops.context_size - INPUT_SIZE) // 2
    images = torch.from_numpy(crops.images).permute(0, 3, 1, 2)
    landmarks = torch.from_numpy(crops.landmarks).double()
    results = {}
    for shift in SHIFTS:
        matrix = torch.tensor([[1.0, 0.0, shift - offset], [0.0, 1.0, shift - offset]])
        matrices = matrix.double().expand(len(images), 2, 3)
        resampled = warp_images(images, matrices, INPUT_SIZE).round().to(torch.uint8)
        truth = landmarks - offset + shift
        with torch.no_grad():
            pred = module(resampled).double()
        distance = normalising_distance(truth, None, "inter_ocular", "300w")
        results[shift] = 100 * float(per_image_nme(pred, truth, None, distance).mean())
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="a 300-W layout folder")
    parser.add_argument("--ckpt", type=Path, help="a model trained with context_oversample 1")
    parser.add_argument("--oversample", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("data.context_oversample | detail of augmented faces / evaluation crops")
    for oversample in args.oversample:
        print(f"{oversample} | {detail_kept(args.root, oversample):.3f}")
    if args.ckpt is not None:
        print(f"\n{args.ckpt}: lfpw/testset NME inter-ocular % on crops resampled once more")
        for shift, nme in nme_on_resampled_test_crops(args.root, args.ckpt).items():
            label = "as evaluated" if shift == 0 else f"shifted {shift} px"
            print(f"{label} | {nme:.3f}")


if __name__ == "__main__":
    main()
