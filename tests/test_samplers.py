"""Samplers against an analytic Gaussian-mixture denoiser and against diffusers' DDIM/DDPM schedulers."""

import pytest
import torch
from torch import nn

from diffuse import samplers, schedules
from diffuse.precond import Precond, PrecondConfig
from diffuse.toy import GaussianMixture

MIX = GaussianMixture(torch.tensor([0.3, 0.7]), torch.tensor([[-2.0, 0.0], [1.5, 1.0]]), torch.tensor([0.3, 0.5]))


def _run(name, n_steps, z, seed=0, **kw):
    sigmas = schedules.karras_sigmas(n_steps, 0.002, 80.0)
    g = torch.Generator().manual_seed(seed)
    return samplers.get_sampler(name)(MIX.denoiser, z * sigmas[0], sigmas, generator=g, **kw)


@pytest.mark.parametrize("name,steps,kw", [("euler", 100, {}), ("ddim", 100, {"eta": 0.5}), ("ddpm", 200, {}),
                                           ("heun", 30, {}), ("heun", 30, {"s_churn": 10.0}), ("dpmpp_2m", 30, {})])
def test_samples_match_the_mixture(name, steps, kw):
    z = torch.randn(4000, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x = _run(name, steps, z, **kw)
    ref = MIX.sample(200_000, torch.Generator().manual_seed(2))
    torch.testing.assert_close(x.mean(0), ref.mean(0), atol=0.08, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), torch.cov(ref.T), atol=0.15, rtol=0)
    frac = (MIX.component(x) == 1).double().mean().item()
    assert frac == pytest.approx(0.7, abs=0.03)
    # within-component spread is the mixture's, not collapsed or inflated
    comp = MIX.component(x)
    assert x[comp == 1].std(0).mean().item() == pytest.approx(0.5, abs=0.06)


def test_higher_order_errors_shrink_faster():
    """Global error against a converged ODE solution: Euler ~ h, Heun and DPM-Solver++(2M) ~ h^2."""
    z = torch.randn(500, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    truth = _run("heun", 1000, z)
    err = {name: [(_run(name, n, z) - truth).norm(dim=1).mean().item() for n in (10, 40)] for name in ("euler", "heun", "dpmpp_2m")}
    rate = {k: v[0] / v[1] for k, v in err.items()}  # error reduction for 4x the steps
    assert rate["euler"] < 6  # first order: about 4
    assert rate["heun"] > 2 * rate["euler"] and rate["dpmpp_2m"] > 2 * rate["euler"]
    assert err["heun"][1] < err["euler"][1] and err["dpmpp_2m"][1] < err["euler"][1]


def test_euler_is_deterministic_ddim():
    z = torch.randn(64, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    torch.testing.assert_close(_run("euler", 12, z), _run("ddim", 12, z, eta=0.0))


# ---- against diffusers on a fixed epsilon network -------------------------------------------------

diffusers = pytest.importorskip("diffusers")


class EpsNet(nn.Module):
    """A fixed epsilon 'network' eps(x_vp, t): the exact predictor for x0 ~ N(0, 0.5^2 I), plus a nonlinear,
    time-dependent perturbation, so trajectories stay O(1) like a trained model's."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w = torch.randn(3, 3, generator=g, dtype=torch.float64) * 0.5
        self.abar = schedules.alphas_cumprod("linear")

    def forward(self, x, t, cond=None):
        x = x.double()
        ti = t.double()
        lo = ti.floor().long().clamp(0, 999)
        ab = torch.lerp(self.abar[lo], self.abar[(lo + 1).clamp(max=999)], ti - lo).view(-1, 1, 1, 1)
        exact = (1 - ab).sqrt() * x / (ab * 0.25 + 1 - ab)
        return exact + 0.1 * torch.tanh(torch.einsum("ij,bjhw->bihw", self.w, x)) * (1 + ti.view(-1, 1, 1, 1) / 1000)


def _ours(name, n, z_vp, seed, **kw):
    cfg = PrecondConfig(param="eps", noise_input="vp_t", beta_schedule="linear")
    model = Precond(EpsNet(), cfg).double()
    sigmas = schedules.vp_discrete_sigmas(n, cfg.abar(), "leading")
    g = torch.Generator().manual_seed(seed)
    x = z_vp * (1 + sigmas[0] ** 2).sqrt()  # diffusers' x_T = z in VP space is x = z / sqrt(abar_T) in sigma space
    return samplers.get_sampler(name)(model, x, sigmas, generator=g, **kw)


def _theirs(scheduler, n, z, seed, **kw):
    scheduler.set_timesteps(n)
    net, g, x = EpsNet(), torch.Generator().manual_seed(seed), z.clone()  # diffusers starts from x_T = z (VP space)
    for t in scheduler.timesteps:
        eps = net(x, t.expand(x.shape[0]))
        x = scheduler.step(eps, t, x, generator=g, **kw).prev_sample
    return x


@pytest.mark.parametrize("n", [10, 50])
def test_ddim_matches_diffusers(n):
    z = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    ref = _theirs(diffusers.DDIMScheduler(beta_schedule="linear", clip_sample=False, set_alpha_to_one=True), n, z, 0, eta=0.0)
    ours = _ours("ddim", n, z, 0)
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=0)


@pytest.mark.parametrize("n", [20, 1000])
def test_ddpm_matches_diffusers(n):
    z = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    sched = diffusers.DDPMScheduler(beta_schedule="linear", clip_sample=False, variance_type="fixed_small", timestep_spacing="leading")
    ref = _theirs(sched, n, z, 7)
    ours = _ours("ddpm", n, z, 7)
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=0)


def test_unknown_sampler():
    with pytest.raises(ValueError, match="unknown sampler"):
        samplers.get_sampler("rk45")
