"""Embedding throughput of the paper's model: clips per second in eager PyTorch, torch.compile, ONNX Runtime.

What ``lstrl embed`` runs, without the decoding: ``VideoReIDNet`` (ResNet-50 with LSTRL blocks at layer2 and
layer3, +MAE+BME) embeds batches of clips ``(B, T, 3, H, W)`` in eval mode; ``eager`` is the model as built
(contiguous), ``channels-last`` the same model in the channels-last memory format (what ``lstrl embed``'s
PyTorch backend runs). Each backend gets the same input;
the timed calls of the backends are interleaved (one call of each in turn, ``--repeats`` rounds, after one
untimed warm-up call each, which for torch.compile includes compiling), and each figure is the median. ONNX
Runtime runs the file ``lstrl_layers.export.export_onnx`` writes (dynamic batch and clip length) with as many
threads as PyTorch. Every backend's embeddings are compared with eager's.

    python benchmarks/embed.py                       # resnet50, T=8, 256x128, batches 1 and 32
    python benchmarks/embed.py --backends eager onnxruntime --batches 1 8 --repeats 3
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from _measure import close_environment, environment

from lstrl_layers import VideoReIDNet
from lstrl_layers.cli.argtypes import add_num_frames, positive_int
from lstrl_layers.export import export_onnx

BACKENDS = ("eager", "channels-last", "compile", "onnxruntime")
SMOKE = dict(backbone="test_resnet", num_frames=4, size=(32, 16), batches=[1, 2], repeats=2)
Embed = Callable[[torch.Tensor], torch.Tensor]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--backbone", default="resnet50", help="timm model of VideoReIDNet (default resnet50)"
    )
    add_num_frames(parser, 8, "frames per clip (default 8)")
    parser.add_argument("--size", type=positive_int, nargs=2, default=[256, 128], metavar=("H", "W"))
    parser.add_argument("--batches", type=positive_int, nargs="+", default=[1, 32], help="clips per call")
    parser.add_argument("--backends", choices=BACKENDS, nargs="+", default=list(BACKENDS))
    parser.add_argument("--repeats", type=positive_int, default=5, help="timed calls per backend and batch")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch and ONNX Runtime threads")
    parser.add_argument(
        "--smoke", action="store_true", help="a tiny model and input, to check the script runs"
    )
    parser.add_argument("--json", type=Path, default=None, help="write the figures as JSON")
    return parser


def _onnx(net: VideoReIDNet, example: torch.Tensor, folder: Path) -> tuple[Embed, float]:
    import onnxruntime

    tic = time.perf_counter()
    path = export_onnx(net, folder / "model.onnx", example, check=False).path
    seconds = time.perf_counter() - tic
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda clips: torch.from_numpy(session.run(None, {"video": clips.numpy()})[0]), seconds


def _inference(module: Any) -> Embed:
    """``module`` called under ``torch.inference_mode``."""

    def run(clips: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return module(clips)

    return run


def _backends(
    net: VideoReIDNet, names: Sequence[str], example: torch.Tensor, folder: Path
) -> dict[str, Embed]:
    runs: dict[str, Embed] = {}
    for name in names:
        if name == "eager":
            runs[name] = _inference(net)
        elif name == "channels-last":  # what lstrl embed runs: the same model in the channels-last format
            runs[name] = _inference(copy.deepcopy(net).to(memory_format=torch.channels_last))
        elif name == "compile":
            runs[name] = _inference(torch.compile(net))
        else:
            runs[name], seconds = _onnx(net, example, folder)
            print(f"ONNX export: {seconds:.1f} s", file=sys.stderr)
    return runs


def measure(runs: dict[str, Embed], clips: torch.Tensor, repeats: int) -> dict[str, dict[str, float]]:
    """First-call time, median time and largest difference from eager of each backend, calls interleaved."""
    results: dict[str, dict[str, float]] = {}
    outputs = {}
    for name, run in runs.items():  # warm-up: compiles torch.compile's graph for this shape
        tic = time.perf_counter()
        outputs[name] = run(clips)
        results[name] = {"first_call_s": time.perf_counter() - tic}
        print(
            f"batch {len(clips)}, {name}: first call {results[name]['first_call_s']:.1f} s", file=sys.stderr
        )
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            tic = time.perf_counter()
            run(clips)
            times[name].append(time.perf_counter() - tic)
    reference = outputs.get("eager")
    for name in runs:
        median = statistics.median(times[name])
        results[name] |= {"ms": median * 1e3, "clips_per_s": len(clips) / median}
        if reference is not None:
            results[name]["max_abs_diff"] = float((outputs[name].float() - reference.float()).abs().max())
    return results


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    if args.smoke:
        for key, value in SMOKE.items():
            setattr(args, key, value)
    if args.threads:
        torch.set_num_threads(args.threads)
    env = environment(torch.device("cpu"))
    torch.manual_seed(0)
    net = VideoReIDNet(
        args.backbone, num_classes=625, stages=(2, 3), num_frames=args.num_frames, zero_init=False
    )
    net.eval()
    height, width = args.size
    print(
        f"VideoReIDNet({args.backbone}, +MAE+BME at stages 2 and 3), T={args.num_frames}, {height}x{width}, "
        f"float32, eval; {env['cpu']}, {env['threads']} threads, torch {env['torch']}"
    )
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        example = torch.randn(2, args.num_frames, 3, height, width)
        runs = _backends(net, args.backends, example, Path(folder))
        for batch in args.batches:
            clips = torch.randn(batch, args.num_frames, 3, height, width)
            for name, figures in measure(runs, clips, args.repeats).items():
                rows.append({"backend": name, "batch": batch, **figures})
    close_environment(env)
    eager = {row["batch"]: row["ms"] for row in rows if row["backend"] == "eager"}
    titles = f"{'ms/call':>9} {'clips/s':>9} {'vs eager':>9} {'first call':>10} {'max diff':>9}"
    print(f"{'backend':<14} {'batch':>5} {titles}")
    for row in rows:
        speed = f"{eager[row['batch']] / row['ms']:.2f}x" if row["batch"] in eager else ""
        diff = f"{row['max_abs_diff']:.1e}" if "max_abs_diff" in row else ""
        print(
            f"{row['backend']:<14} {row['batch']:>5} {row['ms']:>9.1f} {row['clips_per_s']:>9.2f} {speed:>9} "
            f"{row['first_call_s']:>9.1f}s {diff:>9}"
        )
    if env.get("busy"):
        print(f"note: other processes used the CPU during the run (load average {env['load_average_end']})")
    result = {
        "environment": env,
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "rows": rows,
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return result


if __name__ == "__main__":
    main()
