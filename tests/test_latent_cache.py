"""The training set's latents, cached once per (autoencoder, data): read back exactly, keyed by everything they depend
on, damaged files encoded again, the folder kept under its size cap, a failed write only a warning."""

import pytest
import torch
from cli_helpers import diffuse, one_line_error

from diffuse.codecs.autoencoder import AE_PRESETS, AEConfig, Autoencoder, LatentCodec
from diffuse.cache import cache_dir
from diffuse.data import load_dataset, to_model_space
from diffuse.errors import UserError
from diffuse.model import load_model
from diffuse.train import latent_cache as lc


def _codec(seed=0):
    torch.manual_seed(seed)
    ae = Autoencoder(AEConfig(**{**AE_PRESETS["f2"], "image_size": 8})).eval().requires_grad_(False)
    return LatentCodec(ae, torch.zeros(2), torch.ones(2), "fp", "mem")


@pytest.fixture()
def images():
    return load_dataset("digits", "train").images[:300]


def _files():
    return sorted((cache_dir() / "latents").glob("*.safetensors"))


def test_round_trip_is_exact_and_skips_the_encoder(images, monkeypatch):
    codec, said = _codec(), []
    for f in _files():
        f.unlink()
    mean, std = lc.cached_posterior(codec, images, say=said.append)
    ref = codec.posterior(to_model_space(images))
    assert torch.equal(mean, ref[0]) and torch.equal(std, ref[1]) and mean.shape == (300, 2, 4, 4)
    assert len(_files()) == 1 and "encoded" in said[-1] and "cached" in said[-1]
    monkeypatch.setattr(codec, "posterior", lambda *a, **k: pytest.fail("encoded although cached"))
    again = lc.cached_posterior(codec, images, say=said.append)
    assert torch.equal(again[0], mean) and torch.equal(again[1], std) and "read from the cache" in said[-1]


def test_key_follows_weights_data_normalisation_and_precision(images):
    codec = _codec()
    k = lc.cache_key(codec, images, False)
    assert lc.cache_key(_codec(), images, False) == k  # the same weights elsewhere (a run's copy) find the same file
    assert lc.cache_key(codec, images, True) != k
    assert lc.cache_key(codec, images[:299], False) != k
    changed = images.clone()
    changed[7, 0, 3, 3] ^= 1
    assert lc.cache_key(codec, changed, False) != k
    other = _codec()
    other.std = torch.full((2,), 2.0)
    assert lc.cache_key(other, images, False) != k
    with torch.no_grad():
        other = _codec()
        next(other.ae.parameters()).view(-1)[0] += 1e-3
    assert lc.cache_key(other, images, False) != k


@pytest.mark.parametrize("damage", ["truncate", "garbage", "wrong_shape", "nan"])
def test_damaged_file_is_encoded_again_and_replaced(images, damage, capsys):
    codec = _codec()
    mean, std = lc.cached_posterior(codec, images)
    path = cache_dir() / "latents" / f"{lc.cache_key(codec, images, False)}.safetensors"
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:1000])
    elif damage == "garbage":
        path.write_bytes(b"\x00" * 64)
    else:  # a well-formed file under the right name that does not hold what the key promises
        bad = torch.full_like(mean, float("nan")) if damage == "nan" else mean[:10]
        from diffuse.checkpoint import save_tensors

        save_tensors(path, {"mean": bad, "std": std[: len(bad)]}, {"format": lc.FORMAT, "key": path.stem})
    capsys.readouterr()
    again = lc.cached_posterior(codec, images)
    assert "damaged" in capsys.readouterr().err
    assert torch.equal(again[0], mean) and torch.equal(again[1], std)
    assert lc._read(path, path.stem, tuple(mean.shape)) is not None  # replaced by a whole file


def test_full_disk_is_a_warning_and_training_data_is_kept(images, monkeypatch, capsys):
    codec = _codec(1)

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(lc, "save_tensors", full)
    mean, std = lc.cached_posterior(codec, images)
    err = capsys.readouterr().err
    assert "could not cache" in err and "No space left" in err and "Traceback" not in err
    assert torch.equal(mean, codec.posterior(to_model_space(images))[0])


def test_size_cap_evicts_the_least_recently_used(images, monkeypatch):
    for f in _files():
        f.unlink()
    one = 2 * 300 * 2 * 4 * 4 * 4  # bytes of (mean, std) for 300 items of 2x4x4
    monkeypatch.setenv("DIFFUSE_LATENT_CACHE_GB", str(2.5 * one / 2**30))  # room for two files
    a, b, c = _codec(0), _codec(1), _codec(2)
    lc.cached_posterior(a, images)
    lc.cached_posterior(b, images)
    lc.cached_posterior(a, images)  # read: a is now the most recently used
    lc.cached_posterior(c, images)
    keys = {f.stem for f in _files()}
    assert keys == {lc.cache_key(a, images, False), lc.cache_key(c, images, False)}
    said = []
    monkeypatch.setenv("DIFFUSE_LATENT_CACHE_GB", str(0.5 * one / 2**30))  # smaller than one file: not written
    lc.cached_posterior(_codec(3), images, say=said.append)
    assert "not cached" in said[-1] and {f.stem for f in _files()} == keys
    monkeypatch.setenv("DIFFUSE_LATENT_CACHE_GB", "0")
    lc.cached_posterior(_codec(4), images, say=said.append)
    assert {f.stem for f in _files()} == keys
    for bad in ("-1", "lots", "inf", "nan"):
        monkeypatch.setenv("DIFFUSE_LATENT_CACHE_GB", bad)
        with pytest.raises(UserError, match="DIFFUSE_LATENT_CACHE_GB"):
            lc.cached_posterior(a, images)


def test_second_latent_run_reads_the_cache_and_trains_the_same(tmp_path, monkeypatch):
    """Two runs on one autoencoder: the second reads the first's latents and takes exactly the same steps."""
    ae = tmp_path / "ae"
    diffuse("train-autoencoder", "--data", "digits", "--steps", "20", "--out", ae)
    monkeypatch.setenv("DIFFUSE_CACHE", str(tmp_path / "cache"))
    args = ("train", "--data", "digits", "--cond", "class", "--latent", ae, "--steps", "6", "--preset", "tiny",
            "--sample-every", "1000")
    first = diffuse(*args, "--out", tmp_path / "a")
    second = diffuse(*args, "--out", tmp_path / "b")
    assert "cached" in first.stderr and "read from the cache" in second.stderr
    wa, wb = load_model(tmp_path / "a")[0].state_dict(), load_model(tmp_path / "b")[0].state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    monkeypatch.setenv("DIFFUSE_LATENT_CACHE_GB", "many")
    one_line_error(diffuse(*args, "--out", tmp_path / "c", check=False), "DIFFUSE_LATENT_CACHE_GB")
