"""Landmark regression on a timm backbone (ResNet-50 as in the paper): pooled features → FC(2L)."""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import nn


def _key(name: str) -> str:
    """A state-dict key with ``_`` and ``.`` made equal: timm's ``features_only`` wrappers
    flatten ``stem.0`` to ``stem_0``, so a classifier's weights file is matched this way."""
    return name.replace("_", ".")


def load_backbone_weights(backbone: nn.Module, path: str | Path) -> None:
    """Load a local state dict (``.pth``/``.pt``/``.bin`` or ``.safetensors``) into ``backbone``.

    The file may hold the whole timm model: classifier weights (keys the backbone lacks, e.g.
    ``fc.*``) are ignored, and keys match a ``features_only`` backbone too (see :func:`_key`);
    every backbone tensor must be present with the right shape.

    Raises:
        FileNotFoundError: naming ``model.pretrained_path`` when the file does not exist.
        ValueError: naming the file when its weights do not fit the backbone.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"model.pretrained_path: weights file not found: {path} (resolved: {path.resolve()}); "
            "pretrained weights are only read from local files"
        )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
    by_key = {_key(k): v for k, v in state.items()}
    own = backbone.state_dict()
    missing = [k for k in own if _key(k) not in by_key]
    wrong = [k for k in own if _key(k) in by_key and by_key[_key(k)].shape != own[k].shape]
    if missing or wrong:
        raise ValueError(
            f"model.pretrained_path: {path} does not fit the backbone: "
            f"{len(missing)} missing tensors (e.g. {missing[:3]}), "
            f"{len(wrong)} of the wrong shape (e.g. {wrong[:3]})"
        )
    backbone.load_state_dict({k: by_key[_key(k)] for k in own})


def create_backbone(name: str, pretrained: bool, pretrained_path: str | None) -> nn.Module:
    """A timm model without classifier (``num_classes=0``: pooled ``(B, C)`` features).

    Args:
        name: timm model name (``model.backbone``), e.g. ``"resnet50"``.
        pretrained: take timm's ImageNet weights from the local Hugging Face cache only
            (``model.pretrained``; nothing is downloaded, see :func:`cached_imagenet_weights`).
        pretrained_path: a local weights file instead (``model.pretrained_path``).
    """
    if not timm.is_model(name):
        raise ValueError(
            f"model.backbone: unknown timm model {name!r} (see timm.list_models(), "
            f"e.g. resnet18, resnet50, efficientnet_b0, convnext_tiny)"
        )
    if pretrained and pretrained_path:
        raise ValueError("model.pretrained and model.pretrained_path: set one or the other")
    backbone = timm.create_model(name, pretrained=False, num_classes=0)
    if pretrained:
        pretrained_path = str(cached_imagenet_weights(name))
    if pretrained_path:
        load_backbone_weights(backbone, pretrained_path)
    return backbone


def cached_imagenet_weights(name: str) -> Path:
    """The local Hugging Face cache's copy of timm's default ImageNet weights for ``name``.

    Nothing is downloaded: fetch the weights once elsewhere (e.g. ``timm.create_model(name,
    pretrained=True)`` on a machine with a network, then copy ``~/.cache/huggingface``), or
    use ``model.pretrained_path``.

    Raises:
        FileNotFoundError: naming ``model.pretrained`` when there is no local copy.
    """
    from huggingface_hub import try_to_load_from_cache
    from timm.models import get_pretrained_cfg

    config = get_pretrained_cfg(name)
    repo = getattr(config, "hf_hub_id", None)
    for filename in ("model.safetensors", "pytorch_model.bin"):
        found = try_to_load_from_cache(repo, filename) if repo else None
        if isinstance(found, str):
            return Path(found)
    raise FileNotFoundError(
        f"model.pretrained=true: no local copy of timm's ImageNet weights for {name!r} "
        f"(Hugging Face repo {repo!r}) in the Hugging Face cache; nothing is downloaded. "
        "Copy the weights into the cache or set model.pretrained_path to a local file."
    )


class BackboneRegressor(nn.Module):
    """A timm backbone, global average pooling, dropout and one ``FC(C → 2L)`` output layer.

    The output convention is :class:`~wingface.models.cnn.LandmarkCNN`'s: the FC layer predicts
    offsets in units of the input size from the input centre and starts at zero, so every
    landmark starts at the centre of the crop.

    Args:
        num_points: landmarks ``L``.
        input_size: side of the square input in pixels (``model.input_size``).
        backbone: timm model name (``model.backbone``).
        pretrained: ImageNet weights from the local timm/Hugging Face cache only.
        pretrained_path: or a local weights file for the backbone.
        dropout: dropout before the output layer.

    Shapes:
        input ``(B, 3, S, S)`` normalised float, output ``(B, L, 2)`` input pixels.
    """

    def __init__(
        self,
        num_points: int,
        input_size: int,
        backbone: str = "resnet50",
        pretrained: bool = False,
        pretrained_path: str | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"model.dropout must be in [0, 1), got {dropout}")
        self.num_points = num_points
        self.input_size = input_size
        self.backbone = create_backbone(backbone, pretrained, pretrained_path)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(self.backbone.num_features, 2 * num_points)
        nn.init.zeros_(self.output.weight)
        nn.init.zeros_(self.output.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Map ``(B, 3, S, S)`` images to ``(B, L, 2)`` landmark pixels."""
        offsets = self.output(self.dropout(self.backbone(images)))
        return (offsets.view(-1, self.num_points, 2) + 0.5) * self.input_size - 0.5
