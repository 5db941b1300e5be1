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
