"""Old location of :mod:`lstrl_layers.reid.data` (one module per reader since), kept for one release."""

from .data import *  # noqa: F403
from .data import __all__  # noqa: F401
