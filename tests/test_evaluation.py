"""Evaluation protocols: per-subset summaries against hand-computed values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from wingface.evaluation import EvaluationProtocol
from wingface.plots import plot_ced, plot_nme_per_pose


def test_summary_matches_hand_computed_values() -> None:
    protocol = EvaluationProtocol(["inter_ocular", "inter_pupil"], [0.08, 0.10])
    per_image = {
        "inter_ocular": np.array([0.02, 0.05, 0.09, 0.20]),
        "inter_pupil": np.array([0.03, 0.06, 0.12, 0.30]),
    }
    out = protocol.summarise(per_image, "test/")
    assert out["test/nme"] == pytest.approx(0.09)
    assert out["test/nme_inter_pupil"] == pytest.approx(0.1275)
    assert out["test/fr_0.08"] == pytest.approx(0.5)  # 0.09 and 0.20
    assert out["test/fr_0.10"] == pytest.approx(0.25)  # 0.20 only
    # AUC@0.08 = mean(0.06, 0.03, 0, 0) / 0.08; AUC@0.10 = mean(0.08, 0.05, 0.01, 0) / 0.10
    assert out["test/auc_0.08"] == pytest.approx(0.09 / 4 / 0.08)
    assert out["test/auc_0.10"] == pytest.approx(0.14 / 4 / 0.10)
    assert set(out) == {
        "test/nme",
        "test/nme_inter_pupil",
        "test/fr_0.08",
        "test/fr_0.10",
        "test/auc_0.08",
        "test/auc_0.10",
    }


def test_subsets_need_every_flag_they_name() -> None:
    protocol = EvaluationProtocol(
        subsets={"common": ["helen/testset", "lfpw/testset"], "lfpw": ["lfpw/testset"]}
    )
    attributes = {"lfpw/testset": np.array([True, False, True])}
    masks = protocol.subset_masks(attributes, 3)
    assert list(masks) == ["lfpw"]
    np.testing.assert_array_equal(masks["lfpw"], [True, False, True])
    attributes["helen/testset"] = np.array([False, True, False])
    masks = protocol.subset_masks(attributes, 3)
    np.testing.assert_array_equal(masks["common"], [True, True, True])


def test_invalid_protocols_name_the_key() -> None:
    with pytest.raises(ValueError, match="data.protocol.normalisations"):
        EvaluationProtocol(["pupil"])
    with pytest.raises(ValueError, match="data.protocol.thresholds"):
        EvaluationProtocol(thresholds=[0.0])


def test_ced_plot_is_written(tmp_path) -> None:
    path = plot_ced({"all": np.array([0.01, 0.04, 0.2])}, 0.10, tmp_path / "ced.png", "t")
    assert path.stat().st_size > 1000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_pose_subsets_must_be_subsets() -> None:
    with pytest.raises(ValueError, match=r"data\.protocol\.pose_subsets"):
        EvaluationProtocol(subsets={"a": ["a"]}, pose_subsets=["a", "b"])


def test_pose_rows_and_plot(tmp_path: Path) -> None:
    protocol = EvaluationProtocol(
        normalisations=["inter_ocular", "box"],
        thresholds=[0.1],
        subsets={"frontal": ["f"], "profile": ["p"], "other": ["o"]},
        pose_subsets=["frontal", "profile"],
    )
    values = {}
    values.update(
        protocol.summarise(
            {"inter_ocular": np.array([0.02, 0.04]), "box": np.array([0.01, 0.02])}, "test/frontal/"
        )
    )
    values.update(
        protocol.summarise(
            {"inter_ocular": np.array([0.2]), "box": np.array([0.05])}, "test/profile/"
        )
    )
    columns, rows = protocol.pose_rows(values, {"frontal": 2, "profile": 1, "other": 5})
    assert columns == ["pose", "faces", "nme %", "nme_box %", "fr_0.10 %"]
    np.testing.assert_allclose(np.array([r[2:] for r in rows]), [[3, 1.5, 0], [20, 5, 100]])
    assert [r[:2] for r in rows] == [["frontal", 2], ["profile", 1]]
    path = plot_nme_per_pose(columns, rows, tmp_path / "pose.png", "title")
    assert path.stat().st_size > 1000
    # a pose subset the test split does not have is left out of the table
    _, partial = protocol.pose_rows(
        {k: v for k, v in values.items() if "profile" not in k}, {"frontal": 2}
    )
    assert [r[0] for r in partial] == ["frontal"]
