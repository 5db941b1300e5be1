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
