"""`diffuse train-vocoder`: the small neural vocoder (audio/neural.py) that an audio run can decode with
(`diffuse sample RUN --vocoder DIR`, or `diffuse train ... --vocoder DIR`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .cli_common import app
from .errors import UserError


def training_waves(data: str, mel) -> "torch.Tensor":  # noqa: F821
    """Waves [N, samples] of ``data``: the notes' training split, or every audio file under a folder (mono,
    resampled to the front end's rate, cut or zero-padded to its clip length)."""
    import torch

    if data == "notes" or data.startswith("notes:"):
        from .data.notes import build

        return torch.from_numpy(build("train", notes_limit(data)).waves)
    root = Path(data)
    if not root.is_dir():
        raise UserError(f"--data {data}: not 'notes' nor a folder of audio files")
    from .audio.wav import read_wav
    from .data.audio_folder import audio_files

    files = [f for f, _ in audio_files(root)]
    if not files:
        raise UserError(f"--data {data}: no audio files in it")
    waves = [read_wav(f, mel.sample_rate, "--data audio")[: mel.samples] for f in files]
    return torch.stack([torch.nn.functional.pad(w, (0, mel.samples - len(w))) for w in waves])


def notes_limit(data: str) -> int | None:
    """K of ``notes:K`` (K clips spread over the split, as ``diffuse train --data notes:K``), None for ``notes``."""
    if data == "notes":
        return None
    k = data.split(":", 1)[1]
    if not k.isdigit() or int(k) < 1:
        raise UserError(f"--data {data}: notes:K takes a positive integer K")
    return int(k)


@app.command("train-vocoder")
def train_vocoder(
    data: str = typer.Option("notes", help="notes | notes:K (K clips of it) | a folder of audio files"),
    out: Optional[str] = typer.Option(None, help="vocoder folder (default: the user's cache, where `diffuse train` on this data "
                                              "finds it: later audio runs on it decode with it)"),
    minutes: Optional[float] = typer.Option(None, help="wall-clock budget in minutes (default 10 when --steps is not given)"),
    steps: Optional[int] = typer.Option(None, help="training steps"),
    batch_size: int = typer.Option(16, help="clips per step"),
    lr: float = typer.Option(1e-3, help="AdamW peak learning rate (cosine fall to 0 over the budget)"),
    width: int = typer.Option(256, help="channels of the ConvNeXt backbone"),
    blocks: int = typer.Option(6, help="ConvNeXt blocks"),
    seed: int = typer.Option(0),
) -> None:
    """Train a Vocos-style neural vocoder (log-mel -> STFT magnitude and phase -> inverse STFT) on real clips, for
    the default audio front end (16 kHz, 64 mels, hop 160). Reports its log-mel L1 on the notes' test split."""
    import torch

    from .audio.mel import MelConfig, MelFrontEnd
    from .audio.neural import NeuralVocoderConfig, save_neural_vocoder, train_neural_vocoder

    for name, v in (("--minutes", minutes), ("--steps", steps), ("--batch-size", batch_size), ("--lr", lr),
                    ("--width", width), ("--blocks", blocks)):
        if v is not None and not v > 0:
            raise UserError(f"{name} must be > 0, got {v}")
    if minutes is None and steps is None:
        minutes = 10.0
    mel = MelConfig()
    from .modalities.audio import cached_vocoder_dir

    dest = Path(out) if out else cached_vocoder_dir(data)
    if dest.exists() and not dest.is_dir():
        raise UserError(f"--out {dest} is a file")
    waves = training_waves(data, mel)
    typer.echo(f"training on {len(waves)} clips of {mel.samples / mel.sample_rate:g} s", err=True)
    net, rec = train_neural_vocoder(waves, mel, minutes=minutes, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                                    cfg=NeuralVocoderConfig(width=width, blocks=blocks), log=lambda m: typer.echo(m, err=True))
    rec["data"] = data
    if data == "notes" or data.startswith("notes:"):
        from .data.notes import build

        test = torch.from_numpy(build("test", notes_limit(data)).waves)[:, : mel.samples]
        front = MelFrontEnd(mel)
        with torch.no_grad():
            y = torch.cat([net(front.encode(test[i : i + 64])[:, 0]) for i in range(0, len(test), 64)])
            rec["test_mel_l1"] = float(((front.mel(y) + mel.floor).log() - (front.mel(test) + mel.floor).log()).abs().mean())
    save_neural_vocoder(net, rec, dest)
    extra = f", test log-mel L1 {rec['test_mel_l1']:.3f}" if "test_mel_l1" in rec else ""
    use = (f"New audio runs on {data} decode with it; an older run: diffuse sample RUN --vocoder {dest}" if not out else
           f"Use it: diffuse train --data {data} ... --vocoder {dest}, or diffuse sample RUN --vocoder {dest}")
    typer.echo(f"done: {rec['steps']} steps in {rec['seconds']:.0f} s{extra}; saved in {dest}. {use}")
