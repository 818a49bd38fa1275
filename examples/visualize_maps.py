"""What the LSTRL blocks look at: the paper's Fig. 5 for one clip.

Runs a clip through a :class:`~lstrl_layers.VideoReIDNet`, captures the input of one injected
:class:`~lstrl_layers.LSTRLBlock` (a forward hook), calls the block again on it with ``return_maps=True``
and saves one PNG: the frames, then, overlaid on them, MAE's dependencies for one query position (``D1``: the
position itself, ``D2``: its spatial location averaged over time, ``D3``: its frame, ``D4``: the clip) over
all ``T*H*W`` keys, and BME's motion features ``Mf`` / ``Mb`` (L2 norm over channels). One column per frame
and one row for the frames and for each map, every cell 130 x 240 pixels (1.3 x 2.4 inches at 100 dpi).

    python examples/visualize_maps.py --out maps.png                      # synthetic clip, untrained model
    python examples/visualize_maps.py --checkpoint out/mars/checkpoint.pt frame*.jpg --out maps.png
    python examples/visualize_maps.py --checkpoint out/mars/model.pt frame*.jpg --out maps.png

Needs matplotlib, torchvision and Pillow (the ``examples`` extra).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from lstrl_layers import LSTRLBlock, VideoReIDNet
from lstrl_layers.cli.argtypes import add_backbone, add_num_frames, existing_file, int_at_least, stage
from lstrl_layers.reid import chunk_first_indices, clip_transforms, synthetic_video_reid
from lstrl_layers.reid.data import IMAGENET_MEAN, IMAGENET_STD, UnreadableFrame, read_rgb
from lstrl_layers.reid.engine import load_trained

CELL, DPI = (1.3, 2.4), 100  # inches per frame and map, dots per inch: 130 x 240 pixels


def build_parser() -> argparse.ArgumentParser:
    """The flags of this script."""
    positive, non_negative = int_at_least(1), int_at_least(0)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "images", nargs="*", type=existing_file, help="frames of one clip, in order (default: synthetic)"
    )
    p.add_argument(
        "--checkpoint",
        type=existing_file,
        metavar="PATH",
        help="a trained model: checkpoint.pt or model.pt from train_video_reid.py's --out",
    )
    add_backbone(p, None, "timm backbone without --checkpoint (resnet18)")
    p.add_argument("--stages", nargs="+", type=stage, help="LSTRL stages without --checkpoint (2 3)")
    p.add_argument("--size", type=positive, nargs=2, metavar=("H", "W"), help="frame size (default 128 64)")
    add_num_frames(p, 4, "frames of the clip (RRS chunks of the images)")
    p.add_argument("--block", help="which injected block, e.g. layer2 (default: the first)")
    p.add_argument(
        "--query",
        nargs=3,
        type=non_negative,
        metavar=("T", "H", "W"),
        help="query position on the block's feature map (default: middle frame, upper-body centre)",
    )
    p.add_argument("--out", type=Path, default=Path("lstrl_maps.png"))
    p.add_argument("--seed", type=int, default=0)
    return p


def load_model(args: argparse.Namespace) -> tuple[VideoReIDNet, tuple[int, int]]:
    """The model (from ``--checkpoint``, or an untrained one) and the frame size to use."""
    if args.checkpoint is None:
        stages = args.stages or [2, 3]
        backbone = args.backbone or "resnet18"
        model = VideoReIDNet(backbone, num_classes=1, stages=stages, num_frames=args.num_frames)
        return model, tuple(args.size or (128, 64))
    given = [
        flag
        for flag, value in (("--backbone", args.backbone), ("--stages", args.stages))
        if value is not None
    ]
    if given:
        raise SystemExit(
            f"{' and '.join(given)}: --checkpoint {args.checkpoint} holds its own model; leave them out"
        )
    try:
        model, settings = load_trained(args.checkpoint)  # a training checkpoint or a model.pt
    except ValueError as err:
        raise SystemExit(f"--checkpoint {args.checkpoint}: {err}") from None
    return model, tuple(args.size or (settings["size"] if settings else (128, 64)))


def load_clip(images: Sequence[Path], num_frames: int, size: tuple[int, int], seed: int) -> Tensor:
    """uint8 clip ``(T, 3, H, W)``: T of the images (first frame of each chunk), or a synthetic one."""
    if not images:
        data = synthetic_video_reid(1, 0, num_cams=1, length=(num_frames, num_frames), size=size, seed=seed)
        frames = data.train[0].frames
        assert isinstance(frames, Tensor)
        return frames
    from torchvision.transforms.v2 import functional as TF

    chosen = [images[i] for i in chunk_first_indices(len(images), num_frames)]
    try:
        return torch.stack([TF.resize(read_rgb(p), list(size), antialias=True) for p in chosen])
    except UnreadableFrame as err:
        raise SystemExit(f"cannot decode a frame: {err}") from None


def block_maps(
    model: VideoReIDNet, clip: Tensor, block_name: str | None
) -> tuple[str, dict[str, Tensor], tuple[int, ...]]:
    """Maps of one injected block for ``clip`` ``(1, T, 3, H, W)``, and the shape of the block's input."""
    blocks = {name.rpartition(".")[2]: m for name, m in model.named_modules() if isinstance(m, LSTRLBlock)}
    if not blocks:
        raise SystemExit("this model has no LSTRL block (was it built with stages?)")
    name = block_name or next(iter(blocks))
    if name not in blocks:
        raise SystemExit(f"no block {name!r}; the model has {sorted(blocks)}")
    block, captured = blocks[name], []
    handle = block.register_forward_pre_hook(lambda _m, inputs: captured.append(inputs[0]))
    model.eval()
    with torch.no_grad():
        model(clip)
        handle.remove()
        _, maps = block(captured[0], return_maps=True)
    return name, maps, tuple(captured[0].shape)


def main(argv: Sequence[str] | None = None) -> Path:
    """Parse the flags, draw the maps, save the PNG; returns its path."""
    parser = build_parser()
    args = parser.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    torch.manual_seed(args.seed)
    model, size = load_model(args)
    frames = load_clip(args.images, args.num_frames, size, args.seed)
    clip = clip_transforms(size, train=False)(frames)
    name, maps, block_shape = block_maps(model, clip[None], args.block)
    height, width = block_shape[-2:]
    num_frames = len(frames)
    if args.query:
        t, h, w = args.query
    else:
        t, h, w = num_frames // 2, height // 3, width // 2
    if not (0 <= t < num_frames and 0 <= h < height and 0 <= w < width):
        parser.error(
            f"--query {t} {h} {w} is outside the block's (T, H, W) = ({num_frames}, {height}, {width})"
        )
    query_rows = {"D1": (t * height + h) * width + w, "D2": h * width + w, "D3": t, "D4": 0}
    rows = {key: maps[key][0, row] for key, row in query_rows.items() if key in maps}  # over the T*H*W keys
    rows.update({key: maps[key][0].norm(dim=1) for key in ("Mf", "Mb") if key in maps})  # (T, C/2, H, W)
    rows = {key: heat.reshape(num_frames, height, width) for key, heat in rows.items()}
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    pictures = rearrange((clip * std + mean).clamp(0, 1), "t c h w -> t h w c")
    fig, axes = plt.subplots(
        1 + len(rows), num_frames, figsize=(CELL[0] * num_frames, CELL[1] * (1 + len(rows))), squeeze=False
    )
    query_note = {
        "D1": f"query (t={t}, h={h}, w={w})",
        "D2": f"query (h={h}, w={w}), all t",
        "D3": f"query frame t={t}",
        "D4": "query: the clip",
    }
    for col in range(num_frames):
        axes[0, col].imshow(pictures[col].numpy())
        axes[0, col].set_title(f"t={col}", fontsize=8)
    for row, (key, heat) in enumerate(rows.items(), start=1):
        heat = F.interpolate(heat[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]
        low, high = heat.min(), heat.max()  # one min-max scale per row, so frames compare
        heat = (heat - low) / (high - low).clamp_min(1e-12)
        for col in range(num_frames):
            ax = axes[row, col]
            ax.imshow(pictures[col].numpy())
            ax.imshow(heat[col].numpy(), cmap="jet", alpha=0.5, vmin=0, vmax=1)
            marked = (key == "D1" and col == t) or key == "D2"
            if marked:  # the query position, in image coordinates
                ax.plot(
                    (w + 0.5) * size[1] / width - 0.5, (h + 0.5) * size[0] / height - 0.5, "w+", ms=8, mew=2
                )
        axes[row, 0].set_ylabel(key, fontsize=10)
        axes[row, num_frames // 2].set_title(query_note.get(key, "L2 norm over channels"), fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"LSTRL maps of block {name!r} ({height}x{width} feature map), min-max per row", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=DPI)
    plt.close(fig)
    print(f"saved {args.out} ({', '.join(rows)} of block {name!r})")
    return args.out


if __name__ == "__main__":
    main(sys.argv[1:])
