"""Audio's optional Python dependencies (the ``audio`` extra)."""

import importlib


def need(module: str):
    """Import an audio dependency, or fail with one line saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        from ..errors import UserError

        raise UserError(f"audio needs the Python package {module}: pip install 'diffuse[audio]'") from None
