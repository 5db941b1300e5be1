"""Video: moving-object clips, spacetime patches, the video record's files, the CLI round trip and the clip scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffuse.data.moving import DIR_WORDS, DIRECTIONS, HELDOUT_TEMPLATES, HELDOUT_VERBS, heldout_prompt, moving_dataset
from diffuse.metrics.video import centroid_track, crop_objects, directions
from diffuse.nets import DiT, dit_preset
from diffuse.nets.spacetime import attention_groups, patchify, unpatchify


def test_clips_are_deterministic_and_the_object_stays_whole_in_every_frame():
    a, b = moving_dataset("moving-digits", "train"), moving_dataset("moving-digits", "train")
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert a.images.shape[1:] == (1, 8, 16, 16)
    test = moving_dataset("moving-digits", "test")
    assert len(test) < len(a) and not torch.equal(test.images[:10], a.images[:10])
    mass = a.images.float().sum((1, 3, 4))  # [N, T]: the whole object in every frame (nothing clipped at the border)
    assert torch.equal(mass, mass[:, :1].expand_as(mass)) and (mass > 0).all()
    assert torch.equal(a.labels, a.extra["class"] * 8 + a.extra["direction"])


def test_captions_are_true_to_the_motion():
    ds = moving_dataset("moving-fmnist:limit=400", "test")
    d, speed = directions(centroid_track(ds.images))
    assert (d == ds.extra["direction"].numpy()).all() and (speed > 0.99).all()  # at least 1 px a frame
    groups, group = ds.captions
    for i in range(0, 400, 37):
        name = ds.class_names[int(ds.labels[i])]
        want = DIRECTIONS[int(ds.extra["direction"][i])]
        assert name.endswith(f"moving {want}")
        caps = groups[int(group[i])]
        assert all(any(c.endswith(" " + w) for w in DIR_WORDS[want]) for c in caps)
    training = {c for g in groups for c in g}
    held = {heldout_prompt(ds.class_names[k].rsplit(" moving ", 1)[0], DIRECTIONS[k % 8], i) for k in range(80) for i in range(9)}
    assert len(held) > 200 and not held & training
    assert not any(v in c for c in training for v in HELDOUT_VERBS)
    assert not any(t.split(" {x}")[0] in c for c in training for t in HELDOUT_TEMPLATES)


def test_frames_and_size_options_and_bad_options():
    from diffuse.errors import UserError

    ds = moving_dataset("moving-digits:frames=16,size=32,limit=20", "train")
    assert ds.images.shape == (20, 1, 16, 32, 32)
    for bad in ("moving-digits:frames=0", "moving-digits:fps=3", "moving-digits:frames=16"):  # 16 frames need > 8 px of room
        with pytest.raises(UserError):
            moving_dataset(bad, "train")


def test_patchify_round_trip_is_exact_and_matches_the_tubelet_convolution():
    x = torch.randn(2, 3, 8, 16, 12)
    tok = patchify(x, 2, 4)
    assert tok.shape == (2, 4 * 4 * 3, 3 * 2 * 4 * 4)
    assert torch.equal(unpatchify(tok, 3, 8, 16, 12, 2, 4), x)
    conv = torch.nn.Conv3d(3, 5, (2, 4, 4), stride=(2, 4, 4))  # the DiT's embedding: a linear map of each tubelet
    want = tok @ conv.weight.reshape(5, -1).T + conv.bias
    torch.testing.assert_close(conv(x).flatten(2).transpose(1, 2), want, rtol=1e-5, atol=1e-5)


def test_divided_attention_groups_are_one_frame_and_one_position():
    b, t, s, w = 2, 4, 6, 3
    tok = torch.arange(b * t * s).float()[:, None].expand(-1, w).reshape(b, t * s, w)  # token id = (b, frame, pos)
    (ss, sm), (ts, tm) = attention_groups(b, t, s)
    frame_groups, pos_groups = ss(tok)[..., 0], ts(tok)[..., 0]
    assert frame_groups.shape == (b * t, s) and pos_groups.shape == (b * s, t)
    assert ((frame_groups // s) == (frame_groups[:, :1] // s)).all()  # one frame of one clip per group
    assert ((pos_groups % s) == (pos_groups[:, :1] % s)).all() and (pos_groups.diff(dim=1) == s).all()
    assert torch.equal(sm(ss(tok)), tok) and torch.equal(tm(ts(tok)), tok)


@pytest.mark.parametrize("attention", ["joint", "divided"])
def test_video_dit_is_causal_in_nothing_but_respects_its_groups(attention):
    torch.manual_seed(0)
    net = DiT(dit_preset("tiny", image_size=16, frames=4, temporal_patch=2, attention=attention, depth=1))
    for p in net.parameters():  # adaLN-Zero starts every block as the identity: give the blocks weights
        torch.nn.init.normal_(p, std=0.05)
    x = torch.randn(2, 1, 4, 16, 16)
    y = net(x, torch.zeros(2))
    assert y.shape == x.shape
    assert net(torch.randn(1, 1, 6, 16, 16), torch.zeros(1)).shape == (1, 1, 6, 16, 16)  # another length
    x2 = x.clone()
    x2[:, :, 2:, :2, :2] += 1.0  # change one token of the second tubelet in time
    moved = (net(x2, torch.zeros(2)) - y).abs().amax((0, 1, 2))  # [H, W]: which positions saw it
    if attention == "joint":
        assert (moved > 1e-6).all()  # every token attends to every token
    else:  # one spatial block (depth 1): only the tokens of the changed frames move
        assert (moved[:4, :4] > 1e-6).any() and (net(x2, torch.zeros(2)) - y)[:, :, :2].abs().max() < 1e-6


def test_direction_and_crop_scores_on_real_and_broken_clips():
    ds = moving_dataset("moving-fmnist:limit=300", "test")
    d = ds.extra["direction"].numpy()
    shuffled = ds.images[:, :, torch.randperm(8, generator=torch.Generator().manual_seed(1))]
    still = ds.images[:, :, :1].expand(-1, -1, 8, -1, -1)
    assert (directions(centroid_track(ds.images))[0] == d).mean() == 1.0
    assert (directions(centroid_track(shuffled))[0] == d).mean() < 0.5
    assert (directions(centroid_track(still))[0] == -1).all()
    crops = crop_objects(ds.images[:20], 16)  # the object back at its own size, centred on its centroid
    assert crops.shape == (160, 1, 16, 16)
    kept = crops.float().sum((1, 2, 3)).reshape(20, 8) / ds.images[:20].float().sum((1, 3, 4))
    assert (kept > 0.9).all() and kept.mean() > 0.98  # (the centroid is not always the centre of the object's box)


def test_gif_mp4_npz_write_and_read_back(tmp_path):
    from diffuse.modalities import Meta
    from diffuse.modalities.video import VideoModality, read_clips
    from diffuse.pixels import to_model_space

    clips = moving_dataset("moving-digits:limit=3", "test").images
    mod = VideoModality(fps=4)
    x = to_model_space(clips)
    for suffix in (".gif", ".mp4", ".npz"):
        mod.write(x, tmp_path / f"c{suffix}", Meta(labels=torch.arange(3)))
        back = read_clips(tmp_path / f"c{suffix}", 1, "clip")
        assert back.shape[2] == 8, suffix  # every frame
    with np.load(tmp_path / "c.npz") as z:
        assert z["videos"].shape == (3, 8, 16, 16, 1) and z["videos"].dtype == np.uint8
        assert np.array_equal(z["videos"], clips.permute(0, 2, 3, 4, 1).numpy()) and list(z["labels"]) == [0, 1, 2]
    mod.write_items(x, [tmp_path / f"i{k}.gif" for k in range(3)])
    one = read_clips(tmp_path / "i1.gif", 1, "clip")  # one clip, upscaled 4x to 64 px; nearest, so exact
    assert one.shape == (1, 1, 8, 64, 64) and torch.equal(one[..., ::4, ::4], clips[1:2])
    strip = mod.preview(x)
    assert strip.shape == (3, 1, 16, 8 * 17 - 1) and torch.equal(strip[0, :, :, 17:33], clips[0, :, 1])


def test_a_video_dit_with_known_frames_reads_them_and_none_given_is_zeros():
    from diffuse.cond import Cond

    torch.manual_seed(0)
    net = DiT(dit_preset("tiny", image_size=16, frames=4, known_frames=True, depth=1))
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    x = torch.randn(2, 1, 4, 16, 16)
    m = torch.zeros(2, 1, 4, 16, 16)
    m[:, :, 0] = 1
    known = torch.randn_like(x)
    y = net(x, torch.zeros(2), Cond(known=known * m, known_mask=m))
    assert not torch.allclose(y, net(x, torch.zeros(2), Cond(known=(known + 1) * m, known_mask=m)))
    torch.testing.assert_close(net(x, torch.zeros(2)), net(x, torch.zeros(2), Cond(known=torch.zeros_like(x), known_mask=0 * m)))


@pytest.fixture(scope="module")
def video_run(tmp_path_factory):
    """A class + direction conditional moving-digits run (2x4x4 tubelets, frame masks) trained for 8 steps."""
    from cli_helpers import diffuse

    run = tmp_path_factory.mktemp("video") / "run"
    diffuse("train", "--data", "moving-digits", "--cond", "class", "--preset", "tiny", "--temporal-patch", "2", "--steps", "8",
            "--batch-size", "16", "--sample-every", "1000", "--out", run)
    return run


def test_cli_round_trip_gif_mp4_npz_and_frame_strips(video_run, tmp_path, capsys):
    import json

    from cli_helpers import in_process

    from diffuse.modalities.video import read_clips

    cfg = json.loads((video_run / "config.json").read_text())["model"]
    assert cfg["modality"]["name"] == "video" and cfg["arch"] == "dit" and cfg["net"]["frames"] == 8
    assert (video_run / "samples" / "step_0000008.png").is_file()  # training preview: frame strips
    for out in ("c.gif", "c.mp4", "c.npz", "c.png"):
        assert in_process(capsys, "sample", video_run, "--n", "3", "--steps", "2", "--label", "13", "--fps", "4", "--out", tmp_path / out)[0] == 0
    for out in ("c.gif", "c.mp4"):
        assert read_clips(tmp_path / out, 1, "clip").shape[2] == 8
    with np.load(tmp_path / "c.npz") as z:
        assert z["videos"].shape == (3, 8, 16, 16, 1) and list(z["labels"]) == [13, 13, 13] and float(z["fps"]) == 4
    assert in_process(capsys, "sample", video_run, "--n", "2", "--steps", "2", "--frames", "4", "--out", tmp_path / "short.npz")[0] == 0
    with np.load(tmp_path / "short.npz") as z:
        assert z["videos"].shape == (2, 4, 16, 16, 1)


def test_image_to_video_keeps_the_still_and_a_clip_is_continued(video_run, tmp_path, capsys):
    from PIL import Image
    from cli_helpers import in_process

    still = moving_dataset("moving-digits:limit=2", "test").images[1, 0, 0].numpy()  # [16, 16] uint8
    Image.fromarray(still).save(tmp_path / "still.png")
    assert in_process(capsys, "sample", video_run, "--n", "2", "--steps", "3", "--init", tmp_path / "still.png", "--out", tmp_path / "i2v.npz")[0] == 0
    with np.load(tmp_path / "i2v.npz") as z:
        v = z["videos"][..., 0]
    assert (v[:, 0] == still).all() and (v[:, 1:] != still).any()
    assert in_process(capsys, "sample", video_run, "--n", "2", "--steps", "3", "--init", tmp_path / "i2v.npz", "--out", tmp_path / "more.npz")[0] == 0
    with np.load(tmp_path / "more.npz") as z:
        more = z["videos"][..., 0]
    assert np.array_equal(more[:, :4], v[:, 4:])  # the last T/2 frames of each clip open its continuation


@pytest.mark.parametrize("args, needle", [
    (["--fps", "0"], "--fps must be in (0, 240]"),
    (["--frames", "3"], "--frames 3: this model makes 1..64 frames in multiples of 2"),
    (["--frames", "0"], "--frames 0"),
    (["--out", "{tmp}/c.avi"], "--out for video must end in .gif, .mp4, .npz or .png"),
    (["--init", "{tmp}/big.png"], "is 20x20, but this model makes 16x16 frames"),
    (["--init", "{tmp}/bad.gif"], "cannot read"),
    (["--seconds", "1"], "--seconds is for audio models"),
])
def test_bad_video_sampling_input_is_one_error_line(video_run, tmp_path, capsys, args, needle):
    from PIL import Image
    from cli_helpers import one_line_error_in_process

    Image.fromarray(np.zeros((20, 20), np.uint8)).save(tmp_path / "big.png")
    (tmp_path / "bad.gif").write_bytes(b"GIF89a not really")
    args = [a.format(tmp=tmp_path) for a in args]
    out = [] if "--out" in args else ["--out", tmp_path / "c.gif"]
    one_line_error_in_process(capsys, needle, "sample", video_run, "--n", "1", "--steps", "1", *args, *out)


def test_video_training_refuses_what_would_break_the_clips(tmp_path, capsys):
    from cli_helpers import one_line_error_in_process

    base = ["train", "--data", "moving-digits", "--steps", "1", "--out", tmp_path / "r"]
    one_line_error_in_process(capsys, "train them with --model dit", *base, "--model", "unet")
    one_line_error_in_process(capsys, "without --flip", *base, "--flip")
    one_line_error_in_process(capsys, "--attention and --temporal-patch are for video data", "train", "--data", "digits",
                              "--model", "dit", "--attention", "divided", "--steps", "1", "--out", tmp_path / "d")
    for flag, bad in (("--patch-size", "0"), ("--patch-size", "-2"), ("--temporal-patch", "0"), ("--dropout", "1")):
        one_line_error_in_process(capsys, f"{flag} must be", *base, "--model", "dit", flag, bad)
    one_line_error_in_process(capsys, "not divisible by the DiT patch_size 3", *base, "--model", "dit", "--patch-size", "3")
    assert not (tmp_path / "r").exists()


def test_patch_size_sets_the_tokens(tmp_path):
    """--patch-size 1 with 4-frame tubelets: a 4 x 16 x 16 clip is 1 x 16 x 16 tokens (the preset's 4x4 patches: 16);
    the run saves it and samples clips of the data's shape."""
    import json

    from cli_helpers import diffuse

    from diffuse.model import load_model

    run = tmp_path / "p1"
    diffuse("train", "--data", "moving-digits:frames=4", "--cond", "class", "--preset", "tiny", "--patch-size", "1", "--temporal-patch",
            "4", "--steps", "2", "--batch-size", "4", "--sample-every", "1000", "--out", run)
    net = json.loads((run / "config.json").read_text())["model"]["net"]
    assert (net["patch_size"], net["temporal_patch"]) == (1, 4)
    model, _ = load_model(run)
    assert model.net.cfg.tokens * model.net.cfg.frames // model.net.cfg.temporal_patch == 256
    diffuse("sample", run, "--n", "2", "--steps", "2", "--out", tmp_path / "c.npz")
    assert np.load(tmp_path / "c.npz")["videos"].shape[:2] == (2, 4)


def test_python_api_and_the_serve_job_queue_make_gifs(video_run, tmp_path):
    """The page and the HTTP API run video jobs through the same record: a job's files are one GIF per clip (8
    frames each, equal to the Python API's clips) and the .npz of all of them."""
    from PIL import Image

    import diffuse
    from diffuse.serve.jobs import Jobs, Limits, Request

    run = diffuse.load(video_run)
    s = run.sample(n=2, steps=2, seed=5, label=13)
    clips = s.items()
    assert len(clips) == 2 and clips[0].shape == (8, 16, 16, 1) and clips[0].dtype == np.uint8
    jobs = Jobs({"v": run}, Limits(), tmp_path / "jobs")
    j = jobs.wait(jobs.submit(Request(run="v", n=2, steps=2, seed=5, label=13)).id, 60)
    assert j.status == "done", j.error
    gifs = [f for f in j.files if f.suffix == ".gif"]
    assert len(gifs) == 2 and j.files[-1].suffix == ".npz" and len(j.values[0]) == 2
    with Image.open(gifs[1]) as im:
        assert im.n_frames == 8 and im.size == (64, 64)  # upscaled 4x for the page
    with np.load(j.files[-1]) as z:
        assert np.array_equal(z["videos"], np.stack(clips))
    with pytest.raises(diffuse.UserError, match="image runs"):  # no still or clip uploads on the page yet
        jobs.submit(Request(run="v", init=b"\x89PNG"))


def test_a_per_frame_autoencoder_codes_every_frame_alone_with_the_2d_autoencoder():
    from diffuse.codecs.autoencoder import AE_PRESETS, AEConfig, Autoencoder, fingerprint

    cfg = AEConfig(**AE_PRESETS["f2"], shape=(8, 16, 16), per_frame=True)
    ae = Autoencoder(cfg).eval()
    frame_ae = Autoencoder(cfg.frame_config).eval()
    frame_ae.load_state_dict(ae.state_dict())  # the same modules: a per-frame autoencoder is the 2-D one
    x = torch.rand(2, 1, 8, 16, 16) * 2 - 1
    with torch.no_grad():
        mean, logvar = ae.encode(x)
        assert mean.shape == logvar.shape == (2, *cfg.latent_shape) == (2, 2, 8, 8, 8)
        torch.testing.assert_close(mean[:, :, 5], frame_ae.encode(x[:, :, 5])[0])
        torch.testing.assert_close(ae.decode(mean)[:, :, 2], frame_ae.decode(mean[:, :, 2]))
        x2 = x.clone()
        x2[:, :, 3] = -x2[:, :, 3]
        moved = (ae.encode(x2)[0] - mean).abs().amax(dim=(0, 1, 3, 4))  # per latent frame
        assert moved[3] > 0 and float(moved[torch.arange(8) != 3].max()) < 1e-6
        assert ae.encode(x[:, :, :3])[0].shape == (2, 2, 3, 8, 8) and ae.decode(mean).shape == x.shape
    assert fingerprint(cfg) != fingerprint(AEConfig(**AE_PRESETS["f2"], shape=(8, 16, 16)))
    with pytest.raises(ValueError, match="per-frame autoencoder codes clips"):
        AEConfig(**AE_PRESETS["f2"], image_size=16, per_frame=True)


def test_the_posterior_of_clips_is_batched_by_frames_and_bf16_stays_close_to_fp32():
    """A latent run encodes its training set once (train/batches.py): per-frame clips are batched by frame count, which
    must not change a value, and bf16 autocast (the AMX / GPU path) stays within bf16's rounding of float32."""
    from diffuse.codecs.autoencoder import AE_PRESETS, AEConfig, Autoencoder, LatentCodec

    torch.manual_seed(0)
    ae = Autoencoder(AEConfig(**AE_PRESETS["f2"], shape=(8, 16, 16), per_frame=True)).eval()
    codec = LatentCodec(ae, torch.tensor([0.1, -0.2]), torch.tensor([0.5, 2.0]), "test")
    x = torch.rand(5, 1, 8, 16, 16) * 2 - 1
    whole = codec.posterior(x)  # 40 frames: one batch
    for batch in (8, 17, 1):  # 1, 2 and 1 clips a batch
        for a, b in zip(codec.posterior(x, batch_size=batch), whole):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    mu, sd = codec.posterior(x, bf16=True)
    assert mu.dtype == sd.dtype == torch.float32 and mu.shape == whole[0].shape
    scale = whole[0].abs().max()
    assert float((mu - whole[0]).abs().max()) < 0.05 * scale and float((mu - whole[0]).abs().max()) > 0  # bf16 rounds
    torch.testing.assert_close(sd, whole[1], rtol=0.05, atol=0.0)


def test_per_frame_latent_video_round_trip(tmp_path, capsys):
    """train-autoencoder on clips (per frame), a latent video DiT on its latents, then sampling and image-to-video."""
    import json

    from PIL import Image
    from cli_helpers import diffuse, in_process

    ae, run = tmp_path / "ae", tmp_path / "run"
    diffuse("train-autoencoder", "--data", "moving-digits", "--steps", "30", "--batch-size", "16", "--out", ae)
    rec = json.loads((ae / "config.json").read_text())
    assert rec["model"]["per_frame"] and rec["model"]["shape"] == [8, 16, 16] and rec["eval"]["psnr"] > 10
    assert (ae / "reconstructions.png").is_file() and 0 <= rec["eval"]["acc_reconstructions"] <= 1
    diffuse("train", "--data", "moving-digits", "--cond", "class", "--latent", ae, "--preset", "tiny", "--steps", "4",
            "--batch-size", "8", "--sample-every", "1000", "--out", run)
    net = json.loads((run / "config.json").read_text())["model"]["net"]
    assert (net["frames"], net["temporal_patch"], net["patch_size"], net["in_channels"]) == (8, 1, 2, 2)
    assert in_process(capsys, "sample", run, "--n", "2", "--steps", "2", "--label", "5", "--out", tmp_path / "c.npz")[0] == 0
    with np.load(tmp_path / "c.npz") as z:
        assert z["videos"].shape == (2, 8, 16, 16, 1) and list(z["labels"]) == [5, 5]
    still = moving_dataset("moving-digits:limit=2", "test").images[1, 0, 0].numpy()
    Image.fromarray(still).save(tmp_path / "still.png")
    assert in_process(capsys, "sample", run, "--n", "2", "--steps", "2", "--init", tmp_path / "still.png", "--out", tmp_path / "i2v.npz")[0] == 0
    with np.load(tmp_path / "i2v.npz") as z:
        v = z["videos"][..., 0]
    assert (v[:, 0] == still).all() and (v[:, 1:] != still).any()  # the still's pixels are put back after decoding
