"""LSTRL in a minute, on a CPU: the blocks alone, injected into a timm CNN, and the whole ReID model.

python examples/quickstart.py                  # the paper's resnet50, at 128x64 to be quick (paper: 256x128)
python examples/quickstart.py --backbone resnet18 --size 64 32 -T 4
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import timm
import torch
from torch import nn

from lstrl_layers import BME, MAE, LSTRLBlock, VideoReIDNet, inject_lstrl
from lstrl_layers.cli.argtypes import add_backbone, add_num_frames, int_at_least


def count(module: nn.Module) -> int:
    """The number of parameters of ``module``."""
    return sum(p.numel() for p in module.parameters())


def build_parser() -> argparse.ArgumentParser:
    """The flags of this script."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_backbone(p, "resnet50", "a timm CNN, by name (default: resnet50, the paper's)")
    p.add_argument(
        "--size", type=int_at_least(1), nargs=2, default=(128, 64), metavar=("H", "W"), help="paper: 256 128"
    )
    add_num_frames(p, 8, "T, frames per clip")
    p.add_argument(
        "--last-stride", type=int, choices=(1, 2), default=1, help="of the ReID model's last stage (ReID: 1)"
    )
    p.add_argument(
        "--clips", type=int_at_least(2), default=2, help="B, clips per batch (>= 2: BatchNorm in train mode)"
    )
    return p


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the flags and run; a backbone the blocks cannot go into ends with one line naming it."""
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except (TypeError, ValueError) as err:  # a model the blocks cannot go into: one line, with the way out
        message = str(err).replace("last_stride=2", "--last-stride 2")
        raise SystemExit(f"quickstart.py: error: --backbone {args.backbone}: {message}") from None


def run(args: argparse.Namespace) -> None:
    """The three demonstrations, printed."""
    torch.manual_seed(0)
    B, T, (H, W) = args.clips, args.num_frames, args.size

    print("1. The blocks on their own: shape-preserving, (B*T, C, H, W) or (B, T, C, H, W)")
    frames = torch.randn(B * T, 64, 16, 8)  # the T frames of each clip contiguous
    for block in (MAE(64, num_frames=T), BME(64, num_frames=T), LSTRLBlock(64, num_frames=T)):
        out, maps = block(frames, return_maps=True)
        shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in maps.items())
        print(
            f"   {type(block).__name__:<10} {tuple(frames.shape)} -> {tuple(out.shape)}, "
            f"{count(block):,} parameters; maps: {shapes}"
        )
        assert torch.allclose(out, frames, rtol=0, atol=1e-5), "blocks start as the identity"

    print(f"\n2. Injected into timm's {args.backbone} after feature_info stages 2 and 3")
    model = timm.create_model(args.backbone, pretrained=False, num_classes=0)
    before = count(model)
    inject_lstrl(model, stages=[2, 3], num_frames=T)
    blocks = [name for name, _ in model.get_submodule("lstrl").named_children()]
    print(
        f"   blocks in model.lstrl: {blocks}; +{count(model) - before:,} parameters "
        f"({before:,} -> {count(model):,})"
    )
    with torch.no_grad():
        features = model.forward_features(torch.randn(B * T, 3, H, W))  # type: ignore[operator]
    print(f"   frames {(B * T, 3, H, W)} -> features {tuple(features.shape)}")

    print("\n3. The paper's ReID model: backbone + blocks, GAP, TAP, BNNeck, classifier")
    net = VideoReIDNet(
        args.backbone, num_classes=625, stages=(2, 3), num_frames=T, last_stride=args.last_stride
    )
    video = torch.randn(B, T, 3, H, W)
    logits, feature = net.train()(video)
    shapes = f"logits {tuple(logits.shape)}, feature {tuple(feature.shape)}"
    print(f"   train: video {tuple(video.shape)} -> {shapes}")
    with torch.no_grad():
        embedding = net.eval()(torch.randn(B, 2 * T, 3, H, W))
    print(
        f"   eval: any T, e.g. {2 * T} frames -> embedding {tuple(embedding.shape)}; "
        f"{count(net) / 1e6:.2f}M parameters"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
