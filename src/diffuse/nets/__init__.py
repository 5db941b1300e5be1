"""Raw networks F(x_in, c_noise, cond): tensors and shapes only, no sigma or parameterization."""

from .unet import PRESETS, UNet, UNetConfig, preset

__all__ = ["PRESETS", "UNet", "UNetConfig", "preset"]
