"""Raw networks F(x_in, c_noise, cond): tensors and shapes only, no sigma or parameterization."""

from .dit import DIT_PRESETS, DiT, DiTConfig, dit_preset
from .unet import PRESETS, UNet, UNetConfig, preset

ARCHS = ("unet", "dit")

__all__ = ["ARCHS", "DIT_PRESETS", "DiT", "DiTConfig", "PRESETS", "UNet", "UNetConfig", "dit_preset", "preset"]
