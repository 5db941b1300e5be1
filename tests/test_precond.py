"""Each parameterization is a denoiser whose loss reduces to the objective of its paper."""

import pytest
import torch
from torch import nn

from diffuse.losses import denoising_loss, loss_weight
from diffuse.precond import Precond, PrecondConfig, coefficients


class Probe(nn.Module):
    """A fixed nonlinear 'network' that records what it was fed."""

    def forward(self, x, c_noise, cond=None):
        self.x_in, self.c_noise = x, c_noise
        return torch.tanh(x * 0.7 + c_noise.view(-1, 1, 1, 1) * 0.01)


@pytest.mark.parametrize("param", ["edm", "eps", "v", "x0"])
def test_denoiser_definitions(param):
    torch.manual_seed(0)
    x0, n = torch.randn(6, 1, 4, 4), torch.randn(6, 1, 4, 4)
    sigma = torch.tensor([0.01, 0.1, 0.5, 1.0, 5.0, 50.0])
    net = Probe()
    d = Precond(net, PrecondConfig(param=param, noise_input="vp_t" if param != "edm" else "log_sigma"))
    x = x0 + sigma.view(-1, 1, 1, 1) * n
    out = d(x, sigma)
    f, a = net(net.x_in, net.c_noise), (1 + sigma**2).rsqrt().view(-1, 1, 1, 1)
    s = sigma.view(-1, 1, 1, 1)
    if param == "eps":  # x_vp = a x, x0 = x - sigma eps
        torch.testing.assert_close(net.x_in, a * x)
        torch.testing.assert_close(out, x - s * f)
    elif param == "v":  # x0 = sqrt(abar) x_vp - sqrt(1 - abar) v
        torch.testing.assert_close(out, a * (a * x) - (s * a) * f)
    elif param == "x0":
        torch.testing.assert_close(out, f)
    else:
        sd = 0.5
        torch.testing.assert_close(out, sd**2 / (s**2 + sd**2) * x + s * sd / (s**2 + sd**2).sqrt() * f)
        torch.testing.assert_close(net.c_noise, sigma.log() / 4)


def test_losses_reduce_to_their_papers():
    torch.manual_seed(1)
    x0, n = torch.randn(5, 1, 4, 4), torch.randn(5, 1, 4, 4)
    sigma = torch.tensor([0.05, 0.3, 1.0, 3.0, 20.0])
    s, a = sigma.view(-1, 1, 1, 1), (1 + sigma**2).rsqrt().view(-1, 1, 1, 1)
    for param, weighting in [("eps", "eps"), ("v", "v"), ("edm", "edm")]:
        net = Probe()
        d = Precond(net, PrecondConfig(param=param))
        loss = denoising_loss(d, x0, sigma, weighting=weighting, noise=n)
        f = net(net.x_in, net.c_noise)
        if param == "eps":  # Ho et al. 2020 Eq. 14: ||eps - eps_hat||^2
            ref = (f - n).pow(2).flatten(1).mean(1)
        elif param == "v":  # ||v - v_hat||^2 with v = a n - sigma a x0
            ref = (f - (a * n - s * a * x0)).pow(2).flatten(1).mean(1)
        else:  # EDM Eq. 8: the effective training target of F has unit weight
            c_skip, c_out, _ = coefficients(sigma, "edm")
            target = (x0 - c_skip.view(-1, 1, 1, 1) * (x0 + s * n)) / c_out.view(-1, 1, 1, 1)
            ref = (f - target).pow(2).flatten(1).mean(1)
        torch.testing.assert_close(loss, ref, rtol=1e-4, atol=1e-5)


def test_min_snr_weight():
    sigma = torch.tensor([0.1, 1.0, 10.0])
    torch.testing.assert_close(loss_weight(sigma, "min_snr", gamma=5.0), torch.tensor([5.0, 1.0, 0.01]))
    with pytest.raises(ValueError):
        loss_weight(sigma, "nope")
