"""Text conditioning: a frozen text encoder behind a small interface, captions, and a cached caption bank."""

from .bank import CaptionBank, TextCond, text_null
from .encoder import TextEncoder, get_encoder

__all__ = ["CaptionBank", "TextCond", "TextEncoder", "get_encoder", "text_null"]
