"""Raw networks F(x_in, c_noise, cond): tensors and shapes only, no sigma or parameterization."""

from .dit import DIT_PRESETS, DiT, DiTConfig, dit_preset
from .unet import PRESETS, UNet, UNetConfig, preset

ARCHS = ("unet", "dit")


def item_shape(cfg) -> tuple[int, ...]:
    """What a network of config ``cfg`` takes and returns per item: (C, H, W), or (C, T, H, W) for a video DiT."""
    frames = getattr(cfg, "frames", 0)
    return (cfg.out_channels, *((frames,) if frames else ()), *cfg.hw)

__all__ = ["item_shape", "ARCHS", "DIT_PRESETS", "DiT", "DiTConfig", "PRESETS", "UNet", "UNetConfig", "dit_preset", "preset"]
