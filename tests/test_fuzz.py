"""The fuzzing harness: over 1,000 hostile command lines and files per run, every one checked by fuzz_harness's
properties (no traceback, one error line, nothing written outside --out, a failed command changes nothing).

Each target draws its cases with Hypothesis from a fixed seed (DIFFUSE_FUZZ_SEED, default 0), so a CI run is
reproducible; set another seed to explore further. The case count and findings print at the end of the session.
"""

import json
import os

import pytest
from fuzz_harness import STATS, Case, assert_clean, run_case
from fuzz_inputs import captions_files, config_mutations, image_files, npz_files, safetensors_mutations
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from diffuse.train import TrainConfig, train

SEED = int(os.environ.get("DIFFUSE_FUZZ_SEED", "0"))


def fuzz(n: int):
    """n generated cases, no shrinking (findings are collected and reported together), reproducible by seed."""
    return lambda f: seed(SEED)(settings(max_examples=n, deadline=None, database=None, phases=[Phase.generate],
                                         suppress_health_check=list(HealthCheck))(f))


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    run = tmp_path_factory.mktemp("fuzz") / "golden"
    train(TrainConfig(out=str(run), data="digits", cond="class", steps=2, batch_size=16, preset="tiny", sample_every=10**6))
    GOLDEN[:] = [run]
    return run


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzzbox") / "box"


def target(name: str, n: int, cases):
    """A pytest test that runs n cases drawn from ``cases`` (a strategy of Case) and fails on any finding."""

    @fuzz(n)
    @given(case=cases)
    def run(case, box, golden):
        run_case(name, case, box, golden)

    def test(box, golden):
        run(box=box, golden=golden)
        assert_clean(name)

    return test


BAD_INT = st.sampled_from(["0", "-1", "x", "", "1.5", "nan", "1e3", "\u0661", "--"])
BAD_FLOAT = st.sampled_from(["nan", "inf", "-inf", "-1", "x", "", "1e999"])
ABSURD = st.sampled_from(["1000000000000", str(2**63), str(2**70)])
JUNK = st.text(min_size=0, max_size=6)


def flag(valid, invalid=BAD_INT):
    """(value, None) for a valid value, (value, 'out of range') for one the documented range excludes."""
    return st.one_of(valid.map(lambda v: (str(v), None)), invalid.map(lambda v: (v, "out of its documented range")))


def choice(names):
    return flag(st.sampled_from(names), JUNK.filter(lambda s: s not in names))


SAMPLING = {
    "--sampler": choice(["ddpm", "ddim", "euler", "heun", "dpmpp_2m", "consistency"]),
    "--steps": flag(st.integers(1, 3), st.one_of(BAD_INT, ABSURD)),
    "--schedule": choice(["karras", "edm", "vp"]),
    "--guidance": flag(st.sampled_from([0, 1, 2.5]), BAD_FLOAT),
    "--seed": flag(st.integers(-2**31, 2**31), st.sampled_from(["x", "", str(2**70)])),
    "--batch-size": flag(st.sampled_from([1, 3, 256, 10**12]), BAD_INT),
    "--precision": choice(["auto", "fp32", "bf16"]),
    "--device": choice(["cpu", "auto"]),
}


@st.composite
def command(draw, name: str, fixed: list[str], spec: dict, writes: list[str], k: int = 4):
    argv, must_fail = [name, *fixed], None
    for f in draw(st.lists(st.sampled_from(sorted(spec)), max_size=k, unique=True)):
        value, bad = draw(spec[f])
        argv += [f, value]
        must_fail = must_fail or (bad and f"{f} {value!r} is {bad}")
    if draw(st.integers(0, 19)) == 0:
        argv.append(draw(st.sampled_from(["--nope", "extra-positional", "--n"])))
        must_fail = must_fail or "an unknown flag or a missing value"
    return Case(argv, writes=writes, must_fail=must_fail, label="flags")


SAMPLE = {**SAMPLING, "--n": flag(st.integers(1, 6), st.one_of(BAD_INT, ABSURD)),
          "--label": flag(st.integers(0, 9), st.sampled_from(["10", "-1", str(2**63), "x"])),
          "--churn": flag(st.just(0), st.sampled_from(["-1", "nan", "inf"])),
          "--guidance-interval": flag(st.sampled_from(["0.3,5", "0,80"]), st.sampled_from(["5", "2,1", "x,y", "-1,3", "0,inf"])),
          "--apg": flag(st.sampled_from(["0", "1", "0,4,-0.5"]), st.sampled_from(["x", "0,-1", "0,0,0.5", "nan", "1,2,3,4"])),
          "--prompt": flag(st.nothing(), st.just("a shoe")),  # a class model takes no prompt
          "--strength": flag(st.just(1.0), st.sampled_from(["0.5", "-0.1", "nan"])),  # without --init: always refused
          "--resample": flag(st.just(1), st.sampled_from(["2", "0", "-3"]))}


test_fuzz_sample_flags = target("sample-flags", 220, st.one_of(
    command("sample", ["run", "--out", "{box}/o.png"], SAMPLE, ["o.png"]),
    command("sample", ["run", "--out", "{box}/o.npz"], SAMPLE, ["o.npz"]),
    command("sample", ["run"], {"--out": flag(st.sampled_from(["{box}/sub/o.png"]),
                                              st.sampled_from(["{box}/o.jpg", "{box}/run", "/proc/o.png", ""]))}, ["sub"])))


EVAL = {**SAMPLING, "--n": flag(st.integers(2, 12), st.one_of(BAD_INT, ABSURD)),
        "--metrics": flag(st.sampled_from(["fid", "acc", "fid,kid,pr", "bpd", "cas", "fid,acc"]), st.sampled_from(["", "fid,", "x", ",,"])),
        "--cas-per-class": flag(st.integers(1, 3)), "--cas-steps": flag(st.integers(1, 5)), "--bpd-n": flag(st.integers(1, 4)),
        "--vlb-steps": flag(st.integers(1, 5)), "--ode-steps": flag(st.integers(1, 3)),
        "--features": choice(["classifier"])}
EVAL_FIXED = ["run", "--n", "8", "--steps", "2", "--cas-per-class", "2", "--cas-steps", "3", "--bpd-n", "2", "--vlb-steps", "3",
              "--ode-steps", "2"]


test_fuzz_eval_flags = target("eval-flags", 80, command("eval", EVAL_FIXED, EVAL, []))


SYNTH = {**SAMPLING, "--per-class": flag(st.integers(1, 2), st.one_of(BAD_INT, ABSURD)),
         "--prompts": flag(st.nothing(), st.just("{box}/run/config.json"))}


test_fuzz_synth_flags = target("synth-flags", 60, command("synth", ["run", "--per-class", "1", "--steps", "1", "--out", "{box}/syn"],
                                                         SYNTH, ["syn"]))


TRAIN = {
    "--cond": choice(["none", "class"]), "--model": choice(["unet", "dit"]), "--param": choice(["edm", "eps", "v", "x0"]),
    "--steps": flag(st.integers(1, 2)), "--minutes": flag(st.just(0.0005), BAD_FLOAT),
    "--batch-size": flag(st.sampled_from([2, 16]), st.sampled_from(["0", "-2", "x", "100000"])),
    "--lr": flag(st.sampled_from([1e-3, 0.5]), BAD_FLOAT), "--image-size": flag(st.sampled_from([8, 16]), st.sampled_from(["2", "0", "-8", "100000"])),
    "--task": choice(["generate", "superres"]), "--superres-factor": flag(st.just(2), st.sampled_from(["0", "1", "-2"])),
    "--label-dropout": flag(st.sampled_from([0, 0.5]), st.sampled_from(["1.0", "-0.1", "nan"])),
    "--ema-kimg": flag(st.sampled_from([0, 1.0]), BAD_FLOAT), "--text-noise": flag(st.just(0.3), BAD_FLOAT),
    "--ema-rampup": flag(st.sampled_from([0.05, 1.0]), st.sampled_from(["0", "-0.1", "1.5", "nan", "x"])),
    "--frame-noise": flag(st.just(0.0), st.sampled_from(["0.5", "1", "-0.1", "nan", "x"])),  # 0.5: the data are images
    "--class-weight": flag(st.sampled_from(["3=2", "0=0.5"]),
                           st.sampled_from(["3", "3=0", "3=-1", "3=nan", "3=inf", "dog=2", "=2", "3=x", "3=true"])),
    "--warmup-steps": flag(st.sampled_from([0, 5]), st.sampled_from(["-1", "x"])),
    "--checkpoint-minutes": flag(st.sampled_from([0.001, 5]), BAD_FLOAT), "--checkpoint-every": flag(st.sampled_from([1, 7])),
    "--sample-every": flag(st.just(1000)), "--log-every": flag(st.sampled_from([1, 50])),
    "--weighting": choice(["edm", "eps", "min_snr", "v", "x0"]), "--sigma-density": choice(["lognormal", "vp"]),
    "--p-mean": flag(st.sampled_from([-1.2, 0.5]), st.sampled_from(["11", "-1e9", "nan", "inf", "x"])),
    "--p-std": flag(st.sampled_from([0.6, 1.2]), st.sampled_from(["0", "-1", "6", "nan", "x"])),
    "--sigma-data": flag(st.sampled_from([0.5, 1.0]), st.sampled_from(["0", "-1", "101", "nan", "x"])),
    "--beta-schedule": choice(["linear", "cosine", "sigmoid"]), "--precision": choice(["auto", "fp32"]),
    "--preset": flag(st.just("tiny"), st.sampled_from(["huge", "", "fmnist "])), "--seed": flag(st.integers(0, 9), st.just("x")),
    "--data": flag(st.sampled_from(["digits"]), st.sampled_from(["imagenet", "{box}/missing.npz", "{box}/run", "/dev/null"])),
}


test_fuzz_train_flags = target("train-flags", 110, st.one_of(
    command("train", ["--steps", "1", "--preset", "tiny", "--out", "{box}/new"], TRAIN, ["new"], k=5),
    command("train", ["--out", "{box}/run", "--resume", "--steps", "3"],
            {k: TRAIN[k] for k in ("--minutes", "--checkpoint-minutes", "--steps")}, ["run"])))


AE = {"--steps": flag(st.integers(1, 2)), "--batch-size": flag(st.sampled_from([4, 16])), "--lr": flag(st.just(1e-3), BAD_FLOAT),
      "--kl-weight": flag(st.just(1e-6), BAD_FLOAT), "--adv-weight": flag(st.sampled_from([0, 0.5]), BAD_FLOAT),
      "--adv-start": flag(st.sampled_from([0, 1]), st.just("-1")), "--preset": choice(["f2"]),
      "--latent-channels": flag(st.sampled_from([2, 4]), BAD_INT), "--checkpoint-minutes": flag(st.just(1.0), BAD_FLOAT),
      "--image-size": flag(st.just(8), st.sampled_from(["2", "-8", "100000"])),
      "--lr-decay": flag(st.sampled_from([0, 0.3]), st.sampled_from(["1", "-0.1", "nan", "x"]))}


test_fuzz_autoencoder_flags = target("autoencoder-flags", 40, command("train-autoencoder", ["--steps", "1", "--out", "{box}/ae"], AE, ["ae"]))


DISTILL = {"--lr": flag(st.just(1e-3), BAD_FLOAT), "--guidance": flag(st.sampled_from([0, 1, 2]), BAD_FLOAT),
           "--grid": flag(st.sampled_from([3, 5]), st.sampled_from(["2", "0", "-1", "x", "100000"])),
           "--ema-kimg": flag(st.just(1.0), BAD_FLOAT), "--minutes": flag(st.just(0.0005), BAD_FLOAT),
           "--batch-size": flag(st.sampled_from([2, 4]), st.sampled_from(["0", "-2", "x", "100000"])),
           "--search-n": flag(st.just(4), st.sampled_from(["1", "0", "-3", "x"])), "--checkpoint-minutes": flag(st.just(1.0), BAD_FLOAT),
           "--seed": flag(st.integers(0, 9), st.just("x")), "--precision": choice(["auto", "fp32"]),
           "--method": flag(st.sampled_from(["cd", "ct"]), st.sampled_from(["", "ect", "CD"]))}


test_fuzz_distill_flags = target("distill-flags", 30, st.one_of(
    command("distill", ["run", "--steps", "1", "--search-n", "8", "--out", "{box}/cd"], DISTILL, ["cd"]),
    command("distill", ["run", "--out", "{box}/run", "--steps", "1"], {"--seed": flag(st.integers(0, 9))}, ["run"])))  # onto the teacher


RESTORE = {"--operator": choice(["inpaint", "mri", "ct", "blur", "superres"]),
           "--acceleration": flag(st.sampled_from([2, 4]), st.sampled_from(["1", "0.5", "-2", "nan", "inf", "x", ""])),
           "--factor": flag(st.sampled_from([2, 4]), st.sampled_from(["1", "0", "-2", "x", "100000"])),
           "--angles": flag(st.sampled_from([2, 5]), st.sampled_from(["0", "-1", "x", "100000"])),
           "--blur-sigma": flag(st.just(1.0), st.sampled_from(["0", "-1", "nan", "inf", "1e999"])),
           "--sigma-y": flag(st.sampled_from([0, 0.05]), st.sampled_from(["-0.1", "nan", "inf", "x"])),
           "--solver": choice(["auto", "ddrm", "dps", "diffpir", "dc"]), "--steps": flag(st.integers(1, 2), st.one_of(BAD_INT, ABSURD)),
           "--samples": flag(st.integers(1, 2), st.sampled_from(["0", "-1", "x", "100000"])),
           "--strength": flag(st.sampled_from([0, 0.5]), st.sampled_from(["-1", "nan", "inf"])),
           "--seed": flag(st.integers(0, 9), st.sampled_from(["x", str(2**70)]))}


@st.composite
def restore_cases(draw):
    """restore's flags on a good input, or a hostile input or measurement file with good flags."""
    import io

    import numpy as np

    buf = io.BytesIO()
    np.savez(buf, images=np.random.default_rng(0).integers(0, 256, (2, 8, 8)).astype(np.uint8))
    files = {"good.npz": buf.getvalue()}
    out = draw(st.sampled_from(["o.npz", "o.png"]))
    kind = draw(st.sampled_from(["flags", "flags", "npz", "image", "measurements"]))
    if kind == "flags":
        fixed = ["run", "--operator", "mri", "--input", "{box}/good.npz", "--out", f"{{box}}/{out}", "--steps", "2"]  # a drawn --operator overrides
        case = draw(command("restore", fixed, RESTORE, [out]))
        case.files = files
        return case
    if kind == "image":
        body, suffix = draw(image_files())
        files[f"in{suffix}"] = body
        return Case(["restore", "run", "--operator", "mri", "--input", f"{{box}}/in{suffix}", "--out", f"{{box}}/{out}", "--steps", "2"],
                    files, writes=[out], label=f"restore{suffix}")
    body = draw(npz_files())
    files["x.npz"] = body
    if kind == "npz":
        return Case(["restore", "run", "--operator", "inpaint", "--input", "{box}/x.npz", "--out", f"{{box}}/{out}", "--steps", "2"],
                    files, writes=[out], label="restore-npz")
    arr = draw(st.sampled_from([np.zeros((2, 8, 8), np.complex64), np.zeros((2, 1, 8, 8), np.complex64), np.zeros((2, 9, 8), np.complex64),
                                np.full((2, 8, 8), np.nan, np.complex64), np.zeros((0, 8, 8), np.complex64), np.zeros(3), np.array("x"),
                                np.zeros((2, 8, 8), np.float16)]))
    buf = io.BytesIO()
    extra = draw(st.sampled_from([{}, {"mask": np.ones(8, np.float32)}, {"mask": np.ones(5)}, {"operator": np.array("ct")}]))
    np.savez(buf, measurement=arr, **extra)
    files["m.npz"] = buf.getvalue() if draw(st.booleans()) else body
    return Case(["restore", "run", "--operator", "mri", "--measurements", "{box}/m.npz", "--out", f"{{box}}/{out}", "--steps", "2"],
                files, writes=[out], label="restore-measurements")


test_fuzz_restore = target("restore", 40, restore_cases())


GOLDEN: list = []  # the golden run's path, set by its fixture: the file strategies below mutate its files


@st.composite
def config_cases(draw):
    body = draw(config_mutations(json.loads((GOLDEN[0] / "config.json").read_text())))
    cmd = draw(st.sampled_from([["sample", "run", "--n", "2", "--steps", "1", "--out", "{box}/o.png"],
                                ["train", "--out", "{box}/run", "--resume", "--steps", "3"],
                                ["eval", "run", "--n", "4", "--steps", "1", "--metrics", "acc"]]))
    return Case(cmd, {"run/config.json": body}, writes=["o.png", "run"], label="config")


@st.composite
def weights_cases(draw):
    which = draw(st.sampled_from(["model.safetensors", "model.safetensors", "state/state.safetensors"]))
    body = draw(safetensors_mutations((GOLDEN[0] / which).read_bytes()))
    cmd = (["sample", "run", "--n", "2", "--steps", "1", "--out", "{box}/o.png"] if which == "model.safetensors"
           else ["train", "--out", "{box}/run", "--resume", "--steps", "3"])
    return Case(cmd, {f"run/{which}": body}, writes=["o.png", "run"], label=which)


@st.composite
def image_cases(draw):
    img, suffix = draw(image_files())
    use = draw(st.sampled_from(["init", "mask", "folder"]))
    if use == "folder":  # one hostile file among good ones in a training folder
        files = {f"data/a/{i}.png": _good_png(i) for i in range(3)} | {f"data/b/{i}.png": _good_png(i + 3) for i in range(2)}
        files[f"data/b/x{suffix}"] = img
        cmd = ["train", "--data", "{box}/data", "--cond", "class", "--steps", "1", "--batch-size", "2", "--preset", "tiny",
               "--image-size", "8", "--out", "{box}/new"]
        return Case(cmd, files, writes=["new"], label=f"folder{suffix}")
    files = {f"in{suffix}": img, "good.png": _good_png(0)}
    init = f"{{box}}/in{suffix}" if use == "init" else "{box}/good.png"
    extra = ["--mask", f"{{box}}/in{suffix}"] if use == "mask" else ["--strength", "0.5"]
    return Case(["sample", "run", "--n", "2", "--steps", "2", "--out", "{box}/o.png", "--init", init, *extra], files,
                writes=["o.png"], label=f"{use}{suffix}")


def _good_png(i: int) -> bytes:
    import io

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8), 30 * i, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@st.composite
def npz_cases(draw):
    body = draw(npz_files())
    if draw(st.booleans()):
        cmd = ["train", "--data", "{box}/x.npz", "--steps", "1", "--batch-size", "2", "--preset", "tiny", "--out", "{box}/new",
               "--cond", draw(st.sampled_from(["none", "class"]))]
        return Case(cmd, {"x.npz": body}, writes=["new"], label="npz")
    cmd = ["sample", "run", "--n", "2", "--steps", "2", "--init", "{box}/x.npz", "--out", "{box}/o.npz"]
    return Case(cmd, {"x.npz": body}, writes=["o.npz"], label="npz")


@st.composite
def caption_cases(draw):
    names = [f"{i}.png" for i in range(4)]
    body, suffix = draw(captions_files(names))
    files = {f"data/{n}": _good_png(i) for i, n in enumerate(names)} | {f"caps{suffix}": body}
    cmd = ["train", "--data", "{box}/data", "--cond", "text", "--captions", f"{{box}}/caps{suffix}", "--steps", "1", "--batch-size", "2",
           "--preset", "tiny", "--out", "{box}/new"]
    return Case(cmd, files, writes=["new"], label=f"captions{suffix}")


test_fuzz_config_json = target("config.json", 130, config_cases())
test_fuzz_safetensors = target("safetensors", 130, weights_cases())
test_fuzz_images = target("images", 120, image_cases())
test_fuzz_npz = target("npz", 120, npz_cases())
test_fuzz_captions = target("captions", 50, caption_cases())


def test_fuzz_ran_at_least_1000_cases():
    """Runs last in this module: the harness's promise to CI."""
    if not STATS.cases:
        pytest.skip("run together with the fuzz targets above")
    assert sum(STATS.cases.values()) >= 1000, STATS.cases
