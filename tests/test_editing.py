"""img2img, inpainting and super-resolution: exact properties on any network, quality on trained digit models."""


import numpy as np
import pytest
from cli_helpers import diffuse, one_line_error
import torch
import torch.nn.functional as F
from PIL import Image

from diffuse.data import load_dataset, to_model_space, to_uint8
from diffuse.editing import Edit
from diffuse.generate import SampleConfig, generate_uint8
from diffuse.model import ModelConfig, build_denoiser
from diffuse.nets.unet import preset


@pytest.fixture(scope="module")
def random_model():
    """An untrained class-conditional U-Net with random (not zero) output layers: the exact properties hold for any D."""
    torch.manual_seed(0)
    m = build_denoiser(ModelConfig(net=preset("tiny", image_size=8, num_classes=10, attn_resolutions=(2,)), cond="class",
                                   class_names=[str(i) for i in range(10)]))
    for p in m.parameters():
        torch.nn.init.normal_(p, std=0.05)
    return m.eval().requires_grad_(False)


def _images(n=6):
    return load_dataset("digits", "test").images[:n]


def test_img2img_strength_0_is_the_input_and_1_is_plain_sampling(random_model):
    x = _images()
    labels = torch.arange(6)
    for sampler in ("ddim", "dpmpp_2m", "heun"):
        cfg = SampleConfig(sampler=sampler, steps=6, seed=3)
        same = generate_uint8(random_model, 6, cfg, labels, edit=Edit(to_model_space(x), strength=0.0))
        assert torch.equal(same, x)
        plain = generate_uint8(random_model, 6, cfg, labels)
        full = generate_uint8(random_model, 6, cfg, labels, edit=Edit(to_model_space(x), strength=1.0))
        assert torch.equal(full, plain)
        half = generate_uint8(random_model, 6, cfg, labels, edit=Edit(to_model_space(x), strength=0.5))
        # in between: closer to the input than plain sampling is
        assert (half.float() - x.float()).abs().mean() < (plain.float() - x.float()).abs().mean()


@pytest.mark.parametrize("sampler,resample", [("ddim", 1), ("dpmpp_2m", 1), ("heun", 1), ("ddpm", 1), ("ddim", 3)])
def test_inpainting_keeps_the_known_pixels(random_model, sampler, resample):
    x = _images()
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :4, :] = 1  # keep the top half
    out = generate_uint8(random_model, 6, SampleConfig(sampler=sampler, steps=8, seed=1), torch.arange(6),
                   edit=Edit(to_model_space(x), mask=mask, resample=resample))
    assert torch.equal(out[..., :4, :], x[..., :4, :])
    assert not torch.equal(out[..., 4:, :], x[..., 4:, :])


def _train(tmp_path_factory, name, *args):
    out = tmp_path_factory.mktemp(name) / "run"
    diffuse("train", "--data", "digits", "--preset", "tiny", "--sample-every", "100000", "--out", out, *args)
    return out


@pytest.fixture(scope="module")
def class_run(tmp_path_factory):
    return _train(tmp_path_factory, "class", "--cond", "class", "--steps", "800")


def test_inpainted_digits_keep_their_class(class_run):
    """The right half of each real test digit is masked out and refilled; the domain classifier must still see the
    original digit in >= 80% of them. With the label as the condition (the usual 'fill in this 3' use); and, as the
    unconditional model (guidance 0), where only the known half carries the class, filling must beat leaving the half
    black, and RePaint resampling must beat plain replacement (on 8x8 digits half an image is often ambiguous: about
    half of the unconditional fills keep the class)."""
    from diffuse.metrics.classifier import get_classifier, predict
    from diffuse.model import load_model

    model, _ = load_model(class_run)
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    clf, _ = get_classifier(train, test, log=lambda m: None)
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :, :4] = 1  # keep the left half
    x = to_model_space(test.images)

    def kept(cfg, resample=1):
        out = generate_uint8(model, len(test), cfg, test.labels, edit=Edit(x, mask=mask, resample=resample))
        return float((predict(clf, out)[1] == test.labels).float().mean())

    assert kept(SampleConfig(steps=10)) >= 0.8
    blank = torch.where(mask.bool().expand_as(test.images), test.images, torch.zeros_like(test.images))
    blank_acc = float((predict(clf, blank)[1] == test.labels).float().mean())
    plain = kept(SampleConfig(sampler="ddim", steps=10, guidance=0.0))
    repaint = kept(SampleConfig(sampler="ddim", steps=10, guidance=0.0), resample=3)
    assert repaint > plain > blank_acc


@pytest.fixture(scope="module")
def sr_run(tmp_path_factory):
    return _train(tmp_path_factory, "sr", "--task", "superres", "--steps", "600")


def test_superres_output_downsamples_to_its_input(sr_run, tmp_path):
    from diffuse.generate import superres
    from diffuse.model import load_model

    model, _ = load_model(sr_run)
    test = load_dataset("digits", "test")
    x = to_model_space(test.images[:64])
    lowres = F.avg_pool2d(x, 2)  # [64, 1, 4, 4]
    for consistency, tol in ((True, 0.01), (False, 0.08)):
        out = to_uint8(superres(model, lowres, SampleConfig(steps=16), consistency=consistency))
        err = (F.avg_pool2d(to_model_space(out), 2) - lowres).abs().mean()
        assert err < tol, (consistency, float(err))
    # and the result is a plausible high-res digit: closer to the truth than the blocky upsampling
    out = to_uint8(superres(model, lowres, SampleConfig(steps=16)))
    blocky = F.interpolate(lowres, scale_factor=2, mode="nearest")
    assert (to_model_space(out) - x).pow(2).mean() < (blocky - x).pow(2).mean()
    # the CLI: a low-res PNG in, a high-res grid out
    Image.fromarray(to_uint8(lowres[0, 0]).numpy()).save(tmp_path / "low.png")
    diffuse("sample", sr_run, "--init", tmp_path / "low.png", "--n", "4", "--steps", "8", "--out", tmp_path / "sr.npz")
    assert np.load(tmp_path / "sr.npz")["images"].shape == (4, 8, 8, 1)
    one_line_error(diffuse("sample", sr_run, "--init", tmp_path / "big.png", "--out", tmp_path / "x.png", check=False), "not found")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "big.png")
    one_line_error(diffuse("sample", sr_run, "--init", tmp_path / "big.png", "--out", tmp_path / "x.png", check=False), "4x4")


def test_editing_cli_and_its_errors(class_run, tmp_path):
    x = _images(1)[0, 0].numpy()
    Image.fromarray(x).save(tmp_path / "in.png")
    m = np.zeros((8, 8), np.uint8)
    m[:, :4] = 255
    Image.fromarray(m).save(tmp_path / "mask.png")
    diffuse("sample", class_run, "--init", tmp_path / "in.png", "--mask", tmp_path / "mask.png", "--resample", "2",
            "--n", "3", "--steps", "6", "--out", tmp_path / "o.npz")
    out = np.load(tmp_path / "o.npz")["images"][..., 0]
    assert (out[:, :, :4] == x[None, :, :4]).all()
    diffuse("sample", class_run, "--init", tmp_path / "in.png", "--strength", "0", "--n", "2", "--out", tmp_path / "s0.npz")
    assert (np.load(tmp_path / "s0.npz")["images"][..., 0] == x[None]).all()
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / "wrong.png")
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG not really")
    bad = [
        (("--init", tmp_path / "wrong.png"), "needs 8x8"),
        (("--init", tmp_path / "in.png", "--mask", tmp_path / "wrong.png"), "mask"),
        (("--mask", tmp_path / "mask.png"), "--mask needs --init"),
        (("--init", tmp_path / "in.png", "--strength", "1.5"), "--strength"),
        (("--init", tmp_path / "corrupt.png"), "cannot read"),
        (("--prompt", "a seven"), "text-conditional"),
    ]
    for args, needle in bad:
        one_line_error(diffuse("sample", class_run, *args, "--out", tmp_path / "x.png", check=False), needle)
        assert not (tmp_path / "x.png").exists()
