"""LSTRL blocks (MAE, BME) for video person re-identification with any CNN."""

from . import _deprecated
from .blocks import BME, MAE, ClipBlock, LSTRLBlock
from .flops import count_macs, flop_counter_mode
from .reid.model import VideoReIDNet
from .surgery import blocks_of, inject_blocks, inject_lstrl, set_num_frames, use_num_frames

_deprecated.install()

__all__ = [
    "BME",
    "ClipBlock",
    "MAE",
    "LSTRLBlock",
    "VideoReIDNet",
    "blocks_of",
    "count_macs",
    "flop_counter_mode",
    "inject_blocks",
    "inject_lstrl",
    "set_num_frames",
    "use_num_frames",
]
__version__ = "0.2.0.dev0"
