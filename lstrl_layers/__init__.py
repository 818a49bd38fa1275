"""LSTRL blocks (MAE, BME) for video person re-identification with any CNN."""

from ._compat import check_torchvision

check_torchvision()  # before timm imports it: a torch / torchvision mismatch in one line

from . import _deprecated  # noqa: E402
from .blocks import BME, MAE, ClipBlock, LSTRLBlock  # noqa: E402
from .flops import count_macs, flop_counter_mode  # noqa: E402
from .reid.model import VideoReIDNet  # noqa: E402
from .surgery import blocks_of, inject_blocks, inject_lstrl, set_num_frames, use_num_frames  # noqa: E402

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
