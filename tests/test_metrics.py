"""FID against closed forms, and the domain classifier on digits."""

import pytest
import torch

from diffuse.data import load_dataset
from diffuse.metrics.classifier import get_classifier, predict
from diffuse.metrics.fid import fid_from_features, frechet_distance


def test_frechet_distance_closed_form():
    # diagonal Gaussians: FID = ||mu1 - mu2||^2 + sum (s1 - s2)^2
    mu1, mu2 = torch.tensor([0.0, 1.0, 2.0]).double(), torch.tensor([1.0, 1.0, 0.0]).double()
    s1, s2 = torch.tensor([1.0, 2.0, 0.5]).double(), torch.tensor([2.0, 2.0, 1.5]).double()
    fd = frechet_distance(mu1, torch.diag(s1**2), mu2, torch.diag(s2**2))
    assert fd == pytest.approx(5.0 + 1.0 + 0.0 + 1.0, rel=1e-9)
    # a rotated pair: covariances that do not commute
    r = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64))[0]
    a, b = torch.diag(s1**2), r @ torch.diag(s2**2) @ r.T
    from scipy.linalg import sqrtm

    ref = float((a + b - 2 * torch.from_numpy(sqrtm((a @ b).numpy()).real)).trace())
    assert frechet_distance(mu1, a, mu1, b) == pytest.approx(ref, rel=1e-6)


def test_fid_of_samples():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(20000, 4, generator=g), torch.randn(20000, 4, generator=g)
    assert fid_from_features(a, b) < 0.01
    assert fid_from_features(a, b + 1.0) == pytest.approx(4.0, abs=0.05)


def test_digits_classifier_is_accurate_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFUSE_CACHE", str(tmp_path))
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    net, acc = get_classifier(train, test, log=lambda m: None)
    assert acc > 0.9
    assert len(list((tmp_path / "classifiers").glob("*.safetensors"))) == 1
    net2, acc2 = get_classifier(train, test, log=lambda m: pytest.fail("retrained despite the cache"))
    assert acc2 == acc
    f1, p1 = predict(net, test.images[:50])
    f2, p2 = predict(net2, test.images[:50])
    torch.testing.assert_close(f1, f2, atol=1e-5, rtol=1e-4)  # channels_last vs default layout
