"""Classifier-free guidance as a denoiser wrapper."""

import torch

from diffuse.guidance import cfg, class_null, drop_labels


class Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, x, sigma, cond):
        self.calls.append(len(x))
        return x * 0 + cond.view(-1, 1).float()  # "denoised" = the label value


def test_cfg_convention_and_single_batched_forward():
    d, x, sigma, labels = Recorder(), torch.zeros(4, 2), torch.ones(4), torch.tensor([1, 2, 3, 4])
    null = class_null(10)  # null label 10
    torch.testing.assert_close(cfg(d, 1.0, null)(x, sigma, labels), labels.view(-1, 1).float().expand(4, 2))
    torch.testing.assert_close(cfg(d, 0.0, null)(x, sigma, labels), torch.full((4, 2), 10.0))
    d.calls.clear()
    out = cfg(d, 3.0, null)(x, sigma, labels)
    torch.testing.assert_close(out, (10 + 3 * (labels - 10)).view(-1, 1).float().expand(4, 2))
    assert d.calls == [8]  # cond and uncond in one forward


def test_guidance_interval_guides_only_inside_and_per_item():
    """lo < sigma <= hi gets the guided value, outside it the conditional model, item by item; a batch wholly outside
    costs one unguided forward. An interval over every sigma is plain guidance."""
    d, x, labels = Recorder(), torch.zeros(4, 2), torch.tensor([1, 2, 3, 4])
    null = class_null(10)
    guided = (10 + 3 * (labels - 10)).view(-1, 1).float().expand(4, 2)
    plain = labels.view(-1, 1).float().expand(4, 2)
    sigma = torch.tensor([0.1, 0.5, 2.0, 9.0])  # below, at lo (excluded), inside, above
    out = cfg(d, 3.0, null, (0.5, 5.0))(x, sigma, labels)
    torch.testing.assert_close(out, torch.where(torch.tensor([False, False, True, False]).view(-1, 1), guided, plain))
    torch.testing.assert_close(cfg(d, 3.0, null, (0.0, 100.0))(x, sigma, labels), guided)
    torch.testing.assert_close(cfg(d, 3.0, null, (0.0, 5.0))(x, torch.full((4,), 5.0), labels), guided)  # hi is included
    d.calls.clear()
    torch.testing.assert_close(cfg(d, 3.0, null, (20.0, 30.0))(x, sigma, labels), plain)
    assert d.calls == [4]


def test_label_dropout_rate():
    labels = torch.zeros(100_000, dtype=torch.long)
    out = drop_labels(labels, 0.1, 10, torch.Generator().manual_seed(0))
    assert (out == 10).float().mean().item() == __import__("pytest").approx(0.1, abs=0.005)
    assert set(out.unique().tolist()) == {0, 10}
    assert drop_labels(labels, 0.0, 10) is labels


class Fixed:
    """A denoiser whose conditional and null predictions are given tensors (per call, from a list)."""

    def __init__(self, pairs):
        self.pairs = list(pairs)

    def __call__(self, x, sigma, cond):
        d_cond, d_null = self.pairs.pop(0)
        return torch.cat([d_cond, d_null])


def _pair(gen, b=3):
    return torch.randn(b, 2, 4, 4, generator=gen), torch.randn(b, 2, 4, 4, generator=gen)


def test_apg_with_eta_1_and_nothing_else_is_cfg():
    from diffuse.guidance import Projection
    gen = torch.Generator().manual_seed(0)
    c, u = _pair(gen)
    x, sigma, labels, null = torch.zeros(3, 2, 4, 4), torch.ones(3), torch.tensor([0, 1, 2]), class_null(10)
    out = cfg(Fixed([(c, u)]), 4.0, null, apg=Projection(eta=1.0))(x, sigma, labels)
    torch.testing.assert_close(out, u + 4.0 * (c - u), atol=1e-5, rtol=1e-5)


def test_apg_update_splits_along_the_conditional_prediction_and_caps_its_norm():
    """eta 0: the guided output differs from D(c) only orthogonally to D(c), item by item; eta 0.5 keeps half of the
    parallel part; a rescale r caps the update's norm at r before the split."""
    from diffuse.guidance import Projection, projected_update
    gen = torch.Generator().manual_seed(1)
    c, u = _pair(gen)
    x, sigma, labels, null = torch.zeros(3, 2, 4, 4), torch.ones(3), torch.tensor([0, 1, 2]), class_null(10)
    out = cfg(Fixed([(c, u)]), 5.0, null, apg=Projection(eta=0.0))(x, sigma, labels)
    step = (out - c).flatten(1)
    assert torch.allclose((step * c.flatten(1)).sum(1), torch.zeros(3), atol=1e-4)
    delta = (c - u).flatten(1)
    unit = c.flatten(1) / c.flatten(1).norm(dim=1, keepdim=True)
    par = (delta * unit).sum(1, keepdim=True) * unit
    torch.testing.assert_close(step, 4.0 * (delta - par), atol=1e-5, rtol=1e-5)
    half = projected_update(c - u, c, Projection(eta=0.5)).flatten(1)
    torch.testing.assert_close(half, delta - 0.5 * par, atol=1e-5, rtol=1e-5)
    r = 0.5 * float(delta.norm(dim=1).min())
    capped = projected_update(c - u, c, Projection(eta=1.0, rescale=r)).flatten(1)
    torch.testing.assert_close(capped.norm(dim=1), torch.full((3,), r), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(projected_update(c - u, c, Projection(eta=1.0, rescale=1e9)), c - u)


def test_apg_momentum_runs_within_a_pass_and_restarts_when_sigma_rises():
    from diffuse.guidance import Projection
    gen = torch.Generator().manual_seed(2)
    (c1, u1), (c2, u2), (c3, u3) = _pair(gen), _pair(gen), _pair(gen)
    x, labels, null = torch.zeros(3, 2, 4, 4), torch.tensor([0, 1, 2]), class_null(10)
    p = Projection(eta=1.0, momentum=-0.5)
    g = cfg(Fixed([(c1, u1), (c2, u2), (c3, u3)]), 3.0, null, apg=p)
    torch.testing.assert_close(g(x, torch.full((3,), 5.0), labels), c1 + 2 * (c1 - u1), atol=1e-5, rtol=1e-5)
    avg = (c2 - u2) - 0.5 * (c1 - u1)
    torch.testing.assert_close(g(x, torch.full((3,), 2.0), labels), c2 + 2 * avg, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(g(x, torch.full((3,), 9.0), labels), c3 + 2 * (c3 - u3), atol=1e-5, rtol=1e-5)  # restart


def test_apg_settings_are_checked():
    import pytest

    from diffuse.guidance import Projection
    for bad in (Projection(rescale=-1.0), Projection(momentum=0.5), Projection(momentum=-1.0), Projection(eta=float("nan"))):
        with pytest.raises(ValueError):
            bad.check()
    assert Projection(eta=0.0, rescale=2.0, momentum=-0.5).check().rescale == 2.0
