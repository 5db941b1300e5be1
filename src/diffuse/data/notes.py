"""``notes``: an NSynth-like dataset of single instrument notes (after Engel et al. 2017, "Neural Audio Synthesis
of Musical Notes with WaveNet Autoencoders", Sec. 3), rendered offline by FluidSynth from a General MIDI SoundFont.

11 instruments, one per NSynth instrument family, MIDI pitches 48..72 (C3..C5), several velocities. Every render
varies (detune, gain, reverb, note length, onset), so each (instrument, pitch) pair has several distinct clips:
FluidSynth is deterministic, and without this a model would only memorise. Clips are 1 s of 16 kHz mono.
Renders 0..TRAIN_RENDERS-1 of a pair are the train split, the others the test split (never trained on).

Built once and cached (keyed by the SoundFont's size and name and this module's settings), like the caption bank.
Needs the Debian packages ``fluidsynth`` and ``fluid-soundfont-gm``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..audio.deps import need

from ..errors import UserError

# (NSynth family, GM program, instrument name): these numbers and names, so figures compare across runs
INSTRUMENTS = [("keyboard", 0, "Acoustic Grand Piano"), ("mallet", 12, "Marimba"), ("organ", 16, "Drawbar Organ"),
               ("guitar", 24, "Acoustic Guitar (nylon)"), ("bass", 32, "Acoustic Bass"), ("string", 40, "Violin"),
               ("vocal", 52, "Choir Aahs"), ("brass", 56, "Trumpet"), ("reed", 65, "Alto Sax"), ("flute", 73, "Flute"),
               ("synth_lead", 80, "Lead 1 (square)")]
FAMILIES = [f for f, _, _ in INSTRUMENTS]
PITCHES = list(range(48, 73))  # C3 .. C5
VELOCITIES = [45, 75, 100, 125]
TRAIN_RENDERS, TEST_RENDERS = 8, 2
SAMPLE_RATE, SECONDS = 16_000, 1.0
NOTES_VERSION = 1
SOUNDFONTS = ["/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/default-GM.sf2"]
APT = "apt-get install fluidsynth fluid-soundfont-gm"


@dataclass
class Notes:
    """waves float32 [N, samples] in [-1, 1]; family, pitch (MIDI), velocity int64 [N]."""

    waves: np.ndarray
    family: np.ndarray
    pitch: np.ndarray
    velocity: np.ndarray


def soundfont() -> Path:
    """$DIFFUSE_SOUNDFONT, or the General MIDI SoundFont of the Debian package fluid-soundfont-gm."""
    env = os.environ.get("DIFFUSE_SOUNDFONT")
    for p in ([env] if env else SOUNDFONTS):
        if Path(p).is_file():
            return Path(p)
    where = f"$DIFFUSE_SOUNDFONT={env} does not exist" if env else f"no General MIDI SoundFont at {SOUNDFONTS[0]}"
    raise UserError(f"the notes dataset needs FluidSynth and a SoundFont ({where}): {APT}")


def _synth(sf2: Path):
    try:  # pyfluidsynth prints where it found the library on stdout when $CI is set; stdout carries --json
        with contextlib.redirect_stdout(io.StringIO()):
            import fluidsynth  # pyfluidsynth: ctypes bindings of libfluidsynth
    except (ImportError, OSError) as e:  # the package, or the shared library it loads, is missing
        raise UserError(f"the notes dataset needs FluidSynth ({type(e).__name__}: {str(e)[:80]}): {APT}") from None
    s = fluidsynth.Synth(samplerate=float(SAMPLE_RATE), gain=0.5)
    sfid = s.sfload(str(sf2))
    if sfid < 0:
        raise UserError(f"FluidSynth cannot load the SoundFont {sf2}: {APT}")
    return s, sfid


def render(programs: list[int], pitches: list[int], velocities: list[int], seeds: list[int], sf2: Path) -> np.ndarray:
    """One clip per (program, pitch, velocity, seed): float32 [N, samples]. The seed draws the render's variation:
    detune (+-10 cents, by pitch bend), gain (+-3 dB), reverb room and level, held length 0.55..0.85 s, onset 0..30 ms."""
    s, sfid = _synth(sf2)
    n = int(SAMPLE_RATE * SECONDS)
    out = np.zeros((len(programs), n), np.float32)
    try:
        for i, (prog, pitch, vel, seed) in enumerate(zip(programs, pitches, velocities, seeds)):
            r = np.random.default_rng(seed)
            s.set_reverb(roomsize=float(r.uniform(0.1, 0.7)), damping=0.4, width=0.8, level=float(r.uniform(0.0, 0.5)))
            s.program_select(0, sfid, 0, prog)
            s.pitch_bend(0, int(round(r.uniform(-10, 10) * 8192 / 200)))  # the default bend range is +-2 semitones
            onset = int(r.uniform(0, 0.03) * SAMPLE_RATE)
            hold = int(r.uniform(0.55, 0.85) * SAMPLE_RATE)
            parts = [s.get_samples(onset) if onset else np.zeros(0, np.int16)]
            s.noteon(0, pitch, vel)
            parts.append(s.get_samples(hold))
            s.noteoff(0, pitch)
            parts.append(s.get_samples(n - onset - hold))
            s.cc(0, 120, 0)  # all sounds off, then let the reverb tail die before the next clip
            s.get_samples(SAMPLE_RATE // 2)
            stereo = np.concatenate(parts).reshape(-1, 2).astype(np.float32) / 32768  # [n, 2]
            out[i] = 2.5 * stereo.mean(1) * 10 ** (r.uniform(-3, 3) / 20)  # x2.5: peaks up to ~0.85
    finally:
        s.delete()
    return np.clip(out, -1, 1)


def _plan(split: str) -> tuple[list[int], list[int], list[int], list[int]]:
    """(family index, pitch, velocity, seed) of every clip of a split, in a fixed order."""
    renders = range(TRAIN_RENDERS) if split == "train" else range(TRAIN_RENDERS, TRAIN_RENDERS + TEST_RENDERS)
    rows = [(f, p, VELOCITIES[(k + p + f) % len(VELOCITIES)], (f * 1000 + p) * 100 + k)
            for f in range(len(INSTRUMENTS)) for p in PITCHES for k in renders]
    return tuple(list(c) for c in zip(*rows))  # type: ignore[return-value]


def build(split: str, limit: int | None = None, cache: bool = True) -> Notes:
    """The ``split`` clips (``limit``: every k-th clip, for tests), rendered once and then read from the cache."""
    from ..checkpoint import atomic_write_bytes
    from ..cache import cache_dir

    sf2 = soundfont()
    fam, pitch, vel, seed = _plan(split)
    if limit is not None and limit < len(fam):
        keep = np.linspace(0, len(fam) - 1, limit).round().astype(int)
        fam, pitch, vel, seed = ([c[i] for i in keep] for c in (fam, pitch, vel, seed))
    key = hashlib.sha256(json.dumps([NOTES_VERSION, sf2.name, sf2.stat().st_size, INSTRUMENTS, fam, pitch, vel, seed,
                                     SAMPLE_RATE, SECONDS]).encode()).hexdigest()[:16]
    path = cache_dir() / "notes" / f"{split}-{key}.npz"
    if cache and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                return Notes(z["waves"].astype(np.float32) / 32767, z["family"], z["pitch"], z["velocity"])
        except (OSError, ValueError, KeyError, EOFError) as e:
            print(f"rebuilding the damaged notes cache {path} ({type(e).__name__})")
    waves = render([INSTRUMENTS[f][1] for f in fam], pitch, vel, seed, sf2)
    notes = Notes(waves, np.array(fam, np.int64), np.array(pitch, np.int64), np.array(vel, np.int64))
    if cache:
        import io

        buf = io.BytesIO()
        np.savez(buf, waves=np.round(waves * 32767).astype(np.int16), family=notes.family, pitch=notes.pitch,
                 velocity=notes.velocity)
        atomic_write_bytes(path, buf.getvalue())
    return notes


# Captions: the instrument in a few words, the note in the usual ways, and the dynamics of the velocity.
# benchmarks/audio_recipe.py prompts with other wordings (HELD_OUT there); tests check none of them is in here.
SYNONYMS = {"keyboard": ["piano", "grand piano", "acoustic piano"], "mallet": ["marimba", "mallet instrument"],
            "organ": ["organ", "drawbar organ", "electric organ"], "guitar": ["nylon guitar", "classical guitar", "acoustic guitar"],
            "bass": ["acoustic bass", "upright bass", "double bass"], "string": ["violin", "fiddle"],
            "vocal": ["choir", "choir singing aah", "vocal ensemble"], "brass": ["trumpet", "brass trumpet"],
            "reed": ["alto sax", "alto saxophone", "saxophone"], "flute": ["flute", "concert flute"],
            "synth_lead": ["square lead synth", "synth lead", "square wave synth"]}
TEMPLATES = ["a {d}{i} playing {p}", "a {d}{i} note, {p}", "{p} on a {d}{i}", "the {d}{i} plays {p}", "{d}{i}, {p}",
             "a recording of a {d}{i} playing {p}", "a single {d}{i} note at {p}"]
DYNAMICS = {"soft": ["soft ", "quiet "], "": [""], "loud": ["loud ", "strong "]}
CAPTIONS_PER_GROUP = 8


def note_names(midi: int) -> list[str]:
    """The ways a caption names a MIDI note: 'G4', 'C#4' and 'D flat 4', 'middle C', 'the A below middle C'."""
    librosa = need("librosa")

    name = librosa.midi_to_note(midi, unicode=False)  # e.g. 'C#4'
    out = [name]
    if "#" in name:
        flat = librosa.midi_to_note(midi, unicode=False, key="Db:maj")  # e.g. 'Db4'
        out += [name.replace("#", " sharp "), flat[0] + " flat " + flat[2:]]
    if midi == 60:
        out += ["middle C"]
    elif abs(midi - 60) <= 4 and "#" not in name:
        out += [f"the {name[0]} {'below' if midi < 60 else 'above'} middle C"]
    return out


def dynamic(velocity: int) -> str:
    return "soft" if velocity < 60 else "loud" if velocity > 110 else ""


def _an(text: str) -> str:
    """'a organ' -> 'an organ', 'a alto sax' -> 'an alto sax'."""
    import re

    return re.sub(r"\ba (?=[aeiou])", "an ", text)


def group_captions(family: str, pitch: int, dyn: str) -> list[str]:
    """The training captions of one (family, pitch, dynamics) group: the plain 'a <instrument> playing <note>'
    first, then a fixed pseudo-random choice from templates x synonyms x note names x dynamic words."""
    words = SYNONYMS[family]
    first = _an(TEMPLATES[0].format(d=DYNAMICS[dyn][0], i=words[0], p=note_names(pitch)[0]))
    pool = [t.format(d=d, i=i, p=p) for t in TEMPLATES for i in words for p in note_names(pitch) for d in DYNAMICS[dyn]]
    pool = [c for c in dict.fromkeys(_an(c) for c in pool) if c != first]
    r = np.random.default_rng(FAMILIES.index(family) * 1000 + pitch * 10 + len(dyn))
    return [first] + [pool[i] for i in r.choice(len(pool), min(len(pool), CAPTIONS_PER_GROUP - 1), replace=False)]


def notes_dataset(split: str, modality, limit: int | None = None):
    """The notes as an ImageDataset of model-space log-mels [N, 1, mels, frames] (``modality``: an AudioModality),
    labelled by family, with ``extra["pitch"]`` and per-(family, pitch, dynamics) captions."""
    import torch

    from .dataset import ImageDataset

    nt = build(split, limit)
    x = modality.encode(torch.from_numpy(nt.waves))
    keys = sorted({(int(f), int(p), dynamic(int(v))) for f, p, v in zip(nt.family, nt.pitch, nt.velocity)})
    index = {k: i for i, k in enumerate(keys)}
    group = torch.tensor([index[(int(f), int(p), dynamic(int(v)))] for f, p, v in zip(nt.family, nt.pitch, nt.velocity)])
    caps = [group_captions(FAMILIES[f], p, d) for f, p, d in keys]
    return ImageDataset(x, torch.from_numpy(nt.family), list(FAMILIES), "notes" + (f"-{limit}" if limit else ""),
                        modality=modality.spec(), captions=(caps, group),
                        extra={"pitch": torch.from_numpy(nt.pitch), "velocity": torch.from_numpy(nt.velocity)})
