"""Schedules against diffusers' schedulers (the reference implementation)."""

import pytest
import torch

from diffuse import schedules

diffusers = pytest.importorskip("diffusers")


@pytest.mark.parametrize("ours,theirs", [("linear", "linear"), ("cosine", "squaredcos_cap_v2"), ("sigmoid", "sigmoid")])
@pytest.mark.parametrize("ztsnr", [False, True])
def test_vp_alphas_cumprod_match_diffusers(ours, theirs, ztsnr):
    ref = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule=theirs, rescale_betas_zero_snr=ztsnr)
    abar = schedules.alphas_cumprod(ours, 1000, zero_terminal_snr=ztsnr)
    torch.testing.assert_close(abar.float(), ref.alphas_cumprod.float(), rtol=1e-5, atol=1e-6)
    if ztsnr:
        assert abar[-1] == 0 and abar[0] > 0.999


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("n", [10, 50, 999])
def test_vp_timesteps_match_diffusers_ddim(spacing, n):
    ref = diffusers.DDIMScheduler(num_train_timesteps=1000, timestep_spacing=spacing)
    ref.set_timesteps(n)
    assert schedules.vp_timesteps(n, 1000, spacing).tolist() == ref.timesteps.tolist()


def test_vp_sigma_map_roundtrip():
    abar = schedules.alphas_cumprod("cosine")
    sig = schedules.vp_sigmas(abar)
    torch.testing.assert_close(schedules.sigma_to_vp_scale(sig) ** 2, abar)
    t = schedules.sigma_to_t(sig.float()[::37], sig.float())
    torch.testing.assert_close(t, torch.arange(0, 1000, 37).float(), atol=2e-3, rtol=0)


def test_karras_sigmas_follow_eq5():
    s = schedules.karras_sigmas(10, 0.002, 80.0, rho=7)
    assert len(s) == 11 and s[-1] == 0
    assert s[0] == pytest.approx(80.0) and s[-2] == pytest.approx(0.002)
    r = s[:-1] ** (1 / 7)
    torch.testing.assert_close(r[1:] - r[:-1], (r[1] - r[0]).expand(9))  # uniform in sigma^(1/rho)
    with pytest.raises(ValueError):
        schedules.karras_sigmas(0, 0.002, 80)


def test_karras_sampling_sigmas_spend_no_step_at_sigma_min():
    s = schedules.karras_sampling_sigmas(10, 0.002, 80.0)
    assert len(s) == 11 and s[-1] == 0 and (s[:-1] > 0).all()  # still 10 evaluations
    ramp = schedules.karras_sigmas(11, 0.002, 80.0)
    torch.testing.assert_close(s[:-1], ramp[:10])  # the same ramp, its sigma_min point dropped
    assert s[-2] > 0.01  # the last evaluation is at a noise level that matters


def test_training_densities():
    g = torch.Generator().manual_seed(0)
    s = schedules.sample_lognormal_sigma(200_000, -1.2, 1.2, generator=g)
    assert s.log().mean().item() == pytest.approx(-1.2, abs=0.01)
    assert s.log().std().item() == pytest.approx(1.2, abs=0.01)
    abar = schedules.alphas_cumprod("linear")
    sv = schedules.sample_vp_sigma(100_000, abar, generator=g)
    t = schedules.sigma_to_t(sv, schedules.vp_sigmas(abar).float()).round().long()
    counts = torch.bincount(t, minlength=1000).float()
    assert counts.min() > 50 and counts.max() < 160  # uniform over 1000 timesteps, 100 expected each
