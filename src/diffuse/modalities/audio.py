"""Audio as AudioLDM has it (Liu et al. 2023): a wave is a normalised log-mel (1 x mels x frames, audio/mel.py) in
model space, and a vocoder (audio/vocoder.py) turns generated log-mels back into a wave. Outputs: a folder of 16 kHz
mono WAVs with a spectrogram grid and a manifest, an .npz (``audio`` float32 [N, samples], ``sample_rate``,
``labels`` or ``prompts``), one .wav, or a spectrogram .png."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..audio.mel import MelConfig, MelFrontEnd
from ..audio.vocoder import get_vocoder
from ..errors import UserError
from .base import Meta, Modality, params_text, write_npz

# refine: log-mel matching steps after Griffin-Lim. On samples of the 10-minute notes model they are the vocoder's
# lever: 100 / 300 / 600 steps gave 68.0% / 76.0% / 78.5% family on 200 named notes (84.5% on the log-mels before the
# vocoder), at about 0.45 / 0.8 / 1.25 s a clip on a 2-core CPU (README "Audio"); runs written before keep theirs
DEFAULT_VOCODER = {"name": "griffinlim", "n_iter": 32, "inversion": "pinv", "refine": 300}
# a run trained with --vocoder DIR carries that neural vocoder in RUN/vocoder and decodes with it, then 100 matching
# steps (samples of the notes model through a 12-minute vocoder: 76.5% family against 70.5% with none, 61.5% for the
# default above; through a 20-minute one 82.0% against 80.5%, the log-mels 81.0%; README "Audio")
RUN_NEURAL_VOCODER = {"name": "neural", "path": "vocoder", "refine": 100}


def cached_vocoder_dir(data: str) -> Path:
    """Where ``diffuse train-vocoder --data DATA`` (without --out) keeps its vocoder, and where a fresh audio run on
    DATA looks for one (``diffuse train --vocoder auto``, the default): once per dataset, as the domain classifiers
    and ``--latent auto``'s autoencoders are kept in the user's cache."""
    import hashlib
    import json
    import re
    from dataclasses import asdict

    from ..cache import cache_dir

    key = data if data == "notes" or data.startswith("notes:") else str(Path(data).expanduser().resolve())
    digest = hashlib.sha256(json.dumps({"data": key, "mel": asdict(MelConfig())}, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / "vocoders" / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', Path(key).name)[:40]}-{digest}"


def run_vocoder_dir(choice: str | None, data: str, spec: Any, log=print) -> Path | None:
    """The neural vocoder a fresh run will carry: ``--vocoder DIR``; with ``auto`` (the default), the one cached for
    this data where the data is audio and one was trained (said on ``log``; where none was, ``log`` says how to get
    one); None for ``none`` (Griffin-Lim and log-mel matching, DEFAULT_VOCODER)."""
    if choice in (None, "none"):
        return None
    if choice != "auto":
        return Path(choice)
    if not isinstance(spec, dict) or spec.get("name") != "audio":
        return None
    found = cached_vocoder_dir(data)
    if (found / "vocoder.json").is_file():
        from ..audio.neural import load_neural_vocoder

        try:
            load_neural_vocoder(found, AudioModality.from_spec(spec).mel)
        except UserError as e:  # a damaged cache entry costs the run its neural vocoder, not the run
            log(f"vocoder: Griffin-Lim; the cached one is unusable ({e}); `diffuse train-vocoder --data {data}` replaces it")
            return None
        log(f"vocoder: the neural vocoder cached for {data} ({found}); --vocoder none decodes with Griffin-Lim instead")
        return found
    log(f"vocoder: Griffin-Lim + {DEFAULT_VOCODER['refine']} log-mel matching steps. A neural vocoder sounds closer to "
        f"the data: `diffuse train-vocoder --data {data} --minutes 20` trains one once, and later runs on {data} take it")
    return None


def with_run_vocoder(spec: Any, vocoder_dir: Path) -> dict[str, Any]:
    """The record of a run that will carry the neural vocoder of ``vocoder_dir`` in ``RUN/vocoder`` (the trainer
    copies it), checked first: an audio record, and a vocoder made for its mel front end."""
    from ..audio.neural import load_neural_vocoder

    if not isinstance(spec, dict) or spec.get("name") != "audio":
        raise UserError(f"--vocoder is for audio data; this data holds {'images' if spec is None else spec.get('name')}")
    load_neural_vocoder(vocoder_dir, AudioModality.from_spec(spec).mel)
    return {**spec, "vocoder": dict(RUN_NEURAL_VOCODER)}


class AudioModality(Modality):
    name = "audio"
    out_help = "DIR/ (WAVs + spectrograms.png + samples.json), FILE.npz (audio float32 [N,samples], sample_rate), FILE.wav (--n 1) or FILE.png"
    metrics = ("fid", "kid", "pr", "acc")
    item_suffix = ".wav"

    def __init__(self, mel: MelConfig, vocoder: dict[str, Any] | None = None):
        self.mel, self.vocoder_spec = mel, dict(vocoder or DEFAULT_VOCODER)
        self.front = MelFrontEnd(mel)
        self._built: tuple[dict[str, Any], Any] | None = None  # (spec, vocoder): built once, not per decode

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> "AudioModality":
        from ..typed import from_json

        return cls(from_json(MelConfig, spec.get("mel", {}), "modality: mel"), spec.get("vocoder"))

    @classmethod
    def bind_run(cls, spec: dict[str, Any], run_dir: Path) -> dict[str, Any]:
        voc = spec.get("vocoder")
        if isinstance(voc, dict) and voc.get("name") == "neural":
            return {**spec, "vocoder": {**voc, "run_dir": str(run_dir)}}
        return spec

    @classmethod
    def unbind_run(cls, spec: dict[str, Any]) -> dict[str, Any]:
        voc = spec.get("vocoder")
        if isinstance(voc, dict) and "run_dir" in voc:
            return {**spec, "vocoder": {k: v for k, v in voc.items() if k != "run_dir"}}
        return spec

    def spec(self) -> dict[str, Any]:
        return {"name": "audio", "mel": self.mel.to_dict(), "vocoder": self.vocoder_spec}

    # model space <-> waves
    def encode(self, waves: torch.Tensor, frames: int | None = None) -> torch.Tensor:
        """waves [N, samples] -> model-space log-mels [N, 1, mels, frames]."""
        return self.front.encode(waves, frames)

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """Model-space log-mels [N, 1, mels, T] -> waves float32 [N, T * hop] through the vocoder."""
        return self._vocoder(self.vocoder_spec)(self.front.magnitudes(x.float().cpu()), x.shape[-1] * self.mel.hop)

    def _vocoder(self, spec: dict[str, Any]) -> Any:
        """The vocoder ``spec`` names, kept while the spec stays the same (a neural one reads its weights once)."""
        if self._built is None or self._built[0] != spec:
            voc = get_vocoder(spec.get("name", "griffinlim"), self.mel, **{k: v for k, v in spec.items() if k != "name"})
            self._built = (dict(spec), voc)
        return self._built[1]

    def set_vocoder(self, **settings) -> None:
        """Override vocoder settings (e.g. ``refine=0`` for plain Griffin-Lim, or ``name="neural", path=DIR``), checked
        by building it once."""
        same = settings.get("name", self.vocoder_spec.get("name", "griffinlim")) == self.vocoder_spec.get("name", "griffinlim")
        spec = {**self.vocoder_spec, **settings} if same else dict(settings)  # another vocoder: its own settings only
        try:
            self._vocoder(spec)
        except (TypeError, ValueError) as e:
            given = ", ".join(f"{k}={v}" for k, v in settings.items())
            raise UserError(f"bad vocoder setting {given}: {e}") from None
        self.vocoder_spec = spec

    def preview(self, x: torch.Tensor) -> torch.Tensor:
        """Spectrogram pictures uint8 [N, 3, mels, T]: low frequencies at the bottom, magma colours."""
        from matplotlib import colormaps

        v = ((x[:, 0].float().flip(1) + 1) / 2).clamp(0, 1).cpu().numpy()  # [N, M, T]
        rgb = colormaps["magma"](v)[..., :3]  # [N, M, T, 3]
        return torch.from_numpy((rgb * 255).round().astype(np.uint8)).permute(0, 3, 1, 2).contiguous()

    # files
    def items(self, x: torch.Tensor) -> list[Any]:
        """float32 waveforms [samples] at ``self.mel.sample_rate``."""
        return [w.numpy().astype(np.float32) for w in self.decode(x)]

    def web_outputs(self, gr: Any) -> list[Any]:
        return [gr.Audio(label="First clip", type="filepath", interactive=False, elem_id="clip"),
                gr.Gallery(label="Spectrograms", columns=4, object_fit="contain", height="auto", elem_id="spectrograms")]

    def web_values(self, x: torch.Tensor, files: list[Path], captions: list[str]) -> list[Any]:
        from ..images import make_grid, save_png

        pics = []
        for f, pic in zip(files, self.preview(x)):
            png = Path(f).with_suffix(".png")
            save_png(png, make_grid(pic[None], 1, pad=0, scale=2))
            pics.append(png)
        return [str(files[0]), [(str(p), c) for p, c in zip(pics, captions)]]

    def write_items(self, x: torch.Tensor, paths: list[Path], params: list[dict[str, Any]] | None = None) -> None:
        from ..audio.wav import wav_bytes
        from ..checkpoint import atomic_write_bytes

        for w, path in zip(self.decode(x), paths):
            atomic_write_bytes(path, wav_bytes(w, self.mel.sample_rate))

    def check_out(self, out: Path, n: int | None = None) -> None:
        if Path(out).suffix not in ("", ".npz", ".wav", ".png"):
            raise UserError(f"--out for audio is a folder, FILE.npz, FILE.wav or FILE.png, got {out}")
        if Path(out).suffix == ".wav" and n not in (None, 1):
            raise UserError(f"--out {out} holds one clip; ask for --n 1, or give a folder for {n}")

    def write(self, x: torch.Tensor, out: Path, meta: Meta) -> str:
        from ..audio.wav import wav_bytes, write_wav
        from ..checkpoint import atomic_write_bytes, write_json
        from ..images import save_grid

        out = Path(out)
        self.check_out(out, len(x))
        sr = self.mel.sample_rate
        if out.suffix == ".png":
            save_grid(out, self.preview(x), meta.rows, text=params_text(meta.params))
            return f"wrote the spectrograms of {len(x)} samples to {out}"
        waves = self.decode(x)  # [N, samples]
        if out.suffix == ".wav":
            write_wav(out, waves[0], sr)
            return f"wrote {out} ({waves.shape[1] / sr:.2f} s at {sr} Hz)"
        if out.suffix == ".npz":
            write_npz(out, {"audio": waves.numpy().astype(np.float32), "sample_rate": np.int64(sr)}, meta)
            return f"wrote {len(waves)} clips to {out}"
        manifest = []
        for i, w in enumerate(waves):
            name = f"sample_{i:03d}.wav"
            atomic_write_bytes(out / name, wav_bytes(w, sr))
            row: dict[str, Any] = {"file": name}
            if meta.labels is not None:
                lab = int(meta.labels[i])
                row["label"] = lab
                if meta.class_names and lab < len(meta.class_names):
                    row["class"] = meta.class_names[lab]
            if meta.prompts is not None:
                row["prompt"] = meta.prompts[i]
            manifest.append(row)
        save_grid(out / "spectrograms.png", self.preview(x), meta.rows)
        write_json(out / "samples.json", {"sample_rate": sr, "seconds": waves.shape[1] / sr, "samples": manifest})
        return f"wrote {len(waves)} WAV files ({waves.shape[1] / sr:.2f} s at {sr} Hz), spectrograms.png and samples.json to {out}"

    def read(self, path: Path, what: str, shape: tuple[int, ...]) -> torch.Tensor:
        """An audio file (anything soundfile decodes) as model-space [1, 1, mels, frames], cut or padded to the
        frames of ``shape``."""
        from ..audio.wav import read_wav

        return self.encode(read_wav(path, self.mel.sample_rate, f"{what} audio")[None], shape[-1])

    MAX_SECONDS = 10.0

    def duration(self, shape: tuple[int, ...]) -> float:
        return shape[-1] * self.mel.hop / self.mel.sample_rate

    def sample_shape(self, shape: tuple[int, ...], seconds: float | None, multiple: int, frames: int | None = None,
                     frame_multiple: int = 1) -> tuple[tuple[int, ...], str | None]:
        if frames is not None:
            raise UserError("--frames is for video models; an audio model takes --seconds")
        if seconds is None:
            return tuple(shape), None
        if not (seconds > 0 and seconds <= self.MAX_SECONDS):  # (NaN fails both)
            raise UserError(f"--seconds must be in (0, {self.MAX_SECONDS:g}], got {seconds}")
        frames = max(multiple, multiple * round(self.mel.frames_for(seconds) / multiple))
        note = None
        got = frames * self.mel.hop / self.mel.sample_rate
        if abs(got - seconds) > 1e-9:
            note = f"--seconds {seconds:g} rounded to {got:g} s ({frames} frames of {self.mel.hop / self.mel.sample_rate * 1000:g} ms, a multiple of {multiple})"
        return (*shape[:-1], frames), note


