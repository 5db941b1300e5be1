"""Text conditioning: the offline encoder, captions, the caption bank, the U-Net's text path, and the CLI."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import diffuse, one_line_error
import torch
from PIL import Image

from diffuse.data.sources import FASHION_CLASSES
from diffuse.errors import UserError
from diffuse.nets.unet import UNet, preset
from diffuse.synth import SYNTH_TEXT_GUIDANCE
from diffuse.text.captions import SYNONYMS, canonical_prompt, class_captions, read_captions_file

HELDOUT = Path(__file__).parent.parent / "benchmarks" / "prompts" / "fmnist_heldout.tsv"


def test_encoder_loads_offline_and_knows_unseen_words(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    from diffuse.text.encoder import get_encoder

    enc = get_encoder("minilm")
    tokens, mask, pooled = enc.encode(["a sneaker", "athletic footwear for jogging", "an elegant evening gown", ""])
    assert tokens.shape[0] == 4 and tokens.shape[2] == 384 and mask.shape == tokens.shape[:2]
    assert mask[0].sum() < mask[1].sum()  # padding is masked
    torch.testing.assert_close(pooled.norm(dim=1), torch.ones(4))
    sim = pooled @ pooled.T
    assert sim[0, 1] > sim[0, 2]  # "athletic footwear for jogging" is closer to a sneaker than a gown is


def test_captions_are_varied_and_heldout_prompts_never_leak():
    train = {c for name in FASHION_CLASSES for c in class_captions(name)}
    for name in FASHION_CLASSES:
        caps = class_captions(name)
        assert len(caps) >= 80 and len(set(caps)) == len(caps)
        assert canonical_prompt(name) in caps
    assert "a pair of trainers" in class_captions("Sneaker") and "a photo of a sneaker" in class_captions("Sneaker")
    rows = [line.split("\t") for line in HELDOUT.read_text().splitlines()]
    assert len(rows) >= 20 and {r[0] for r in rows} == set(FASHION_CLASSES)
    for cls, prompt in rows:
        assert prompt not in train
        for syn in SYNONYMS[cls]:  # other words than the class's training synonyms
            assert not re.search(rf"\b{re.escape(syn)}\b", prompt, re.I), (prompt, syn)


def test_captions_file_csv_and_jsonl(tmp_path):
    (tmp_path / "c.csv").write_text("file,text\na.png,a red thing\nb.png,a blue thing\na.png,a crimson thing\n")
    assert read_captions_file(tmp_path / "c.csv", ["a.png", "b.png"]) == [["a red thing", "a crimson thing"], ["a blue thing"]]
    (tmp_path / "c.jsonl").write_text('{"file": "b.png", "text": "x"}\n{"file": "a.png", "text": "y"}\n')
    assert read_captions_file(tmp_path / "c.jsonl", ["a.png", "b.png"]) == [["y"], ["x"]]
    with pytest.raises(UserError, match="no caption"):
        read_captions_file(tmp_path / "c.jsonl", ["a.png", "c.png"])
    (tmp_path / "bad.csv").write_text("name,caption\na.png,x\n")
    with pytest.raises(UserError, match="file and text"):
        read_captions_file(tmp_path / "bad.csv", ["a.png"])


def _text_cond(b, length=6, drop=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(b, length, dtype=torch.bool)
    mask[:, 4:] = False
    return {"tokens": torch.randn(b, length, 384, generator=g), "mask": mask, "pooled": torch.randn(b, 384, generator=g),
            "drop": torch.zeros(b, dtype=torch.bool) if drop is None else drop}


def test_unet_text_path_masks_padding_and_drops_to_the_null_text():
    torch.manual_seed(0)
    net = UNet(preset("tiny", image_size=8, text_dim=384, attn_resolutions=(2,))).eval()
    for p in net.parameters():  # zero-initialised output layers would hide the condition's effect
        torch.nn.init.normal_(p, std=0.05)
    x, c = torch.randn(3, 1, 8, 8), torch.randn(3)
    cond = _text_cond(3, drop=torch.tensor([False, True, False]))
    out = net(x, c, cond)
    other = _text_cond(3, drop=cond["drop"], seed=1)
    other["tokens"][:, :4] = cond["tokens"][:, :4]
    other["pooled"] = cond["pooled"]
    torch.testing.assert_close(net(x, c, other), out)  # masked positions are ignored
    changed = net(x, c, _text_cond(3, drop=cond["drop"], seed=2))
    assert not torch.allclose(changed[0], out[0])  # a real text matters ...
    torch.testing.assert_close(changed[1], out[1])  # ... a dropped one does not
    torch.testing.assert_close(net(x, c, None)[1], out[1])  # no condition = the null text


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("text") / "run"
    diffuse("train", "--data", "digits", "--cond", "text", "--steps", "300", "--preset", "tiny", "--sample-every", "300",
            "--out", out)
    return out


def test_text_model_round_trip(text_run, tmp_path):
    assert (text_run / "samples" / "step_0000300.png").is_file()
    cfg = json.loads((text_run / "config.json").read_text())["model"]
    assert cfg["cond"] == "text" and cfg["net"]["text_dim"] == 384
    (tmp_path / "p.txt").write_text("the number seven\n\na handwritten zero\n")
    diffuse("sample", text_run, "--prompt", "a three", "--prompts", tmp_path / "p.txt", "--n", "6", "--steps", "6",
            "--guidance", "2", "--out", tmp_path / "s.npz")
    z = np.load(tmp_path / "s.npz")
    assert z["images"].shape == (6, 8, 8, 1)
    assert z["prompts"].tolist() == ["a three", "the number seven", "a handwritten zero"] * 2
    r = diffuse("eval", text_run, "--n", "200", "--steps", "10", "--json")
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["label_accuracy"] > 0.3  # prompt adherence well above chance (0.1) after 300 steps
    diffuse("synth", text_run, "--per-class", "2", "--steps", "4", "--out", tmp_path / "syn")
    rows = (tmp_path / "syn" / "manifest.csv").read_text().splitlines()
    assert rows[0].endswith(",prompt") and len(rows) == 21
    # CAS on a text model: one prompt per class, as synth makes its set
    r = diffuse("eval", text_run, "--metrics", "cas", "--cas-per-class", "20", "--cas-steps", "150", "--steps", "8", "--json")
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["cas_real_equal_n"] > 0.6 and res["cas_synthetic"] > 0.15  # chance: 0.1
    assert res["cas_sampling"]["guidance"] == SYNTH_TEXT_GUIDANCE


def test_sample_conditions_on_the_nearest_training_caption(text_run, tmp_path):
    import shutil

    from diffuse.model import load_model
    from diffuse.text.retrieval import training_captions

    digits = [str(i) for i in range(10)]
    saved = json.loads((text_run / "captions.json").read_text())["texts"]
    assert saved == list(dict.fromkeys(c for d in digits for c in class_captions(d)))
    old_run = tmp_path / "old"  # a run from before captions.json: the captions are re-derived from its class names
    shutil.copytree(text_run, old_run)
    (old_run / "captions.json").unlink()
    assert training_captions(old_run, load_model(old_run)[1]) == saved

    args = ["--n", "4", "--steps", "4", "--guidance", "2"]
    r = diffuse("sample", text_run, "--prompt", "the numeral seven", *args, "--out", tmp_path / "a.npz")
    m = re.search(r"prompt 'the numeral seven' -> training caption '([^']+)' \(cosine (0\.\d+), word alignment (0\.\d+)\)",
                  r.stderr)
    assert m and m.group(1) in class_captions("7"), r.stderr
    same = diffuse("sample", text_run, "--raw-prompt", "--prompt", m.group(1), *args, "--out", tmp_path / "b.npz")
    raw = diffuse("sample", text_run, "--raw-prompt", "--prompt", "the numeral seven", *args, "--out", tmp_path / "c.npz")
    assert "training caption" not in same.stderr + raw.stderr
    a, b, c = (np.load(tmp_path / f"{k}.npz")["images"] for k in "abc")
    assert np.array_equal(a, b)  # conditioned on exactly that caption
    assert not np.array_equal(a, c)
    assert np.load(tmp_path / "a.npz")["prompts"].tolist() == ["the numeral seven"] * 4  # the user's prompt is kept

    (tmp_path / "p.tsv").write_text("7\tthe numeral seven\n")
    r = diffuse("synth", text_run, "--per-class", "2", "--steps", "4", "--prompts", tmp_path / "p.tsv", "--out", tmp_path / "syn")
    rows = (tmp_path / "syn" / "manifest.csv").read_text().splitlines()
    assert rows[0].endswith(",prompt,caption") and rows[1].endswith(f",the numeral seven,{m.group(1)}"), rows[:2]


def test_nearest_caption_of_heldout_prompts_has_their_class():
    """The retrieval step alone, on the Fashion-MNIST captions: the held-out prompts' nearest training captions
    (pooled MiniLM cosine) mostly belong to the intended class (28 of 30 measured)."""
    from diffuse.text.retrieval import nearest_captions

    cls_of = {c: name for name in FASHION_CLASSES for c in class_captions(name)}
    rows = [line.split("\t") for line in HELDOUT.read_text().splitlines()]
    near = nearest_captions([p for _, p in rows], list(cls_of), "minilm")
    hits = sum(cls_of[m.caption] == cls for (cls, _), m in zip(rows, near))
    assert hits >= 27, [(p, m.caption) for (_, p), m in zip(rows, near)]  # 29 of 30 measured (benchmarks/snapping.py)
    assert all(0 < m.cosine < 1 and 0 < m.alignment < 1 for m in near)


def test_snapping_keeps_the_direction_a_pooled_embedding_blurs():
    """Held-out video phrasings of two classes, against those classes' training captions: ranking by the pooled cosine
    alone sends some to the opposite direction ("footage of a coat gliding left" -> "... moving right"); the default
    (cosine + word-piece F1) snaps every one to the right class and direction."""
    from diffuse.data.moving import DIRECTIONS, group_captions, heldout_prompt
    from diffuse.text.bank import CaptionBank
    from diffuse.text.retrieval import nearest_captions, prompt_embeddings

    label = {c: (n, d) for n in ("Coat", "Sneaker") for d in DIRECTIONS for c in group_captions(n, d)}
    pairs = [(n, d) for n in ("Coat", "Sneaker") for d in DIRECTIONS for _ in range(6)]
    prompts = [heldout_prompt(n, d, i % 6) for i, (n, d) in enumerate(pairs)]
    bank = CaptionBank.build(list(label), "minilm")
    by_cosine = (prompt_embeddings(prompts, "minilm").pooled @ bank.pooled.T).argmax(1)
    assert sum(label[bank.texts[int(i)]] == w for i, w in zip(by_cosine, pairs)) < len(pairs)  # 91 of 96 measured
    near = nearest_captions(prompts, list(label), "minilm", bank)
    assert [label[m.caption] for m in near] == pairs, [(p, m.caption) for p, m, w in zip(prompts, near, pairs) if label[m.caption] != w]


def test_word_alignment_is_bertscore_f1():
    """alignment_scores against a direct loop over pairs: [CLS] and [SEP] left out, each piece's best cosine, recall
    over the query's pieces, precision over the key's, F1; a text aligned with itself scores 1, and F1 is symmetric."""
    from diffuse.text.bank import CaptionBank
    from diffuse.text.retrieval import alignment_scores

    g = torch.Generator().manual_seed(0)

    def bank(lengths):
        tokens = torch.randn(len(lengths), max(lengths) + 1, 8, generator=g)
        mask = torch.arange(max(lengths) + 1)[None] < torch.tensor(lengths)[:, None]
        return CaptionBank([str(i) for i in lengths], tokens, mask, torch.randn(len(lengths), 8), "test")

    q, k = bank([3, 6, 4, 5, 3, 7, 4, 5, 6, 3]), bank([5, 3, 7, 4])  # more than one chunk of 8 queries
    got = alignment_scores(q, k)
    for i in range(len(q)):
        for j in range(len(k)):
            a = torch.nn.functional.normalize(q.tokens[i, 1 : int(q.mask[i].sum()) - 1], dim=-1)
            b = torch.nn.functional.normalize(k.tokens[j, 1 : int(k.mask[j].sum()) - 1], dim=-1)
            s = a @ b.T
            r, p = s.amax(1).mean().clamp(min=0), s.amax(0).mean().clamp(min=0)
            assert got[i, j] == pytest.approx(float(2 * r * p / (r + p)) if r + p > 0 else 0.0, abs=1e-5)
    assert torch.allclose(alignment_scores(k, k).diagonal(), torch.ones(len(k)), atol=1e-5)
    assert torch.allclose(alignment_scores(k, q), got.T, atol=1e-5)


def test_a_copied_run_samples_training_captions_without_the_encoder(text_run, tmp_path, monkeypatch, capsys):
    """The run carries its encoded captions (captions.safetensors): on a machine with an empty cache, a prompt that is
    a training caption, or one asked before, never loads the text encoder; the same prompt gives the same image
    through the encoder-free path as through a fresh nearest-caption lookup."""
    import diffuse.text.encoder as enc
    from cli_helpers import in_process

    from diffuse.text.retrieval import training_captions

    assert (text_run / "captions.safetensors").is_file()
    caption = training_captions(text_run, None)[5]
    args = ("sample", text_run, "--n", "2", "--steps", "4", "--seed", "3")
    monkeypatch.setenv("DIFFUSE_CACHE", str(tmp_path / "empty-cache"))
    rc, err = in_process(capsys, *args, "--prompt", "a slightly different seven", "--out", tmp_path / "a.npz")
    assert rc == 0, err
    monkeypatch.setattr(enc, "_LOADED", {})
    monkeypatch.setitem(enc.ENCODERS, "minilm", lambda: (_ for _ in ()).throw(AssertionError("encoder loaded")))
    for prompt, out in ((caption, "b.npz"), ("a slightly different seven", "c.npz")):
        rc, err = in_process(capsys, *args, "--prompt", prompt, "--out", tmp_path / out)
        assert rc == 0, err
    assert np.array_equal(np.load(tmp_path / "a.npz")["images"], np.load(tmp_path / "c.npz")["images"])
    with pytest.raises(AssertionError, match="encoder loaded"):  # a new prompt does need the encoder
        in_process(capsys, *args, "--prompt", "never asked before", "--out", tmp_path / "d.npz")


def test_text_bad_inputs(text_run, tmp_path):
    one_line_error(diffuse("sample", text_run, "--prompt", "  ", "--out", tmp_path / "x.png", check=False), "empty prompt")
    one_line_error(diffuse("sample", text_run, "--label", "3", "--out", tmp_path / "x.png", check=False), "--label")
    (tmp_path / "empty.txt").write_text("\n")
    one_line_error(diffuse("sample", text_run, "--prompts", tmp_path / "empty.txt", "--out", tmp_path / "x.png", check=False),
                    "no prompts")
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(4):
        Image.fromarray(np.full((8, 8), i * 60, np.uint8)).save(folder / f"{i}.png")
    one_line_error(diffuse("train", "--data", folder, "--cond", "text", "--out", tmp_path / "r", check=False), "--captions")
    (tmp_path / "caps.csv").write_text("file,text\n0.png,dark\n")
    one_line_error(diffuse("train", "--data", folder, "--cond", "text", "--captions", tmp_path / "caps.csv", "--out",
                            tmp_path / "r", "--steps", "2", "--batch-size", "2", check=False), "no caption")
    assert not (tmp_path / "r" / "model.safetensors").exists()


def test_conditioning_augmentation_jitters_around_the_caption():
    from diffuse.text.bank import augment

    cond = _text_cond(256)
    cond["pooled"] = torch.nn.functional.normalize(cond["pooled"], dim=-1)
    assert augment(cond, 0.0) is cond
    aug = augment(cond, 0.3, torch.Generator().manual_seed(0))
    torch.testing.assert_close(aug["pooled"].norm(dim=-1), torch.ones(256))
    cos = (aug["pooled"] * cond["pooled"]).sum(-1)
    assert 0.9 < float(cos.mean()) < 0.99  # a neighbourhood of the caption, not another caption
    rel = (aug["tokens"] - cond["tokens"]).pow(2).mean().sqrt() / cond["tokens"].pow(2).mean().sqrt()
    assert 0.25 < float(rel) < 0.35
