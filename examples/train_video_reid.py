"""Train and evaluate an LSTRL video ReID model: the paper's §4.2 recipe, end to end.

Data: a MARS folder (``--dataset mars``), an iLIDS-VID folder (``--dataset ilidsvid``) or ``--synthetic``
(small generated identities, no download). Training: restricted random sampling of ``T`` frames, batches of
``P`` identities x ``K`` tracklets, random crop + random erasing, cross-entropy + batch-hard triplet loss,
Adam with a step decay. Evaluation: query against gallery with the standard ReID protocol (CMC, mAP).

    # anywhere, in a few minutes on a CPU
    python examples/train_video_reid.py --synthetic --epochs 3 --out out/synthetic
    # MARS, as in the paper (ImageNet-pretrained ResNet-50, LSTRL blocks after layer2 and layer3)
    python examples/train_video_reid.py --dataset mars --data-root /data/MARS --out out/mars
    python examples/train_video_reid.py --dataset mars --data-root /data/MARS --out out/mars --resume out/mars

Writes ``OUT/metrics.json`` (``{"epochs": [{"epoch": 0, "mAP": ..., "rank1": ..., ...}, ...]}``, epoch 0
evaluated before training), ``OUT/checkpoint.pt`` (every epoch; ``--resume OUT`` continues from it) and
``OUT/log.txt``. Needs the ``examples`` extra (torchvision, scipy for the .mat files, tqdm for progress bars).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from lstrl_layers import VideoReIDNet
from lstrl_layers.reid import (
    ClipDataset,
    PKBatchSampler,
    ReIDLoss,
    VideoReIDData,
    clip_transforms,
    collate_test_clips,
    evaluate_ranking,
    pairwise_distances,
    read_ilidsvid,
    read_mars,
    synthetic_video_reid,
)
from lstrl_layers.reid.datasets import Sampling

T_co = TypeVar("T_co")

# Defaults of the two settings. Real data: the paper's §4.2 (ResNet-50, 256x128, T=8, 8x4 batches, Adam 3e-4,
# x0.1 every 70 epochs up to 400). Synthetic: small enough to learn visibly in 3 epochs on 2 CPU cores; one
# intra-op thread, because on such small tensors more threads gain little when the cores are free and lose
# a lot (about 3x here) when other processes share them.
PAPER = dict(
    model="resnet50",
    size=(256, 128),
    seq_len=8,
    P=8,
    K=4,
    lr=3e-4,
    step=70,
    epochs=400,
    eval_every=10,
    workers=4,
    pretrained=True,
    threads=0,
)
SYNTHETIC = dict(
    PAPER,
    model="resnet18",
    size=(64, 32),
    seq_len=4,
    P=4,
    epochs=3,
    eval_every=1,
    workers=0,
    pretrained=False,
    threads=1,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    data = p.add_argument_group("data")
    data.add_argument("--synthetic", action="store_true", help="generated identities instead of a dataset")
    data.add_argument("--dataset", choices=("mars", "ilidsvid"), default="mars")
    data.add_argument(
        "--data-root", type=Path, help="MARS folder (bbox_train/, bbox_test/, info/) or iLIDS-VID"
    )
    data.add_argument("--split", type=int, default=0, help="iLIDS-VID split (row of the split file)")
    data.add_argument(
        "--split-file", type=Path, help="iLIDS-VID split .mat (default: the release's, or random)"
    )
    data.add_argument("--synthetic-ids", type=int, nargs=2, default=(64, 24), metavar=("TRAIN", "TEST"))
    data.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), help="frame size (paper: 256 128)")
    data.add_argument("-T", "--seq-len", type=int, help="frames per clip (paper: 8)")
    data.add_argument("-P", type=int, help="identities per batch (paper: 8)")
    data.add_argument("-K", type=int, help="clips per identity in a batch (paper: 4)")
    data.add_argument("--erasing", type=float, default=0.5, help="random erasing probability")
    data.add_argument(
        "--test-sampling",
        choices=("rrs", "dense"),
        default="rrs",
        help="rrs: first frame of each of T chunks; dense: all frames in T-frame clips, averaged",
    )
    data.add_argument("--max-test-clips", type=int, help="dense: at most this many clips per tracklet")
    data.add_argument("--workers", type=int, help="data loader processes")
    model = p.add_argument_group("model")
    model.add_argument("--model", help="timm backbone (paper: resnet50)")
    model.add_argument(
        "--stages", default="2,3", help="feature_info stages with an LSTRL block ('' for none)"
    )
    model.add_argument("--no-mae", dest="mae", action="store_false", help="blocks without MAE")
    model.add_argument("--no-bme", dest="bme", action="store_false", help="blocks without BME")
    model.add_argument(
        "--pretrained",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="ImageNet weights from timm (default: yes for real data, no for --synthetic)",
    )
    model.add_argument("--last-stride", type=int, choices=(1, 2), default=1)
    optim = p.add_argument_group("optimization")
    optim.add_argument("--epochs", type=int, help="paper: 400")
    optim.add_argument("--lr", type=float, help="Adam learning rate (paper: 3e-4)")
    optim.add_argument("--weight-decay", type=float, default=5e-4, help="(paper: not given)")
    optim.add_argument("--step", type=int, help="decay the lr every STEP epochs (paper: 70)")
    optim.add_argument("--gamma", type=float, default=0.1, help="lr decay factor (paper: 0.1)")
    optim.add_argument("--margin", type=float, default=0.3, help="triplet margin (paper: 0.3)")
    optim.add_argument("--label-smoothing", type=float, default=0.0)
    optim.add_argument("--amp", action="store_true", help="bfloat16 autocast on CUDA")
    optim.add_argument("--max-steps", type=int, help="stop each epoch after this many batches (smoke runs)")
    run = p.add_argument_group("run")
    run.add_argument("--out", type=Path, default=Path("out/train_video_reid"))
    run.add_argument("--resume", type=Path, help="checkpoint.pt, or the --out folder holding one")
    run.add_argument("--eval-every", type=int, help="evaluate every N epochs (and after the last)")
    run.add_argument("--metric", choices=("cosine", "euclidean"), default="cosine")
    run.add_argument("--test-batch", type=int, default=32, help="clips per forward pass at test")
    run.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    run.add_argument(
        "--threads", type=int, help="torch CPU threads, 0: torch's choice (default; synthetic: 1)"
    )
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    return p


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    if not args.synthetic and args.data_root is None:
        build_parser().error("give --data-root (with --dataset mars|ilidsvid) or --synthetic")
    for name, value in (SYNTHETIC if args.synthetic else PAPER).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.size = tuple(args.size)
    args.stages = [int(s) if s.strip().isdigit() else s.strip() for s in args.stages.split(",") if s.strip()]
    return args


def progress(items: Iterable[T_co], enabled: bool, **kwargs: Any) -> Iterator[T_co]:
    """tqdm if installed (and ``enabled``), else the items unchanged."""
    if enabled:
        try:
            from tqdm import tqdm
        except ImportError:
            pass
        else:
            return iter(tqdm(items, leave=False, dynamic_ncols=True, **kwargs))
    return iter(items)


def load_data(args: argparse.Namespace) -> VideoReIDData:
    if args.synthetic:
        num_train_ids, num_test_ids = args.synthetic_ids
        return synthetic_video_reid(num_train_ids, num_test_ids, size=args.size, seed=args.seed)
    if args.dataset == "mars":
        return read_mars(args.data_root)
    return read_ilidsvid(args.data_root, split_file=args.split_file, split=args.split, seed=args.seed)


def make_loaders(
    args: argparse.Namespace, data: VideoReIDData
) -> tuple[DataLoader, PKBatchSampler, DataLoader, DataLoader]:
    pin = args.device.startswith("cuda")
    train_set = ClipDataset(
        data.train,
        args.seq_len,
        args.size,
        "rrs",
        clip_transforms(args.size, train=True, erasing=args.erasing),
    )
    sampler = PKBatchSampler(train_set.labels, args.P, args.K, seed=args.seed)
    train = DataLoader(
        train_set,
        batch_sampler=sampler,
        num_workers=args.workers,
        pin_memory=pin,
        persistent_workers=args.workers > 0,
    )
    sampling: Sampling = "first" if args.test_sampling == "rrs" else "dense"
    test = [
        DataLoader(
            ClipDataset(
                part,
                args.seq_len,
                args.size,
                sampling,
                clip_transforms(args.size, train=False),
                max_clips=args.max_test_clips,
            ),
            batch_size=max(1, args.test_batch // 4),
            num_workers=args.workers,
            collate_fn=collate_test_clips,
            pin_memory=pin,
        )
        for part in (data.query, data.gallery)
    ]
    return train, sampler, test[0], test[1]


@torch.no_grad()
def extract(
    model: nn.Module, loader: DataLoader, args: argparse.Namespace, desc: str
) -> tuple[Tensor, Tensor, Tensor]:
    """One embedding per tracklet (the mean over its clips), with identities and cameras."""
    model.eval()
    features, pids, camids = [], [], []
    for clips, counts, pid, camid in progress(loader, args.progress, desc=desc):
        embeddings = torch.cat(
            [
                model(chunk.to(args.device, non_blocking=True)).float().cpu()
                for chunk in clips.split(args.test_batch)
            ]
        )
        features += [e.mean(0) for e in embeddings.split(counts.tolist())]
        pids.append(pid)
        camids.append(camid)
    return torch.stack(features), torch.cat(pids), torch.cat(camids)


def evaluate(
    model: nn.Module, query: DataLoader, gallery: DataLoader, data: VideoReIDData, args: argparse.Namespace
) -> dict[str, float | int]:
    with torch.autocast("cuda", torch.bfloat16, enabled=args.amp and args.device.startswith("cuda")):
        q, q_pids, q_cams = extract(model, query, args, "query")
        g, g_pids, g_cams = extract(model, gallery, args, "gallery")
    distances = pairwise_distances(q, g, args.metric)
    result = evaluate_ranking(distances, q_pids, g_pids, q_cams, g_cams, junk_ids=data.junk_ids)
    return result.as_dict()


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    criterion: ReIDLoss,
    optimizer: torch.optim.Optimizer,
    args: argparse.Namespace,
    epoch: int,
) -> dict[str, float]:
    model.train()
    totals = {"loss": 0.0, "ce": 0.0, "triplet": 0.0, "acc": 0.0}
    steps = 0
    bar = progress(
        loader, args.progress, desc=f"epoch {epoch}", total=min(len(loader), args.max_steps or math.inf)
    )
    for clips, pids, _ in bar:
        clips, pids = clips.to(args.device, non_blocking=True), pids.to(args.device, non_blocking=True)
        with torch.autocast("cuda", torch.bfloat16, enabled=args.amp and args.device.startswith("cuda")):
            logits, features = model(clips)
        loss, parts = criterion(logits, features.float(), pids)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        steps += 1
        for name, value in (
            ("loss", float(loss.detach())),
            *parts.items(),
            ("acc", float((logits.argmax(1) == pids).float().mean())),
        ):
            totals[name] += value
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{totals['loss'] / steps:.3f}", acc=f"{totals['acc'] / steps:.2f}")
        if args.max_steps and steps >= args.max_steps:
            break
    return {name: value / max(steps, 1) for name, value in totals.items()}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    log_file = (args.out / "log.txt").open("a")

    def log(message: str) -> None:
        print(message, flush=True)
        log_file.write(message + "\n")
        log_file.flush()

    started = time.time()
    data = load_data(args)
    log(data.summary())
    train_loader, sampler, query_loader, gallery_loader = make_loaders(args, data)
    model = VideoReIDNet(
        args.model,
        data.num_train_ids,
        stages=args.stages,
        num_frames=args.seq_len,
        mae=args.mae,
        bme=args.bme,
        pretrained=args.pretrained,
        last_stride=args.last_stride,
    ).to(args.device)
    criterion = ReIDLoss(margin=args.margin, label_smoothing=args.label_smoothing)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=args.lr, weight_decay=args.weight_decay)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=args.step, gamma=args.gamma)
    history: list[dict[str, Any]] = []
    start_epoch = 1
    if args.resume is not None:
        path = args.resume / "checkpoint.pt" if args.resume.is_dir() else args.resume
        state = torch.load(path, map_location=args.device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history, start_epoch = state["history"], state["epoch"] + 1
        log(f"resumed from {path} at epoch {state['epoch']}")
    n_params = sum(p.numel() for p in model.parameters())
    log(
        f"{args.model} with LSTRL at stages {args.stages} (MAE={args.mae}, BME={args.bme}): "
        f"{n_params / 1e6:.2f}M parameters, {data.num_train_ids} classes, device {args.device}"
    )

    def save(epoch: int) -> None:
        (args.out / "metrics.json").write_text(json.dumps({"epochs": history}, indent=2) + "\n")
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "epoch": epoch,
            "history": history,
            "args": vars(args),
            "num_classes": data.num_train_ids,
        }
        torch.save(state, args.out / "checkpoint.tmp")
        (args.out / "checkpoint.tmp").replace(args.out / "checkpoint.pt")

    if start_epoch == 1:
        metrics = evaluate(model, query_loader, gallery_loader, data, args)
        history.append({"epoch": 0, **metrics})
        log(f"epoch 0 (before training): mAP {100 * metrics['mAP']:.1f} rank-1 {100 * metrics['rank1']:.1f}")
        save(0)
    for epoch in range(start_epoch, args.epochs + 1):
        tic = time.time()
        sampler.set_epoch(epoch)
        stats = train_one_epoch(model, train_loader, criterion, optimizer, args, epoch)
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        line = (
            f"epoch {epoch}/{args.epochs}: loss {stats['loss']:.3f} (ce {stats['ce']:.3f}, triplet "
            f"{stats['triplet']:.3f}), train acc {100 * stats['acc']:.1f}, lr {lr:.2e}, "
            f"{time.time() - tic:.0f}s"
        )
        if epoch % args.eval_every == 0 or epoch == args.epochs:
            metrics = evaluate(model, query_loader, gallery_loader, data, args)
            history.append({"epoch": epoch, **metrics, "loss": stats["loss"]})
            line += "; " + ", ".join(f"{k} {100 * metrics[k]:.1f}" for k in ("mAP", "rank1", "rank5"))
        log(line)
        save(epoch)
    log(f"done in {time.time() - started:.0f}s; metrics in {args.out / 'metrics.json'}")
    log_file.close()
    return {"epochs": history}


if __name__ == "__main__":
    main(sys.argv[1:])
