"""Audio: the log-mel front end (AudioLDM's settings), vocoders behind one interface, and WAV files."""

from .deps import need  # noqa: F401
from .mel import MelConfig, MelFrontEnd  # noqa: F401
from .vocoder import Vocoder, get_vocoder  # noqa: F401
