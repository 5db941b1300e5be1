"""Where cached artefacts live: caption embeddings, domain classifiers, rendered datasets."""

import os
from pathlib import Path


def cache_dir() -> Path:
    """$DIFFUSE_CACHE, or ~/.cache/diffuse."""
    return Path(os.environ.get("DIFFUSE_CACHE", Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "diffuse"))
