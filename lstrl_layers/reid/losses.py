"""Losses of the paper's training (§3): cross-entropy on the identity logits plus a batch-hard triplet loss.

The cross-entropy is :class:`torch.nn.CrossEntropyLoss` (``label_smoothing`` is built in); the batch-hard
triplet loss (Hermans et al., "In Defense of the Triplet Loss") is small enough to keep here rather than add a
dependency such as pytorch-metric-learning.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_bool, check_float, got

__all__ = ["BatchHardTripletLoss", "ReIDLoss", "batch_hard_triplet_loss", "euclidean_distances"]


def euclidean_distances(features: Tensor, eps: float = 1e-12, other: Tensor | None = None) -> Tensor:
    """Pairwise Euclidean distances in float32: ``(N, N)`` of ``(N, D)`` features with a zero diagonal, or
    ``(N, M)`` from them to ``other`` ``(M, D)``.

    Computed as ``sqrt(|x|^2 + |y|^2 - 2 x.y)`` (one matrix product, in float32 under autocast too), with the
    squared distances clamped at ``eps`` before the square root, so the gradient stays finite (zero) for
    identical features; distances below ``sqrt(eps)`` read as ``sqrt(eps)``, except on the zero diagonal.
    :func:`~lstrl_layers.reid.metrics.pairwise_distances` computes its ``"euclidean"`` metric here.

    Raises:
        TypeError: ``features`` or ``other`` not a floating-point tensor, ``eps`` not a float.
        ValueError: not 2-D, ``other`` with another ``D`` or on another device, ``eps`` not positive and
            finite.
    """
    _check_features("features", features)
    if other is not None:
        _check_features("other", other, "(M, D)")
        if other.shape[1] != features.shape[1] or other.device != features.device:
            raise ValueError(
                f"other must be (M, D) with the D and device of features {tuple(features.shape)} on "
                f"{features.device}, got {tuple(other.shape)} on {other.device}"
            )
    check_float("eps", eps, "a positive, finite float", low=0.0, low_inclusive=False)
    x = features.float()
    y = x if other is None else other.float()
    with torch.autocast(x.device.type, enabled=False):  # autocast would take the product in half precision
        dist2 = x.pow(2).sum(1)[:, None] + y.pow(2).sum(1)[None, :] - 2.0 * x @ y.t()
    dist = dist2.clamp_min(eps).sqrt()
    if other is None:
        dist = dist * (1.0 - torch.eye(len(x), device=x.device, dtype=x.dtype))
    return dist


def _check_features(name: str, features: object, shape: str = "(N, D)") -> None:
    if not isinstance(features, Tensor) or not features.is_floating_point():
        kind = f"a {features.dtype} tensor" if isinstance(features, Tensor) else got(features)
        raise TypeError(f"{name} must be a floating-point tensor {shape}, got {kind}")
    if features.ndim != 2:
        raise ValueError(f"{name} must be {shape}, got shape {tuple(features.shape)}")


def _check_pids(pids: object, reference: Tensor, reference_name: str = "features") -> None:
    """Integer identities ``(N,)`` for the ``N`` rows of ``reference``, on its device."""
    if (
        not isinstance(pids, Tensor)
        or pids.is_floating_point()
        or pids.is_complex()
        or pids.dtype == torch.bool
    ):
        kind = f"a {pids.dtype} tensor" if isinstance(pids, Tensor) else got(pids)
        raise TypeError(f"pids must be an integer tensor (N,) of identities, got {kind}")
    if pids.shape != reference.shape[:1]:
        raise ValueError(
            f"pids must be (N,) with the N of {reference_name} {tuple(reference.shape)}, "
            f"got shape {tuple(pids.shape)}"
        )
    if pids.device != reference.device:
        raise ValueError(
            f"pids must be on the device of {reference_name} ({reference.device}), got {pids.device}"
        )


def _check_margin(margin: object) -> float | None:
    if margin is None:
        return None
    return check_float("margin", margin, "a finite float >= 0, or None for the soft margin", low=0.0)


def batch_hard_triplet_loss(
    features: Tensor, pids: Tensor, margin: float | None = 0.3, normalize: bool = False
) -> Tensor:
    r"""Batch-hard triplet loss: for each anchor, its farthest positive and its closest negative in the batch.

    .. math:: \frac{1}{|A|}\sum_{a \in A} \max(0,\ \max_{p} d(a, p) - \min_{n} d(a, n) + m)

    with ``d`` the Euclidean distance, ``p`` over the other samples of the anchor's identity and ``n`` over
    the samples of other identities. Anchors ``A`` are the samples with at least one positive and one
    negative in the batch; a batch without any such anchor gives a zero loss (still connected to the graph).

    Args:
        features: ``(N, D)`` embeddings.
        pids: ``(N,)`` identities.
        margin: ``m`` (paper: 0.3). ``None`` gives the soft-margin variant ``softplus(d_ap - d_an)``.
        normalize: L2-normalize the features first.

    Raises:
        TypeError: features not a floating-point tensor, pids not an integer tensor, a bad ``margin`` or
            ``normalize`` type.
        ValueError: shapes that do not match, an empty batch, pids on another device, a negative or
            non-finite ``margin``.
    """
    _check_features("features", features)
    _check_pids(pids, features)
    if len(features) == 0:
        raise ValueError(f"features must hold at least one sample, got shape {tuple(features.shape)}")
    margin = _check_margin(margin)
    check_bool("normalize", normalize)
    if normalize:
        features = F.normalize(features, dim=1)
    dist = euclidean_distances(features)
    same = pids[:, None] == pids[None, :]
    positive = same & ~torch.eye(len(pids), dtype=torch.bool, device=pids.device)
    negative = ~same
    hardest_positive = dist.masked_fill(~positive, float("-inf")).amax(dim=1)
    hardest_negative = dist.masked_fill(~negative, float("inf")).amin(dim=1)
    valid = positive.any(dim=1) & negative.any(dim=1)
    if not valid.any():
        return features.sum() * 0.0
    gap = hardest_positive[valid] - hardest_negative[valid]
    losses = F.softplus(gap) if margin is None else F.relu(gap + margin)
    return losses.mean()


class BatchHardTripletLoss(nn.Module):
    """Module form of :func:`batch_hard_triplet_loss`."""

    def __init__(self, margin: float | None = 0.3, normalize: bool = False) -> None:
        super().__init__()
        self.margin = _check_margin(margin)
        self.normalize = check_bool("normalize", normalize)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, normalize={self.normalize}"

    def forward(self, features: Tensor, pids: Tensor) -> Tensor:
        return batch_hard_triplet_loss(features, pids, self.margin, self.normalize)


class ReIDLoss(nn.Module):
    """``ce_weight * CE(logits, pids) + triplet_weight * triplet(features, pids)`` (paper §3).

    ``forward`` returns the total and a dict of the detached parts (``"ce"``, ``"triplet"``) for logging.

    Args:
        margin: triplet margin (paper: 0.3; ``None``: soft margin).
        label_smoothing: of the cross-entropy (paper: none given; ``0.0``).
        ce_weight: weight of the cross-entropy (paper: 1), finite, ``>= 0``.
        triplet_weight: weight of the triplet term (paper: 1), finite, ``>= 0``; not both weights 0.

    ``forward(logits, features, pids)``: logits ``(N, num_classes)``, features ``(N, D)``, pids ``(N,)``
    integers in ``[0, num_classes)`` (checked before the loss, so that a bad identity on a GPU gives this
    error rather than a device-side assert).

    Across processes (DDP), pass ``mining=(features, pids)`` of the whole global batch (this process's
    rows keeping their gradient): the triplet term then mines over the global batch, as one process on the
    whole batch would, and ``triplet_scale`` (the number of processes) undoes DDP's averaging of a term that
    every process computes in full. The logged parts stay unscaled.
    """

    def __init__(
        self,
        margin: float | None = 0.3,
        label_smoothing: float = 0.0,
        ce_weight: float = 1.0,
        triplet_weight: float = 1.0,
    ) -> None:
        super().__init__()
        label_smoothing = check_float(
            "label_smoothing", label_smoothing, "a float in [0, 1]", low=0.0, high=1.0
        )
        self.ce_weight = check_float("ce_weight", ce_weight, "a finite float >= 0", low=0.0)
        self.triplet_weight = check_float("triplet_weight", triplet_weight, "a finite float >= 0", low=0.0)
        if self.ce_weight == 0 and self.triplet_weight == 0:
            raise ValueError("ce_weight and triplet_weight must not both be 0 (the loss would be constant)")
        self.cross_entropy = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        self.triplet = BatchHardTripletLoss(margin)

    def forward(
        self,
        logits: Tensor,
        features: Tensor,
        pids: Tensor,
        mining: tuple[Tensor, Tensor] | None = None,
        triplet_scale: float = 1.0,
    ) -> tuple[Tensor, dict[str, float]]:
        _check_features("logits", logits, "(N, num_classes)")
        _check_pids(pids, logits, "logits")
        num_classes = logits.shape[1]
        if len(pids) and not bool(((pids >= 0) & (pids < num_classes)).all()):
            bad = pids[(pids < 0) | (pids >= num_classes)][0]
            raise ValueError(
                f"pids must be class indices in [0, {num_classes}) for logits {tuple(logits.shape)}, "
                f"got {int(bad)}"
            )
        ce = self.cross_entropy(logits.float(), pids)
        triplet = self.triplet(*(mining if mining is not None else (features, pids)))
        total = self.ce_weight * ce + self.triplet_weight * triplet_scale * triplet
        ce_value, triplet_value = float(ce.detach()), float(triplet.detach())
        return total, {
            "loss": self.ce_weight * ce_value + self.triplet_weight * triplet_value,
            "ce": ce_value,
            "triplet": triplet_value,
        }
