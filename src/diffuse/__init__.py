"""diffuse: diffusion models around one denoiser contract, D(x, sigma, cond) -> x0_hat.

The public Python API (api.py), imported on first use so that `import diffuse` stays cheap:

    run = diffuse.load("runs/fmnist")
    run.sample(n=16, label="sneaker").save("grid.png")
    run.remake("grid.png", seed=2)           # what made a PNG, with one thing changed
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["load", "Run", "Samples", "read_params", "UserError"]


def __getattr__(name: str) -> Any:
    if name in ("load", "Run", "Samples", "read_params"):
        from . import api

        return getattr(api, name)
    if name == "UserError":
        from .errors import UserError

        return UserError
    raise AttributeError(f"module 'diffuse' has no attribute {name!r}")
