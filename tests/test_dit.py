"""The DiT backbone: shapes and dtypes of every preset, adaLN-Zero's exact identity at init, conditioning, and the
same denoiser contract as the U-Net (every sampler, every conditioning mode, the CLI)."""

import pytest
import torch
from cli_helpers import diffuse, one_line_error

from diffuse.model import ModelConfig, build_denoiser, load_model
from diffuse.nets import DIT_PRESETS, DiT, DiTConfig, dit_preset
from diffuse.precond import coefficients


@pytest.mark.parametrize("name", list(DIT_PRESETS))
def test_every_preset_keeps_shape_and_dtype(name):
    torch.manual_seed(0)
    net = DiT(dit_preset(name, image_size=8, in_channels=3, out_channels=3, num_classes=4)).eval()
    for p in net.parameters():  # random outputs, so the shape check is not on zeros
        torch.nn.init.normal_(p, std=0.02)
    x, c = torch.randn(2, 3, 8, 8), torch.randn(2)
    with torch.no_grad():
        y = net(x, c, torch.tensor([0, 4]))
        assert y.shape == x.shape and y.dtype == torch.float32 and y.abs().sum() > 0
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert net(x, c).dtype == torch.bfloat16


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="divisible"):
        DiTConfig(image_size=7, patch_size=2)
    with pytest.raises(ValueError, match="heads"):
        DiTConfig(width=96, heads=5)
    net = DiT(DiTConfig(image_size=8, width=32, depth=1, heads=2))
    with pytest.raises(ValueError, match="8x8"):
        net(torch.randn(1, 1, 16, 16), torch.zeros(1))


@pytest.mark.parametrize("cond", ["none", "class", "text"])
def test_zero_init_outputs_exactly_the_skip_path(cond):
    """adaLN-Zero + zero output layer: F = 0 at init, so D(x, sigma) = c_skip(sigma) x exactly, whatever the condition."""
    torch.manual_seed(0)
    extra = {"num_classes": 3} if cond == "class" else {"text_dim": 16} if cond == "text" else {}
    model = build_denoiser(ModelConfig(net=dit_preset("tiny", image_size=8, **extra), arch="dit", cond=cond))
    x, sigma = torch.randn(4, 1, 8, 8), torch.tensor([0.01, 0.5, 3.0, 80.0])
    c = {"class": torch.tensor([0, 1, 2, 3]), "none": None,
         "text": {"tokens": torch.randn(4, 5, 16), "mask": torch.ones(4, 5, dtype=torch.bool), "pooled": torch.randn(4, 16),
                  "drop": torch.tensor([False, True, False, False])}}[cond]
    with torch.no_grad():
        d = model(x, sigma, c)
    c_skip, _, _ = coefficients(sigma, "edm")
    assert torch.equal(d, c_skip.view(-1, 1, 1, 1) * x)
    # and the blocks are identities, not merely masked by the output layer: perturbing the output layer shows them
    torch.nn.init.normal_(model.net.out.weight, std=0.1)
    with torch.no_grad():
        h = model.net.patch(x).flatten(2).transpose(1, 2) + model.net.pos
        for blk in model.net.blocks:
            assert torch.equal(blk(h, torch.randn(4, model.net.cfg.width)), h)


def test_conditions_change_the_output_once_trained_weights_are_nonzero():
    torch.manual_seed(0)
    net = DiT(dit_preset("tiny", image_size=8, num_classes=3, text_dim=0)).eval()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    x, c = torch.randn(2, 1, 8, 8), torch.zeros(2)
    with torch.no_grad():
        a, b = net(x, c, torch.tensor([0, 0])), net(x, c, torch.tensor([1, 1]))
        null = net(x, c, None)
    assert not torch.allclose(a, b) and not torch.allclose(a, null)
    # per-example: row 0 does not depend on row 1's input (attention is within an image)
    with torch.no_grad():
        y1 = net(torch.stack([x[0], torch.randn(1, 8, 8)]), c, torch.tensor([0, 1]))
    assert torch.allclose(y1[0], a[0], atol=1e-5)


def test_text_dit_masks_padding_tokens():
    torch.manual_seed(0)
    net = DiT(dit_preset("tiny", image_size=8, text_dim=16)).eval()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    tokens = torch.randn(1, 4, 16)
    cond = {"tokens": tokens, "mask": torch.tensor([[True, True, False, False]]), "pooled": torch.randn(1, 16),
            "drop": torch.tensor([False])}
    other = dict(cond, tokens=torch.cat([tokens[:, :2], torch.randn(1, 2, 16)], 1))  # only the padding differs
    x, c = torch.randn(1, 1, 8, 8), torch.zeros(1)
    with torch.no_grad():
        assert torch.allclose(net(x, c, cond), net(x, c, other), atol=1e-6)


def test_dit_trains_and_samples_through_the_cli_with_every_sampler(tmp_path):
    run = tmp_path / "dit"
    diffuse("train", "--data", "digits", "--model", "dit", "--cond", "class", "--steps", "300", "--out", run,
            "--sample-every", "1000", "--checkpoint-every", "1000", "--log-every", "25")
    import json

    losses = [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
    assert losses[-1] < 0.6 * losses[0], losses  # it learns
    model, cfg = load_model(run)
    assert cfg.arch == "dit" and isinstance(model.net, DiT)
    for sampler in ("ddpm", "ddim", "euler", "heun", "dpmpp_2m"):
        diffuse("sample", run, "--n", "20", "--sampler", sampler, "--steps", "6", "--out", tmp_path / f"{sampler}.npz")
    r = diffuse("eval", run, "--n", "200", "--json")
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["label_accuracy"] > 0.5, res  # 10 classes: chance is 0.1


def test_dit_text_model_trains_and_takes_prompts(tmp_path):
    run = tmp_path / "dit-text"
    diffuse("train", "--data", "digits", "--model", "dit", "--cond", "text", "--steps", "20", "--out", run)
    diffuse("sample", run, "--n", "4", "--prompt", "a handwritten seven", "--out", tmp_path / "s.png")
    assert (tmp_path / "s.png").stat().st_size > 0


def test_bad_model_flags_are_one_line_errors(tmp_path):
    one_line_error(diffuse("train", "--model", "transformer", "--steps", "1", "--out", tmp_path / "a", check=False), "--model")
    one_line_error(diffuse("train", "--model", "dit", "--preset", "XL", "--steps", "1", "--out", tmp_path / "b", check=False), "preset")
    assert not (tmp_path / "b" / "model.safetensors").exists()


def test_dit_super_resolution_model(tmp_path):
    """--task superres with --model dit: the low-res image joins the input channels, as in the U-Net."""
    import numpy as np

    from diffuse.data import load_dataset

    run = tmp_path / "sr"
    diffuse("train", "--data", "digits", "--model", "dit", "--task", "superres", "--steps", "5", "--out", run)
    model, cfg = load_model(run)
    assert cfg.net.lowres_factor == 2 and model.net.patch.in_channels == 2
    low = load_dataset("digits", "test").images[:3, :, ::2, ::2]  # [3, 1, 4, 4]
    np.savez(tmp_path / "low.npz", images=low.permute(0, 2, 3, 1).numpy())
    diffuse("sample", run, "--init", tmp_path / "low.npz", "--out", tmp_path / "up.npz")
    with np.load(tmp_path / "up.npz") as z:
        assert z["images"].shape == (3, 8, 8, 1)
