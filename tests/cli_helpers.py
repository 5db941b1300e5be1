"""Running the CLI, and checking its one-line errors (shared by the CLI-level tests)."""

import contextlib
import io
import subprocess
import sys
import traceback


def diffuse(*args, check=True, fresh=False):
    """`diffuse ARGS` -> CompletedProcess (returncode, stdout, stderr). By default the CLI's ``main`` runs in this
    process with stdout and stderr captured (no interpreter and torch start-up: seconds per call, minutes per suite);
    an exception it lets through becomes exit status 1 with its traceback on stderr, as in a real process.
    ``fresh``: a real ``python -m diffuse`` subprocess, for what only a process shows (what C libraries print on
    file descriptor 1, the entry point itself)."""
    argv = [str(a) for a in args]
    if fresh:
        r = subprocess.run([sys.executable, "-m", "diffuse", *argv], capture_output=True, text=True)
    else:
        from diffuse.cli import main

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main(argv)
            except SystemExit as e:
                rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except Exception:
                traceback.print_exc()
                rc = 1
        r = subprocess.CompletedProcess(["diffuse", *argv], rc, out.getvalue(), err.getvalue())
    if check and r.returncode != 0:
        raise AssertionError(f"diffuse {' '.join(argv)} failed:\n{r.stderr}")
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
