"""diffuse: diffusion models around one denoiser contract, D(x, sigma, cond) -> x0_hat."""

__version__ = "0.1.0"
