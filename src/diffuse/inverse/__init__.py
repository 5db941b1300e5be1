"""Reconstruction from linear measurements with a trained run as the prior: operators (A, A^T, SVD), solvers (DDRM,
DPS, DiffPIR, hard data consistency), the `diffuse restore` pipeline, classical baselines and their benchmark."""
