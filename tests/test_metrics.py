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


def test_kid_against_a_direct_double_loop():
    from diffuse.metrics.fid import kid_from_features

    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(7, 3, generator=g).double(), torch.randn(7, 3, generator=g).double() + 0.5
    k = lambda x, y: (float(x @ y) / 3 + 1) ** 3  # noqa: E731
    m = 7
    xx = sum(k(a[i], a[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(b[i], b[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(a[i], b[j]) for i in range(m) for j in range(m)) / m**2
    mean, _ = kid_from_features(a, b, subsets=1, subset_size=7)  # one subset of all points: no subsampling
    assert mean == pytest.approx(xx + yy - 2 * xy, rel=1e-9)
    same, _ = kid_from_features(torch.randn(3000, 8, generator=g), torch.randn(3000, 8, generator=g), subsets=20)
    shifted, _ = kid_from_features(torch.randn(3000, 8, generator=g), torch.randn(3000, 8, generator=g) + 0.5, subsets=20)
    assert abs(same) < 0.01 < shifted


def test_precision_recall_sees_fidelity_and_diversity():
    from diffuse.metrics.precision_recall import precision_recall

    g = torch.Generator().manual_seed(0)
    real = torch.randn(2000, 2, generator=g)
    p, r = precision_recall(real, torch.randn(2000, 2, generator=g))
    assert p > 0.9 and r > 0.9
    half = torch.randn(4000, 2, generator=g)
    half = half[half[:, 0] > 0][:2000]  # mode dropping: all on-support, half the support missing
    p, r = precision_recall(real, half)
    assert p > 0.9 and 0.35 < r < 0.7
    p, r = precision_recall(real, torch.randn(2000, 2, generator=g) + 6)
    assert p < 0.05 and r < 0.05


def test_reference_features_are_cached_by_content(tmp_path, monkeypatch):
    from diffuse.data import ImageDataset
    from diffuse.metrics import reference_features

    monkeypatch.setenv("DIFFUSE_CACHE", str(tmp_path))
    calls = []

    def featurize(images):
        calls.append(len(images))
        return images.flatten(1).double()[:, :4]

    ds = ImageDataset(torch.randint(0, 256, (10, 1, 4, 4), dtype=torch.uint8), None, [], "toy")
    f1 = reference_features("net", ds, featurize)
    f2 = reference_features("net", ds, featurize)
    assert calls == [10] and torch.equal(f1, f2)
    ds2 = ImageDataset(ds.images.flip(0), None, [], "toy")  # same name, other content
    reference_features("net", ds2, featurize)
    reference_features("other-net", ds, featurize)
    assert calls == [10, 10, 10]


def test_inception_network_shape_and_weight_checks(tmp_path):
    from safetensors.torch import save_file

    from diffuse.errors import UserError
    from diffuse.metrics.inception import FIDInception, inception_features, load_inception

    torch.manual_seed(0)
    net = FIDInception().eval()
    assert sum(p.numel() for p in net.parameters()) == pytest.approx(23.9e6, rel=0.02)  # FID Inception: 23.9M with fc
    path = tmp_path / "pt_inception.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    loaded = load_inception(path)
    im = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    f = inception_features(loaded, im)
    assert f.shape == (2, 2048)
    torch.testing.assert_close(f, inception_features(net, im))
    with pytest.raises(UserError, match="--inception-weights"):
        load_inception(None)
    with pytest.raises(UserError, match="not found"):
        load_inception(tmp_path / "missing.pth")
    save_file({"fc.weight": torch.zeros(3, 3)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(UserError, match="not the FID Inception"):
        load_inception(tmp_path / "other.safetensors")
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="cannot read"):
        load_inception(tmp_path / "bad.pth")
