"""timm backbone regressors: shapes, start at the centre, local-only pretrained weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from wingface.models.backbone import BackboneRegressor, create_backbone


def test_shapes_and_initial_prediction_is_the_crop_centre() -> None:
    net = BackboneRegressor(68, 64, backbone="resnet18").eval()
    with torch.no_grad():
        out = net(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 68, 2)
    torch.testing.assert_close(out, torch.full_like(out, 31.5))  # zero output layer
    assert net.backbone.num_features == 512


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_pretrained_weights_load_from_a_local_file(tmp_path: Path, suffix: str) -> None:
    source = timm.create_model("resnet18", pretrained=False, num_classes=1000)  # with its fc
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    path = tmp_path / f"resnet18{suffix}"
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    backbone = create_backbone("resnet18", pretrained=False, pretrained_path=str(path))
    for key, value in backbone.state_dict().items():
        torch.testing.assert_close(value, state[key])  # classifier weights ignored


def test_missing_or_unfit_weights_say_so(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"model\.pretrained_path: .*not found"):
        create_backbone("resnet18", False, str(tmp_path / "nowhere.pth"))
    other = tmp_path / "mobilenet.pth"
    torch.save(timm.create_model("mobilenetv3_small_050", num_classes=0).state_dict(), other)
    with pytest.raises(ValueError, match=r"model\.pretrained_path: .*does not fit"):
        create_backbone("resnet18", False, str(other))


def test_pretrained_true_reads_only_the_local_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match=r"model\.pretrained=true: no local copy"):
        create_backbone("resnet18", pretrained=True, pretrained_path=None)


def test_bad_settings_name_the_config_key() -> None:
    with pytest.raises(ValueError, match=r"model\.backbone: unknown timm model"):
        BackboneRegressor(68, 64, backbone="resnet_9000")
    with pytest.raises(ValueError, match=r"model\.pretrained and model\.pretrained_path"):
        create_backbone("resnet18", True, "weights.pth")
    with pytest.raises(ValueError, match=r"model\.dropout"):
        BackboneRegressor(68, 64, backbone="resnet18", dropout=1.0)
