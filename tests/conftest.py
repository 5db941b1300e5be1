"""Shared fixtures: small and fast; every test runs on CPU."""

import os

import pytest
import torch

os.environ.setdefault("DIFFUSE_NO_DOWNLOAD", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    """Keep classifier caches of tests away from the user's cache, shared across one test session."""
    monkeypatch.setenv("DIFFUSE_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory):
    """Two tiny 8x8 digit runs trained for 40 steps through the CLI, {"class": dir, "text": dir} (test_api, test_serve)."""
    from cli_helpers import diffuse as cli

    root = tmp_path_factory.mktemp("tiny_runs")
    for cond in ("class", "text"):
        cli("train", "--data", "digits", "--cond", cond, "--steps", "40", "--batch-size", "32", "--preset", "tiny",
            "--sample-every", "1000", "--out", root / cond)
    return {c: root / c for c in ("class", "text")}


@pytest.fixture(scope="session")
def audio_run(tmp_path_factory):
    """A class-conditional notes run trained for 6 steps through the CLI (test_audio, test_serve_page)."""
    from pathlib import Path

    from cli_helpers import diffuse as cli

    from diffuse.data import notes

    if not Path(notes.SOUNDFONTS[0]).is_file():
        pytest.skip(f"no SoundFont: {notes.APT}")
    run = tmp_path_factory.mktemp("audio") / "run"
    cli("train", "--data", "notes:110", "--cond", "class", "--steps", "6", "--batch-size", "16", "--out", run)
    return run


def pytest_terminal_summary(terminalreporter):
    """The fuzzing harness's case count and findings (tests/fuzz_harness.py), when it ran."""
    import sys

    harness = sys.modules.get("fuzz_harness")
    if harness is not None and harness.STATS.cases:
        terminalreporter.write_line(harness.report())
        for f in harness.STATS.findings[:50]:
            terminalreporter.write_line("  " + f)
