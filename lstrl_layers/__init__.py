"""LSTRL blocks (MAE, BME) for video person re-identification with any 2D CNN."""

from .block import LSTRLBlock
from .bme import BME
from .mae import MAE

__all__ = ["BME", "MAE", "LSTRLBlock"]
__version__ = "0.1.0"
