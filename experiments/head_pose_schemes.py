"""Head-pose fit per landmark scheme on synthetic faces whose true pose is known.

Each synthetic face (68 points, self-occluded points hidden as an annotator would leave them
out) is converted to every scheme by the template's own correspondences
(:data:`wingface.data.head_pose.TEMPLATE_FROM_300W`: a scheme point is the mean of its 300-W
points, visible when all of them are) and fitted with that scheme's template. This measures
what each scheme's point set leaves of the pose (fewer points, no contour, identity and
expression changes the rigid template does not model); it cannot measure whether a dataset's
annotators place the points where the correspondences say (for AFLW-19 that is measured
against AFLW's own yaw by ``experiments/pdb_aflw.py``).

    python experiments/head_pose_schemes.py            # prints a Markdown table
"""

from __future__ import annotations

import argparse

import numpy as np

from wingface.data.head_pose import TEMPLATE_FROM_300W, face_template, fit_head_pose
from wingface.data.sources import yaw_bin_flags
from wingface.data.synthetic import generate_synthetic_faces
from wingface.landmarks import SCHEMES


def to_scheme(
    landmarks: np.ndarray, visible: np.ndarray, scheme: str
) -> tuple[np.ndarray, np.ndarray]:
    """``(N, 68, 2)`` points and ``(N, 68)`` visibility as the scheme's ``(N, L, 2)`` points
    and ``(N, L)`` visibility, by the template correspondences."""
    if scheme == "300w":
        return landmarks, visible
    groups = TEMPLATE_FROM_300W[scheme]
    points = np.stack([landmarks[:, list(group)].mean(axis=1) for group in groups], axis=1)
    shown = np.stack([visible[:, list(group)].all(axis=1) for group in groups], axis=1)
    return points, shown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=600, help="synthetic faces")
    parser.add_argument("--seed", type=int, default=3, help="synthetic set seed")
    args = parser.parse_args()

    faces = generate_synthetic_faces(args.faces, args.seed, image_size=64)
    true_yaw = faces.poses[:, 0].astype(np.float64)
    visible = faces.visibility & ~faces.occluded
    bands = yaw_bin_flags(faces.poses.astype(np.float64), prefix="yaw")  # true |yaw| bands
    header = " | ".join(
        f"{name[4:].replace('_', '-')} ({flags.sum()})" for name, flags in bands.items()
    )
    print(
        f"{args.faces} synthetic faces (seed {args.seed}); yaw MAE in degrees per true |yaw| band\n"
    )
    print(f"| scheme | points (rigid) | {header} | all | not fitted |")
    print("|---|---|" + "---|" * len(bands) + "---|---|")
    for scheme in SCHEMES:
        template = face_template(scheme)
        points, shown = to_scheme(faces.landmarks.astype(np.float64), visible, scheme)
        pose = fit_head_pose(points, shown, template)
        error = np.abs(pose.angles[:, 0] - true_yaw)
        cells = [
            f"{error[pose.fitted & flags].mean():.2f}" if (pose.fitted & flags).any() else "-"
            for flags in bands.values()
        ]
        print(
            f"| {scheme} | {len(template.points)} ({int(template.rigid.sum())}) | "
            f"{' | '.join(cells)} | {error[pose.fitted].mean():.2f} | {int((~pose.fitted).sum())} |"
        )


if __name__ == "__main__":
    main()
