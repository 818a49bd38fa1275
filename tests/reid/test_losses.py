"""Batch-hard triplet loss and CE + triplet, against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lstrl_layers.reid import BatchHardTripletLoss, ReIDLoss, batch_hard_triplet_loss, euclidean_distances


def test_distances_match_cdist_with_zero_diagonal(device: torch.device) -> None:
    x = torch.randn(6, 5, device=device)
    torch.testing.assert_close(euclidean_distances(x), torch.cdist(x, x), atol=1e-4, rtol=0)
    assert torch.all(euclidean_distances(x).diagonal() == 0)


def test_distances_to_other_features_match_cdist_and_keep_a_finite_gradient(device: torch.device) -> None:
    torch.manual_seed(0)
    x = torch.randn(5, 3, device=device)
    y = torch.cat([x[:2], torch.randn(4, 3, device=device)]).requires_grad_()  # rows 0, 1 equal x's
    distances = euclidean_distances(x, other=y)
    assert distances.shape == (5, 6) and distances.dtype == torch.float32
    torch.testing.assert_close(distances, torch.cdist(x, y), atol=1e-4, rtol=0)
    assert distances[0, 0].item() == pytest.approx(1e-6)  # sqrt(eps): no zero diagonal between two sets
    distances.sum().backward()
    assert y.grad is not None and torch.isfinite(y.grad).all()


def test_distances_stay_float32_under_autocast() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(6, 64) * 30, torch.randn(5, 64) * 30  # large norms: a bf16 product would show
    plain = euclidean_distances(x, other=y), euclidean_distances(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = euclidean_distances(x, other=y), euclidean_distances(x)
    for expected, got in zip(plain, under_autocast):
        assert got.dtype == torch.float32 and torch.equal(got, expected)


def test_batch_hard_triplet_hand_computed(device: torch.device) -> None:
    # 1-D features; d(a, hardest p), d(a, hardest n): (1, 3), (1, 2), (2, 2), (2, 4)
    features = torch.tensor([[0.0], [1.0], [3.0], [5.0]], device=device)
    pids = torch.tensor([0, 0, 1, 1], device=device)
    expected = (0 + 0 + 0.3 + 0) / 4  # relu(dp - dn + 0.3)
    assert batch_hard_triplet_loss(features, pids, margin=0.3).item() == pytest.approx(expected)
    soft = sum(math.log1p(math.exp(dp - dn)) for dp, dn in [(1, 3), (1, 2), (2, 2), (2, 4)]) / 4
    assert batch_hard_triplet_loss(features, pids, margin=None).item() == pytest.approx(soft, rel=1e-5)


def test_hardest_positive_and_negative_are_chosen(device: torch.device) -> None:
    # anchor 0: positives at 1 and 4 -> hardest 4; negatives at 2 and 6 -> hardest 2
    features = torch.tensor([[0.0], [1.0], [4.0], [2.0], [6.0]], device=device)
    pids = torch.tensor([0, 0, 0, 1, 1], device=device)
    losses = [max(0.0, dp - dn + 1.0) for dp, dn in [(4, 2), (3, 1), (4, 2), (0, 1), (0, 2)]]
    # anchors 3 and 4: positive distance |2 - 6| = 4, nearest negatives 1 and 2
    losses[3], losses[4] = 4 - 1 + 1.0, 4 - 2 + 1.0
    assert batch_hard_triplet_loss(features, pids, margin=1.0).item() == pytest.approx(sum(losses) / 5)


def test_anchors_without_positive_are_left_out(device: torch.device) -> None:
    features = torch.tensor([[0.0], [1.0], [3.0]], device=device)
    pids = torch.tensor([0, 0, 1], device=device)  # the identity-1 sample has no positive
    assert batch_hard_triplet_loss(features, pids, margin=1.5).item() == pytest.approx((0 + 0.5) / 2)
    single = torch.zeros(3, 4, device=device, requires_grad=True)
    loss = batch_hard_triplet_loss(single, torch.tensor([0, 1, 2], device=device))
    assert loss.item() == 0.0
    loss.backward()  # still part of the graph


def test_gradient_is_finite_for_identical_features(device: torch.device) -> None:
    features = torch.ones(4, 8, device=device, requires_grad=True)
    BatchHardTripletLoss(0.3)(features, torch.tensor([0, 0, 1, 1], device=device)).backward()
    assert features.grad is not None and torch.isfinite(features.grad).all()


def test_reid_loss_is_ce_plus_triplet(device: torch.device) -> None:
    torch.manual_seed(0)
    logits, features = torch.randn(8, 5, device=device), torch.randn(8, 16, device=device)
    pids = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3], device=device)
    total, parts = ReIDLoss(margin=0.3, label_smoothing=0.1)(logits, features, pids)
    ce = F.cross_entropy(logits, pids, label_smoothing=0.1)
    triplet = batch_hard_triplet_loss(features, pids, 0.3)
    torch.testing.assert_close(total, ce + triplet)
    assert parts == pytest.approx({"loss": (ce + triplet).item(), "ce": ce.item(), "triplet": triplet.item()})


def test_reid_loss_mines_the_triplets_over_the_batch_given(device: torch.device) -> None:
    """Across processes: the triplet term over the global batch, scaled; the parts stay unscaled."""
    torch.manual_seed(0)
    logits, features = torch.randn(4, 5, device=device), torch.randn(8, 16, device=device)
    pids = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3], device=device)
    total, parts = ReIDLoss()(logits, features[:4], pids[:4], mining=(features, pids), triplet_scale=2.0)
    ce = F.cross_entropy(logits, pids[:4])
    triplet = batch_hard_triplet_loss(features, pids, 0.3)
    torch.testing.assert_close(total, ce + 2.0 * triplet)
    assert parts == pytest.approx({"loss": (ce + triplet).item(), "ce": ce.item(), "triplet": triplet.item()})


F4, P4 = torch.randn(4, 8), torch.tensor([0, 0, 1, 1])


def test_pids_on_another_device_are_refused(device: torch.device) -> None:
    features, pids = torch.randn(4, 8, device=device), torch.tensor([0, 0, 1, 1], device="meta")
    with pytest.raises(ValueError, match=rf"pids must be on the device of features \({device}\), got meta"):
        batch_hard_triplet_loss(features, pids)
    with pytest.raises(ValueError, match=rf"pids must be on the device of logits \({device}\), got meta"):
        ReIDLoss()(torch.randn(4, 5, device=device), features, pids)


@pytest.mark.parametrize(
    ("features", "pids", "kwargs", "error", "match"),
    [
        (
            torch.randn(4, 2),
            torch.tensor([0, 1, 0]),
            {},
            ValueError,
            r"pids must be \(N,\) with the N of features",
        ),
        (F4, P4[:, None], {}, ValueError, r"pids must be \(N,\) .* got shape \(4, 1\)"),
        (torch.randn(8), P4, {}, ValueError, r"features must be \(N, D\), got shape \(8,\)"),
        (
            F4.long(),
            P4,
            {},
            TypeError,
            "features must be a floating-point tensor .* got a torch.int64 tensor",
        ),
        (F4.tolist(), P4, {}, TypeError, r"features must be a floating-point tensor .* got .* \(list\)"),
        (F4, P4.float(), {}, TypeError, "pids must be an integer tensor .* got a torch.float32 tensor"),
        (F4, [0, 0, 1, 1], {}, TypeError, r"pids must be an integer tensor .* got \[0, 0, 1, 1\] \(list\)"),
        (
            torch.randn(0, 8),
            P4[:0],
            {},
            ValueError,
            r"features must hold at least one sample, got shape \(0, 8\)",
        ),
        (F4, P4, dict(margin=-0.3), ValueError, "margin must be a finite float >= 0, or None .* got -0.3"),
        (F4, P4, dict(margin=float("nan")), ValueError, "margin must be .* got nan"),
        (F4, P4, dict(margin=float("inf")), ValueError, "margin must be .* got inf"),
        (F4, P4, dict(margin=True), TypeError, r"margin must be .* got True \(bool\)"),
        (F4, P4, dict(margin="0.3"), TypeError, r"margin must be .* got '0.3' \(str\)"),
        (F4, P4, dict(normalize="yes"), TypeError, r"normalize must be True or False, got 'yes'"),
    ],
)
def test_triplet_bad_arguments(
    features: object, pids: object, kwargs: dict, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        batch_hard_triplet_loss(features, pids, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(margin=-1.0), ValueError, "margin must be a finite float >= 0"),
        (dict(normalize=None), TypeError, "normalize"),
    ],
)
def test_triplet_module_checks_at_construction(kwargs: dict, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        BatchHardTripletLoss(**kwargs)


def test_euclidean_distances_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"features must be \(N, D\), got shape \(4,\)"):
        euclidean_distances(torch.randn(4))
    with pytest.raises(
        ValueError, match=r"other must be \(M, D\) with the D and device of features \(4, 8\)"
    ):
        euclidean_distances(F4, other=torch.randn(3, 5))
    with pytest.raises(TypeError, match=r"other must be a floating-point tensor \(M, D\), got a torch.int64"):
        euclidean_distances(F4, other=torch.ones(3, 8, dtype=torch.long))
    for eps in (-1.0, 0.0, float("nan")):
        with pytest.raises(ValueError, match=f"eps must be a positive, finite float, got {eps}"):
            euclidean_distances(F4, eps=eps)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(label_smoothing=1.5), ValueError, r"label_smoothing must be a float in \[0, 1\], got 1.5"),
        (dict(label_smoothing=-0.1), ValueError, "label_smoothing must be .* got -0.1"),
        (dict(ce_weight=-1.0), ValueError, "ce_weight must be a finite float >= 0, got -1.0"),
        (
            dict(triplet_weight=float("nan")),
            ValueError,
            "triplet_weight must be a finite float >= 0, got nan",
        ),
        (dict(ce_weight="1"), TypeError, r"ce_weight must be a finite float >= 0, got '1' \(str\)"),
        (dict(ce_weight=0.0, triplet_weight=0.0), ValueError, "must not both be 0"),
        (dict(margin=-0.3), ValueError, "margin must be a finite float >= 0"),
    ],
)
def test_reid_loss_bad_arguments(kwargs: dict, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        ReIDLoss(**kwargs)


@pytest.mark.parametrize(
    ("logits", "pids", "error", "match"),
    [
        (
            torch.randn(4, 5),
            torch.tensor([0, 0, 7, 7]),
            ValueError,
            r"class indices in \[0, 5\) for logits \(4, 5\), got 7",
        ),
        (torch.randn(4, 5), torch.tensor([0, 0, -1, -1]), ValueError, r"class indices in \[0, 5\) .* got -1"),
        (
            torch.randn(3, 5),
            P4,
            ValueError,
            r"pids must be \(N,\) with the N of logits \(3, 5\), got shape \(4,\)",
        ),
        (torch.randn(4), P4, ValueError, r"logits must be \(N, num_classes\), got shape \(4,\)"),
        (torch.randn(4, 5), P4.float(), TypeError, "pids must be an integer tensor"),
    ],
)
def test_reid_loss_checks_its_inputs(
    logits: torch.Tensor, pids: torch.Tensor, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        ReIDLoss()(logits, F4, pids)
