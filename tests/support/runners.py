"""How the tests run the command line and Python code: in this process where the point is
what the command does (fast: TensorFlow is imported once), in a fresh interpreter where a
real process is the point (import hygiene, SIGKILL, several workers, exit codes of the
interpreter itself)."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str, cwd: str | os.PathLike | None = None) -> subprocess.CompletedProcess:
    """`keras-inception ARGS...` in this process, as a user sees it: exit code, stdout and
    stderr. An exception that escapes `main` is written to stderr as the interpreter would
    (with "Traceback"), exit code 1, so that tests asserting "no traceback" can fail."""
    from keras_inception import cli

    stdout, stderr = io.StringIO(), io.StringIO()
    previous = os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                code = cli.main(list(args))
            except SystemExit as e:  # argparse: --help (0) and usage errors (2)
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except BaseException:  # noqa: BLE001 (a user would see this traceback)
                traceback.print_exc(file=sys.stderr)
                code = 1
    finally:
        os.chdir(previous)
    return subprocess.CompletedProcess(["keras-inception", *args], code, stdout.getvalue(),
                                       stderr.getvalue())


def run_python(code: str, *args: str, cwd: str | os.PathLike | None = REPO, env: dict | None = None,
               timeout: int = 600) -> subprocess.CompletedProcess:
    """`python -c CODE ARGS...` in a fresh interpreter (environment: this one's plus `env`)."""
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd,
                          env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout)


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str, code: int = 2) -> str:
    """The run failed with `code`, no traceback, and exactly one `error:` line holding each
    needle; returns that line."""
    assert proc.returncode == code, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if ": error:" in line]
    assert len(errors) == 1, proc.stderr[-3000:]
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]
