"""Old location of :class:`~lstrl_layers.ClipBlock` (``lstrl_layers.clip_block``), kept for one release."""

from .clip_block import LAYOUTS, TORCHSCRIPT_UNSUPPORTED, BlockOutput, ClipBlock, Maps, check_layout

_ClipBlock = ClipBlock  # the name of 0.1

__all__ = [
    "LAYOUTS",
    "TORCHSCRIPT_UNSUPPORTED",
    "BlockOutput",
    "ClipBlock",
    "Maps",
    "_ClipBlock",
    "check_layout",
]
