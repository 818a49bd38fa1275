"""Models wrapped by torch (compiled, data parallel): where blocks can go in them, or why they cannot."""

from __future__ import annotations

from torch import nn
from torch.nn.parallel import DistributedDataParallel


def unwrap_for_injection(model: nn.Module) -> nn.Module:
    """The module to inject into: ``model`` itself, or the original module of a ``torch.compile``'d one.

    Raises:
        ValueError: ``model`` is a ``DistributedDataParallel`` / ``FullyShardedDataParallel`` (which register
            the parameters they synchronize when they are built) or a ``DataParallel`` (whose replicas share
            the hooks that run the blocks); the message says what to do instead.
    """
    name = type(model).__name__
    if isinstance(model, DistributedDataParallel) or name == "FullyShardedDataParallel":
        raise ValueError(
            f"model is a {name}, which registers the parameters it synchronizes when it is built, so blocks "
            f"added now would not be trained in step across processes: inject into the plain model first, "
            f"then wrap it, e.g. inject_lstrl(model, ...); model = {name}(model, ...)"
        )
    if isinstance(model, nn.DataParallel):
        raise ValueError(
            "model is an nn.DataParallel, whose replicas share the forward hooks that run LSTRL blocks, so "
            "every GPU would run the blocks of the first one: use DistributedDataParallel (one process per "
            "GPU, e.g. torchrun), injecting into the plain model before wrapping it"
        )
    original = getattr(model, "_orig_mod", None)  # torch.compile's OptimizedModule
    if isinstance(original, nn.Module) and type(model).__name__ == "OptimizedModule":
        return unwrap_for_injection(original)
    return model
