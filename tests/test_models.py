"""CNN regressors: shapes, the paper's CNN-6 layout and validation of sizes."""

from __future__ import annotations

import pytest
import torch
from timm.layers import BlurPool2d
from torch import nn

from wingface.models.cnn import LandmarkCNN, MaxBlurPool2d


def paper_cnn6() -> LandmarkCNN:
    return LandmarkCNN(68, 64, (32, 64, 128, 256, 512), 1024)


def test_cnn6_matches_the_paper_layout() -> None:
    net = paper_cnn6()
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64, 128, 256, 512]
    assert all(c.kernel_size == (3, 3) for c in convs)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert [(x.in_features, x.out_features) for x in linears] == [(2 * 2 * 512, 1024), (1024, 136)]
    assert sum(isinstance(m, nn.MaxPool2d) for m in net.modules()) == 5


def test_output_is_in_input_pixels_and_starts_at_the_centre() -> None:
    net = paper_cnn6()
    out = net(torch.randn(3, 3, 64, 64))
    assert out.shape == (3, 68, 2)
    # the output layer starts at zero: every point at the input centre, pixel 31.5
    torch.testing.assert_close(out, torch.full_like(out, 31.5))


def test_cnn7_with_batch_norm_runs_at_128_px() -> None:
    net = LandmarkCNN(68, 128, (64, 64, 128, 256, 512, 512), 1024, batch_norm=True)
    assert net(torch.randn(2, 3, 128, 128)).shape == (2, 68, 2)


def test_input_size_must_fit_the_pooling() -> None:
    with pytest.raises(ValueError, match="model.input_size"):
        LandmarkCNN(68, 60, (32, 64, 128, 256, 512))
    with pytest.raises(ValueError, match="model.dropout"):
        LandmarkCNN(68, 64, (32,), dropout=1.5)


def test_gradients_reach_the_first_layer_after_one_step() -> None:
    net = paper_cnn6()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    images, target = torch.randn(4, 3, 64, 64), torch.rand(4, 68, 2) * 64
    for _ in range(2):
        optimizer.zero_grad()
        (net(images) - target).abs().sum().backward()
        optimizer.step()
    assert net.features[0].weight.grad.abs().sum() > 0


def test_blur_pool_keeps_constants_and_removes_the_finest_detail() -> None:
    """Closed form: a constant stays constant, and a checkerboard of a and b (detail at the
    pixel scale, which plain subsampling turns into a or b depending on a one-pixel move)
    becomes (a + b) / 2 everywhere, whichever way it is moved."""
    pool = BlurPool2d(2, filt_size=3, stride=2)
    constant = torch.full((1, 2, 8, 6), 3.0)
    torch.testing.assert_close(pool(constant), torch.full((1, 2, 4, 3), 3.0))
    yy, xx = torch.meshgrid(torch.arange(9), torch.arange(8), indexing="ij")
    board = torch.where((yy + xx) % 2 == 0, 10.0, 2.0).expand(1, 2, 9, 8)
    subsampled = set()
    for moved in (board, board.roll(1, dims=-1), board.roll(1, dims=-2)):
        out = pool(moved)
        assert out.shape == (1, 2, 5, 4)
        torch.testing.assert_close(out, torch.full_like(out, 6.0))
        subsampled |= set(moved[..., ::2, ::2].unique().tolist())
    assert subsampled == {10.0, 2.0}  # plain subsampling: a or b, depending on the move


def test_antialiased_cnn6_has_the_same_weights_and_output_size() -> None:
    """``model.antialias=true``: same parameters (a plain CNN-6's state dict loads), same
    output, each max-pool now stride 1 followed by a blur pool."""
    plain, smooth = paper_cnn6(), LandmarkCNN(68, 64, (32, 64, 128, 256, 512), 1024, antialias=True)
    smooth.load_state_dict(plain.state_dict())
    assert sum(isinstance(m, MaxBlurPool2d) for m in smooth.modules()) == 5
    assert all(m.stride == 1 for m in smooth.modules() if isinstance(m, nn.MaxPool2d))
    assert list(smooth.state_dict()) == list(plain.state_dict())
    assert smooth(torch.randn(2, 3, 64, 64)).shape == (2, 68, 2)
