"""A folder of audio files as a dataset: sub-folders are classes (sorted by name), or one flat folder (unconditional,
or text with ``--captions FILE``, rows naming files relative to the folder as for image folders). Every file is
read by soundfile, mixed to mono, resampled (librosa) to the model's rate, cut or zero-padded to the model's length
(MelConfig: 1 s at 16 kHz by default) and stored as model-space log-mels. Labelled folders caption their classes
("the sound of a dog bark"), so ``--cond text`` works without a captions file.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import UserError
from .dataset import ImageDataset, class_files, class_names, folder_captions

AUDIO_EXTS = {".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff", ".au", ".opus"}
TEMPLATES = ["the sound of a {x}", "a {x}", "a recording of a {x}", "a short clip of a {x}", "{x}"]
MAX_FILES = 200_000


def audio_files(root: Path) -> list[tuple[Path, int]]:
    """(file, class index or -1) of every audio file under ``root``, in a fixed order."""
    return class_files(root, AUDIO_EXTS)


def is_audio_folder(root: Path) -> bool:
    """True when the folder holds audio files and no images."""
    from .sources import IMAGE_EXTS

    kinds = {f.suffix.lower() for f in root.rglob("*") if f.is_file()}
    return bool(kinds & AUDIO_EXTS) and not kinds & IMAGE_EXTS


def load_audio_folder(root: Path) -> ImageDataset:
    """The folder as model-space log-mels [N, 1, mels, frames] of the default audio modality."""
    from ..audio.mel import MelConfig
    from ..audio.wav import read_wav
    from ..modalities.audio import AudioModality

    mod = AudioModality(MelConfig())
    files = audio_files(root)
    if not files:
        raise UserError(f"no audio files ({', '.join(sorted(AUDIO_EXTS))}) found in {root}")
    if len(files) > MAX_FILES:
        raise UserError(f"{root} holds {len(files)} audio files; at most {MAX_FILES} are read")
    from ..memory import check_fits

    n = mod.mel.samples
    check_fits(len(files) * n * 4 * 3, f"{len(files)} clips of {n} samples")
    waves = torch.zeros(len(files), n)
    for k, (f, _) in enumerate(files):
        y = read_wav(f, mod.mel.sample_rate, "audio file")[:n]  # cut, or padded with silence below
        waves[k, : len(y)] = y
    x = mod.encode(waves)
    labelled = files[0][1] >= 0
    labels = torch.tensor([i for _, i in files]) if labelled else None
    classes = class_names(root) if labelled else []
    caps = folder_captions(classes, TEMPLATES, labels) if labelled else None
    return ImageDataset(x, labels, classes, root.name, [f.relative_to(root).as_posix() for f, _ in files],
                        mod.spec(), caps)
