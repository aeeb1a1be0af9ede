"""Tests for the heatmap path: the Adaptive Wing loss, the heatmap regressor and its training."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
import timm
import torch
from hydra.utils import instantiate

from wingface.losses import AdaptiveWingLoss, WingLoss, gaussian_heatmaps
from wingface.models.cnn import LandmarkCNN
from wingface.models.heatmap import HeatmapRegressor, refine_peaks
from wingface.module import LandmarkModule
from wingface.pipeline import build_module, train


def awing_closed_form(
    d: float,
    y: float,
    omega: float = 14.0,
    theta: float = 0.5,
    epsilon: float = 1.0,
    alpha: float = 2.1,
) -> float:
    """The paper's per-pixel formula, in plain floats."""
    p = alpha - y
    if d < theta:
        return omega * math.log(1 + (d / epsilon) ** p)
    t = (theta / epsilon) ** p
    a = omega * (1 / (1 + t)) * p * (theta / epsilon) ** (p - 1) / epsilon
    c = theta * a - omega * math.log(1 + t)
    return a * d - c


def elementwise(loss: AdaptiveWingLoss, pred: float, target: float) -> float:
    """The loss's per-pixel value at one float64 pixel."""
    p = torch.tensor([pred], dtype=torch.float64)
    t = torch.tensor([target], dtype=torch.float64)
    return loss.elementwise(p, t).item()


def slope(loss: AdaptiveWingLoss, pred: float, target: float) -> float:
    """Autograd derivative of the per-pixel loss with respect to the prediction."""
    p = torch.tensor([pred], dtype=torch.float64, requires_grad=True)
    loss.elementwise(p, torch.tensor([target], dtype=torch.float64)).sum().backward()
    assert p.grad is not None
    return p.grad.item()


# --------------------------------------------------------------------------- AWing values

PAPER_REFERENCE = [
    (0.0, 0.1, 0.110767),
    (0.0, 0.3, 1.074747),
    (0.0, 0.5, 2.935235),
    (0.0, 0.8, 6.271662),
    (1.0, 0.1, 1.070100),
    (1.0, 0.5, 5.360458),
    (1.0, 0.8, 8.299813),
]


@pytest.mark.parametrize(("y", "d", "expected"), PAPER_REFERENCE)
def test_awing_matches_the_reference_values(y: float, d: float, expected: float) -> None:
    loss = AdaptiveWingLoss(input_size=128)
    assert elementwise(loss, y + d, y) == pytest.approx(expected, abs=1e-6)
    assert elementwise(loss, y - d, y) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"omega": 10.0, "theta": 0.3, "epsilon": 2.0, "alpha": 2.5},
        {"omega": 5.0, "theta": 0.8, "epsilon": 0.5, "alpha": 2.0},
    ],
)
@pytest.mark.parametrize("y", [0.0, 0.2, 0.7, 1.0])
@pytest.mark.parametrize("d", [0.0, 0.05, 0.25, 0.49, 0.6, 1.0, 3.0])
def test_awing_matches_the_closed_form_on_both_branches(
    params: dict[str, float], y: float, d: float
) -> None:
    loss = AdaptiveWingLoss(input_size=128, **params)
    expected = awing_closed_form(d, y, **params)
    assert elementwise(loss, y + d, y) == pytest.approx(expected, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("params", [{}, {"omega": 10.0, "theta": 0.3, "epsilon": 2.0}])
@pytest.mark.parametrize("y", [0.0, 0.3, 1.0])
def test_awing_value_and_slope_are_continuous_at_theta(params: dict[str, float], y: float) -> None:
    # epsilon != omega catches the ported bug that divides A by omega instead of epsilon
    loss = AdaptiveWingLoss(input_size=128, **params)
    theta, h = loss.theta, 1e-7
    assert elementwise(loss, y + theta - h, y) == pytest.approx(
        elementwise(loss, y + theta + h, y), abs=1e-5
    )
    assert slope(loss, y + theta - h, y) == pytest.approx(slope(loss, y + theta + h, y), rel=1e-5)


@pytest.mark.parametrize("y", [0.0, 0.4, 1.0])
def test_awing_gradient_is_odd_in_the_error_and_zero_at_zero(y: float) -> None:
    loss = AdaptiveWingLoss(input_size=128)
    assert slope(loss, y, y) == 0.0
    for d in (1e-3, 0.1, 0.3, 0.5, 0.7, 2.0):
        up, down = slope(loss, y + d, y), slope(loss, y - d, y)
        assert up > 0
        assert up == pytest.approx(-down, rel=1e-12)
    # numerical derivative agrees with autograd on both branches
    for d in (0.2, 0.9):
        h = 1e-6
        numeric = (elementwise(loss, y + d + h, y) - elementwise(loss, y + d - h, y)) / (2 * h)
        assert slope(loss, y + d, y) == pytest.approx(numeric, rel=1e-5)


def test_awing_penalises_foreground_more_than_background_for_small_errors() -> None:
    loss = AdaptiveWingLoss(input_size=128)
    d = 0.1
    assert elementwise(loss, 1 - d, 1.0) > 5 * elementwise(loss, d, 0.0)


# --------------------------------------------------------------------------- targets and weights


def test_rendered_target_peaks_at_the_sub_pixel_landmark() -> None:
    loss = AdaptiveWingLoss(input_size=128, sigma=1.5)
    landmarks = torch.tensor([[[37.3, 81.9], [64.0, 8.0]]], dtype=torch.float64)
    target = loss.render(landmarks, 32, 32)  # stride 4
    assert target.shape == (1, 2, 32, 32)
    x, y = 37.3 / 4, 81.9 / 4
    # the value at a pixel centre is the Gaussian of its distance to the landmark
    expected = math.exp(-((9 - x) ** 2 + (20 - y) ** 2) / (2 * 1.5**2))
    assert target[0, 0, 20, 9].item() == pytest.approx(expected, rel=1e-12)
    # the centroid (the Gaussian lies well inside the grid) is the landmark
    rows, cols = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    mass = target[0, 0]
    centroid = ((mass * cols).sum() / mass.sum(), (mass * rows).sum() / mass.sum())
    assert centroid[0].item() == pytest.approx(x, abs=1e-6)
    assert centroid[1].item() == pytest.approx(y, abs=1e-6)
    # a landmark on a heatmap pixel centre gives exactly 1 there
    assert target[0, 1, 2, 16].item() == 1.0
    assert target[0, 1].max().item() == 1.0


def test_weight_map_is_the_dilated_foreground_mask() -> None:
    target = torch.zeros(1, 1, 7, 7)
    target[0, 0, 3, 3] = 0.5
    target[0, 0, 0, 0] = 0.15  # below the threshold
    w = AdaptiveWingLoss(input_size=28).weight_map(target)
    expected = torch.ones(7, 7)
    expected[2:5, 2:5] = 11.0
    assert torch.equal(w[0, 0], expected)
    undilated = AdaptiveWingLoss(input_size=28, mask_dilation=1).weight_map(target)
    assert undilated[0, 0].sum().item() == 49 + 10
    wide = AdaptiveWingLoss(input_size=28, mask_dilation=5, mask_weight=2.0, mask_threshold=0.1)
    # a 5x5 block and a clipped 3x3 one in the corner, overlapping on 2x2 pixels
    assert wide.weight_map(target)[0, 0].sum().item() == 49 + 2 * (25 + 9 - 4)
    flat = AdaptiveWingLoss(input_size=28, mask_weight=0.0).weight_map(target)
    assert torch.equal(flat, torch.ones_like(target))


def test_forward_is_the_weighted_mean_over_pixels_then_points() -> None:
    torch.manual_seed(0)
    loss = AdaptiveWingLoss(input_size=64)
    pred = torch.rand(2, 3, 16, 16, dtype=torch.float64)
    landmarks = torch.rand(2, 3, 2, dtype=torch.float64) * 63
    target = loss.render(landmarks, 16, 16)
    per_point = (loss.weight_map(target) * loss.elementwise(pred, target)).mean(dim=(-2, -1))
    assert loss(pred, landmarks).item() == pytest.approx(per_point.mean().item(), rel=1e-12)
    weight = torch.tensor([[1.0, 0.0, 1.0], [0.5, 1.0, 0.0]], dtype=torch.float64)
    expected = (per_point * weight).sum() / 6  # not divided by the visible count
    assert loss(pred, landmarks, weight).item() == pytest.approx(expected.item(), rel=1e-12)


def test_weight_zero_ignores_a_point_even_with_nan_coordinates() -> None:
    torch.manual_seed(1)
    loss = AdaptiveWingLoss(input_size=64)
    pred = torch.rand(1, 2, 16, 16, requires_grad=True)
    landmarks = torch.tensor([[[20.0, 30.0], [float("nan"), float("nan")]]])
    weight = torch.tensor([[1.0, 0.0]])
    value = loss(pred, landmarks, weight)
    value.backward()
    assert torch.isfinite(value)
    assert pred.grad is not None and torch.isfinite(pred.grad).all()
    assert pred.grad[0, 1].abs().sum().item() == 0.0
    assert pred.grad[0, 0].abs().sum().item() > 0.0
    alone = loss(pred[:, :1].detach(), landmarks[:, :1], weight[:, :1])
    assert value.item() == pytest.approx(alone.item() / 2, rel=1e-6)


def test_perfect_prediction_costs_nothing_and_errors_cost_more() -> None:
    loss = AdaptiveWingLoss(input_size=128)
    landmarks = torch.tensor([[[40.5, 70.25], [90.0, 33.3]]])
    target = loss.render(landmarks, 32, 32)
    assert loss(target, landmarks).item() == pytest.approx(0.0, abs=1e-6)
    shifted = loss.render(landmarks + 2.0, 32, 32)
    assert loss(shifted, landmarks).item() > 0.01


def test_loss_runs_in_float32_under_autocast() -> None:
    loss = AdaptiveWingLoss(input_size=64)
    pred = torch.rand(2, 3, 16, 16).to(torch.bfloat16)
    landmarks = torch.rand(2, 3, 2) * 63
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = loss(pred, landmarks, torch.ones(2, 3))
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(loss(pred.float(), landmarks).item(), rel=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"omega": -1}, "loss.omega must be > 0, got -1"),
        ({"theta": 0}, "loss.theta must be > 0"),
        ({"epsilon": "x"}, "loss.epsilon must be a number"),
        ({"alpha": 1.5}, "loss.alpha must be >= 2"),
        ({"sigma": 0}, "loss.sigma must be > 0"),
        ({"mask_threshold": 1.0}, r"loss.mask_threshold must be in \[0, 1\)"),
        ({"mask_weight": -2}, "loss.mask_weight must be >= 0"),
        ({"mask_dilation": 2}, "loss.mask_dilation must be an odd integer"),
        ({"input_size": 0}, "loss.input_size must be a positive integer"),
    ],
)
def test_bad_parameters_name_their_config_key(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AdaptiveWingLoss(**{"input_size": 128, **kwargs})


def test_shape_errors() -> None:
    loss = AdaptiveWingLoss(input_size=64)
    with pytest.raises(ValueError, match="pred_heatmaps must have shape"):
        loss(torch.zeros(2, 3, 16), torch.zeros(2, 3, 2))
    with pytest.raises(ValueError, match="target_landmarks must have shape"):
        loss(torch.zeros(2, 3, 16, 16), torch.zeros(2, 4, 2))
    with pytest.raises(ValueError, match="weight must have shape"):
        loss(torch.zeros(2, 3, 16, 16), torch.zeros(2, 3, 2), torch.ones(3, 2))


def test_only_the_heatmap_loss_needs_heatmaps() -> None:
    assert AdaptiveWingLoss.needs_heatmaps is True
    assert not getattr(WingLoss(), "needs_heatmaps", False)


# --------------------------------------------------------------------------- decoding


def test_decode_recovers_sub_pixel_gaussian_peaks() -> None:
    gen = torch.Generator().manual_seed(0)
    points = 2 + torch.rand(4, 17, 2, generator=gen, dtype=torch.float64) * 27  # heatmap px
    for sigma in (1.0, 1.5, 2.5):
        found = refine_peaks(gaussian_heatmaps(points, 32, 32, sigma))
        error = (found - points).norm(dim=-1).max().item()
        assert error < 0.05, f"sigma {sigma}: {error:.4f} heatmap px"
    net = HeatmapRegressor(num_points=17, input_size=128)
    heat = gaussian_heatmaps(points, 32, 32, 1.5).float()
    decoded = net.decode(heat)  # input pixels: 4 per heatmap pixel
    assert decoded.shape == (4, 17, 2)
    assert ((decoded / 4 - points).norm(dim=-1).max().item()) < 0.05
    # loss and decoder share the convention: rendering from input pixels and decoding round-trips
    landmarks = points.float() * 4
    rendered = AdaptiveWingLoss(input_size=128).render(landmarks, 32, 32)
    assert (net.decode(rendered) - landmarks).abs().max().item() < 0.05 * 4


def test_decode_is_finite_and_on_the_grid_for_any_heatmap() -> None:
    torch.manual_seed(0)
    heat = torch.randn(2, 5, 8, 8)
    heat[0, 0] = 0.0  # flat
    heat[0, 1] = -1.0  # all negative
    heat[0, 2] = 0.0
    heat[0, 2, 0, 7] = 1.0  # peak on the border
    peaks = refine_peaks(heat)
    assert torch.isfinite(peaks).all()
    assert (peaks >= 0).all() and (peaks <= 7).all()
    assert peaks[0, 2].tolist() == [7.0, 0.0]
    # integer argmax, offsets within half a pixel of it
    flat = heat.reshape(2, 5, -1).argmax(-1)
    grid = torch.stack((flat % 8, flat // 8), dim=-1).float()
    assert (peaks - grid).abs().max().item() <= 0.5


# --------------------------------------------------------------------------- the model


def test_heatmap_regressor_shapes_and_forward() -> None:
    net = HeatmapRegressor(num_points=68, input_size=128).eval()
    images = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        heat = net.heatmaps(images)
        coords = net(images)
    assert heat.shape == (2, 68, 32, 32)
    assert coords.shape == (2, 68, 2)
    assert torch.equal(coords, net.decode(heat))
    assert (coords >= 0).all() and (coords <= 128).all()
    assert net.num_points == 68 and net.input_size == 128
    coarse = HeatmapRegressor(num_points=5, input_size=64, heatmap_stride=8, deconv_channels=32)
    assert coarse.heatmaps(torch.randn(1, 3, 64, 64)).shape == (1, 5, 8, 8)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"heatmap_stride": 3}, "model.heatmap_stride must be a power of 2"),
        ({"heatmap_stride": 64}, "model.heatmap_stride must be a power of 2"),
        ({"input_size": 100}, "model.input_size=100 must be a positive multiple"),
        ({"backbone": "no_such_net"}, "model.backbone: unknown timm model"),
        ({"deconv_channels": 0}, "model.deconv_channels must be > 0"),
    ],
)
def test_bad_model_parameters_name_their_config_key(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        HeatmapRegressor(**{"num_points": 5, "input_size": 128, **kwargs})


def test_pretrained_weights_only_from_a_local_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="model.pretrained_path"):
        HeatmapRegressor(5, 128, pretrained_path=str(tmp_path / "missing.pth"))
    classifier = timm.create_model("resnet18", pretrained=False)  # with its fc layer
    path = tmp_path / "resnet18.pth"
    torch.save(classifier.state_dict(), path)
    net = HeatmapRegressor(5, 128, pretrained_path=str(path))
    assert torch.equal(net.backbone.conv1.weight, classifier.conv1.weight)
    assert torch.equal(net.backbone.layer4[1].bn2.running_var, classifier.layer4[1].bn2.running_var)
    torch.save({"conv1.weight": classifier.conv1.weight}, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match="model.pretrained_path: .* does not fit"):
        HeatmapRegressor(5, 128, pretrained_path=str(tmp_path / "partial.pth"))


# --------------------------------------------------------------------------- wiring


def test_configs_compose_and_every_key_is_read(compose_train) -> None:
    cfg = compose_train("model=heatmap", "loss=awing")
    loss = instantiate(cfg.loss)
    net = instantiate(cfg.model)
    assert isinstance(loss, AdaptiveWingLoss) and isinstance(net, HeatmapRegressor)
    assert loss.input_size == net.input_size == cfg.data.input_size == 128
    assert net.num_points == cfg.data.num_points
    for key in cfg.loss:
        if key != "_target_":
            assert getattr(loss, key) == cfg.loss[key], key
    assert set(cfg.model) - {"_target_"} <= set(HeatmapRegressor.__init__.__code__.co_varnames)


def _module(net: torch.nn.Module, loss: torch.nn.Module) -> LandmarkModule:
    return LandmarkModule(net=net, loss=loss, optimizer=torch.optim.SGD, scheduler=None)


def test_step_trains_the_heatmaps_and_reports_decoded_coordinates() -> None:
    torch.manual_seed(0)
    net = HeatmapRegressor(num_points=5, input_size=64, deconv_channels=16)
    loss = AdaptiveWingLoss(input_size=64)
    module = _module(net, loss)
    batch = {
        "image": torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8),
        "landmarks": torch.rand(2, 5, 2) * 63,
        "visibility": torch.ones(2, 5),
    }
    pred, value = module.prediction_and_loss(batch)
    assert pred.shape == (2, 5, 2)
    heat = net.heatmaps(module._normalise(batch["image"]))
    assert torch.allclose(pred, net.decode(heat))
    assert value.item() == pytest.approx(loss(heat, batch["landmarks"]).item(), rel=1e-5)
    value.backward()
    assert net.output.weight.grad is not None and net.output.weight.grad.abs().sum() > 0
    assert torch.equal(module(batch["image"]), pred)


def test_heatmap_loss_with_a_coordinate_model_names_both() -> None:
    net = LandmarkCNN(num_points=5, input_size=64, channels=[8, 8])
    with pytest.raises(ValueError, match=r"loss \(AdaptiveWingLoss\).*model \(LandmarkCNN\)"):
        _module(net, AdaptiveWingLoss(input_size=64))


def test_heatmap_model_with_a_coordinate_loss_names_both(compose_train) -> None:
    """Decoded heatmap peaks carry no gradient: the pairing is refused when the module is
    built, before any data is read."""
    cfg = compose_train("model=heatmap", "model.backbone=resnet18", "loss=wing", "logger=none")
    with pytest.raises(
        ValueError, match=r"model \(HeatmapRegressor\) predicts heatmaps.*loss=awing"
    ):
        build_module(cfg)


@pytest.mark.slow
def test_one_epoch_of_heatmap_training_through_the_entry_point(compose_train) -> None:
    cfg = compose_train(
        "model=heatmap",
        "model.backbone=resnet18",
        "loss=awing",
        "logger=none",
        "trainer.max_epochs=1",
        "trainer.accelerator=cpu",
        "data.source.num_train=64",
        "data.source.num_val=16",
        "data.source.num_test=16",
        "data.num_workers=0",
        "data.batch_size=16",
        "data.eval_batch_size=16",
    )
    start = time.perf_counter()
    metrics = train(cfg)
    elapsed = time.perf_counter() - start
    assert math.isfinite(metrics["test/nme"]) and metrics["test/nme"] > 0
    assert math.isfinite(metrics["val/nme"])
    print(
        f"one epoch model=heatmap loss=awing: test/nme {metrics['test/nme']:.4f}, {elapsed:.1f} s"
    )
