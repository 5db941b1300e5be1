"""Consistency distillation: the boundary condition, the consistency sampler against an analytic mixture, the CD loss
learning that mixture from its exact denoiser, and a digits round trip through the CLI."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from cli_helpers import diffuse, one_line_error
from diffuse import schedules
from diffuse.checkpoint import load_tensors
from diffuse.precond import Precond, PrecondConfig
from diffuse.samplers import consistency, heun
from diffuse.toy import GaussianMixture
from diffuse.train.distill import consistency_loss, grid_sigmas, pair_probs

SIGMA_MIN, SIGMA_MAX = 0.002, 80.0


def mixture() -> GaussianMixture:
    """Three well-separated 2-D components of unequal weight."""
    return GaussianMixture(torch.tensor([0.5, 0.3, 0.2]), torch.tensor([[-2.0, 0.0], [2.0, 1.0], [0.0, -2.5]]),
                           torch.tensor([0.25, 0.2, 0.3]))


class MLP(nn.Module):
    """A raw network F(x_in, c_noise, cond) for 2-D points."""

    def __init__(self, width: int = 128):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(3, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width),
                                  nn.SiLU(), nn.Linear(width, 2))

    def forward(self, x, c_noise, cond=None):
        return self.body(torch.cat([x, c_noise[:, None].to(x.dtype)], 1))


def share_per_component(gm: GaussianMixture, x: torch.Tensor) -> tuple[np.ndarray, float]:
    """(the share of points nearest each component, the share within 3 std of that component's mean)."""
    k = torch.cdist(x.double(), gm.mu).argmin(1)
    near = (x.double() - gm.mu[k]).norm(dim=1) < 3 * gm.s[k]
    return np.bincount(k.numpy(), minlength=len(gm.pi)) / len(x), float(near.double().mean())


def test_the_boundary_condition_is_exact():
    """f(x, sigma_min) = x bit for bit, and above it f is the Euler step of the plain denoiser down to sigma_min."""
    torch.manual_seed(0)
    net = MLP()
    plain, f = Precond(net, PrecondConfig()), Precond(net, PrecondConfig(), boundary=SIGMA_MIN)
    x = torch.randn(64, 2) * 3
    assert torch.equal(f(x, torch.full((64,), SIGMA_MIN)), x)
    sigma = torch.exp(torch.linspace(-5, 4, 64))
    d = plain(x, sigma)
    euler = x + (SIGMA_MIN - sigma[:, None]) * (x - d) / sigma[:, None]
    torch.testing.assert_close(f(x, sigma), euler, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(plain(x, torch.full((64,), SIGMA_MIN)), x)  # the plain denoiser does not keep x there


def exact_consistency(gm: GaussianMixture, steps: int = 200):
    """The exact consistency function of the mixture: its probability-flow ODE solved from sigma down to sigma_min by
    many Heun steps with the exact denoiser."""

    def f(x, sigma, cond=None):
        out = torch.empty_like(x)
        for s in sigma.unique():
            rows = sigma == s
            sig = schedules.karras_sigmas(steps, SIGMA_MIN, float(s))[:-1]  # s .. sigma_min
            out[rows] = heun(gm.denoiser, x[rows].double(), sig).to(x.dtype)
        return out

    return f


def test_a_distilled_runs_schedule_starts_where_its_search_chose():
    """The consistency sampler starts at the record's start for its step count ("starts"; else the 1-step "start";
    older runs: sigma_max) and visits the stored levels."""
    from diffuse.errors import UserError
    from diffuse.generate import SampleConfig, sigma_schedule

    f = Precond(MLP(), PrecondConfig(), boundary=SIGMA_MIN)
    f.consistency = {"steps": 2, "sigmas": {"1": [], "2": [1.5], "4": [3.0, 1.0, 0.1]}}
    used = lambda k: SampleConfig(steps=k).for_model(f)  # noqa: E731
    assert sigma_schedule(f, used(2)).tolist() == [f.sigma_range[1], 1.5, 0.0]  # no start: sigma_max, as before
    f.consistency["start"] = 10.0
    assert sigma_schedule(f, used(2)).tolist() == [10.0, 1.5, 0.0] and sigma_schedule(f, used(1)).tolist() == [10.0, 0.0]
    three = sigma_schedule(f, used(3))  # a count with no stored levels: Karras' ramp, from the start
    assert len(three) == 4 and abs(float(three[0]) - 10.0) < 1e-9 and three[-1] == 0 and bool((three[:-1].diff() < 0).all())
    f.consistency["starts"] = {"2": 7.0, "4": 5.0}  # one start per searched step count
    assert sigma_schedule(f, used(2)).tolist() == [7.0, 1.5, 0.0] and sigma_schedule(f, used(4)).tolist() == [5.0, 3.0, 1.0, 0.1, 0.0]
    assert sigma_schedule(f, used(1)).tolist() == [10.0, 0.0]  # no 1-step entry: the 1-step start
    assert abs(float(sigma_schedule(f, used(3))[0]) - 7.0) < 1e-9  # 3 steps start where 2 do, 8 where 4 do
    assert abs(float(sigma_schedule(f, used(8))[0]) - 5.0) < 1e-9
    for bad in (0.001, 1e3, float("nan"), "10", True):
        f.consistency["starts"] = {"2": bad}
        with pytest.raises(UserError, match="bad start sigma"):
            sigma_schedule(f, used(2))
        f.consistency["starts"] = {}
        f.consistency["start"] = bad
        with pytest.raises(UserError, match="bad start sigma"):
            sigma_schedule(f, used(1))
    for bad in ([7.0], {"two": 7.0}, "7"):
        f.consistency["starts"] = bad
        with pytest.raises(UserError, match="bad starts"):
            sigma_schedule(f, used(2))


def test_the_consistency_sampler_with_the_exact_consistency_function_reproduces_the_mixture():
    gm = mixture()
    f = exact_consistency(gm)
    z = torch.randn(3000, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for sigmas in ([SIGMA_MAX, 0.0], [SIGMA_MAX, 1.0, 0.0]):
        x = consistency(f, z * SIGMA_MAX, torch.tensor(sigmas, dtype=torch.float64), generator=torch.Generator().manual_seed(1))
        shares, near = share_per_component(gm, x)
        np.testing.assert_allclose(shares, gm.pi.numpy(), atol=0.03)
        assert near > 0.97
    # the plain denoiser in its place gives the mixture's mean at one step: the check above can fail
    x = consistency(gm.denoiser, z * SIGMA_MAX, torch.tensor([SIGMA_MAX, 0.0], dtype=torch.float64))
    assert share_per_component(gm, x)[1] < 0.2


def test_distilling_the_exact_denoiser_learns_the_mixture_at_one_and_two_steps():
    """The CD loss of train/distill.py, with the mixture's exact denoiser as the teacher and a small MLP as the student
    (from scratch), gives one- and two-step samples with the mixture's component shares."""
    gm = mixture()
    torch.manual_seed(0)
    student = Precond(MLP(), PrecondConfig(sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX), boundary=SIGMA_MIN)
    teacher = lambda x, s, c=None: gm.denoiser(x, s).float()  # noqa: E731
    grid = grid_sigmas(student, 18)
    probs = pair_probs(grid)
    opt = torch.optim.Adam(student.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 2500)
    g = torch.Generator().manual_seed(0)
    for _ in range(2500):
        x0 = gm.sample(256, g).float()
        i = torch.multinomial(probs, 256, replacement=True, generator=g)
        loss = consistency_loss(student, teacher, x0, None, grid[i], grid[i + 1], torch.randn(256, 2, generator=g)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    z = torch.randn(3000, 2, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        # measured: 80% (1 step) and 93% (2 steps) of the samples within 3 std of their component (exact samples: 98.9%)
        for sigmas, floor in (([SIGMA_MAX, 0.0], 0.7), ([SIGMA_MAX, 1.0, 0.0], 0.88)):
            x = consistency(student, z * SIGMA_MAX, torch.tensor(sigmas), generator=torch.Generator().manual_seed(6))
            shares, near = share_per_component(gm, x)
            np.testing.assert_allclose(shares, gm.pi.numpy(), atol=0.06)
            assert near > floor, (sigmas, near)
        # where it started from had it been the teacher: one Euler step of the exact ODE, the mixture's mean, far off
        euler = Precond(MLP(), PrecondConfig(), boundary=SIGMA_MIN)
        euler.forward = lambda x, s, c=None: x + (SIGMA_MIN - s[:, None]) * (x - teacher(x, s)) / s[:, None]
        assert share_per_component(gm, consistency(euler, z * SIGMA_MAX, torch.tensor([SIGMA_MAX, 0.0])))[1] < 0.2


def test_consistency_tuning_is_distillation_from_a_teacher_that_knows_the_clean_item():
    """--method ct's target input x0 + r n is exactly the Heun step of a teacher whose denoiser returns x0: tuning is
    CD with the one-sample estimate of the ODE in place of the teacher, and it calls no teacher."""
    torch.manual_seed(0)
    student = Precond(MLP(), PrecondConfig(), boundary=SIGMA_MIN)
    x0, noise = torch.randn(64, 2, dtype=torch.float64), torch.randn(64, 2, dtype=torch.float64)
    student = student.double()
    grid = grid_sigmas(student, 18).double()
    i = torch.randint(0, 17, (64,), generator=torch.Generator().manual_seed(1))
    t, r = grid[i], grid[i + 1]
    oracle = lambda x, s, c=None: x0  # noqa: E731
    ct, cd = consistency_loss(student, None, x0, None, t, r, noise), consistency_loss(student, oracle, x0, None, t, r, noise)
    torch.testing.assert_close(ct, cd, rtol=1e-9, atol=1e-12)
    wrong = lambda x, s, c=None: x0 + 0.1  # noqa: E731 (a teacher that does not know x0 gives another loss)
    assert not torch.allclose(ct, consistency_loss(student, wrong, x0, None, t, r, noise))


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    root = tmp_path_factory.mktemp("distill")
    diffuse("train", "--data", "digits", "--cond", "class", "--preset", "tiny", "--steps", "30", "--batch-size", "32",
            "--sample-every", "100000", "--out", root / "teacher")
    return root


DISTILL = ("--batch-size", "16", "--search-n", "20", "--checkpoint-every", "2")


def test_distill_round_trip_through_the_cli(teacher, tmp_path):
    run = tmp_path / "fast"
    r = diffuse("distill", teacher / "teacher", "--out", run, "--steps", "4", *DISTILL)
    assert "diffuse sample" in r.stdout
    rec = json.loads((run / "config.json").read_text())
    c = rec["model"]["consistency"]
    assert c["guidance"] == 3.0 and c["sigma_min"] == 0.002 and rec["distill"]["steps"] == 4
    assert len(c["sigmas"]["2"]) == 1 and len(c["sigmas"]["4"]) == 3 and c["sigmas"]["1"] == []
    assert all(0 < s < 80 for s in c["sigmas"]["4"]) and c["sigmas"]["4"] == sorted(c["sigmas"]["4"], reverse=True)
    from diffuse.train.consistency_search import CANDIDATES, STARTS, intermediate_sigmas

    fds = {r["start"]: r["fd"] for r in c["search"] if r["steps"] == 1}  # the 1-step start
    assert sorted(fds) == sorted(STARTS) and fds[c["start"]] == min(fds.values())
    for k, candidates in CANDIDATES.items():  # each k's start and s by coordinate search, every pair drawn once
        rows = {(r["start"], r["s"]): r["fd"] for r in c["search"] if r["steps"] == k}
        assert len(rows) == sum(r["steps"] == k for r in c["search"]) and all(s < st for st, s in rows)
        first = {s: fd for (st, s), fd in rows.items() if st == c["start"]}  # s from the 1-step start
        assert sorted(first) == [s for s in candidates if s < c["start"]]
        s1 = min(first, key=first.get)
        st = c["starts"][str(k)]  # the start scored best at that s
        assert {a for a, s in rows if s == s1} == {a for a in STARTS if a > s1} and rows[st, s1] == min(fd for (a, s), fd in rows.items() if s == s1)
        final = {s: fd for (a, s), fd in rows.items() if a == st}  # then s again, at the chosen start
        assert sorted(final) == [s for s in candidates if s < st]
        assert c["sigmas"][str(k)] == intermediate_sigmas(k, min(final, key=final.get), st)
    assert all(s < c["starts"]["4"] for s in c["sigmas"]["4"])
    diffuse("sample", run, "--steps", "2", "--n", "10", "--out", tmp_path / "two.npz")
    diffuse("sample", run, "--n", "10", "--out", tmp_path / "default.npz")  # the consistency sampler, 2 steps
    two, default = np.load(tmp_path / "two.npz"), np.load(tmp_path / "default.npz")
    assert two["images"].shape == (10, 8, 8, 1) and np.array_equal(two["images"], default["images"])
    diffuse("sample", run, "--steps", "1", "--n", "10", "--out", tmp_path / "one.npz")
    assert not np.array_equal(np.load(tmp_path / "one.npz")["images"], two["images"])
    diffuse("sample", run, "--steps", "4", "--n", "10", "--init", tmp_path / "two.npz", "--strength", "0.5", "--out", tmp_path / "edit.png")
    ev = json.loads(diffuse("eval", run, "--n", "20", "--metrics", "fid,acc", "--json").stdout)
    assert (ev["sample_sampler"], ev["sample_steps"], ev["sample_guidance"]) == ("consistency", 2, 3.0)
    diffuse("synth", run, "--per-class", "1", "--out", tmp_path / "syn")
    rows = (tmp_path / "syn" / "manifest.csv").read_text().splitlines()
    assert len(rows) == 11 and rows[1].split(",")[4:7] == ["consistency", "2", "3.0"]
    one_line_error(diffuse("sample", run, "--guidance", "5", "--n", "2", "--out", tmp_path / "g.png", check=False), "distilled with guidance 3")
    one_line_error(diffuse("sample", run, "--guidance-interval", "0.3,5", "--n", "2", "--out", tmp_path / "g.png", check=False),
                   "--guidance-interval does not apply")
    one_line_error(diffuse("sample", run, "--apg", "0", "--n", "2", "--out", tmp_path / "g.png", check=False), "--apg does not apply")
    one_line_error(diffuse("train", "--resume", "--out", run, check=False), "distill --resume")
    rec["model"]["consistency"]["starts"]["2"] = 1000.0  # above sigma_max: refused, not sampled from
    (run / "config.json").write_text(json.dumps(rec))
    one_line_error(diffuse("sample", run, "--n", "2", "--out", tmp_path / "s.png", check=False), "bad start sigma")
    one_line_error(diffuse("distill", run, "--out", tmp_path / "again", "--steps", "1", check=False), "distilled run already")
    one_line_error(diffuse("distill", teacher / "teacher", "--out", run, "--steps", "1", check=False), "already holds")
    one_line_error(diffuse("distill", tmp_path / "nothing", "--out", tmp_path / "x", "--steps", "1", check=False), "not found")
    one_line_error(diffuse("distill", teacher / "teacher", "--out", tmp_path / "y", check=False), "--minutes")
    one_line_error(diffuse("distill", teacher / "teacher", "--out", tmp_path / "y", "--steps", "1", "--lr", "nan", check=False), "--lr")
    assert not (tmp_path / "y").exists() and not (tmp_path / "x").exists()


def test_consistency_tuning_through_the_cli(teacher, tmp_path):
    """--method ct: an ordinary distilled run, unguided (no teacher to guide); guidance with it, or another method,
    is one error line."""
    run = tmp_path / "ct"
    diffuse("distill", teacher / "teacher", "--out", run, "--steps", "3", "--method", "ct", *DISTILL)
    rec = json.loads((run / "config.json").read_text())
    assert rec["model"]["consistency"]["method"] == "ct" and rec["model"]["consistency"]["guidance"] == 1.0
    diffuse("sample", run, "--steps", "1", "--n", "10", "--out", tmp_path / "one.npz")
    assert np.load(tmp_path / "one.npz")["images"].shape == (10, 8, 8, 1)
    one_line_error(diffuse("distill", teacher / "teacher", "--out", tmp_path / "g", "--steps", "1", "--method", "ct",
                           "--guidance", "3", check=False), "--method ct learns the unguided ODE")
    one_line_error(diffuse("distill", teacher / "teacher", "--out", tmp_path / "m", "--steps", "1", "--method", "ect", check=False),
                   "--method must be cd or ct")
    assert not (tmp_path / "g").exists() and not (tmp_path / "m").exists()


def test_a_resumed_distillation_continues_exactly(teacher, tmp_path):
    diffuse("distill", teacher / "teacher", "--out", tmp_path / "full", "--steps", "6", *DISTILL)
    diffuse("distill", teacher / "teacher", "--out", tmp_path / "part", "--steps", "3", *DISTILL)
    diffuse("distill", teacher / "teacher", "--out", tmp_path / "part", "--steps", "6", "--resume", *DISTILL)
    full, _ = load_tensors(tmp_path / "full" / "model.safetensors")
    part, _ = load_tensors(tmp_path / "part" / "model.safetensors")
    assert full.keys() == part.keys() and all(torch.equal(full[k], part[k]) for k in full)
    teacher_w, _ = load_tensors(teacher / "teacher" / "model.safetensors")
    assert any(not torch.equal(full[k], teacher_w[k]) for k in full)  # it did train
