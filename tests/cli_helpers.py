"""Running the CLI in a subprocess, and checking its one-line errors (shared by the CLI-level tests)."""

import subprocess
import sys


def diffuse(*args, check=True):
    r = subprocess.run([sys.executable, "-m", "diffuse", *map(str, args)], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise AssertionError(f"diffuse {' '.join(map(str, args))} failed:\n{r.stderr}")
    return r


def one_line_error(r, needle):
    """Exit status 2, exactly one stderr line 'error: ...' containing needle, no traceback."""
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def in_process(capsys, *args):
    """The CLI in this process (no interpreter start-up: seconds less per call): (exit status, stderr)."""
    from diffuse.cli import main

    capsys.readouterr()
    rc = main([str(a) for a in args])
    return rc, capsys.readouterr().err


def one_line_error_in_process(capsys, needle, *args):
    """As one_line_error, in this process: exit status 2 and exactly one 'error:' line (progress bars may come before it)."""
    rc, err = in_process(capsys, *args)
    lines = [x for x in err.strip().splitlines() if x.startswith("error:")]
    assert rc == 2 and len(lines) == 1 and needle in lines[0] and err.strip().splitlines()[-1] == lines[0], err
    assert "Traceback" not in err
