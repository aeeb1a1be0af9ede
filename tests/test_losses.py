"""Tests for the landmark losses in ``wingface.losses``."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

import wingface.losses as losses_module
from wingface.config import CONFIG_DIR
from wingface.losses import (
    LOSSES,
    L1Loss,
    L2Loss,
    LandmarkLoss,
    RectifiedWingLoss,
    SmoothL1Loss,
    SoftWingLoss,
    WingLoss,
)


def _f(loss: LandmarkLoss, x: float) -> float:
    """Loss of a (1, 1, 2) sample whose only nonzero difference is ``x`` (on the y coordinate)."""
    pred = torch.tensor([[[0.0, x]]], dtype=torch.float64)
    return loss(pred, torch.zeros_like(pred)).item()


def _grad(loss: LandmarkLoss, xs: torch.Tensor) -> torch.Tensor:
    """Autograd derivative of ``elementwise`` at float64 points ``xs``."""
    x = xs.clone().to(torch.float64).requires_grad_(True)
    loss.elementwise(x).sum().backward()
    assert x.grad is not None
    return x.grad


# --------------------------------------------------------------------------- reference values

REFERENCE: list[tuple[LandmarkLoss, float, float]] = [
    (WingLoss(), 0.5, 2.231436),
    (WingLoss(), 1.0, 4.054651),
    (WingLoss(), 2.0, 6.931472),
    (WingLoss(), 5.0, 12.527630),
    (WingLoss(), 20.0, 27.917595),
    (RectifiedWingLoss(), 0.1, 0.0),
    (RectifiedWingLoss(), 0.5, 1.397619),
    (RectifiedWingLoss(), 1.0, 3.364722),
    (RectifiedWingLoss(), 5.0, 12.237754),
    (RectifiedWingLoss(), 20.0, 27.749524),
    (SoftWingLoss(), 1.5, 1.5),
    (SoftWingLoss(), 5.0, 17.769147),
    (SoftWingLoss(), 20.0, 44.082683),
    (SmoothL1Loss(), 0.5, 0.125),
    (SmoothL1Loss(), 3.0, 2.5),
    (SmoothL1Loss(beta=2.0), 1.0, 0.25),
    (SmoothL1Loss(beta=2.0), 3.0, 2.0),
    (L1Loss(), 3.0, 3.0),
    (L2Loss(), 3.0, 4.5),
]


@pytest.mark.parametrize("sign", [1.0, -1.0])
@pytest.mark.parametrize(("loss", "x", "expected"), REFERENCE, ids=lambda v: repr(v))
def test_reference_values(loss: LandmarkLoss, x: float, expected: float, sign: float) -> None:
    assert _f(loss, sign * x) == pytest.approx(expected, abs=1e-5)
    # float32 path agrees too
    value = loss.elementwise(torch.tensor([sign * x], dtype=torch.float32)).item()
    assert value == pytest.approx(expected, abs=1e-5)


def test_constants() -> None:
    wing_c, rwing_c, soft_b = WingLoss().C, RectifiedWingLoss().C, SoftWingLoss().B
    assert wing_c == pytest.approx(-7.917595, abs=1e-6)
    assert rwing_c == pytest.approx(-7.749524, abs=1e-6)
    assert soft_b == pytest.approx(2.0 - 20.0 * math.log(5.0), abs=1e-9)
    other_c = WingLoss(w=4.0, eps=1.0).C
    assert other_c == pytest.approx(4.0 - 4.0 * math.log(5.0), abs=1e-9)


def test_zero_error_is_zero() -> None:
    for cls in LOSSES.values():
        assert _f(cls(), 0.0) == 0.0


# --------------------------------------------------------------------------- reduction


def test_reduction_sum_over_coords_mean_over_batch() -> None:
    pred = torch.tensor(
        [
            [[1.0, -2.0], [0.5, 0.0]],
            [[3.0, 4.0], [-1.0, 1.0]],
        ]
    )
    target = torch.zeros_like(pred)
    # L1: face sums 3.5 and 9.0 -> mean 6.25
    assert L1Loss()(pred, target).item() == pytest.approx(6.25)
    # L2: face sums (1 + 4 + 0.25)/2 = 2.625 and (9 + 16 + 1 + 1)/2 = 13.5 -> 8.0625
    assert L2Loss()(pred, target).item() == pytest.approx(8.0625)
    # same differences via a nonzero target
    shifted = target + 7.0
    assert L1Loss()(pred + 7.0, shifted).item() == pytest.approx(6.25)


def test_reduction_not_divided_by_visible_points() -> None:
    pred = torch.ones(1, 4, 2)
    target = torch.zeros(1, 4, 2)
    weight = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    assert L1Loss()(pred, target, weight).item() == pytest.approx(2.0)


def test_weight_masking_and_scaling() -> None:
    pred = torch.tensor([[[1.0, 2.0], [100.0, -50.0]], [[0.0, 3.0], [1.0, 1.0]]])
    target = torch.zeros_like(pred)
    loss = L1Loss()
    # zero weight removes the outlier point of face 0
    mask = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    assert loss(pred, target, mask).item() == pytest.approx((3.0 + 5.0) / 2)
    # weight scales linearly, per landmark
    scale = torch.tensor([[2.0, 0.0], [0.5, 3.0]])
    assert loss(pred, target, scale).item() == pytest.approx((2 * 3.0 + 0.5 * 3.0 + 3 * 2.0) / 2)
    # all-ones weight equals no weight; boolean masks work
    assert loss(pred, target, torch.ones(2, 2)).item() == loss(pred, target).item()
    assert loss(pred, target, mask.bool()).item() == pytest.approx(4.0)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_weight_scaling_every_loss(name: str) -> None:
    torch.manual_seed(0)
    pred = torch.randn(3, 5, 2) * 8
    target = torch.randn(3, 5, 2) * 8
    loss = LOSSES[name]()
    base = loss(pred, target)
    assert loss(pred, target, torch.full((3, 5), 2.5)).item() == pytest.approx(2.5 * base.item())
    zero_first = torch.ones(3, 5)
    zero_first[:, 0] = 0
    moved = pred.clone()
    moved[:, 0] += 1000.0
    assert loss(moved, target, zero_first).item() == pytest.approx(
        loss(pred, target, zero_first).item()
    )


def test_shape_mismatch_raises() -> None:
    loss = WingLoss()
    with pytest.raises(ValueError, match=r"\(2, 3, 2\).*\(2, 4, 2\)"):
        loss(torch.zeros(2, 4, 2), torch.zeros(2, 3, 2))
    with pytest.raises(ValueError, match=r"\(2, 4, 3\)"):
        loss(torch.zeros(2, 4, 3), torch.zeros(2, 4, 3))
    with pytest.raises(ValueError, match=r"\(2, 4\).*\(2, 5\)"):
        loss(torch.zeros(2, 4, 2), torch.zeros(2, 4, 2), torch.ones(2, 5))
    with pytest.raises(ValueError, match=r"\(2, 4, 1\)"):
        loss(torch.zeros(2, 4, 2), torch.zeros(2, 4, 2), torch.ones(2, 4, 1))


# --------------------------------------------------------------------------- continuity

BRANCH_POINTS: list[tuple[LandmarkLoss, float]] = [
    (WingLoss(), 10.0),
    (WingLoss(w=3.0, eps=0.5), 3.0),
    (RectifiedWingLoss(), 0.2),
    (RectifiedWingLoss(), 10.0),
    (RectifiedWingLoss(w=5.0, eps=1.0, r=3.0), 3.0),
    (SoftWingLoss(), 2.0),
    (SoftWingLoss(w1=1.0, w2=5.0, eps=0.1), 1.0),
    (SmoothL1Loss(), 1.0),
    (SmoothL1Loss(beta=0.3), 0.3),
]


@pytest.mark.parametrize("sign", [1.0, -1.0])
@pytest.mark.parametrize(("loss", "at"), BRANCH_POINTS, ids=lambda v: repr(v))
def test_continuity_at_branch_points(loss: LandmarkLoss, at: float, sign: float) -> None:
    delta = 1e-7
    x = torch.tensor([at - delta, at, at + delta], dtype=torch.float64) * sign
    below, exact, above = loss.elementwise(x).tolist()
    assert below == pytest.approx(exact, abs=1e-5)
    assert above == pytest.approx(exact, abs=1e-5)


# --------------------------------------------------------------------------- gradients


def _sample_points(edges: list[float], top: float = 40.0, n: int = 7) -> torch.Tensor:
    """Points inside each interval between ``edges`` (up to ``top``), some near its ends."""
    bounds = [0.0, *edges, top]
    pts = []
    for lo, hi in itertools.pairwise(bounds):
        pts.append(torch.linspace(lo, hi, n + 2, dtype=torch.float64)[1:-1])
        pts.append(torch.tensor([lo + 1e-3, hi - 1e-3], dtype=torch.float64))
    pos = torch.cat(pts)
    return torch.cat([pos, -pos])


AnalyticGrad = Callable[[torch.Tensor], torch.Tensor]


def _wing_grad(w: float, eps: float) -> AnalyticGrad:
    return lambda x: torch.where(x.abs() < w, w / (eps + x.abs()), 1.0) * x.sign()


def _rwing_grad(w: float, eps: float, r: float) -> AnalyticGrad:
    def grad(x: torch.Tensor) -> torch.Tensor:
        ax = x.abs()
        mid = torch.where(ax < w, w / (eps + ax - r), torch.ones_like(ax))
        return torch.where(ax < r, torch.zeros_like(ax), mid) * x.sign()

    return grad


def _soft_wing_grad(w1: float, w2: float, eps: float) -> AnalyticGrad:
    return lambda x: torch.where(x.abs() < w1, 1.0, w2 / (eps + x.abs())) * x.sign()


def _smooth_l1_grad(beta: float) -> AnalyticGrad:
    return lambda x: torch.where(x.abs() < beta, x / beta, x.sign())


GRAD_CASES: list[tuple[LandmarkLoss, AnalyticGrad, list[float]]] = [
    (WingLoss(), _wing_grad(10.0, 2.0), [10.0]),
    (WingLoss(w=4.0, eps=0.5), _wing_grad(4.0, 0.5), [4.0]),
    (RectifiedWingLoss(), _rwing_grad(10.0, 2.0, 0.2), [0.2, 10.0]),
    (RectifiedWingLoss(w=5.0, eps=1.0, r=3.0), _rwing_grad(5.0, 1.0, 3.0), [3.0, 5.0]),
    (SoftWingLoss(), _soft_wing_grad(2.0, 20.0, 0.5), [2.0]),
    (SmoothL1Loss(), _smooth_l1_grad(1.0), [1.0]),
    (SmoothL1Loss(beta=0.25), _smooth_l1_grad(0.25), [0.25]),
    (L1Loss(), lambda x: x.sign(), []),
    (L2Loss(), lambda x: x, []),
]


@pytest.mark.parametrize(
    ("loss", "analytic", "edges"), GRAD_CASES, ids=[repr(loss) for loss, _, _ in GRAD_CASES]
)
def test_gradient_matches_analytic(
    loss: LandmarkLoss, analytic: AnalyticGrad, edges: list[float]
) -> None:
    x = _sample_points(edges)
    torch.testing.assert_close(_grad(loss, x), analytic(x), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_gradcheck_through_forward(name: str) -> None:
    torch.manual_seed(1)
    # keep points away from branch points (|x| in {0.2, 1, 2, 10}) where f is not differentiable
    mags = torch.tensor([0.1, 0.5, 1.5, 3.0, 7.0, 15.0], dtype=torch.float64)
    diff = (mags * torch.tensor([1, -1, 1, -1, 1, -1])).reshape(1, 3, 2)
    pred = (diff + 5.0).requires_grad_(True)
    target = torch.full_like(diff, 5.0)
    weight = torch.tensor([[1.0, 0.5, 2.0]], dtype=torch.float64)
    loss = LOSSES[name]()
    assert torch.autograd.gradcheck(lambda p: loss(p, target, weight), (pred,))


def test_no_nan_gradient_for_large_flat_zone() -> None:
    # r > eps: the log branch would be log of a negative number below r if not guarded.
    loss = RectifiedWingLoss(w=10.0, eps=1.0, r=4.0)
    x = torch.tensor([-3.0, -0.5, 0.5, 3.0, 6.0], dtype=torch.float64)
    g = _grad(loss, x)
    assert torch.isfinite(g).all()
    assert g[:4].abs().max().item() == 0.0


def test_wing_amplifies_small_errors_vs_l1() -> None:
    wing, l1 = WingLoss(), L1Loss()
    x = torch.tensor([1e-6, 1e-3, 0.1, 1.0, 5.0], dtype=torch.float64)
    gw, gl = _grad(wing, x), _grad(l1, x)
    assert (gw > gl).all()
    assert gw[0].item() == pytest.approx(wing.w / wing.eps, rel=1e-5)
    assert gl[0].item() == 1.0


# --------------------------------------------------------------------------- precision


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_autocast_bf16_computes_in_float32(name: str) -> None:
    torch.manual_seed(2)
    pred = (torch.randn(4, 7, 2) * 6 + 60).to(torch.bfloat16)
    target = (torch.randn(4, 7, 2) * 6 + 60).to(torch.bfloat16)
    weight = torch.rand(4, 7).to(torch.bfloat16)
    loss = LOSSES[name]()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = loss(pred, target, weight)
    assert out.dtype == torch.float32
    assert out.dim() == 0
    expected = loss(pred.float(), target.float(), weight.float())
    assert expected.dtype == torch.float32
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)


def test_float32_inputs_give_float32() -> None:
    out = WingLoss()(torch.zeros(2, 3, 2), torch.ones(2, 3, 2))
    assert out.dtype == torch.float32
    assert out.item() == pytest.approx(6 * 10 * math.log(1.5), rel=1e-6)


# --------------------------------------------------------------------------- construction


@pytest.mark.parametrize(
    ("cls", "kwargs", "key"),
    [
        (WingLoss, {"w": -1.0}, "loss.w"),
        (WingLoss, {"w": 0.0}, "loss.w"),
        (WingLoss, {"eps": 0.0}, "loss.eps"),
        (WingLoss, {"eps": -2.0}, "loss.eps"),
        (WingLoss, {"w": float("nan")}, "loss.w"),
        (WingLoss, {"w": "ten"}, "loss.w"),
        (RectifiedWingLoss, {"w": -1.0}, "loss.w"),
        (RectifiedWingLoss, {"eps": 0.0}, "loss.eps"),
        (RectifiedWingLoss, {"r": -0.1}, "loss.r"),
        (RectifiedWingLoss, {"r": 10.0}, "loss.r"),
        (RectifiedWingLoss, {"w": 1.0, "r": 2.0}, "loss.r"),
        (SoftWingLoss, {"w1": 0.0}, "loss.w1"),
        (SoftWingLoss, {"w2": -20.0}, "loss.w2"),
        (SoftWingLoss, {"eps": 0.0}, "loss.eps"),
        (SmoothL1Loss, {"beta": 0.0}, "loss.beta"),
        (SmoothL1Loss, {"beta": -1.0}, "loss.beta"),
    ],
)
def test_invalid_parameters_raise(cls: type, kwargs: dict[str, object], key: str) -> None:
    with pytest.raises(ValueError, match=key.replace(".", r"\.") + r"\b"):
        cls(**kwargs)


def test_invalid_message_shows_value() -> None:
    with pytest.raises(ValueError, match=r"loss\.w must be > 0, got -1"):
        WingLoss(w=-1)


def test_r_zero_is_plain_wing() -> None:
    rwing, wing = RectifiedWingLoss(r=0.0), WingLoss()
    x = _sample_points([10.0])
    torch.testing.assert_close(rwing.elementwise(x), wing.elementwise(x))


@pytest.mark.parametrize(
    ("target", "params", "attrs"),
    [
        ("L2Loss", {}, {}),
        ("L1Loss", {}, {}),
        ("SmoothL1Loss", {"beta": 0.5}, {"beta": 0.5}),
        ("WingLoss", {"w": 10.0, "eps": 2.0}, {"w": 10.0, "eps": 2.0}),
        ("RectifiedWingLoss", {"w": 8.0, "eps": 1.0, "r": 0.5}, {"w": 8.0, "r": 0.5}),
        ("SoftWingLoss", {"w1": 2.0, "w2": 20.0, "eps": 0.5}, {"w1": 2.0, "w2": 20.0}),
    ],
)
def test_hydra_instantiate(target: str, params: dict[str, float], attrs: dict[str, float]) -> None:
    cfg = OmegaConf.create({"_target_": f"wingface.losses.{target}", **params})
    loss = instantiate(cfg)
    assert type(loss).__name__ == target
    for key, value in attrs.items():
        assert getattr(loss, key) == value
    out = loss(torch.zeros(2, 3, 2), torch.ones(2, 3, 2))
    assert out.dim() == 0
    assert torch.isfinite(out)


def test_losses_registry_names_the_classes_of_the_loss_configs() -> None:
    """``LOSSES`` (used by the notebooks) holds exactly the coordinate losses of ``conf/loss``,
    under their option names, each a documented :class:`LandmarkLoss`."""
    configs = {path.stem: OmegaConf.load(path) for path in (CONFIG_DIR / "loss").glob("*.yaml")}
    targets = {name: cfg._target_.rsplit(".", 1)[1] for name, cfg in configs.items()}
    coordinate = {
        name: target for name, target in targets.items()
        if not getattr(getattr(losses_module, target), "needs_heatmaps", False)
    }  # fmt: skip
    assert {name: cls.__name__ for name, cls in LOSSES.items()} == coordinate
    for cls in LOSSES.values():
        assert issubclass(cls, LandmarkLoss)
        assert cls.__doc__ and "pixels of the network input" in cls.__doc__


def test_extra_repr() -> None:
    assert "w=10.0" in repr(WingLoss())
    assert "eps=2.0" in repr(WingLoss())
    assert "C=-7.9175" in repr(WingLoss())
    assert "r=0.2" in repr(RectifiedWingLoss())
    assert "w1=2.0" in repr(SoftWingLoss()) and "w2=20.0" in repr(SoftWingLoss())
    assert "beta=1.0" in repr(SmoothL1Loss())
