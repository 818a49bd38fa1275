"""The blocks: :class:`ClipBlock` (what every temporal block shares), :class:`MAE`, :class:`BME` and
:class:`LSTRLBlock` (the paper's Fig. 2)."""

from .base import LAYOUTS, ClipBlock
from .bme import BME
from .lstrl import LSTRLBlock
from .mae import MAE

__all__ = ["BME", "LAYOUTS", "MAE", "ClipBlock", "LSTRLBlock"]
