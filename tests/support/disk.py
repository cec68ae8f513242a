"""Room on disk for the run: its models, exports and training runs live in pytest's
temporary folder until their test (`tmp_path`) or module (`module_tmp_path`) is done.

A run that starts with less free space than it will use stops at once with one line naming
the folder, instead of failing hundreds of tests with "No space left on device" when the
disk fills.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

# The most a full `make test` held at once in pytest's temporary folder (4166 MiB, sampled
# every 10 s over a run of 457 tests on two workers; 17 GB were left behind before the
# folders were removed as tests and modules finish), and the free space asked for: that,
# with room for what falls between the samples.
PEAK_GIB = 4.1
NEEDED_GIB = 6.0


def temporary_root(config: pytest.Config) -> Path:
    """The existing folder under which pytest makes the run's temporary folders."""
    given = config.option.basetemp
    root = Path(given).resolve().parent if given else Path(
        os.environ.get("PYTEST_DEBUG_TEMPROOT") or tempfile.gettempdir())
    while not root.exists() and root != root.parent:
        root = root.parent
    return root


def shortage(root: Path, needed_gib: float | None = None) -> str | None:
    """Why the run cannot start there (one line), or None when there is room."""
    needed_gib = NEEDED_GIB if needed_gib is None else needed_gib
    free_gib = shutil.disk_usage(root).free / 2**30
    if free_gib >= needed_gib:
        return None
    return (f"The tests need about {needed_gib:.0f} GiB free for their temporary files in "
            f"{root}, which has {free_gib:.1f} GiB free: free some space there, or give "
            "`--basetemp` a folder on a disk with room.")


def pytest_sessionstart(session: pytest.Session) -> None:
    if hasattr(session.config, "workerinput"):  # the controller checks, once
        return
    why = shortage(temporary_root(session.config))
    if why:
        pytest.exit(why, returncode=pytest.ExitCode.USAGE_ERROR)
