"""A folder of video files as training data (data/video_folder.py): windows, crops, splits, the CLI round trip and
one-line refusals."""

from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import in_process, one_line_error_in_process

from diffuse.data import load_dataset, modality_name
from diffuse.data.moving import moving_dataset
from diffuse.data.video_folder import clip_files
from diffuse.modalities.video import gif_bytes, mp4_bytes, read_clips


def _folder(root: Path, n: int = 20, frames: int = 16) -> Path:
    """n moving-digits GIFs of ``frames`` frames (the 8-frame clip, then it backwards) in even/ and odd/ by digit,
    one 4-frame GIF and one MP4 whose 16x24 frames are the clip between two 4-pixel bars."""
    ds = moving_dataset(f"moving-digits:limit={n}", "train")
    for i in range(n):
        v = ds.images[i].permute(1, 2, 3, 0).numpy()  # [T, H, W, 1]
        d = root / ("even" if (ds.labels[i] // 8) % 2 == 0 else "odd")
        d.mkdir(parents=True, exist_ok=True)
        (d / f"c{i:02d}.gif").write_bytes(gif_bytes(np.concatenate([v, v[::-1]])[:frames], 8))
    (root / "odd" / "short.gif").write_bytes(gif_bytes(v[:4], 8))
    wide = np.pad(np.repeat(np.concatenate([v, v[::-1]]), 3, -1), ((0, 0), (0, 0), (4, 4), (0, 0)), constant_values=255)
    (root / "even" / "wide.mp4").write_bytes(mp4_bytes(wide, 8))
    return root


def test_a_folder_of_clips_is_windows_of_its_files_split_by_file(tmp_path, capsys):
    root = _folder(tmp_path / "clips")
    assert modality_name(str(root)) == "video" and modality_name(f"{root}:frames=4") == "video"
    train, test = load_dataset(str(root), "train"), load_dataset(str(root), "test")
    assert "skipped 1 of 22 video files shorter than 8 frames (e.g. odd/short.gif)" in capsys.readouterr().out
    # 21 readable files of 16 frames: two 8-frame windows each, grey (one channel), 16x16 (the first file's side)
    assert train.images.shape[1:] == (1, 8, 16, 16) and len(train) + len(test) == 42
    assert train.class_names == ["even", "odd"] and train.modality == {"name": "video", "fps": 8}
    files = [f.relative_to(root).as_posix() for f, _ in clip_files(root)]
    assert set(test.files) == {files[0], files[10], files[20]} - {"odd/short.gif"}  # every 10th file, all its windows
    assert not set(train.files) & set(test.files)
    first = read_clips(root / train.files[0], 1, "clip")[0]  # [1, 16, 16, 16]
    assert torch.equal(train.images[0], first[:, :8]) and torch.equal(train.images[1], first[:, 8:])
    # the MP4's 16x24 frames are cropped to their middle 16x16, the clip it was made of (through H.264's loss)
    both = (train, test)[int("even/wide.mp4" in test.files)]
    made_of = read_clips(root / next(f for f in files if f.endswith("c19.gif")), 1, "clip")[0]
    got = both.images[both.files.index("even/wide.mp4")].float()
    assert (got - made_of[:, :8].float()).abs().mean() < 6 < (got - 255).abs().mean()
    # captions of the classes, for --cond text without a captions file
    groups, labels = train.captions
    assert "a video of an odd" in groups[1] and torch.equal(labels, train.labels)
    four = load_dataset(f"{root}:frames=4,size=32", "train")
    assert four.images.shape[1:] == (1, 4, 32, 32) and len(four) > len(train)


def test_a_colour_folder_keeps_three_channels(tmp_path):
    g = np.random.default_rng(0)
    for i in range(3):
        (tmp_path / f"c{i}.gif").write_bytes(gif_bytes(g.integers(0, 255, (8, 12, 12, 3), dtype=np.uint8), 8))
    ds = load_dataset(str(tmp_path), "train")
    assert ds.images.shape[1:] == (3, 8, 12, 12) and ds.labels is None


def test_cli_trains_samples_and_refuses_a_folder_of_clips_in_one_line(tmp_path, capsys):
    root = _folder(tmp_path / "clips", n=10)
    run = tmp_path / "run"
    base = ["--preset", "tiny", "--temporal-patch", "2", "--batch-size", "8", "--sample-every", "1000"]
    assert in_process(capsys, "train", "--data", root, "--cond", "text", "--steps", "3", *base, "--out", run)[0] == 0
    rc, err = in_process(capsys, "sample", run, "--prompt", "a clip of an even", "--n", "2", "--steps", "2", "--out", tmp_path / "s.npz")
    assert rc == 0, err
    with np.load(tmp_path / "s.npz") as z:
        assert z["videos"].shape == (2, 8, 16, 16, 1) and list(z["prompts"]) == ["a clip of an even"] * 2
    one_line_error_in_process(capsys, "no evaluation is defined for video runs", "eval", run)
    one_line_error_in_process(capsys, "takes frames=N and size=N", "train", "--data", f"{root}:frames=0", "--steps", "1",
                              "--out", tmp_path / "bad")
    one_line_error_in_process(capsys, "has 40 frames", "train", "--data", f"{root}:frames=40", "--steps", "1", "--out", tmp_path / "bad")
    (root / "odd" / "zz.gif").write_bytes(b"GIF89a not really")
    one_line_error_in_process(capsys, "cannot read video file", "train", "--data", root, "--steps", "1", "--out", tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("source", ["{root}:fps=4", "{root}:frames=x"])
def test_bad_folder_options_are_one_line(tmp_path, capsys, source):
    root = _folder(tmp_path / "clips", n=4)
    one_line_error_in_process(capsys, "a folder of clips takes", "train", "--data", source.format(root=root), "--steps", "1",
                              "--out", tmp_path / "r")


def test_a_flat_folder_trains_on_its_captions_file(tmp_path, capsys):
    """A flat folder (no classes) with a captions file: every window of a file takes that file's captions."""
    import json

    ds = moving_dataset("moving-digits:limit=4", "train")
    root = tmp_path / "flat"
    root.mkdir()
    rows = ["file,text"]
    for i in range(4):
        v = ds.images[i].permute(1, 2, 3, 0).numpy()
        (root / f"c{i}.gif").write_bytes(gif_bytes(np.concatenate([v, v[::-1]]), 8))
        rows.append(f"c{i}.gif,clip number {i} of a digit")
    (root / "captions.csv").write_text("\n".join(rows) + "\n")
    train = load_dataset(str(root), "train")
    assert train.labels is None and len(train) == 7  # 8 windows, fewer than 10 files: every 10th window is test
    run = tmp_path / "run"
    assert in_process(capsys, "train", "--data", root, "--cond", "text", "--captions", root / "captions.csv", "--steps", "2",
                      "--preset", "tiny", "--temporal-patch", "2", "--batch-size", "4", "--sample-every", "1000", "--out", run)[0] == 0
    assert sorted(json.loads((run / "captions.json").read_text())["texts"]) == [f"clip number {i} of a digit" for i in range(4)]
