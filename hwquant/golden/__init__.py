"""Integer golden model (NumPy only): the executable definition of hwquant's arithmetic."""

from .arith import add_requantize, avg_requantize, requantize, rshift_rhu, sat
from .network import im2col, predict, run, run_layer

__all__ = ["rshift_rhu", "sat", "requantize", "avg_requantize", "add_requantize", "run",
           "run_layer", "predict", "im2col"]
