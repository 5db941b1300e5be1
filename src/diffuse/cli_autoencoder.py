"""`diffuse train-autoencoder`: the KL autoencoder that latent diffusion (`diffuse train --latent AE`) runs in."""

from __future__ import annotations

from typing import Optional

import typer

from .cli_common import _CHECKPOINT_MINUTES, _train_bar, app


@app.command("train-autoencoder")
def train_autoencoder(
    data: str = typer.Option("digits", help="digits | fashion-mnist | notes | moving-fmnist | moving-digits (clips: coded frame by frame) | a folder of images, audio or video files | a .npz file"),
    data_dir: Optional[str] = typer.Option(None, help="folder with the Fashion-MNIST IDX files"),
    image_size: Optional[int] = typer.Option(None, help="resize the data to this size first (e.g. 64)"),
    out: Optional[str] = typer.Option(None, help="autoencoder directory (default runs/ae-<data>)"),
    preset: Optional[str] = typer.Option(None, help="f2 | f4 | f8 | f4p: downsampling factor per axis (default by image size; f4p, 2x2 patches then f2, for log-mels)"),
    latent_channels: Optional[int] = typer.Option(None, help="latent channels (default from the preset)"),
    kl_weight: float = typer.Option(1e-6, help="weight of the KL term (LDM's convention: per summed pixel)"),
    adv_weight: float = typer.Option(0.0, help="PatchGAN hinge adversarial term: this times VQGAN's adaptive weight (0 = off; LDM uses 0.5)"),
    adv_start: int = typer.Option(0, help="step at which the adversarial term starts"),
    steps: Optional[int] = typer.Option(None, help="training steps (total, also across --resume; default 2000)"),
    minutes: Optional[float] = typer.Option(None, help="wall-clock budget in minutes"),
    batch_size: int = typer.Option(64, help="batch size"),
    lr: float = typer.Option(1e-3, help="AdamW learning rate"),
    lr_decay: float = typer.Option(0.0, help="share of the budget, at its end, over which the learning rate falls linearly to 0 (0: constant)"),
    seed: int = typer.Option(0),
    checkpoint_every: int = typer.Option(1000, help="checkpoint every N steps"),
    checkpoint_minutes: float = _CHECKPOINT_MINUTES,
    resume: bool = typer.Option(False, help="continue the autoencoder in --out where it stopped"),
) -> None:
    """Train a KL-regularised autoencoder; reports test PSNR, classifier accuracy on reconstructions and rFID."""
    from .train.autoencoder import AETrainConfig
    from .train.autoencoder import train_autoencoder as run

    overrides = {} if latent_channels is None else {"latent_channels": latent_channels}
    cfg = AETrainConfig(data=data, data_dir=data_dir, image_size=image_size, out=out or f"runs/ae-{data}", preset=preset,
                        overrides=overrides, kl_weight=kl_weight, adv_weight=adv_weight, adv_start=adv_start, batch_size=batch_size,
                        lr=lr, lr_decay=lr_decay, steps=steps, minutes=minutes, seed=seed, checkpoint_every=checkpoint_every,
                        checkpoint_minutes=checkpoint_minutes)
    with _train_bar("autoencoder", {"l1": ("l1", ".4f"), "step": ("step", "")}) as progress:
        res = run(cfg, resume=resume, progress=progress, log=lambda m: typer.echo(m, err=True))
    if res["interrupted"]:
        typer.echo(f"interrupted at step {res['step']}; continue with --resume --out {cfg.out}")
        return
    line = f"done: step {res['step']}, {res['seconds']:.0f} s. Test PSNR {res['psnr']:.2f} dB"
    if "acc_reconstructions" in res:
        line += (f", classifier accuracy {res['acc_reconstructions']:.1%} on reconstructions vs {res['acc_originals']:.1%} "
                 f"on originals, rFID {res['rfid']:.2f}")
    typer.echo(line + f" (n={res['n']}). Reconstructions: {cfg.out}/reconstructions.png")
