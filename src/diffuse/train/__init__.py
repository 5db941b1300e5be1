"""Training: loop, EMA, AMP, checkpoint/resume."""

from .config import RECIPES, TrainConfig
from .loop import TrainResult, train

__all__ = ["RECIPES", "TrainConfig", "TrainResult", "train"]
