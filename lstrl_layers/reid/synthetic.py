"""Old location of :mod:`lstrl_layers.reid.data.synthetic`, kept for one release."""

from .data.synthetic import *  # noqa: F403
from .data.synthetic import __all__  # noqa: F401
