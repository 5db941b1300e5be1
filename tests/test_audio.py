"""Audio on the modality core: the mel front end against librosa, the vocoder round trip, the notes dataset, the
modality records, non-square networks, and the CLI from training to WAV files, with its one-line errors."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cli_helpers import diffuse, one_line_error

librosa = pytest.importorskip("librosa")
sf = pytest.importorskip("soundfile")

from diffuse.audio import MelConfig, MelFrontEnd  # noqa: E402
from diffuse.audio.vocoder import GriffinLim  # noqa: E402
from diffuse.cond import Cond  # noqa: E402
from diffuse.data import load_dataset, notes  # noqa: E402
from diffuse.modalities import get_modality  # noqa: E402
from diffuse.modalities.audio import DEFAULT_VOCODER, AudioModality  # noqa: E402

needs_fluidsynth = pytest.mark.skipif(not Path(notes.SOUNDFONTS[0]).is_file(), reason=f"no SoundFont: {notes.APT}")


@pytest.fixture(scope="module")
def clips():
    return notes.build("test", limit=22, cache=False) if Path(notes.SOUNDFONTS[0]).is_file() else None


def test_mel_front_end_equals_librosa():
    cfg = MelConfig()
    y = np.random.default_rng(0).standard_normal((3, 16000)).astype(np.float32) * 0.1
    ref = librosa.feature.melspectrogram(y=y, sr=16000, n_fft=1024, hop_length=160, n_mels=64, fmax=8000, power=1.0)
    ours = MelFrontEnd(cfg).mel(torch.from_numpy(y)).numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-6 * ref.max())
    x = MelFrontEnd(cfg).encode(torch.from_numpy(y))
    assert x.shape == (3, 1, 64, 100)
    np.testing.assert_allclose(x[:, 0].numpy(), (np.log(np.maximum(ref[..., :100], 1e-5)) + 5.0) / 6.5, atol=1e-4)


@needs_fluidsynth
def test_vocoder_round_trip_keeps_the_log_mel(clips):
    """mel -> Griffin-Lim -> mel: the mean absolute log-mel error over cells above the floor is under 0.6 nats
    (model space 0.09): Griffin-Lim's phase is not the original's, so this is a tolerance, not an identity."""
    mod = AudioModality(MelConfig())
    x = mod.encode(torch.from_numpy(clips.waves[:6]))
    y = GriffinLim(mod.mel, n_iter=32)(mod.front.magnitudes(x), mod.mel.samples)
    assert y.shape == (6, 16000) and torch.isfinite(y).all()
    x2 = mod.encode(y)
    loud = x > -0.5  # cells well above the floor, where the notes are
    err = ((x2 - x).abs()[loud]).mean() * 6.5
    assert err < 0.6, err
    noise = mod.encode(torch.randn(6, 16000) * 0.05)  # and the round trip is far closer than unrelated audio
    assert err < 0.5 * ((noise - x).abs()[loud]).mean() * 6.5


@needs_fluidsynth
def test_log_mel_matching_after_griffin_lim_brings_the_mel_closer(clips):
    """The refinement steps lower the log-mel error of Griffin-Lim's wave (measured on 64 clips: 0.34 -> 0.23 nats on
    loud cells, 0.35 -> 0.17 on all), under inference mode too (as `sample` decodes), and keep the length."""
    mod = AudioModality(MelConfig())
    x = mod.encode(torch.from_numpy(clips.waves[:6]))
    mags = mod.front.magnitudes(x)
    errs = []
    for refine in (0, 60):
        with torch.inference_mode():
            y = GriffinLim(mod.mel, n_iter=32, refine=refine)(mags, mod.mel.samples)
        assert y.shape == (6, 16000) and torch.isfinite(y).all() and y.abs().max() <= 1
        errs.append(((mod.encode(y) - x).abs()).mean() * 6.5)
    assert errs[1] < 0.8 * errs[0], errs
    assert AudioModality(MelConfig()).vocoder_spec["refine"] > 0  # new runs' default; runs before it keep 0
    with pytest.raises(ValueError):
        GriffinLim(mod.mel, refine=-1)


@needs_fluidsynth
def test_notes_build_is_deterministic_and_splits_differ(clips):
    again = notes.build("test", limit=22, cache=False)
    assert np.array_equal(clips.waves, again.waves) and np.array_equal(clips.pitch, again.pitch)
    assert clips.waves.shape == (22, 16000) and np.abs(clips.waves).max() <= 1 and np.abs(clips.waves).max(1).min() > 1e-3
    train = notes.build("train", limit=22, cache=False)
    assert not any(np.allclose(a, b) for a in train.waves for b in clips.waves)  # other renders, never trained on
    pairs = {}
    full = notes._plan("train")
    for f, p, v, s in zip(*full):
        pairs.setdefault((f, p), []).append(s)
    assert len(pairs) == 11 * 25 and all(len(s) == notes.TRAIN_RENDERS for s in pairs.values())


@needs_fluidsynth
def test_rendered_pitch_is_the_asked_note(clips):
    """pyin on the real renders: detune is at most 10 cents, so most clips sit within 50 cents of their note."""
    from diffuse.metrics.audio import pitch_cents

    cents = pitch_cents(torch.from_numpy(clips.waves), torch.from_numpy(clips.pitch), 16000)
    assert np.mean(np.abs(np.nan_to_num(cents, nan=1e9)) <= 50) >= 0.7


def test_captions_name_instrument_and_note_and_held_out_phrasings_never_leak():
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from audio_recipe import HELD_OUT, HELD_OUT_TEMPLATES

    caps = notes.group_captions("brass", 67, "")
    assert caps[0] == "a trumpet playing G4" and all("G4" in c for c in caps)
    assert "middle C" in notes.note_names(60) and "the A below middle C" in notes.note_names(57)
    assert any("soft" in c or "quiet" in c for c in notes.group_captions("keyboard", 60, "soft"))
    everything = " | ".join(c for f in notes.FAMILIES for p in notes.PITCHES for d in notes.DYNAMICS
                            for c in notes.group_captions(f, p, d))
    for fam, words in HELD_OUT.items():
        for w in words:
            assert f" {w} " not in f" {everything} ".replace(",", " "), w
    for t in HELD_OUT_TEMPLATES:  # their fixed words, too
        for part in (p.strip(" ,") for p in t.replace("}", "{").split("{")[::2]):
            assert not part or part not in everything, part


def test_modality_records_round_trip_through_json():
    mod = AudioModality(MelConfig(frames=40))
    again = get_modality(json.loads(json.dumps(mod.spec())))
    assert isinstance(again, AudioModality) and again.mel == mod.mel
    assert get_modality(None).name == "image"
    x = torch.linspace(-1, 1, 2 * 64 * 40).reshape(2, 1, 64, 40)
    pic = mod.preview(x)
    assert pic.dtype == torch.uint8 and pic.shape == (2, 3, 64, 40)
    assert pic[0, :, -1].float().mean() < pic[0, :, 0].float().mean()  # low mels (low values here) at the bottom
    with pytest.raises(Exception, match="--seconds must be"):
        mod.sample_shape((1, 64, 40), 0.0, 4)
    shape, note = mod.sample_shape((1, 64, 40), 0.333, 4)
    assert shape == (1, 64, 32) and "0.32" in note
    with pytest.raises(Exception, match="audio models"):
        get_modality(None).sample_shape((1, 8, 8), 1.0, 1)


@pytest.mark.parametrize("arch", ["unet", "dit"])
def test_non_square_networks_and_other_lengths(arch):
    from diffuse.nets import DiT, UNet, dit_preset, preset

    torch.manual_seed(0)
    net = (UNet(preset("tiny", image_size=8, image_width=12, attn_resolutions=(4,), num_classes=3)) if arch == "unet"
           else DiT(dit_preset("tiny", image_size=8, image_width=12, num_classes=3)))
    for w in (12, 16):  # the trained width, and a longer clip
        x = torch.randn(2, 1, 8, w)
        out = net(x, torch.zeros(2), Cond(labels=torch.tensor([0, 3])))
        assert out.shape == x.shape
    square = UNet(preset("tiny", image_size=8)) if arch == "unet" else DiT(dit_preset("tiny", image_size=8))
    with pytest.raises(ValueError, match="built for 8x8"):
        square(torch.randn(1, 1, 8, 12), torch.zeros(1))


def test_cond_is_one_type_for_every_condition():
    labels = torch.tensor([1, 2])
    text = {"tokens": torch.randn(2, 3, 4), "mask": torch.ones(2, 3, dtype=torch.bool), "pooled": torch.randn(2, 4),
            "drop": torch.zeros(2, dtype=torch.bool)}
    assert torch.equal(Cond.of(labels).labels, labels) and Cond.of(text).text is text and Cond.of(None).labels is None
    c = Cond(labels, text)
    both = c.cat(c.null(5))
    assert both.labels.tolist() == [1, 2, 5, 5] and both.text["drop"].tolist() == [False, False, True, True]
    assert len(both) == 4 and both.index(slice(1, 3)).labels.tolist() == [2, 5]


def _tree_hash(run: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(run.rglob("*")):
        if p.is_file():
            h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


def test_cli_trains_on_notes_and_writes_wavs_spectrograms_and_npz(audio_run, tmp_path):
    cfg = json.loads((audio_run / "config.json").read_text())
    assert cfg["model"]["modality"]["name"] == "audio" and cfg["model"]["net"]["image_width"] == 100
    r = diffuse("sample", audio_run, "--n", "3", "--steps", "4", "--label", "7", "--out", tmp_path / "out")
    assert "3 WAV files" in r.stdout
    for i in range(3):
        data, sr = sf.read(tmp_path / "out" / f"sample_{i:03d}.wav")
        assert sr == 16000 and data.shape == (16000,) and np.isfinite(data).all()
    man = json.loads((tmp_path / "out" / "samples.json").read_text())
    assert [s["class"] for s in man["samples"]] == ["brass"] * 3
    assert (tmp_path / "out" / "spectrograms.png").is_file()
    r = diffuse("sample", audio_run, "--n", "2", "--steps", "4", "--seconds", "0.5", "--out", tmp_path / "x.npz")
    assert "rounded to 0.48 s" in r.stderr  # 0.5 s = 50 frames: not a multiple of the 4x4 patches, and said so
    z = np.load(tmp_path / "x.npz")
    assert z["audio"].dtype == np.float32 and z["audio"].shape[0] == 2 and int(z["sample_rate"]) == 16000
    assert z["audio"].shape[1] == 48 * 160 and z["labels"].tolist() == [0, 1]
    # audio-to-audio and continuation from a WAV
    diffuse("sample", audio_run, "--n", "1", "--steps", "4", "--init", tmp_path / "out" / "sample_000.wav", "--strength", "0.5",
            "--out", tmp_path / "a2a.wav")
    diffuse("sample", audio_run, "--n", "1", "--steps", "4", "--init", tmp_path / "out" / "sample_000.wav", "--keep-seconds", "0.4",
            "--out", tmp_path / "cont.wav")
    assert sf.info(tmp_path / "cont.wav").frames == 16000
    # the vocoder's refinement is the run's (DEFAULT_VOCODER's for new runs); --vocoder-refine 0 is plain Griffin-Lim
    refine = json.loads((audio_run / "config.json").read_text())["model"]["modality"]["vocoder"]["refine"]
    assert refine == DEFAULT_VOCODER["refine"] > 0
    for name, flags in (("gl.wav", ("--vocoder-refine", "0")), ("default.wav", ()), ("again.wav", ("--vocoder-refine", str(refine)))):
        diffuse("sample", audio_run, "--n", "1", "--steps", "4", "--label", "7", *flags, "--out", tmp_path / name)
    gl, default, again = (sf.read(tmp_path / name)[0] for name in ("gl.wav", "default.wav", "again.wav"))
    assert np.array_equal(default, again) and not np.allclose(gl, default, atol=1e-3)
    one_line_error(diffuse("sample", audio_run, "--n", "1", "--vocoder-refine", "-1", "--out", tmp_path / "bad.wav", check=False),
                   "bad vocoder setting refine=-1")
    assert not (tmp_path / "bad.wav").exists()


def test_eval_synth_and_plot_work_on_audio_through_the_modality(audio_run, tmp_path, monkeypatch):
    """No per-modality branch above the record: eval scores vocoded samples in the mel classifier's features next
    to the real floor and the vocoder's, synth writes a WAV folder, plot draws spectrograms. $CI is set because
    pyfluidsynth then prints on stdout, which once broke --json on CI machines."""
    monkeypatch.setenv("CI", "1")
    r = diffuse("eval", audio_run, "--n", "12", "--steps", "3", "--metrics", "fid,kid,acc", "--json", fresh=True)  # fd 1 too
    res = json.loads(r.stdout)
    assert "mel domain classifier" in res["feature_net"] and 0 <= res["label_accuracy"] <= 1
    # a 6-step model is far from the data; real clips, with or without the vocoder, are much closer
    assert res["fid_real"] < res["fid_vocoder"] < res["fid"], res
    one_line_error(diffuse("eval", audio_run, "--n", "4", "--metrics", "bpd", check=False), "not defined for audio runs")
    one_line_error(diffuse("eval", audio_run, "--n", "4", "--features", "inception", check=False), "not defined for audio runs")
    r = diffuse("synth", audio_run, "--per-class", "1", "--steps", "2", "--out", tmp_path / "syn")
    rows = (tmp_path / "syn" / "manifest.csv").read_text().splitlines()
    assert len(rows) == 12 and rows[1].startswith("keyboard/000000.wav,0,keyboard")
    data, sr = sf.read(tmp_path / "syn" / "brass" / "000007.wav")
    assert sr == 16000 and data.shape == (16000,)
    diffuse("plot", audio_run, "--samples", "2", "--out", tmp_path / "p.png")
    from PIL import Image

    assert Image.open(tmp_path / "p_samples.png").size[1] > 11 * 40  # one row per family


def test_audio_bad_input_is_one_line_and_changes_nothing(audio_run, tmp_path, capsys):
    from cli_helpers import one_line_error_in_process

    before = _tree_hash(audio_run)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage")
    png = tmp_path / "pic.wav"
    from PIL import Image

    Image.new("L", (8, 8)).save(tmp_path / "pic.png")
    png.write_bytes((tmp_path / "pic.png").read_bytes())
    cases = [(["--init", bad], "cannot read init audio"), (["--init", png], "cannot read init audio"),
             (["--seconds", "0"], "--seconds must be"), (["--seconds", "-1"], "--seconds must be"),
             (["--seconds", "1000"], "--seconds must be"), (["--prompt", "a trumpet"], "--prompt needs a text-conditional"),
             (["--keep-seconds", "0.5"], "need --init"), (["--inpaint-seconds", "0.2:0.4"], "need --init"), (["--out", tmp_path / "x.gif"], "--out for audio")]
    for extra, needle in cases:
        args = ["sample", audio_run, "--n", "1", "--steps", "2", *map(str, extra)]
        if "--out" not in map(str, extra):
            args += ["--out", str(tmp_path / "o.wav")]
        one_line_error_in_process(capsys, needle, *args)  # (in this process: no interpreter start-up per case)
    assert _tree_hash(audio_run) == before


def test_missing_soundfont_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFUSE_SOUNDFONT", str(tmp_path / "none.sf2"))
    monkeypatch.setenv("DIFFUSE_CACHE", str(tmp_path / "cache"))
    r = diffuse("train", "--data", "notes:22", "--steps", "1", "--out", tmp_path / "run", check=False)
    one_line_error(r, "apt-get install fluidsynth fluid-soundfont-gm")
    assert not (tmp_path / "run").exists()


def test_fuzzed_wav_files_are_read_or_refused_in_one_line(tmp_path):
    """Hypothesis: damaged WAVs (a real one with bytes flipped, cut or appended) are either read as finite mono
    audio at the model's rate, or refused with a UserError; nothing else escapes."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from diffuse.audio.wav import read_wav, wav_bytes
    from diffuse.errors import UserError

    good = wav_bytes(np.sin(np.linspace(0, 200, 4000)).astype(np.float32) * 0.5, 8000)

    @settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(st.lists(st.tuples(st.integers(0, len(good) - 1), st.integers(0, 255)), max_size=8),
           st.integers(0, len(good)), st.binary(max_size=64))
    def check(flips, cut, tail):
        data = bytearray(good[:cut] + tail)
        for i, b in flips:
            if i < len(data):
                data[i] = b
        p = tmp_path / "f.wav"
        p.write_bytes(bytes(data))
        try:
            y = read_wav(p, 16000)
        except UserError as e:
            assert str(e).count("\n") == 0
            return
        assert y.ndim == 1 and y.dtype == torch.float32 and torch.isfinite(y).all()

    check()


def _tone(freq: float, seconds: float, sr: int, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    y = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([y] * channels, 1) if channels > 1 else y


@pytest.fixture(scope="module")
def wav_folder(tmp_path_factory):
    """Two classes of tones in the formats users have: other rates, stereo, FLAC, shorter and longer than 1 s."""
    root = tmp_path_factory.mktemp("wavs") / "sounds"
    for name, freq in (("low_hum", 220.0), ("high-beep", 1760.0)):
        (root / name).mkdir(parents=True)
        for k in range(10):
            sr, sec, ch, ext = [(16000, 1.0, 1, "wav"), (22050, 2.0, 2, "wav"), (8000, 0.3, 1, "flac")][k % 3]
            sf.write(root / name / f"{k:02d}.{ext}", _tone(freq * (1 + 0.01 * k), sec, sr, ch), sr)
    return root


def test_wav_folder_is_resampled_cut_and_padded_and_labelled(wav_folder):
    from diffuse.data import modality_name

    assert modality_name(str(wav_folder)) == "audio"
    train, test = load_dataset(str(wav_folder), "train"), load_dataset(str(wav_folder), "test")
    assert len(train) == 18 and len(test) == 2 and train.shape == (1, 64, 100)
    assert train.class_names == ["high-beep", "low_hum"] and train.modality["name"] == "audio"
    assert train.captions[0][1][0] == "the sound of a low hum"
    mod = AudioModality(MelConfig())
    # each clip equals the log-mel of its file resampled to 16 kHz and cut or padded to 1 s (librosa as the reference)
    for i, f in enumerate(train.files[:3]):
        y, _ = librosa.load(wav_folder / f, sr=16000, mono=True)
        ref = np.zeros(16000, np.float32)
        ref[: min(len(y), 16000)] = y[:16000]
        np.testing.assert_allclose(train.images[i].numpy(), mod.encode(torch.from_numpy(ref)[None])[0].numpy(), atol=2e-3)
    # the tone sits in the right mel bin whatever the file's rate: low hum below high beep
    peak = train.images[:, 0, :, 5].argmax(1)
    assert (peak[train.labels == 1].max() < peak[train.labels == 0].min())
    # the 0.3 s clips are silence (the floor) after 0.3 s
    short = [i for i, f in enumerate(train.files) if f.endswith(".flac")]
    assert torch.all(train.images[short, 0, :, 40:] < -0.9)


def test_wav_folder_trains_with_class_text_and_captions(wav_folder, tmp_path):
    diffuse("train", "--data", wav_folder, "--cond", "class", "--steps", "3", "--batch-size", "8", "--out", tmp_path / "c")
    r = diffuse("sample", tmp_path / "c", "--n", "2", "--steps", "2", "--label", "1", "--out", tmp_path / "c.wav", check=False)
    one_line_error(r, "holds one clip")
    diffuse("sample", tmp_path / "c", "--n", "1", "--steps", "2", "--label", "1", "--out", tmp_path / "c.wav")
    assert sf.info(tmp_path / "c.wav").samplerate == 16000
    cfg = json.loads((tmp_path / "c" / "config.json").read_text())
    assert cfg["train"]["preset"] == "audio" and cfg["model"]["modality"]["name"] == "audio"
    caps = tmp_path / "caps.csv"
    files = sorted(p.relative_to(wav_folder).as_posix() for p in wav_folder.rglob("*.*"))
    caps.write_text("file,text\n" + "".join(f"{f},a tone called {f.split('/')[0]}\n" for f in files))
    diffuse("train", "--data", wav_folder, "--cond", "text", "--captions", caps, "--steps", "2", "--batch-size", "8",
            "--out", tmp_path / "t")
    r = diffuse("sample", tmp_path / "t", "--n", "1", "--steps", "2", "--prompt", "a tone called low_hum", "--out", tmp_path / "t.wav")
    assert (tmp_path / "t.wav").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "x.wav").write_bytes(b"not a wav")
    one_line_error(diffuse("train", "--data", empty, "--steps", "1", "--out", tmp_path / "e", check=False), "cannot read audio file")
    assert not (tmp_path / "e").exists()


def test_inpainting_in_time_keeps_the_rest_of_the_clip(audio_run, tmp_path):
    """--inpaint-seconds A:B regenerates [A, B) and leaves the frames outside it equal to the init's log-mel."""
    from diffuse.sampling_inputs import time_mask
    from diffuse.generate import SampleConfig, generate
    from diffuse.model import load_model
    from diffuse.sampling_inputs import conditions

    sf.write(tmp_path / "in.wav", _tone(440.0, 1.0, 16000), 16000)
    model, mcfg = load_model(audio_run)
    mod = AudioModality(MelConfig())
    keep = time_mask(1.0, None, "0.3:0.6")
    assert keep == ((0.0, 0.3), (0.6, 1.0))
    c = conditions(mcfg, 2, None, [], None, tmp_path / "in.wav", 1.0, None, 1, mod=mod, shape=mcfg.net_shape, keep=keep)
    x = generate(model, 2, SampleConfig(steps=4), c.labels, edit=c.edit)
    init = mod.read(tmp_path / "in.wav", "init", mcfg.net_shape)
    torch.testing.assert_close(x[..., :30], init[..., :30].expand(2, -1, -1, -1), atol=1e-5, rtol=0)
    torch.testing.assert_close(x[..., 60:], init[..., 60:].expand(2, -1, -1, -1), atol=1e-5, rtol=0)
    assert (x[..., 30:60] - init[..., 30:60]).abs().mean() > 0.05
    for bad, needle in (("0.6:0.3", "needs 0 <= A < B"), ("x", "takes A:B"), ("0.2:5", "needs 0 <= A < B")):
        with pytest.raises(Exception, match=needle):
            time_mask(1.0, None, bad)


def test_latent_audio_autoencoder_and_diffusion_through_the_cli(tmp_path, capsys):
    """AudioLDM's shape of pipeline: a KL autoencoder on log-mels (non-square, f4), then latent diffusion in it;
    --seconds rounds to what the latent grid allows and the WAV has that length."""
    if not Path(notes.SOUNDFONTS[0]).is_file():
        pytest.skip(f"no SoundFont: {notes.APT}")
    from cli_helpers import in_process

    def diffuse(*args):  # in this process: no interpreter start-up per call
        rc, err = in_process(capsys, *args)
        assert rc == 0, err
        return type("R", (), {"stderr": err})

    ae = tmp_path / "ae"  # notes:22: the autoencoder's test report vocodes every test clip twice
    diffuse("train-autoencoder", "--data", "notes:22", "--steps", "3", "--batch-size", "8", "--out", ae)
    doc = json.loads((ae / "config.json").read_text())
    assert doc["model"]["shape"] == [64, 100] and doc["model"]["patch_size"] == 2  # f4p: 4x16x25 latents
    ev = doc["eval"]
    assert 0 <= ev["acc_reconstructions"] <= 1 and 0 <= ev["acc_originals"] <= 1 and ev["rfid"] >= 0 and ev["l1"] > 0
    assert ev["n"] == len(load_dataset("notes:22", "test", None)) and 0 < ev["psnr"] < 100
    assert (ae / "reconstructions.png").is_file()
    run = tmp_path / "run"
    diffuse("train", "--data", "notes:22", "--cond", "class", "--latent", ae, "--steps", "3", "--batch-size", "8", "--out", run)
    cfg = json.loads((run / "config.json").read_text())["model"]
    assert cfg["latent"]["image_shape"] == [1, 64, 100] and cfg["net"]["in_channels"] == 4
    r = diffuse("sample", run, "--n", "2", "--steps", "3", "--seconds", "0.5", "--out", tmp_path / "x.npz")
    assert "rounded to 0.48 s" in r.stderr  # 50 frames: not a multiple of the latent's factor 4
    assert np.load(tmp_path / "x.npz")["audio"].shape == (2, 48 * 160)
    diffuse("sample", run, "--n", "1", "--steps", "3", "--out", tmp_path / "one.wav")
    diffuse("sample", run, "--n", "1", "--steps", "3", "--init", tmp_path / "one.wav", "--keep-seconds", "0.4",
            "--out", tmp_path / "cont.wav")
    assert sf.info(tmp_path / "cont.wav").frames == 16000


def test_latent_auto_trains_caches_and_reuses_the_autoencoder(tmp_path, monkeypatch):
    """--latent auto: the first run trains an autoencoder into the cache and copies it into the run; a second run
    with the same data and budget reuses it untouched; --latent none (the audio default) trains on the log-mels."""
    if not Path(notes.SOUNDFONTS[0]).is_file():
        pytest.skip(f"no SoundFont: {notes.APT}")
    from diffuse.train.auto_latent import auto_budget

    assert auto_budget(10.0, None) == {"minutes": 3.0} and auto_budget(None, 5) == {"steps": 5}
    assert auto_budget(None, 10**6)["steps"] < 10**6
    cache = tmp_path / "cache"
    monkeypatch.setenv("DIFFUSE_CACHE", str(cache))
    args = ("train", "--data", "notes:110", "--cond", "class", "--steps", "2", "--batch-size", "8")
    r = diffuse(*args, "--latent", "auto", "--out", tmp_path / "a")
    assert "training one for 2 steps" in r.stderr
    cfg = json.loads((tmp_path / "a" / "config.json").read_text())
    assert cfg["train"]["latent"] == "auto" and cfg["model"]["net"]["in_channels"] == 4
    (ae,) = (cache / "autoencoders").iterdir()
    assert cfg["model"]["latent"]["source"] == str(ae)
    assert (tmp_path / "a" / "autoencoder" / "model.safetensors").read_bytes() == (ae / "model.safetensors").read_bytes()
    before = (ae / "model.safetensors").stat().st_mtime_ns
    r = diffuse(*args, "--latent", "auto", "--out", tmp_path / "b")
    assert "cached in" in r.stderr and "training one" not in r.stderr
    assert (ae / "model.safetensors").stat().st_mtime_ns == before
    diffuse("sample", tmp_path / "b", "--n", "1", "--steps", "2", "--out", tmp_path / "b.wav")
    assert sf.info(tmp_path / "b.wav").frames == 16000
    diffuse(*args, "--latent", "none", "--out", tmp_path / "c")
    cfg = json.loads((tmp_path / "c" / "config.json").read_text())["model"]
    assert cfg["latent"] is None and cfg["net"]["in_channels"] == 1 and not (tmp_path / "c" / "autoencoder").exists()


def test_latent_auto_takes_the_autoencoder_time_off_the_minutes(monkeypatch, tmp_path):
    """--minutes counts the autoencoder's training: what it took is taken off the diffusion's budget."""
    from diffuse.train import auto_latent, loop
    from diffuse.train.config import TrainConfig

    monkeypatch.setattr(auto_latent, "ensure_autoencoder", lambda *a: (tmp_path / "ae", 90.0))
    d = loop.D.Dist()  # one process
    cfg = TrainConfig(data="notes", minutes=10.0, latent="auto")
    new, path = loop._latent_dir(cfg, "fresh", tmp_path / "run", d)
    assert path == tmp_path / "ae" and new.minutes == pytest.approx(8.5)
    assert loop._latent_dir(cfg, "resume", tmp_path / "run", d)[1] == tmp_path / "run" / "autoencoder"
    assert loop._latent_dir(TrainConfig(data="notes", latent="none"), "fresh", tmp_path, d) == (TrainConfig(data="notes", latent="none"), None)


def test_latent_auto_finishes_an_autoencoder_a_kill_interrupted(tmp_path, monkeypatch, capsys):
    """A run killed while its autoencoder trained leaves it in the cache unfinished (config.json without latent
    statistics); the next run resumes that one instead of starting over or using it half-made."""
    if not Path(notes.SOUNDFONTS[0]).is_file():
        pytest.skip(f"no SoundFont: {notes.APT}")
    from diffuse.train.auto_latent import ensure_autoencoder, is_complete

    monkeypatch.setenv("DIFFUSE_CACHE", str(tmp_path))
    out, spent = ensure_autoencoder("notes:110", None, None, 0, None, 2)
    assert is_complete(out) and spent > 0
    doc = json.loads((out / "config.json").read_text())
    weights = (out / "model.safetensors").read_bytes()
    (out / "config.json").write_text(json.dumps({k: v for k, v in doc.items() if k not in ("latent", "eval")}))
    assert not is_complete(out)
    capsys.readouterr()
    again, _ = ensure_autoencoder("notes:110", None, None, 0, None, 2)
    assert again == out and "finishing the one a stop interrupted" in capsys.readouterr().err
    assert (out / "model.safetensors").read_bytes() == weights  # resumed at its last step: nothing retrained
    stats = json.loads((out / "config.json").read_text())["latent"]  # recomputed from the same weights (float noise)
    assert is_complete(out) and np.allclose(stats["std"], doc["latent"]["std"], rtol=1e-3)
    assert np.allclose(stats["mean"], doc["latent"]["mean"], rtol=1e-3, atol=1e-3)
