"""The command line, end to end on digits, and its one-line errors."""

import json

import numpy as np
import pytest
import torch
from cli_helpers import diffuse, one_line_error
from PIL import Image

from diffuse.generate import SampleConfig
from diffuse.synth import SYNTH_GUIDANCE, synthetic_images


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    diffuse("train", "--data", "digits", "--cond", "class", "--steps", "150", "--batch-size", "64", "--preset", "tiny",
            "--sample-every", "100", "--out", out)
    return out


def test_round_trip(run, tmp_path):
    assert (run / "config.json").is_file() and (run / "model.safetensors").is_file()
    assert (run / "samples" / "step_0000100.png").is_file()
    diffuse("sample", run, "--n", "20", "--steps", "8", "--out", tmp_path / "s.png")
    assert Image.open(tmp_path / "s.png").size[0] > 8 * 2
    diffuse("sample", run, "--n", "12", "--steps", "8", "--sampler", "heun", "--guidance", "2", "--out", tmp_path / "s.npz")
    z = np.load(tmp_path / "s.npz")
    assert z["images"].shape == (12, 8, 8, 1) and z["images"].dtype == np.uint8
    assert z["labels"].tolist() == [i % 10 for i in range(12)]
    diffuse("sample", run, "--n", "5", "--steps", "8", "--label", "3", "--sampler", "heun", "--churn", "10", "--out", tmp_path / "l.npz")
    diffuse("sample", run, "--n", "4", "--steps", "8", "--guidance", "3", "--guidance-interval", "0.3,5", "--out", tmp_path / "i.png")
    assert json.loads(Image.open(tmp_path / "i.png").text["diffuse"])["guidance_interval"] == [0.3, 5.0]
    diffuse("sample", run, "--n", "4", "--steps", "8", "--guidance", "3", "--apg", "0,4,-0.25", "--out", tmp_path / "p.png")
    assert json.loads(Image.open(tmp_path / "p.png").text["diffuse"])["apg"] == [0.0, 4.0, -0.25]
    assert np.load(tmp_path / "l.npz")["labels"].tolist() == [3] * 5
    r = diffuse("eval", run, "--n", "200", "--steps", "10", "--json")
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["n"] == 200 and res["fid"] > 0 and 0 <= res["label_accuracy"] <= 1
    assert res["classifier_test_accuracy"] > 0.9
    assert res["label_accuracy"] > 0.3  # 150 steps already beat chance (0.1) by far


def test_same_seed_same_images(run, tmp_path):
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        diffuse("sample", run, "--n", "6", "--steps", "6", "--sampler", "ddpm", "--seed", seed, "--batch-size", "4", "--out", tmp_path / f"{name}.npz")
    a, b, c = (np.load(tmp_path / f"{n}.npz")["images"] for n in "abc")
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_bad_inputs_give_one_line(run, tmp_path, capsys):
    from cli_helpers import one_line_error_in_process

    one_line_error(diffuse("train", "--data", "imagenet", "--out", tmp_path / "x", check=False, fresh=True), "unknown dataset")  # the real entry point, once
    one_line_error_in_process(capsys, "not found", "train", "--data", tmp_path / "missing.npz", "--out", tmp_path / "x")
    one_line_error_in_process(capsys, "--steps", "train", "--steps", "0", "--out", tmp_path / "x")
    one_line_error_in_process(capsys, "--steps", "train", "--steps", "-3", "--out", tmp_path / "x")
    one_line_error_in_process(capsys, "--steps", "sample", run, "--steps", "0", "--out", tmp_path / "a.png")
    one_line_error_in_process(capsys, "out of range", "sample", run, "--label", "10", "--out", tmp_path / "a.png")
    one_line_error_in_process(capsys, "unknown sampler", "sample", run, "--sampler", "nope", "--out", tmp_path / "a.png")
    one_line_error_in_process(capsys, "not found", "sample", tmp_path / "norun", "--out", tmp_path / "a.png")
    one_line_error_in_process(capsys, ".png or .npz", "sample", run, "--out", tmp_path / "a.jpg")
    one_line_error_in_process(capsys, "--n", "sample", run, "--n", "x", "--out", tmp_path / "a.png")
    one_line_error_in_process(capsys, "--churn", "sample", run, "--churn", "5", "--out", tmp_path / "a.png")
    for bad in ("5", "2,1", "a,b", "-1,3", "0,nan"):
        one_line_error_in_process(capsys, "--guidance-interval", "sample", run, "--guidance-interval", bad, "--out", tmp_path / "a.png")
    for bad in ("", "x", "0,-1", "0,0,0.5", "0,0,-1", "1,2,3,4", "nan"):
        one_line_error_in_process(capsys, "--apg", "sample", run, "--apg", bad, "--out", tmp_path / "a.png")
    one_line_error_in_process(capsys, "is for audio runs", "sample", run, "--vocoder-refine", "10", "--out", tmp_path / "a.png")
    one_line_error_in_process(capsys, "--vocoder is for audio runs", "sample", run, "--vocoder", tmp_path, "--out", tmp_path / "a.png")


def test_unconditional_model_rejects_guidance_and_label(tmp_path):
    out = tmp_path / "u"
    diffuse("train", "--data", "digits", "--steps", "2", "--batch-size", "16", "--out", out)
    one_line_error(diffuse("sample", out, "--guidance", "3", "--out", tmp_path / "a.png", check=False), "unconditional")
    one_line_error(diffuse("sample", out, "--label", "1", "--out", tmp_path / "a.png", check=False), "unconditional")
    for flag, value in (("--apg", "0"), ("--guidance-interval", "0.3,5")):
        one_line_error(diffuse("sample", out, flag, value, "--out", tmp_path / "a.png", check=False), "this model is unconditional")
    assert not (tmp_path / "a.png").exists()


def test_checkpoint_from_another_model(run, tmp_path):
    import shutil

    other = tmp_path / "other"
    diffuse("train", "--data", "digits", "--steps", "1", "--batch-size", "16", "--out", other)
    bad = tmp_path / "bad"
    shutil.copytree(run, bad)
    shutil.copy(other / "model.safetensors", bad / "model.safetensors")
    one_line_error(diffuse("sample", bad, "--out", tmp_path / "a.png", check=False), "different model")
    (bad / "model.safetensors").write_bytes(b"garbage")
    one_line_error(diffuse("sample", bad, "--out", tmp_path / "a.png", check=False), "corrupt")


def test_synth_is_deterministic_and_resumable(run, tmp_path):
    import csv

    out = tmp_path / "syn"
    diffuse("synth", run, "--per-class", "3", "--steps", "6", "--batch-size", "8", "--out", out)
    rows = list(csv.DictReader(open(out / "manifest.csv")))
    assert len(rows) == 30 and {r["label"] for r in rows} == {str(i) for i in range(10)}
    assert set(rows[0]) == {"file", "label", "class_name", "seed", "sampler", "steps", "guidance"}
    assert all((out / r["file"]).is_file() and r["file"].startswith(r["class_name"] + "/") for r in rows)
    assert {r["guidance"] for r in rows} == {str(SYNTH_GUIDANCE)}  # synth's own default (chosen by CAS), not sample's
    # what CAS scores (metrics/cas.py) is exactly what synth writes
    images, labels, _ = synthetic_images(run, 3, SampleConfig(steps=6, batch_size=8))
    assert labels.tolist() == [int(r["label"]) for r in rows]
    written = torch.stack([torch.from_numpy(np.array(Image.open(out / r["file"]))) for r in rows])
    assert torch.equal(images[:, 0], written)
    victim, keep = out / rows[4]["file"], out / rows[20]["file"]
    before, mtime = victim.read_bytes(), keep.stat().st_mtime_ns
    victim.unlink()
    r = diffuse("synth", run, "--per-class", "3", "--steps", "6", "--batch-size", "8", "--out", out)
    assert "1 images written, 29 already there" in r.stdout
    assert victim.read_bytes() == before and keep.stat().st_mtime_ns == mtime
    one_line_error(diffuse("synth", run, "--per-class", "3", "--steps", "7", "--out", out, check=False), "other settings")


def test_plot(run, tmp_path):
    diffuse("plot", run, "--out", tmp_path / "t.png")
    im = Image.open(tmp_path / "t.png")
    assert im.size[0] > 800 and im.size[1] > 200
    (tmp_path / "empty").mkdir()
    one_line_error(diffuse("plot", tmp_path / "empty", check=False), "no metrics.jsonl")


def test_cas_on_digits(run):
    r = diffuse("eval", run, "--metrics", "cas", "--cas-per-class", "20", "--cas-steps", "200", "--steps", "8", "--json")
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert "fid" not in res
    for k in ("cas_synthetic", "cas_real_equal_n", "scarce_real", "scarce_real_plus_synthetic"):
        assert 0 <= res[k] <= 1
    assert res["cas_real_equal_n"] > 0.7  # 200 real digits train a decent classifier
    assert res["cas_synthetic"] > 0.2  # a 150-step model's samples carry class information (chance: 0.1)
    one_line_error(diffuse("eval", run, "--metrics", "fid,bogus", check=False), "unknown --metrics")


def test_eval_kid_pr_bpd(run, tmp_path):
    r = diffuse("eval", run, "--metrics", "fid,kid,pr,bpd", "--n", "100", "--steps", "6", "--bpd-n", "8", "--vlb-steps", "40",
                "--ode-steps", "6", "--json")
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["n"] == 100 and res["bpd_n"] == 8 and res["bpd_vlb_steps"] == 40
    assert 0 <= res["precision"] <= 1 and 0 <= res["recall"] <= 1 and res["recall_real"] > 0.5
    assert abs(res["kid_real"]) < res["kid"]  # real images are closer to the test split than a 150-step model's
    assert 0 < res["bpd_ode"] < 16 and 0 < res["bpd_vlb"] < 16
    assert "label_accuracy" not in res  # only what was asked for
    r = diffuse("eval", run, "--metrics", "fid", "--features", "inception", check=False)
    one_line_error(r, "--inception-weights")
    one_line_error(diffuse("eval", run, "--metrics", "bpd", "--bpd-n", "0", check=False), "--bpd-n")


def test_bench_quality_and_its_plot(run, tmp_path):
    r = diffuse("bench", "quality", run, "--n", "60", "--samplers", "ddim,heun", "--nfe", "4,10", "--json")
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert [(x["sampler"], x["nfe"]) for x in res["rows"]] == [("ddim", 4), ("ddim", 10), ("heun", 3), ("heun", 9)]
    assert all(x["fid"] > 0 for x in res["rows"])
    by = {(x["sampler"], x["nfe"]): x["fid"] for x in res["rows"]}
    assert by[("ddim", 10)] < by[("ddim", 4)]  # more steps, better samples
    best = min((x for x in res["rows"] if x["target_nfe"] == 10), key=lambda x: x["fid"])
    assert res["summary"]["best_sampler_at_few_nfe"] == best["sampler"] and res["summary"]["fid_few"] == best["fid"]
    assert json.loads((run / "quality.json").read_text())["rows"] == res["rows"]
    assert (run / "plots" / "fid_vs_nfe.png").stat().st_size > 10_000
    diffuse("plot", run, "--out", tmp_path / "t.png", "--samples", "3")
    assert (tmp_path / "t_fid_vs_nfe.png").is_file() and (tmp_path / "t_samples.png").stat().st_size > 5_000
    one_line_error(diffuse("bench", "quality", run, "--samplers", "nope", check=False), "unknown sampler")
    one_line_error(diffuse("bench", "quality", run, "--nfe", "5,x", check=False), "--nfe")
