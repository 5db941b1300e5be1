"""The public Python API (diffuse.load / Run.sample / Run.edit / read_params) and the serve job queue, in-process."""

import time

import numpy as np
import pytest
import torch

import diffuse
from diffuse.api import as_images, sample_kwargs
from diffuse.errors import UserError


@pytest.fixture(scope="module")
def runs(tiny_runs):
    return {c: diffuse.load(d) for c, d in tiny_runs.items()}


def test_sample_items_and_reproduction_from_the_png(runs, tmp_path):
    run = runs["class"]
    s = run.sample(n=5, steps=4, seed=7, label="3")
    items = s.items()
    assert len(items) == 5 and items[0].size == (8, 8) and items[0].mode == "L"
    assert s.labels.tolist() == [3] * 5 and s.params["label"] == 3 and s.params["steps"] == 4
    paths = s.save_items(tmp_path)
    p = diffuse.read_params(paths[3])
    assert p["first"] == 3 and p["n"] == 1 and p["seed"] == 7
    again = run.sample(**sample_kwargs(p))  # one sample from the file's parameters alone
    torch.testing.assert_close(again.x, s.x[3:4], atol=1e-5, rtol=0)
    torch.testing.assert_close(run.remake(paths[3]).x, s.x[3:4], atol=1e-5, rtol=0)
    torch.testing.assert_close(run.remake(paths[3].read_bytes(), first=2).x, s.x[2:3], atol=1e-5, rtol=0)
    assert not torch.allclose(again.x, s.x[2:3], atol=1e-2)
    assert "wrote 5" in s.save(tmp_path / "grid.png") and diffuse.read_params(tmp_path / "grid.png")["n"] == 5
    # guidance over an interval holding every sigma is plain guidance; one holding none is the conditional model;
    # the PNG's parameters carry the interval and remake the sample
    kw = dict(n=2, steps=4, seed=3, label=3, guidance=4.0)
    limited = run.sample(guidance_interval=(0.0, 1e6), **kw)
    torch.testing.assert_close(limited.x, run.sample(**kw).x, atol=1e-5, rtol=0)
    unguided = run.sample(**{**kw, "guidance": 1.0}).x
    torch.testing.assert_close(run.sample(guidance_interval=(1e5, 1e6), **kw).x, unguided, atol=1e-5, rtol=0)
    assert not torch.allclose(limited.x, unguided, atol=1e-3)  # (so the two checks above can tell the cases apart)
    p = diffuse.read_params(limited.save_items(tmp_path / "lim")[1])
    assert p["guidance_interval"] == [0.0, 1e6]
    torch.testing.assert_close(run.sample(**sample_kwargs(p)).x, limited.x[1:2], atol=1e-5, rtol=0)
    # adaptive projected guidance with its parallel part kept whole (eta 1) is plain guidance; eta 0 is not; the
    # PNG's parameters carry its settings and remake the sample
    torch.testing.assert_close(run.sample(apg="1", **kw).x, run.sample(**kw).x, atol=1e-4, rtol=0)
    projected = run.sample(apg=(0, 5), **kw)
    assert not torch.allclose(projected.x, run.sample(**kw).x, atol=1e-3)
    p = diffuse.read_params(projected.save_items(tmp_path / "apg")[1])
    assert p["apg"] == [0.0, 5.0, 0.0]
    torch.testing.assert_close(run.sample(**sample_kwargs(p)).x, projected.x[1:2], atol=1e-5, rtol=0)


def test_edit_keeps_the_unmasked_pixels(runs):
    run = runs["class"]
    init = run.sample(n=1, steps=4, seed=1).items()[0]
    keep = np.zeros((8, 8), np.uint8)
    keep[:, :4] = 255  # left half kept, right half generated
    out = run.edit(init, mask=keep, strength=1.0, steps=4, n=3, seed=2)
    a = np.stack([np.asarray(im) for im in out.items()]).astype(int)
    assert np.abs(a[:, :, :4] - np.asarray(init)[None, :, :4]).max() <= 1
    assert np.abs(a[:, :, 4:] - np.asarray(init)[None, :, 4:]).max() > 10  # the rest was generated, not copied
    img2img = run.edit(init, strength=0.0, steps=4)  # strength 0 returns the init
    assert np.abs(np.asarray(img2img.items()[0]).astype(int) - np.asarray(init)).max() <= 1


def test_negative_prompt_equal_to_the_prompt_cancels_guidance(runs):
    """D(neg) + w (D(c) - D(neg)) = D(c) when neg = c: any guidance with the prompt as its own negative is the plain
    conditional model (guidance 1), which differs from guidance against the empty prompt."""
    run = runs["text"]
    kw = dict(n=2, steps=4, seed=3, nearest_caption=False)
    plain = run.sample(prompt="a three", guidance=1.0, **kw).x
    self_neg = run.sample(prompt="a three", negative_prompt="a three", guidance=4.0, **kw).x
    torch.testing.assert_close(self_neg, plain, atol=1e-4, rtol=0)
    other = run.sample(prompt="a three", negative_prompt="a seven", guidance=4.0, **kw).x
    empty = run.sample(prompt="a three", guidance=4.0, **kw).x
    assert (other - empty).abs().max() > 1e-3 and (other - plain).abs().max() > 1e-3  # 10x the identity's tolerance
    assert run.sample(prompt="a three", negative_prompt="a seven", guidance=4.0, **kw).params["negative_prompt"] == "a seven"


def test_bad_calls_are_one_line_errors(runs):
    run = runs["class"]
    for kwargs, needle in (({"n": 0}, "n must"), ({"label": "giraffe"}, "unknown class"), ({"label": 12}, "out of range"),
                           ({"negative_prompt": "x"}, "needs a text model"), ({"steps": -1}, "--steps"),
                           ({"init": np.zeros((9, 9), np.uint8)}, "needs 8x8"), ({"init": np.zeros((8, 8))}, "uint8"),
                           ({"init": b"not an image"}, "cannot read"), ({"init": 3.5}, "expected a PIL image"),
                           ({"sampler": "nope"}, "unknown sampler"), ({"guidance_interval": "x"}, "guidance_interval"),
                           ({"guidance_interval": (3, 1)}, "--guidance-interval"), ({"apg": "x"}, "ETA"),
                           ({"apg": (0, -1)}, "RESCALE >= 0"), ({"apg": "0,1,2,3"}, "--apg"),
                           # shaping a guidance that is not applied would change nothing: refused, not ignored
                           ({"apg": "0", "guidance": 1.0}, "--apg shapes classifier-free guidance, and --guidance 1"),
                           ({"guidance_interval": (0, 5), "guidance": 1.0}, "--guidance-interval shapes")):
        with pytest.raises((UserError, ValueError), match=needle):
            run.sample(**kwargs)
    with pytest.raises(UserError, match="--negative-prompt acts through classifier-free guidance, and --guidance 1"):
        runs["text"].sample(prompt="a three", negative_prompt="a seven", guidance=1.0, n=1, steps=2)
    text_model = runs["text"].model
    text_model.consistency = {"guidance": 3.0, "steps": 2}  # as a distilled run's record (distill.py): guidance built in
    try:
        with pytest.raises(UserError, match=r"this run has its guidance \(3\) built in: it would change nothing"):
            runs["text"].sample(prompt="a three", negative_prompt="a seven", n=1)
    finally:
        del text_model.consistency
    for guidance in (0.0, 2.0):  # the same flags where a guidance applies are accepted (guidance 0: the null branch)
        assert run.sample(apg="0", guidance_interval=(0, 5), guidance=guidance, n=1, steps=2).x.shape[0] == 1
    with pytest.raises(UserError, match="not found"):
        diffuse.load("/nonexistent/run")
    assert as_images(np.zeros((8, 8, 3), np.uint8), 1).shape == (1, 1, 8, 8)


def _jobs(run, tmp_path, **limits):
    from diffuse.serve.jobs import Jobs, Limits

    return Jobs({"r": run}, Limits(**limits), tmp_path)


def test_jobs_queue_is_bounded_cancellable_by_the_owner_only_and_timed(runs, tmp_path):
    from diffuse.serve.jobs import Busy, Request

    jobs = _jobs(runs["class"], tmp_path, max_queue=2, max_steps=2000, timeout_s=60)
    a = jobs.submit(Request(run="r", n=2, steps=2000))
    b = jobs.submit(Request(run="r", n=2, steps=2000))
    with pytest.raises(Busy, match="busy"):
        jobs.submit(Request(run="r", n=1, steps=2))
    with pytest.raises(PermissionError):
        jobs.cancel(a.id, b.token)
    jobs.cancel(b.id, b.token)  # still queued: it never starts
    jobs.cancel(a.id, a.token)
    assert jobs.wait(a.id, 30).status == "cancelled" and jobs.wait(b.id, 30).status == "cancelled"
    assert a.done < a.total or a.total == 0
    c = jobs.submit(Request(run="r", n=2, steps=3, label=4))  # room again
    assert jobs.wait(c.id, 60).status == "done" and len(c.files) == 3 and c.params["label"] == 4

    slow = _jobs(runs["class"], tmp_path / "t", max_steps=5000, timeout_s=0.3)
    t0 = time.monotonic()
    j = slow.submit(Request(run="r", n=4, steps=5000))
    assert slow.wait(j.id, 30).status == "cancelled" and "time limit" in j.error and time.monotonic() - t0 < 20


def test_jobs_forget_old_results_and_their_files(runs, tmp_path):
    from diffuse.serve.jobs import Request

    jobs = _jobs(runs["class"], tmp_path, keep_jobs=2)
    done = [jobs.wait(jobs.submit(Request(run="r", steps=2, seed=i)).id, 60) for i in range(5)]
    assert all(j.status == "done" for j in done)
    assert list(jobs.jobs) == [j.id for j in done[-2:]]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(j.id for j in done[-2:])
    for bad, needle in ((Request(run="x"), "unknown run"), (Request(run="r", n=10**6), "n must"),
                        (Request(run="r", steps=-1), "steps must"), (Request(run="r", guidance=float("nan")), "guidance"),
                        (Request(run="r", mask=b"x"), "mask needs an init")):
        with pytest.raises(UserError, match=needle):
            jobs.submit(bad)


def test_prompt_and_negative_prompt_of_different_lengths(runs):
    """Guidance runs prompt and negative prompt as one batch: text of different token counts is padded with masked
    tokens, and the padded batch gives each row exactly what it gives alone."""
    from diffuse.cond import Cond
    from diffuse.text.bank import CaptionBank

    run = runs["text"]
    texts = ("a three", "a seven with a line through its middle, written slowly")
    conds = [Cond(text=(b := CaptionBank.build([t], run.config.text_encoder, cache=False)).cond(b.index([t, t])))
             for t in texts]
    assert conds[0].text["tokens"].shape[1] < conds[1].text["tokens"].shape[1]
    x, s = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0)), torch.full((2,), 0.7)
    with torch.no_grad():
        both = run.model(torch.cat([x, x]), torch.cat([s, s]), conds[0].cat(conds[1]))
        alone = torch.cat([run.model(x, s, c) for c in conds])
    torch.testing.assert_close(both, alone, atol=1e-5, rtol=1e-5)
    out = run.sample(n=2, steps=3, prompt=texts[0], negative_prompt=texts[1], guidance=3.0, nearest_caption=False)
    assert torch.isfinite(out.x).all() and out.params["negative_prompt"] == texts[1]
