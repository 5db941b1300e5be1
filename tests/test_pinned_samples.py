"""Runs written before the modality refactor (issue 13) still load and sample the same images.

tests/data/run_v1_* are run directories (config.json + model.safetensors) written by `diffuse train` on digits
(60 steps; a class-conditional U-Net and an unconditional DiT) at the commit that added this file, and
tests/data/pinned_samples.npz holds what ``pinned_outputs`` returned then. A refactor of the sampling path
(generate, guidance, editing, the networks' conditioning) must keep them: equal up to one uint8 level on a
handful of pixels, which allows another CPU's float rounding but no change of seeding, schedule or arithmetic.
"""

from pathlib import Path

import numpy as np
import torch

from diffuse.editing import Edit
from diffuse.generate import SampleConfig, generate_uint8
from diffuse.model import load_model

DATA = Path(__file__).parent / "data"
FP32 = "fp32"  # the pin is float32 arithmetic: "auto" would be bf16 on an AMX CPU


def pinned_outputs() -> dict[str, np.ndarray]:
    """uint8 [N, C, H, W] samples of the two pinned runs under several samplers, guidance and img2img."""
    torch.manual_seed(0)
    out = {}
    unet, _ = load_model(DATA / "run_v1_unet_class")
    labels = torch.arange(20) % 10
    for sampler in ("dpmpp_2m", "heun", "ddim", "ddpm", "euler"):
        out[f"unet_{sampler}"] = generate_uint8(unet, 20, SampleConfig(sampler=sampler, steps=6, seed=3, precision=FP32), labels)
    out["unet_guidance_1"] = generate_uint8(unet, 20, SampleConfig(steps=6, seed=4, guidance=1.0, precision=FP32), labels)
    init = out["unet_dpmpp_2m"][:4].float() / 127.5 - 1
    out["unet_img2img"] = generate_uint8(unet, 4, SampleConfig(steps=8, seed=5, precision=FP32), labels[:4], edit=Edit(init, 0.6))
    dit, _ = load_model(DATA / "run_v1_dit_none")
    for sampler in ("dpmpp_2m", "euler"):
        out[f"dit_{sampler}"] = generate_uint8(dit, 12, SampleConfig(sampler=sampler, steps=5, seed=7, precision=FP32))
    return {k: v.numpy() for k, v in out.items()}


def test_runs_written_before_still_sample_the_same_images():
    ref = np.load(DATA / "pinned_samples.npz")
    now = pinned_outputs()
    assert sorted(now) == sorted(ref.files)
    for k in ref.files:
        assert now[k].shape == ref[k].shape and now[k].dtype == np.uint8, k
        diff = np.abs(now[k].astype(int) - ref[k].astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01, f"{k}: {int(diff.max())} max, {(diff > 0).mean():.3f} of pixels differ"


def test_the_pin_can_fail():
    """Another seed gives other images, so the comparison above would notice a change of seeding."""
    ref = np.load(DATA / "pinned_samples.npz")
    unet, _ = load_model(DATA / "run_v1_unet_class")
    other = generate_uint8(unet, 20, SampleConfig(steps=6, seed=30), torch.arange(20) % 10).numpy()
    assert (np.abs(other.astype(int) - ref["unet_dpmpp_2m"].astype(int)) > 1).mean() > 0.1
