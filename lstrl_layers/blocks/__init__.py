"""The blocks: :class:`ClipBlock` (what every temporal block shares), :class:`MAE`, :class:`BME` and
:class:`LSTRLBlock` (the paper's Fig. 2), whose arguments :class:`LSTRLArgs` describes."""

from .base import LAYOUTS, ClipBlock
from .bme import BME
from .lstrl import LSTRLArgs, LSTRLBlock
from .mae import MAE

__all__ = ["BME", "LAYOUTS", "MAE", "ClipBlock", "LSTRLArgs", "LSTRLBlock"]
