"""LSTRL blocks (MAE, BME) for video person re-identification with any CNN."""

from ._compat import check_torchvision

check_torchvision()  # before timm imports it: a torch / torchvision mismatch in one line

from ._stages import blocks_of  # noqa: E402
from .block import LSTRLBlock  # noqa: E402
from .bme import BME  # noqa: E402
from .clip_block import ClipBlock  # noqa: E402
from .flops import count_macs, flop_counter_mode  # noqa: E402
from .inject import inject_lstrl, set_num_frames, use_num_frames  # noqa: E402
from .mae import MAE  # noqa: E402
from .reid_net import VideoReIDNet  # noqa: E402

__all__ = [
    "BME",
    "ClipBlock",
    "MAE",
    "LSTRLBlock",
    "VideoReIDNet",
    "blocks_of",
    "count_macs",
    "flop_counter_mode",
    "inject_lstrl",
    "set_num_frames",
    "use_num_frames",
]
__version__ = "0.2.0.dev0"
