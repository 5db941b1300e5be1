"""uint8 pixels <-> model space [-1, 1]: the image map, below every layer that needs it."""

import torch


def to_model_space(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N, C, H, W] in [0, 255] -> float32 in [-1, 1]; items already in model space (float) pass as float32."""
    return images.float() if images.is_floating_point() else images.float() / 127.5 - 1


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float in [-1, 1] -> uint8 [0, 255], rounded and clipped."""
    return ((x.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
