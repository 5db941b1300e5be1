"""Bits/dim by the VLB and the probability-flow ODE against closed-form likelihoods, and against each other."""

import math

import pytest
import torch
from torch import nn

from diffuse import schedules
from diffuse.likelihood import discretized_gaussian_nll, ode_bpd, vlb_bpd
from diffuse.losses import denoising_loss
from diffuse.precond import Precond, PrecondConfig
from diffuse.toy import GaussianMixture

ABAR = schedules.alphas_cumprod("linear", 1000)


def true_bpd(gm, x):
    return float((-gm.log_prob(x)).mean()) / (x.shape[1] * math.log(2))


@pytest.fixture(scope="module")
def gaussian():
    gm = GaussianMixture(torch.ones(1), torch.tensor([[0.3, -0.2, 0.1]]), torch.tensor([0.5]))
    return gm, gm.sample(20000, torch.Generator().manual_seed(0))  # the one-draw-per-term VLB estimate needs many


def test_vlb_matches_closed_form_on_gaussian_data(gaussian):
    gm, x = gaussian
    v = vlb_bpd(gm.denoiser, x, ABAR, decoder="gaussian", clip=False, generator=torch.Generator().manual_seed(1))
    truth, sem = true_bpd(gm, x), float(v["bpd"].std()) / len(x) ** 0.5
    assert float(v["bpd"].mean()) == pytest.approx(truth, rel=0.02)
    assert float(v["bpd"].mean()) > truth - 3 * sem  # a bound: not below the truth beyond Monte Carlo noise
    torch.testing.assert_close(v["bpd"], v["prior"] + v["kl"] + v["decoder"])
    # the respaced 100-step process is a looser, still valid bound
    v100 = vlb_bpd(gm.denoiser, x, ABAR, steps=100, decoder="gaussian", clip=False, generator=torch.Generator().manual_seed(1))
    assert float(v100["bpd"].mean()) > truth - 3 * sem


def test_ode_matches_closed_form(gaussian):
    gm, x = gaussian
    x = x[:2000]
    o = ode_bpd(gm.denoiser, x, 1e-3, 160.0, steps=64, dequantize=False)
    assert float(o["bpd"].mean()) == pytest.approx(true_bpd(gm, x), rel=0.02)
    # a two-component mixture: the Jacobian is no longer a multiple of I, so Hutchinson is a real estimate
    gm2 = GaussianMixture(torch.tensor([0.5, 0.5]), torch.tensor([[-1.0, 0.5], [1.0, -0.5]]), torch.tensor([0.3, 0.5]))
    x2 = gm2.sample(2000, torch.Generator().manual_seed(2))
    exact = ode_bpd(gm2.denoiser, x2, 1e-3, 160.0, steps=64, dequantize=False)
    hutch = ode_bpd(gm2.denoiser, x2, 1e-3, 160.0, steps=64, exact=False, dequantize=False, generator=torch.Generator().manual_seed(3))
    assert float(exact["bpd"].mean()) == pytest.approx(true_bpd(gm2, x2), rel=0.02)
    assert float(hutch["bpd"].mean()) == pytest.approx(true_bpd(gm2, x2), rel=0.03)
    assert not torch.allclose(hutch["bpd"], exact["bpd"])  # per-example estimates differ; their means agree


def test_discretized_decoder_is_a_distribution():
    levels = torch.arange(256, dtype=torch.float64) / 127.5 - 1
    for mean, std in ((0.0, 0.05), (0.97, 0.2), (-1.2, 0.01)):
        p = torch.exp(-discretized_gaussian_nll(levels, torch.full_like(levels, mean), torch.full_like(levels, math.log(std))))
        assert float(p.sum()) == pytest.approx(1.0, abs=1e-6)


class _MLP(nn.Module):
    def __init__(self, d=2, h=128):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d + 1, h), nn.SiLU(), nn.Linear(h, h), nn.SiLU(), nn.Linear(h, h), nn.SiLU(), nn.Linear(h, d))

    def forward(self, x, c_noise, cond=None):
        return self.net(torch.cat([x, c_noise[:, None].to(x.dtype)], 1))


def test_vlb_and_ode_agree_on_a_trained_toy_model():
    torch.manual_seed(0)
    gm = GaussianMixture(torch.tensor([0.5, 0.5]), torch.tensor([[-1.0, 0.5], [1.0, -0.5]]), torch.tensor([0.3, 0.5]))
    model = Precond(_MLP(), PrecondConfig(param="edm", sigma_data=0.8))
    opt = torch.optim.Adam(model.parameters(), 2e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(1500):
        x0 = gm.sample(512, g).float()
        sigma = torch.exp(torch.empty(512).uniform_(math.log(0.005), math.log(100), generator=g))
        loss = denoising_loss(model, x0, sigma, weighting="edm", sigma_data=0.8).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.double()
    x = gm.sample(2000, g)
    v = float(vlb_bpd(model, x, ABAR, decoder="gaussian", clip=False, generator=g)["bpd"].mean())
    o = float(ode_bpd(model, x, 1e-3, 160.0, steps=64, dequantize=False)["bpd"].mean())
    assert v == pytest.approx(o, rel=0.05)
    assert v == pytest.approx(true_bpd(gm, x), rel=0.06) and o == pytest.approx(true_bpd(gm, x), rel=0.06)
