"""Audio: the log-mel front end (AudioLDM's settings), vocoders behind one interface, and WAV files."""

import importlib


def need(module: str):
    """Import an audio dependency, or fail with one line saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        from ..errors import UserError

        raise UserError(f"audio needs the Python package {module}: pip install 'diffuse[audio]'") from None


from .mel import MelConfig, MelFrontEnd  # noqa: E402,F401
from .vocoder import Vocoder, get_vocoder  # noqa: E402,F401
