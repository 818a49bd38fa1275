"""Parameters and MACs of common LSTRL placements: after stages, after every block, every other block.

Run ``python benchmarks/placements.py`` (a few seconds: models are built on the meta device, shapes only).
Each placement is the paper's video ReID model (``VideoReIDNet``: 625 classes, last stride 1, blocks with
``zero_init=False``, i.e. the paper's blocks exactly) over a ResNet-50; MACs per frame at 256x128, T=8, in
the paper's (thop) convention and counted completely (MAE's attention included).

``--backbone`` takes a timm name (``resnet50``) or ``torchvision:NAME`` (default ``torchvision:resnet50``);
the placements use ResNet's module names (``layer2``, ``layer3.0``), which timm's and torchvision's ResNets
share.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from lstrl_layers import VideoReIDNet, blocks_of, count_macs
from lstrl_layers.cli.argtypes import add_backbone, add_num_frames, positive_int

NUM_CLASSES = 625  # MARS training identities, the classifier of the paper's Table 3


def _backbone(name: str) -> nn.Module:
    """The backbone without its classifier: a torchvision model (``torchvision:NAME``) or a timm one."""
    if not name.startswith("torchvision:"):
        import timm

        return timm.create_model(name, pretrained=False, num_classes=0)
    import torchvision

    backbone = torchvision.models.get_model(name.split(":", 1)[1], weights=None)
    backbone.fc = nn.Identity()  # ResNets: the frame feature, not ImageNet logits
    return backbone


def placements(backbone: nn.Module) -> dict[str, list[str]]:
    """Placement name -> the module names that get a block."""
    every_other = blocks_of(backbone, "layer2", every=2) + blocks_of(backbone, "layer3", every=2)
    return {
        "Baseline (no block)": [],
        "layer2, layer3 (paper)": ["layer2", "layer3"],
        "layer3": ["layer3"],
        "layer1 to layer4": ["layer1", "layer2", "layer3", "layer4"],
        "every block of layer3": blocks_of(backbone, "layer3"),
        "every other block of layer3": blocks_of(backbone, "layer3", every=2),
        "every other block of layer2, layer3": every_other,
    }


def measure(backbone: str, num_frames: int, size: Sequence[int]) -> list[dict[str, Any]]:
    """Parameters and MACs per frame (both conventions) of each placement over ``backbone``."""
    rows = []
    with torch.device("meta"):
        names = placements(_backbone(backbone))
    for label, stages in names.items():
        with torch.device("meta"):  # shapes only: parameters and MACs without computing
            net = VideoReIDNet(
                _backbone(backbone), NUM_CLASSES, stages=stages, num_frames=num_frames, zero_init=False,
                input_size=(3, *size),
            ).eval()  # fmt: skip
            video = torch.zeros(1, num_frames, 3, *size)
            paper = count_macs(net, video, convention="paper") / num_frames
            full = count_macs(net, video, convention="full") / num_frames
        rows.append(
            dict(
                placement=label,
                blocks=len(stages),
                params=sum(p.numel() for p in net.parameters()),
                macs_paper=paper,
                macs_full=full,
                stages=stages,
            )
        )
    return rows


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Parse the flags, measure every placement, print the table; returns its rows."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_backbone(
        parser, "torchvision:resnet50", "timm name or torchvision:NAME (default: torchvision:resnet50)"
    )
    add_num_frames(parser, 8, "frames per clip (default: 8)")
    parser.add_argument(
        "--size", nargs=2, type=positive_int, default=[256, 128], metavar=("H", "W"), help="frame size"
    )
    args = parser.parse_args(argv)
    rows = measure(args.backbone, args.num_frames, args.size)
    base = rows[0]
    print(f"{args.backbone}, {args.size[0]}x{args.size[1]}, T={args.num_frames}, last stride 1, 625 classes")
    print(f"{'placement':38} {'blocks':>6} {'params (M)':>10} {'GMACs/frame':>11} {'full':>6} {'full +%':>7}")
    for row in rows:
        added = 100 * (row["macs_full"] / base["macs_full"] - 1)
        print(
            f"{row['placement']:38} {row['blocks']:>6} {row['params'] / 1e6:>10.2f} "
            f"{row['macs_paper'] / 1e9:>11.2f} {row['macs_full'] / 1e9:>6.2f} {added:>+7.1f}"
        )
    return rows


if __name__ == "__main__":
    main()
