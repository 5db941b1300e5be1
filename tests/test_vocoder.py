"""The neural vocoder (audio/neural.py): its frames line up with the mel front end's, it learns (its log-mel loss
falls on tones it trains on), it saves and loads bit for bit, it refuses foreign or damaged folders in one line, and
`diffuse train-vocoder` / `diffuse sample --vocoder` work end to end."""

import json

import numpy as np
import pytest
import torch

from cli_helpers import diffuse, one_line_error

pytest.importorskip("librosa")
sf = pytest.importorskip("soundfile")

from diffuse.audio import MelConfig, MelFrontEnd  # noqa: E402
from diffuse.audio.neural import (NeuralVocoder, NeuralVocoderConfig, load_neural_vocoder, save_neural_vocoder,  # noqa: E402
                                  train_neural_vocoder, vocoder_loss)
from diffuse.audio.vocoder import Neural  # noqa: E402
from diffuse.errors import UserError  # noqa: E402

TINY = NeuralVocoderConfig(width=32, blocks=2)


def tones(n: int, sr: int = 16000, seconds: float = 1.0, seed: int = 0) -> torch.Tensor:
    """Harmonic tones with a decay: pitch and brightness vary."""
    g = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    out = []
    for _ in range(n):
        f0, tilt = g.uniform(110, 880), g.uniform(0.3, 0.9)
        y = sum(tilt ** k * np.sin(2 * np.pi * f0 * (k + 1) * t + g.uniform(0, 6.28)) for k in range(6) if f0 * (k + 1) < 7500)
        out.append(0.3 * y / np.abs(y).max() * np.exp(-3 * t))
    return torch.from_numpy(np.stack(out).astype(np.float32))


def test_frames_line_up_with_the_front_end_and_the_last_hop_is_silence():
    mel = MelConfig()
    net = NeuralVocoder(mel, TINY)
    for frames in (100, 37):
        x = torch.randn(2, mel.n_mels, frames).clamp(-1, 1)
        y = net(x)
        assert y.shape == (2, frames * mel.hop) and torch.isfinite(y).all()
        assert y[:, -mel.hop:].abs().max() == 0
        assert MelFrontEnd(mel).encode(y, frames).shape == (2, 1, mel.n_mels, frames)


def test_it_learns_its_loss_falls_on_the_tones_it_trains_on():
    mel = MelConfig()
    waves = tones(16)
    front = MelFrontEnd(mel)
    torch.manual_seed(0)
    with torch.no_grad():
        before, _ = vocoder_loss(NeuralVocoder(mel, TINY)(front.encode(waves)[:, 0]), waves, front)
    net, rec = train_neural_vocoder(waves, mel, steps=60, batch_size=8, lr=3e-3, cfg=TINY, log=None)
    with torch.no_grad():
        after, parts = vocoder_loss(net(front.encode(waves)[:, 0]), waves, front)
    assert rec["steps"] == 60 and rec["clips"] == 16
    assert after < 0.7 * before, (float(before), float(after))


def test_save_load_round_trip_and_refusals(tmp_path):
    mel = MelConfig()
    net = NeuralVocoder(mel, TINY).eval()
    save_neural_vocoder(net, {"net": {"width": 32, "blocks": 2, "kernel": 7}, "mel": mel.to_dict(), "steps": 0}, tmp_path / "v")
    back = load_neural_vocoder(tmp_path / "v", mel)
    x = torch.randn(3, mel.n_mels, 20).clamp(-1, 1)
    with torch.no_grad():
        assert torch.equal(net(x), back(x))
    # through the Vocoder interface: mel magnitudes in, waves of the asked length out, with and without matching
    mags = MelFrontEnd(mel).magnitudes(x[:, None])
    assert Neural(mel, str(tmp_path / "v"))(mags, 20 * mel.hop).shape == (3, 20 * mel.hop)
    assert Neural(mel, str(tmp_path / "v"), refine=2)(mags, 25 * mel.hop).shape == (3, 25 * mel.hop)
    with pytest.raises(UserError, match="another mel front end"):
        load_neural_vocoder(tmp_path / "v", MelConfig(n_mels=80))
    with pytest.raises(UserError, match="cannot load a neural vocoder"):
        load_neural_vocoder(tmp_path / "missing", mel)
    (tmp_path / "v" / "vocoder.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(UserError, match="corrupt or not a safetensors file"):
        load_neural_vocoder(tmp_path / "v", mel)
    (tmp_path / "v" / "vocoder.json").write_text("[1, 2]")
    with pytest.raises(UserError, match="not a diffuse neural vocoder"):
        load_neural_vocoder(tmp_path / "v", mel)


def test_cli_trains_a_vocoder_and_sample_decodes_with_it(audio_run, tmp_path):
    voc = tmp_path / "voc"
    r = diffuse("train-vocoder", "--data", "notes:22", "--steps", "3", "--batch-size", "4", "--width", "32", "--blocks", "2",
                "--out", voc)
    rec = json.loads((voc / "vocoder.json").read_text())
    assert rec["steps"] == 3 and rec["clips"] == 22 and rec["test_mel_l1"] > 0 and f"--vocoder {voc}" in r.stdout
    before = (audio_run / "config.json").read_bytes()
    for name, flags in (("n.wav", ("--vocoder", voc, "--vocoder-refine", "0")), ("gl.wav", ("--vocoder-refine", "0"))):
        diffuse("sample", audio_run, "--n", "1", "--steps", "3", "--label", "2", *flags, "--out", tmp_path / name)
    neural, gl = (sf.read(tmp_path / name) for name in ("n.wav", "gl.wav"))
    assert neural[1] == gl[1] == 16000 and len(neural[0]) == len(gl[0]) == 16000
    assert not np.allclose(neural[0], gl[0], atol=1e-3)  # another vocoder decoded it
    assert (audio_run / "config.json").read_bytes() == before  # a use-time choice: the run is unchanged
    # bad input: one line, exit 2, nothing written
    one_line_error(diffuse("sample", audio_run, "--n", "1", "--vocoder", tmp_path / "nowhere", "--out", tmp_path / "b.wav",
                           check=False), "cannot load a neural vocoder")
    one_line_error(diffuse("train-vocoder", "--data", tmp_path / "nowhere", "--steps", "1", "--out", tmp_path / "v2", check=False),
                   "not 'notes' nor a folder")
    one_line_error(diffuse("train-vocoder", "--data", "notes:x", "--steps", "1", "--out", tmp_path / "v2", check=False),
                   "positive integer")
    one_line_error(diffuse("train-vocoder", "--steps", "0", "--out", tmp_path / "v2", check=False), "--steps must be > 0")
    assert not (tmp_path / "b.wav").exists() and not (tmp_path / "v2").exists()


def test_a_run_carries_its_vocoder_and_decodes_with_it_wherever_it_moves(tmp_path):
    from diffuse.data import notes

    if not notes.SOUNDFONTS or not __import__("pathlib").Path(notes.SOUNDFONTS[0]).is_file():
        pytest.skip(f"no SoundFont: {notes.APT}")
    voc = tmp_path / "voc"
    diffuse("train-vocoder", "--data", "notes:22", "--steps", "2", "--batch-size", "4", "--width", "32", "--blocks", "2",
            "--out", voc)
    run = tmp_path / "run"
    diffuse("train", "--data", "notes:110", "--cond", "class", "--steps", "2", "--batch-size", "16", "--vocoder", voc, "--out", run)
    spec = json.loads((run / "config.json").read_text())["model"]["modality"]["vocoder"]
    assert spec == {"name": "neural", "path": "vocoder", "refine": 100}  # relative: the run's own copy
    assert (run / "vocoder" / "vocoder.safetensors").read_bytes() == (voc / "vocoder.safetensors").read_bytes()
    diffuse("sample", run, "--n", "1", "--steps", "2", "--label", "3", "--out", tmp_path / "own.wav")
    diffuse("sample", run, "--n", "1", "--steps", "2", "--label", "3", "--vocoder", voc, "--vocoder-refine", "100",
            "--out", tmp_path / "named.wav")
    diffuse("sample", run, "--n", "1", "--steps", "2", "--label", "3", "--vocoder-refine", "0", "--out", tmp_path / "raw.wav")
    own, named, raw = (sf.read(tmp_path / f)[0] for f in ("own.wav", "named.wav", "raw.wav"))
    assert np.array_equal(own, named) and not np.allclose(own, raw, atol=1e-4)
    moved = tmp_path / "elsewhere" / "run"
    moved.parent.mkdir()
    run.rename(moved)
    voc.rename(tmp_path / "voc_gone")  # the run needs neither its old place nor the vocoder's
    diffuse("sample", moved, "--n", "1", "--steps", "2", "--label", "3", "--out", tmp_path / "moved.wav")
    assert np.array_equal(sf.read(tmp_path / "moved.wav")[0], own)
    # bad input: one line, exit 2, no run written
    one_line_error(diffuse("train", "--data", "digits", "--steps", "1", "--vocoder", tmp_path / "voc_gone", "--out",
                           tmp_path / "img", check=False), "--vocoder is for audio data")
    one_line_error(diffuse("train", "--data", "notes:110", "--steps", "1", "--vocoder", tmp_path / "nowhere", "--out",
                           tmp_path / "bad", check=False), "cannot load a neural vocoder")
    assert not (tmp_path / "img").exists() and not (tmp_path / "bad").exists()


def test_records_bind_to_their_run_and_unbind_for_another(tmp_path):
    """read_run_config tells a record where its run is (an audio run's vocoder path is relative to it); distill
    writes the record unbound. Records that name no run files pass through unchanged."""
    from diffuse.modalities import bind_run, unbind_run
    from diffuse.modalities.audio import DEFAULT_VOCODER, RUN_NEURAL_VOCODER
    from diffuse.model import read_run_config

    spec = {"name": "audio", "mel": MelConfig().to_dict(), "vocoder": dict(RUN_NEURAL_VOCODER)}
    bound = bind_run(spec, tmp_path)
    assert bound["vocoder"] == {**RUN_NEURAL_VOCODER, "run_dir": str(tmp_path)} and spec["vocoder"] == RUN_NEURAL_VOCODER
    assert unbind_run(bound) == spec
    for other in ({"name": "audio", "vocoder": DEFAULT_VOCODER}, {"name": "image"}, None, "junk"):
        assert bind_run(other, tmp_path) == other and unbind_run(other) == other
    run = tmp_path / "run"
    run.mkdir()
    from diffuse.model import RUN_FORMAT

    (run / "config.json").write_text(json.dumps({"format": RUN_FORMAT, "model": {"modality": spec}}))
    assert read_run_config(run)["model"]["modality"]["vocoder"]["run_dir"] == str(run.resolve())
    assert json.loads((run / "config.json").read_text())["model"]["modality"] == spec  # the file is not rewritten


def test_train_vocoder_caches_one_per_dataset_and_new_runs_take_it(tmp_path, monkeypatch):
    """`train-vocoder` without --out keeps the vocoder in the user's cache, keyed by the data; a fresh audio run on
    that data carries it (`--vocoder auto`, the default), one on other data does not, and `--vocoder none` keeps
    Griffin-Lim. Before one is cached, the run says how to get one."""
    from diffuse.data import notes
    from diffuse.modalities.audio import DEFAULT_VOCODER, RUN_NEURAL_VOCODER, cached_vocoder_dir

    if not notes.SOUNDFONTS or not __import__("pathlib").Path(notes.SOUNDFONTS[0]).is_file():
        pytest.skip(f"no SoundFont: {notes.APT}")
    monkeypatch.setenv("DIFFUSE_CACHE", str(tmp_path / "cache"))  # this test's own cache: others never see its vocoder

    def train(name, *flags, data="notes:110"):
        r = diffuse("train", "--data", data, "--cond", "class", "--steps", "1", "--batch-size", "16", *flags, "--out", tmp_path / name)
        return r.stderr, json.loads((tmp_path / name / "config.json").read_text())["model"]["modality"]["vocoder"]

    err, spec = train("before")
    assert spec == DEFAULT_VOCODER and "diffuse train-vocoder --data notes:110 --minutes 20" in err
    r = diffuse("train-vocoder", "--data", "notes:110", "--steps", "2", "--batch-size", "4", "--width", "32", "--blocks", "2")
    cached = cached_vocoder_dir("notes:110")
    assert (cached / "vocoder.json").is_file() and f"saved in {cached}" in r.stdout and "New audio runs on notes:110" in r.stdout
    err, spec = train("after")
    assert spec == RUN_NEURAL_VOCODER and f"the neural vocoder cached for notes:110 ({cached})" in err
    assert (tmp_path / "after" / "vocoder" / "vocoder.safetensors").read_bytes() == (cached / "vocoder.safetensors").read_bytes()
    assert train("none", "--vocoder", "none")[1] == DEFAULT_VOCODER and not (tmp_path / "none" / "vocoder").exists()
    assert train("other", data="notes:88")[1] == DEFAULT_VOCODER  # another dataset: another key
    assert cached_vocoder_dir("notes:88") != cached and cached_vocoder_dir("notes") != cached
    (cached / "vocoder.safetensors").write_bytes(b"junk")  # a damaged cache entry: Griffin-Lim, said, and the run trains
    err, spec = train("damaged")
    assert spec == DEFAULT_VOCODER and "the cached one is unusable" in err and "corrupt" in err
    img = diffuse("train", "--data", "digits", "--steps", "1", "--preset", "tiny", "--out", tmp_path / "img")
    assert "vocoder" not in img.stderr  # image data: nothing to say
