"""Noise shared across frames (noise.py, PYoCo's mixed prior): its covariance, the samplers under it against the exact
denoiser of Gaussian clips, and the trainer and `generate` drawing from it."""

import pytest
import torch

from diffuse.noise import color, covariance_sqrt, sampler_noise
from diffuse.samplers import get_sampler
from diffuse.schedules import karras_sigmas


def _frame_corr(x: torch.Tensor) -> tuple[float, float]:
    """(mean variance, mean correlation of two different frames) of clips x [B, C, T, H, W], over every place."""
    t = x.shape[2]
    v = x.double().permute(0, 1, 3, 4, 2).reshape(-1, t)  # [places, T]
    c = torch.cov(v.T)  # [T, T]
    var = c.diagonal().mean()
    off = (c.sum() - c.diagonal().sum()) / (t * (t - 1))
    return float(var), float(off / var)


@pytest.mark.parametrize("t,share", [(8, 0.5), (4, 0.2), (16, 0.9)])
def test_color_is_the_square_root_of_the_frames_covariance(t, share):
    m = covariance_sqrt(t, share)
    sigma = (1 - share) * torch.eye(t, dtype=torch.float64) + share * torch.ones(t, t, dtype=torch.float64)
    assert torch.allclose(m @ m.T, sigma, atol=1e-12) and torch.allclose(m, m.T)
    var, corr = _frame_corr(color(torch.randn(400, 2, t, 5, 5, generator=torch.Generator().manual_seed(0)), share))
    assert abs(var - 1) < 0.03 and abs(corr - share) < 0.03


def test_white_noise_is_left_as_it_is_and_bad_shares_are_refused():
    z = torch.randn(2, 1, 8, 4, 4)
    assert color(z, 0.0) is z and sampler_noise(0.0, None) is None
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match=r"\[0, 1\)"):
            color(z, bad)
    with pytest.raises(ValueError, match="clips"):
        color(torch.randn(2, 1, 4, 4), 0.5)


S_DATA = 0.5  # Gaussian clips x0 ~ N(0, S_DATA^2 I): every frame independent


def _exact_denoiser(share: float):
    """E[x0 | x0 + sigma n] for n of the mixed prior: s^2 (s^2 I + sigma^2 Sigma)^-1 x, which acts on the mean over frames
    (Sigma's eigenvalue 1 - share + share T) and on the rest (eigenvalue 1 - share) by two factors."""
    def d(x, sigma, cond=None):
        t = x.shape[2]
        s2 = sigma.view(-1, 1, 1, 1, 1).to(x.dtype) ** 2
        mean = x.mean(2, keepdim=True)
        on_mean = S_DATA**2 / (S_DATA**2 + s2 * (1 - share + share * t))
        on_rest = S_DATA**2 / (S_DATA**2 + s2 * (1 - share))
        return on_rest * (x - mean) + on_mean * mean
    return d


@pytest.mark.parametrize("sampler,steps", [("dpmpp_2m", 40), ("heun", 30), ("ddpm", 200)])
def test_samplers_under_the_prior_draw_the_data_distribution_and_fail_with_white_noise(sampler, steps):
    """Deterministic samplers from the prior's start, and DDPM with the prior's fresh noise, end at N(0, s^2 I): variance
    s^2, frames uncorrelated. White noise in place of the prior's (start, or DDPM's fresh noise) leaves the frames
    anti-correlated: the check can fail."""
    share, t = 0.5, 8
    sigmas = karras_sigmas(steps, 0.002, 80.0).double()
    den, run = _exact_denoiser(share), get_sampler(sampler)
    z = torch.randn(500, 1, t, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    g = torch.Generator().manual_seed(2)
    x = run(den, color(z, share) * sigmas[0], sigmas, generator=g, noise_sampler=sampler_noise(share, g))
    var, corr = _frame_corr(x)
    assert abs(var / S_DATA**2 - 1) < 0.06 and abs(corr) < 0.03, (var, corr)
    g = torch.Generator().manual_seed(2)
    wrong = run(den, (z if sampler != "ddpm" else color(z, share)) * sigmas[0], sigmas, generator=g)  # white start / fresh noise
    assert _frame_corr(wrong)[1] < -0.07


def test_training_and_generate_draw_the_runs_noise(tmp_path, monkeypatch):
    """A --frame-noise run: the trainer's noise has the asked correlation across frames (white without the flag), the
    run's config keeps it, `generate` starts from it and hands the stochastic samplers its fresh noise."""
    from cli_helpers import diffuse

    import diffuse.generate as gen_mod
    import diffuse.train.loop as loop
    from diffuse.generate import SampleConfig, generate
    from diffuse.model import load_model

    seen = []
    real = loop.denoising_loss
    monkeypatch.setattr(loop, "denoising_loss", lambda *a, **k: (seen.append(k["noise"]), real(*a, **k))[1])
    runs = {}
    for share in (0.0, 0.6):
        runs[share] = tmp_path / f"r{share}"
        diffuse("train", "--data", "moving-digits", "--cond", "class", "--preset", "tiny", "--temporal-patch", "2",
                "--steps", "2", "--batch-size", "32", "--frame-noise", share, "--sample-every", "1000", "--out", runs[share])
    white, mixed = torch.cat(seen[:2]), torch.cat(seen[2:])
    assert abs(_frame_corr(white)[1]) < 0.05 and abs(_frame_corr(mixed)[1] - 0.6) < 0.05
    model, mcfg = load_model(runs[0.6])
    assert mcfg.precond.frame_noise == 0.6
    assert mcfg.fingerprint() != load_model(runs[0.0])[1].fingerprint()

    starts, fresh = [], []
    def spy(name):
        inner = get_sampler(name)
        def s(den, x, sigmas, **kw):
            starts.append(x / sigmas[0])
            fresh.append(kw.get("noise_sampler"))
            return inner(den, x, sigmas, **kw)
        return s
    monkeypatch.setattr(gen_mod, "get_sampler", spy)
    generate(model, 64, SampleConfig(sampler="ddpm", steps=2, seed=3, batch_size=64), torch.arange(64) % 80)
    assert abs(_frame_corr(starts[-1])[1] - 0.6) < 0.06 and fresh[-1] is not None
    assert abs(_frame_corr(fresh[-1](torch.zeros(64, 1, 8, 16, 16)))[1] - 0.6) < 0.06
    white_model, _ = load_model(runs[0.0])
    generate(white_model, 64, SampleConfig(sampler="ddpm", steps=2, seed=3, batch_size=64), torch.arange(64) % 80)
    assert abs(_frame_corr(starts[-1])[1]) < 0.06 and fresh[-1] is None


def test_frame_noise_flag_errors(tmp_path, capsys):
    from cli_helpers import one_line_error_in_process

    base = ["train", "--data", "moving-digits", "--steps", "1", "--out", tmp_path / "r"]
    one_line_error_in_process(capsys, "--frame-noise is a share", *base, "--frame-noise", "1")
    one_line_error_in_process(capsys, "--frame-noise is a share", *base, "--frame-noise", "-0.5")
    one_line_error_in_process(capsys, "are for video data; digits holds images", "train", "--data", "digits",
                              "--frame-noise", "0.5", "--steps", "1", "--out", tmp_path / "d")
    assert not (tmp_path / "r").exists() and not (tmp_path / "d").exists()

