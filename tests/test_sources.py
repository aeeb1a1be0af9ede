"""Dataset sources: the 300-W folder source, validation hold-out and the data root check."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from shared_data import REAL_300W, needs_real_300w
from wingface.data.datamodule import FaceDataModule
from wingface.data.formats.face300w import load_300w, write_pts
from wingface.data.sources import TrainTestSource, split_off_validation
from wingface.evaluation import EvaluationProtocol
from wingface.metrics import normalising_distance, per_image_nme


def make_300w_folder(root: Path, folder: str, count: int, seed: int) -> None:
    """Write ``count`` faces (random image + plausible 68 points) into ``root/folder``."""
    rng = np.random.default_rng(seed)
    (root / folder).mkdir(parents=True)
    for i in range(count):
        image = rng.integers(0, 255, size=(90, 80, 3), dtype=np.uint8)
        points = rng.uniform(15, 65, size=(68, 2))
        cv2.imwrite(str(root / folder / f"face_{i:03d}.jpg"), image)
        write_pts(root / folder / f"face_{i:03d}.pts", points)


def folders_source(
    root: Path, train: list[str], test: list[str], val_fraction: float = 0.05, seed: int = 0
) -> TrainTestSource:
    """A 300-W source over ``root`` as ``conf/data/300w.yaml`` builds it."""
    return TrainTestSource(
        partial(load_300w, root, folders=train),
        partial(load_300w, root, folders=test),
        val_fraction,
        seed,
    )


@pytest.fixture
def tiny_300w(tmp_path: Path) -> Path:
    make_300w_folder(tmp_path, "afw", 12, 0)
    make_300w_folder(tmp_path, "lfpw/trainset", 8, 1)
    make_300w_folder(tmp_path, "lfpw/testset", 5, 2)
    return tmp_path


def test_validation_split_is_seeded_and_disjoint(tiny_300w: Path) -> None:
    source = folders_source(tiny_300w, ["afw", "lfpw/trainset"], ["lfpw/testset"], 0.25, 3)
    train, val = source.load("train"), source.load("val")
    assert (len(train), len(val)) == (15, 5)
    assert not set(train.names) & set(val.names)
    again = folders_source(tiny_300w, ["afw", "lfpw/trainset"], ["lfpw/testset"], 0.25, 3)
    assert again.load("val").names == val.names
    test = source.load("test")
    assert len(test) == 5 and test.attributes["lfpw/testset"].all()


def test_split_off_validation_rejects_bad_fractions(tiny_300w: Path) -> None:
    faces = load_300w(tiny_300w, ["afw"])
    with pytest.raises(ValueError, match="val_fraction"):
        split_off_validation(faces, 1.0, 0)


def test_missing_data_root_is_reported_before_loading(tmp_path: Path) -> None:
    source = folders_source(tmp_path / "nowhere", ["afw"], ["ibug"])
    with pytest.raises(FileNotFoundError, match="data.root"):
        FaceDataModule(source, str(tmp_path / "nowhere"), "300w", 68, 64)


def test_datamodule_reports_test_subsets_of_present_folders(tiny_300w: Path) -> None:
    source = folders_source(tiny_300w, ["afw"], ["lfpw/testset"], 0.2)
    protocol = EvaluationProtocol(
        subsets={"common": ["helen/testset", "lfpw/testset"], "lfpw": ["lfpw/testset"]}
    )
    datamodule = FaceDataModule(source, str(tiny_300w), "300w", 68, 64, num_workers=0)
    datamodule.setup("test")
    masks = protocol.subset_masks(datamodule.test_attributes(), 5)
    assert list(masks) == ["lfpw"] and masks["lfpw"].all()
    batch = next(iter(datamodule.test_dataloader()))
    assert batch["image"].shape == (5, 3, 64, 64) and batch["image"].dtype == torch.uint8


@needs_real_300w
def test_real_lfpw_mean_shape_baseline_matches_the_reference() -> None:
    """The training mean shape scores 15.75% inter-ocular / 21.76% inter-pupil NME on the 224
    lfpw/testset faces (reference values of the data's README); our crops must reproduce it."""
    source = folders_source(REAL_300W, ["afw", "helen/trainset", "lfpw/trainset"], ["lfpw/testset"])
    datamodule = FaceDataModule(source, str(REAL_300W), "300w", 68, 64, num_workers=0)
    datamodule.setup()  # every split: the test below compares train and test
    assert len(datamodule.crops["train"]) + len(source.load("val")) == 2012
    test = torch.from_numpy(datamodule.crops["test"].centre_landmarks)
    assert len(test) == 224
    mean = datamodule.train_mean_shape().expand_as(test)
    for kind, reference in (("inter_ocular", 0.1575), ("inter_pupil", 0.2176)):
        nme = per_image_nme(mean, test, None, normalising_distance(test, None, kind, "300w"))
        assert float(nme.mean()) == pytest.approx(reference, abs=0.003), kind


def test_yaw_bins_partition_the_faces() -> None:
    from wingface.data.sources import yaw_bin_flags

    poses = np.array([[0, 0, 0], [-29.9, 5, 0], [30, 0, 0], [-75, 0, 0], [90, 0, 0], [-59, 0, 0]])
    flags = yaw_bin_flags(poses.astype(np.float32))
    np.testing.assert_array_equal(flags["yaw_0_30"], [1, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(flags["yaw_30_60"], [0, 0, 1, 0, 0, 1])
    np.testing.assert_array_equal(flags["yaw_60_90"], [0, 0, 0, 1, 1, 0])


def test_testing_alone_reads_no_training_data(tiny_300w: Path) -> None:
    source = folders_source(tiny_300w, ["afw"], ["lfpw/testset"], 0.2)
    datamodule = FaceDataModule(source, str(tiny_300w), "300w", 68, 64, num_workers=0)
    datamodule.setup("test")
    assert set(datamodule.crops) == {"test"}
