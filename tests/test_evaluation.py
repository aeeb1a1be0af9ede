"""Evaluation protocols: per-subset summaries against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from wingface.evaluation import EvaluationProtocol, plot_ced


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
