"""Model surgery: temporal blocks into any CNN after stages or blocks, found by timm's ``feature_info`` or by
module name, run from hooks that rename nothing."""

from .inject import inject_blocks, inject_lstrl, set_num_frames, use_num_frames
from .stages import blocks_of

__all__ = ["blocks_of", "inject_blocks", "inject_lstrl", "set_num_frames", "use_num_frames"]
