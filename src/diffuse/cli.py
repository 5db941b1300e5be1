"""Command line: flags -> typed configs -> library calls. No math here.

User errors (UserError, bad flag values) print one line, ``error: ...``, and exit with status 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from .cli_common import bench_app, _BATCH, _CHECKPOINT_MINUTES, _DEVICE, _GUIDANCE, _NEAREST, _PRECISION, _SAMPLER, _SCHEDULE, _SEED, _STEPS, _bar, _device, _train_bar, app, json_safe_stdout
from .errors import UserError


@app.command()
def train(
    data: str = typer.Option("digits", help="digits | fashion-mnist | a folder of images | a .npz file | notes | a folder of "
                                               "audio | moving-fmnist | moving-digits | a folder of GIF/MP4 clips (video; options as moving-fmnist:frames=16,size=64, "
                                               "FOLDER:frames=16)"),
    data_dir: Optional[str] = typer.Option(None, help="folder with the Fashion-MNIST IDX files (else $DIFFUSE_DATA, then the Debian package)"),
    cond: str = typer.Option("none", help="none | class | text (captions from class names, or --captions)"),
    task: str = typer.Option("generate", help="generate | superres (learn to upsample 1/--superres-factor images)"),
    captions: Optional[str] = typer.Option(None, help="--cond text on an image folder: CSV or JSONL with file,text"),
    superres_factor: int = typer.Option(2, help="--task superres: the upsampling factor"),
    text_noise: float = typer.Option(0.3, help="--cond text: conditioning augmentation (noise on text embeddings), 0 = off"),
    out: Optional[str] = typer.Option(None, help="run directory (default runs/<data>)"),
    steps: Optional[int] = typer.Option(None, help="training steps (total, also across --resume)"),
    minutes: Optional[float] = typer.Option(None, help="wall-clock budget in minutes (total, also across --resume)"),
    model: Optional[str] = typer.Option(None, help="denoiser network: unet | dit (Diffusion Transformer); default: dit for "
                                                   "video (spacetime patches), unet otherwise"),
    attention: Optional[str] = typer.Option(None, help="video DiT: joint (all tokens) | divided (blocks alternate spatial "
                                                       "and temporal attention); default from the preset"),
    temporal_patch: Optional[int] = typer.Option(None, help="video DiT: frames per tubelet (default from the preset)"),
    patch_size: Optional[int] = typer.Option(None, help="pixels (or latent positions) per patch side: the DiT's tokens, the "
                                                        "U-Net's space-to-depth (default from the preset; on latents 1, "
                                                        "2 for clips)"),
    frame_mask: Optional[float] = typer.Option(None, help="video: share of clips trained with their first 1..T/2 frames given, "
                                                         "for image-to-video and continuation (default 0.25; 0 = off)"),
    frame_noise: float = typer.Option(0.0, help="video: share of the noise's variance that every frame shares (PYoCo's "
                                                "mixed prior; sampling and editing follow the run's); 0 = white noise"),
    preset: Optional[str] = typer.Option(None, help="size preset; U-Net: tiny | fmnist | small | base | large, DiT: tiny | fmnist | audio | video | S | B"),
    latent: Optional[str] = typer.Option(None, help="latent diffusion: an autoencoder directory from `diffuse train-autoencoder`, 'auto' (train and cache one first, 30% of --minutes) or 'none'"),
    vocoder: str = typer.Option("auto", help="audio: DIR | auto | none. A neural vocoder directory from `diffuse train-vocoder` that the run "
                                              "carries (RUN/vocoder) and decodes with; auto: the one train-vocoder cached for this data, "
                                              "if any; none: Griffin-Lim + log-mel matching"),
    image_size: Optional[int] = typer.Option(None, help="resize the data to this size first (e.g. 64)"),
    param: str = typer.Option("edm", help="parameterization: edm | eps | v | x0"),
    weighting: Optional[str] = typer.Option(None, help="loss weighting: edm | eps | min_snr | v | x0 (default: natural for --param)"),
    sigma_density: Optional[str] = typer.Option(None, help="training noise levels: lognormal (EDM) | vp (uniform DDPM t)"),
    p_mean: Optional[float] = typer.Option(None, help="lognormal noise levels: mean of ln(sigma) (default from the recipe; EDM: -1.2)"),
    p_std: Optional[float] = typer.Option(None, help="lognormal noise levels: spread of ln(sigma) (default from the recipe; EDM: 1.2)"),
    sigma_data: float = typer.Option(0.5, help="the data's standard deviation that EDM's preconditioning and loss weight assume "
                                     "(0.5, EDM's for images; latents are normalised to 1)"),
    beta_schedule: str = typer.Option("linear", help="VP schedule for eps/v/x0 models: linear | cosine | sigmoid"),
    zero_terminal_snr: bool = typer.Option(False, help="rescale the VP schedule to zero terminal SNR"),
    batch_size: Optional[int] = typer.Option(None, help="batch size (default from the dataset recipe)"),
    lr: Optional[float] = typer.Option(None, help="AdamW learning rate (default from the dataset recipe)"),
    warmup_steps: Optional[int] = typer.Option(None, help="linear learning-rate warm-up steps (default from the recipe: 200; 50 for audio)"),
    lr_decay: Optional[float] = typer.Option(None, help="share of the budget, at its end, over which the learning rate falls linearly to 0 (0: constant; default from the recipe: 0.3 for audio, else 0)"),
    ema_kimg: Optional[float] = typer.Option(None, help="EMA half-life in thousands of images"),
    ema_rampup: float = typer.Option(0.05, help="the EMA half-life is at most this share of the images seen so far "
                                                "(EDM's ramp-up; in short runs it, not --ema-kimg, sets the half-life)"),
    label_dropout: float = typer.Option(0.1, help="probability of the null label or caption (classifier-free guidance)"),
    class_weight: Optional[list[str]] = typer.Option(None, help="NAME=W (repeatable): draw the items of class NAME (or "
                                                              "of the classes whose names start with it, as Sandal for "
                                                              "moving-fmnist) W times as often; default: once per epoch"),
    dropout: Optional[float] = typer.Option(None, help="network dropout (default from the preset)"),
    flip: bool = typer.Option(False, help="random horizontal flips"),
    precision: str = typer.Option("auto", help="auto | bf16 | fp32 (auto: bf16 on GPUs and AMX CPUs)"),
    seed: int = typer.Option(0),
    sample_every: int = typer.Option(1000, help="write a sample grid every N steps"),
    checkpoint_every: int = typer.Option(1000, help="checkpoint every N steps"),
    checkpoint_minutes: float = _CHECKPOINT_MINUTES,
    log_every: int = typer.Option(50, help="append to metrics.jsonl every N steps"),
    resume: bool = typer.Option(False, help="continue the run in --out where it stopped"),
    device: str = _DEVICE,
) -> None:
    """Train a diffusion model; writes RUN/config.json, model.safetensors, state/, samples/, metrics.jsonl."""
    from .train import TrainConfig
    from .train import train as run_train
    from .train.batches import parse_class_weights

    from .data import modality_name

    given = {"dropout": dropout, "attention": attention, "temporal_patch": temporal_patch, "patch_size": patch_size}
    overrides = {k: v for k, v in given.items() if v is not None}
    model = model or ("dit" if modality_name(data) == "video" else "unet")
    out = out or f"runs/{Path(data).name if data not in ('digits', 'fashion-mnist') else data}"
    cfg = TrainConfig(class_weights=parse_class_weights(class_weight or []), data=data, data_dir=data_dir, cond=cond, task=task, captions=captions, superres_factor=superres_factor, text_noise=text_noise, out=out, arch=model, preset=preset, latent=latent, vocoder=vocoder, image_size=image_size, net_overrides=overrides, param=param,
                      weighting=weighting, sigma_density=sigma_density, p_mean=p_mean, p_std=p_std, sigma_data=sigma_data, beta_schedule=beta_schedule,
                      zero_terminal_snr=zero_terminal_snr, label_dropout=label_dropout, batch_size=batch_size, lr=lr,
                      warmup_steps=warmup_steps, lr_decay=lr_decay, ema_halflife_kimg=ema_kimg, ema_rampup_ratio=ema_rampup, flip=flip, frame_mask=frame_mask, frame_noise=frame_noise, steps=steps, minutes=minutes,
                      seed=seed, precision=precision, log_every=log_every, sample_every=sample_every,
                      checkpoint_every=checkpoint_every, checkpoint_minutes=checkpoint_minutes)
    from .train import dist

    with _train_bar("train", {"loss": ("loss", ".4f"), "img_s": ("img_per_s", ".0f"), "step": ("step", "")}) as progress:
        res = run_train(cfg, resume=resume, progress=progress, device=_device(device))
    if dist.teardown() != 0:  # under torchrun only rank 0 reports
        return
    state = "interrupted; resume with --resume" if res.interrupted else "done"
    typer.echo(f"{state}: step {res.step}, {res.nimg} images, {res.seconds:.0f} s. Weights: {res.run_dir / 'model.safetensors'}; "
               f"samples: {res.run_dir / 'samples'}")


def _sample_cfg(sampler: str | None, steps: int | None, schedule: str, guidance: float, seed: int, batch_size: int, precision: str,
                churn: float = 0.0, guidance_interval: str | None = None, apg: str | None = None):
    from .generate import SampleConfig, parse_interval, parse_projection

    return SampleConfig(sampler=sampler, steps=steps, schedule=schedule, guidance=guidance, seed=seed,
                        batch_size=batch_size, precision=precision, churn=churn,
                        guidance_interval=parse_interval(guidance_interval), apg=parse_projection(apg))


@app.command()
def sample(
    run: Path = typer.Argument(..., help="run directory"),
    n: int = typer.Option(64, "--n", "--num-samples", help="number of images (--num-samples under torchrun, whose parser claims --n)"),
    sampler: Optional[str] = _SAMPLER,
    steps: Optional[int] = _STEPS,
    schedule: str = _SCHEDULE,
    guidance: Optional[float] = _GUIDANCE,
    label: Optional[int] = typer.Option(None, help="class to sample (default: round robin, i mod classes)"),
    prompt: Optional[list[str]] = typer.Option(None, help="text model: a prompt (repeatable; samples cycle through them)"),
    prompts: Optional[Path] = typer.Option(None, help="text model: a file with one prompt per line"),
    negative_prompt: Optional[str] = typer.Option(None, help="text model: what to steer away from (it replaces the empty "
                                                               "prompt in classifier-free guidance)"),
    nearest_caption: bool = _NEAREST,
    init: Optional[Path] = typer.Option(None, help="img2img / inpainting start (PNG or .npz images; a WAV for audio); "
                                                     "for a super-resolution model, the low-res input; video: an image "
                                                     "to animate, or a clip (GIF, MP4, .npz) to continue"),
    strength: float = typer.Option(1.0, help="img2img: how much of the schedule to run (0 = return --init, 1 = from noise)"),
    mask: Optional[Path] = typer.Option(None, help="inpainting mask PNG: white = keep --init, black = generate"),
    keep_seconds: Optional[float] = typer.Option(None, help="audio: keep the first S seconds of --init and continue it"),
    inpaint_seconds: Optional[str] = typer.Option(None, help="audio: A:B, regenerate seconds A to B of --init, keep the rest"),
    seconds: Optional[float] = typer.Option(None, help="audio: clip length (rounded to the model's frame grid)"),
    frames: Optional[int] = typer.Option(None, help="video: frames per clip (default: the run's; a multiple of its temporal patch)"),
    fps: Optional[float] = typer.Option(None, help="video: frames per second of GIF/MP4 output (default: the run's, 8)"),
    vocoder: Optional[Path] = typer.Option(None, help="audio: decode with the neural vocoder in this folder (diffuse train-vocoder) "
                                                      "instead of the run's"),
    vocoder_refine: Optional[int] = typer.Option(None, help="audio: log-mel matching steps after the vocoder (default: the run's; "
                                                            "300 in runs written since 2026-12-06, 100 or 0 before)"),
    resample: int = typer.Option(1, help="inpainting: RePaint resampling, K passes per step"),
    consistency: bool = typer.Option(True, help="super-resolution: keep the output's low-pass equal to the input"),
    seed: int = _SEED,
    batch_size: int = _BATCH,
    precision: str = _PRECISION,
    out: Path = typer.Option(..., help="images: FILE.png (grid) or FILE.npz (images uint8 [N,H,W,C], labels); audio: DIR/ "
                                         "(WAVs, spectrograms.png, samples.json), FILE.npz (audio, sample_rate), FILE.wav or FILE.png; "
                                         "video: FILE.gif, FILE.mp4, FILE.npz (videos uint8 [N,T,H,W,C]) or FILE.png (frame strips)"),
    device: str = _DEVICE,
    churn: float = typer.Option(0.0, help="Heun only: EDM's S_churn, fresh noise per step (0 = deterministic)"),
    guidance_interval: Optional[str] = typer.Option(None, help="LO,HI: apply --guidance only at noise levels LO < sigma <= HI "
                                                              "(the conditional model elsewhere)"),
    apg: Optional[str] = typer.Option(None, help="ETA[,RESCALE[,MOMENTUM]]: adaptive projected guidance (Sadat et al. "
                                                 "2024) in place of CFG's update at --guidance; e.g. 0 or 0,4,-0.5"),
) -> None:
    """Sample from a trained run: by class, by prompt, from an input (img2img / audio-to-audio), into a mask
    (inpainting, audio continuation), or up from a low-res image (super-resolution models)."""
    import torch

    from .api import Run
    from .modalities import modality_of
    from .model import read_run_config
    from .sampling_inputs import conditions, time_mask, write_samples

    if n <= 0:
        raise UserError(f"--n must be a positive integer, got {n}")
    from .train import dist

    scfg = _sample_cfg(sampler, steps, schedule, guidance, seed, batch_size, precision, churn, guidance_interval, apg)
    read_run_config(run)  # a missing or foreign run is named before anything else
    from .model import ModelConfig

    mod = modality_of(ModelConfig.from_dict(read_run_config(run).get("model")))
    mod.check_out(out)
    d, dev = dist.setup(_device(device))  # under torchrun each rank samples its shard of the n samples
    r = Run(run, dev)
    mcfg, mod = r.config, r.modality
    if vocoder is not None:
        mod.set_vocoder(name="neural", path=str(vocoder.resolve()))
    if vocoder_refine is not None:
        mod.set_vocoder(refine=vocoder_refine)
    mod.set_output(fps=fps)
    # item: what is written (decoded, for a latent model); shape: what the network samples (item / f per axis)
    f = mcfg.image_shape[-1] // mcfg.net_shape[-1]
    item, note = mod.sample_shape(mcfg.image_shape, seconds, f * getattr(mcfg.net, "patch_size", 1), frames,
                                  getattr(mcfg.net, "temporal_patch", 1))
    per_axis = [a // b for a, b in zip(mcfg.image_shape[1:], mcfg.net_shape[1:])]  # per-frame latents keep T: 1 there
    shape = (mcfg.net_shape[0], *[a // fa for a, fa in zip(item[1:], per_axis)])
    keep = time_mask(mod.duration(item), keep_seconds, inpaint_seconds)
    negative = negative_prompt.strip() if negative_prompt and negative_prompt.strip() else None
    c = conditions(mcfg, n, label, list(prompt or []), prompts, init, strength, mask, resample, run, nearest_caption, mod, item,
                   keep, negative)
    for line in ([note] if note else []) + c.notes if d.is_writer else []:
        typer.echo(line, err=True)
    n = c.n
    mod.check_out(out, n)  # the number of samples is known now (a --prompts file sets it)
    scfg.validate(mcfg.conditional)
    lo, hi = dist.shard(d, n)
    with _bar(hi - lo, "sample", "item") as bar:
        part = torch.zeros(0, *item) if hi <= lo else r.generate(c, scfg, lo, hi, progress=bar.update, shape=shape,
                                                                 consistency=consistency)
    x = torch.cat(dist.gather(d, part))
    dist.teardown(d)
    if d.is_writer:
        params = r.params(scfg, n, 0, schedule, c.prompts if prompt else None, negative, label,
                          None if init is None else str(init), strength, None if mask is None else str(mask))
        typer.echo(write_samples(out, x, c, mod, mcfg.class_names, params))


@app.command("eval")
def eval_(
    run: Path = typer.Argument(..., help="run directory"),
    n: int = typer.Option(1000, "--n", "--num-samples", help="number of samples"),
    sampler: Optional[str] = _SAMPLER,
    steps: Optional[int] = _STEPS,
    schedule: str = _SCHEDULE,
    guidance: Optional[float] = _GUIDANCE,
    seed: int = _SEED,
    batch_size: int = _BATCH,
    precision: str = _PRECISION,
    json_out: bool = typer.Option(False, "--json", help="print one JSON object"),
    device: str = _DEVICE,
    metrics: str = typer.Option("fid,acc", help="comma list of fid, kid, pr (precision/recall), acc, cas, bpd"),
    features: str = typer.Option("classifier", help="feature network for fid/kid/pr: classifier or inception"),
    inception_weights: Optional[Path] = typer.Option(None, help="local pt_inception .pth/.safetensors for --features inception"),
    cas_per_class: int = typer.Option(500, help="synthetic (and real) images per class for cas"),
    cas_steps: int = typer.Option(600, help="training steps of each cas classifier"),
    bpd_n: int = typer.Option(100, help="test images for bpd"),
    vlb_steps: Optional[int] = typer.Option(None, help="VP steps of the bpd bound (default: all T of the schedule)"),
    ode_steps: int = typer.Option(64, help="Heun steps of the probability-flow ODE for bpd"),
) -> None:
    """FID/KID/precision-recall (domain-classifier or Inception features, test split as reference), label accuracy,
    Classification Accuracy Score and bits/dim."""
    from .metrics import evaluate, parse_metrics

    mlist = parse_metrics(metrics)
    scfg = _sample_cfg(sampler, steps, schedule, guidance, seed, batch_size, precision)
    with _bar(n, "eval", "img") as bar, json_safe_stdout():
        res = evaluate(run, n, scfg, log=lambda m: typer.echo(m, err=True), progress=bar.update, device=_device(device),
                       metrics=mlist, cas_per_class=cas_per_class, cas_steps=cas_steps, features=features,
                       inception_weights=inception_weights, bpd_n=bpd_n, vlb_steps=vlb_steps, ode_steps=ode_steps)
    res.pop("images", None), res.pop("labels", None)
    if json_out:
        typer.echo(json.dumps(res))
        return
    from .metrics.report import format_eval

    typer.echo(format_eval(res))


def _click_errors() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """(ClickException classes, Abort classes) of click and of the copy newer typer releases vendor."""
    import importlib

    errors, aborts = [], []
    for name in ("typer._click.exceptions", "click.exceptions"):
        try:
            mod = importlib.import_module(name)
        except ImportError:
            continue
        errors.append(mod.ClickException)
        if hasattr(mod, "Abort"):
            aborts.append(mod.Abort)
    return tuple(errors), tuple(aborts)


@app.command()
def synth(
    run: Path = typer.Argument(..., help="run directory of a class- or text-conditional model"),
    per_class: int = typer.Option(..., help="images per class (text models: per class of --prompts)"),
    prompts: Optional[Path] = typer.Option(None, help="text models: lines 'prompt' or 'class<TAB>prompt' (default: class names)"),
    nearest_caption: bool = _NEAREST,
    out: Path = typer.Option(..., help="output folder: <class>/<index>.png + manifest.csv"),
    sampler: Optional[str] = _SAMPLER,
    steps: Optional[int] = _STEPS,
    schedule: str = _SCHEDULE,
    guidance: Optional[float] = _GUIDANCE,
    seed: int = _SEED,
    batch_size: int = _BATCH,
    precision: str = _PRECISION,
    device: str = _DEVICE,
) -> None:
    """Write a labelled synthetic dataset (ImageFolder layout + manifest.csv); a re-run fills in only what is missing."""
    from .synth import synth as run_synth

    scfg = _sample_cfg(sampler, steps, schedule, guidance, seed, batch_size, precision)
    with _bar(None, "synth", "img") as bar:
        res = run_synth(run, per_class, out, scfg, _device(device), progress=bar.update, prompts=prompts,
                        nearest_caption=nearest_caption, log=lambda m: typer.echo(m, err=True))
    typer.echo(f"{out}: {res['written']} images written, {res['kept']} already there, {res['total']} in total; manifest: {out / 'manifest.csv'}")


@app.command()
def plot(run: Path = typer.Argument(..., help="run directory"),
         out: Optional[Path] = typer.Option(None, help="PNG path (default RUN/plots/training.png)"),
         samples: int = typer.Option(0, help="also a titled sample grid with this many images per row (RUN/plots/samples.png)"),
         device: str = _DEVICE) -> None:
    """Loss, learning-rate and img/s curves from RUN/metrics.jsonl as a PNG; FID vs NFE too once `bench quality` ran;
    a sample grid with --samples."""
    from .plots import plot_quality, plot_samples, plot_training

    typer.echo(f"wrote {plot_training(run, out)}")
    if samples < 0:
        raise UserError(f"--samples must be >= 0, got {samples}")
    if samples:
        typer.echo(f"wrote {plot_samples(run, samples, out.with_name(out.stem + '_samples.png') if out else None, str(_device(device)))}")
    if (run / "quality.json").is_file():
        typer.echo(f"wrote {plot_quality(run, out.with_name(out.stem + '_fid_vs_nfe.png') if out else None)}")


@bench_app.command("quality")
def bench_quality(
    run: Path = typer.Argument(..., help="run directory"),
    n: int = typer.Option(500, "--n", "--num-samples", help="samples per (sampler, NFE)"),
    samplers: str = typer.Option("ddim,dpmpp_2m,heun,ddpm", help="comma list of samplers"),
    nfe: str = typer.Option("5,10,20,50,100,250", help="comma list of NFE targets"),
    guidance: Optional[float] = _GUIDANCE,
    seed: int = _SEED,
    device: str = _DEVICE,
    json_out: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """FID against NFE for each sampler: table, RUN/quality.json and RUN/plots/fid_vs_nfe.png."""
    from .plots import plot_quality
    from .quality import quality_sweep, table

    try:
        nfes = tuple(int(k) for k in nfe.split(",") if k.strip())
    except ValueError:
        raise UserError(f"--nfe must be a comma list of integers, got {nfe!r}") from None
    names = tuple(s.strip() for s in samplers.split(",") if s.strip())
    with json_safe_stdout():
        res = quality_sweep(run, n, names, nfes, guidance, seed, str(_device(device)), log=lambda m: typer.echo(m, err=True))
        png = plot_quality(run)
    typer.echo(json.dumps(res) if json_out else table(res) + f"\nplot: {png}")


@bench_app.command("throughput")
def bench_throughput(
    json_out: bool = typer.Option(False, "--json", help="print one JSON object"),
    peer: bool = typer.Option(True, help="also measure diffusers' UNet2DModel (needs diffusers)"),
    device: str = typer.Option("cpu", help="cpu | cuda"),
) -> None:
    """Training / inference / sampling speed and peak memory: our U-Net vs diffusers' UNet2DModel, same shape."""
    from . import bench

    models = ("ours", "diffusers") if peer else ("ours",)
    if peer:
        try:
            import diffusers  # noqa: F401
        except ImportError:
            raise UserError("diffusers is not installed: pip install -e '.[bench]', or pass --no-peer") from None
    with json_safe_stdout():
        res = bench.run_all(models, log=lambda m: typer.echo(m, err=True), device=str(_device(device)))
    typer.echo(json.dumps(res) if json_out else bench.table(res))


from . import cli_autoencoder, cli_distill, cli_restore, cli_serve, cli_vocoder  # noqa: E402,F401  (register train-autoencoder, distill, restore, serve and train-vocoder on app)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app; one line and exit status 2 for user errors."""
    click_errors, aborts = _click_errors()
    cmd = typer.main.get_command(app)
    try:
        rv = cmd.main(args=argv, prog_name="diffuse", standalone_mode=False)
        return rv if isinstance(rv, int) else 0
    except click_errors as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # the help text is already printed
            return 0
        typer.echo(f"error: {e.format_message()}", err=True)  # type: ignore[attr-defined]
        return 2
    except (UserError, ValueError) as e:  # ValueError: config validation inside the library
        typer.echo(f"error: {e}", err=True)
        return 2
    except OSError as e:  # the file system said no (disk full, read-only, permissions) somewhere not wrapped above
        typer.echo(f"error: {e.filename + ': ' if e.filename else ''}{e.strerror or e}", err=True)
        return 2
    except MemoryError:
        typer.echo("error: out of memory: use a smaller --batch-size or --n", err=True)
        return 2
    except aborts:
        typer.echo("aborted", err=True)
        return 130
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        return 130


if __name__ == "__main__":
    sys.exit(main())
