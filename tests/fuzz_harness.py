"""The fuzzing harness's runner and its properties.

Every case is a `diffuse` command line run in-process (``diffuse.cli.main``) inside a fresh sandbox folder that
holds a copy of a small trained run and the case's input files. Across all of them:

- no exception escapes ``main``: a failure is exit status 2 and exactly one ``error:`` line, the last on stderr;
- nothing is written outside the command's ``--out`` (or a documented default output);
- a failed command changes nothing at all (the run copy included);
- oracle checks where the answer is known: a flag value outside its documented range must be refused.

Counts and findings are kept per target and printed at the end of the session (conftest.py).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from diffuse.cli import main


@dataclass
class Case:
    """argv (strings; ``{box}`` is replaced by the sandbox path), files to write first, and what may change."""

    argv: list[str]
    files: dict[str, bytes] = field(default_factory=dict)  # path relative to the sandbox -> bytes
    writes: list[str] = field(default_factory=list)  # paths (relative) the command may create or change on success
    must_fail: str | None = None  # oracle: why this command must be refused (None: no expectation)
    label: str = ""


@dataclass
class Stats:
    cases: dict[str, int] = field(default_factory=dict)
    accepted: dict[str, int] = field(default_factory=dict)
    findings: list[str] = field(default_factory=list)


STATS = Stats()


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """relative path -> (size, mtime_ns) of every file below root, the ``.lock`` files of runs (a pid) excepted."""
    out = {}
    for p in root.rglob("*"):
        if p.is_file() and p.name != ".lock":
            st = p.stat()
            out[p.relative_to(root).as_posix()] = (st.st_size, st.st_mtime_ns)
    return out


def _under(path: str, prefixes: list[str]) -> bool:
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in prefixes)


def run_case(target: str, case: Case, box: Path, golden: Path) -> None:
    """Run one case in a fresh sandbox ``box`` and record any property it breaks as a finding."""
    if box.exists():
        shutil.rmtree(box)
    shutil.copytree(golden, box / "run", ignore=shutil.ignore_patterns(".lock"))
    for rel, data in case.files.items():
        (box / rel).parent.mkdir(parents=True, exist_ok=True)
        (box / rel).write_bytes(data)
    before = snapshot(box)
    argv = [a.replace("{box}", str(box)) for a in case.argv]
    err, out = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    os.chdir(box)
    rc, crash = None, None
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            rc = main(argv)
    except BaseException as e:  # noqa: BLE001 -- the harness must see every escape, SystemExit and KeyboardInterrupt included
        crash = "".join(traceback.format_exception_only(type(e), e)).strip().splitlines()[-1][:300]
    finally:
        os.chdir(cwd)
    after = snapshot(box)
    STATS.cases[target] = STATS.cases.get(target, 0) + 1
    what = f"[{target}] {case.label} diffuse {' '.join(case.argv)[:300]}"
    stderr = err.getvalue()
    lines = [x for x in stderr.strip().splitlines() if x.strip()]
    problems = []
    if crash is not None:
        problems.append(f"uncaught {crash}")
    elif rc not in (0, 2):
        problems.append(f"exit status {rc}")
    elif rc == 2:
        errors = [x for x in lines if x.startswith("error:")]
        if len(errors) != 1 or lines[-1] != errors[0] or "Traceback" in stderr:
            problems.append(f"not one error line: {stderr[-300:]!r}")
    if rc == 0:
        STATS.accepted[target] = STATS.accepted.get(target, 0) + 1
        if case.must_fail:
            problems.append(f"accepted although {case.must_fail}")
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    allowed = case.writes if rc == 0 else []
    stray = [k for k in changed if not _under(k, allowed)]
    if stray:
        problems.append(f"{'a failed command changed' if rc else 'wrote outside --out:'} {stray[:4]}")
    leftovers = [k for k in after if k.endswith(".tmp")]
    if leftovers:
        problems.append(f"temp files left: {leftovers[:3]}")
    for p in problems:
        STATS.findings.append(f"{what}: {p}")


def assert_clean(target: str) -> None:
    mine = [f for f in STATS.findings if f.startswith(f"[{target}]")]
    assert not mine, f"{len(mine)} findings:\n" + "\n".join(mine[:30])


def report() -> str:
    total = sum(STATS.cases.values())
    per = ", ".join(f"{k} {v} ({STATS.accepted.get(k, 0)} accepted)" for k, v in sorted(STATS.cases.items()))
    return f"fuzz: {total} cases, {len(STATS.findings)} findings; {per}"
