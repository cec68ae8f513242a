"""The test suite's own support (tests/support/): what keeps a run from failing halfway."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def test_a_run_without_room_for_its_files_stops_with_one_line(tmp_path, monkeypatch):
    """The disk check of the run's start: one line naming the folder, the free space and the
    way out; the folder is the existing one under `--basetemp` or the system's temp folder."""
    import tempfile

    from support import disk

    # A fixed free space: the disk is shared, and another process may write between calls.
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(disk.shutil, "disk_usage", lambda path: usage)
    assert disk.shortage(tmp_path, needed_gib=0) is None
    free_gib = usage.free / 2**30
    message = disk.shortage(tmp_path, needed_gib=free_gib + 2)
    assert message is not None and "\n" not in message
    assert str(tmp_path) in message and f"{free_gib:.1f} GiB free" in message
    assert "--basetemp" in message
    assert disk.NEEDED_GIB > disk.PEAK_GIB

    class Options:
        basetemp = str(tmp_path / "not" / "yet" / "made")

    class Config:
        option = Options()

    assert disk.temporary_root(Config()) == tmp_path
    Options.basetemp = None
    assert disk.temporary_root(Config()) == Path(os.environ.get("PYTEST_DEBUG_TEMPROOT")
                                                 or tempfile.gettempdir())

