"""LSTRL blocks (MAE, BME) for video person re-identification with any CNN."""

from ._stages import blocks_of
from .block import LSTRLBlock
from .bme import BME
from .flops import count_macs, flop_counter_mode
from .inject import inject_lstrl, set_num_frames
from .mae import MAE
from .reid_net import VideoReIDNet

__all__ = [
    "BME",
    "MAE",
    "LSTRLBlock",
    "VideoReIDNet",
    "blocks_of",
    "count_macs",
    "flop_counter_mode",
    "inject_lstrl",
    "set_num_frames",
]
__version__ = "0.1.0"
